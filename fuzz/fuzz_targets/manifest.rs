//! The manifest parser never panics on any input, and whatever it accepts
//! survives a round trip: serialised back to YAML it parses to the same Agent.
#![no_main]

use agent_host::manifest::Agent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(agent) = Agent::from_yaml(text) else {
        return;
    };
    let yaml = to_yaml(&agent);
    let again = Agent::from_yaml(&yaml)
        .unwrap_or_else(|e| panic!("accepted once, refused after a round trip: {e}\n{yaml}"));
    assert_eq!(agent, again, "round trip changed the agent:\n{yaml}");
});

/// JSON is YAML: serialising through serde_json avoids a second YAML crate here.
fn to_yaml(agent: &Agent) -> String {
    serde_json::to_string(agent).expect("an Agent always serialises")
}
