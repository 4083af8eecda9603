//! The host process's environment (Kubernetes service variables, the host's
//! own settings, HOME, PATH) never reaches a guest, and without a filesystem
//! grant neither `/` nor the pod's service-account token is visible.

use agent_host::PreparedAgent;
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use serde_json::{json, Value};

/// Variables a pod's host process typically has, none of which is declared.
const HOST_VARS: [(&str, &str); 6] = agent_host_e2e::support::POD_HOST_VARS;

const TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

#[tokio::test(flavor = "multi_thread")]
async fn guest_sees_exactly_the_declared_variables_and_no_args() {
    agent_host_e2e::support::pod_host_environment();
    let h = Harness::new();
    // HOME is declared with its own value: the guest gets that, not the host's.
    let agent = h.agent(
        "env",
        guests::ENV_PROBE,
        "  capabilities:\n    env:\n      - { name: CLUSTER, value: prod }\n      - { name: HOME, value: /agent-home }\n",
    );
    let out = output_json(&agent.invoke(task(json!({}))).await);
    assert_eq!(
        out["vars"],
        json!({"CLUSTER": "prod", "HOME": "/agent-home"})
    );
    assert_eq!(out["args"], json!([]));
    for (name, _) in HOST_VARS {
        assert!(std::env::var_os(name).is_some(), "host has {name}");
    }
}

async fn fs(agent: &PreparedAgent, input: Value) -> Value {
    output_json(&agent.invoke(task(input)).await)
}

/// Listing `/` and reading the service-account token both fail.
async fn assert_root_and_token_hidden(agent: &PreparedAgent) {
    for input in [
        json!({"op": "list", "path": "/"}),
        json!({"op": "read", "path": TOKEN}),
        json!({"op": "metadata", "path": TOKEN}),
        json!({"op": "list", "path": "/var/run/secrets"}),
    ] {
        let out = fs(agent, input.clone()).await;
        assert_eq!(out["ok"], false, "{input} must fail: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_filesystem_grant_root_and_the_service_account_token_are_invisible() {
    let h = Harness::new();
    let agent = h.agent("no-fs", guests::FS_PROBE, "");
    assert_root_and_token_hidden(&agent).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unrelated_grant_does_not_expose_root_or_the_token() {
    let h = Harness::new();
    std::fs::create_dir(h.dir.path().join("data")).unwrap();
    let agent = h.agent(
        "some-fs",
        guests::FS_PROBE,
        "  capabilities:\n    filesystem:\n      - { hostPath: data, guestPath: /data }\n",
    );
    assert_root_and_token_hidden(&agent).await;
    let own = fs(&agent, json!({"op": "list", "path": "/data"})).await;
    assert_eq!(
        own,
        json!({"ok": true, "data": []}),
        "the grant itself works"
    );
}
