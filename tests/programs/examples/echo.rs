//! Returns its input verbatim: the ABI benchmark's agent (the cost of moving a
//! string into a fresh instance and back out, and nothing else).

use agent_host_guest::{Agent, AgentError, Output, Task};

struct Echo;

impl Agent for Echo {
    fn run(task: Task) -> Result<Output, AgentError> {
        Ok(Output::raw(task.input))
    }
}

agent_host_guest::export_agent!(Echo);
