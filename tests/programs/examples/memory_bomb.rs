//! Attack: allocates 1 MiB chunks forever, touching every page and keeping
//! them all alive, so only the linear-memory limit can stop it.

use agent_host_guest::{Agent, AgentError, Output, Task};

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

struct MemoryBomb;

impl Agent for MemoryBomb {
    fn run(_task: Task) -> Result<Output, AgentError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            for page in (0..CHUNK).step_by(PAGE) {
                chunk[page] = 1;
            }
            hoard.push(std::hint::black_box(chunk));
        }
    }
}

agent_host_guest::export_agent!(MemoryBomb);
