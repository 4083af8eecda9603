//! Components as signed OCI artifacts, as the built manifests set them up: Agents name
//! their component by digest, the trust policy is an operator-owned ConfigMap mounted
//! where `AGENT_HOST_TRUST_POLICY` points and admits those Agents only signed, pulled
//! blobs are cached on a volume with room for them, registry credentials stay out of
//! the Agents' reach, and the host pods reach the registry on 443 only.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use agent_host::manifest::Quantity;
use serde_json::{json, Value};

use super::kustomize::{all, documents, only};
use super::store::{env, secret_of};
use super::{agent_files, builds, deploy, host_container, kustomizations, overlays, rel};

/// The component that copies the component file from an agent image instead.
const INITCONTAINER_COMPONENT: &str = "components/component-initcontainer";
/// The component that mounts the registry's credentials.
const CREDENTIALS_COMPONENT: &str = "components/registry-credentials";

/// `REPOSITORY@sha256:<64 lowercase hex>`, with no tag: returns the repository.
fn pinned_repository(image: &str) -> Option<&str> {
    let (repository, digest) = image.split_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    let last = repository.rsplit('/').next()?;
    let pinned = hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && repository.contains('/')
        && !last.contains(':');
    pinned.then_some(repository)
}

/// A trust-policy `repositories` pattern: `/**` at the end matches any path below,
/// `*` one path segment.
fn repository_matches(pattern: &str, repository: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix("/**") {
        return repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'));
    }
    let (pattern, repository): (Vec<&str>, Vec<&str>) = (
        pattern.split('/').collect(),
        repository.split('/').collect(),
    );
    pattern.len() == repository.len()
        && pattern
            .iter()
            .zip(&repository)
            .all(|(p, r)| *p == "*" || p == r)
}

/// The host container's volume mount at `dir` exactly, and the pod volume behind it.
fn mount_at<'a>(deployment: &'a Value, dir: &str) -> Option<(&'a Value, &'a Value)> {
    let pod = &deployment["spec"]["template"]["spec"];
    let mount = host_container(deployment)["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"] == dir)?;
    let volume = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])?;
    Some((mount, volume))
}

/// `openssl pkey -pubin -text`'s description of the PEM public key `pem` (fails
/// on anything that is not one).
fn describe_public_key(pem: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (Debian package openssl; `make setup` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not a PEM public key: {}\n{pem}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pinned_repository_accepts_only_a_sha256_digest_without_a_tag() {
    let hex = "0123456789abcdef".repeat(4);
    assert_eq!(
        pinned_repository(&format!("r.example.com:5000/a/b@sha256:{hex}")),
        Some("r.example.com:5000/a/b")
    );
    for bad in [
        "r.example.com/a/b:v1".to_owned(),
        format!("r.example.com/a/b:v1@sha256:{hex}"),
        format!("r.example.com/a/b@sha256:{}", &hex[1..]),
        format!("r.example.com/a/b@sha256:{}", hex.to_uppercase()),
        format!("r.example.com/a/b@sha512:{hex}"),
        format!("b@sha256:{hex}"),
    ] {
        assert_eq!(pinned_repository(&bad), None, "{bad}");
    }
    assert!(repository_matches(
        "r.example.com/agents/**",
        "r.example.com/agents/x/y"
    ));
    assert!(!repository_matches(
        "r.example.com/agents/**",
        "r.example.com/agentsx/y"
    ));
    assert!(repository_matches(
        "r.example.com/*/x",
        "r.example.com/agents/x"
    ));
    assert!(!repository_matches(
        "r.example.com/*/x",
        "r.example.com/a/b/x"
    ));
}

#[test]
fn overlay_agents_pin_their_component_image_by_digest() {
    let overlay_agents: Vec<_> = agent_files()
        .into_iter()
        .filter(|f| f.starts_with(deploy()))
        .collect();
    assert!(!overlay_agents.is_empty(), "no Agent under deploy/overlays");
    for file in overlay_agents {
        let agent = documents(&file).remove(0);
        let component = &agent["spec"]["component"];
        let image = component["image"].as_str().unwrap_or_default();
        assert!(
            pinned_repository(image).is_some(),
            "{}: spec.component.image {image:?} is not REPOSITORY@sha256:<64 hex>",
            rel(&file)
        );
        assert!(component.get("path").is_none(), "{}", rel(&file));
    }
    // Built, an overlay's Agent keeps its pinned image, unless the overlay ships the
    // component in an agent image instead (then the initContainer test applies).
    let initcontainer = deploy()
        .join(INITCONTAINER_COMPONENT)
        .canonicalize()
        .unwrap();
    for overlay in overlays() {
        let at = rel(&overlay.dir);
        let docs = overlay.build();
        let component = &only(&docs, "Agent")["spec"]["component"];
        let copies_files = overlay
            .components
            .iter()
            .any(|c| c.canonicalize().ok().as_ref() == Some(&initcontainer));
        match component["image"].as_str() {
            Some(image) => assert!(pinned_repository(image).is_some(), "{at}: {image}"),
            None => assert!(
                copies_files && component["path"].is_string(),
                "{at}: an Agent without an image outside the {INITCONTAINER_COMPONENT} overlay: {component}"
            ),
        }
    }
}

#[test]
fn trust_policy_config_map_is_mounted_read_only_where_agent_host_trust_policy_points() {
    for (at, docs) in builds() {
        let deployment = only(&docs, "Deployment");
        let host = host_container(deployment);
        let file = env(host, "AGENT_HOST_TRUST_POLICY")
            .unwrap_or_else(|| panic!("{at}: no AGENT_HOST_TRUST_POLICY: every image is refused"));
        let (dir, name) = file.rsplit_once('/').unwrap();
        let (mount, volume) = mount_at(deployment, dir)
            .unwrap_or_else(|| panic!("{at}: nothing is mounted at {dir}, where {file} is"));
        assert_eq!(
            mount["readOnly"], true,
            "{at}: the policy is operator-owned"
        );
        assert!(
            mount.get("subPath").is_none(),
            "{at}: a subPath mount never sees ConfigMap updates"
        );
        let config_map = volume["configMap"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: {file} is not on a ConfigMap volume: {volume}"));
        assert_eq!(config_map, "agent-host-trust-policy", "{at}");
        assert!(
            volume["configMap"].get("items").is_none(),
            "{at}: every key is a file"
        );
        let data = &all(&docs, "ConfigMap")
            .find(|c| c["metadata"]["name"] == config_map)
            .unwrap_or_else(|| panic!("{at}: no ConfigMap {config_map}"))["data"];

        let text = data[name]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: ConfigMap {config_map} has no key {name}"));
        let policy: Value = serde_norway::from_str(text).unwrap();
        assert_eq!(policy["apiVersion"], "agent-host.dev/v1alpha1", "{at}");
        assert_eq!(policy["kind"], "TrustPolicy", "{at}");
        let keys = policy["keys"].as_array().expect("keys");
        assert!(!keys.is_empty(), "{at}: a policy without keys");
        for key in keys {
            // publicKeyFile is relative to the policy file: another key of the ConfigMap.
            let pem = match (key["publicKeyFile"].as_str(), key["publicKey"].as_str()) {
                (Some(file), None) => data[file].as_str().unwrap_or_else(|| {
                    panic!(
                        "{at}: key {}: {file} is not in ConfigMap {config_map}",
                        key["name"]
                    )
                }),
                (None, Some(inline)) => inline,
                _ => panic!(
                    "{at}: key {} names neither or both of publicKeyFile and publicKey",
                    key["name"]
                ),
            };
            let description = describe_public_key(pem);
            assert!(
                description.contains("P-256") || description.contains("prime256v1"),
                "{at}: key {} is not ECDSA P-256: {description}",
                key["name"]
            );
        }
        let names: Vec<&Value> = keys.iter().map(|k| &k["name"]).collect();
        let rules = policy["rules"].as_array().expect("rules");
        assert!(
            !rules.is_empty(),
            "{at}: a policy without rules refuses every image"
        );
        for rule in rules {
            assert_eq!(
                rule["signatures"], "require",
                "{at}: the shipped policy admits no unsigned component: {rule}"
            );
            assert!(
                rule["allowTags"] == false || rule.get("allowTags").is_none(),
                "{at}: the shipped policy admits digests only: {rule}"
            );
            for key in rule["keys"].as_array().expect("rule keys") {
                assert!(names.contains(&key), "{at}: rule names unknown key {key}");
            }
        }
        // The first rule matching the Agent's repository admits it, signed.
        if let Some(agent) = all(&docs, "Agent").next() {
            if let Some(image) = agent["spec"]["component"]["image"].as_str() {
                let repository = pinned_repository(image).unwrap();
                let rule = rules
                    .iter()
                    .find(|r| repository_matches(r["repositories"].as_str().unwrap(), repository))
                    .unwrap_or_else(|| panic!("{at}: no trust policy rule admits {repository}"));
                assert_eq!(rule["signatures"], "require", "{at}");
            }
        }
    }
}

#[test]
fn pulled_components_are_cached_on_a_writable_volume_with_room_for_the_cache_limit() {
    for (at, docs) in builds() {
        let deployment = only(&docs, "Deployment");
        let host = host_container(deployment);
        let cache = env(host, "AGENT_HOST_OCI_CACHE")
            .unwrap_or_else(|| panic!("{at}: no AGENT_HOST_OCI_CACHE"));
        let max: u64 = env(host, "AGENT_HOST_OCI_CACHE_MAX_BYTES")
            .unwrap_or_else(|| panic!("{at}: no AGENT_HOST_OCI_CACHE_MAX_BYTES"))
            .parse()
            .expect("a byte count");
        // The mount holding the cache directory (the deepest one whose path is a prefix).
        let (mount, volume) = host["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .filter(|dir| Path::new(cache).starts_with(dir))
            .max_by_key(|dir| dir.len())
            .and_then(|dir| mount_at(deployment, dir))
            .unwrap_or_else(|| panic!("{at}: {cache} is on no volume of the host container"));
        assert!(mount["readOnly"] != true, "{at}: {cache} is read-only");
        let size: Quantity = volume["emptyDir"]["sizeLimit"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: {cache} is not on an emptyDir with a sizeLimit"))
            .parse()
            .unwrap();
        assert!(
            max < size.bytes(),
            "{at}: AGENT_HOST_OCI_CACHE_MAX_BYTES {max} does not fit the {size} volume {cache} is on"
        );
        // Compiled components share the cache volume.
        if cache.starts_with(&format!("{}/", env(host, "AGENT_HOST_CACHE_DIR").unwrap())) {
            assert!(
                max <= size.bytes() / 2,
                "{at}: the pulled blobs ({max}) leave the compiled components less than half of {size}"
            );
        }
    }
}

#[test]
fn registry_credentials_component_mounts_its_secret_read_only_outside_the_agents_secrets_dir() {
    let component = deploy().join(CREDENTIALS_COMPONENT).canonicalize().unwrap();
    let mut users = 0;
    for k in kustomizations().iter().filter(|k| !k.is_component()) {
        let at = rel(&k.dir);
        let docs = k.build();
        let deployment = only(&docs, "Deployment");
        let host = host_container(deployment);
        let lists_it = k
            .components
            .iter()
            .any(|c| c.canonicalize().ok().as_ref() == Some(&component));
        let Some(file) = env(host, "AGENT_HOST_REGISTRY_AUTH") else {
            assert!(
                !lists_it,
                "{at}: lists {CREDENTIALS_COMPONENT} but sets no AGENT_HOST_REGISTRY_AUTH"
            );
            continue;
        };
        users += 1;
        let secrets_dir = env(host, "AGENT_HOST_SECRETS_DIR").unwrap();
        assert!(
            !Path::new(file).starts_with(secrets_dir),
            "{at}: {file} is under {secrets_dir}, where an Agent's secretKeyRef can name it"
        );
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(secret_of(pod, host, file), "agent-host-registry", "{at}");
        let (dir, name) = file.rsplit_once('/').unwrap();
        let (_, volume) = mount_at(deployment, dir).unwrap();
        assert_eq!(
            volume["secret"]["items"],
            json!([{ "key": ".dockerconfigjson", "path": name }]),
            "{at}: the dockerconfigjson Secret's one key, at {file}"
        );
        assert_eq!(volume["secret"]["defaultMode"], 0o440, "{at}");
    }
    assert!(
        users >= 1,
        "no kustomization builds {CREDENTIALS_COMPONENT}"
    );
}

#[test]
fn host_pods_reach_the_registry_on_443_and_no_private_range_through_it() {
    // Ranges the broad registry rule must leave closed: the cluster's and node's
    // networks, cloud metadata, loopback.
    const PRIVATE_V4: [&str; 5] = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
    ];
    const PRIVATE_V6: [&str; 2] = ["fc00::/7", "fe80::/10"];
    for (at, docs) in builds() {
        let policy = all(&docs, "NetworkPolicy")
            .find(|p| p["metadata"]["name"] == "allow-registry-egress")
            .unwrap_or_else(|| {
                panic!("{at}: no allow-registry-egress: pulls cannot leave the pod")
            });
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "agent-host",
            "{at}"
        );
        assert_eq!(policy["spec"]["policyTypes"], json!(["Egress"]), "{at}");
        for rule in policy["spec"]["egress"].as_array().unwrap() {
            assert_eq!(
                rule["ports"],
                json!([{"protocol": "TCP", "port": 443}]),
                "{at}"
            );
            for peer in rule["to"].as_array().unwrap() {
                let block = &peer["ipBlock"];
                let except: Vec<&str> = block["except"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e.as_str().unwrap())
                    .collect();
                let closed: &[&str] = match block["cidr"].as_str() {
                    Some("0.0.0.0/0") => &PRIVATE_V4,
                    Some("::/0") => &PRIVATE_V6,
                    _ => &[],
                };
                for range in closed {
                    assert!(
                        except.contains(range),
                        "{at}: the registry rule opens {range}"
                    );
                }
            }
        }
    }
}
