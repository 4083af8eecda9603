//! Caller authentication against a real `serve` process (issue 16): token
//! files, `spec.callers`, probes and `/metrics`, the audit trail, TLS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_host_test_guests as guests;

use super::{audit_records, Serve, BIN};

/// A token directory laid out like a mounted Secret: `..data` bookkeeping
/// that must be skipped, and one file per caller.
fn token_dir(dir: &Path, tokens: &[(&str, &str)]) -> std::path::PathBuf {
    let tokens_dir = dir.join("caller-tokens");
    std::fs::create_dir_all(tokens_dir.join("..2026_11_29_00_00_00.1")).unwrap();
    for (name, token) in tokens {
        std::fs::write(tokens_dir.join(name), format!("{token}\n")).unwrap();
    }
    tokens_dir
}

/// `hello` for any authenticated caller and `restricted` (the same
/// component) for `pager` only.
fn manifests(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let hello = guests::write_manifest(dir, "hello", guests::HELLO, "");
    let restricted = guests::write_manifest(
        dir,
        "restricted",
        guests::HELLO,
        "  callers: [pager, system:serviceaccount:sre:pager]\n",
    );
    (hello, restricted)
}

fn as_caller(serve: &Serve, agent: &str, token: Option<&str>) -> crate::support::Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    serve.post(
        &format!("/v1/agents/{agent}/invocations"),
        &headers,
        r#"{"name":"auth"}"#,
    )
}

fn get_as(serve: &Serve, path: &str, token: &str) -> crate::support::Reply {
    crate::support::HostProcess::reply(
        serve
            .http
            .get(format!("{}{path}", serve.base))
            .header("authorization", format!("Bearer {token}"))
            .call(),
    )
}

#[test]
fn token_files_authenticate_callers_spec_callers_authorizes_them_and_both_refusals_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_dir(dir.path(), &[("pager", "pager-0123"), ("ci", "ci-4567")]);
    let (hello, restricted) = manifests(dir.path());
    let tokens_arg = tokens.to_str().unwrap();
    let serve = Serve::start(
        dir.path(),
        &[&hello, &restricted],
        &["--caller-tokens", tokens_arg],
    );

    // Probes and /metrics (without --metrics-auth) need no token.
    assert_eq!(serve.get("/healthz").status, 200);
    assert_eq!(serve.get("/readyz").status, 200);
    assert_eq!(serve.get("/metrics").status, 200);

    // No token, a wrong one, a malformed header: 401 with a Bearer challenge.
    let r = as_caller(&serve, "hello", None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "Unauthenticated");
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"agent-host\"");
    let r = as_caller(&serve, "hello", Some("pager-0124"));
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let r = serve.post(
        "/v1/agents/hello/invocations",
        &[("authorization", "Basic cGFnZXI6cGFnZXItMDEyMw==")],
        "{}",
    );
    assert_eq!(r.status, 401, "{}", r.body);
    // Every other route too, even unknown ones and reads of results.
    assert_eq!(serve.get("/v1/agents").status, 401);
    assert_eq!(serve.get("/v1/invocations/x").status, 401);
    assert_eq!(serve.get("/nowhere").status, 401);
    // Counted without an agent label (the path is the caller's choice).
    let metrics = serve.get("/metrics").body;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics
            .contains(r#"agent_host_requests_rejected_total{agent="",reason="Unauthenticated"} 6"#),
        "{metrics}"
    );

    // Valid tokens: any caller for hello; only pager for restricted.
    let r = as_caller(&serve, "hello", Some("ci-4567"));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = as_caller(&serve, "restricted", Some("ci-4567"));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "Forbidden");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"ci\""),
        "{}",
        r.body
    );
    let r = as_caller(&serve, "restricted", Some("pager-0123"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "succeeded", "{}", r.body);
    // The listing shows a caller only what it may invoke.
    let listed = get_as(&serve, "/v1/agents", "ci-4567");
    let names: Vec<&str> = listed.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello"]);
    // An async result of restricted is not readable by ci either.
    let started = serve.post(
        "/v1/agents/restricted/invocations?async=true",
        &[("authorization", "Bearer pager-0123")],
        r#"{"name":"later"}"#,
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["id"].as_str().unwrap();
    assert_eq!(
        get_as(&serve, &format!("/v1/invocations/{id}"), "ci-4567").status,
        403
    );
    assert_eq!(
        get_as(&serve, &format!("/v1/invocations/{id}"), "pager-0123").status,
        200
    );

    serve.wait("the audit records", || {
        let records = audit_records(&serve.audit);
        records
            .iter()
            .any(|r| r["kind"] == "invocation.start" && r["caller"] == "pager")
            && records
                .iter()
                .filter(|r| r["kind"] == "request.denied")
                .count()
                >= 8
    });
    let records = audit_records(&serve.audit);
    let denied: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "request.denied")
        .collect();
    // 401s name the peer address (no identity was proved); 403s the caller.
    let unauthenticated = denied.iter().find(|r| r["status"] == 401).unwrap();
    assert!(
        unauthenticated["caller"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{unauthenticated}"
    );
    assert_eq!(unauthenticated["code"], "Unauthenticated");
    assert_eq!(
        unauthenticated["request"],
        "POST /v1/agents/hello/invocations"
    );
    let forbidden = denied.iter().find(|r| r["status"] == 403).unwrap();
    assert_eq!(forbidden["caller"], "ci", "{forbidden}");
    assert_eq!(forbidden["agent"], "restricted", "{forbidden}");
    let callers: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "invocation.start")
        .map(|r| r["caller"].as_str().unwrap())
        .collect();
    assert_eq!(callers, ["ci", "pager", "pager"], "{records:?}");
    // The tokens themselves are never recorded.
    let log = std::fs::read_to_string(&serve.audit).unwrap() + &serve.logs();
    assert!(!log.contains("pager-0123") && !log.contains("ci-4567"));
}

#[test]
fn token_files_are_reread_when_they_change_new_callers_in_removed_ones_out() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_dir(dir.path(), &[("ci", "ci-4567")]);
    let (hello, _) = manifests(dir.path());
    let serve = Serve::start(
        dir.path(),
        &[&hello],
        &["--caller-tokens", tokens.to_str().unwrap()],
    );
    assert_eq!(as_caller(&serve, "hello", Some("ops-89ab")).status, 401);
    std::fs::write(tokens.join("ops"), "ops-89ab").unwrap();
    std::fs::remove_file(tokens.join("ci")).unwrap();
    serve.wait("the new token to be accepted", || {
        as_caller(&serve, "hello", Some("ops-89ab")).status == 200
    });
    assert_eq!(as_caller(&serve, "hello", Some("ci-4567")).status, 401);
    // A token file made too large is left out (its caller is refused), the
    // others keep working.
    std::fs::write(tokens.join("ci"), vec![b'x'; 17 << 10]).unwrap();
    std::fs::write(tokens.join("late"), "late-cdef").unwrap();
    serve.wait("the next reload", || {
        as_caller(&serve, "hello", Some("late-cdef")).status == 200
    });
    assert_eq!(as_caller(&serve, "hello", Some("ops-89ab")).status, 200);
    assert!(serve.logs().contains("larger than 16384 bytes"));
}

#[test]
fn metrics_need_a_token_with_metrics_auth_and_probes_never_do() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_dir(dir.path(), &[("prometheus", "scrape-0001")]);
    let (hello, _) = manifests(dir.path());
    let serve = Serve::start(
        dir.path(),
        &[&hello],
        &[
            "--caller-tokens",
            tokens.to_str().unwrap(),
            "--metrics-auth",
        ],
    );
    assert_eq!(serve.get("/healthz").status, 200);
    assert_eq!(serve.get("/readyz").status, 200);
    let r = serve.get("/metrics");
    assert_eq!(r.status, 401, "{}", r.body);
    let r = get_as(&serve, "/metrics", "scrape-0001");
    assert_eq!(r.status, 200);
    assert!(
        r.body.as_str().unwrap().contains("agent_host"),
        "{}",
        r.body
    );
}

/// Runs `serve` with `args` expecting it to refuse to start; its stderr.
fn refused_start(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("AGENT_HOST_CACHE_DIR", dir.join("cache"))
        .env("AGENT_HOST_STATE_DIR", dir.join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn spec_callers_on_a_host_that_authenticates_nobody_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, restricted) = manifests(dir.path());
    let err = refused_start(dir.path(), &["-f", restricted.to_str().unwrap()]);
    assert!(
        err.contains("agent restricted: spec.callers names who may invoke it, but this host authenticates no caller"),
        "{err}"
    );
    // Bad security settings stop the start too, each with its own message.
    let tokens = token_dir(dir.path(), &[("same-a", "t0ken"), ("same-b", "t0ken")]);
    let err = refused_start(
        dir.path(),
        &[
            "-f",
            restricted.to_str().unwrap(),
            "--caller-tokens",
            tokens.to_str().unwrap(),
        ],
    );
    assert!(err.contains("same-b: the same token as same-a"), "{err}");
    let err = refused_start(
        dir.path(),
        &["-f", restricted.to_str().unwrap(), "--metrics-auth"],
    );
    assert!(
        err.contains("--metrics-auth needs caller authentication"),
        "{err}"
    );
    let missing = dir.path().join("missing.pem");
    let err = refused_start(
        dir.path(),
        &[
            "-f",
            restricted.to_str().unwrap(),
            "--tls-cert",
            missing.to_str().unwrap(),
            "--tls-key",
            missing.to_str().unwrap(),
        ],
    );
    assert!(err.contains("--tls-cert"), "{err}");
}

/// `openssl` run in `dir`, failing the test with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A test CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it, named `cn`,
/// written to `tls.crt` and `tls.key` through a rename (as a Secret update swaps files).
fn issue(dir: &Path, cn: &str) {
    if !dir.join("ca.pem").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test CA",
            ],
        );
    }
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "new.key",
            "-out",
            "new.csr",
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "new.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "new.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::rename(dir.join("new.key"), dir.join("tls.key")).unwrap();
    std::fs::rename(dir.join("new.crt"), dir.join("tls.crt")).unwrap();
}

/// One HTTPS request over rustls trusting only the test CA: the status and
/// the server's leaf certificate.
fn https_get(dir: &Path, base: &str, path: &str, token: &str) -> (u16, Vec<u8>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = base.strip_prefix("https://").unwrap();
    let server = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let leaf = tls.conn.peer_certificates().unwrap()[0].to_vec();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    (status, leaf)
}

fn der_of(pem: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(pem)
        .unwrap()
        .to_vec()
}

#[test]
fn tls_serves_the_mounted_certificate_and_new_connections_get_a_renewed_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("tls");
    std::fs::create_dir(&pki).unwrap();
    issue(&pki, "first");
    let first = der_of(&pki.join("tls.crt"));
    let tokens = token_dir(dir.path(), &[("ci", "ci-4567")]);
    let (hello, _) = manifests(dir.path());
    let serve = crate::support::HostProcess::start(dir.path(), "serve.log", |cmd| {
        cmd.arg("-f").arg(&hello);
        cmd.arg("--caller-tokens").arg(&tokens);
        cmd.arg("--tls-cert").arg(pki.join("tls.crt"));
        cmd.arg("--tls-key").arg(pki.join("tls.key"));
    });
    assert!(
        serve.base.starts_with("https://127.0.0.1:"),
        "{}",
        serve.base
    );

    let (status, leaf) = https_get(&pki, &serve.base, "/v1/agents", "ci-4567");
    assert_eq!(status, 200);
    assert_eq!(leaf, first);
    assert_eq!(https_get(&pki, &serve.base, "/v1/agents", "wrong").0, 401);
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = serve.http.get(format!(
        "http://{}/healthz",
        serve.base.strip_prefix("https://").unwrap()
    ));
    assert!(plain.call().map_or(true, |r| r.status() != 200));

    issue(&pki, "second");
    let second = der_of(&pki.join("tls.crt"));
    assert_ne!(first, second);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, leaf) = https_get(&pki, &serve.base, "/readyz", "ci-4567");
        assert_eq!(status, 200);
        if leaf == second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served\n{}",
            serve.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(serve.logs().contains("TLS certificate reloaded"));
}
