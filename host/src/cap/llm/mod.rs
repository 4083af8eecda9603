//! The `llm` capability (`spec.capabilities.llm`): chat completions sent by the
//! host to the granted provider and model, under per-invocation token and
//! request budgets and an optional per-agent tokens-per-minute rate. The
//! guest-facing call is in [`host`], the wire formats in [`provider`], the
//! HTTP exchange with retries in [`client`].

pub mod client;
pub mod host;
pub mod provider;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::env::read_secret;
use super::ConfigureError;
use crate::manifest::LlmProvider;

/// Tokens per invocation when the manifest sets no budget.
pub const DEFAULT_MAX_TOKENS_PER_INVOCATION: u64 = 100_000;
/// Model calls per invocation when the manifest sets no budget.
pub const DEFAULT_MAX_REQUESTS_PER_INVOCATION: u32 = 20;
/// Completion tokens asked for when the agent does not say.
pub const DEFAULT_COMPLETION_TOKENS: u32 = 1024;

/// The manifest's LLM grant, compiled once per agent.
#[derive(Clone, Debug)]
pub struct LlmGrant {
    /// Where and as whom to call.
    pub endpoint: client::Endpoint,
    /// Prompt plus completion tokens per invocation.
    pub max_tokens_per_invocation: u64,
    /// Model calls per invocation.
    pub max_requests_per_invocation: u32,
    /// Tokens per minute across the agent's invocations, shared by them.
    pub rate: Option<Arc<TokenRate>>,
}

impl LlmGrant {
    /// Compiles `grant`; the API key is read from the mounted secret now, so a
    /// missing key fails the load rather than the first call.
    pub fn configure(
        grant: &crate::manifest::LlmGrant,
        secrets_dir: &Path,
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
            rate: grant.tokens_per_minute.map(|n| Arc::new(TokenRate::new(n))),
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
    rate: Option<Arc<TokenRate>>,
    /// Prompt plus completion tokens so far.
    pub tokens_used: u64,
    /// Model calls so far.
    pub requests_made: u32,
}

impl Budget {
    /// Admits one request asking for `wanted` completion tokens: the number to
    /// ask the provider for, or why not (the request is then not sent).
    pub fn admit(&mut self, wanted: Option<u32>) -> Result<u32, String> {
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
        if let Some(rate) = &self.rate {
            rate.check()?;
        }
        self.requests_left -= 1;
        self.requests_made += 1;
        let wanted = u64::from(wanted.unwrap_or(DEFAULT_COMPLETION_TOKENS));
        Ok(wanted.min(self.tokens_left) as u32)
    }

    /// Charges what a request used. Prompt tokens are only known afterwards,
    /// so a request may end past the budget; the next one is then refused.
    pub fn charge(&mut self, prompt: u32, completion: u32) {
        let used = u64::from(prompt) + u64::from(completion);
        self.tokens_used += used;
        self.tokens_left = self.tokens_left.saturating_sub(used);
        if let Some(rate) = &self.rate {
            rate.record(used);
        }
    }
}

/// Tokens used by an agent in the last minute, across its invocations.
#[derive(Debug)]
pub struct TokenRate {
    per_minute: u64,
    window: Mutex<VecDeque<(Instant, u64)>>,
}

impl TokenRate {
    /// A limit of `per_minute` tokens.
    pub fn new(per_minute: u64) -> Self {
        Self {
            per_minute,
            window: Mutex::new(VecDeque::new()),
        }
    }

    fn used(&self, window: &mut VecDeque<(Instant, u64)>) -> u64 {
        let cutoff = Instant::now().checked_sub(Duration::from_secs(60));
        while window
            .front()
            .is_some_and(|(t, _)| cutoff.is_some_and(|c| *t < c))
        {
            window.pop_front();
        }
        window.iter().map(|(_, n)| n).sum()
    }

    fn check(&self) -> Result<(), String> {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let used = self.used(&mut window);
        if used >= self.per_minute {
            return Err(format!(
                "spec.capabilities.llm.tokensPerMinute: {used} of {} tokens used in the last minute",
                self.per_minute
            ));
        }
        Ok(())
    }

    fn record(&self, tokens: u64) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.push_back((Instant::now(), tokens));
    }
}

#[cfg(test)]
mod tests;
