//! Components from a registry, against a real OCI registry on loopback
//! (Debian's `docker-registry`, Distribution 2.8, no referrers API) and
//! Debian's `skopeo`, both from `make setup`: push, pull by digest, run;
//! skopeo's view of what the host pushes and the host's of what skopeo
//! copies; tampered content, signatures by trusted, untrusted and
//! mismatched keys, policy changes over a warm cache, signer-bound grant
//! ceilings, credentials, and registries that are down, huge or slow.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use agent_host::oci::auth::Credentials;
use agent_host::oci::client::{sha256, Client};
use agent_host::oci::layout::{self, Descriptor, Manifest};
use agent_host::oci::signature::{self, PrivateKey};
use agent_host_test_guests as guests;
use agent_host_test_guests::registry::{skopeo, Registry};
use bytes::Bytes;

use crate::support::BIN;

/// A registry, a working directory (cache, state, keys, policy, manifests)
/// and the host binary pointed at both.
struct Setup {
    registry: Registry,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self::with(Registry::start())
    }

    fn with(registry: Registry) -> Self {
        Setup {
            registry,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `agent-host ARGS` with this setup's registry (plain HTTP), cache and policy.
    fn host(&self, args: &[&str]) -> Output {
        self.host_with(args, |_| {})
    }

    fn host_with(&self, args: &[&str], configure: impl FnOnce(&mut Command)) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("AGENT_HOST_INSECURE_REGISTRIES", self.registry.addr())
            .env("AGENT_HOST_CACHE_DIR", self.path("cache"))
            .env("AGENT_HOST_STATE_DIR", self.path("state"))
            .env("AGENT_HOST_SECRETS_DIR", self.path("secrets"))
            .env("AGENT_HOST_TRUST_POLICY", self.path("policy.yaml"))
            .env("AGENT_HOST_PULL_TIMEOUT", "20s")
            .env_remove("AGENT_HOST_REGISTRY_AUTH");
        configure(&mut cmd);
        cmd.output().unwrap()
    }

    /// `agent-host push`: the printed digest-pinned reference.
    fn push(&self, wasm: &str, repo_tag: &str) -> String {
        let out = self.host(&[
            "push",
            wasm,
            &format!("{}/{repo_tag}", self.registry.addr()),
        ]);
        assert!(out.status.success(), "push: {}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// `agent-host keygen` into the working directory.
    fn keygen(&self, name: &str) {
        let out = self.host(&["keygen", "--out", self.path(name).to_str().unwrap()]);
        assert!(out.status.success(), "keygen: {}", text(&out));
    }

    fn sign(&self, reference: &str, key: &str) {
        let key = self.path(&format!("{key}.key"));
        let out = self.host(&["sign", reference, "--key", key.to_str().unwrap()]);
        assert!(out.status.success(), "sign: {}", text(&out));
    }

    /// Writes the trust policy: `keys` (YAML list items) and `rules`.
    fn policy(&self, keys: &str, rules: &str) {
        std::fs::write(
            self.path("policy.yaml"),
            format!("apiVersion: agent-host.dev/v1alpha1\nkind: TrustPolicy\nkeys:\n{keys}\nrules:\n{rules}\n"),
        )
        .unwrap();
    }

    /// The rule every test starts from: this registry's `agents/**` requires `keys`.
    fn require(&self, keys: &str) -> String {
        format!(
            "  - {{repositories: '{}/agents/**', signatures: require, keys: [{keys}]}}",
            self.registry.addr()
        )
    }

    /// An Agent running `image`, with `spec` lines after the component.
    fn agent(&self, name: &str, image: &str, spec: &str) -> PathBuf {
        let path = self.path(&format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!("apiVersion: agent-host.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: {name}\nspec:\n  component:\n    image: {image}\n{spec}"),
        )
        .unwrap();
        path
    }

    fn run(&self, manifest: &Path) -> Output {
        self.host(&[
            "run",
            "-f",
            manifest.to_str().unwrap(),
            "--input",
            r#"{"name":"oci"}"#,
            "--json",
        ])
    }

    fn check(&self, manifest: &Path) -> Output {
        self.host(&["check", "-f", manifest.to_str().unwrap()])
    }

    fn client(&self) -> Client {
        Client::new(Credentials::default(), vec![self.registry.addr()])
    }

    /// The registry's own copy of a blob, for tampering.
    fn stored_blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.registry.storage().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn keys(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("  - {{name: {n}, publicKeyFile: {n}.pub}}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Asserts `out` failed with exit code 2 and says `wanted`.
fn refused(out: &Output, wanted: &str) {
    let said = text(out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains(wanted), "expected {wanted:?} in:\n{said}");
    assert!(!said.contains("\"outcome\""), "nothing ran: {said}");
}

#[test]
fn pushed_by_the_host_read_by_skopeo_and_what_skopeo_copies_runs() {
    let s = Setup::new();
    s.keygen("platform");
    s.policy(&keys(&["platform"]), &s.require("platform"));
    let pinned = s.push(guests::HELLO, "agents/hello:v1");
    assert!(
        pinned.starts_with(&format!("{}/agents/hello@sha256:", s.registry.addr())),
        "{pinned}"
    );

    // The standard tools read the CNCF Wasm layout; plain `inspect` refuses non-images.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{pinned}"),
    ]);
    assert!(raw.status.success(), "{}", text(&raw));
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        layout::WASM_CONFIG,
        "{manifest}"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        layout::WASM_LAYER,
        "{manifest}"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        sha256(&raw.stdout),
        pinned.split_once('@').unwrap().1,
        "the printed digest is the manifest's"
    );

    s.sign(&pinned, "platform");
    let out = s.run(&s.agent("hello", &pinned, ""));
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "ok", "{report}");
    assert!(report["output"].to_string().contains("oci"), "{report}");

    // skopeo copies it to another repository; the host pulls the copy.
    let copy = format!("{}/agents/copied:v2", s.registry.addr());
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{pinned}"),
        &format!("docker://{copy}"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{copy}"),
    ]);
    let copied = format!(
        "{}/agents/copied@{}",
        s.registry.addr(),
        sha256(&raw.stdout)
    );
    s.sign(&copied, "platform");
    let out = s.run(&s.agent("copied", &copied, ""));
    assert!(out.status.success(), "{}", text(&out));

    // check shows where it came from and who signed it.
    let out = s.check(&s.agent("hello", &pinned, ""));
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("image       {pinned}")), "{said}");
    assert!(said.contains("signer      platform (rules[0]"), "{said}");

    // A tag is refused unless the rule allows tags; then it resolves to the
    // digest, which is what is verified and reported.
    let tagged = s.agent(
        "tagged",
        &format!("{}/agents/hello:v1", s.registry.addr()),
        "",
    );
    refused(&s.check(&tagged), "a tag; pin a digest");
    s.policy(
        &keys(&["platform"]),
        &format!("  - {{repositories: '{}/agents/**', signatures: require, keys: [platform], allowTags: true}}", s.registry.addr()),
    );
    let out = s.check(&tagged);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("image       {pinned}")), "{said}");
}

#[test]
fn the_older_single_layer_artifact_type_is_accepted() {
    let s = Setup::new();
    s.policy(
        "  []",
        &format!(
            "  - {{repositories: '{}/legacy/**', signatures: allow-unsigned}}",
            s.registry.addr()
        ),
    );
    let wasm = Bytes::from(std::fs::read(guests::HELLO).unwrap());
    let client = s.client();
    let reg = s.registry.addr();
    let digest = block_on(async {
        client
            .put_blob(&reg, "legacy/hello", wasm.clone())
            .await
            .unwrap();
        let config = Bytes::from_static(b"{}");
        client
            .put_blob(&reg, "legacy/hello", config.clone())
            .await
            .unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(layout::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::of("application/vnd.wasm.config.v1+json", &config),
            layers: vec![Descriptor::of(layout::OLD_WASM_LAYER, &wasm)],
            annotations: Default::default(),
        };
        client
            .put_manifest(
                &reg,
                "legacy/hello",
                "v1",
                Bytes::from(layout::to_bytes(&manifest)),
                layout::OCI_MANIFEST,
            )
            .await
            .unwrap()
    });
    let out = s.run(&s.agent("legacy", &format!("{reg}/legacy/hello@{digest}"), ""));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn tampered_layers_and_manifests_are_refused_before_compile() {
    let s = Setup::new();
    s.policy(
        "  []",
        &format!(
            "  - {{repositories: '{}/agents/**', signatures: allow-unsigned}}",
            s.registry.addr()
        ),
    );
    let hello = s.push(guests::HELLO, "agents/hello:v1");
    let echo = s.push(guests::ECHO, "agents/echo:v1");
    let layer_of = |pinned: &str| {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{pinned}"),
        ]);
        let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        m["layers"][0]["digest"].as_str().unwrap().to_owned()
    };

    // The registry serves other bytes for hello's layer.
    let stored = s.stored_blob(&layer_of(&hello));
    let original = std::fs::read(&stored).unwrap();
    std::fs::write(&stored, std::fs::read(guests::ECHO).unwrap()).unwrap();
    let out = s.run(&s.agent("hello", &hello, ""));
    refused(&out, "content does not match its digest");
    std::fs::write(&stored, &original).unwrap();

    // A manifest stored under echo's digest that points at hello's layer.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{hello}"),
    ]);
    let stored = s.stored_blob(echo.split_once('@').unwrap().1);
    std::fs::write(&stored, &raw.stdout).unwrap();
    let out = s.run(&s.agent("echo", &echo, ""));
    refused(&out, "content does not match its digest");
    // Nothing was compiled: the compile cache holds no entry.
    let compiled = std::fs::read_dir(s.path("cache"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(compiled, 0, "a refused component was never compiled");
}

#[test]
fn signatures_are_verified_by_the_policy_in_force_at_each_load() {
    let s = Setup::new();
    s.keygen("platform");
    s.keygen("stranger");
    let rule = s.require("platform");
    s.policy(&keys(&["platform", "stranger"]), &rule);
    let hello = s.push(guests::HELLO, "agents/hello:v1");
    let echo = s.push(guests::ECHO, "agents/echo:v1");
    let agent = s.agent("hello", &hello, "");

    // Unsigned under require.
    refused(&s.run(&agent), "unsigned: no signature under");
    // Signed by a key the rule does not trust.
    s.sign(&hello, "stranger");
    refused(&s.run(&agent), "signed by an untrusted key");
    // A trusted signature of another digest, stored under hello's signature tag.
    let key = PrivateKey::from_file(&s.path("platform.key")).unwrap();
    let reg = s.registry.addr();
    let hello_digest = hello.split_once('@').unwrap().1.to_owned();
    let echo_digest = echo.split_once('@').unwrap().1.to_owned();
    let client = s.client();
    block_on(async {
        let payload = Bytes::from(signature::payload(
            &format!("{reg}/agents/echo"),
            &echo_digest,
        ));
        client
            .put_blob(&reg, "agents/hello", payload.clone())
            .await
            .unwrap();
        let config = Bytes::from_static(b"{}");
        client
            .put_blob(&reg, "agents/hello", config.clone())
            .await
            .unwrap();
        let mut layer = Descriptor::of(layout::COSIGN_LAYER, &payload);
        layer.annotations.insert(
            layout::COSIGN_SIGNATURE_ANNOTATION.into(),
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                key.sign(&payload),
            ),
        );
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(layout::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::of(layout::OCI_IMAGE_CONFIG, &config),
            layers: vec![layer],
            annotations: Default::default(),
        };
        client
            .put_manifest(
                &reg,
                "agents/hello",
                &layout::signature_tag(&hello_digest),
                Bytes::from(layout::to_bytes(&manifest)),
                layout::OCI_MANIFEST,
            )
            .await
            .unwrap();
    });
    refused(&s.run(&agent), "signature does not match the digest");
    // Signed by the trusted key: runs.
    s.sign(&hello, "platform");
    let out = s.run(&agent);
    assert!(out.status.success(), "{}", text(&out));

    // echo runs while unsigned components are allowed (cached now) ...
    let echo_agent = s.agent("echo", &echo, "");
    s.policy(
        &keys(&["platform"]),
        &format!("  - {{repositories: '{reg}/agents/**', signatures: allow-unsigned}}"),
    );
    let out = s.run(&echo_agent);
    assert!(out.status.success(), "{}", text(&out));
    // ... and is refused at the next load once the policy requires a signature,
    // with the registry down too: the cache never stands in for a verification.
    s.policy(&keys(&["platform"]), &rule);
    refused(&s.run(&echo_agent), "unsigned");
    let mut s = s;
    s.registry.stop();
    let out = s.run(&echo_agent);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // hello's signature was seen by this host: it loads with the registry down.
    let out = s.run(&agent);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_manifest_granting_more_than_its_signer_allows_is_refused_naming_the_grant() {
    let s = Setup::new();
    s.keygen("platform");
    s.keygen("app");
    std::fs::create_dir_all(s.path("secrets/token")).unwrap();
    std::fs::write(s.path("secrets/token/value"), "s3cret").unwrap();
    s.policy(
        &format!("{}\n  - {{name: app, publicKeyFile: app.pub, ceiling: {{secrets: false, egress: ['*.svc.cluster.local']}}}}", keys(&["platform"])),
        &s.require("platform, app"),
    );
    // One component, one manifest, in two repositories signed by different keys.
    let by_platform = s.push(guests::ENV_PROBE, "agents/platform/probe:v1");
    let by_app = s.push(guests::ENV_PROBE, "agents/app/probe:v1");
    assert_eq!(
        by_platform.split_once('@').unwrap().1,
        by_app.split_once('@').unwrap().1
    );
    s.sign(&by_platform, "platform");
    s.sign(&by_app, "app");
    let spec = "  capabilities:\n    env:\n      - name: TOKEN\n        valueFrom: { secretKeyRef: { name: token, key: value } }\n";

    let out = s.check(&s.agent("probe", &by_platform, spec));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("signer      platform"),
        "{}",
        text(&out)
    );

    let out = s.check(&s.agent("probe", &by_app, spec));
    refused(&out, "spec.capabilities.env[0].valueFrom.secretKeyRef: reads a Secret, above the ceiling for components signed by `app` (trust policy keys[1].ceiling.secrets)");

    // Within the ceiling the app key's component loads, and check shows the ceiling.
    let out = s.check(&s.agent("probe", &by_app, ""));
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("signer      app"), "{said}");
    assert!(
        said.contains("ceiling     secrets: none · egress: *.svc.cluster.local"),
        "{said}"
    );
    let egress = "  capabilities:\n    http:\n      - url: https://api.example.com/\n";
    refused(
        &s.check(&s.agent("probe", &by_app, egress)),
        "spec.capabilities.http[0].url: reaches api.example.com",
    );
}

#[test]
fn registry_credentials_come_from_a_docker_config_file() {
    let s = Setup::with(Registry::start_with_auth("robot", "pa55"));
    s.policy(
        "  []",
        &format!(
            "  - {{repositories: '{}/agents/**', signatures: allow-unsigned}}",
            s.registry.addr()
        ),
    );
    let auth = s.path("config.json");
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths": {{"{}": {{"username": "robot", "password": "pa55"}}}}}}"#,
            s.registry.addr()
        ),
    )
    .unwrap();
    let with_auth = |cmd: &mut Command| {
        cmd.env("AGENT_HOST_REGISTRY_AUTH", &auth);
    };
    let target = format!("{}/agents/hello:v1", s.registry.addr());
    let out = s.host(&["push", guests::HELLO, &target]);
    refused(&out, "refused access");
    let out = s.host_with(&["push", guests::HELLO, &target], with_auth);
    assert!(out.status.success(), "{}", text(&out));
    let pinned = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let agent = s.agent("hello", &pinned, "");
    refused(&s.run(&agent), "--registry-auth names none for it");
    let out = s.host_with(
        &["run", "-f", agent.to_str().unwrap(), "--input", "{}"],
        with_auth,
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_registry_that_is_down_fails_the_load_with_a_clear_error() {
    let mut s = Setup::new();
    s.policy(
        "  []",
        &format!(
            "  - {{repositories: '{}/agents/**', signatures: allow-unsigned}}",
            s.registry.addr()
        ),
    );
    let pinned = s.push(guests::HELLO, "agents/hello:v1");
    s.registry.stop();
    let agent = s.agent("hello", &pinned, "");
    let started = Instant::now();
    refused(
        &s.run(&agent),
        &format!("registry {} is unreachable", s.registry.addr()),
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "retries stay within the pull deadline"
    );
    // serve refuses to start rather than serve less than it was given.
    let out = s.host(&[
        "serve",
        "-f",
        agent.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    refused(&out, "is unreachable");
}

/// A stand-in registry on loopback whose every answer is `respond(path)`.
fn fake_registry(respond: impl Fn(&str, &mut std::net::TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            respond(&path, &mut stream);
        }
    });
    addr
}

#[test]
fn oversized_and_slow_registries_are_cut_off() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let s = Setup::new();
    let run_against = |addr: &str, timeout: &str| {
        s.policy(
            "  []",
            &format!("  - {{repositories: '{addr}/**', signatures: allow-unsigned}}"),
        );
        let agent = s.agent("x", &format!("{addr}/agents/x@{digest}"), "");
        let started = Instant::now();
        let out = s.host_with(&["check", "-f", agent.to_str().unwrap()], |cmd| {
            cmd.env("AGENT_HOST_INSECURE_REGISTRIES", addr)
                .env("AGENT_HOST_PULL_TIMEOUT", timeout);
        });
        (out, started.elapsed())
    };

    // A manifest declared larger than the cap is refused before it is read.
    let huge = fake_registry(|_, stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 2000000000\r\n\r\n{");
    });
    let (out, _) = run_against(&huge, "20s");
    refused(&out, "too large");
    // One that streams without a length is cut off at the cap.
    let endless = fake_registry(|_, stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n");
        let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, " ".repeat(64 << 10));
        for _ in 0..64 {
            if stream.write_all(chunk.as_bytes()).is_err() {
                return;
            }
        }
    });
    let (out, _) = run_against(&endless, "20s");
    refused(&out, "the host reads at most 1048576");
    // A layer declared larger than a component may be is refused before download.
    let big_layer = fake_registry(|_, stream| {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"sha256:{}","size":2}},"layers":[{{"mediaType":"application/wasm","digest":"sha256:{}","size":999999999999}}]}}"#,
            layout::OCI_MANIFEST,
            layout::WASM_CONFIG,
            "cd".repeat(32),
            "ef".repeat(32)
        );
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{body}",
            layout::OCI_MANIFEST,
            body.len()
        );
    });
    let (out, _) = run_against(&big_layer, "20s");
    // The manifest's own digest does not match the pin either; whichever is
    // checked first, nothing is downloaded or compiled.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A registry that accepts and never answers: the pull deadline ends it.
    let silent = fake_registry(|_, stream| {
        let _ = stream;
        std::thread::sleep(Duration::from_secs(120));
    });
    let (out, took) = run_against(&silent, "3s");
    refused(&out, "timed out");
    assert!(
        took < Duration::from_secs(15),
        "the pull deadline held: {took:?}"
    );
}
