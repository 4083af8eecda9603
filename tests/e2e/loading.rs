//! Loading fails closed and precisely: ungranted imports, bad manifests, bad
//! component files and corrupted cache entries.

use agent_host::cap::Kind;
use agent_host::runtime::{CacheStatus, LoadError};
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use serde_json::json;

/// `wasi:sockets` is never granted but linked: a component importing it
/// loads (interpreters import it whatever the agent does), and every attempt
/// to open a socket is denied before a host socket exists, audited and
/// counted as a denial; the host keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn sockets_load_and_every_socket_call_is_denied_and_counted() {
    let mut h = Harness::new();
    let path = h.dir.path().join("audit.jsonl");
    let log = agent_host::audit::AuditLog::open(&path).unwrap();
    h.runtime.set_audit_log(log.clone());
    let agent = h.agent("sockets", guests::SOCKETS_IMPORT, "");
    let binding = agent
        .imports
        .iter()
        .find(|b| b.import.starts_with("wasi:sockets/tcp-create-socket"))
        .expect("the component imports wasi:sockets");
    assert!(
        binding
            .to_string()
            .contains("not granted: every call denied"),
        "{binding}"
    );
    let inv = agent.invoke(task(json!({}))).await;
    let out = output_json(&inv);
    assert_eq!(out["connected"], false, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("denied"),
        "{out}"
    );
    assert!(
        inv.usage.ungranted_denied.get(Kind::Sockets) >= 1,
        "{:?}",
        inv.usage
    );
    assert!(inv
        .usage
        .denials()
        .any(|(k, n)| k.as_str() == "sockets" && n >= 1));
    log.close();
    let audit = std::fs::read_to_string(&path).unwrap();
    let denial = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["capability"] == "sockets")
        .unwrap_or_else(|| panic!("no sockets record: {audit}"));
    assert_eq!(denial["decision"], "deny");
    assert_eq!(denial["action"], "create-tcp-socket");
    let hello = h.agent("hello-after", guests::HELLO, "");
    assert_eq!(
        output_json(&hello.invoke(task(json!({"name": "x"}))).await)["greeting"],
        "hello, x"
    );
}

/// An HTTP component without the grant loads with its HTTP imports denied at
/// every call, naming the grant; its requests are refused unsent and counted.
#[tokio::test(flavor = "multi_thread")]
async fn http_component_without_http_grant_is_denied_at_call_naming_the_grant() {
    let h = Harness::new();
    let agent = h.agent("nohttp", guests::HTTP_PROBE, "");
    let binding = agent
        .imports
        .iter()
        .find(|b| b.import.starts_with("wasi:http/outgoing-handler"))
        .unwrap();
    let text = binding.to_string();
    assert!(
        text.contains("every call denied") && text.contains("spec.capabilities.http"),
        "{text}"
    );
    let inv = agent
        .invoke(task(
            json!({ "method": "GET", "url": "http://127.0.0.1:9/x" }),
        ))
        .await;
    assert_eq!(inv.usage.caps.http.http_requests, 0, "{:?}", inv.usage);
    assert!(inv.usage.caps.http.http_denied >= 1, "{:?}", inv.usage);
}

/// An interface the host does not provide is still refused at load, naming it.
#[test]
fn an_unknown_interface_is_refused_at_load_naming_it() {
    let h = Harness::new();
    let path = h.dir.path().join("backdoor.wasm");
    let text = r#"(component
        (import "example:evil/backdoor" (instance (export "open" (func))))
      )"#;
    std::fs::write(&path, wat::parse_str(text).unwrap()).unwrap();
    let manifest = h.manifest("backdoor", path.to_str().unwrap(), "");
    match h.load(&manifest) {
        Err(LoadError::UngrantedImports { agent, refused }) => {
            assert_eq!(agent, "backdoor");
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!(refused[0].import, "example:evil/backdoor");
        }
        Err(other) => panic!("expected UngrantedImports, got {other}"),
        Ok(_) => panic!("a component importing an unknown interface was accepted"),
    }
}

#[test]
fn inspect_shows_every_import_binding_without_refusing() {
    let h = Harness::new();
    let manifest = h.manifest("nohttp", guests::HTTP_PROBE, "");
    let loaded = agent_host::manifest::LoadedAgent::from_file(&manifest).unwrap();
    let inspection = h.runtime.inspect(&loaded).unwrap();
    assert!(inspection
        .imports
        .iter()
        .any(|b| b.import.starts_with("wasi:cli/environment")));
    assert!(inspection.imports.iter().any(|b| {
        b.import.starts_with("wasi:http/outgoing-handler")
            && matches!(b.binding, agent_host::cap::imports::Binding::Denied { .. })
    }));
    assert_eq!(inspection.refused().count(), 0);
}

#[test]
fn bad_manifests_fail_with_the_specific_error() {
    let h = Harness::new();
    let cases = [
        (
            "unknown",
            "  limits: { memroy: 64Mi }\n",
            "spec.limits.memroy",
        ),
        (
            "quantity",
            "  limits: { memory: 64MB }\n",
            "\"64MB\" is not a quantity",
        ),
    ];
    for (name, spec, expected) in cases {
        let manifest = h.manifest(name, guests::HELLO, spec);
        let err = h
            .load(&manifest)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        assert!(err.to_string().contains(expected), "{name}: {err}");
    }
    let missing = h.manifest("missing", "./does-not-exist.wasm", "");
    let err = h
        .load(&missing)
        .err()
        .expect("missing component accepted")
        .to_string();
    assert!(
        err.contains("spec.component.path") && err.contains("does-not-exist.wasm"),
        "{err}"
    );
}

/// Files with the WebAssembly header that are not loadable components. (Empty
/// and random files were cases here too; they are now refused before the
/// compiler, see `files_without_the_wasm_header_are_refused_as_not_webassembly`.)
#[test]
fn bad_component_files_fail_with_a_specific_error() {
    let h = Harness::new();
    let cases: [(&str, Vec<u8>); 2] = [
        (
            "truncated",
            std::fs::read(guests::HELLO).unwrap()[..1000].to_vec(),
        ),
        ("core-module", wat_core_module()),
    ];
    for (name, bytes) in cases {
        let file = h.dir.path().join(format!("{name}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        let manifest = h.manifest(name, file.to_str().unwrap(), "");
        match h.load(&manifest) {
            Err(LoadError::Compile { path, .. }) => assert_eq!(path, file),
            Err(other) => panic!("{name}: expected a compile error, got {other}"),
            Ok(_) => panic!("{name}: accepted"),
        }
    }
}

/// `(module)` in binary form: a core module, not a component.
fn wat_core_module() -> Vec<u8> {
    vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]
}

/// 4 KiB of pseudo-random bytes (not UTF-8, no header).
fn random_bytes() -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_cache_entry_is_detected_and_rebuilt() {
    let h = Harness::new();
    // A private cache so this test owns the entry it corrupts.
    let cache = h.dir.path().join("cache");
    let config = agent_host::HostConfig {
        cache_dir: cache.clone(),
        ..agent_host::HostConfig::default()
    };
    let runtime = agent_host::Runtime::new(config).unwrap();
    let manifest = h.manifest("hello", guests::HELLO, "");
    let loaded = agent_host::manifest::LoadedAgent::from_file(&manifest).unwrap();

    let first = runtime.prepare(&loaded).unwrap();
    assert_eq!(first.cache_status, CacheStatus::Miss);
    assert_eq!(
        runtime.prepare(&loaded).unwrap().cache_status,
        CacheStatus::Hit
    );

    let entry = runtime.cache().entry_path(&first.digest);
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();

    let rebuilt = runtime.prepare(&loaded).unwrap();
    assert!(
        matches!(rebuilt.cache_status, CacheStatus::Rebuilt { .. }),
        "{:?}",
        rebuilt.cache_status
    );
    let out = output_json(&rebuilt.invoke(task(json!({"name": "cache"}))).await);
    assert_eq!(out["greeting"], "hello, cache");
    assert_eq!(
        runtime.prepare(&loaded).unwrap().cache_status,
        CacheStatus::Hit
    );
}

/// A file that is not binary WebAssembly is refused on its first bytes, naming
/// the file, and never reaches the compiler: wasmtime also reads the text
/// format, which made an empty file a core module and random bytes a UTF-8
/// error of the text parser.
#[test]
fn files_without_the_wasm_header_are_refused_as_not_webassembly() {
    let h = Harness::new();
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", vec![]),
        ("random", random_bytes()),
        ("short", b"\0as".to_vec()),
        ("text", b"(component)".to_vec()),
        ("script", b"#!/bin/sh\necho not wasm\n".to_vec()),
    ];
    for (name, bytes) in cases {
        let file = h.dir.path().join(format!("{name}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        let manifest = h.manifest(name, file.to_str().unwrap(), "");
        match h.load(&manifest) {
            Err(e @ LoadError::Component { .. }) => {
                let text = e.to_string();
                let file = file.canonicalize().unwrap();
                assert!(
                    text.starts_with(&format!(
                        "{}: not a WebAssembly component (no `\\0asm` header)",
                        file.display()
                    )),
                    "{name}: {text}"
                );
            }
            Err(other) => panic!("{name}: expected a Component error, got {other:?}"),
            Ok(_) => panic!("{name}: accepted"),
        }
    }
}
