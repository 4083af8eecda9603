//! Hostile agents and callers against a real `serve` process: fs (issue 12).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{guests, Serve, BIN};

#[test]
fn an_entry_flooding_agent_stays_within_its_quota_on_disk_and_in_memory_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    let w = dir.path().join("w");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::create_dir_all(&w).unwrap();
    guests::write_manifest(&agents, "hello", guests::HELLO, "");
    let spec = format!(
        "  capabilities:\n    filesystem:\n      - {{ hostPath: {}, guestPath: /w, readOnly: false }}\n  limits: {{ maxWriteBytes: 1Mi }}\n",
        w.display()
    );
    guests::write_manifest(&agents, "flood", guests::FS_ENTRY_FLOOD, &spec);
    let serve = Serve::start(dir.path(), &[&agents], &[]);
    assert_eq!(serve.invoke("hello", r#"{"name":"warm"}"#).status, 200);

    let per_run = (1 << 20) / agent_host::cap::fs::quota::ENTRY_COST;
    let runs = 4;
    let rss_before = serve.rss_kib();
    for run in 0..runs {
        std::fs::create_dir(w.join(format!("run{run}"))).unwrap();
        let body = format!(r#"{{"op":"entries","path":"/w/run{run}","max":1000000}}"#);
        let r = serve.invoke("flood", &body);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["output"]["created"], per_run, "{}", r.body);
        let error = r.body["output"]["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("StorageFull"), "{}", r.body);
    }
    let rss_after = serve.rss_kib();
    let on_disk: u64 = (0..runs)
        .map(|run| {
            std::fs::read_dir(w.join(format!("run{run}")))
                .unwrap()
                .count() as u64
        })
        .sum();
    assert_eq!(
        on_disk,
        runs * per_run,
        "entries past the quota reached the disk"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "host grew from {rss_before} KiB to {rss_after} KiB"
    );
    let r = serve.invoke("hello", r#"{"name":"after"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["output"]["greeting"], "hello, after");
}

#[test]
fn serve_refuses_to_start_when_one_agents_writable_mount_contains_anothers() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(shared.join("config")).unwrap();
    let mount = |path: &std::path::Path, read_only: bool| {
        format!(
            "  capabilities:\n    filesystem:\n      - {{ hostPath: {}, guestPath: /m, readOnly: {read_only} }}\n",
            path.display()
        )
    };
    let reader = guests::write_manifest(
        dir.path(),
        "reader",
        guests::HELLO,
        &mount(&shared.join("config"), true),
    );
    let writer =
        guests::write_manifest(dir.path(), "writer", guests::HELLO, &mount(&shared, false));
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "-f"])
        .arg(&reader)
        .arg("-f")
        .arg(&writer)
        .env("AGENT_HOST_CACHE_DIR", dir.path().join("cache"))
        .env("AGENT_HOST_STATE_DIR", dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started although the writer's mount contains the reader's");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("writer.yaml"), "{stderr}");
    assert!(
        stderr.contains("spec.capabilities.filesystem[0].hostPath"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(agent reader, spec.capabilities.filesystem[0], read-only)"),
        "{stderr}"
    );
}
