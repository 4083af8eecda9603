//! The capability list, walked: every capability it holds shows up everywhere
//! the host enumerates capabilities, so the next one added cannot drift.

use super::imports::{bind_imports, Binding};
use super::*;
use crate::config::HostConfig;
use crate::manifest::Agent;

/// An agent declaring every capability, configured on a host whose state
/// lives in a temporary directory (kept alive with the grants).
fn configure(capabilities: &str) -> (Grants, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let yaml = format!(
        "apiVersion: agent-host.dev/v1alpha1\nkind: Agent\nmetadata: {{ name: all }}\nspec:\n  component: {{ path: ./a.wasm }}\n  capabilities:\n{capabilities}"
    );
    let agent = Agent::from_yaml(&yaml).unwrap();
    let config = HostConfig {
        state_dir: dir.path().join("state"),
        ..HostConfig::default()
    };
    let host = HostStates::new(&config);
    let grants = Grants::configure(&host, &agent, dir.path(), dir.path(), false).unwrap();
    (grants, dir)
}

const EVERYTHING: &str = r#"
    http: [{ url: "http://api.test/v1/", methods: [GET] }]
    filesystem: [{ hostPath: ./data, guestPath: /data, readOnly: true }]
    env: [{ name: REGION, value: eu }]
    keyValue: { maxBytes: 1Mi, buckets: [alerts] }
    llm: { provider: openai, model: gpt-4o-mini, endpoint: "http://127.0.0.1:9/v1/", maxTokensPerInvocation: 2000 }
    mcp: [{ name: tickets, url: "http://127.0.0.1:9/mcp", tools: [search] }]
"#;

#[test]
fn every_capability_in_the_list_is_bound_described_counted_and_reported() {
    let (grants, _dir) = configure(EVERYTHING);
    let described = grants.describe();
    let limits = Limits::default();
    for kind in Kind::GRANTABLE {
        let interfaces = kind.interfaces();
        assert!(!interfaces.is_empty(), "{kind:?} provides no interface");
        let bindings = bind_imports(
            interfaces
                .iter()
                .map(|i| format!("{i}@0.2.0"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
            &grants,
            &limits,
        );
        assert!(
            bindings.iter().any(
                |b| matches!(&b.binding, Binding::Granted { capability, .. } if *capability == kind)
            ),
            "{kind:?}: no import bound to it when granted: {bindings:?}"
        );
        assert!(
            bindings
                .iter()
                .all(|b| !matches!(b.binding, Binding::Refused { .. })),
            "{kind:?}: an import refused although granted: {bindings:?}"
        );
        assert!(
            described
                .iter()
                .any(|l| l.starts_with(&format!("{}: ", kind.as_str()))),
            "{kind:?} missing from the effective grants: {described:?}"
        );
        let mut calls = HostCalls::default();
        calls.record(kind);
        assert_eq!(calls.to_map().get(kind.as_str()), Some(&1), "{kind:?}");
        for interface in interfaces {
            assert_eq!(
                Kind::providing(interface),
                Some(kind),
                "{interface} claimed twice"
            );
        }
    }
}

#[test]
fn capability_usage_fields_are_distinct_in_the_report() {
    // Flattened into one JSON object: two capabilities naming a field alike
    // would silently overwrite each other's figure.
    let mut usage = CapabilityUsage::default();
    usage.http.http_denied = 1;
    usage.filesystem.file_denied = 2;
    usage.key_value.key_value_denied = 3;
    usage.llm.llm_denied = 4;
    usage.llm.llm_tokens = 5;
    usage.mcp.mcp_denied = 6;
    usage.mcp.mcp_calls = 7;
    let json = serde_json::to_value(&usage).unwrap();
    for (field, value) in [
        ("httpDenied", 1),
        ("fileDenied", 2),
        ("keyValueDenied", 3),
        ("llmDenied", 4),
        ("llmTokens", 5),
        ("mcpDenied", 6),
        ("mcpCalls", 7),
    ] {
        assert_eq!(json[field], value, "{field} in {json}");
    }
    let denials: Vec<_> = usage.denials().collect();
    assert_eq!(
        denials,
        [
            (Kind::Filesystem, 2),
            (Kind::Http, 1),
            (Kind::KeyValue, 3),
            (Kind::Llm, 4),
            (Kind::Mcp, 6)
        ]
    );
}

#[test]
fn effective_grants_list_key_value_and_llm_grants() {
    let (grants, _dir) = configure(EVERYTHING);
    let lines = grants.describe();
    for expected in [
        "http: GET http://api.test/v1/",
        "env: REGION (value)",
        "keyValue: buckets alerts, at most 1Mi",
        "llm: openai gpt-4o-mini at http://127.0.0.1:9/v1/ (2000 tokens per invocation, 20 requests per invocation)",
        "mcp: server `tickets` at http://127.0.0.1:9/mcp: tools [search] (10 calls and 1Mi of responses per invocation, 30s per exchange)",
    ] {
        assert!(lines.contains(&expected.to_string()), "{expected} not in {lines:?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("filesystem: /data <- ") && l.ends_with("(read-only)")),
        "{lines:?}"
    );
}

fn binding(import: &str, g: &Grants) -> Binding {
    bind_imports([import], g, &Limits::default())
        .remove(0)
        .binding
}

#[test]
fn http_key_value_llm_and_tools_imports_are_denied_at_call_without_a_grant_and_bound_with_one() {
    let (none, _a) = configure("    env: []\n");
    let (all, _b) = configure(EVERYTHING);
    for (import, kind) in [
        ("wasi:http/outgoing-handler@0.2.0", Kind::Http),
        ("wasi:http/types@0.2.0", Kind::Http),
        ("wasi:keyvalue/store@0.2.0-draft", Kind::KeyValue),
        ("wasi:keyvalue/atomics@0.2.0-draft", Kind::KeyValue),
        ("wasi:keyvalue/batch@0.2.0-draft", Kind::KeyValue),
        ("agent-host:agent/llm@0.1.0", Kind::Llm),
        ("agent-host:agent/tools@0.1.0", Kind::Mcp),
    ] {
        match binding(import, &none) {
            Binding::Denied { capability, .. } => assert_eq!(capability, kind, "{import}"),
            other => panic!("{import}: {other:?}"),
        }
        match binding(import, &all) {
            Binding::Granted { capability, .. } => assert_eq!(capability, kind, "{import}"),
            other => panic!("{import}: {other:?}"),
        }
    }
    match binding("wasi:keyvalue/store@0.2.0-draft", &all) {
        Binding::Granted { detail, .. } => {
            assert!(
                detail.contains("alerts") && detail.contains("1Mi"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sockets_are_denied_at_every_call_even_with_every_grant_and_unknown_interfaces_refused() {
    let (g, _dir) = configure(EVERYTHING);
    for import in [
        "wasi:sockets/tcp@0.2.0",
        "wasi:sockets/tcp-create-socket@0.2.3",
        "wasi:sockets/ip-name-lookup@0.2.0",
    ] {
        assert!(
            matches!(
                binding(import, &g),
                Binding::Denied {
                    capability: Kind::Sockets,
                    ..
                }
            ),
            "{import}"
        );
    }
    for import in ["example:evil/backdoor", "wasi:nn/graph@0.2.0"] {
        assert!(
            matches!(binding(import, &g), Binding::Refused { .. }),
            "{import}"
        );
    }
}

#[test]
fn std_interfaces_are_inert_without_grants() {
    let (g, _dir) = configure("    env: []\n");
    for import in [
        "wasi:cli/environment@0.2.3",
        "wasi:filesystem/preopens@0.2.3",
        "wasi:clocks/monotonic-clock@0.2.3",
        "wasi:cli/stdin@0.2.3",
    ] {
        assert!(
            matches!(binding(import, &g), Binding::Inert { .. }),
            "{import}"
        );
    }
}
