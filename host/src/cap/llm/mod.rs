//! The `llm` capability (`spec.capabilities.llm`): chat completions sent by the
//! host to the granted provider and model, under per-invocation token and
//! request budgets and an optional per-agent tokens-per-minute rate (kept in
//! this process, or in the state store so replicas share it: [`rate`]). The
//! guest-facing call is in [`host`], the wire formats in [`provider`], the
//! HTTP exchange with retries in [`client`].

mod capability;
pub mod client;
pub mod host;
pub mod provider;
pub mod rate;

pub use capability::{Llm, LlmHost, LlmUsage};
pub use rate::{LocalBudgets, Reservation, TokenBudget, TokenBudgets, TokenRate};

use std::path::Path;
use std::sync::Arc;

use rate::RateHold;

use super::env::read_secret;
use super::ConfigureError;
use crate::manifest::LlmProvider;

/// Tokens per invocation when the manifest sets no budget.
pub const DEFAULT_MAX_TOKENS_PER_INVOCATION: u64 = 100_000;
/// Model calls per invocation when the manifest sets no budget.
pub const DEFAULT_MAX_REQUESTS_PER_INVOCATION: u32 = 20;
/// Completion tokens asked for when the agent does not say.
pub const DEFAULT_COMPLETION_TOKENS: u32 = 1024;
/// Bytes of request text counted as one token before sending. Provider
/// tokenizers average about 4 bytes per token on English and 3 or more on code
/// and UTF-8 CJK, so text is over-counted and a prompt that cannot fit the
/// budget is refused unsent instead of billed (one 4 MiB prompt cost ~1M
/// tokens whatever the budget said). Denser adversarial text is still settled
/// to the provider's reported usage, which then refuses the next request.
pub const PROMPT_BYTES_PER_TOKEN: u64 = 3;

/// Tokens the prompt of `request` is charged before it is sent: every byte
/// of text the provider tokenizes (messages, tool calls and definitions, stop
/// sequences) at [`PROMPT_BYTES_PER_TOKEN`], rounded up.
pub fn estimate_prompt_tokens(request: &crate::bindings::agent_host::agent::llm::Request) -> u64 {
    let messages = request.messages.iter().map(|m| {
        m.content.len()
            + m.tool_call_id.as_ref().map_or(0, String::len)
            + m.tool_calls
                .iter()
                .map(|c| c.id.len() + c.name.len() + c.arguments.len())
                .sum::<usize>()
    });
    let tools = request
        .tools
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.parameters.len());
    let stops = request.options.stop.iter().map(String::len);
    let bytes: usize = messages.chain(tools).chain(stops).sum();
    (bytes as u64).div_ceil(PROMPT_BYTES_PER_TOKEN)
}

/// The manifest's LLM grant, compiled once per agent.
#[derive(Clone, Debug)]
pub struct LlmGrant {
    /// Where and as whom to call.
    pub endpoint: client::Endpoint,
    /// Prompt plus completion tokens per invocation.
    pub max_tokens_per_invocation: u64,
    /// Model calls per invocation.
    pub max_requests_per_invocation: u32,
    /// Tokens per minute across the agent's invocations, shared by them
    /// (and by every replica when the host has a state store).
    pub rate: Option<Arc<dyn TokenBudget>>,
}

impl LlmGrant {
    /// Compiles `grant` with its tokens-per-minute window in this process;
    /// the API key is read from the mounted secret now, so a missing key
    /// fails the load rather than the first call.
    pub fn configure(
        grant: &crate::manifest::LlmSpec,
        secrets_dir: &Path,
    ) -> Result<Self, ConfigureError> {
        Self::configure_in(grant, secrets_dir, |n| Arc::new(TokenRate::new(n)))
    }

    /// [`LlmGrant::configure`] with the window of `tokensPerMinute` made by
    /// `window` (from the limit).
    pub fn configure_in(
        grant: &crate::manifest::LlmSpec,
        secrets_dir: &Path,
        window: impl FnOnce(u64) -> Arc<dyn TokenBudget>,
    ) -> Result<Self, ConfigureError> {
        let base = match &grant.endpoint {
            Some(url) => url.to_string(),
            None => match grant.provider {
                LlmProvider::Openai => "https://api.openai.com/v1/".into(),
                LlmProvider::Anthropic => "https://api.anthropic.com/v1/".into(),
            },
        };
        let base = if base.ends_with('/') {
            base
        } else {
            format!("{base}/")
        };
        let base = url::Url::parse(&base).map_err(|e| {
            ConfigureError::new("spec.capabilities.llm.endpoint", format!("{base}: {e}"))
        })?;
        let api_key = grant
            .api_key_secret_ref
            .as_ref()
            .map(|r| {
                read_secret(
                    secrets_dir,
                    r,
                    "spec.capabilities.llm.apiKeySecretRef".into(),
                )
            })
            .transpose()?;
        Ok(Self {
            endpoint: client::Endpoint {
                provider: grant.provider,
                model: grant.model.clone(),
                base,
                api_key,
            },
            max_tokens_per_invocation: grant
                .max_tokens_per_invocation
                .unwrap_or(DEFAULT_MAX_TOKENS_PER_INVOCATION),
            max_requests_per_invocation: grant
                .max_requests_per_invocation
                .unwrap_or(DEFAULT_MAX_REQUESTS_PER_INVOCATION),
            rate: grant.tokens_per_minute.map(window),
        })
    }

    /// A fresh budget for one invocation.
    pub fn budget(&self) -> Budget {
        Budget {
            tokens_left: self.max_tokens_per_invocation,
            requests_left: self.max_requests_per_invocation,
            rate: self.rate.clone(),
            tokens_used: 0,
            requests_made: 0,
        }
    }
}

/// What one invocation may still spend, and what it spent.
#[derive(Debug)]
pub struct Budget {
    tokens_left: u64,
    requests_left: u32,
    rate: Option<Arc<dyn TokenBudget>>,
    /// Prompt plus completion tokens so far.
    pub tokens_used: u64,
    /// Model calls so far.
    pub requests_made: u32,
}

/// A request admitted by [`Budget::admit`]: what it may ask for and what was
/// reserved for it until [`Budget::settle`] or [`Budget::release`].
#[derive(Debug)]
#[must_use = "settle or release the reservation"]
pub struct Admitted {
    /// Completion tokens to ask the provider for.
    pub max_tokens: u32,
    /// Prompt estimate plus `max_tokens`, taken from the invocation's budget.
    reserved: u64,
    /// The same reservation in the agent's per-minute window.
    hold: Option<RateHold>,
}

impl Budget {
    /// Admits one request whose prompt is estimated at `prompt_estimate`
    /// tokens and which asks for `wanted` completion tokens: the prompt must
    /// fit what is left, and the estimate plus the completion asked for (cut to
    /// what is left) is reserved in the invocation's budget and the agent's
    /// per-minute rate before anything is sent. Err: why not (nothing sent).
    pub async fn admit(
        &mut self,
        prompt_estimate: u64,
        wanted: Option<u32>,
    ) -> Result<Admitted, String> {
        if self.requests_left == 0 {
            return Err(format!(
                "spec.capabilities.llm.maxRequestsPerInvocation: all {} requests used",
                self.requests_made
            ));
        }
        if self.tokens_left == 0 {
            return Err(format!(
                "spec.capabilities.llm.maxTokensPerInvocation: all {} tokens used",
                self.tokens_used
            ));
        }
        if prompt_estimate >= self.tokens_left {
            return Err(format!(
                "spec.capabilities.llm.maxTokensPerInvocation: the prompt counts as {prompt_estimate} tokens ({PROMPT_BYTES_PER_TOKEN} bytes of text per token) and only {} are left; it was not sent",
                self.tokens_left
            ));
        }
        let wanted = u64::from(wanted.unwrap_or(DEFAULT_COMPLETION_TOKENS));
        let mut completion = wanted.min(self.tokens_left - prompt_estimate);
        let hold = match &self.rate {
            Some(rate) => {
                let hold = RateHold::reserve(rate, prompt_estimate, completion).await?;
                // A window never grants more than asked; fewer when it is short.
                completion = completion.min(hold.tokens().saturating_sub(prompt_estimate));
                Some(hold)
            }
            None => None,
        };
        self.requests_left -= 1;
        self.requests_made += 1;
        let reserved = prompt_estimate + completion;
        self.tokens_left -= reserved;
        Ok(Admitted {
            max_tokens: u32::try_from(completion).expect("at most the u32 asked for"),
            reserved,
            hold,
        })
    }

    /// Replaces `admitted`'s reservation by what the provider reports it used.
    /// A provider may report more than was reserved; the next request is then
    /// refused.
    pub async fn settle(&mut self, admitted: Admitted, prompt: u32, completion: u32) {
        let used = u64::from(prompt) + u64::from(completion);
        self.tokens_used += used;
        self.tokens_left = (self.tokens_left + admitted.reserved).saturating_sub(used);
        if let Some(hold) = admitted.hold {
            hold.settle(used).await;
        }
    }

    /// Gives `admitted`'s reservation back: the request failed with no usage
    /// reported.
    pub async fn release(&mut self, admitted: Admitted) {
        self.tokens_left += admitted.reserved;
        if let Some(hold) = admitted.hold {
            hold.settle(0).await;
        }
    }
}

#[cfg(test)]
mod tests;
