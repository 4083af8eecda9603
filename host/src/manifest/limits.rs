//! `spec.limits`: the budgets of one invocation, and their defaults and bounds.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KubeDuration, Quantity};

const KI: u64 = 1 << 10;
const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;

/// Default fuel per invocation: stops a guest spinning in a loop from holding a CPU.
pub const DEFAULT_FUEL: u64 = 1_000_000_000;
/// Default linear memory per invocation: stops `memory.grow` from exhausting the pod.
pub const DEFAULT_MEMORY: Quantity = Quantity::from_bytes(64 * MI);
/// Default wall-clock time per invocation: stops a guest that waits on I/O (burning no
/// fuel) from holding its slot forever.
pub const DEFAULT_TIMEOUT: KubeDuration = KubeDuration::from_duration(Duration::from_secs(30));
/// Default concurrent invocations: stops a flood of tasks from exhausting host memory.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 32;
/// Default outgoing HTTP requests per invocation: stops a guest using the host to
/// hammer or exfiltrate to a granted endpoint.
pub const DEFAULT_MAX_HTTP_REQUESTS: u32 = 20;
/// Default result size: stops a guest making the host buffer an unbounded result.
pub const DEFAULT_MAX_OUTPUT_BYTES: Quantity = Quantity::from_bytes(MI);
/// Default stdout + stderr + log bytes per invocation: stops a guest flooding the logs.
pub const DEFAULT_MAX_LOG_BYTES: Quantity = Quantity::from_bytes(256 * KI);
/// Default table elements: stops `table.grow` from using host memory outside the memory limit.
pub const DEFAULT_MAX_TABLE_ELEMENTS: u32 = 10_000;
/// Default core instances per component instance: stops a component multiplying its
/// memory and table reservations by instantiating many modules.
pub const DEFAULT_MAX_INSTANCES: u32 = 16;
/// Default live handles in the host's resource table: stops a guest leaking streams or
/// requests until the host runs out of memory.
pub const DEFAULT_MAX_RESOURCES: u32 = 1000;
/// Default size of one HTTP response body: stops a granted (or compromised)
/// endpoint from streaming unbounded data into the host on the guest's behalf.
pub const DEFAULT_MAX_HTTP_RESPONSE_BYTES: Quantity = Quantity::from_bytes(10 * MI);
/// Default bytes of file data one invocation may write to read-write mounts:
/// stops a guest filling the host's disk through a granted directory.
pub const DEFAULT_MAX_WRITE_BYTES: Quantity = Quantity::from_bytes(16 * MI);
/// Default size of a task input: the host buffers it before the agent runs.
pub const DEFAULT_MAX_INPUT_BYTES: Quantity = Quantity::from_bytes(MI);
/// Default invocations that may wait for a slot when `maxConcurrency` are running:
/// absorbs bursts, and bounds what the host holds in memory.
pub const DEFAULT_MAX_QUEUE: u32 = 32;
/// Largest allowed `maxInputBytes`.
pub const MAX_INPUT_BYTES: Quantity = Quantity::from_bytes(64 * MI);
/// Largest allowed `maxQueue`: every waiting task is held in host memory.
pub const MAX_QUEUE: u32 = 10_000;
/// Default capability refusals per invocation (`maxDenials`); one more ends the
/// invocation (`DenialLimit`): stops a guest probing paths or URLs in a loop
/// from flooding the audit log and the host's logs.
pub const DEFAULT_MAX_DENIALS: u32 = 32;
/// Largest allowed `maxDenials`: as many as the audit log records per invocation.
pub const MAX_DENIALS: u32 = 256;
/// Default bytes per host call: stops a guest making the host copy a huge string or list.
pub const DEFAULT_HOSTCALL_BYTES: Quantity = Quantity::from_bytes(16 * MI);

/// Smallest allowed `memory`: one wasm page, below which no module with memory can run.
pub const MIN_MEMORY: Quantity = Quantity::from_bytes(64 * KI);
/// Largest allowed `memory`: the whole wasm32 address space.
pub const MAX_MEMORY: Quantity = Quantity::from_bytes(4 * GI);
/// Largest allowed `timeout`: longer jobs should be split, not hold a slot for hours.
pub const MAX_TIMEOUT: KubeDuration = KubeDuration::from_duration(Duration::from_hours(1));
/// Largest allowed `maxOutputBytes`: results are buffered in host memory.
pub const MAX_OUTPUT_BYTES: Quantity = Quantity::from_bytes(64 * MI);

/// Per-invocation budgets. Each field left out keeps its default (the `DEFAULT_*`
/// constants), so a partial `limits:` block changes only what it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "!has(self.fuel) || self.fuel > 0", "message": "fuel must be greater than 0" },
    { "rule": "!has(self.maxConcurrency) || self.maxConcurrency > 0", "message": "maxConcurrency must be greater than 0" },
    { "rule": "!has(self.maxHttpRequests) || self.maxHttpRequests > 0", "message": "maxHttpRequests must be greater than 0" },
    { "rule": "!has(self.maxTableElements) || self.maxTableElements > 0", "message": "maxTableElements must be greater than 0" },
    { "rule": "!has(self.maxInstances) || self.maxInstances > 0", "message": "maxInstances must be greater than 0" },
    { "rule": "!has(self.maxResources) || self.maxResources > 0", "message": "maxResources must be greater than 0" },
    { "rule": "!has(self.maxQueue) || self.maxQueue <= 10000", "message": "maxQueue must be at most 10000 (waiting tasks are held in memory)" },
    { "rule": "!has(self.maxDenials) || self.maxDenials <= 256", "message": "maxDenials must be at most 256 (each denial is audited)" }
]))]
pub struct Limits {
    /// Wasm fuel (roughly, instructions) one invocation may burn.
    pub fuel: u64,
    /// Linear memory one invocation may use, 64Ki to 4Gi.
    pub memory: Quantity,
    /// Wall-clock time one invocation may take, at most 1h.
    pub timeout: KubeDuration,
    /// Invocations of this agent that may run at once.
    pub max_concurrency: u32,
    /// Invocations that may wait for a slot (serve mode); past it, requests are refused.
    /// Durable (async and keyed) invocations wait in the state store, where the
    /// agent's queue holds maxQueue + maxConcurrency queued or running ones of
    /// all replicas together, and their inputs' bytes are bounded likewise.
    pub max_queue: u32,
    /// Size of one task input, at most 64Mi.
    pub max_input_bytes: Quantity,
    /// Outgoing HTTP requests one invocation may make.
    pub max_http_requests: u32,
    /// Capability refusals (HTTP, files, model) one invocation may receive, at
    /// most 256; one more ends it with `DenialLimit`.
    pub max_denials: u32,
    /// Size of one HTTP response body the guest may receive.
    pub max_http_response_bytes: Quantity,
    /// Size of one invocation's result, at most 64Mi.
    pub max_output_bytes: Quantity,
    /// Bytes of stdout, stderr and log records one invocation may write.
    pub max_log_bytes: Quantity,
    /// Bytes of file data one invocation may write to read-write mounts.
    pub max_write_bytes: Quantity,
    /// Elements across all tables of one invocation.
    pub max_table_elements: u32,
    /// Core instances in one component instance.
    pub max_instances: u32,
    /// Live handles in the host's resource table.
    pub max_resources: u32,
    /// Bytes the guest may pass to the host in one call.
    pub hostcall_bytes: Quantity,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: DEFAULT_FUEL,
            memory: DEFAULT_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_queue: DEFAULT_MAX_QUEUE,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            max_http_requests: DEFAULT_MAX_HTTP_REQUESTS,
            max_denials: DEFAULT_MAX_DENIALS,
            max_http_response_bytes: DEFAULT_MAX_HTTP_RESPONSE_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
            max_table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_resources: DEFAULT_MAX_RESOURCES,
            hostcall_bytes: DEFAULT_HOSTCALL_BYTES,
        }
    }
}
