//! Attack: calls `std::process::exit(3)` instead of returning a result, to
//! test that leaving through `wasi:cli/exit` ends only this invocation and is
//! reported as an exit, not as success and not as a host failure.

use agent_host_guest::{Agent, AgentError, Output, Task};

struct ExitNonzero;

impl Agent for ExitNonzero {
    fn run(_task: Task) -> Result<Output, AgentError> {
        std::process::exit(3)
    }
}

agent_host_guest::export_agent!(ExitNonzero);
