//! Hostile component files: one built for another world, one whose core start
//! function never returns, and ones larger than the host accepts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_host::runtime::LoadError;
use agent_host::InvocationError;
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use serde_json::json;

/// Writes `text` (WAT) in the binary format, the only one the host loads, to `<name>.wasm`.
fn write_component(h: &Harness, name: &str, text: &str) -> PathBuf {
    let path = h.dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, wat::parse_str(text).expect("valid WAT")).unwrap();
    path
}

fn load_component(h: &Harness, name: &str, path: &Path) -> Result<(), LoadError> {
    let manifest = h.manifest(name, path.to_str().unwrap(), "");
    h.load(&manifest).map(drop)
}

/// The agent world's types and a `run` export lifted from core function
/// `$i "run"`, to append to a component defining core instance `$i` with
/// `memory`, `realloc` and `run` (six i32 params, i32 result).
const AGENT_RUN_EXPORT: &str = r#"
  (type $task' (record (field "id" string) (field "input" string)
                       (field "metadata" (list (tuple string string)))))
  (export $task "task" (type $task'))
  (type $output' (record (field "data" string)))
  (export $output "output" (type $output'))
  (type $error' (variant (case "invalid-input" string) (case "capability-denied" string)
                         (case "upstream" string) (case "internal" string)))
  (export $error "agent-error" (type $error'))
  (func $run (param "task" $task) (result (result $output (error $error)))
    (canon lift (core func $i "run") (memory (core memory $i "memory"))
                (realloc (core func $i "realloc"))))
  (export "run" (func $run))
"#;

#[test]
fn component_for_another_world_is_refused_as_wrong_world() {
    let h = Harness::new();
    let empty = write_component(&h, "empty-component", "(component)");
    let other_run = write_component(
        &h,
        "other-run",
        r#"(component
             (core module $m (func (export "run")))
             (core instance $i (instantiate $m))
             (func $run (canon lift (core func $i "run")))
             (export "run" (func $run)))"#,
    );
    for (name, path) in [("empty-component", empty), ("other-run", other_run)] {
        match load_component(&h, name, &path) {
            Err(LoadError::WrongWorld { path: p, message }) => {
                assert_eq!(p, path.canonicalize().unwrap());
                assert!(message.contains("run"), "{name}: {message}");
            }
            Err(other) => panic!("{name}: expected WrongWorld, got {other:?}"),
            Ok(()) => panic!("{name}: a component for another world was accepted"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn start_function_that_never_returns_is_stopped_and_the_host_still_serves() {
    let h = Harness::new();
    let text = format!(
        r#"(component
  (core module $m
    (memory (export "memory") 1)
    (func $spin (loop br 0))
    (start $spin)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) unreachable)
    (func (export "run") (param i32 i32 i32 i32 i32 i32) (result i32) unreachable))
  (core instance $i (instantiate $m))
  {AGENT_RUN_EXPORT})"#
    );
    let path = write_component(&h, "spin-start", &text);
    let path = path.to_str().unwrap();
    // Stopped by fuel when fuel is the tighter budget, by the wall clock otherwise.
    let by_fuel = h.agent(
        "start-fuel",
        path,
        "  limits: { fuel: 50000000, timeout: 30s }\n",
    );
    let by_time = h.agent(
        "start-time",
        path,
        "  limits: { fuel: 100000000000000, timeout: 300ms }\n",
    );
    for agent in [&by_fuel, &by_fuel, &by_time] {
        let inv = tokio::time::timeout(Duration::from_secs(60), agent.invoke(task(json!({}))))
            .await
            .expect("the start function was never interrupted");
        let stopped = match agent.name() {
            "start-fuel" => matches!(inv.result, Err(InvocationError::FuelExhausted { .. })),
            _ => matches!(inv.result, Err(InvocationError::Timeout { .. })),
        };
        assert!(stopped, "{}: {:?}", agent.name(), inv.result);
    }
    let hello = h.agent("hello-after", guests::HELLO, "");
    let inv = hello.invoke(task(json!({"name": "again"}))).await;
    assert_eq!(output_json(&inv)["greeting"], "hello, again");
}

/// Asserts `result` is a `Component` error for `path` stating `size` and `limit`.
fn assert_too_large<T>(result: Result<T, LoadError>, path: &Path, size: &str, limit: u64) {
    match result {
        Err(LoadError::Component { path: p, message }) => {
            assert_eq!(p, path);
            let expected =
                format!("component is {size} bytes; the host accepts at most {limit} bytes");
            assert_eq!(message, expected);
        }
        Err(other) => panic!("expected a Component size error, got {other:?}"),
        Ok(_) => panic!("{} was accepted", path.display()),
    }
}

#[test]
fn component_larger_than_the_configured_limit_is_refused_before_compiling() {
    let h = Harness::with_config(|config| config.max_component_bytes = 4096);
    // Garbage: were it compiled, the error would be `Compile`, not a size error.
    let garbage = h.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, vec![0xa5; 4097]).unwrap();
    assert_too_large(h.runtime.compile(&garbage), &garbage, "4097", 4096);
    // A real agent over the limit is refused through the manifest path too.
    let hello = Path::new(guests::HELLO).canonicalize().unwrap();
    let size = std::fs::metadata(&hello).unwrap().len().to_string();
    let manifest = h.manifest("hello-big", hello.to_str().unwrap(), "");
    assert_too_large(h.load(&manifest), &hello, &size, 4096);
    // At exactly the limit the file is read and handed to the compiler (with
    // the binary header: without it the file is refused before compiling).
    let mut at_limit = b"\0asm".to_vec();
    at_limit.resize(4096, 0xa5);
    std::fs::write(&garbage, at_limit).unwrap();
    assert!(matches!(
        h.runtime.compile(&garbage),
        Err(LoadError::Compile { .. })
    ));
}

#[test]
fn devices_and_fifos_are_refused_without_reading_them() {
    // /dev/zero never ends and opening a FIFO blocks until a writer comes:
    // both are refused on their file type, before any read.
    let h = Harness::new();
    let fifo = h.dir.path().join("component.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for path in [Path::new("/dev/zero"), fifo.as_path()] {
        match h.runtime.compile(path) {
            Err(LoadError::Component { message, .. }) => {
                assert!(
                    message.contains("not a regular file"),
                    "{}: {message}",
                    path.display()
                )
            }
            Err(other) => panic!(
                "{}: expected a Component error, got {other:?}",
                path.display()
            ),
            Ok(_) => panic!("{} was accepted", path.display()),
        }
    }
}
