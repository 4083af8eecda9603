//! Hostile agents and callers against a real `serve` process: audit (issue 12).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agent_host_test_guests as guests;

use super::{audit_records, audit_verify, Serve, BIN};

fn file_kib(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len()) / 1024
}

/// The denial flooder with a mount and one HTTP rule to be refused around, and hello.
fn flood_manifests(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let flood = guests::write_manifest(
        dir,
        "flood",
        guests::DENIAL_FLOOD,
        &format!(
            "  capabilities:\n    filesystem:\n      - {{ hostPath: {}, guestPath: /data }}\n    http:\n      - {{ url: 'http://127.0.0.1:9/granted/', methods: [GET] }}\n  limits: {{ maxDenials: 256, timeout: 120s }}\n",
            data.display()
        ),
    );
    let hello = guests::write_manifest(dir, "hello", guests::HELLO, "");
    (flood, hello)
}

#[test]
fn denials_with_huge_targets_grow_the_audit_log_stderr_and_memory_by_a_bounded_amount() {
    let dir = tempfile::tempdir().unwrap();
    let (flood, hello) = flood_manifests(dir.path());
    let mut serve = Serve::start(dir.path(), &[&flood, &hello], &[]);
    // Warm up (compile, pool slots, one 8 MiB path through every layer).
    // Writes to the read-only mount are refused before the path is resolved
    // (a path past PATH_MAX outside the mount fails as too long, not denied).
    let opens =
        |n: u32| format!(r#"{{"opens":{n},"relative":"","openWrite":true,"pathBytes":8388608}}"#);
    let r = serve.invoke("flood", &opens(1));
    assert_eq!(r.body["output"]["refusedOpens"], 1, "{}", r.body);
    assert_eq!(
        r.body["usage"]["fileDenied"], 1,
        "a refused open is a denial: {}",
        r.body
    );
    let (rss_before, audit_before, stderr_before) = (
        serve.rss_kib(),
        file_kib(&serve.audit),
        file_kib(&serve.log),
    );

    // 256 refused opens of an 8 MiB path: each one within the denial budget.
    let r = serve.invoke("flood", &opens(256));
    assert_eq!(r.body["state"], "succeeded", "{}", r.body);
    assert_eq!(r.body["output"]["refusedOpens"], 256, "{}", r.body);
    assert_eq!(r.body["usage"]["fileDenied"], 256, "{}", r.body);
    // Refused requests with 60 KiB URLs until the denial budget ends the invocation.
    let r = serve.invoke(
        "flood",
        r#"{"requests":100000,"url":"http://127.0.0.1:9/refused","urlBytes":61440}"#,
    );
    assert_eq!(r.body["outcome"], "DenialLimit", "{}", r.body);
    assert_eq!(r.body["error"]["code"], "DenialLimit", "{}", r.body);
    assert_eq!(r.body["usage"]["httpRequests"], 0, "{}", r.body);
    assert!(
        r.body["usage"]["httpDenied"].as_u64().unwrap() > 256,
        "{}",
        r.body
    );

    // A well-behaved agent is served afterwards.
    let r = serve.invoke("hello", r#"{"name":"after"}"#);
    assert_eq!(r.body["output"]["greeting"], "hello, after", "{}", r.body);
    let rss_after = serve.rss_kib();
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(15)), Some(0));

    // Two invocations of at most 256 capability records of a few KiB each;
    // before the fix the opens alone wrote ~2 GiB.
    let audit_growth = file_kib(&serve.audit) - audit_before;
    let stderr_growth = file_kib(&serve.log) - stderr_before;
    eprintln!("audit +{audit_growth} KiB, stderr +{stderr_growth} KiB, rss {rss_before} -> {rss_after} KiB");
    assert!(
        audit_growth < 6 * 1024,
        "audit log grew by {audit_growth} KiB"
    );
    // A handful of bounded WARN lines per invocation.
    assert!(stderr_growth < 512, "stderr grew by {stderr_growth} KiB");
    assert!(
        rss_after < rss_before + 192 * 1024,
        "the host grew from {rss_before} KiB to {rss_after} KiB"
    );
    let (code, out) = audit_verify(&serve.audit);
    assert_eq!(code, Some(0), "{out}");
    let records = audit_records(&serve.audit);
    let denied_open = records
        .iter()
        .find(|r| r["capability"] == "filesystem" && r["decision"] == "deny")
        .unwrap();
    let target = denied_open["target"].as_str().unwrap();
    assert!(
        target.len() < 8 * 1024 && target.ends_with("bytes]"),
        "cut and marked: {} bytes",
        target.len()
    );
}

#[test]
fn a_second_host_on_the_same_audit_log_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guests::write_manifest(dir.path(), "hello", guests::HELLO, "");
    let mut first = Serve::start(dir.path(), &[&hello], &[]);
    let second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--audit-log"])
        .arg(&first.audit)
        .arg("-f")
        .arg(&hello)
        .env("AGENT_HOST_CACHE_DIR", dir.path().join("cache"))
        .env("AGENT_HOST_STATE_DIR", dir.path().join("state2"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&first.audit.display().to_string()) && stderr.contains("locked"),
        "{stderr}"
    );
    // The first host is untouched and its chain intact.
    let r = first.invoke("hello", r#"{"name":"first"}"#);
    assert_eq!(r.body["output"]["greeting"], "hello, first", "{}", r.body);
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(15)), Some(0));
    let (code, out) = audit_verify(&first.audit);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn a_torn_last_audit_line_is_sealed_on_restart_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guests::write_manifest(dir.path(), "hello", guests::HELLO, "");
    let mut serve = Serve::start(dir.path(), &[&hello], &[]);
    assert_eq!(serve.invoke("hello", r#"{"name":"a"}"#).status, 200);
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(15)), Some(0));
    let audit = serve.audit.clone();
    drop(serve);
    // What a crash or a full disk mid-write leaves: half a record, no newline.
    let whole = std::fs::read(&audit).unwrap();
    let last = whole[..whole.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let torn = whole[last..last + (whole.len() - last) / 2].to_vec();
    let mut bytes = whole.clone();
    bytes.extend_from_slice(&torn);
    std::fs::write(&audit, &bytes).unwrap();
    let (code, _) = audit_verify(&audit);
    assert_eq!(code, Some(1), "the torn line breaks the chain until sealed");

    let mut serve = Serve::start(dir.path(), &[&hello], &[]);
    let r = serve.invoke("hello", r#"{"name":"b"}"#);
    assert_eq!(r.body["output"]["greeting"], "hello, b", "{}", r.body);
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(15)), Some(0));
    let (code, out) = audit_verify(&audit);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("sealed"), "{out}");
    let records = audit_records(&audit);
    let seal = records
        .iter()
        .find(|r| r["kind"] == "audit.sealed")
        .unwrap();
    assert_eq!(seal["tornBytes"], torn.len(), "{seal}");
    let saved = std::fs::read(seal["savedTo"].as_str().unwrap()).unwrap();
    assert_eq!(saved, torn);
}

/// A loopback HTTP/1.1 endpoint answering every request `200` with an empty
/// body; keeps the raw bytes it received (an OTLP export is protobuf, whose
/// strings are plain UTF-8, so a secret in a span attribute shows up as is).
fn raw_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use crate::support::read_http_request;
    use std::io::{BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let Some((head, body)) = read_http_request(&mut reader) else {
                        return;
                    };
                    let mut sink = sink.lock().unwrap();
                    sink.extend_from_slice(&head);
                    sink.extend_from_slice(&body);
                    drop(sink);
                    if conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), received)
}

/// A PEM-style key: each of its lines must be redacted on its own.
const PEM: &str = "-----BEGIN TEST KEY-----\nMIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9AgEAAkEAq7BFUpkGp3\nU2VydmVTZWNvbmRMaW5lT2ZUaGVLZXlNYXRlcmlhbEZvclRlc3RzMDk\n-----END TEST KEY-----";

#[test]
fn a_secret_in_urls_and_paths_never_reaches_stderr_the_audit_log_or_exported_spans() {
    let dir = tempfile::tempdir().unwrap();
    let (otlp, exported) = raw_receiver();
    let (granted, _) = raw_receiver();
    std::fs::create_dir_all(dir.path().join("secrets/tls")).unwrap();
    std::fs::write(dir.path().join("secrets/tls/key"), PEM).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let leaker = guests::write_manifest(
        dir.path(),
        "leaker",
        guests::LEAK_SECRET_WIDE,
        &format!(
            "  capabilities:\n    env:\n      - {{ name: TOKEN, valueFrom: {{ secretKeyRef: {{ name: tls, key: key }} }} }}\n    filesystem:\n      - {{ hostPath: {}, guestPath: /data }}\n    http:\n      - {{ url: '{granted}/granted/', methods: [GET] }}\n",
            data.display()
        ),
    );
    let secrets = dir.path().join("secrets");
    let mut serve = Serve::start(
        dir.path(),
        &[&leaker],
        &[
            "--secrets-dir",
            secrets.to_str().unwrap(),
            "--otlp-endpoint",
            &otlp,
        ],
    );
    // Refused (host WARN line, audit record) and allowed (`http.request` span).
    for (url, denied) in [
        (format!("{granted}/refused"), true),
        (format!("{granted}/granted/x"), false),
    ] {
        let body = serde_json::json!({ "url": url, "dir": "/data" }).to_string();
        let r = serve.invoke("leaker", &body);
        assert_eq!(r.body["output"]["denied"], denied, "{}", r.body);
    }
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(15)), Some(0));

    let stderr = serve.logs();
    let audit = std::fs::read_to_string(&serve.audit).unwrap();
    let spans = String::from_utf8_lossy(&exported.lock().unwrap()).into_owned();
    assert!(
        spans.contains("http.request") && spans.contains("file.open"),
        "both spans were exported"
    );
    let line = PEM.lines().nth(1).unwrap();
    for (place, text) in [
        ("stderr", &stderr),
        ("audit log", &audit),
        ("spans", &spans),
    ] {
        for part in [&line[..16], &line[line.len() - 16..]] {
            assert!(
                !text.contains(part),
                "part of a key line reached the {place}"
            );
        }
    }
    assert!(stderr.contains("token=[REDACTED]"), "{stderr}");
    assert!(audit.contains("token=[REDACTED]"), "{audit}");
    assert!(
        spans.contains("token=[REDACTED]"),
        "the span's URL, redacted"
    );
}
