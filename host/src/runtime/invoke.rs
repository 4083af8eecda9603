//! One invocation: a fresh store and instance from the agent's `InstancePre`,
//! every budget armed, `run(task)` called once, the outcome classified and the
//! usage reported; the store is dropped at the end whatever happened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::limiter::{Limiter, MemoryLimitExceeded};
use super::state::InvocationState;
use super::PreparedAgent;
use crate::bindings::{AgentError, Task};
use crate::cap::key_value::{KeyValueCommit, KeyValueError};
use crate::cap::log::GuestLog;
use crate::cap::{CommitIntent, Core, HostCalls, Kind, PrepareCx, States};
use crate::redact::redact;

/// A task for an agent.
#[derive(Clone, Debug, Default)]
pub struct TaskInput {
    /// Invocation id; generated when absent.
    pub id: Option<String>,
    /// JSON text handed to the agent.
    pub input: String,
    /// Caller metadata passed through to the agent.
    pub metadata: Vec<(String, String)>,
}

/// Why an invocation did not produce an output. Each variant is a stable
/// outcome code (see [`InvocationError::code`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvocationError {
    /// The host refused the input before running the agent.
    #[error("input is not valid JSON: {reason}")]
    InvalidInput {
        /// Parser message.
        reason: String,
    },
    /// The input is larger than `spec.limits.maxInputBytes`.
    #[error("input of {size} bytes exceeds spec.limits.maxInputBytes of {limit}")]
    InputTooLarge {
        /// Input size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The agent returned an error.
    #[error("agent returned {kind}: {message}")]
    Agent {
        /// `invalid-input`, `capability-denied`, `upstream` or `internal`.
        kind: &'static str,
        /// The agent's message.
        message: String,
    },
    /// The invocation used all its fuel (`spec.limits.fuel`).
    #[error("fuel exhausted: the invocation used all {limit} units of spec.limits.fuel")]
    FuelExhausted {
        /// The limit.
        limit: u64,
    },
    /// The guest asked for more linear memory than `spec.limits.memory`.
    #[error("memory limit: the guest tried to grow linear memory to {desired} bytes; spec.limits.memory is {limit}")]
    MemoryLimit {
        /// The limit in bytes.
        limit: u64,
        /// What the guest asked for.
        desired: u64,
    },
    /// The invocation ran past `spec.limits.timeout`.
    #[error("timeout: the invocation ran past spec.limits.timeout of {limit:?}")]
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// The output is larger than `spec.limits.maxOutputBytes`.
    #[error("output of {size} bytes exceeds spec.limits.maxOutputBytes of {limit}")]
    OutputTooLarge {
        /// Output size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The guest passed more data to the host in one call than `spec.limits.hostcallBytes`.
    #[error("host-call limit: the guest passed more than spec.limits.hostcallBytes ({limit} bytes) in one call")]
    HostcallLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest held more live handles than `spec.limits.maxResources`.
    #[error(
        "resource limit: the guest held more than spec.limits.maxResources ({limit}) live handles"
    )]
    ResourceLimit {
        /// The limit.
        limit: u32,
    },
    /// The guest trapped (panic, stack overflow, bad memory access...).
    #[error("trap: {message}")]
    Trap {
        /// What happened, with the guest's panic message when it printed one.
        message: String,
    },
    /// The guest called `wasi:cli/exit` instead of returning.
    #[error("the agent exited with status {code} instead of returning a result")]
    Exit {
        /// Exit status.
        code: i32,
    },
    /// The host is at capacity (instance pool exhausted); retry later.
    #[error("host at capacity: {message}")]
    Capacity {
        /// Detail.
        message: String,
    },
    /// The guest was refused capabilities more than `spec.limits.maxDenials`
    /// times; it was stopped there and nothing it wrote was committed.
    #[error("denial limit: the invocation was refused capabilities more than spec.limits.maxDenials ({limit}) times")]
    DenialLimit {
        /// The limit.
        limit: u32,
    },
    /// The invocation's key-value writes could not be committed; none were.
    #[error("key-value commit refused, nothing was written: {error}")]
    KeyValue {
        /// Why (a conflicting commit, the quota, the backend).
        error: crate::cap::key_value::KeyValueError,
    },
    /// A host-side fault unrelated to the guest's behaviour.
    #[error("host error: {message}")]
    Host {
        /// Detail.
        message: String,
    },
}

impl InvocationError {
    /// Removes secret values from the guest-controlled text an error carries
    /// (agent messages, panic messages), so they never reach logs or callers.
    pub fn redacted(self, secrets: &[String]) -> Self {
        match self {
            InvocationError::Agent { kind, message } => InvocationError::Agent {
                kind,
                message: redact(&message, secrets).into_owned(),
            },
            InvocationError::Trap { message } => InvocationError::Trap {
                message: redact(&message, secrets).into_owned(),
            },
            other => other,
        }
    }

    /// Stable machine-readable code (also the metric label).
    pub fn code(&self) -> &'static str {
        match self {
            InvocationError::InvalidInput { .. } => "InvalidInput",
            InvocationError::InputTooLarge { .. } => "InputTooLarge",
            InvocationError::Agent { .. } => "AgentError",
            InvocationError::FuelExhausted { .. } => "FuelExhausted",
            InvocationError::MemoryLimit { .. } => "MemoryLimit",
            InvocationError::Timeout { .. } => "Timeout",
            InvocationError::OutputTooLarge { .. } => "OutputTooLarge",
            InvocationError::HostcallLimit { .. } => "HostcallLimit",
            InvocationError::ResourceLimit { .. } => "ResourceLimit",
            InvocationError::Trap { .. } => "Trap",
            InvocationError::Exit { .. } => "Exit",
            InvocationError::Capacity { .. } => "Capacity",
            InvocationError::DenialLimit { .. } => "DenialLimit",
            InvocationError::KeyValue { error } => match error {
                crate::cap::key_value::KeyValueError::Conflict { .. } => "KeyValueConflict",
                crate::cap::key_value::KeyValueError::Quota { .. } => "KeyValueQuota",
                _ => "KeyValueError",
            },
            InvocationError::Host { .. } => "HostError",
        }
    }
}

/// What an invocation consumed.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Fuel units consumed.
    pub fuel_consumed: u64,
    /// Peak linear memory, bytes, all memories together.
    pub peak_memory_bytes: u64,
    /// Wall-clock time from store creation to the end of `run`, microseconds.
    pub wall_time_us: u64,
    /// Host calls by capability (only capabilities that were called).
    pub host_calls: BTreeMap<&'static str, u64>,
    /// Log records and output lines forwarded.
    pub log_records: u64,
    /// Log bytes dropped by the budget.
    pub log_dropped_bytes: u64,
    /// Size of the output, bytes.
    pub output_bytes: u64,
    /// Each capability's part (`httpRequests`, `fileWriteBytes`, `llmTokens`, ...).
    #[serde(flatten)]
    pub caps: crate::cap::CapabilityUsage,
    /// Calls to interfaces linked but not granted (`sockets`, or a capability
    /// the manifest does not declare), all denied, by capability.
    #[serde(skip_serializing_if = "HostCalls::is_empty")]
    pub ungranted_denied: HostCalls,
    /// Outgoing HTTP and model calls, one record each, for the tool-call
    /// metrics (empty, and unallocated, for an agent that made none).
    #[serde(skip)]
    pub tool_calls: Vec<crate::cap::tool_call::ToolCall>,
    /// Capability audit records not written past the per-invocation cap.
    #[serde(skip_serializing_if = "is_zero")]
    pub capability_records_suppressed: u64,
}

impl Usage {
    /// Capability uses refused, by capability (only those with refusals),
    /// calls to ungranted interfaces included.
    pub fn denials(&self) -> impl Iterator<Item = (Kind, u64)> {
        let mut all: BTreeMap<Kind, u64> = self.caps.denials().collect();
        for kind in Kind::ALL {
            match self.ungranted_denied.get(kind) {
                0 => {}
                n => *all.entry(kind).or_default() += n,
            }
        }
        all.into_iter()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The result of one invocation.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// Invocation id.
    pub id: String,
    /// Agent name.
    pub agent: String,
    /// The output (JSON text) or why there is none.
    pub result: Result<String, InvocationError>,
    /// What it consumed.
    pub usage: Usage,
}

impl Invocation {
    /// `ok` or the error's code.
    pub fn outcome(&self) -> &'static str {
        match &self.result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }
}

/// One of the agent's `spec.limits.maxConcurrency` slots, held for one invocation.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// A slot from a caller that does its own admission (serve mode keeps one
/// semaphore per agent name across spec changes).
impl From<tokio::sync::OwnedSemaphorePermit> for Slot {
    fn from(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Slot(permit)
    }
}

impl PreparedAgent {
    /// Slots free right now (`maxConcurrency` minus invocations running).
    pub fn available_slots(&self) -> usize {
        self.concurrency.available_permits()
    }

    /// A free slot, or `None` when `maxConcurrency` invocations are running.
    pub fn try_slot(&self) -> Option<Slot> {
        self.concurrency.clone().try_acquire_owned().ok().map(Slot)
    }

    /// Runs one task in a fresh instance under every limit of the manifest,
    /// refusing (not queueing) it when every slot is taken.
    /// Never panics on guest behaviour; the agent stays usable afterwards.
    pub async fn invoke(&self, task: TaskInput) -> Invocation {
        match self.try_slot() {
            Some(slot) => self.invoke_in_slot(slot, task).await,
            None => {
                let error = InvocationError::Capacity {
                    message: format!(
                        "spec.limits.maxConcurrency of {} invocations reached",
                        self.limits.max_concurrency
                    ),
                };
                self.finish(task.id, Instant::now(), Err(error), Usage::default())
            }
        }
    }

    /// Runs one task in the slot the caller obtained; its key-value writes
    /// are committed through the key-value backend when `run` returned ok.
    pub async fn invoke_in_slot(&self, slot: Slot, task: TaskInput) -> Invocation {
        let timeout = self.limits.timeout.as_duration();
        let (mut inv, intents) = self.invoke_for_commit(slot, task).await;
        for intent in intents {
            match intent {
                CommitIntent::KeyValue(txn) => {
                    // Starts only before the deadline; once started it runs to its end.
                    let committed = txn.commit().await;
                    inv.usage.caps.key_value.key_value = Some(KeyValueCommit::of(&committed));
                    if let Err(error) = committed {
                        let error = match error {
                            KeyValueError::Deadline => InvocationError::Timeout { limit: timeout },
                            error => InvocationError::KeyValue { error },
                        };
                        inv.result = Err(error.redacted(self.grants.secrets()));
                    }
                }
            }
        }
        inv
    }

    /// Runs one task in the slot the caller obtained and commits nothing:
    /// the invocation comes back with what must be made durable with its
    /// result (empty unless `run` returned an acceptable output), for a
    /// caller that writes both in one step (the durable state store).
    pub async fn invoke_for_commit(
        &self,
        slot: Slot,
        task: TaskInput,
    ) -> (Invocation, Vec<CommitIntent>) {
        let started = Instant::now();
        let id = task
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut usage = Usage::default();
        let mut intents = Vec::new();
        let limit = self.limits.max_input_bytes.bytes();
        let result = if task.input.len() as u64 > limit {
            Err(InvocationError::InputTooLarge {
                size: task.input.len() as u64,
                limit,
            })
        } else if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&task.input) {
            Err(InvocationError::InvalidInput {
                reason: e.to_string(),
            })
        } else {
            self.run_in_fresh_store(&id, task, started, &mut usage, &mut intents)
                .await
        };
        drop(slot);
        (self.finish(Some(id), started, result, usage), intents)
    }

    fn finish(
        &self,
        id: Option<String>,
        started: Instant,
        result: Result<String, InvocationError>,
        mut usage: Usage,
    ) -> Invocation {
        let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        usage.wall_time_us = started.elapsed().as_micros() as u64;
        let result = result.map_err(|e| e.redacted(self.grants.secrets()));
        let invocation = Invocation {
            id,
            agent: self.name.to_string(),
            result,
            usage,
        };
        tracing::info!(
            agent = %invocation.agent, invocation = %invocation.id, outcome = invocation.outcome(),
            fuel = invocation.usage.fuel_consumed, wall_us = invocation.usage.wall_time_us, "invocation finished"
        );
        invocation
    }

    fn new_store(
        &self,
        id: &str,
        started: Instant,
    ) -> wasmtime::Result<(Store<InvocationState>, GuestLog)> {
        let limits = &self.limits;
        let invocation: Arc<str> = id.into();
        let audit = self.audit.for_invocation(
            self.name.clone(),
            invocation.clone(),
            self.grants.secrets().clone(),
            limits.max_denials,
        );
        let log = GuestLog::new(
            self.name.clone(),
            invocation.clone(),
            limits.max_log_bytes.bytes(),
            self.grants.secrets().clone(),
        );

        let deadline = started + limits.timeout.as_duration();
        let mut wasi = WasiCtxBuilder::new();
        // wasi:sockets is linked (every call denied): no socket is ever
        // created, so none holds a host file descriptor.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let caps = States::prepare(
            &self.host,
            &self.grants,
            &mut PrepareCx {
                wasi: &mut wasi,
                audit: &audit,
                log: &log,
                agent: &self.name,
                invocation: &invocation,
                deadline,
                limits,
            },
        );
        let mut table = wasmtime::component::ResourceTable::new();
        table.set_max_capacity(limits.max_resources as usize);
        let state = InvocationState {
            core: Core {
                table,
                wasi: wasi.build(),
                calls: HostCalls::default(),
                ungranted: HostCalls::default(),
                audit,
                log: log.clone(),
                deadline,
            },
            caps,
            limiter: Limiter::new(
                limits.memory.bytes(),
                limits.max_table_elements as usize,
                limits.max_instances as usize,
            ),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        if self.metering.fuel() {
            store.set_fuel(limits.fuel)?;
        }
        store.set_hostcall_fuel(limits.hostcall_bytes.bytes() as usize);
        if self.metering.epoch() {
            // Check the wall clock at every epoch tick: past the deadline, trap;
            // otherwise yield so a CPU-bound guest cannot monopolise an executor thread.
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(|ctx| {
                if let Some(e) = ctx.data().core.audit.denial_limit() {
                    return Err(e.into());
                }
                if Instant::now() >= ctx.data().core.deadline {
                    Ok(UpdateDeadline::Interrupt)
                } else {
                    Ok(UpdateDeadline::Yield(1))
                }
            });
        }
        Ok((store, log))
    }

    async fn run_in_fresh_store(
        &self,
        id: &str,
        task: TaskInput,
        started: Instant,
        usage: &mut Usage,
        commit: &mut Vec<CommitIntent>,
    ) -> Result<String, InvocationError> {
        let (mut store, log) = self
            .new_store(id, started)
            .map_err(|e| InvocationError::Host {
                message: format!("{e:#}"),
            })?;
        let task = Task {
            id: id.to_string(),
            input: task.input,
            metadata: task.metadata,
        };
        let timeout = self.limits.timeout.as_duration();
        // The epoch deadline stops guest code; this outer timeout also covers time
        // spent blocked in host calls (sleeps, slow HTTP peers). A spent denial
        // budget ends the invocation the same way, wherever the guest is.
        let denials = store.data().core.audit.clone();
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(timeout, async {
                let agent = self.pre.instantiate_async(&mut store).await?;
                agent.call_run(&mut store, &task).await
            }) => outcome,
            e = denials.denial_limit_reached() => Ok(Err(e.into())),
        };

        if self.metering.fuel() {
            let fuel_left = store.get_fuel().unwrap_or(0);
            usage.fuel_consumed = self.limits.fuel.saturating_sub(fuel_left);
        }
        let InvocationState {
            core,
            caps,
            limiter,
        } = store.into_data();
        usage.peak_memory_bytes = limiter.peak_memory;
        let memory_exceeded = limiter.memory_exceeded;
        let Core {
            calls,
            ungranted,
            audit,
            table,
            wasi,
            ..
        } = core;
        // The guest's streams go now: a partial line they hold reaches the log.
        drop((table, wasi));
        usage.host_calls = calls.to_map();
        usage.ungranted_denied = ungranted;
        usage.capability_records_suppressed = audit.suppressed();
        // Decided on the count, not on how the guest ended: past the budget
        // nothing it did counts (no output, no commit).
        let denial_limit = audit.denial_limit();
        // Usage taken, and what must be made durable set aside: handed to
        // the caller below only if `run` returned ok. The core (its handles, the log streams) is
        // gone by now, so the log's figures are final.
        let intents = caps.finish(&mut usage.caps, &mut usage.tool_calls).await;
        let stats = log.stats();
        usage.log_records = stats.records;
        usage.log_dropped_bytes = stats.dropped_bytes;

        if let Some(e) = denial_limit {
            return Err(InvocationError::DenialLimit { limit: e.limit });
        }
        match outcome {
            Err(_elapsed) => Err(InvocationError::Timeout { limit: timeout }),
            Ok(Err(err)) => Err(self.classify(err, memory_exceeded, &log)),
            Ok(Ok(Err(agent_error))) => Err(agent_error_to_invocation(agent_error)),
            Ok(Ok(Ok(output))) => {
                usage.output_bytes = output.data.len() as u64;
                let limit = self.limits.max_output_bytes.bytes();
                if usage.output_bytes > limit {
                    return Err(InvocationError::OutputTooLarge {
                        size: usage.output_bytes,
                        limit,
                    });
                }
                // Handed to the caller: written only because `run` returned ok.
                *commit = intents;
                Ok(output.data)
            }
        }
    }

    fn classify(
        &self,
        err: wasmtime::Error,
        memory_exceeded: bool,
        log: &GuestLog,
    ) -> InvocationError {
        if let Some(e) = err.downcast_ref::<MemoryLimitExceeded>() {
            return InvocationError::MemoryLimit {
                limit: e.limit,
                desired: e.desired,
            };
        }
        if memory_exceeded {
            let limit = self.limits.memory.bytes();
            return InvocationError::MemoryLimit {
                limit,
                desired: limit,
            };
        }
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            return InvocationError::Exit { code: exit.0 };
        }
        if let Some(e) = err.downcast_ref::<crate::cap::key_value::KeyValueError>() {
            return InvocationError::KeyValue { error: e.clone() };
        }
        if matches!(
            err.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        ) {
            return InvocationError::ResourceLimit {
                limit: self.limits.max_resources,
            };
        }
        // wasmtime's hostcall-fuel error type is private; its message is stable.
        if format!("{err:#}").contains("allocated for hostcalls has been exhausted") {
            return InvocationError::HostcallLimit {
                limit: self.limits.hostcall_bytes.bytes(),
            };
        }
        if err
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return InvocationError::Capacity {
                message: format!("{err}"),
            };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => InvocationError::FuelExhausted {
                limit: self.limits.fuel,
            },
            Some(Trap::Interrupt) => InvocationError::Timeout {
                limit: self.limits.timeout.as_duration(),
            },
            Some(trap) => {
                let mut message = trap.to_string();
                // A Rust panic prints its message to stderr, then traps as `unreachable`.
                if let Some(panic) = panic_message(&log.stderr_tail()) {
                    message = format!("{message} ({panic})");
                }
                InvocationError::Trap { message }
            }
            None => InvocationError::Trap {
                message: format!("{err:#}"),
            },
        }
    }
}

fn panic_message(stderr_tail: &[String]) -> Option<String> {
    let at = stderr_tail
        .iter()
        .rposition(|l| l.contains("panicked at"))?;
    Some(
        stderr_tail[at..]
            .iter()
            .take(2)
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn agent_error_to_invocation(e: AgentError) -> InvocationError {
    let (kind, message) = match e {
        AgentError::InvalidInput(m) => ("invalid-input", m),
        AgentError::CapabilityDenied(m) => ("capability-denied", m),
        AgentError::Upstream(m) => ("upstream", m),
        AgentError::Internal(m) => ("internal", m),
    };
    InvocationError::Agent { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_include_refused_buckets_and_model_budget_refusals() {
        let mut usage = Usage::default();
        usage.caps.http.http_denied = 1;
        usage.caps.key_value.key_value_denied = 2;
        usage.caps.llm.llm_denied = 3;
        let denials: Vec<_> = usage.denials().collect();
        assert_eq!(
            denials,
            [(Kind::Http, 1), (Kind::KeyValue, 2), (Kind::Llm, 3)]
        );
    }

    #[test]
    fn panic_message_is_taken_from_the_last_panic_lines() {
        let tail = vec![
            "noise".to_string(),
            "thread '<unnamed>' panicked at src/lib.rs:3:5:".to_string(),
            "agent panicked on purpose".to_string(),
            "note: run with `RUST_BACKTRACE=1`".to_string(),
        ];
        assert_eq!(
            panic_message(&tail).unwrap(),
            "thread '<unnamed>' panicked at src/lib.rs:3:5: agent panicked on purpose"
        );
        assert_eq!(panic_message(&["x".to_string()]), None);
    }
}
