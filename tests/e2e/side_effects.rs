//! Outgoing side effects under re-runs (issue 14): a rule with
//! `idempotencyKey: true` makes the host add `Idempotency-Key: <invocation
//! id>-<n>`, n counting every outgoing request of the invocation, so a re-run
//! of the same invocation sends the same keys and a deduplicating server
//! applies each request once.

use agent_host::TaskInput;
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, Harness, Recorded, TestServer};
use serde_json::json;

/// The `idempotency-key` values of one recorded request (all of them).
fn keys(r: &Recorded) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "idempotency-key")
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_of_the_same_invocation_sends_the_same_idempotency_keys() {
    let sink = TestServer::start(|_, _, _| (200, "{}".into())).await;
    let base = sink.base();
    let h = Harness::new();
    let agent = h.agent(
        "charger",
        guests::HTTP_PROBE,
        &format!(
            "  capabilities:\n    http:\n      - {{ url: \"{base}/charge\", methods: [POST], idempotencyKey: true }}\n      - {{ url: \"{base}/note\", methods: [POST] }}\n"
        ),
    );
    let forged = [["Idempotency-Key", "forged-by-the-guest"]];
    let requests = json!({ "requests": [
        { "method": "POST", "url": format!("{base}/charge"), "headers": forged },
        { "method": "POST", "url": format!("{base}/note"), "headers": [["Idempotency-Key", "the-guest's-own"]] },
        // Not granted: refused, and still counted (n = 3).
        { "method": "DELETE", "url": format!("{base}/charge") },
        { "method": "POST", "url": format!("{base}/charge") },
    ]});
    let run = |id: &str| TaskInput {
        id: Some(id.into()),
        input: requests.to_string(),
        metadata: vec![],
    };

    let first = output_json(&agent.invoke(run("inv-7")).await);
    assert_eq!(first[2]["denied"], true, "{first}");
    let seen = sink.requests();
    let sent: Vec<(&str, Vec<&str>)> = seen.iter().map(|r| (r.uri.as_str(), keys(r))).collect();
    assert_eq!(
        sent,
        [
            ("/charge", vec!["inv-7-1"]),
            ("/note", vec!["the-guest's-own"]),
            ("/charge", vec!["inv-7-4"]),
        ],
        "the host's key replaces the guest's on an opted-in rule only"
    );

    // The same invocation run again (a re-run after a crash): the same keys.
    output_json(&agent.invoke(run("inv-7")).await);
    let again = sink.requests();
    let rerun: Vec<Vec<&str>> = again[3..].iter().map(keys).collect();
    let before: Vec<Vec<&str>> = again[..3].iter().map(keys).collect();
    assert_eq!(rerun, before);

    // Another invocation: other keys.
    output_json(&agent.invoke(run("inv-8")).await);
    let all = sink.requests();
    let other: Vec<Vec<&str>> = all[6..].iter().map(keys).collect();
    assert_eq!(other[0], ["inv-8-1"]);
    assert_eq!(other[2], ["inv-8-4"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invocation_id_that_cannot_be_a_key_fails_closed() {
    let sink = TestServer::start(|_, _, _| (200, "{}".into())).await;
    let base = sink.base();
    let h = Harness::new();
    let agent = h.agent(
        "charger",
        guests::HTTP_PROBE,
        &format!(
            "  capabilities:\n    http:\n      - {{ url: \"{base}/charge\", methods: [POST], idempotencyKey: true }}\n"
        ),
    );
    let run = |id: &str| TaskInput {
        id: Some(id.into()),
        input: json!({ "method": "POST", "url": format!("{base}/charge") }).to_string(),
        metadata: vec![],
    };
    let inv = agent.invoke(run("bad\nid")).await;
    let out = output_json(&inv);
    assert_eq!(out["denied"], true, "{out}");
    assert_eq!(inv.usage.caps.http.http_denied, 1);
    assert!(
        sink.requests().is_empty(),
        "sent without its idempotency key"
    );
    // The rule allows the request: only the id refused it.
    let out = output_json(&agent.invoke(run("good-id")).await);
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(keys(&sink.requests()[0]), ["good-id-1"]);
}
