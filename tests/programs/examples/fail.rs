//! Probe: returns `AgentError::Upstream("upstream is down")`, to test that a
//! guest-reported error reaches the caller verbatim.

use agent_host_guest::{Agent, AgentError, Output, Task};

struct Fail;

impl Agent for Fail {
    fn run(_task: Task) -> Result<Output, AgentError> {
        Err(AgentError::Upstream("upstream is down".to_owned()))
    }
}

agent_host_guest::export_agent!(Fail);
