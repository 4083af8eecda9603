//! The host's integration tests as one test binary, so wasmtime is linked once
//! rather than once per file: each `tests/<area>.rs` is a module here, and
//! `support` is the process harness `serve`, `pod` and `replicas` share.

mod cli;
mod deploy;
mod mcp;
/// A standard-library model stand-in shared by `cli` and `serve`.
#[path = "common/model.rs"]
mod model;
mod pod;
mod registry;
mod replicas;
mod serve;
mod support;

/// The binary's own test harness is off (`test = false` on `[[bin]]` in
/// host/Cargo.toml), so a unit test under `src/cli/` would silently never run.
#[test]
fn no_test_hides_in_the_binary_whose_harness_is_off() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let main = std::fs::read_to_string(src.join("main.rs")).unwrap();
    // The binary's own modules (`mod cli;`): `src/<name>.rs` and `src/<name>/`.
    let modules: Vec<&str> = main
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    assert!(modules.contains(&"cli"), "src/main.rs declares {modules:?}");
    let mut files = vec![src.join("main.rs")];
    let mut dirs = Vec::new();
    for name in modules {
        files.push(src.join(format!("{name}.rs")));
        dirs.push(src.join(name));
    }
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for marker in ["#[test]", "#[tokio::test", "#[cfg(test)]"] {
            assert!(
                !text.contains(marker),
                "{} has `{marker}`, but the agent-host binary's test harness is off \
                 (host/Cargo.toml `test = false`) so it would never run: test the CLI \
                 by running the binary (tests/cli.rs) or turn the harness back on",
                file.display()
            );
        }
    }
}
