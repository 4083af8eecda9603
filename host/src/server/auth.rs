//! MERGE(auth16): STAND-IN, written by mcp16 only so the MCP endpoint
//! compiles against the interface agreed with auth16 (`Caller`, `authorize`).
//! Take auth16's `auth.rs` at merge; the MCP code only uses what is here.

/// Who is calling, as the audit records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated identity (or the peer address when authentication is off).
    pub name: String,
}

/// Why a caller may not invoke an agent.
#[derive(Debug)]
pub struct Denied;

/// Whether `caller` may invoke an agent whose `spec.callers` is
/// `agent_spec_callers` (absent: anyone who got past authentication).
pub fn authorize(caller: &Caller, agent_spec_callers: Option<&[String]>) -> Result<(), Denied> {
    match agent_spec_callers {
        None => Ok(()),
        Some(allowed) if allowed.contains(&caller.name) => Ok(()),
        Some(_) => Err(Denied),
    }
}
