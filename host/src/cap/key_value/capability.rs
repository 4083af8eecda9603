//! The `keyValue` capability: the store is host-wide (opened once, by the
//! first agent granted state), the grant names the agent's buckets and quota,
//! each invocation works in its own transaction, committed by the runtime
//! only when `run` returns ok.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use wasmtime::component::Linker;

use super::host::KeyValueView;
use super::redb_store::RedbBackend;
use super::redis_store::RedisBackend;
use super::{KeyValueBackend, KeyValueCommit, KeyValueGrant, Scope, Transaction};
use crate::cap::imports::Binding;
use crate::cap::tool_call::ToolCall;
use crate::cap::{
    Capability, CommitIntent, ConfigureCx, ConfigureError, HasCapability, Kind, PrepareCx,
};
use crate::config::{HostConfig, Store};
use crate::manifest::Limits;

/// The `keyValue` capability.
pub struct KeyValue;

/// Where the host keeps key-value state, opened on first use (once: redb
/// locks its file).
pub struct KeyValueHost {
    store: Store,
    state_dir: std::path::PathBuf,
    backend: Mutex<Option<Arc<dyn KeyValueBackend>>>,
    /// The embedded database once opened: the state store shares it.
    embedded: Mutex<Option<Arc<RedbBackend>>>,
}

/// A compiled key-value grant and the store behind it.
pub struct Granted {
    /// Whose keys, which buckets, how many bytes.
    pub grant: KeyValueGrant,
    /// `None` when only inspected: such a grant is never prepared.
    backend: Option<Arc<dyn KeyValueBackend>>,
}

impl std::fmt::Debug for Granted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.grant.fmt(f)
    }
}

/// One invocation's key-value state.
#[derive(Default)]
pub struct KeyValueState {
    /// The invocation's transaction, when the manifest grants state.
    txn: Option<Transaction>,
    /// Bucket opens refused (buckets the manifest does not list).
    denied: u32,
}

/// What one invocation did with key-value state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValueUsage {
    /// Bucket opens refused (`keyValue.buckets`).
    #[serde(skip_serializing_if = "is_zero")]
    pub key_value_denied: u32,
    /// Whether the invocation's writes were committed (absent when it buffered none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_value: Option<KeyValueCommit>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl KeyValueHost {
    /// The embedded redb backend (`kv.redb` under the state dir), opened now
    /// if no agent opened it yet: the state store's tables live in the same
    /// database, so a key-value commit and a result are one transaction.
    pub fn embedded(&self) -> Result<Arc<RedbBackend>, String> {
        let mut embedded = self.embedded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = embedded.as_ref() {
            return Ok(db.clone());
        }
        let path = self.state_dir.join("kv.redb");
        let opened = std::fs::create_dir_all(&self.state_dir)
            .map_err(|e| e.to_string())
            .and_then(|()| RedbBackend::open(&path).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot open the store {}: {e}", path.display()))?;
        let opened = Arc::new(opened);
        *embedded = Some(opened.clone());
        Ok(opened)
    }

    /// Makes every agent configured from now on use `backend` (the state
    /// store's key-value view), so key-value data and results share one store.
    pub fn use_backend(&self, backend: Arc<dyn KeyValueBackend>) {
        *self.backend.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend);
    }

    fn backend(&self) -> Result<Arc<dyn KeyValueBackend>, ConfigureError> {
        let mut kv = self.backend.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kv) = kv.as_ref() {
            return Ok(kv.clone());
        }
        let backend: Arc<dyn KeyValueBackend> = match &self.store {
            Store::Embedded => {
                drop(kv);
                let opened = self.embedded().map_err(|e| {
                    ConfigureError::new("spec.capabilities.keyValue", format!("key-value: {e}"))
                })?;
                let mut kv = self.backend.lock().unwrap_or_else(|e| e.into_inner());
                return Ok(kv
                    .get_or_insert_with(|| opened as Arc<dyn KeyValueBackend>)
                    .clone());
            }
            // Without a state store (`run`, library use) this single-server
            // backend serves; its commit scripts would be refused by a
            // Cluster client. `serve` installs the state store's
            // Cluster-aware view first (`use_backend`).
            Store::Redis(redis) if redis.is_cluster() => {
                return Err(ConfigureError::new(
                    "spec.capabilities.keyValue",
                    format!(
                        "the store {} is a Redis Cluster, which key-value state outside \
                         `agent-host serve` does not support: use one Redis server, or serve",
                        redis.url()
                    ),
                ))
            }
            Store::Redis(redis) => {
                Arc::new(RedisBackend::connect(redis.connection_info()).map_err(|e| {
                    ConfigureError::new(
                        "spec.capabilities.keyValue",
                        format!("cannot reach the key-value store: {e}"),
                    )
                })?)
            }
        };
        *kv = Some(backend.clone());
        Ok(backend)
    }
}

impl Capability for KeyValue {
    const KIND: Kind = Kind::KeyValue;
    const INTERFACES: &'static [&'static str] = &[
        "wasi:keyvalue/store",
        "wasi:keyvalue/atomics",
        "wasi:keyvalue/batch",
    ];
    type Host = KeyValueHost;
    type Grant = Option<Granted>;
    type State = KeyValueState;
    type Usage = KeyValueUsage;

    fn host(config: &HostConfig) -> KeyValueHost {
        KeyValueHost {
            store: config.store.clone(),
            state_dir: config.state_dir.clone(),
            backend: Mutex::new(None),
            embedded: Mutex::new(None),
        }
    }

    fn link<T: HasCapability<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        super::host::add_to_linker(linker, |s| {
            let v = s.capability();
            v.core.calls.record(Kind::KeyValue);
            KeyValueView {
                table: &mut v.core.table,
                txn: v.state.txn.as_mut(),
                audit: &v.core.audit,
                denied: &mut v.state.denied,
            }
        })
    }

    fn configure(
        host: &KeyValueHost,
        cx: &ConfigureCx<'_>,
    ) -> Result<Option<Granted>, ConfigureError> {
        let Some(spec) = &cx.agent.spec.capabilities.key_value else {
            return Ok(None);
        };
        Ok(Some(Granted {
            grant: KeyValueGrant {
                scope: Scope {
                    namespace: cx.agent.metadata.namespace.clone().unwrap_or_default(),
                    agent: cx.agent.name().to_string(),
                },
                buckets: spec.buckets.clone(),
                max_bytes: spec.max_bytes.bytes(),
            },
            backend: if cx.inspect {
                None
            } else {
                Some(host.backend()?)
            },
        }))
    }

    fn prepare(_: &KeyValueHost, grant: &Option<Granted>, cx: &mut PrepareCx<'_>) -> KeyValueState {
        KeyValueState {
            txn: grant.as_ref().and_then(|g| {
                let backend = g.backend.clone()?;
                Some(g.grant.begin(backend, cx.deadline))
            }),
            denied: 0,
        }
    }

    /// Writes buffered: the transaction, for the runtime to commit with the result.
    async fn finish(
        state: KeyValueState,
        usage: &mut KeyValueUsage,
        _: &mut Vec<ToolCall>,
    ) -> Option<CommitIntent> {
        usage.key_value_denied = state.denied;
        let txn = state.txn.filter(|t| t.pending_writes() > 0)?;
        usage.key_value = Some(KeyValueCommit::NotCommitted);
        Some(CommitIntent::KeyValue(txn))
    }

    fn bind(_: &str, grant: &Option<Granted>, _: &Limits) -> Binding {
        match grant {
            None => Binding::denied(
                Kind::KeyValue,
                "key-value state is not granted; declare spec.capabilities.keyValue",
            ),
            Some(g) => Binding::granted(
                Kind::KeyValue,
                format!("{}, committed when run returns ok", describe(&g.grant)),
            ),
        }
    }

    fn describe(grant: &Option<Granted>) -> Vec<String> {
        grant.iter().map(|g| describe(&g.grant)).collect()
    }

    fn denials(usage: &KeyValueUsage) -> u64 {
        u64::from(usage.key_value_denied)
    }

    fn report(grant: &Option<Granted>, usage: &KeyValueUsage, _: &Limits) -> Option<String> {
        grant.as_ref()?;
        let commit = match usage.key_value {
            Some(KeyValueCommit::Committed) => "committed",
            Some(KeyValueCommit::Unknown) => "commit unknown",
            Some(KeyValueCommit::NotCommitted) => "not committed",
            None => "nothing written",
        };
        Some(format!(
            "{commit}, {} buckets denied",
            usage.key_value_denied
        ))
    }
}

fn describe(grant: &KeyValueGrant) -> String {
    let buckets = if grant.buckets.is_empty() {
        "any bucket".to_string()
    } else {
        format!("buckets {}", grant.buckets.join(", "))
    };
    format!(
        "{buckets}, at most {}",
        crate::manifest::Quantity::from_bytes(grant.max_bytes)
    )
}
