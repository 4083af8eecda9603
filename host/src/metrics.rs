//! Prometheus metrics of the host (`GET /metrics`), one registry per server.
//! Label values are bounded: agent names come from loaded manifests, outcomes
//! and capabilities from closed enums.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::cap::tool_call::ToolCall;
use crate::runtime::{CacheStatus, Invocation};

/// `agent` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    /// Agent name.
    pub agent: String,
}

/// `agent`, `outcome` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Agent name.
    pub agent: String,
    /// `ok`, an invocation error code, or `Cancelled`.
    pub outcome: String,
}

/// `agent`, `provider`, `model` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Agent name.
    pub agent: String,
    /// `openai` or `anthropic`.
    pub provider: String,
    /// The granted model.
    pub model: String,
}

/// `agent`, `capability` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapabilityLabels {
    /// Agent name.
    pub agent: String,
    /// Capability name.
    pub capability: String,
}

/// `agent`, `capability`, `rule` labels of calls that leave the host.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// Agent name.
    pub agent: String,
    /// `http` or `llm`.
    pub capability: String,
    /// The manifest rule (HTTP: its URL prefix; model: `provider model`), or
    /// `none` for a refusal that matched no rule.
    pub rule: String,
}

/// [`ToolLabels`] plus `decision`: `allowed` or `denied`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Agent name.
    pub agent: String,
    /// `http` or `llm`.
    pub capability: String,
    /// As in [`ToolLabels::rule`].
    pub rule: String,
    /// `allowed` or `denied`.
    pub decision: &'static str,
}

/// [`ToolLabels`] plus `kind`, one of [`crate::cap::tool_call::Failure`]'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Agent name.
    pub agent: String,
    /// `http` or `llm`.
    pub capability: String,
    /// As in [`ToolLabels::rule`].
    pub rule: String,
    /// How the call failed (`dns`, `connect`, `timeout`, `upstream`...).
    pub kind: &'static str,
}

/// `agent`, `reason` labels of refused requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Agent name.
    pub agent: String,
    /// Error code of the refusal, e.g. `QueueFull`.
    pub reason: String,
}

/// `result` label of compile-cache lookups.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    /// `hit`, `miss` or `rebuilt`.
    pub result: String,
}

type HistogramFamily = Family<AgentLabel, Histogram, fn() -> Histogram>;
type ToolHistogramFamily = Family<ToolLabels, Histogram, fn() -> Histogram>;

/// Every metric the host exports.
pub struct Metrics {
    registry: Registry,
    invocations: Family<OutcomeLabels, Counter>,
    duration: HistogramFamily,
    fuel: HistogramFamily,
    peak_memory: HistogramFamily,
    host_calls: Family<CapabilityLabels, Counter>,
    denials: Family<CapabilityLabels, Counter>,
    in_flight: Family<AgentLabel, Gauge>,
    queued: Family<AgentLabel, Gauge>,
    rejected: Family<RejectLabels, Counter>,
    compile_cache: Family<CacheLabel, Counter>,
    llm_tokens: Family<ModelLabels, Counter>,
    llm_requests: Family<ModelLabels, Counter>,
    tool_call_duration: ToolHistogramFamily,
    tool_call_decisions: Family<DecisionLabels, Counter>,
    tool_call_failures: Family<FailureLabels, Counter>,
    tool_call_retries: Family<ToolLabels, Counter>,
    store_depth: Family<AgentLabel, Gauge>,
    lease_reclaims: Family<AgentLabel, Counter>,
    redeliveries: Family<AgentLabel, Counter>,
    fenced_commits: Family<AgentLabel, Counter>,
}

fn duration_histogram() -> Histogram {
    // 100 µs .. ~52 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

fn tool_call_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn fuel_histogram() -> Histogram {
    // 10k .. ~10^10 units
    Histogram::new(exponential_buckets(10_000.0, 4.0, 16))
}

fn memory_histogram() -> Histogram {
    // 64 KiB .. 4 GiB
    Histogram::new(exponential_buckets(65_536.0, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `agent_host` prefix.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("agent_host");
        let invocations = Family::<OutcomeLabels, Counter>::default();
        r.register(
            "invocations",
            "Invocations finished, by agent and outcome",
            invocations.clone(),
        );
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        r.register_with_unit(
            "invocation_duration",
            "Wall time of finished invocations",
            Unit::Seconds,
            duration.clone(),
        );
        let fuel: HistogramFamily = Family::new_with_constructor(fuel_histogram);
        r.register(
            "invocation_fuel",
            "Fuel consumed by finished invocations",
            fuel.clone(),
        );
        let peak_memory: HistogramFamily = Family::new_with_constructor(memory_histogram);
        r.register_with_unit(
            "invocation_peak_memory",
            "Peak linear memory of finished invocations",
            Unit::Bytes,
            peak_memory.clone(),
        );
        let host_calls = Family::<CapabilityLabels, Counter>::default();
        r.register(
            "host_calls",
            "Host calls made by guests, by capability",
            host_calls.clone(),
        );
        let denials = Family::<CapabilityLabels, Counter>::default();
        r.register(
            "capability_denials",
            "Capability uses refused, by capability",
            denials.clone(),
        );
        let in_flight = Family::<AgentLabel, Gauge>::default();
        r.register(
            "invocations_in_flight",
            "Invocations running now",
            in_flight.clone(),
        );
        let queued = Family::<AgentLabel, Gauge>::default();
        r.register(
            "invocations_queued",
            "Invocations accepted and waiting for a concurrency slot",
            queued.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        r.register(
            "requests_rejected",
            "Invocation requests refused before running (queue full, draining, too large)",
            rejected.clone(),
        );
        let compile_cache = Family::<CacheLabel, Counter>::default();
        r.register(
            "compile_cache_lookups",
            "Component compile-cache lookups at load, by result",
            compile_cache.clone(),
        );
        let llm_tokens = Family::<ModelLabels, Counter>::default();
        r.register(
            "llm_tokens",
            "Prompt plus completion tokens the model providers reported, by agent, provider and model",
            llm_tokens.clone(),
        );
        let llm_requests = Family::<ModelLabels, Counter>::default();
        r.register(
            "llm_requests",
            "Model calls answered, by agent, provider and model",
            llm_requests.clone(),
        );
        let tool_call_duration: ToolHistogramFamily =
            Family::new_with_constructor(tool_call_histogram);
        r.register_with_unit(
            "tool_call_duration",
            "Latency of allowed outgoing HTTP, model and MCP tool calls (retries included), by agent, capability and grant rule",
            Unit::Seconds,
            tool_call_duration.clone(),
        );
        let tool_call_decisions = Family::<DecisionLabels, Counter>::default();
        r.register(
            "tool_call_decisions",
            "Policy decisions on outgoing HTTP, model and MCP tool calls, by agent, capability, grant rule and decision",
            tool_call_decisions.clone(),
        );
        let tool_call_failures = Family::<FailureLabels, Counter>::default();
        r.register(
            "tool_call_failures",
            "Allowed outgoing HTTP, model and MCP tool calls that failed, by agent, capability, grant rule and kind",
            tool_call_failures.clone(),
        );
        let tool_call_retries = Family::<ToolLabels, Counter>::default();
        r.register(
            "tool_call_retries",
            "Attempts beyond the first of outgoing calls (model calls), by agent, capability and grant rule",
            tool_call_retries.clone(),
        );
        let store_depth = Family::<AgentLabel, Gauge>::default();
        r.register(
            "store_queue_depth",
            "Durable invocations queued or running in the state store, all replicas together",
            store_depth.clone(),
        );
        let lease_reclaims = Family::<AgentLabel, Counter>::default();
        r.register(
            "lease_reclaims",
            "Durable invocations this replica took over from a replica whose lease expired",
            lease_reclaims.clone(),
        );
        let redeliveries = Family::<AgentLabel, Counter>::default();
        r.register(
            "redeliveries",
            "Durable invocations this replica claimed for a second or later attempt",
            redeliveries.clone(),
        );
        let fenced_commits = Family::<AgentLabel, Counter>::default();
        r.register(
            "fenced_commits",
            "Results of this replica refused by the store: the attempt no longer owned the invocation",
            fenced_commits.clone(),
        );
        Self {
            registry: root,
            store_depth,
            lease_reclaims,
            redeliveries,
            fenced_commits,
            invocations,
            duration,
            fuel,
            peak_memory,
            host_calls,
            denials,
            in_flight,
            queued,
            rejected,
            compile_cache,
            llm_tokens,
            llm_requests,
            tool_call_duration,
            tool_call_decisions,
            tool_call_failures,
            tool_call_retries,
        }
    }

    /// Makes an agent's series exist (at zero) before its first invocation.
    pub fn register_agent(&self, agent: &str) {
        let label = AgentLabel {
            agent: agent.to_string(),
        };
        let _ = self.in_flight.get_or_create(&label);
        let _ = self.queued.get_or_create(&label);
    }

    /// Makes an agent's durable-work series exist (at zero): served with a
    /// state store only.
    pub fn register_durable(&self, agent: &str) {
        let label = AgentLabel {
            agent: agent.to_string(),
        };
        let _ = self.store_depth.get_or_create(&label);
        let _ = self.lease_reclaims.get_or_create(&label);
        let _ = self.redeliveries.get_or_create(&label);
        let _ = self.fenced_commits.get_or_create(&label);
    }

    /// Sets the agent's queue depth in the state store (queued plus running).
    pub fn store_depth(&self, agent: &str, depth: u64) {
        self.store_depth
            .get_or_create(&AgentLabel {
                agent: agent.to_string(),
            })
            .set(depth as i64);
    }

    /// Counts a claim: a reclaim from an expired lease, a redelivery (an
    /// attempt after the first), or both.
    pub fn claimed(&self, agent: &str, reclaimed: bool, attempt: u32) {
        let label = AgentLabel {
            agent: agent.to_string(),
        };
        if reclaimed {
            self.lease_reclaims.get_or_create(&label).inc();
        }
        if attempt > 1 {
            self.redeliveries.get_or_create(&label).inc();
        }
    }

    /// Counts a result the store refused as fenced.
    pub fn fenced(&self, agent: &str) {
        self.fenced_commits
            .get_or_create(&AgentLabel {
                agent: agent.to_string(),
            })
            .inc();
    }

    /// Counts one compile-cache lookup.
    pub fn cache_lookup(&self, status: &CacheStatus) {
        let result = match status {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Rebuilt { .. } => "rebuilt",
            CacheStatus::Disabled => "disabled",
        };
        self.compile_cache
            .get_or_create(&CacheLabel {
                result: result.into(),
            })
            .inc();
    }

    /// In-flight gauge of `agent`.
    pub fn in_flight(&self, agent: &str) -> Gauge {
        self.in_flight.get_or_create_owned(&AgentLabel {
            agent: agent.to_string(),
        })
    }

    /// Queued gauge of `agent`.
    pub fn queued(&self, agent: &str) -> Gauge {
        self.queued.get_or_create_owned(&AgentLabel {
            agent: agent.to_string(),
        })
    }

    /// Counts a refused request.
    pub fn rejected(&self, agent: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                agent: agent.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Records a finished invocation.
    pub fn finished(&self, inv: &Invocation) {
        self.record_outcome(&inv.agent, inv.outcome());
        let agent = AgentLabel {
            agent: inv.agent.clone(),
        };
        let u = &inv.usage;
        self.duration
            .get_or_create(&agent)
            .observe(u.wall_time_us as f64 / 1e6);
        self.fuel
            .get_or_create(&agent)
            .observe(u.fuel_consumed as f64);
        self.peak_memory
            .get_or_create(&agent)
            .observe(u.peak_memory_bytes as f64);
        for (cap, n) in &u.host_calls {
            self.host_calls
                .get_or_create(&CapabilityLabels {
                    agent: inv.agent.clone(),
                    capability: cap.to_string(),
                })
                .inc_by(*n);
        }
        if let Some((provider, model)) = &u.caps.llm.llm_model {
            let labels = ModelLabels {
                agent: inv.agent.clone(),
                provider: provider.to_string(),
                model: model.clone(),
            };
            self.llm_tokens
                .get_or_create(&labels)
                .inc_by(u.caps.llm.llm_tokens);
            self.llm_requests
                .get_or_create(&labels)
                .inc_by(u64::from(u.caps.llm.llm_requests));
        }
        for call in &u.tool_calls {
            self.tool_call(&inv.agent, call);
        }
        for (cap, n) in u.denials() {
            self.denials
                .get_or_create(&CapabilityLabels {
                    agent: inv.agent.clone(),
                    capability: cap.as_str().to_string(),
                })
                .inc_by(n);
        }
    }

    /// Records one outgoing call: its decision and, once allowed, its latency,
    /// failure and retries.
    fn tool_call(&self, agent: &str, call: &ToolCall) {
        let labels = ToolLabels {
            agent: agent.to_string(),
            capability: call.capability.as_str().to_string(),
            rule: call.rule_label().to_string(),
        };
        let decision = |decision| DecisionLabels {
            agent: labels.agent.clone(),
            capability: labels.capability.clone(),
            rule: labels.rule.clone(),
            decision,
        };
        let Some(sent) = &call.sent else {
            self.tool_call_decisions
                .get_or_create(&decision("denied"))
                .inc();
            return;
        };
        self.tool_call_decisions
            .get_or_create(&decision("allowed"))
            .inc();
        self.tool_call_duration
            .get_or_create(&labels)
            .observe(sent.latency.as_secs_f64());
        self.tool_call_retries
            .get_or_create(&labels)
            .inc_by(u64::from(sent.retries));
        if let Some(failure) = sent.failure {
            self.tool_call_failures
                .get_or_create(&FailureLabels {
                    agent: labels.agent.clone(),
                    capability: labels.capability.clone(),
                    rule: labels.rule.clone(),
                    kind: failure.as_str(),
                })
                .inc();
        }
    }

    /// Counts an invocation that ended without a result (e.g. cancelled at shutdown).
    pub fn record_outcome(&self, agent: &str, outcome: &str) {
        self.invocations
            .get_or_create(&OutcomeLabels {
                agent: agent.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// `Content-Type` of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Usage;

    #[test]
    fn refused_buckets_and_model_budget_refusals_are_counted_as_denials() {
        let metrics = Metrics::new();
        metrics.finished(&Invocation {
            id: "i".into(),
            agent: "triage".into(),
            result: Ok("{}".into()),
            usage: {
                let mut usage = Usage::default();
                usage.caps.key_value.key_value_denied = 2;
                usage.caps.llm.llm_denied = 1;
                usage
            },
        });
        let text = metrics.encode();
        for line in [
            r#"agent_host_capability_denials_total{agent="triage",capability="keyValue"} 2"#,
            r#"agent_host_capability_denials_total{agent="triage",capability="llm"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn every_capability_in_the_list_is_a_label_of_host_calls() {
        use crate::cap::Kind;
        let metrics = Metrics::new();
        let mut usage = Usage::default();
        for kind in Kind::GRANTABLE {
            usage.host_calls.insert(kind.as_str(), 1);
        }
        metrics.finished(&Invocation {
            id: "i".into(),
            agent: "a".into(),
            result: Ok("{}".into()),
            usage,
        });
        let text = metrics.encode();
        for kind in Kind::GRANTABLE {
            let line = format!(
                r#"agent_host_host_calls_total{{agent="a",capability="{}"}} 1"#,
                kind.as_str()
            );
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn tool_calls_are_timed_and_counted_by_capability_and_rule() {
        use crate::cap::tool_call::{Failure, Sent};
        use crate::cap::Kind;
        use std::time::Duration;
        let metrics = Metrics::new();
        let rule: std::sync::Arc<str> = "openai gpt-4o-mini".into();
        metrics.finished(&Invocation {
            id: "i".into(),
            agent: "triage".into(),
            result: Ok("{}".into()),
            usage: Usage {
                tool_calls: vec![
                    ToolCall::sent(
                        Kind::Llm,
                        rule.clone(),
                        Sent {
                            latency: Duration::from_millis(30),
                            failure: None,
                            retries: 2,
                        },
                    ),
                    ToolCall::sent(
                        Kind::Llm,
                        rule.clone(),
                        Sent {
                            latency: Duration::from_millis(5),
                            failure: Some(Failure::Upstream),
                            retries: 4,
                        },
                    ),
                    ToolCall::denied(Kind::Llm, Some(rule)),
                    ToolCall::denied(Kind::Http, None),
                ],
                ..Usage::default()
            },
        });
        let text = metrics.encode();
        for line in [
            r#"agent_host_tool_call_duration_seconds_count{agent="triage",capability="llm",rule="openai gpt-4o-mini"} 2"#,
            r#"agent_host_tool_call_decisions_total{agent="triage",capability="llm",rule="openai gpt-4o-mini",decision="allowed"} 2"#,
            r#"agent_host_tool_call_decisions_total{agent="triage",capability="llm",rule="openai gpt-4o-mini",decision="denied"} 1"#,
            r#"agent_host_tool_call_decisions_total{agent="triage",capability="http",rule="none",decision="denied"} 1"#,
            r#"agent_host_tool_call_failures_total{agent="triage",capability="llm",rule="openai gpt-4o-mini",kind="upstream"} 1"#,
            r#"agent_host_tool_call_retries_total{agent="triage",capability="llm",rule="openai gpt-4o-mini"} 6"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn model_tokens_are_counted_by_agent_provider_and_model() {
        let metrics = Metrics::new();
        let inv = Invocation {
            id: "i".into(),
            agent: "triage".into(),
            result: Ok("{}".into()),
            usage: {
                let mut usage = Usage::default();
                usage.caps.llm.llm_requests = 2;
                usage.caps.llm.llm_tokens = 49;
                usage.caps.llm.llm_model = Some(("openai", "gpt-4o-mini".into()));
                usage
            },
        };
        metrics.finished(&inv);
        metrics.finished(&inv);
        let text = metrics.encode();
        assert!(
            text.contains(r#"agent_host_llm_tokens_total{agent="triage",provider="openai",model="gpt-4o-mini"} 98"#),
            "{text}"
        );
        assert!(text.contains(
            r#"agent_host_llm_requests_total{agent="triage",provider="openai",model="gpt-4o-mini"} 4"#
        ));
    }
}
