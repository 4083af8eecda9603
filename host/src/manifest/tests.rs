//! Manifest-level behaviour: the full example, defaults, error snapshots, file loading and
//! the generated CRD. The newtypes' own tests sit beside them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::CustomResourceExt;

use super::*;

const FULL: &str = include_str!("testdata/full.yaml");

fn minimal(spec: &str) -> String {
    format!("apiVersion: {API_VERSION}\nkind: Agent\nmetadata: {{ name: demo }}\nspec:\n{spec}")
}

#[test]
fn full_manifest_parses_every_field() {
    let agent = Agent::from_yaml(FULL).unwrap();
    assert_eq!(agent.name(), "incident-responder");
    assert_eq!(agent.metadata.namespace.as_deref(), Some("sre-agents"));
    let spec = &agent.spec;
    assert_eq!(
        spec.component.path.as_deref(),
        Some(Path::new("./incident_responder.wasm"))
    );

    let caps = &spec.capabilities;
    assert_eq!(caps.http[0].url.host(), "prometheus.monitoring.svc");
    assert_eq!(caps.http[0].url.port(), 9090);
    assert_eq!(caps.http[0].url.path_prefix(), "/api/v1/");
    assert_eq!(caps.http[1].methods, [HttpMethod::Post]);
    assert_eq!(caps.filesystem[0].host_path, Path::new("/var/lib/runbooks"));
    assert_eq!(caps.filesystem[0].guest_path, "/runbooks");
    assert!(caps.filesystem[0].read_only);
    assert_eq!(caps.env[0].value.as_deref(), Some("prod"));
    let secret = &caps.env[1].value_from.as_ref().unwrap().secret_key_ref;
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("tickets", "token")
    );
    assert_eq!(caps.key_value.as_ref().unwrap().max_bytes.bytes(), 10 << 20);
    let llm = caps.llm.as_ref().unwrap();
    assert_eq!(llm.provider, LlmProvider::Openai);
    assert_eq!(
        llm.endpoint.as_ref().unwrap().to_string(),
        "https://api.openai.com/v1"
    );
    assert_eq!(llm.api_key_secret_ref.as_ref().unwrap().key, "api-key");
    assert_eq!(llm.max_tokens_per_invocation, Some(20000));

    let limits = &spec.limits;
    assert_eq!(limits.fuel, 2_000_000_000);
    assert_eq!(limits.memory.bytes(), 64 << 20);
    assert_eq!(limits.timeout.as_duration(), Duration::from_secs(30));
    assert_eq!(limits.max_log_bytes.bytes(), 256 << 10);
    assert_eq!(limits.hostcall_bytes.bytes(), 16 << 20);
}

#[test]
fn full_manifest_round_trips_through_yaml() {
    let agent = Agent::from_yaml(FULL).unwrap();
    let written = serde_norway::to_string(&agent).unwrap();
    assert!(
        written.contains("memory: 64Mi"),
        "quantities are written compactly:\n{written}"
    );
    assert!(
        written.contains("timeout: 30s"),
        "durations are written compactly:\n{written}"
    );
    assert_eq!(Agent::from_yaml(&written).unwrap(), agent);
}

#[test]
fn missing_limits_and_capabilities_take_defaults() {
    let agent = Agent::from_yaml(&minimal("  component: { path: a.wasm }\n")).unwrap();
    assert_eq!(agent.spec.limits, Limits::default());
    assert_eq!(agent.spec.capabilities, Capabilities::default());
    assert_eq!(agent.spec.limits.fuel, DEFAULT_FUEL);
    assert_eq!(agent.spec.limits.timeout, DEFAULT_TIMEOUT);
}

#[test]
fn partial_limits_keep_the_other_defaults() {
    let yaml = minimal("  component: { path: a.wasm }\n  limits: { memory: 128Mi }\n");
    let limits = Agent::from_yaml(&yaml).unwrap().spec.limits;
    assert_eq!(limits.memory.bytes(), 128 << 20);
    assert_eq!(
        Limits {
            memory: DEFAULT_MEMORY,
            ..limits
        },
        Limits::default()
    );
}

#[test]
fn default_limits_pass_validation() {
    let spec = AgentSpec {
        component: ComponentSource {
            path: None,
            image: Some("registry.example.com/a@sha256:abababababababababababababababababababababababababababababababab".into()),
        },
        capabilities: Capabilities::default(),
        limits: Limits::default(),
        callers: None,
        tool: None,
    };
    Agent::new("from-the-cluster", spec).validate().unwrap();
}

#[test]
fn omitted_methods_mean_get_and_omitted_read_only_means_read_only() {
    let yaml = minimal(concat!(
        "  component: { path: a.wasm }\n",
        "  capabilities:\n",
        "    http: [{ url: \"https://x.example/\" }]\n",
        "    filesystem: [{ hostPath: /a, guestPath: /a }]\n",
    ));
    let caps = Agent::from_yaml(&yaml).unwrap().spec.capabilities;
    assert_eq!(caps.http[0].methods, [HttpMethod::Get]);
    assert!(caps.filesystem[0].read_only);
}

#[test]
fn yaml_merge_keys_are_applied_before_checks() {
    let yaml = minimal(concat!(
        "  component: { path: a.wasm }\n",
        "  limits:\n",
        "    <<: &small { memory: 1Mi, fuel: 5 }\n",
        "    fuel: 7\n",
    ));
    let limits = Agent::from_yaml(&yaml).unwrap().spec.limits;
    assert_eq!((limits.memory.bytes(), limits.fuel), (1 << 20, 7));
}

#[test]
fn accepts_a_manifest_exported_from_the_cluster() {
    let yaml = r#"
apiVersion: agent-host.dev/v1alpha1
kind: Agent
metadata:
  name: demo
  namespace: sre-agents
  uid: 0f7c2a8e-2f4b-4b7a-9a59-1d1c0e1e2f3a
  resourceVersion: "4711"
  generation: 3
  creationTimestamp: "2025-01-01T00:00:00Z"
  labels: { team: sre }
spec:
  component: { image: "registry.example.com/agents/demo@sha256:abababababababababababababababababababababababababababababababab" }
status:
  observedGeneration: 3
  conditions:
    - type: Ready
      status: "True"
      reason: Running
      message: ""
      lastTransitionTime: "2025-01-01T00:00:01Z"
"#;
    let agent = Agent::from_yaml(yaml).unwrap();
    let status = agent.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.conditions[0].type_, "Ready");
    assert_eq!(agent.metadata.generation, Some(3));
}

#[test]
fn rejects_unknown_field_naming_its_path() {
    let yaml = minimal("  component: { path: a.wasm }\n  limits: { memroy: 64Mi }\n");
    let err = Agent::from_yaml(&yaml).unwrap_err();
    assert_eq!(err.path(), "spec.limits.memroy");
    assert!(
        err.message()
            .starts_with("unknown field; allowed: fuel, memory, timeout, "),
        "{err}"
    );
}

#[test]
fn bad_manifests_give_their_snapshot_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/manifest/testdata/bad");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 15,
        "expected the bad-manifest cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let text = std::fs::read_to_string(case).unwrap();
        let actual = match Agent::from_yaml(&text) {
            Ok(_) => "<accepted>".to_owned(),
            Err(e) => e.to_string(),
        };
        let expected_file = case.with_extension("err");
        match std::fs::read_to_string(&expected_file) {
            Ok(expected) if expected.trim_end() == actual => {}
            Ok(expected) => failures.push(format!(
                "{}:\n  expected: {}\n  actual:   {actual}",
                case.display(),
                expected.trim_end()
            )),
            Err(_) => failures.push(format!(
                "{}: no .err file; actual: {actual}",
                case.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn from_file_resolves_the_component_relative_to_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    std::fs::write(dir.path().join("bin/agent.wasm"), b"\0asm").unwrap();
    let manifest = dir.path().join("agent.yaml");
    std::fs::write(
        &manifest,
        minimal("  component: { path: ./bin/agent.wasm }\n"),
    )
    .unwrap();

    let loaded = LoadedAgent::from_file(&manifest).unwrap();
    assert_eq!(loaded.manifest_path, manifest);
    assert!(loaded.component_path.is_absolute());
    assert_eq!(
        loaded.component_path.canonicalize().unwrap(),
        dir.path().join("bin/agent.wasm").canonicalize().unwrap()
    );
    assert_eq!(loaded.agent.name(), "demo");
}

#[test]
fn from_file_names_a_missing_component_and_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("agent.yaml");
    std::fs::write(&manifest, minimal("  component: { path: ./x.wasm }\n")).unwrap();

    let err = LoadedAgent::from_file(&manifest).unwrap_err();
    let resolved = dir.path().join("x.wasm"); // absolute, with the "./" dropped
    assert_eq!(
        err.to_string(),
        format!(
            "{}: spec.component.path: ./x.wasm: no such file (resolved to {})",
            manifest.display(),
            resolved.display()
        )
    );
    assert_eq!(err.path(), "spec.component.path");
}

#[test]
fn from_file_leaves_a_pinned_image_to_the_puller_and_refuses_a_malformed_one() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("agent.yaml");
    let image = "registry.example.com/a@sha256:abababababababababababababababababababababababababababababababab";
    std::fs::write(
        &manifest,
        minimal(&format!("  component: {{ image: \"{image}\" }}\n")),
    )
    .unwrap();
    let loaded = LoadedAgent::from_file(&manifest).unwrap();
    // Not pulled yet: the runtime refuses to load it until it is resolved.
    assert!(loaded.image.is_none());
    assert_eq!(loaded.component_path, std::path::PathBuf::from(image));

    std::fs::write(
        &manifest,
        minimal("  component: { image: \"registry.example.com/a@sha256:00\" }\n"),
    )
    .unwrap();
    let err = LoadedAgent::from_file(&manifest).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: spec.component.image: registry.example.com/a@sha256:00: sha256:00: not a digest; write sha256: and 64 lower-case hex digits",
            manifest.display()
        )
    );
}

#[test]
fn from_file_prefixes_manifest_errors_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("agent.yaml");
    std::fs::write(
        &manifest,
        minimal("  component: { path: a.wasm }\n  limits: { memory: 64MB }\n"),
    )
    .unwrap();

    let err = LoadedAgent::from_file(&manifest).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: spec.limits.memory: \"64MB\" is not a quantity; use 64Mi or 67108864",
            manifest.display()
        )
    );
    assert_eq!(err.path(), "spec.limits.memory");
    assert_eq!(
        err.message(),
        "\"64MB\" is not a quantity; use 64Mi or 67108864"
    );
}

#[test]
fn from_file_names_an_unreadable_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("missing.yaml");
    let err = LoadedAgent::from_file(&manifest).unwrap_err();
    assert!(matches!(err, ManifestError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read: ", manifest.display())),
        "{err}"
    );
}

#[test]
fn crd_is_generated_for_group_and_version() {
    let crd = Agent::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("agents.agent-host.dev"));
    assert_eq!(crd.spec.group, "agent-host.dev");
    assert_eq!(crd.spec.names.kind, "Agent");
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version
        .subresources
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .is_some());

    let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let limits = &spec["limits"]["properties"];
    assert_eq!(limits["memory"]["x-kubernetes-int-or-string"], true);
    assert_eq!(limits["memory"]["default"], "64Mi");
    assert_eq!(limits["timeout"]["type"], "string");
    assert_eq!(limits["timeout"]["default"], "30s");
    let http = &spec["capabilities"]["properties"]["http"]["items"]["properties"];
    assert_eq!(http["url"]["type"], "string");
    assert_eq!(http["methods"]["default"], serde_json::json!(["GET"]));
    assert!(
        !schema.to_string().contains("additionalProperties\":false"),
        "not structural: {schema}"
    );
}

/// Parses without the host's validation, as the API server would store it
/// before its own CEL checks run.
fn unvalidated(spec: &str) -> Agent {
    serde_norway::from_str(&minimal(spec)).unwrap()
}

fn cel_errors(agent: &Agent) -> String {
    match kube::core::cel::validate_cel(agent) {
        Ok(()) => String::new(),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn crd_cel_rules_accept_the_examples_and_the_full_manifest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "examples/hello/agent.yaml",
        "examples/incident-responder/agent.yaml",
    ] {
        let agent: Agent =
            serde_norway::from_str(&std::fs::read_to_string(root.join(file)).unwrap()).unwrap();
        assert_eq!(cel_errors(&agent), "", "{file}");
    }
    assert_eq!(cel_errors(&Agent::from_yaml(FULL).unwrap()), "");
    let quantities = unvalidated(
        "  component: { path: a.wasm }\n  limits: { memory: 64Mi, maxOutputBytes: 1000, maxQueue: 10000 }\n",
    );
    assert_eq!(cel_errors(&quantities), "");
}

#[test]
fn crd_cel_rules_refuse_what_the_host_refuses() {
    let cases = [
        (
            "  component: { path: a.wasm, image: 'r/x@sha256:00' }\n",
            "exactly one of component.path or component.image",
        ),
        ("  component: {}\n", "exactly one of component.path or component.image"),
        ("  component: { path: a.wasm }\n  limits: { fuel: 0 }\n", "fuel must be greater than 0"),
        (
            "  component: { path: a.wasm }\n  limits: { maxConcurrency: 0 }\n",
            "maxConcurrency must be greater than 0",
        ),
        ("  component: { path: a.wasm }\n  limits: { memory: '0Mi' }\n", "must be greater than 0"),
        ("  component: { path: a.wasm }\n  limits: { maxOutputBytes: 0 }\n", "must be greater than 0"),
        ("  component: { path: a.wasm }\n  limits: { maxQueue: 20000 }\n", "maxQueue must be at most 10000"),
        ("  component: { path: a.wasm }\n  limits: { maxDenials: 1000 }\n", "maxDenials must be at most 256"),
        (
            "  component: { path: a.wasm }\n  capabilities:\n    http:\n      - { url: 'https://a.test/', allowedCidrs: ['0.0.0.0/0'] }\n",
            "allowedCidrs must not contain a /0 range",
        ),
    ];
    for (spec, expected) in cases {
        let errors = cel_errors(&unvalidated(spec));
        assert!(errors.contains(expected), "{spec}: {errors:?}");
    }
    let opted_in = unvalidated(
        "  component: { path: a.wasm }\n  capabilities:\n    http:\n      - { url: 'https://a.test/', allowedCidrs: ['0.0.0.0/0'], allowAllAddresses: true }\n",
    );
    assert_eq!(cel_errors(&opted_in), "", "the explicit opt-in allows /0");
}

#[test]
fn a_tool_schema_compiles_and_a_mismatch_names_the_offending_field() {
    let yaml = minimal(concat!(
        "  component: { path: a.wasm }\n",
        "  tool:\n",
        "    description: Counts.\n",
        "    inputSchema:\n",
        "      type: object\n",
        "      properties: { n: { type: integer }, tags: { type: array, items: { $ref: \"#/$defs/tag\" } } }\n",
        "      required: [n]\n",
        "      $defs: { tag: { type: string } }\n",
    ));
    let tool = Agent::from_yaml(&yaml).unwrap().spec.tool.unwrap();
    let compiled = tool.compile().unwrap();
    assert!(compiled.check_input(&serde_json::json!({ "n": 1 })).is_ok());
    let wrong = compiled
        .check_input(&serde_json::json!({ "n": 1, "tags": ["a", 2] }))
        .unwrap_err();
    assert_eq!(wrong.field, "/tags/1");
    let missing = compiled.check_input(&serde_json::json!({})).unwrap_err();
    assert_eq!(missing.field, "");
    assert!(
        missing.message.contains("\"n\" is a required property"),
        "{missing:?}"
    );
    assert!(!compiled.has_output_schema());
}
