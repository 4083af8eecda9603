//! Attack: recurses without bound (non-tail, with a stack frame the optimizer
//! cannot drop), so only the host's stack limit can stop it.

use std::hint::black_box;

use agent_host_guest::{Agent, AgentError, Output, Task};

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let mut frame = [0u8; 64];
    frame[(depth % 64) as usize] = depth as u8;
    black_box(&mut frame);
    let below = recurse(black_box(depth + 1));
    below.wrapping_add(u64::from(frame[(depth % 64) as usize]))
}

struct DeepRecursion;

impl Agent for DeepRecursion {
    fn run(_task: Task) -> Result<Output, AgentError> {
        let total = recurse(0);
        Output::json(&serde_json::json!({ "total": total }))
    }
}

agent_host_guest::export_agent!(DeepRecursion);
