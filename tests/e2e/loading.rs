//! Loading fails closed and precisely: ungranted imports, bad manifests, bad
//! component files and corrupted cache entries.

use agent_host::runtime::{CacheStatus, LoadError};
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use serde_json::json;

#[test]
fn component_importing_sockets_is_refused_naming_the_import() {
    let h = Harness::new();
    let manifest = h.manifest("sockets", guests::SOCKETS_IMPORT, "");
    match h.load(&manifest) {
        Err(LoadError::UngrantedImports { agent, refused }) => {
            assert_eq!(agent, "sockets");
            assert!(
                refused
                    .iter()
                    .any(|b| b.import.starts_with("wasi:sockets/")),
                "{refused:?}"
            );
        }
        Err(other) => panic!("expected UngrantedImports, got {other}"),
        Ok(_) => panic!("a component importing wasi:sockets was accepted"),
    }
}

#[test]
fn http_component_without_http_grant_is_refused_naming_the_import_and_the_grant() {
    let h = Harness::new();
    let manifest = h.manifest("nohttp", guests::HTTP_PROBE, "");
    let err = h.load(&manifest).err().expect("must be refused");
    let text = err.to_string();
    assert!(text.contains("wasi:http/outgoing-handler"), "{text}");
    assert!(text.contains("spec.capabilities.http"), "{text}");
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
    assert!(inspection
        .refused()
        .any(|b| b.import.starts_with("wasi:http/outgoing-handler")));
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
