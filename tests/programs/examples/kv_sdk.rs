//! Key-value through the SDK (`agent_host_guest::kv`), not raw bindings: in
//! bucket `state` it reads the counter `counter` (the format the host's
//! `increment` and the `kv_counter` probe use), adds 5, stores a JSON
//! `profile` (reporting the one an earlier invocation left), writes and
//! deletes a `scratch` key, lists the keys, and reports the SDK's typed error
//! for a value of the wrong type, a non-counter and the bucket `forbidden`.

use agent_host_guest::kv::{self, Store};
use agent_host_guest::{Agent, AgentError, Output, Task};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Serialize, Deserialize)]
struct Profile {
    service: String,
    invocation: String,
}

/// The SDK's error variant, the `AgentError` case `?` would report, and the message.
fn typed(e: kv::Error) -> Value {
    let variant = match &e {
        kv::Error::Denied { .. } => "Denied",
        kv::Error::NoSuchStore { .. } => "NoSuchStore",
        kv::Error::Host { .. } => "Host",
        kv::Error::Json { .. } => "Json",
        kv::Error::NotACounter { .. } => "NotACounter",
    };
    let message = e.to_string();
    let case = match AgentError::from(e) {
        AgentError::InvalidInput(_) => "invalid-input",
        AgentError::CapabilityDenied(_) => "capability-denied",
        AgentError::Upstream(_) => "upstream",
        AgentError::Internal(_) => "internal",
    };
    json!({ "variant": variant, "agentError": case, "message": message })
}

struct KvSdk;

impl Agent for KvSdk {
    fn run(task: Task) -> Result<Output, AgentError> {
        let state = Store::open("state")?;
        let counter_before = state.counter("counter")?;
        let counter_after = state.increment("counter", 5)?;
        let previous: Option<Profile> = state.get_json("profile")?;
        state.set_json(
            "profile",
            &Profile {
                service: "db".into(),
                invocation: task.id.clone(),
            },
        )?;
        let profile: Option<Profile> = state.get_json("profile")?;
        state.set("scratch", b"temporary")?;
        let scratch_listed = state.keys()?.contains(&"scratch".to_string());
        state.delete("scratch")?;
        let report = json!({
            "counterBefore": counter_before,
            "counterAfter": counter_after,
            "counterRead": state.counter("counter")?,
            "previousProfile": previous.map(|p| p.invocation),
            "profileService": profile.map(|p| p.service),
            "scratchListed": scratch_listed,
            "scratchExists": state.exists("scratch")?,
            "keys": state.keys()?,
            "wrongType": state.get_json::<Profile>("counter").err().map(typed),
            "notACounter": state.counter("profile").err().map(typed),
            "forbidden": Store::open("forbidden").err().map(typed),
        });
        Output::json(&report)
    }
}

agent_host_guest::export_agent!(KvSdk);
