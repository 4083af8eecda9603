//! Attack: burns CPU forever in a tight loop without calling the host, so only
//! fuel or epoch-based interruption can stop it.

use agent_host_guest::{Agent, AgentError, Output, Task};

struct SpinForever;

impl Agent for SpinForever {
    fn run(_task: Task) -> Result<Output, AgentError> {
        let mut counter: u64 = 0;
        loop {
            // black_box keeps the optimizer from proving the loop side-effect free.
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

agent_host_guest::export_agent!(SpinForever);
