//! The PyPI tools the deploy tests run (installed by `make setup`, see
//! scripts/install-tools.sh): kubernetes-validate and jsonschema, both through
//! `python3 -m`/`-c` so the interpreter that pip installed them for is the one used.
//! A missing tool fails the test; it never skips it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const SETUP: &str = "run `make setup` (scripts/install-tools.sh installs it)";

/// Runs `python3 args`, feeding it `stdin`.
fn python(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("python3")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {SETUP}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Panics with the set-up hint when `module` cannot be imported.
fn require_module(module: &str, package: &str) {
    let out = python(&["-c", &format!("import {module}")], "");
    assert!(
        out.status.success(),
        "the PyPI package {package} is missing: {SETUP}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// kubernetes-validate's own version and the newest Kubernetes version it has schemas for.
pub fn kubernetes_validate_versions() -> (String, String) {
    require_module("kubernetes_validate", "kubernetes-validate");
    let out = python(
        &[
            "-c",
            "import kubernetes_validate.utils as u, kubernetes_validate.version as v; \
             print(v.__version__, u.latest_version())",
        ],
        "",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (package, newest) = text.trim().split_once(' ').expect("two versions");
    (package.to_owned(), newest.to_owned())
}

/// `kubernetes-validate --strict -k <kubernetes> files...`: its exit code and output lines.
pub fn kubernetes_validate(kubernetes: &str, files: &[String]) -> (bool, Vec<String>) {
    require_module("kubernetes_validate", "kubernetes-validate");
    let mut args = vec!["-m", "kubernetes_validate", "--strict", "-k", kubernetes];
    args.extend(files.iter().map(String::as_str));
    let out = python(&args, "");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.success(),
        text.lines().map(str::to_owned).collect(),
    )
}

/// Validates each of `documents` (name -> value) against the JSON Schema `schema` with
/// Python's jsonschema (draft 2020-12); returns each name's error messages.
pub fn json_schema_errors(schema: &Value, documents: &Value) -> Value {
    require_module("jsonschema", "jsonschema");
    const SCRIPT: &str = r#"
import json, sys, jsonschema
request = json.load(sys.stdin)
validator = jsonschema.Draft202012Validator(request["schema"])
print(json.dumps({
    name: sorted("/".join(map(str, e.absolute_path)) + ": " + e.message
                 for e in validator.iter_errors(doc))
    for name, doc in request["documents"].items()
}))
"#;
    let request = serde_json::json!({ "schema": schema, "documents": documents });
    let out = python(&["-c", SCRIPT], &request.to_string());
    assert!(
        out.status.success(),
        "jsonschema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
