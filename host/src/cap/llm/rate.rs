//! `spec.capabilities.llm.tokensPerMinute`: one window per agent, shared by
//! its invocations. [`TokenBudget`] is where the window is kept: in this
//! process ([`TokenRate`], one host), or in the state store through an
//! adapter above `cap` (`state_store::budget`), so every replica spends from
//! one budget. [`TokenBudgets`] hands out an agent's window at load.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cap::key_value::Scope;

/// Tokens reserved in a [`TokenBudget`] for one request in flight.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "settle or abandon the reservation"]
pub struct Reservation {
    /// The prompt estimate plus the completion tokens reserved.
    pub tokens: u64,
    /// Names the reservation where the window is kept (empty in process).
    pub ticket: String,
}

/// An agent's tokens-per-minute window: a reservation counts until settled,
/// settled usage counts for 60 s.
#[async_trait::async_trait]
pub trait TokenBudget: Send + Sync + std::fmt::Debug {
    /// The limit, tokens per minute.
    fn per_minute(&self) -> u64;

    /// Whether every replica spends from this window (it is in the store).
    fn shared(&self) -> bool {
        false
    }

    /// Reserves `prompt` plus up to `completion` tokens (fewer if the window
    /// has less room), so concurrent requests cannot all be admitted against
    /// the same room. Err: why not, naming the field; nothing is sent then.
    /// A window that cannot be read refuses too (fail closed).
    async fn reserve(&self, prompt: u64, completion: u64) -> Result<Reservation, String>;

    /// Replaces `reservation` by the tokens the provider reports as used
    /// (0: none, the call failed).
    async fn settle(&self, reservation: Reservation, used: u64);

    /// Gives `reservation` back without waiting: the call was dropped
    /// (invocation cancelled or timed out) before it could be settled.
    fn abandon(&self, reservation: Reservation);
}

/// Where agents' windows are kept: hands out each agent's at load.
pub trait TokenBudgets: Send + Sync {
    /// The window of `agent` under a limit of `per_minute`.
    fn budget(&self, agent: &Scope, per_minute: u64) -> Arc<dyn TokenBudget>;
}

/// Tokens used by an agent in the last minute, across its invocations in
/// this process, and tokens reserved by requests still in flight.
#[derive(Debug)]
pub struct TokenRate {
    per_minute: u64,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    used: VecDeque<(Instant, u64)>,
    reserved: u64,
}

impl TokenRate {
    /// A limit of `per_minute` tokens.
    pub fn new(per_minute: u64) -> Self {
        Self {
            per_minute,
            window: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tokens used in the last minute plus those reserved now.
    fn committed(window: &mut Window) -> u64 {
        let cutoff = Instant::now().checked_sub(Duration::from_secs(60));
        while window
            .used
            .front()
            .is_some_and(|(t, _)| cutoff.is_some_and(|c| *t < c))
        {
            window.used.pop_front();
        }
        window.used.iter().map(|(_, n)| n).sum::<u64>() + window.reserved
    }

    fn take(&self, prompt: u64, completion: u64) -> Result<Reservation, String> {
        let mut window = self.lock();
        let committed = Self::committed(&mut window);
        let room = self.per_minute.saturating_sub(committed);
        if room <= prompt {
            return Err(format!(
                "spec.capabilities.llm.tokensPerMinute: {committed} of {} tokens used or reserved in the last minute; this prompt counts as {prompt}",
                self.per_minute
            ));
        }
        let tokens = prompt + completion.min(room - prompt);
        window.reserved += tokens;
        Ok(Reservation {
            tokens,
            ticket: String::new(),
        })
    }

    fn give_back(&self, reservation: Reservation, used: u64) {
        let mut window = self.lock();
        window.reserved = window.reserved.saturating_sub(reservation.tokens);
        if used > 0 {
            window.used.push_back((Instant::now(), used));
        }
    }
}

#[async_trait::async_trait]
impl TokenBudget for TokenRate {
    fn per_minute(&self) -> u64 {
        self.per_minute
    }

    async fn reserve(&self, prompt: u64, completion: u64) -> Result<Reservation, String> {
        self.take(prompt, completion)
    }

    async fn settle(&self, reservation: Reservation, used: u64) {
        self.give_back(reservation, used);
    }

    fn abandon(&self, reservation: Reservation) {
        self.give_back(reservation, 0);
    }
}

/// Windows kept in this process: one [`TokenRate`] per agent load.
#[derive(Debug, Default)]
pub struct LocalBudgets;

impl TokenBudgets for LocalBudgets {
    fn budget(&self, _: &Scope, per_minute: u64) -> Arc<dyn TokenBudget> {
        Arc::new(TokenRate::new(per_minute))
    }
}

/// A reservation held by one request in flight; abandoned (given back) if
/// dropped unsettled.
#[derive(Debug)]
pub(super) struct RateHold {
    rate: Arc<dyn TokenBudget>,
    reservation: Option<Reservation>,
}

impl RateHold {
    /// Reserves in `rate`.
    pub(super) async fn reserve(
        rate: &Arc<dyn TokenBudget>,
        prompt: u64,
        completion: u64,
    ) -> Result<Self, String> {
        let reservation = rate.reserve(prompt, completion).await?;
        Ok(Self {
            rate: rate.clone(),
            reservation: Some(reservation),
        })
    }

    /// Tokens reserved.
    pub(super) fn tokens(&self) -> u64 {
        self.reservation.as_ref().map_or(0, |r| r.tokens)
    }

    /// Replaces the reservation by `used`.
    pub(super) async fn settle(mut self, used: u64) {
        if let Some(reservation) = self.reservation.take() {
            self.rate.settle(reservation, used).await;
        }
    }
}

impl Drop for RateHold {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            self.rate.abandon(reservation);
        }
    }
}
