//! A guest cannot leave its preopened directories through symlinks (planted by
//! the host side, as a compromised volume or a previous writer could), nor by
//! swapping a mount's directory between invocations; a read-only preopen
//! refuses every kind of modification; and whatever takes disk space (data,
//! file growth, new entries) is charged to `maxWriteBytes`.

use std::os::unix::fs::symlink;
use std::path::Path;

use agent_host::PreparedAgent;
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use serde_json::{json, Value};

const OUTSIDE: &str = "secret outside the mount";

/// Lays out, under the harness dir:
/// `outside.txt`, `outside_dir/secret.txt` (never reachable), and `mount/`
/// (preopened read-write at `/m`) holding `file.txt`, `sub/` and symlinks:
/// `abs -> /etc/passwd`, `rel -> ../outside.txt`, `chain -> sub/chain2 ->
/// ../../outside.txt`, `loop_x <-> loop_y`, `outdir -> ../outside_dir`,
/// `outdir_abs -> <absolute outside_dir>`, and inside ones: `inside ->
/// file.txt`, `sub/up -> ../file.txt`, `insidedir -> sub`.
fn symlink_agent(h: &Harness) -> PreparedAgent {
    let root = h.dir.path();
    let mount = root.join("mount");
    std::fs::create_dir_all(mount.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("outside_dir")).unwrap();
    std::fs::write(root.join("outside.txt"), OUTSIDE).unwrap();
    std::fs::write(root.join("outside_dir/secret.txt"), OUTSIDE).unwrap();
    std::fs::write(mount.join("file.txt"), "inside").unwrap();
    let links: [(&str, &Path); 10] = [
        ("abs", Path::new("/etc/passwd")),
        ("rel", Path::new("../outside.txt")),
        ("chain", Path::new("sub/chain2")),
        ("sub/chain2", Path::new("../../outside.txt")),
        ("loop_x", Path::new("loop_y")),
        ("loop_y", Path::new("loop_x")),
        ("outdir", Path::new("../outside_dir")),
        ("outdir_abs", &root.join("outside_dir")),
        ("inside", Path::new("file.txt")),
        ("sub/up", Path::new("../file.txt")),
    ];
    for (link, target) in links {
        symlink(target, mount.join(link)).unwrap();
    }
    symlink("sub", mount.join("insidedir")).unwrap();
    h.agent(
        "fs-links",
        guests::FS_PROBE,
        "  capabilities:\n    filesystem:\n      - { hostPath: mount, guestPath: /m, readOnly: false }\n",
    )
}

async fn fs(agent: &PreparedAgent, input: Value) -> Value {
    output_json(&agent.invoke(task(input)).await)
}

/// Runs each probe input and asserts the guest got an I/O error of `kind`
/// (`PermissionDenied` is WASI's `not-permitted`) and saw nothing of the outside.
async fn assert_all_fail(agent: &PreparedAgent, inputs: &[Value], kind: &str) {
    for input in inputs {
        let out = fs(agent, input.clone()).await;
        assert_eq!(out["ok"], false, "{input} must be denied: {out}");
        let error = out["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(kind), "{input}: expected {kind}: {out}");
        assert!(!out.to_string().contains("secret"), "{input} leaked: {out}");
    }
}

async fn assert_all_denied(agent: &PreparedAgent, inputs: &[Value]) {
    assert_all_fail(agent, inputs, "PermissionDenied").await;
}

fn read(path: &str) -> Value {
    json!({"op": "read", "path": path})
}

fn list(path: &str) -> Value {
    json!({"op": "list", "path": path})
}

#[tokio::test(flavor = "multi_thread")]
async fn symlink_with_an_absolute_target_is_not_followed() {
    let h = Harness::new();
    let agent = symlink_agent(&h);
    let metadata = json!({"op": "metadata", "path": "/m/abs"});
    assert_all_denied(&agent, &[read("/m/abs"), metadata]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn symlink_with_a_relative_target_outside_is_denied() {
    let h = Harness::new();
    let agent = symlink_agent(&h);
    let metadata = json!({"op": "metadata", "path": "/m/rel"});
    assert_all_denied(&agent, &[read("/m/rel"), metadata]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_of_symlinks_leading_outside_is_denied() {
    let h = Harness::new();
    let agent = symlink_agent(&h);
    assert_all_denied(&agent, &[read("/m/chain"), read("/m/sub/chain2")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn symlink_loop_fails_cleanly() {
    let h = Harness::new();
    let agent = symlink_agent(&h);
    let started = std::time::Instant::now();
    let inputs = [read("/m/loop_x"), list("/m/loop_y")];
    assert_all_fail(&agent, &inputs, "FilesystemLoop").await;
    assert!(
        started.elapsed().as_secs() < 20,
        "the loop was not cut short"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinked_directory_pointing_outside_is_denied() {
    let h = Harness::new();
    let agent = symlink_agent(&h);
    let inputs = [
        list("/m/outdir"),
        read("/m/outdir/secret.txt"),
        list("/m/outdir_abs"),
        read("/m/outdir_abs/secret.txt"),
    ];
    assert_all_denied(&agent, &inputs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trailing_slash_does_not_follow_a_symlink_outside() {
    let h = Harness::new();
    let agent = symlink_agent(&h);
    let inputs = [
        list("/m/outdir/"),
        list("/m/outdir/."),
        list("/m/outdir_abs/"),
        json!({"op": "metadata", "path": "/m/outdir/"}),
        read("/m/outdir/./secret.txt"),
        read("/m/rel/"),
    ];
    assert_all_denied(&agent, &inputs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_through_escaping_symlinks_leave_the_outside_untouched() {
    let h = Harness::new();
    let agent = symlink_agent(&h);
    let inputs = [
        json!({"op": "write", "path": "/m/rel", "data": "pwned"}),
        json!({"op": "append", "path": "/m/chain", "data": "pwned"}),
        json!({"op": "truncate", "path": "/m/abs"}),
        json!({"op": "create", "path": "/m/outdir/new.txt"}),
        json!({"op": "create_dir", "path": "/m/outdir_abs/newdir"}),
    ];
    assert_all_denied(&agent, &inputs).await;
    // Hard-linking the symlink (allowed or not) yields nothing that escapes.
    fs(
        &agent,
        json!({"op": "hard_link", "path": "/m/rel", "to": "/m/hard"}),
    )
    .await;
    assert_all_denied(&agent, &[read("/m/hard")]).await;
    let root = h.dir.path();
    assert_eq!(
        std::fs::read_to_string(root.join("outside.txt")).unwrap(),
        OUTSIDE
    );
    let names: Vec<_> = std::fs::read_dir(root.join("outside_dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret.txt"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_that_stay_inside_the_preopen_work() {
    let h = Harness::new();
    let agent = symlink_agent(&h);
    for path in ["/m/inside", "/m/sub/up", "/m/insidedir/up"] {
        let out = fs(&agent, read(path)).await;
        assert_eq!(out, json!({"ok": true, "data": "inside"}), "{path}");
    }
    let out = fs(&agent, list("/m/insidedir")).await;
    assert_eq!(out, json!({"ok": true, "data": ["chain2", "up"]}));
}

/// Every modifying operation the probe knows, aimed at a mount under `/d`
/// holding `runbook.md` and `sub/`.
fn modifying_ops() -> [Value; 10] {
    [
        json!({"op": "create", "path": "/d/new.txt"}),
        json!({"op": "write", "path": "/d/new.txt", "data": "x"}),
        json!({"op": "truncate", "path": "/d/runbook.md"}),
        json!({"op": "append", "path": "/d/runbook.md", "data": "appended"}),
        json!({"op": "hard_link", "path": "/d/runbook.md", "to": "/d/link.md"}),
        json!({"op": "rename", "path": "/d/runbook.md", "to": "/d/moved.md"}),
        json!({"op": "create_dir", "path": "/d/newdir"}),
        json!({"op": "remove", "path": "/d/sub/note.txt"}),
        json!({"op": "remove", "path": "/d/empty"}),
        json!({"op": "rename", "path": "/d/sub", "to": "/d/sub2"}),
    ]
}

/// A mount at `/d` (read-only or not) with `runbook.md`, `sub/note.txt`, `empty/`.
fn mount_agent(h: &Harness, read_only: bool) -> PreparedAgent {
    let dir = h.dir.path().join("d");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("runbook.md"), "# Runbook\nrestart it").unwrap();
    std::fs::write(dir.join("sub/note.txt"), "note").unwrap();
    let spec = format!(
        "  capabilities:\n    filesystem:\n      - {{ hostPath: d, guestPath: /d, readOnly: {read_only} }}\n"
    );
    h.agent("fs-mount", guests::FS_PROBE, &spec)
}

/// Every path under `dir` with its contents (`<dir>` for directories), sorted.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.display().to_string();
        if path.is_dir() {
            entries.push((name, "<dir>".to_owned()));
            entries.extend(snapshot(&path));
        } else {
            entries.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    entries.sort();
    entries
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_preopen_denies_every_modification_and_the_host_is_unchanged() {
    let h = Harness::new();
    let agent = mount_agent(&h, true);
    let before = snapshot(&h.dir.path().join("d"));
    for op in modifying_ops() {
        assert_all_denied(&agent, &[op]).await;
    }
    assert_eq!(snapshot(&h.dir.path().join("d")), before);
    let read = fs(&agent, json!({"op": "read", "path": "/d/runbook.md"})).await;
    assert_eq!(read["ok"], true, "reads still work: {read}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_modifications_succeed_on_a_read_write_preopen() {
    // The control for the test above: each probe op really modifies when allowed.
    let h = Harness::new();
    let agent = mount_agent(&h, false);
    for op in modifying_ops() {
        let out = fs(&agent, op.clone()).await;
        assert_eq!(out["ok"], true, "{op} must succeed: {out}");
    }
    let d = h.dir.path().join("d");
    for name in ["link.md", "moved.md"] {
        assert_eq!(std::fs::read_to_string(d.join(name)).unwrap(), "appended");
    }
    assert!(d.join("newdir").is_dir() && d.join("sub2").is_dir());
    assert!(!d.join("runbook.md").exists() && !d.join("empty").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_past_max_write_bytes_fail_and_stop_at_the_quota() {
    // Creating a file now costs ENTRY_COST too (it used to be free, see
    // `creating_entries_in_a_loop_...`): the quota and sizes leave room for it.
    const QUOTA: u64 = 12 << 10;
    let entry = agent_host::cap::fs::quota::ENTRY_COST;
    let h = Harness::new();
    let mount = h.dir.path().join("quota");
    std::fs::create_dir_all(&mount).unwrap();
    let agent = h.agent(
        "fs-quota",
        guests::FS_PROBE,
        "  capabilities:\n    filesystem:\n      - { hostPath: quota, guestPath: /q, readOnly: false }\n  limits: { maxWriteBytes: 12Ki }\n",
    );
    let write =
        |path: &str, bytes: usize| json!({"op": "write", "path": path, "data": "x".repeat(bytes)});

    let inv = agent.invoke(task(write("/q/small", 3000))).await;
    assert_eq!(output_json(&inv)["ok"], true);
    assert_eq!(inv.usage.caps.filesystem.file_write_bytes, entry + 3000);

    for input in [
        write("/q/big", 2 * QUOTA as usize),
        json!({"op": "append", "path": "/q/small", "data": "y".repeat(2 * QUOTA as usize)}),
    ] {
        let inv = agent.invoke(task(input.clone())).await;
        let out = output_json(&inv);
        assert_eq!(out["ok"], false, "{out}");
        // The host answers ENOSPC; wasi-libc reports a failed stream write as EIO.
        assert!(out["error"].as_str().unwrap().contains("os error"), "{out}");
        assert!(
            inv.usage.caps.filesystem.file_write_bytes <= QUOTA,
            "charged {}",
            inv.usage.caps.filesystem.file_write_bytes
        );
    }
    let big = std::fs::metadata(mount.join("big"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        big <= QUOTA - entry,
        "{big} bytes reached the host past the quota"
    );
    let small = std::fs::metadata(mount.join("small")).unwrap().len();
    assert!(small <= 3000 + QUOTA, "{small}");

    // The quota is per invocation: the next one starts afresh.
    assert_eq!(fs(&agent, write("/q/again", 3000)).await["ok"], true);
}

fn load_error(h: &Harness, name: &str, spec: &str) -> String {
    let manifest = h.manifest(name, guests::FS_PROBE, spec);
    match h.load(&manifest) {
        Ok(_) => panic!("{name} must be refused at load"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_swapped_for_a_symlink_between_invocations_still_shows_the_original_directory() {
    let h = Harness::new();
    let root = h.dir.path();
    std::fs::create_dir_all(root.join("config")).unwrap();
    std::fs::write(root.join("config/who"), "original").unwrap();
    std::fs::create_dir_all(root.join("elsewhere")).unwrap();
    std::fs::write(root.join("elsewhere/who"), OUTSIDE).unwrap();
    let spec =
        "  capabilities:\n    filesystem:\n      - { hostPath: config, guestPath: /config }\n";
    let agent = h.agent("fs-swap", guests::FS_PROBE, spec);
    let original = json!({"ok": true, "data": "original"});
    assert_eq!(fs(&agent, read("/config/who")).await, original);

    // What a guest with a writable mount around `config` did before mounts
    // were held open: move the directory away, leave a symlink in its place.
    std::fs::rename(root.join("config"), root.join("config.moved")).unwrap();
    symlink("elsewhere", root.join("config")).unwrap();

    assert_eq!(fs(&agent, read("/config/who")).await, original);
    assert_eq!(
        fs(&agent, list("/config")).await,
        json!({"ok": true, "data": ["who"]})
    );
    // Loading the manifest again opens the path anew: now a symlink, refused.
    let err = load_error(&h, "fs-swap", spec);
    assert!(err.contains("filesystem[0].hostPath"), "{err}");
    assert!(err.contains("is a symbolic link"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writable_mount_containing_another_mount_of_the_same_agent_is_refused_at_load() {
    // The reported attack: `data` read-write at /data, `data/config` read-only at
    // /config; the guest renamed /data/config and left a symlink to `/`.
    let h = Harness::new();
    std::fs::create_dir_all(h.dir.path().join("data/config")).unwrap();
    let err = load_error(
        &h,
        "fs-nested",
        "  capabilities:\n    filesystem:\n      - { hostPath: data, guestPath: /data, readOnly: false }\n      - { hostPath: data/config, guestPath: /config, readOnly: true }\n",
    );
    assert!(
        err.contains("spec.capabilities.filesystem[0].hostPath"),
        "{err}"
    );
    assert!(
        err.contains("data/config (agent fs-nested, spec.capabilities.filesystem[1], read-only)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_overlapping_another_agents_writable_mount_is_refused_until_that_agent_is_gone() {
    let h = Harness::new();
    std::fs::create_dir_all(h.dir.path().join("shared/config")).unwrap();
    let inner = "  capabilities:\n    filesystem:\n      - { hostPath: shared/config, guestPath: /config }\n";
    let outer = "  capabilities:\n    filesystem:\n      - { hostPath: shared, guestPath: /shared, readOnly: false }\n";
    let reader = h.agent("fs-reader", guests::FS_PROBE, inner);

    let err = load_error(&h, "fs-writer", outer);
    assert!(
        err.contains("spec.capabilities.filesystem[0].hostPath"),
        "{err}"
    );
    assert!(err.contains("agent fs-reader"), "{err}");

    // The same mount again (another agent, or the reader's next spec) is no conflict.
    let same = h.agent("fs-reader-2", guests::FS_PROBE, inner);
    drop((reader, same));
    let writer = h.agent("fs-writer", guests::FS_PROBE, outer);
    let err = load_error(&h, "fs-reader", inner);
    assert!(err.contains("is inside the writable mount"), "{err}");
    assert!(err.contains("agent fs-writer"), "{err}");
    drop(writer);
}

/// An agent running the entry-flood guest on a read-write mount `/w` of `w/`,
/// with `maxWriteBytes: 1Mi`.
fn flood_agent(h: &Harness) -> PreparedAgent {
    std::fs::create_dir_all(h.dir.path().join("w")).unwrap();
    h.agent(
        "fs-flood",
        guests::FS_ENTRY_FLOOD,
        "  capabilities:\n    filesystem:\n      - { hostPath: w, guestPath: /w, readOnly: false }\n  limits: { maxWriteBytes: 1Mi }\n",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_entries_in_a_loop_stops_at_the_write_quota_with_insufficient_space() {
    let h = Harness::new();
    let agent = flood_agent(&h);
    let quota_entries = (1 << 20) / agent_host::cap::fs::quota::ENTRY_COST;
    let flood = json!({"op": "entries", "path": "/w", "max": 20 * quota_entries});
    let inv = agent.invoke(task(flood)).await;
    let out = output_json(&inv);
    let created = out["created"].as_u64().unwrap();
    assert_eq!(
        created, quota_entries,
        "files, dirs, symlinks, hard links: {out}"
    );
    assert!(
        out["error"].as_str().unwrap().starts_with("StorageFull"),
        "{out}"
    );
    assert_eq!(inv.usage.caps.filesystem.file_write_bytes, 1 << 20);
    let on_host = std::fs::read_dir(h.dir.path().join("w")).unwrap().count() as u64;
    assert_eq!(
        on_host, quota_entries,
        "entries past the quota reached the host"
    );

    // Re-opening existing files creates nothing and costs nothing.
    let again = json!({"op": "entries", "path": "/w", "max": 1});
    let inv = agent.invoke(task(again)).await;
    assert_eq!(output_json(&inv), json!({"created": 1, "error": null}));
    assert_eq!(inv.usage.caps.filesystem.file_write_bytes, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn growing_a_file_to_a_tebibyte_fails_with_insufficient_space_and_the_next_invocation_runs() {
    let h = Harness::new();
    let agent = flood_agent(&h);
    for op in ["set_size", "sparse_write"] {
        let path = format!("/w/{op}");
        let inv = agent
            .invoke(task(json!({"op": op, "path": path, "size": 1u64 << 40})))
            .await;
        let out = output_json(&inv);
        assert_eq!(out["ok"], false, "{op}: {out}");
        assert!(
            out["error"].as_str().unwrap().starts_with("StorageFull"),
            "{op}: {out}"
        );
        assert!(
            inv.usage.caps.filesystem.file_write_bytes <= 1 << 20,
            "{op}: {:?}",
            inv.usage
        );
        let len = std::fs::metadata(h.dir.path().join("w").join(op))
            .unwrap()
            .len();
        assert_eq!(len, 0, "{op}: the file grew on the host");
    }
    // Growth within the quota is allowed (and charged).
    let inv = agent
        .invoke(task(
            json!({"op": "set_size", "path": "/w/ok", "size": 512 << 10}),
        ))
        .await;
    assert_eq!(output_json(&inv), json!({"ok": true}));
    assert_eq!(
        inv.usage.caps.filesystem.file_write_bytes,
        agent_host::cap::fs::quota::ENTRY_COST + (512 << 10)
    );
}
