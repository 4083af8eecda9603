//! Opens the durable state plane on the store the operator chose, sharing
//! the key-value capability's connection or database: one store holds
//! key-value data and invocation records, so a result and the key-value
//! commit it depends on are one atomic write.

use std::sync::Arc;
use std::time::Duration;

use super::Runtime;
use crate::config::Store;
use crate::state_store::redb::RedbStore;
use crate::state_store::redis::RedisStore;
use crate::state_store::StateStore;

impl Runtime {
    /// The state store for `--store`: on the embedded store, the redb
    /// database the key-value capability uses (opened once: redb locks its
    /// file), where work still running was this host's previous life's and
    /// has its lease expired, to be re-run at once; on Redis, a connection
    /// with the operator's settings (password file, TLS), whose key-value
    /// view every agent prepared from now on uses. Call it before preparing
    /// agents.
    pub async fn open_state_store(
        &self,
        retention: Duration,
    ) -> Result<Arc<dyn StateStore>, String> {
        match &self.config.store {
            Store::Embedded => {
                let kv = self.caps.key_value.embedded()?;
                let store = RedbStore::open(kv, retention).map_err(|e| e.to_string())?;
                // This host's previous life held these; it is dead.
                let expired = store.expire_leases().await.map_err(|e| e.to_string())?;
                if expired > 0 {
                    tracing::warn!(
                        expired,
                        "invocations running when this host last stopped: re-run now"
                    );
                }
                Ok(Arc::new(store))
            }
            Store::Redis(settings) => {
                let store = RedisStore::connect_with(settings, retention)
                    .await
                    .map_err(|e| format!("--store {}: {e}", settings.url()))?;
                let store: Arc<dyn StateStore> = Arc::new(store);
                self.caps.key_value.use_backend(store.kv());
                Ok(store)
            }
        }
    }
}
