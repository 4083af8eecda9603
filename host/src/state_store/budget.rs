//! `tokensPerMinute` kept in the state store: the adapter that lets the
//! `llm` capability (below this module) reserve and settle through
//! [`StateStore::reserve`] and [`StateStore::settle`], so every replica of an
//! agent spends from one window (promise 7).

use std::sync::Arc;

use super::{Hold, StateStore};
use crate::cap::key_value::Scope;
use crate::cap::llm::{Reservation, TokenBudget, TokenBudgets};

/// Hands out windows kept in `store`: install with
/// `Runtime::use_state_store` (or `LlmHost::keep_budgets_in`).
pub struct StoreBudgets {
    store: Arc<dyn StateStore>,
}

impl StoreBudgets {
    /// Windows in `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }
}

impl TokenBudgets for StoreBudgets {
    fn budget(&self, agent: &Scope, per_minute: u64) -> Arc<dyn TokenBudget> {
        Arc::new(StoreBudget {
            store: self.store.clone(),
            scope: agent.clone(),
            per_minute,
        })
    }
}

/// One agent's window in the store.
struct StoreBudget {
    store: Arc<dyn StateStore>,
    scope: Scope,
    per_minute: u64,
}

impl std::fmt::Debug for StoreBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBudget")
            .field("scope", &self.scope)
            .field("per_minute", &self.per_minute)
            .finish_non_exhaustive()
    }
}

impl StoreBudget {
    fn hold(reservation: Reservation) -> Hold {
        Hold {
            id: reservation.ticket,
            tokens: reservation.tokens,
        }
    }
}

#[async_trait::async_trait]
impl TokenBudget for StoreBudget {
    fn per_minute(&self) -> u64 {
        self.per_minute
    }

    fn shared(&self) -> bool {
        true
    }

    async fn reserve(&self, prompt: u64, completion: u64) -> Result<Reservation, String> {
        match self
            .store
            .reserve(&self.scope, prompt, completion, self.per_minute)
            .await
        {
            Ok(Ok(hold)) => Ok(Reservation {
                tokens: hold.tokens,
                ticket: hold.id,
            }),
            Ok(Err(refused)) => Err(refused.to_string()),
            // Fail closed: a window that cannot be read admits nothing.
            Err(e) => Err(format!(
                "spec.capabilities.llm.tokensPerMinute: the window shared by replicas could not be checked, so the request was not sent ({e})"
            )),
        }
    }

    async fn settle(&self, reservation: Reservation, used: u64) {
        let hold = Self::hold(reservation);
        if let Err(e) = self.store.settle(&self.scope, &hold, used).await {
            // The reservation then counts until MAX_HOLD: over-counted, never under.
            tracing::warn!(agent = %self.scope.agent, namespace = %self.scope.namespace, tokens = hold.tokens, used, error = %e, "tokensPerMinute: settling a reservation in the state store failed");
        }
    }

    fn abandon(&self, reservation: Reservation) {
        let hold = Self::hold(reservation);
        // A dropped call cannot await; without a runtime the store drops the
        // reservation after MAX_HOLD.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, scope) = (self.store.clone(), self.scope.clone());
            runtime.spawn(async move {
                let _ = store.settle(&scope, &hold, 0).await;
            });
        }
    }
}
