//! Per-invocation resource limiter: caps linear memory, tables and instances
//! from the manifest, and records the peak memory for the usage report.

use wasmtime::ResourceLimiter;

/// A guest asked for more linear memory than `spec.limits.memory` allows.
#[derive(Debug, thiserror::Error)]
#[error("linear memory limit of {limit} bytes exceeded (asked for {desired} bytes in total)")]
pub struct MemoryLimitExceeded {
    /// The manifest's limit.
    pub limit: u64,
    /// Total the guest would have reached.
    pub desired: u64,
}

/// Limits of one store, from `spec.limits`.
#[derive(Debug)]
pub struct Limiter {
    memory_limit: u64,
    table_elements: usize,
    instances: usize,
    /// Bytes of linear memory currently allocated, all memories together.
    total_memory: u64,
    /// Highest value `total_memory` reached.
    pub peak_memory: u64,
    /// Set when a memory grow was refused: the invocation failed on its memory budget.
    pub memory_exceeded: bool,
}

impl Limiter {
    /// A limiter with the given caps.
    pub fn new(memory_limit: u64, table_elements: usize, instances: usize) -> Self {
        Self {
            memory_limit,
            table_elements,
            instances,
            total_memory: 0,
            peak_memory: 0,
            memory_exceeded: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total_memory - current as u64 + desired as u64;
        if total > self.memory_limit {
            self.memory_exceeded = true;
            // Trap rather than fail the grow: a Rust guest would abort anyway,
            // and the trap carries a precise reason.
            return Err(MemoryLimitExceeded {
                limit: self.memory_limit,
                desired: total,
            }
            .into());
        }
        self.total_memory = total;
        self.peak_memory = self.peak_memory.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_peak_across_memories_and_refuses_past_the_limit() {
        let mut l = Limiter::new(100, 10, 4);
        assert!(l.memory_growing(0, 40, None).unwrap());
        assert!(l.memory_growing(0, 50, None).unwrap());
        assert!(l.memory_growing(40, 50, None).unwrap());
        assert_eq!(l.peak_memory, 100);
        assert!(l.memory_growing(50, 51, None).is_err());
        assert!(l.memory_exceeded);
        assert_eq!(l.peak_memory, 100);
    }
}
