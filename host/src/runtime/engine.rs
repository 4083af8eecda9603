//! The one [`Engine`] of a host: fuel, epoch interruption, the instance
//! allocator, and the thread that advances epochs.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::{Allocator, HostConfig};
use crate::manifest::MAX_MEMORY;

/// Wasm stack per invocation. Stops unbounded recursion long before the host's
/// own (async fiber) stack is at risk; it traps as a stack overflow.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// Core instances a Rust component needs (its module plus wit-component shims),
/// with headroom; sizes the pool per instance slot.
const CORE_INSTANCES_PER_SLOT: u32 = 8;
/// Tables per slot, same reasoning.
const TABLES_PER_SLOT: u32 = 8;
/// Memories per slot: components from Rust have one; headroom for a second.
const MEMORIES_PER_SLOT: u32 = 2;

/// Bytes of each pooled memory and table kept resident (reset by memset).
const KEEP_RESIDENT: usize = 1 << 20;
/// Slots decommitted together, amortising the TLB shootdowns.
const DECOMMIT_BATCH: usize = 16;

/// Builds the engine for `cfg`.
pub fn build_engine(cfg: &HostConfig) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(cfg.metering.fuel());
    config.epoch_interruption(cfg.metering.epoch());
    config.max_wasm_stack(MAX_WASM_STACK);
    if cfg.allocator == Allocator::Pooling {
        let n = cfg.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n * CORE_INSTANCES_PER_SLOT)
            .total_memories(n * MEMORIES_PER_SLOT)
            .total_tables(n * TABLES_PER_SLOT)
            .total_stacks(n)
            .max_memories_per_module(MEMORIES_PER_SLOT)
            // Each slot reserves address space for the largest memory a manifest may grant.
            .max_memory_size(MAX_MEMORY.bytes() as usize)
            // Reset small memories with memset (only pages the guest dirtied,
            // where the kernel can tell) instead of madvise: each madvise
            // flushes the TLB of every core running the host. Memory is still
            // zeroed between invocations either way.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .decommit_batch_size(DECOMMIT_BATCH);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config)
}

/// A digest of everything that decides whether a precompiled artifact fits this
/// engine: target, compiler flags, tunables, wasm features and the wasmtime
/// version (all covered by wasmtime's compatibility hash).
pub fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(hasher.0.finalize())
}

/// Feeds `Hash` output into SHA-256 so the key is stable across processes
/// (std's `DefaultHasher` makes no such promise).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 digest is read")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Advances the engine's epoch every tick, on its own thread, until dropped.
/// Deadlines are counted in ticks, so a guest's wall-clock budget is enforced
/// to within one tick even while it never calls the host.
pub struct EpochTicker {
    /// Dropped to stop the thread: it wakes at once instead of finishing a
    /// tick (a one-task `agent-host run` otherwise waited up to a tick to exit).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine` every `tick`.
    pub fn start(engine: Engine, tick: Duration) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(tick)
                {
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
