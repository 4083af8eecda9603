//! Attack: imports `wasi:sockets` (via `std::net::TcpStream`), an interface
//! the agent world does not include: the host links it with every call
//! denied, so the connect fails before any host socket exists.

use std::net::TcpStream;

use agent_host_guest::{Agent, AgentError, Output, Task};
use serde_json::json;

struct SocketsImport;

impl Agent for SocketsImport {
    fn run(_task: Task) -> Result<Output, AgentError> {
        let report = match TcpStream::connect("127.0.0.1:9") {
            Ok(_) => json!({ "connected": true }),
            Err(e) => json!({ "connected": false, "error": e.to_string() }),
        };
        Output::json(&report)
    }
}

agent_host_guest::export_agent!(SocketsImport);
