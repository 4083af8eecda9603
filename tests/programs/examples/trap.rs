//! Probe: panics (a wasm trap) with a recognisable message, to test that a
//! trapping agent is reported as a failure and its instance discarded.

use agent_host_guest::{Agent, AgentError, Output, Task};

struct Trap;

impl Agent for Trap {
    fn run(_task: Task) -> Result<Output, AgentError> {
        panic!("agent panicked on purpose");
    }
}

agent_host_guest::export_agent!(Trap);
