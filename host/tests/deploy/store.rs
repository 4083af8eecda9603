//! The store the replicas share, as the built manifests set it: the bundled Redis
//! (its own StatefulSet, persistent and reachable from the host pods only) and the
//! external-redis component that swaps it for a managed one.

use agent_host::manifest::Quantity;
use serde_json::Value;

use super::kustomize::{all, id, Kustomization};
use super::{builds, deploy, host_container, kustomizations, rel};

/// The value of the environment variable `name` of `container`.
pub fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

/// The host's `AGENT_HOST_STORE`, parsed.
pub fn store_url(docs: &[Value]) -> url::Url {
    let deployment = all(docs, "Deployment").next().expect("a Deployment");
    let url = env(host_container(deployment), "AGENT_HOST_STORE").expect("AGENT_HOST_STORE");
    url::Url::parse(url).unwrap()
}

/// The Secret behind the volume mounted at the directory holding `file`.
pub fn secret_of(pod: &Value, container: &Value, file: &str) -> String {
    let dir = file.rsplit_once('/').unwrap().0;
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("{file}: nothing is mounted at {dir}"));
    assert_eq!(mount["readOnly"], true, "{file}");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    volume["secret"]["secretName"]
        .as_str()
        .unwrap_or_else(|| panic!("{file} is not on a Secret volume: {volume}"))
        .to_owned()
}

/// The host reads the store's password from a mounted Secret, outside the
/// directory whose secrets an Agent's `secretKeyRef` may name; returns the Secret.
fn host_password_secret(at: &str, docs: &[Value]) -> String {
    let deployment = all(docs, "Deployment").next().unwrap();
    let host = host_container(deployment);
    let file = env(host, "AGENT_HOST_STORE_PASSWORD_FILE")
        .unwrap_or_else(|| panic!("{at}: no AGENT_HOST_STORE_PASSWORD_FILE"));
    let agents_secrets = env(host, "AGENT_HOST_SECRETS_DIR").unwrap();
    assert!(
        !file.starts_with(&format!("{agents_secrets}/")),
        "{at}: {file} is under {agents_secrets}, where an Agent's secretKeyRef can name it"
    );
    secret_of(&deployment["spec"]["template"]["spec"], host, file)
}

/// Redis's `maxmemory` (`640mb`, `1gb`) in bytes.
fn redis_bytes(value: &str) -> u64 {
    let (digits, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap());
    let unit = match unit {
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        other => panic!("unit {other}"),
    };
    digits.parse::<u64>().unwrap() * unit
}

#[test]
fn replicas_share_one_redis_that_persists_every_write_and_admits_only_the_host_pods() {
    let mut bundled = 0;
    for (at, docs) in builds() {
        let Some(set) = all(&docs, "StatefulSet").next() else {
            continue;
        };
        bundled += 1;
        let spec = &set["spec"];
        assert_eq!(
            spec["replicas"], 1,
            "{at}: one primary, not diverging copies"
        );
        let selector = &spec["selector"]["matchLabels"];

        // The host's URL names the headless Service governing the StatefulSet.
        let url = store_url(&docs);
        let service = all(&docs, "Service")
            .find(|s| s["metadata"]["name"] == spec["serviceName"])
            .unwrap_or_else(|| panic!("{at}: no Service {}", spec["serviceName"]));
        assert_eq!(service["spec"]["clusterIP"], "None", "{at}: headless");
        assert_eq!(&service["spec"]["selector"], selector, "{at}");
        assert_eq!(url.scheme(), "redis", "{at}");
        assert_eq!(
            Some(url.host_str().unwrap()),
            service["metadata"]["name"].as_str(),
            "{at}"
        );
        assert_eq!(url.port(), Some(6379), "{at}");
        assert_eq!(service["spec"]["ports"][0]["port"], 6379, "{at}");

        // Append-only, fsynced every second, never evicting, in the volume.
        let pod = &spec["template"]["spec"];
        let redis = &pod["containers"][0];
        let config_volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["configMap"].is_object())
            .expect("a redis.conf volume");
        let config_map = all(&docs, "ConfigMap")
            .find(|c| c["metadata"]["name"] == config_volume["configMap"]["name"])
            .unwrap();
        let conf = config_map["data"]["redis.conf"].as_str().unwrap();
        let setting = |name: &str| {
            conf.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{at}: redis.conf sets no {name}"))
        };
        assert_eq!(setting("appendonly"), "yes", "{at}");
        assert_eq!(setting("appendfsync"), "everysec", "{at}");
        assert_eq!(setting("maxmemory-policy"), "noeviction", "{at}");
        let args: String = redis["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(args.contains("/etc/redis/redis.conf"), "{at}: {args}");
        let dir = setting("dir");
        let claim = &spec["volumeClaimTemplates"][0];
        assert!(
            redis["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == dir && m["name"] == claim["metadata"]["name"]),
            "{at}: {dir} is not on the claimed volume"
        );
        assert_eq!(
            claim["spec"]["accessModes"],
            serde_json::json!(["ReadWriteOnce"])
        );
        assert!(
            claim["spec"]["resources"]["requests"]["storage"].is_string(),
            "{at}"
        );
        let limit: Quantity = redis["resources"]["limits"]["memory"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            redis_bytes(setting("maxmemory")) < limit.bytes() * 3 / 4,
            "{at}: maxmemory leaves no room for the AOF rewrite fork under {limit}"
        );
        for probe in ["livenessProbe", "readinessProbe"] {
            assert!(redis[probe].is_object(), "{at}: no {probe}");
        }

        // One password: the Secret Redis requires is the one the host reads.
        let host_secret = host_password_secret(&at, &docs);
        assert!(args.contains("--requirepass"), "{at}: {args}");
        let password_file = args
            .split('"')
            .find_map(|part| part.strip_prefix("$(cat ")?.strip_suffix(')'))
            .expect("the password read from a file");
        assert_eq!(secret_of(pod, redis, password_file), host_secret, "{at}");

        // The host pods may leave for the store's pods on 6379.
        let to_store = all(&docs, "NetworkPolicy").any(|p| {
            p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "agent-host"
                && p["spec"]["egress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| {
                        r["to"][0]["podSelector"]["matchLabels"] == *selector
                            && r["ports"][0]["port"] == 6379
                    })
        });
        assert!(to_store, "{at}: no egress from the host pods to the store");
    }
    assert!(bundled >= 2, "the base and its overlay bundle the store");
}

#[test]
fn the_external_redis_component_replaces_the_bundled_redis_with_tls_and_egress_by_address() {
    let component = deploy().join("components/external-redis");
    let users: Vec<Kustomization> = kustomizations()
        .into_iter()
        .filter(|k| {
            k.components
                .iter()
                .any(|c| c.canonicalize().ok() == component.canonicalize().ok())
        })
        .collect();
    assert!(
        !users.is_empty(),
        "no overlay uses components/external-redis: nothing builds it"
    );
    for k in users {
        let at = rel(&k.dir);
        let docs = k.build();
        for doc in &docs {
            let name = doc["metadata"]["name"].as_str().unwrap_or("");
            let selects_redis = doc["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                == "agent-host-redis";
            assert!(
                !name.starts_with("agent-host-redis")
                    && !selects_redis
                    && doc["kind"] != "StatefulSet",
                "{at}: {} of the bundled Redis is left",
                id(doc)
            );
        }
        let url = store_url(&docs);
        assert_eq!(
            url.scheme(),
            "rediss",
            "{at}: a managed Redis is reached over TLS"
        );
        assert!(
            url.password().is_none(),
            "{at}: the password belongs in the Secret"
        );
        host_password_secret(&at, &docs);
        let egress = all(&docs, "NetworkPolicy")
            .find(|p| p["metadata"]["name"] == "allow-store-egress")
            .unwrap();
        let rule = &egress["spec"]["egress"][0];
        assert!(rule["to"][0]["ipBlock"]["cidr"].is_string(), "{at}: {rule}");
        assert_eq!(rule["ports"][0]["port"], url.port().unwrap(), "{at}");
    }
}
