//! One conformance suite for every guest language: the agent of
//! `tests/conformance/PROTOCOL.md`, written in each language with its SDK,
//! run through the real host under the same manifests with the same
//! assertions. The sandbox holds alike for all of them: env only as declared,
//! files only under read-only mounts, HTTP only to granted URLs, CPU, memory
//! and output budgets ending in the same typed errors, key-value commits only
//! on success — and the host keeps serving after each.

use std::sync::OnceLock;

use agent_host::{InvocationError, PreparedAgent};
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, pod_host_environment, task, Harness, TestServer};
use serde_json::{json, Value};

/// A guest language and how its conformance component is obtained.
#[derive(Clone, Copy, Debug)]
enum Lang {
    Rust,
    Python,
    TypeScript,
}

impl Lang {
    /// The component, built once per test run (and compiled into the shared
    /// cache once, so parallel tests do not each compile an interpreter).
    fn component(self) -> String {
        static PYTHON: OnceLock<String> = OnceLock::new();
        static TYPESCRIPT: OnceLock<String> = OnceLock::new();
        match self {
            Lang::Rust => guests::CONFORMANCE.to_string(),
            Lang::Python => PYTHON
                .get_or_init(|| {
                    precompile(&guests::python_guest(
                        "tests/conformance/python",
                        "conformance",
                    ))
                })
                .clone(),
            Lang::TypeScript => TYPESCRIPT
                .get_or_init(|| {
                    precompile(&guests::ts_guest("tests/conformance/ts", "conformance"))
                })
                .clone(),
        }
    }
}

/// Loads `component` once so it is compiled into the shared cache.
fn precompile(component: &str) -> String {
    Harness::new().agent("precompile", component, LIMITS);
    component.to_string()
}

/// Limits every language fits in (interpreters start with more memory).
const LIMITS: &str = "  limits: { memory: 128Mi, fuel: 2000000000, timeout: 10s }\n";

fn agent(h: &Harness, lang: Lang, name: &str, spec: &str) -> PreparedAgent {
    h.agent(name, &lang.component(), &format!("{spec}{LIMITS}"))
}

async fn run(agent: &PreparedAgent, input: Value) -> agent_host::Invocation {
    agent.invoke(task(input)).await
}

/// The host still runs a fresh invocation of `agent` after a breach.
async fn still_serves(agent: &PreparedAgent) {
    let inv = run(agent, json!({ "op": "echo", "value": "after" })).await;
    assert_eq!(output_json(&inv)["echo"], "after", "{:?}", inv.result);
}

async fn echo_and_output_cap(lang: Lang) {
    let h = Harness::new();
    let a = h.agent(
        "echo",
        &lang.component(),
        "  limits: { memory: 128Mi, fuel: 2000000000, timeout: 10s, maxOutputBytes: 4Ki }\n",
    );
    let value = json!({ "nested": [1, "two", null], "unicode": "é✓" });
    let inv = run(&a, json!({ "op": "echo", "value": value })).await;
    assert_eq!(output_json(&inv)["echo"], value, "{lang:?}");
    let inv = run(&a, json!({ "op": "output", "bytes": 8192 })).await;
    assert!(
        matches!(inv.result, Err(InvocationError::OutputTooLarge { .. })),
        "{lang:?}: {:?}",
        inv.result
    );
    still_serves(&a).await;
}

async fn env_only_as_declared(lang: Lang) {
    pod_host_environment();
    let h = Harness::new();
    let a = agent(
        &h,
        lang,
        "env",
        "  capabilities:\n    env: [{ name: REGION, value: eu-west }]\n",
    );
    let names = ["REGION", "AGENT_HOST_E2E_HOST_ONLY", "HOME", "PATH"];
    let out = output_json(&run(&a, json!({ "op": "env", "names": names })).await);
    assert_eq!(
        out["env"],
        json!({ "REGION": "eu-west", "AGENT_HOST_E2E_HOST_ONLY": null, "HOME": null, "PATH": null }),
        "{lang:?}"
    );
}

async fn filesystem_read_only_and_no_escape(lang: Lang) {
    let h = Harness::new();
    let data = h.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("runbook.md"), "restart the pod").unwrap();
    std::fs::write(h.dir.path().join("outside.txt"), "secret").unwrap();
    let a = agent(
        &h,
        lang,
        "fs",
        &format!(
            "  capabilities:\n    filesystem: [{{ hostPath: {}, guestPath: /data }}]\n",
            data.display()
        ),
    );
    let read = |path: &str| json!({ "op": "read", "path": path });
    let out = output_json(&run(&a, read("/data/runbook.md")).await);
    assert_eq!(
        out,
        json!({ "ok": true, "text": "restart the pod" }),
        "{lang:?}"
    );
    for escape in [
        "/data/../outside.txt",
        "/outside.txt",
        "/etc/passwd",
        "../outside.txt",
    ] {
        let out = output_json(&run(&a, read(escape)).await);
        assert_eq!(out["ok"], false, "{lang:?} read {escape}: {out}");
    }
    let out = output_json(
        &run(
            &a,
            json!({ "op": "write", "path": "/data/new.txt", "text": "x" }),
        )
        .await,
    );
    assert_eq!(
        out["ok"], false,
        "{lang:?}: wrote to a read-only mount: {out}"
    );
    assert!(!data.join("new.txt").exists());
}

async fn http_only_to_granted_urls(lang: Lang) {
    let server = TestServer::start(|_, uri, _| (200, format!("served {uri}"))).await;
    let h = Harness::new();
    let a = agent(
        &h,
        lang,
        "http",
        &format!(
            "  capabilities:\n    http: [{{ url: \"{}/allowed/\", methods: [GET] }}]\n",
            server.base()
        ),
    );
    let get = |url: String| json!({ "op": "http", "url": url });
    let inv = run(&a, get(format!("{}/allowed/x", server.base()))).await;
    let out = output_json(&inv);
    assert_eq!(
        out,
        json!({ "ok": true, "status": 200, "body": "served /allowed/x" }),
        "{lang:?}"
    );
    for refused in [
        format!("{}/denied", server.base()),
        "http://127.0.0.1:9/allowed/x".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let out = output_json(&run(&a, get(refused.clone())).await);
        assert_eq!(out["ok"], false, "{lang:?} {refused}: {out}");
    }
    let seen: Vec<String> = server.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(
        seen,
        ["/allowed/x"],
        "{lang:?}: only the granted request was sent"
    );
}

async fn log_records_reach_the_host(lang: Lang) {
    let h = Harness::new();
    let a = agent(&h, lang, "log", "");
    let inv = run(&a, json!({ "op": "log", "message": "checked the pod" })).await;
    assert_eq!(output_json(&inv), json!({ "logged": true }), "{lang:?}");
    assert!(inv.usage.log_records >= 1, "{lang:?}: {:?}", inv.usage);
}

async fn a_cpu_loop_ends_in_fuel_or_timeout(lang: Lang) {
    let h = Harness::new();
    let a = h.agent(
        "spin",
        &lang.component(),
        "  limits: { memory: 128Mi, fuel: 200000000, timeout: 3s }\n",
    );
    let inv = run(&a, json!({ "op": "spin" })).await;
    assert!(
        matches!(
            inv.result,
            Err(InvocationError::FuelExhausted { .. } | InvocationError::Timeout { .. })
        ),
        "{lang:?}: {:?}",
        inv.result
    );
    still_serves(&a).await;
}

async fn unbounded_allocation_ends_in_memory_limit(lang: Lang) {
    let h = Harness::new();
    let a = agent(&h, lang, "alloc", "");
    let inv = run(&a, json!({ "op": "alloc" })).await;
    assert!(
        matches!(inv.result, Err(InvocationError::MemoryLimit { .. })),
        "{lang:?}: {:?}",
        inv.result
    );
    still_serves(&a).await;
}

async fn key_value_commits_only_on_success(lang: Lang) {
    let h = Harness::new();
    let a = agent(
        &h,
        lang,
        "kv",
        "  capabilities:\n    keyValue: { maxBytes: 1Mi, buckets: [conformance] }\n",
    );
    let kv = |fail: bool| json!({ "op": "kv", "key": "seen", "fail": fail });
    assert_eq!(
        output_json(&run(&a, kv(false)).await)["count"],
        1,
        "{lang:?}"
    );
    let failed = run(&a, kv(true)).await;
    assert!(
        matches!(failed.result, Err(InvocationError::Agent { .. })),
        "{lang:?}: {:?}",
        failed.result
    );
    assert_eq!(
        output_json(&run(&a, kv(false)).await)["count"],
        2,
        "{lang:?}: the failed invocation's increment was rolled back"
    );
}

/// The same tests, once per language.
macro_rules! conformance {
    ($($module:ident => $lang:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn echo_and_output_cap() { super::echo_and_output_cap($lang).await }
            #[tokio::test(flavor = "multi_thread")]
            async fn env_only_as_declared() { super::env_only_as_declared($lang).await }
            #[tokio::test(flavor = "multi_thread")]
            async fn filesystem_read_only_and_no_escape() { super::filesystem_read_only_and_no_escape($lang).await }
            #[tokio::test(flavor = "multi_thread")]
            async fn http_only_to_granted_urls() { super::http_only_to_granted_urls($lang).await }
            #[tokio::test(flavor = "multi_thread")]
            async fn log_records_reach_the_host() { super::log_records_reach_the_host($lang).await }
            #[tokio::test(flavor = "multi_thread")]
            async fn a_cpu_loop_ends_in_fuel_or_timeout() { super::a_cpu_loop_ends_in_fuel_or_timeout($lang).await }
            #[tokio::test(flavor = "multi_thread")]
            async fn unbounded_allocation_ends_in_memory_limit() { super::unbounded_allocation_ends_in_memory_limit($lang).await }
            #[tokio::test(flavor = "multi_thread")]
            async fn key_value_commits_only_on_success() { super::key_value_commits_only_on_success($lang).await }
        }
    )*};
}

conformance! {
    rust => Lang::Rust,
    python => Lang::Python,
    typescript => Lang::TypeScript,
}

/// The Python and TypeScript SDKs' own unit tests (their logic against fake
/// WIT imports), run under `cargo test` so the suite's one command covers them.
#[test]
fn the_python_and_typescript_sdks_pass_their_unit_tests() {
    let root = guests::workspace();
    // The TypeScript SDK's tools come from its lockfile, installed by the build script.
    guests::ts_guest("tests/conformance/ts", "conformance");
    for (what, mut command) in [
        ("python", {
            let mut c = std::process::Command::new("python3");
            c.args([
                "-m",
                "unittest",
                "discover",
                "-s",
                "guest-sdk/python/tests",
                "-t",
                "guest-sdk/python/tests",
            ])
            .current_dir(&root);
            c
        }),
        ("typescript", {
            let mut c = std::process::Command::new("npm");
            c.args(["test", "--silent"])
                .current_dir(root.join("guest-sdk/js"));
            c
        }),
    ] {
        let out = command.output().expect("the SDK's tests run");
        assert!(
            out.status.success(),
            "{what} SDK tests failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
