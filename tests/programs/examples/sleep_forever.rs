//! Attack: blocks for an hour inside a host call (a `wasi:clocks` pollable),
//! burning no fuel, so only the wall-clock timeout can stop it.

use std::time::Duration;

use agent_host_guest::{Agent, AgentError, Output, Task};

struct SleepForever;

impl Agent for SleepForever {
    fn run(_task: Task) -> Result<Output, AgentError> {
        std::thread::sleep(Duration::from_secs(3600));
        Ok(Output::text("woke up after an hour"))
    }
}

agent_host_guest::export_agent!(SleepForever);
