//! The `agent-host` binary as a user runs it: exit codes, reports, errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agent_host_test_guests as guests;

const BIN: &str = env!("CARGO_BIN_EXE_agent-host");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn manifest(&self, name: &str, component: &str, spec: &str) -> PathBuf {
        guests::write_manifest(self.dir.path(), name, component, spec)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("AGENT_HOST_CACHE_DIR", self.dir.path().join("cache"))
            .env("AGENT_HOST_LOG", "warn")
            .env_remove("AGENT_HOST_LOG_FORMAT")
            .output()
            .unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn run_prints_output_and_usage_and_exits_zero() {
    let env = Env::new();
    let manifest = env.manifest("hello", guests::HELLO, "");
    let out = env.run(&["run", "-f", p(&manifest), "--input", r#"{"name":"cli"}"#]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("outcome     ok"), "{stdout}");
    assert!(stdout.contains(r#""greeting":"hello, cli""#), "{stdout}");
    assert!(
        stdout.contains("fuel ") && stdout.contains("host calls"),
        "{stdout}"
    );
}

#[test]
fn run_json_reads_input_from_a_file() {
    let env = Env::new();
    let manifest = env.manifest("hello", guests::HELLO, "");
    let input = env.dir.path().join("task.json");
    std::fs::write(&input, r#"{"name":"file"}"#).unwrap();
    let out = env.run(&[
        "run",
        "-f",
        p(&manifest),
        "--input",
        &format!("@{}", p(&input)),
        "--json",
        "--id",
        "inv-1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["invocation"], "inv-1");
    assert_eq!(report["output"]["greeting"], "hello, file");
    assert!(report["usage"]["fuelConsumed"].as_u64().unwrap() > 0);
    assert!(report["usage"]["peakMemoryBytes"].as_u64().unwrap() > 0);
}

#[test]
fn budget_breach_exits_one_with_the_typed_error() {
    let env = Env::new();
    let manifest = env.manifest(
        "spin",
        guests::SPIN_FOREVER,
        "  limits: { fuel: 1000000 }\n",
    );
    let out = env.run(&["run", "-f", p(&manifest), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "FuelExhausted");
    assert_eq!(report["error"]["code"], "FuelExhausted");
    assert_eq!(report["usage"]["fuelConsumed"], 1_000_000);
}

#[test]
fn check_lists_each_import_and_shows_ungranted_http_denied_at_every_call() {
    let env = Env::new();
    let manifest = env.manifest("probe", guests::HTTP_PROBE, "");
    let out = env.run(&["check", "-f", p(&manifest)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("wasi:cli/environment"), "{stdout}");
    let http_line = stdout
        .lines()
        .find(|l| l.contains("wasi:http/outgoing-handler"))
        .expect(&stdout);
    assert!(
        http_line.contains("not granted: every call denied")
            && http_line.contains("spec.capabilities.http"),
        "{http_line}"
    );
    assert!(
        stdout.contains("not granted (every call denied)"),
        "{stdout}"
    );

    let granted = env.manifest(
        "probe-ok",
        guests::HTTP_PROBE,
        "  capabilities:\n    http: [ { url: \"http://127.0.0.1:1/\", methods: [GET] } ]\n",
    );
    let out = env.run(&["check", "-f", p(&granted)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("granted (http): GET http://127.0.0.1:1/"));
}

#[test]
fn bad_manifest_exits_two_naming_the_field() {
    let env = Env::new();
    let manifest = env.manifest("bad", guests::HELLO, "  limits: { memory: 64MB }\n");
    let out = env.run(&["run", "-f", p(&manifest)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(r#"spec.limits.memory: "64MB" is not a quantity; use 64Mi or 67108864"#),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing runs on a bad manifest");
}

#[test]
fn compile_fills_the_cache_that_run_then_uses() {
    let env = Env::new();
    let manifest = env.manifest("hello", guests::HELLO, "");
    let out = env.run(&["compile", "-f", p(&manifest)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let artifacts = std::fs::read_dir(env.dir.path().join("cache"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count();
    assert_eq!(artifacts, 1, "one precompiled artifact");
    assert!(
        env.dir.path().join("cache/cache.key").is_file(),
        "the cache key was created"
    );
    assert!(text(&out.stdout).contains("Miss"));
    let again = env.run(&["compile", "-f", p(&manifest)]);
    assert!(
        text(&again.stdout).contains("Hit"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn crd_output_is_the_committed_deploy_crd() {
    let out = Env::new().run(&["crd"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crd.yaml");
    let committed = std::fs::read_to_string(&committed).unwrap();
    assert!(
        text(&out.stdout) == committed,
        "deploy/crd.yaml is stale: regenerate it with `agent-host crd > deploy/crd.yaml`"
    );
}

#[test]
fn without_home_a_temp_state_dir_others_can_write_is_refused_naming_the_flag() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let env = Env::new();
    let tmp = env.dir.path().join("tmp");
    let uid = std::fs::metadata(env.dir.path()).unwrap().uid();
    // Another user got there first (in a shared /tmp) and left it writable.
    let planted = tmp.join(format!("agent-host-state-{uid}"));
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
    let manifest = env.manifest("hello", guests::HELLO, "");
    let run = || {
        Command::new(BIN)
            .args(["run", "-f", p(&manifest), "--input", r#"{"name":"cli"}"#])
            .env("AGENT_HOST_CACHE_DIR", env.dir.path().join("cache"))
            .env("TMPDIR", &tmp)
            .env("AGENT_HOST_LOG", "warn")
            .env_remove("HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("AGENT_HOST_STATE_DIR")
            .output()
            .unwrap()
    };
    let out = run();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "group- or world-writable",
        "--state-dir",
        "AGENT_HOST_STATE_DIR",
        "HOME",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }

    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

use crate::model;

/// The text report and `--json` show model tokens, model refusals and file
/// bytes written.
#[test]
fn run_reports_model_tokens_refusals_and_file_bytes_written() {
    let env = Env::new();
    let model = model::Model::start();
    let probe = env.manifest(
        "probe",
        guests::LLM_PROBE,
        &model.grant(", maxRequestsPerInvocation: 1"),
    );
    let input = r#"{"prompt":"db-1 is down","calls":2}"#;
    let out = env.run(&["run", "-f", p(&probe), "--input", input]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("  llm         openai test-model: 1 requests, 49 tokens, 1 denied"),
        "{stdout}"
    );
    let out = env.run(&["run", "-f", p(&probe), "--input", input, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["usage"]["llmTokens"], 49, "{report}");
    assert_eq!(report["usage"]["llmDenied"], 1, "{report}");

    let data = env.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let spec = format!(
        "  capabilities:\n    filesystem:\n      - {{ hostPath: {}, guestPath: /data, readOnly: false }}\n",
        data.display()
    );
    let fs = env.manifest("fs", guests::FS_PROBE, &spec);
    let write =
        |file: &str| format!(r#"{{"op":"write","path":"/data/{file}","data":"twelve bytes"}}"#);
    let out = env.run(&["run", "-f", p(&fs), "--input", &write("a.txt"), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "ok", "{report}");
    assert!(
        report["usage"]["fileWriteBytes"].as_u64().unwrap() >= 12,
        "{report}"
    );
    let out = env.run(&["run", "-f", p(&fs), "--input", &write("b.txt")]);
    let stdout = text(&out.stdout);
    let files = stdout
        .lines()
        .find(|l| l.starts_with("  filesystem  "))
        .unwrap_or_else(|| panic!("no files line: {stdout}"));
    assert!(
        files.contains(" written of ") && !files.contains(" 0 B written"),
        "{files}"
    );
}

/// A model call refused by its budget is charged to `spec.limits.maxDenials`
/// like a spent HTTP request budget: a guest retrying it in a loop is stopped.
#[test]
fn model_budget_refusals_count_toward_max_denials() {
    let env = Env::new();
    let model = model::Model::start();
    let spec = model.grant(", maxRequestsPerInvocation: 1") + "  limits: { maxDenials: 1 }\n";
    let probe = env.manifest("probe", guests::LLM_PROBE, &spec);
    let input = r#"{"prompt":"db-1 is down","calls":3}"#;
    let out = env.run(&["run", "-f", p(&probe), "--input", input, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["outcome"], "DenialLimit", "{report}");
}

/// `--store` refusals: exit 2, naming the flag at fault and what is allowed,
/// before anything runs.
#[test]
fn store_settings_that_cannot_be_used_exit_two_naming_the_flag() {
    let env = Env::new();
    let manifest = env.manifest("hello", guests::HELLO, "");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-f", p(&manifest), "--input", "{}"];
        args.extend(extra);
        let out = env.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{extra:?}: nothing ran");
        text(&out.stderr)
    };
    let err = run(&["--store", "http://cache:6379"]);
    for needle in [
        "--store",
        "scheme http://",
        "redis://",
        "rediss://",
        "--state-dir",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let err = run(&["--kv-redis", "cache:6379"]);
    assert!(
        err.contains("--kv-redis") && err.contains("rediss://"),
        "{err}"
    );
    let err = run(&["--store", "redis://a:6379", "--kv-redis", "redis://b:6379"]);
    assert!(
        err.contains("--store") && err.contains("--kv-redis"),
        "{err}"
    );
    let missing = env.dir.path().join("no-such-password");
    let err = run(&[
        "--store",
        "redis://a:6379",
        "--store-password-file",
        p(&missing),
    ]);
    assert!(
        err.contains("--store-password-file")
            && err.contains(p(&missing))
            && err.contains("cannot read it"),
        "{err}"
    );
    let password = env.dir.path().join("password");
    std::fs::write(&password, "from-the-file\n").unwrap();
    let err = run(&[
        "--store",
        "redis://:in-the-url@a:6379",
        "--store-password-file",
        p(&password),
    ]);
    assert!(err.contains("carries a password"), "{err}");
    assert!(
        !err.contains("in-the-url") && !err.contains("from-the-file"),
        "{err}"
    );
    let err = run(&["--store-password-file", p(&password)]);
    assert!(err.contains("no Redis store"), "{err}");
}

/// `--kv-redis` and `AGENT_HOST_KV_REDIS` still select Redis (the same store
/// `--store` then continues), each with a one-line deprecation note; both the
/// alias and `--store` from the environment are an error naming both.
#[test]
fn kv_redis_is_a_deprecated_alias_of_store() {
    let env = Env::new();
    let redis = guests::RedisServer::start();
    let manifest = env.manifest(
        "counter",
        guests::KV_COUNTER,
        "  capabilities:\n    keyValue: { maxBytes: 1Mi }\n",
    );
    let count = |out: Output| -> (u64, String) {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (report["output"]["count"].as_u64().unwrap(), stderr)
    };
    let run = ["run", "-f", p(&manifest), "--input", "{}", "--json"];
    let deprecated = |stderr: &str| {
        stderr
            .lines()
            .filter(|l| l.contains("--kv-redis (AGENT_HOST_KV_REDIS) is deprecated: use --store"))
            .count()
    };

    let (n, stderr) = count(env.run(&[&run[..], &["--kv-redis", &redis.url]].concat()));
    assert_eq!((n, deprecated(&stderr)), (1, 1), "{stderr}");
    let (n, stderr) = count(
        Command::new(BIN)
            .args(run)
            .env("AGENT_HOST_CACHE_DIR", env.dir.path().join("cache"))
            .env("AGENT_HOST_LOG", "warn")
            .env("AGENT_HOST_KV_REDIS", &redis.url)
            .output()
            .unwrap(),
    );
    assert_eq!((n, deprecated(&stderr)), (2, 1), "{stderr}");
    let (n, stderr) = count(env.run(&[&run[..], &["--store", &redis.url]].concat()));
    assert_eq!((n, deprecated(&stderr)), (3, 0), "{stderr}");

    let out = Command::new(BIN)
        .args(run)
        .args(["--store", &redis.url])
        .env("AGENT_HOST_CACHE_DIR", env.dir.path().join("cache"))
        .env("AGENT_HOST_KV_REDIS", &redis.url)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--store (AGENT_HOST_STORE) and --kv-redis (AGENT_HOST_KV_REDIS) are both set"
        ),
        "{stderr}"
    );
}

#[test]
fn the_readme_documents_every_flag_and_environment_variable_of_every_command() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let help = |args: &[&str]| text(&Command::new(BIN).args(args).output().unwrap().stdout);
    let top = help(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 6, "{top}");
    let mut missing = Vec::new();
    for command in &commands {
        let text = help(&[command, "--help"]);
        for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']') {
            let word = word.trim_end_matches('=');
            let flag = word.starts_with("--") && word.len() > 2 && word != "--help";
            let var = word.len() > 3
                && word.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                && (word.starts_with("AGENT_HOST_") || word == "POD_NAME");
            let word = word.split('<').next().unwrap_or(word);
            if (flag || var) && !readme.contains(word) {
                missing.push(format!("{command}: {word}"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "not in README.md: {missing:?}");
}

/// The workspace root, for the scaffold tests' shared guest target dir.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `agent-host new` writes an agent that builds with the command it prints
/// and runs under its manifest (no grants, modest limits); a bad name or an
/// existing directory is refused, nothing written.
#[test]
fn new_scaffolds_a_rust_agent_that_builds_and_runs() {
    let env = Env::new();
    let dir = env.dir.path().to_str().unwrap();
    let out = env.run(&["new", "ops-bot", "--lang", "rust", "--dir", dir]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let build = "cargo build --target wasm32-wasip2 --release";
    assert!(stdout.contains(build), "{stdout}");
    let agent = env.dir.path().join("ops-bot");
    let manifest = std::fs::read_to_string(agent.join("agent.yaml")).unwrap();
    assert!(
        manifest.contains("name: ops-bot") && !manifest.contains("capabilities:"),
        "{manifest}"
    );

    // Built as printed, into the workspace's guest target dir (its
    // dependencies are compiled there already) with the workspace's lock.
    std::fs::copy(workspace().join("Cargo.lock"), agent.join("Cargo.lock")).unwrap();
    let target = workspace().join("target/guests");
    let status = Command::new("cargo")
        .args(build.split(' ').skip(1))
        .current_dir(&agent)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(status.success());
    let component = agent.join("target/wasm32-wasip2/release/ops_bot.wasm");
    std::fs::create_dir_all(component.parent().unwrap()).unwrap();
    std::fs::copy(
        target.join("wasm32-wasip2/release/ops_bot.wasm"),
        &component,
    )
    .unwrap();
    assert_scaffold_greets(&env, &agent);

    for (name, wanted) in [
        ("Ops_Bot", "is not an agent name"),
        ("ops-bot", "already exists"),
    ] {
        let out = env.run(&["new", name, "--dir", dir]);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(wanted), "{}", text(&out.stderr));
    }
    let out = env.run(&["new", "x", "--dir", dir, "--sdk", "/nonexistent"]);
    assert!(
        text(&out.stderr).contains("pass --sdk"),
        "{}",
        text(&out.stderr)
    );
    assert!(!env.dir.path().join("x").exists());
}

/// The Python and TypeScript scaffolds build with the command `new` prints
/// (componentize-py from scripts/install-tools.sh; jco, installed by the
/// build script) and run under their manifests.
#[test]
fn new_scaffolds_python_and_typescript_agents_that_build_and_run() {
    let env = Env::new();
    let dir = env.dir.path().to_str().unwrap();
    for (lang, name) in [("python", "py-bot"), ("ts", "ts-bot")] {
        let out = env.run(&["new", name, "--lang", lang, "--dir", dir]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        let build = stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("python3 ") || l.starts_with("bash "))
            .unwrap_or_else(|| panic!("no build command in {stdout}"));
        let agent = env.dir.path().join(name);
        let mut words = build.split(' ');
        let status = Command::new(words.next().unwrap())
            .args(words)
            .current_dir(&agent)
            .status()
            .unwrap();
        assert!(status.success(), "{build}");
        assert_scaffold_greets(&env, &agent);
    }
}

/// The scaffold in `agent` runs under its manifest and greets.
fn assert_scaffold_greets(env: &Env, agent: &Path) {
    let manifest = agent.join("agent.yaml");
    let input = r#"{"name": "you"}"#;
    let out = env.run(&["run", "-f", p(&manifest), "--input", input, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: {}{}",
            agent.display(),
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert_eq!(report["output"]["greeting"], "hello, you", "{report}");
}
