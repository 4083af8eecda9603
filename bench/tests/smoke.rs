//! The benchmark harness runs every scenario end to end with a handful of
//! iterations, so it cannot rot. Figures are not checked: only that each
//! scenario produced them and the outputs are complete.

use std::process::Command;

const SCENARIOS: [&str; 13] = [
    "per-invocation",
    "process-per-task",
    "allocator",
    "metering",
    "cold-start",
    "registry-start",
    "http",
    "mcp",
    "density",
    "abi",
    "durable-async",
    "durable-keyed",
    "languages",
];

#[test]
fn every_scenario_runs_and_is_reported() {
    let out_dir = tempfile::tempdir().unwrap();
    let readme = out_dir.path().join("README.md");
    std::fs::write(
        &readme,
        "# x\n<!-- bench:begin -->\nSTALE SECTION\n<!-- bench:end -->\ntail\n",
    )
    .unwrap();
    // agent-host is built next to this binary by the workspace's `cargo test`.
    let out = Command::new(env!("CARGO_BIN_EXE_agent-host-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(out_dir.path())
        .arg("--readme")
        .arg(&readme)
        .arg("--native-bin")
        .arg(env!("CARGO_BIN_EXE_hello-native"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "harness failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results["quick"], true);
    assert!(results["machine"]["cores"].as_u64().unwrap() >= 1);
    let scenarios = results["scenarios"].as_array().unwrap();
    let ids: Vec<&str> = scenarios
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, SCENARIOS);
    for s in scenarios {
        let id = &s["id"];
        let rows = s["rows"].as_array().unwrap();
        assert!(rows.len() >= 2, "{id}: a measurement and its baseline");
        assert!(
            rows.iter().any(|r| r["role"] == "baseline"),
            "{id}: no baseline"
        );
        for r in rows {
            let figure = r["latency"]["medianUs"].as_f64().or(r["value"].as_f64());
            assert!(
                figure.is_some_and(|f| f.is_finite()),
                "{id}: row without a figure: {r}"
            );
        }
        let goals = s["goals"].as_array().unwrap();
        assert!(!goals.is_empty(), "{id}: no goal");
        for g in goals {
            assert!(g["met"].is_boolean() && !g["figure"].as_str().unwrap().is_empty());
        }
        assert!(s["ratios"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["value"].as_f64().is_some_and(f64::is_finite)));
    }

    let md = std::fs::read_to_string(out_dir.path().join("results.md")).unwrap();
    for s in scenarios {
        assert!(md.contains(s["title"].as_str().unwrap()));
    }
    assert!(md.contains("smoke run"));
    let svg = std::fs::read_to_string(out_dir.path().join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("polyline"));
    let readme = std::fs::read_to_string(&readme).unwrap();
    assert!(readme.starts_with("# x\n<!-- bench:begin -->\nMeasured "));
    assert!(
        readme.contains("| Per-invocation latency |")
            && readme.ends_with("<!-- bench:end -->\ntail\n")
    );
    assert!(!readme.contains("STALE SECTION"));
}
