//! `agent-host:agent/llm` for guests: one `complete` call reserves the
//! prompt's estimate and the completion asked for in the invocation's budget,
//! asks the provider through [`client::Endpoint`] and settles to what the
//! provider reports.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::HasData;

use super::{client, Budget, LlmGrant};
use crate::audit::{CapabilityAudit, Decision};
use crate::bindings::agent_host::agent::llm::{self, Error, Request, Response};
use crate::cap::tool_call::{Failure, Sent, ToolCall};
use crate::cap::Kind;

/// One invocation's model access: the grant, what is left of its budget, and
/// the invocation's deadline (retries never outlive it).
pub struct LlmSession {
    grant: Arc<LlmGrant>,
    /// Spent and remaining tokens and requests.
    pub budget: Budget,
    deadline: Instant,
    audit: CapabilityAudit,
    audit_prompts: bool,
    /// Calls refused by the budget (`budget-exceeded`).
    pub denied: u32,
    /// Each call's decision and outcome, for the tool-call metrics.
    pub calls: Vec<ToolCall>,
}

impl LlmSession {
    /// A session under `grant` ending at `deadline`, recording each call in
    /// `audit` (with the prompt only if `audit_prompts`).
    pub fn new(
        grant: Arc<LlmGrant>,
        deadline: Instant,
        audit: CapabilityAudit,
        audit_prompts: bool,
    ) -> Self {
        Self {
            budget: grant.budget(),
            grant,
            deadline,
            audit,
            audit_prompts,
            denied: 0,
            calls: Vec::new(),
        }
    }

    /// `provider model`: the `rule` label of this grant's calls.
    fn rule(&self) -> Arc<str> {
        let (provider, model) = self.model();
        format!("{provider} {model}").into()
    }

    /// `provider` and `model`, for reports and metric labels.
    pub fn model(&self) -> (&'static str, &str) {
        let provider = match self.grant.endpoint.provider {
            crate::manifest::LlmProvider::Openai => "openai",
            crate::manifest::LlmProvider::Anthropic => "anthropic",
        };
        (provider, &self.grant.endpoint.model)
    }

    /// One audit record per call: the model and tokens; the prompt only when
    /// the operator switched it on.
    fn record(&self, decision: Decision, action: &str, reason: Option<&str>) {
        let (provider, model) = self.model();
        self.audit.record(
            Kind::Llm,
            action,
            &format!("{provider} {model}"),
            decision,
            Some("spec.capabilities.llm"),
            reason,
        );
    }
}

/// What the `llm` host call works on: the session (`None` without the
/// grant) and the store's core (where an ungranted call is denied).
pub struct LlmView<'a>(pub Option<&'a mut LlmSession>, pub &'a mut crate::cap::Core);

/// `HasData` marker for [`LlmView`].
pub struct HasLlm;

impl HasData for HasLlm {
    type Data<'a> = LlmView<'a>;
}

impl llm::Host for LlmView<'_> {
    async fn complete(&mut self, request: Request) -> wasmtime::Result<Result<Response, Error>> {
        let Some(session) = self.0.as_deref_mut() else {
            let why = self
                .1
                .deny_ungranted(Kind::Llm, "complete", "spec.capabilities.llm")?;
            return Ok(Err(Error::Denied(why)));
        };
        let estimate = super::estimate_prompt_tokens(&request);
        let admitted = match session
            .budget
            .admit(estimate, request.options.max_tokens)
            .await
        {
            Ok(admitted) => admitted,
            Err(why) => {
                session.denied += 1;
                let rule = session.rule();
                session.calls.push(ToolCall::denied(Kind::Llm, Some(rule)));
                // Charged to spec.limits.maxDenials like a spent HTTP request
                // budget: a guest retrying a refused call in a loop is stopped.
                session.record(Decision::Deny, "complete", Some(&why));
                return Ok(Err(Error::BudgetExceeded(why)));
            }
        };
        // The last user message, redacted by the audit log, at most 2 KiB.
        let prompt = session.audit_prompts.then(|| {
            let last = request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == llm::Role::User)
                .map_or("", |m| m.content.as_str());
            let cut = (0..=last.len().min(2048))
                .rev()
                .find(|i| last.is_char_boundary(*i))
                .unwrap_or(0);
            format!("prompt: {}", &last[..cut])
        });
        let grant = session.grant.clone();
        let started = Instant::now();
        let mut attempts = 0;
        let result = grant
            .endpoint
            .complete_counted(
                &request,
                admitted.max_tokens,
                session.deadline,
                &mut attempts,
            )
            .await;
        let failure = match &result {
            Ok(_) => None,
            Err(client::CallError::Invalid(_)) => Some(Failure::InvalidRequest),
            Err(client::CallError::Upstream(_)) => Some(Failure::Upstream),
        };
        let sent = Sent {
            latency: started.elapsed(),
            failure,
            retries: attempts.saturating_sub(1),
        };
        let rule = session.rule();
        session.calls.push(ToolCall::sent(Kind::Llm, rule, sent));
        match result {
            Ok(response) => {
                let u = &response.usage;
                session
                    .budget
                    .settle(admitted, u.prompt_tokens, u.completion_tokens)
                    .await;
                session.record(
                    Decision::Allow,
                    &format!(
                        "complete: {} prompt + {} completion tokens, {attempts} attempt(s)",
                        u.prompt_tokens, u.completion_tokens
                    ),
                    prompt.as_deref(),
                );
                Ok(Ok(response))
            }
            Err(e) => {
                session.budget.release(admitted).await;
                Ok(Err(match e {
                    client::CallError::Invalid(why) => Error::InvalidRequest(why),
                    client::CallError::Upstream(why) => Error::Upstream(why),
                }))
            }
        }
    }
}
