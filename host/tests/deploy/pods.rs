//! The pods and what surrounds them: Pod Security, drain timing, probes, mounts,
//! memory, autoscaling, RBAC and NetworkPolicies, as the built manifests set them.

use std::collections::BTreeSet;
use std::path::Path;

use agent_host::manifest::{KubeDuration, Quantity};
use serde_json::{json, Value};

use super::kustomize::{all, id, only, Kustomization};
use super::{builds, deploy, host_container, overlays, pod_containers, rel, repo};

#[test]
fn pods_pass_the_restricted_pod_security_standard() {
    // Volume types `restricted` allows (Kubernetes Pod Security Standards).
    const VOLUMES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for (at, docs) in builds() {
        let labels = &only(&docs, "Namespace")["metadata"]["labels"];
        assert_eq!(
            labels["pod-security.kubernetes.io/enforce"], "restricted",
            "{at}"
        );
        let deployment = only(&docs, "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{at}");
        assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{at}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{at}"
        );
        assert_eq!(
            pod["automountServiceAccountToken"], true,
            "{at}: the host reads its Agent from the API"
        );
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            assert!(pod[host] != true, "{at}: {host}");
        }
        for set in all(&docs, "StatefulSet") {
            let pod = &set["spec"]["template"]["spec"];
            let who = format!("{at} {}", id(set));
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{who}");
            assert!(
                pod["securityContext"]["runAsUser"].as_u64() > Some(0),
                "{who}"
            );
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{who}"
            );
            for host in ["hostNetwork", "hostPID", "hostIPC"] {
                assert!(pod[host] != true, "{who}: {host}");
            }
        }
        for volume in pod["volumes"].as_array().unwrap() {
            let kind = volume
                .as_object()
                .unwrap()
                .keys()
                .find(|k| *k != "name")
                .unwrap();
            assert!(
                VOLUMES.contains(&kind.as_str()),
                "{at}: volume {volume} is not allowed"
            );
        }
        // The store's pod (when the build has it) meets the same standard.
        let statefulsets = all(&docs, "StatefulSet");
        for c in pod_containers(deployment).chain(statefulsets.flat_map(pod_containers)) {
            let name = &c["name"];
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{at} {name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{at} {name}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{at} {name}");
            assert!(
                sc["capabilities"].get("add").is_none() && sc["privileged"] != true,
                "{at} {name}"
            );
            assert!(sc["runAsUser"] != 0, "{at} {name}");
            assert!(
                c["resources"]["limits"]["memory"].is_string(),
                "{at} {name}: memory limit"
            );
            assert!(
                c["resources"]["requests"]["cpu"].is_string(),
                "{at} {name}: cpu request"
            );
        }
    }
}

#[test]
fn pods_drain_within_their_termination_grace_period_and_probe_the_host() {
    for (at, docs) in builds() {
        let deployment = only(&docs, "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let host = host_container(deployment);
        let pre_stop = host["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .expect("a preStop sleep");
        let grace: KubeDuration = host["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "AGENT_HOST_SHUTDOWN_GRACE")
            .map_or("25s", |e| e["value"].as_str().unwrap())
            .parse()
            .unwrap();
        let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            termination > pre_stop + grace.as_duration().as_secs(),
            "{at}: terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop}s + shutdown grace {grace}"
        );
        assert!(
            pre_stop >= 3,
            "{at}: endpoints need a few seconds to drop the pod"
        );

        let args: Vec<&str> = host["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args[0], "serve", "{at}");
        assert!(args.contains(&"--listen=0.0.0.0:8080"), "{at}: {args:?}");
        assert_eq!(
            host["ports"][0],
            json!({"name": "http", "containerPort": 8080, "protocol": "TCP"}),
            "{at}"
        );
        // HTTPS exactly when the host terminates TLS (components/tls).
        let env = &host["env"];
        let tls = env
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "AGENT_HOST_TLS_CERT");
        let probe = |path: &str| match tls {
            true => json!({"path": path, "port": "http", "scheme": "HTTPS"}),
            false => json!({"path": path, "port": "http"}),
        };
        assert_eq!(host["readinessProbe"]["httpGet"], probe("/readyz"), "{at}");
        assert_eq!(host["livenessProbe"]["httpGet"], probe("/healthz"), "{at}");
        assert!(
            env.as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "AGENT_HOST_NAMESPACE"
                    && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
            "{at}: the namespace comes from the downward API"
        );

        let service = all(&docs, "Service")
            .find(|s| s["metadata"]["name"] == "agent-host")
            .unwrap_or_else(|| panic!("{at}: no Service agent-host"));
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "http", "{at}");
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        assert_eq!(&service["spec"]["selector"], selector, "{at}");
        assert_eq!(
            &only(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
            selector,
            "{at}"
        );
        for (key, value) in selector.as_object().unwrap() {
            assert_eq!(
                &deployment["spec"]["template"]["metadata"]["labels"][key], value,
                "{at}"
            );
        }
    }
}

#[test]
fn overlays_serve_their_agent_from_files_the_pod_has_or_an_image_the_host_pulls() {
    for overlay in overlays() {
        let at = rel(&overlay.dir);
        let docs = overlay.build();
        let agent = only(&docs, "Agent");
        let deployment = only(&docs, "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let host = host_container(deployment);
        let name = agent["metadata"]["name"].as_str().unwrap();
        assert!(
            host["args"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("--agent={name}"))),
            "{at}"
        );

        let mount_of = |path: &str| {
            host["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
                .unwrap_or_else(|| panic!("{at}: {path} is on no volume of the host container"))
                .clone()
        };
        // A component file's volume is filled by an initContainer from the agent image;
        // an image is pulled by the host (oci.rs checks it is pinned and trusted).
        if let Some(component) = agent["spec"]["component"]["path"].as_str() {
            let volume = mount_of(component)["name"].clone();
            assert!(
                pod["initContainers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["volumeMounts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["name"] == volume)),
                "{at}: nothing fills the {volume} volume that holds {component}"
            );
        } else {
            assert!(
                agent["spec"]["component"]["image"].is_string(),
                "{at}: the Agent names neither a path nor an image"
            );
        }
        // Each filesystem grant points into a mounted volume, read-only where the grant is.
        let generated = generated_config_maps(&overlay);
        for grant in agent["spec"]["capabilities"]["filesystem"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let mount = mount_of(&format!("{}/", grant["hostPath"].as_str().unwrap()));
            if grant["readOnly"] != false {
                assert_eq!(mount["readOnly"], true, "{at}: {grant}");
            }
            let volume = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            if let Some(config_map) = volume["configMap"]["name"].as_str() {
                assert!(
                    generated.iter().any(|g| g == config_map),
                    "{at}: ConfigMap {config_map} is generated by nobody"
                );
            }
        }
    }
}

/// The ConfigMaps `k` and the kustomizations it builds on generate.
fn generated_config_maps(k: &Kustomization) -> Vec<String> {
    let own = k.doc["configMapGenerator"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g["name"].as_str().unwrap().to_owned());
    let nested = k
        .resources
        .iter()
        .filter(|r| r.is_dir())
        .flat_map(|r| generated_config_maps(&Kustomization::load(r)));
    own.chain(nested).collect()
}

#[test]
fn overlays_give_every_concurrent_invocation_its_memory_and_scale_out_before_queueing() {
    for overlay in overlays() {
        let at = rel(&overlay.dir);
        let docs = overlay.build();
        let agent = only(&docs, "Agent");
        let deployment = only(&docs, "Deployment");
        let host = host_container(deployment);
        // Every concurrent invocation may use its full linear memory (an int-or-string).
        let limits = &agent["spec"]["limits"];
        let per_invocation: Quantity = match &limits["memory"] {
            Value::Null => "64Mi".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
        .parse()
        .unwrap();
        let slots = limits["maxConcurrency"].as_u64().unwrap_or(32);
        let container: Quantity = host["resources"]["limits"]["memory"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            container.bytes() >= slots * per_invocation.bytes() + (128 << 20),
            "{at}: memory limit {container} < maxConcurrency {slots} x {per_invocation} + 128Mi for the host"
        );
        // The HPA scales out before invocations queue.
        let hpa = only(&docs, "HorizontalPodAutoscaler");
        assert_eq!(
            hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"],
            "{at}"
        );
        let in_flight = hpa["spec"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["pods"]["metric"]["name"] == "agent_host_invocations_in_flight")
            .expect("the in-flight Pods metric");
        let target: u64 = in_flight["pods"]["target"]["averageValue"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            target <= slots,
            "{at}: target {target} in flight above maxConcurrency {slots}"
        );
        let min_available = only(&docs, "PodDisruptionBudget")["spec"]["minAvailable"]
            .as_u64()
            .unwrap();
        assert!(
            hpa["spec"]["minReplicas"].as_u64().unwrap() > min_available,
            "{at}: the PDB would block every drain"
        );
    }
}

#[test]
fn host_writes_only_to_writable_volumes_as_its_root_filesystem_is_read_only() {
    for (at, docs) in builds() {
        let host = host_container(only(&docs, "Deployment"));
        let arg = |name: &str| {
            host["args"].as_array().unwrap().iter().find_map(|a| {
                a.as_str()
                    .unwrap()
                    .strip_prefix(&format!("--{name}="))
                    .map(str::to_owned)
            })
        };
        let env = |name: &str| {
            host["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].as_str().unwrap().to_owned())
        };
        let audit_log = arg("audit-log").expect("an audit log");
        let written = [
            audit_log.rsplit_once('/').unwrap().0.to_owned(),
            env("AGENT_HOST_CACHE_DIR").expect("a cache directory"),
            env("AGENT_HOST_STATE_DIR").expect("a state directory"),
            "/tmp".to_owned(),
        ];
        for dir in written {
            let mounted = host["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == dir.as_str() && m["readOnly"] != true);
            assert!(mounted, "{at}: {dir} is on no writable volume");
        }
    }
}

#[test]
fn incident_responder_runbooks_are_the_examples() {
    let example = repo().join("examples/incident-responder/runbooks");
    let overlay = deploy().join("overlays/incident-responder/runbooks");
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&overlay), names(&example));
    for name in names(&example) {
        assert_eq!(
            std::fs::read(overlay.join(&name)).unwrap(),
            std::fs::read(example.join(&name)).unwrap(),
            "runbooks/{name} differs from the example's"
        );
    }
}

#[test]
fn role_grants_the_host_its_agent_its_status_and_events_only() {
    let expected: BTreeSet<String> = [
        "agent-host.dev/agents:get",
        "agent-host.dev/agents:list",
        "agent-host.dev/agents:watch",
        "agent-host.dev/agents/status:patch",
        "/events:create",
        "/events:patch",
        "events.k8s.io/events:create",
        "events.k8s.io/events:patch",
    ]
    .map(String::from)
    .into();
    for (at, docs) in builds() {
        let role = only(&docs, "Role");
        let agent = all(&docs, "Agent").next();
        let mut granted = BTreeSet::new();
        for rule in role["rules"].as_array().unwrap() {
            let strings = |field: &str| -> Vec<String> {
                rule[field]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            for group in strings("apiGroups") {
                // An overlay's host may read and report on its own Agent only.
                if let (Some(agent), "agent-host.dev") = (agent, group.as_str()) {
                    assert_eq!(
                        rule["resourceNames"],
                        json!([agent["metadata"]["name"]]),
                        "{at}: {rule}"
                    );
                }
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        granted.insert(format!("{group}/{resource}:{verb}"));
                    }
                }
            }
        }
        assert_eq!(granted, expected, "{at}");
        let binding = only(&docs, "RoleBinding");
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"], "{at}");
        let account = &only(&docs, "ServiceAccount")["metadata"]["name"];
        assert_eq!(&binding["subjects"][0]["name"], account, "{at}");
        let pod = &only(&docs, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(&pod["serviceAccountName"], account, "{at}");
    }
}

/// `(namespace, port)` of each egress peer selected by namespace name.
fn egress_namespaces(docs: &[Value]) -> BTreeSet<(String, u64)> {
    let mut found = BTreeSet::new();
    for policy in all(docs, "NetworkPolicy") {
        for rule in policy["spec"]["egress"].as_array().into_iter().flatten() {
            for peer in rule["to"].as_array().unwrap() {
                if let Some(ns) =
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str()
                {
                    for port in rule["ports"].as_array().unwrap() {
                        found.insert((ns.to_owned(), port["port"].as_u64().unwrap()));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn network_policies_deny_by_default_then_open_dns_the_api_server_callers_and_the_agents_services() {
    for (at, docs) in builds() {
        let policies: Vec<&Value> = all(&docs, "NetworkPolicy").collect();
        assert!(
            policies
                .iter()
                .any(|p| p["spec"]["podSelector"] == json!({})
                    && p["spec"]["policyTypes"] == json!(["Ingress", "Egress"])
                    && p["spec"].get("ingress").is_none()
                    && p["spec"].get("egress").is_none()),
            "{at}: no default-deny policy"
        );
        // Ingress: the host's HTTP port, and the store's port from the host pods only.
        let host_pods = json!({"matchLabels": {"app.kubernetes.io/name": "agent-host"}});
        for policy in &policies {
            let store = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                == "agent-host-redis";
            for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
                let port = if store { 6379 } else { 8080 };
                assert_eq!(
                    rule["ports"],
                    json!([{"protocol": "TCP", "port": port}]),
                    "{at}: {}",
                    id(policy)
                );
                if store {
                    assert_eq!(rule["from"], json!([{"podSelector": host_pods}]), "{at}");
                }
            }
        }
        let ip_ports: BTreeSet<u64> = policies
            .iter()
            .flat_map(|p| p["spec"]["egress"].as_array().into_iter().flatten())
            .filter(|r| {
                r["to"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|peer| peer.get("ipBlock").is_some())
            })
            .flat_map(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["port"].as_u64().unwrap())
            })
            .collect();
        // The registry (443, allow-registry-egress, checked in oci.rs) and a store
        // outside the cluster (external-redis) are reached by address too.
        let mut by_address: BTreeSet<u64> = [443, 6443].into();
        if all(&docs, "StatefulSet").next().is_none() {
            by_address.insert(super::store::store_url(&docs).port().unwrap().into());
        }
        assert_eq!(
            ip_ports, by_address,
            "{at}: only the API server, the registry and an external store are reached by address"
        );

        // Egress by namespace: DNS, plus exactly the in-cluster services the Agent calls.
        let mut expected: BTreeSet<(String, u64)> = [("kube-system".to_owned(), 53)].into();
        if let Some(agent) = all(&docs, "Agent").next() {
            for rule in agent["spec"]["capabilities"]["http"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let url = url::Url::parse(rule["url"].as_str().unwrap()).unwrap();
                let host = url.host_str().unwrap();
                let parts: Vec<&str> = host.split('.').collect();
                assert!(
                    parts.len() >= 3 && parts[2] == "svc",
                    "{at}: {host} is not an in-cluster service"
                );
                expected.insert((
                    parts[1].to_owned(),
                    u64::from(url.port_or_known_default().unwrap()),
                ));
            }
        }
        assert_eq!(egress_namespaces(&docs), expected, "{at}");
    }
}

#[test]
fn callers_are_authenticated_by_token_review_and_mounted_tokens_outside_the_agents_secrets() {
    for (at, docs) in builds() {
        let account = &only(&docs, "ServiceAccount")["metadata"]["name"];
        let binding = only(&docs, "ClusterRoleBinding");
        assert_eq!(binding["roleRef"]["kind"], "ClusterRole", "{at}");
        assert_eq!(binding["roleRef"]["name"], "system:auth-delegator", "{at}");
        assert_eq!(
            binding["subjects"],
            json!([{ "kind": "ServiceAccount", "name": account }]),
            "{at}"
        );

        let pod = &only(&docs, "Deployment")["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let env = |name: &str| -> Option<String> {
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .and_then(|e| e["value"].as_str().map(String::from))
        };
        assert_eq!(
            env("AGENT_HOST_TOKEN_REVIEW").as_deref(),
            Some("true"),
            "{at}"
        );
        let audience = env("AGENT_HOST_TOKEN_AUDIENCE").unwrap_or_default();
        // Never the API server's own audience: callers' API tokens must not work here.
        assert!(
            !audience.is_empty() && !audience.contains("kubernetes.default"),
            "{at}: {audience}"
        );
        let tokens = env("AGENT_HOST_CALLER_TOKENS").expect("AGENT_HOST_CALLER_TOKENS");
        let secrets = env("AGENT_HOST_SECRETS_DIR").expect("AGENT_HOST_SECRETS_DIR");
        assert!(
            !tokens.starts_with(&secrets),
            "{at}: caller tokens inside the Agents' secrets dir"
        );
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == tokens.as_str())
            .unwrap_or_else(|| panic!("{at}: nothing mounted at {tokens}"));
        assert_eq!(mount["readOnly"], true, "{at}");
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        assert_eq!(volume["secret"]["secretName"], "agent-host-callers", "{at}");
        // Nothing on the Agents' side of the host may read it.
        assert_eq!(volume["secret"]["defaultMode"], 288, "{at}");
    }
}

#[test]
fn the_tls_component_serves_https_from_a_mounted_secret_and_probes_over_https() {
    let overlay = Kustomization::load(&deploy().join("overlays/incident-responder-tls"));
    let docs = overlay.build();
    let pod = &only(&docs, "Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = |name: &str| -> String {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str().map(String::from))
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let (cert, key) = (env("AGENT_HOST_TLS_CERT"), env("AGENT_HOST_TLS_KEY"));
    let secrets = env("AGENT_HOST_SECRETS_DIR");
    for file in [&cert, &key] {
        assert!(
            !file.starts_with(&secrets),
            "{file} inside the Agents' secrets dir"
        );
        let dir = Path::new(file).parent().unwrap().to_str().unwrap();
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
        assert_eq!(mount["readOnly"], true);
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        assert_eq!(volume["secret"]["secretName"], "agent-host-tls");
    }
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
        assert_eq!(
            container[probe]["httpGet"]["path"]
                .as_str()
                .map(|p| p.starts_with('/')),
            Some(true),
            "{probe}"
        );
    }
    // Without the component, plain HTTP probes (the host serves no TLS).
    for (at, docs) in builds() {
        if at.ends_with("incident-responder-tls") {
            continue;
        }
        let container = &only(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
        assert!(
            container["readinessProbe"]["httpGet"]["scheme"].is_null(),
            "{at}"
        );
    }
}
