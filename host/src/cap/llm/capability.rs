//! The `llm` capability: the host calls the granted model on the agent's
//! behalf, under the grant's budgets; the API key never enters the guest.

use std::sync::{Arc, RwLock};

use serde::Serialize;
use wasmtime::component::Linker;

use super::host::{HasLlm, LlmSession, LlmView};
use super::rate::{LocalBudgets, TokenBudgets};
use super::LlmGrant;
use crate::cap::imports::Binding;
use crate::cap::tool_call::ToolCall;
use crate::cap::{
    Capability, CommitIntent, ConfigureCx, ConfigureError, HasCapability, Kind, PrepareCx,
};
use crate::config::HostConfig;
use crate::manifest::Limits;

/// The `llm` capability.
pub struct Llm;

/// The operator's model settings and where tokens-per-minute windows are kept.
pub struct LlmHost {
    /// Whether prompts go into the audit log (`--audit-llm-prompts`).
    pub audit_prompts: bool,
    /// In this process until the runtime is given a state store.
    budgets: RwLock<Arc<dyn TokenBudgets>>,
}

impl LlmHost {
    /// Keeps the tokens-per-minute windows of agents loaded from now on in
    /// `budgets` (the state store: shared by every replica).
    pub fn keep_budgets_in(&self, budgets: Arc<dyn TokenBudgets>) {
        *self.budgets.write().unwrap_or_else(|e| e.into_inner()) = budgets;
    }

    fn budgets(&self) -> Arc<dyn TokenBudgets> {
        self.budgets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What one invocation did with the model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmUsage {
    /// Model calls made.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub llm_requests: u32,
    /// Prompt plus completion tokens the provider reported.
    #[serde(skip_serializing_if = "is_zero")]
    pub llm_tokens: u64,
    /// Model calls refused by the budget.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub llm_denied: u32,
    /// `provider model` of the granted model, when the agent has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_model: Option<(&'static str, String)>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Capability for Llm {
    const KIND: Kind = Kind::Llm;
    const INTERFACES: &'static [&'static str] = &["agent-host:agent/llm"];
    type Host = LlmHost;
    type Grant = Option<Arc<LlmGrant>>;
    type State = Option<LlmSession>;
    type Usage = LlmUsage;

    fn host(config: &HostConfig) -> LlmHost {
        LlmHost {
            audit_prompts: config.audit_llm_prompts,
            budgets: RwLock::new(Arc::new(LocalBudgets)),
        }
    }

    fn link<T: HasCapability<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        crate::bindings::agent_host::agent::llm::add_to_linker::<T, HasLlm>(linker, |s| {
            let v = s.capability();
            v.core.calls.record(Kind::Llm);
            LlmView(v.state.as_mut(), v.core)
        })
    }

    fn configure(host: &LlmHost, cx: &ConfigureCx<'_>) -> Result<Self::Grant, ConfigureError> {
        let Some(spec) = cx.agent.spec.capabilities.llm.as_ref() else {
            return Ok(None);
        };
        // The same scope as the agent's key-value state and invocations.
        let scope = crate::cap::key_value::Scope {
            namespace: cx.agent.metadata.namespace.clone().unwrap_or_default(),
            agent: cx.agent.name().to_string(),
        };
        let budgets = host.budgets();
        let grant = LlmGrant::configure_in(spec, cx.secrets_dir, |per_minute| {
            budgets.budget(&scope, per_minute)
        })?;
        Ok(Some(Arc::new(grant)))
    }

    fn secrets(grant: &Self::Grant) -> Vec<String> {
        grant
            .iter()
            .filter_map(|g| g.endpoint.api_key.clone())
            .collect()
    }

    fn prepare(host: &LlmHost, grant: &Self::Grant, cx: &mut PrepareCx<'_>) -> Self::State {
        grant.as_ref().map(|grant| {
            LlmSession::new(
                grant.clone(),
                cx.deadline,
                cx.audit.clone(),
                host.audit_prompts,
            )
        })
    }

    async fn finish(
        state: Self::State,
        usage: &mut LlmUsage,
        tool_calls: &mut Vec<ToolCall>,
    ) -> Option<CommitIntent> {
        let session = state?;
        usage.llm_requests = session.budget.requests_made;
        usage.llm_tokens = session.budget.tokens_used;
        usage.llm_denied = session.denied;
        let (provider, model) = session.model();
        usage.llm_model = Some((provider, model.to_string()));
        tool_calls.extend(session.calls);
        None
    }

    fn bind(_: &str, grant: &Self::Grant, _: &Limits) -> Binding {
        match grant {
            None => Binding::denied(
                Kind::Llm,
                "model access is not granted; declare spec.capabilities.llm",
            ),
            Some(g) => Binding::granted(Kind::Llm, describe(g)),
        }
    }

    fn describe(grant: &Self::Grant) -> Vec<String> {
        grant.iter().map(|g| describe(g)).collect()
    }

    fn denials(usage: &LlmUsage) -> u64 {
        u64::from(usage.llm_denied)
    }

    fn report(grant: &Self::Grant, usage: &LlmUsage, _: &Limits) -> Option<String> {
        let g = grant.as_ref()?;
        Some(format!(
            "{} {}: {} requests, {} tokens, {} denied",
            provider_name(g),
            g.endpoint.model,
            usage.llm_requests,
            usage.llm_tokens,
            usage.llm_denied
        ))
    }
}

fn provider_name(g: &LlmGrant) -> &'static str {
    match g.endpoint.provider {
        crate::manifest::LlmProvider::Openai => "openai",
        crate::manifest::LlmProvider::Anthropic => "anthropic",
    }
}

fn describe(g: &LlmGrant) -> String {
    let mut line = format!(
        "{} {} at {} ({} tokens per invocation, {} requests per invocation",
        provider_name(g),
        g.endpoint.model,
        g.endpoint.base,
        g.max_tokens_per_invocation,
        g.max_requests_per_invocation
    );
    if let Some(rate) = &g.rate {
        let across = if rate.shared() {
            " across replicas"
        } else {
            ""
        };
        line.push_str(&format!(
            ", {} tokens per minute{across}",
            rate.per_minute()
        ));
    }
    line.push(')');
    line
}
