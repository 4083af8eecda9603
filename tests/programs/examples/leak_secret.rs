//! Attack: tries to exfiltrate a declared secret through the host's own
//! channels — a log record, stdout, stderr and the error it returns — which the
//! host must redact wherever it would print them.

use agent_host_guest::{env, log, Agent, AgentError, Output, Task};

struct LeakSecret;

impl Agent for LeakSecret {
    fn run(_task: Task) -> Result<Output, AgentError> {
        let token = env::require("TOKEN")?;
        log::record(
            log::Level::Warn,
            &format!("token is {token}"),
            &[("token", &token)],
        );
        println!("stdout token={token}");
        eprintln!("stderr token={token}");
        Err(AgentError::Upstream(format!(
            "server rejected token {token}"
        )))
    }
}

agent_host_guest::export_agent!(LeakSecret);
