//! The Agents (overlays and examples) against the CRD's schema and CEL rules, and the
//! admission policy's rules on good and bad Agents.

use std::collections::BTreeSet;

use agent_host::manifest::Agent;
use kube::core::cel::{apply_defaults, AdmissionRequest, VapEvaluator, VapExpression};
use serde_json::{json, Value};

use super::kustomize::{documents, only};
use super::{agent_files, cluster_agent, crd_schema, deploy, rel, repo, tools, with, without};

/// The CRD's structural schema as JSON Schema, as strict as `kubectl apply` (whose
/// server-side field validation refuses unknown fields): `nullable` becomes a null
/// type, objects refuse undeclared properties, and the root takes the type fields.
fn strict_schema(schema: &Value) -> Value {
    fn tighten(schema: &mut Value) {
        let Value::Object(map) = schema else { return };
        if map.remove("nullable") == Some(Value::Bool(true)) {
            if let Some(t) = map.get("type").cloned() {
                map.insert("type".into(), json!([t, "null"]));
            }
        }
        if map.contains_key("properties")
            && !map.contains_key("additionalProperties")
            && !map.contains_key("x-kubernetes-preserve-unknown-fields")
        {
            map.insert("additionalProperties".into(), json!(false));
        }
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            props.values_mut().for_each(tighten);
        }
        if let Some(items) = map.get_mut("items") {
            tighten(items);
        }
    }
    let mut strict = schema.clone();
    tighten(&mut strict);
    let props = strict["properties"].as_object_mut().unwrap();
    props.insert(
        "apiVersion".into(),
        json!({ "const": "agent-host.dev/v1alpha1" }),
    );
    props.insert("kind".into(), json!({ "const": "Agent" }));
    props.insert(
        "metadata".into(),
        json!({ "type": "object", "required": ["name"] }),
    );
    strict["required"] = json!(["apiVersion", "kind", "metadata", "spec"]);
    strict
}

#[test]
fn agents_match_the_crd_schema_and_the_check_catches_mistakes() {
    let files = agent_files();
    assert!(files.len() >= 3, "overlay and example Agents: {files:?}");
    let mut docs = serde_json::Map::new();
    for file in &files {
        docs.insert(rel(file), documents(file).remove(0));
    }
    // Controls: the same check must refuse what the API server would.
    let good = cluster_agent();
    let controls = [
        (
            "unknown field",
            with(&good, "/spec/limits/fule", json!(1)),
            "spec/limits",
        ),
        (
            "wrong type",
            with(&good, "/spec/limits/maxConcurrency", json!("eight")),
            "maxConcurrency",
        ),
        (
            "bad url",
            with(&good, "/spec/capabilities/http/0/url", json!("ftp://x")),
            "url",
        ),
        (
            "bad method",
            with(&good, "/spec/capabilities/http/0/methods", json!(["FETCH"])),
            "methods",
        ),
    ];
    for (name, doc, _) in &controls {
        docs.insert(format!("control: {name}"), doc.clone());
    }

    let errors = tools::json_schema_errors(&strict_schema(&crd_schema()), &Value::Object(docs));
    for file in &files {
        assert_eq!(errors[rel(file)], json!([]), "{}", rel(file));
    }
    for (name, _, path) in controls {
        let found = errors[format!("control: {name}")].as_array().unwrap();
        assert!(
            found.iter().any(|e| e.as_str().unwrap().contains(path)),
            "{name}: expected an error at {path}, got {found:?}"
        );
    }
}

#[test]
fn agents_pass_the_crd_cel_rules_and_the_hosts_own_validation() {
    for file in agent_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        if let Err(e) = Agent::from_yaml(&text) {
            panic!("{}: the host refuses it: {e}", rel(&file));
        }
        let agent: Agent = serde_norway::from_str(&text).unwrap();
        if let Err(e) = kube::core::cel::validate_cel(&agent) {
            panic!("{}: the CRD's CEL rules refuse it: {e:?}", rel(&file));
        }
    }
}

// ------------------------------------------------------------- admission policy

fn policy_docs() -> Vec<Value> {
    documents(&deploy().join("base/admission-policy.yaml"))
}

fn policy_rules() -> Vec<VapExpression> {
    let policy = only(&policy_docs(), "ValidatingAdmissionPolicy").clone();
    policy["spec"]["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| VapExpression {
            expression: v["expression"].as_str().unwrap().to_owned(),
            message: Some(v["message"].as_str().unwrap().to_owned()),
            message_expression: None,
        })
        .collect()
}

/// The messages of the policy rules that refuse `agent` on CREATE. Evaluated as
/// written and with the CRD's defaults filled in (as the API server does before
/// admission); both must give the same answer.
fn refusals(rules: &[VapExpression], agent: &Value) -> Vec<String> {
    let evaluate = |object: Value| -> Vec<String> {
        let request = AdmissionRequest {
            operation: "CREATE".into(),
            ..Default::default()
        };
        VapEvaluator::builder()
            .object(object)
            .request(request)
            .build()
            .evaluate(rules)
            .into_iter()
            .filter(|r| !r.passed)
            .map(|r| r.message.unwrap_or_default())
            .collect()
    };
    let as_written = evaluate(agent.clone());
    let defaulted = evaluate(apply_defaults(&crd_schema(), agent));
    assert_eq!(
        as_written, defaulted,
        "defaults change the verdict on {agent}"
    );
    as_written
}

#[test]
fn admission_policy_admits_the_cluster_agents_and_agents_at_the_ceilings() {
    let rules = policy_rules();
    let agent = cluster_agent();
    let mut good: Vec<(String, Value)> = agent_files()
        .iter()
        .filter(|f| f.starts_with(deploy()) || f.ends_with("hello/agent.yaml"))
        .map(|f| (rel(f), documents(f).remove(0)))
        .collect();
    let ceilings = [
        ("/spec/limits/memory", json!("256Mi")),
        ("/spec/limits/memory", json!(268435456)),
        ("/spec/limits/fuel", json!(10_000_000_000u64)),
        ("/spec/limits/timeout", json!("5m")),
        ("/spec/limits/timeout", json!("4m59.5s")),
        (
            "/spec/capabilities/http/0/allowedCidrs",
            json!(["10.0.0.0/10", "fd00::/8"]),
        ),
        ("/spec/capabilities/http/0/allowAllAddresses", json!(false)),
        (
            "/spec/capabilities/mcp",
            json!([{ "name": "t", "url": "http://tickets.tools.svc/mcp", "tools": ["search"],
                     "allowedCidrs": ["10.96.0.0/12"], "allowAllAddresses": false }]),
        ),
        (
            "/spec/component/image",
            json!(format!(
                "registry.example.com:5000/a/b@sha256:{}",
                "f".repeat(64)
            )),
        ),
        (
            "/spec/capabilities/filesystem/0/hostPath",
            json!("/var/lib/agent-host/..data/x"),
        ),
    ];
    for (at, value) in ceilings {
        good.push((format!("{at} = {value}"), with(&agent, at, value)));
    }
    good.push((
        "no limits, no capabilities".into(),
        without(&without(&agent, "/spec/limits"), "/spec/capabilities"),
    ));
    for (name, agent) in good {
        assert_eq!(refusals(&rules, &agent), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn admission_policy_refuses_each_bad_agent_by_its_own_rule_and_every_rule_can_refuse() {
    let rules = policy_rules();
    let agent = cluster_agent();
    // (rule, field, values past the ceiling)
    let bad = [
        (
            "spec.limits.memory",
            "/spec/limits/memory",
            vec![json!("1Gi"), json!("257Mi"), json!(1073741824)],
        ),
        (
            "spec.limits.fuel",
            "/spec/limits/fuel",
            vec![json!(10_000_000_001u64)],
        ),
        (
            "spec.limits.timeout",
            "/spec/limits/timeout",
            vec![json!("1h"), json!("5m1s")],
        ),
        (
            "spec.component.image",
            "/spec/component/image",
            vec![
                json!("registry.example.com/agents/incident-responder:v1"),
                json!("registry.example.com/agents/incident-responder@sha256:abc"),
                json!(format!(
                    "registry.example.com/agents/x@sha256:{}:v1",
                    "0".repeat(64)
                )),
                json!(format!(
                    "registry.example.com/agents/x@sha512:{}",
                    "0".repeat(64)
                )),
            ],
        ),
        (
            "spec.capabilities.http[].allowAllAddresses",
            "/spec/capabilities/http/0/allowAllAddresses",
            vec![json!(true)],
        ),
        (
            "spec.capabilities.http[].allowedCidrs",
            "/spec/capabilities/http/0/allowedCidrs",
            vec![
                json!(["0.0.0.0/0"]),
                json!(["10.0.0.0/8", "::/0"]),
                json!(["0.0.0.0/00"]),
            ],
        ),
        (
            "spec.capabilities.mcp[].allowAllAddresses",
            "/spec/capabilities/mcp",
            vec![json!([{ "name": "t", "url": "http://t.test/mcp", "allowAllAddresses": true }])],
        ),
        (
            "spec.capabilities.mcp[].allowedCidrs",
            "/spec/capabilities/mcp",
            vec![
                json!([{ "name": "t", "url": "http://t.test/mcp", "allowedCidrs": ["::/0"] }]),
                json!([{ "name": "t", "url": "http://t.test/mcp", "allowedCidrs": ["10.0.0.0/8", "0.0.0.0/00"] }]),
            ],
        ),
        (
            "spec.capabilities.filesystem[].hostPath",
            "/spec/capabilities/filesystem/0/hostPath",
            [
                "/etc",
                "/var/lib/agent-host/../../etc",
                "/var/lib/agent-host/..",
                "/var/lib/agent-hostile/x",
                "/var/lib/agent-host",
            ]
            .map(|p| json!(p))
            .to_vec(),
        ),
    ];
    let mut refused_by = BTreeSet::new();
    for (rule, at, values) in bad {
        for value in values {
            let refused = refusals(&rules, &with(&agent, at, value.clone()));
            assert!(
                refused.len() == 1 && refused[0].starts_with(rule),
                "{at} = {value}: expected exactly the {rule} rule, got {refused:?}"
            );
            refused_by.insert(refused[0].clone());
        }
    }
    // The local-run example mounts a relative directory: fine on a laptop, refused here.
    let local = documents(&repo().join("examples/incident-responder/agent.yaml")).remove(0);
    let refused = refusals(&rules, &local);
    assert!(
        refused.len() == 1 && refused[0].starts_with("spec.capabilities.filesystem[].hostPath"),
        "{refused:?}"
    );
    let messages: BTreeSet<String> = rules.iter().map(|r| r.message.clone().unwrap()).collect();
    assert_eq!(
        refused_by, messages,
        "a rule no bad Agent trips is untested"
    );
}

#[test]
fn admission_policy_matches_agent_writes_and_is_bound_to_deny() {
    let docs = policy_docs();
    let policy = only(&docs, "ValidatingAdmissionPolicy");
    let binding = only(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let rules = policy["spec"]["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["apiGroups"] == json!(["agent-host.dev"])
                && r["resources"] == json!(["agents"])
                && r["operations"] == json!(["CREATE", "UPDATE"])),
        "{rules:?}"
    );
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert!(
        binding["spec"].get("matchResources").is_none(),
        "the ceilings hold in every namespace"
    );
}
