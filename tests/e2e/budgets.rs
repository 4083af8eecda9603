//! Every budget of the manifest stops a misbehaving guest with its typed
//! error, and the same host runs the next invocation normally.

use agent_host::{InvocationError, PreparedAgent};
use agent_host_e2e::guests;
use agent_host_e2e::support::{output_json, task, Harness};
use serde_json::json;

/// Runs hello in the same host and checks it still works.
async fn host_still_serves(h: &Harness) {
    let hello = h.agent("hello-after", guests::HELLO, "");
    let inv = hello.invoke(task(json!({"name": "again"}))).await;
    assert_eq!(output_json(&inv)["greeting"], "hello, again");
}

/// The invocation ended as `Timeout`, near its (sub-second) deadline.
fn assert_stopped_at_the_deadline(inv: &agent_host::Invocation) {
    assert!(
        matches!(inv.result, Err(InvocationError::Timeout { .. })),
        "{:?}",
        inv.result
    );
    assert!(
        inv.usage.wall_time_us < 3_000_000,
        "stopped near the deadline: {} µs",
        inv.usage.wall_time_us
    );
}

async fn run(agent: &PreparedAgent, input: serde_json::Value) -> InvocationError {
    let inv = agent.invoke(task(input)).await;
    inv.result.expect_err("the invocation should have failed")
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_exhausts_fuel_and_the_next_invocation_runs() {
    let h = Harness::new();
    let agent = h.agent(
        "spin",
        guests::SPIN_FOREVER,
        "  limits: { fuel: 50000000, timeout: 60s }\n",
    );
    let inv = agent.invoke(task(json!({}))).await;
    assert_eq!(
        inv.result,
        Err(InvocationError::FuelExhausted { limit: 50_000_000 })
    );
    assert_eq!(
        inv.usage.fuel_consumed, 50_000_000,
        "all fuel is reported as used"
    );
    // The same agent fails the same way again from a fresh instance...
    assert!(matches!(
        run(&agent, json!({})).await,
        InvocationError::FuelExhausted { .. }
    ));
    // ...and other agents are unaffected.
    host_still_serves(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_bound_guest_is_stopped_at_the_wall_clock_deadline() {
    let h = Harness::new();
    let agent = h.agent(
        "spin-time",
        guests::SPIN_FOREVER,
        "  limits: { fuel: 100000000000000, timeout: 300ms }\n",
    );
    assert_stopped_at_the_deadline(&agent.invoke(task(json!({}))).await);
    host_still_serves(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_blocked_in_a_host_call_times_out() {
    let h = Harness::new();
    let agent = h.agent(
        "sleeper",
        guests::SLEEP_FOREVER,
        "  limits: { timeout: 300ms }\n",
    );
    assert_stopped_at_the_deadline(&agent.invoke(task(json!({}))).await);
    host_still_serves(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_grow_bomb_hits_the_memory_limit() {
    let h = Harness::new();
    let agent = h.agent("bomb", guests::MEMORY_BOMB, "  limits: { memory: 16Mi }\n");
    let inv = agent.invoke(task(json!({}))).await;
    match inv.result {
        Err(InvocationError::MemoryLimit { limit, desired }) => {
            assert_eq!(limit, 16 << 20);
            assert!(desired > limit);
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert!(inv.usage.peak_memory_bytes <= 16 << 20 && inv.usage.peak_memory_bytes > 8 << 20);
    host_still_serves(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_traps_as_stack_overflow() {
    let h = Harness::new();
    let agent = h.agent("recurse", guests::DEEP_RECURSION, "");
    match run(&agent, json!({})).await {
        InvocationError::Trap { message } => {
            assert!(message.contains("call stack exhausted"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    host_still_serves(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn output_over_the_limit_is_refused() {
    let h = Harness::new();
    let agent = h.agent(
        "big",
        guests::BIG_OUTPUT,
        "  limits: { maxOutputBytes: 1Ki }\n",
    );
    match run(&agent, json!({"bytes": 4096})).await {
        InvocationError::OutputTooLarge { size, limit } => {
            assert_eq!(limit, 1024);
            assert!(size >= 4096);
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
    let small = agent.invoke(task(json!({"bytes": 100}))).await;
    assert!(small.result.is_ok(), "{:?}", small.result);
}

#[tokio::test(flavor = "multi_thread")]
async fn panic_is_a_trap_carrying_the_panic_message() {
    let h = Harness::new();
    let agent = h.agent("panicker", guests::TRAP, "");
    match run(&agent, json!({})).await {
        InvocationError::Trap { message } => {
            assert!(message.contains("agent panicked on purpose"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    host_still_serves(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_error_is_reported_with_its_kind() {
    let h = Harness::new();
    let agent = h.agent("failer", guests::FAIL, "");
    assert_eq!(
        run(&agent, json!({})).await,
        InvocationError::Agent {
            kind: "upstream",
            message: "upstream is down".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_json_input_is_refused_before_the_guest_runs() {
    let h = Harness::new();
    let agent = h.agent("hello", guests::HELLO, "");
    let inv = agent
        .invoke(agent_host::TaskInput {
            input: "{not json".into(),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(inv.result, Err(InvocationError::InvalidInput { .. })),
        "{:?}",
        inv.result
    );
    assert_eq!(inv.usage.fuel_consumed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn log_flood_is_cut_at_the_log_budget() {
    let h = Harness::new();
    let agent = h.agent(
        "flood",
        guests::LOG_FLOOD,
        "  limits: { maxLogBytes: 4Ki }\n",
    );
    let inv = agent
        .invoke(task(json!({"records": 2000, "stdout_lines": 2000})))
        .await;
    assert!(inv.result.is_ok(), "{:?}", inv.result);
    assert!(
        inv.usage.log_records < 2000,
        "records forwarded: {}",
        inv.usage.log_records
    );
    assert!(
        inv.usage.log_dropped_bytes > 10_000,
        "dropped: {}",
        inv.usage.log_dropped_bytes
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invocations_past_max_concurrency_are_refused_not_queued() {
    let h = Harness::new();
    let agent = h.agent(
        "one-at-a-time",
        guests::SLEEP_FOREVER,
        "  limits: { maxConcurrency: 1, timeout: 500ms }\n",
    );
    let (first, second) = tokio::join!(agent.invoke(task(json!({}))), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        agent.invoke(task(json!({}))).await
    });
    assert!(
        matches!(first.result, Err(InvocationError::Timeout { .. })),
        "{:?}",
        first.result
    );
    assert!(
        matches!(second.result, Err(InvocationError::Capacity { .. })),
        "{:?}",
        second.result
    );
    // The slot is free again once the first invocation ended.
    let third = agent.invoke(task(json!({}))).await;
    assert!(
        matches!(third.result, Err(InvocationError::Timeout { .. })),
        "{:?}",
        third.result
    );
}

/// The benchmarks' metering modes do what they say: with epochs only, a
/// CPU-bound guest is still stopped at its deadline but its fuel budget is
/// neither counted nor enforced; the default (what the CLI runs) enforces fuel.
#[tokio::test(flavor = "multi_thread")]
async fn epoch_only_metering_keeps_the_deadline_but_drops_fuel() {
    use agent_host::config::{HostConfig, Metering};
    assert_eq!(HostConfig::default().metering, Metering::FuelAndEpoch);
    let limits = "  limits: { fuel: 50000000, timeout: 300ms }\n";

    let epoch_only = Harness::with_config(|c| c.metering = Metering::EpochOnly);
    let agent = epoch_only.agent("spin-epoch", guests::SPIN_FOREVER, limits);
    let inv = agent.invoke(task(json!({}))).await;
    assert_stopped_at_the_deadline(&inv);
    assert_eq!(inv.usage.fuel_consumed, 0, "fuel is not counted");

    let default = Harness::new();
    let agent = default.agent("spin-fuel", guests::SPIN_FOREVER, limits);
    assert_eq!(
        run(&agent, json!({})).await,
        InvocationError::FuelExhausted { limit: 50_000_000 }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn denials_past_max_denials_end_the_invocation_with_denial_limit() {
    let h = Harness::new();
    let data = h.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let agent = h.agent(
        "prober",
        guests::DENIAL_FLOOD,
        &format!(
            "  capabilities:\n    filesystem:\n      - {{ hostPath: {}, guestPath: /data }}\n    http:\n      - {{ url: 'http://127.0.0.1:9/granted/', methods: [GET] }}\n  limits: {{ maxDenials: 5, maxHttpRequests: 2, timeout: 20s }}\n",
            data.display()
        ),
    );
    // Refused opens: the sixth ends the invocation in the host call.
    let inv = agent
        .invoke(task(json!({ "opens": 1000, "pathBytes": 16 })))
        .await;
    assert_eq!(inv.result, Err(InvocationError::DenialLimit { limit: 5 }));
    assert_eq!(
        inv.usage.caps.filesystem.file_denied, 6,
        "stopped at the first denial past the budget"
    );
    // Refused requests are a separate count from maxHttpRequests (2), which
    // still counts only requests sent; the budget ends the invocation.
    let inv = agent
        .invoke(task(
            json!({ "requests": 1000, "url": "http://127.0.0.1:9/refused", "urlBytes": 64 }),
        ))
        .await;
    assert_eq!(inv.result, Err(InvocationError::DenialLimit { limit: 5 }));
    assert_eq!(inv.usage.caps.http.http_requests, 0);
    assert!(
        (6..20).contains(&inv.usage.caps.http.http_denied),
        "stopped right after the budget: {} denied",
        inv.usage.caps.http.http_denied
    );
    // Within the budget the agent runs normally.
    let inv = agent
        .invoke(task(json!({ "opens": 5, "pathBytes": 16 })))
        .await;
    assert_eq!(output_json(&inv)["refusedOpens"], 5);
    host_still_serves(&h).await;
}
