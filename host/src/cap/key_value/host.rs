//! `wasi:keyvalue` (store, atomics, batch) for guests, over the invocation's
//! [`Transaction`]. Buckets are handles holding a granted name; every call
//! goes through the transaction, so nothing a guest does here is visible
//! outside the invocation before the host commits it. The calls are async:
//! a slow store suspends the guest, it does not hold an executor thread.

use wasmtime::component::{HasData, Resource, ResourceTable};

use super::{Bucket, KeyValueError, Transaction};
use crate::audit::CapabilityAudit;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::cap::Kind;

/// What the key-value host calls work on: the handle table and, when the
/// manifest grants key-value state, the invocation's transaction.
pub struct KeyValueView<'a> {
    /// Where bucket handles live.
    pub table: &'a mut ResourceTable,
    /// The invocation's transaction; `None` without the grant (every call denied).
    pub txn: Option<&'a mut Transaction>,
    /// Where refused buckets are audited and charged to `spec.limits.maxDenials`.
    pub audit: &'a CapabilityAudit,
    /// Bucket opens refused so far in the invocation.
    pub denied: &'a mut u32,
}

/// `HasData` marker for [`KeyValueView`].
pub struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueView<'a>;
}

type Result<T> = wasmtime::Result<std::result::Result<T, store::Error>>;

/// What the guest sees. Past the deadline the call traps as an interrupt
/// instead, so the invocation ends as `Timeout` like any other overrun.
fn outcome<T>(r: std::result::Result<T, KeyValueError>) -> Result<T> {
    match r {
        Err(KeyValueError::Deadline) => Err(wasmtime::Trap::Interrupt.into()),
        Err(KeyValueError::BucketDenied(_)) => Ok(Err(store::Error::AccessDenied)),
        // A store fault is the host's, not the agent's: the invocation ends as
        // KeyValueError (durable work goes back to the queue) instead of the
        // guest reporting it as its own failure.
        Err(e @ KeyValueError::Backend(_)) => Err(wasmtime::Error::new(e)),
        Err(other) => Ok(Err(store::Error::Other(other.to_string()))),
        Ok(v) => Ok(Ok(v)),
    }
}

impl KeyValueView<'_> {
    /// The transaction and the bucket name behind `bucket`; `None` without the grant.
    fn open(
        &mut self,
        bucket: &Resource<Bucket>,
    ) -> wasmtime::Result<Option<(&mut Transaction, String)>> {
        let name = self.table.get(bucket)?.name.clone();
        Ok(self.txn.as_deref_mut().map(|txn| (txn, name)))
    }
}

/// Runs `$call` on the bucket's transaction, or answers `access-denied`
/// without the grant.
macro_rules! on_bucket {
    ($view:expr, $bucket:expr, |$t:ident, $b:ident| $call:expr) => {{
        let Some(($t, $b)) = $view.open(&$bucket)? else {
            return Ok(Err(store::Error::AccessDenied));
        };
        let $b = $b.as_str();
        outcome($call)
    }};
}

impl store::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>> {
        let Some(txn) = self.txn.as_deref() else {
            *self.denied += 1;
            // Linked but not granted: denied at call, audited like a refused bucket.
            self.audit.deny(
                Kind::KeyValue,
                "open",
                &identifier,
                "spec.capabilities.keyValue is not granted",
            )?;
            return Ok(Err(store::Error::AccessDenied));
        };
        // Also bounds the name each handle keeps (MAX_BUCKET_NAME_BYTES).
        if let Err(e) = txn.check_bucket(&identifier) {
            if let KeyValueError::BucketDenied(_) = &e {
                *self.denied += 1;
                // Past spec.limits.maxDenials the invocation ends here.
                self.audit
                    .deny(Kind::KeyValue, "open", &identifier, &e.to_string())?;
            }
            return outcome(Err(e));
        }
        Ok(Ok(self.table.push(Bucket { name: identifier })?))
    }
}

impl store::HostBucket for KeyValueView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>> {
        on_bucket!(self, bucket, |t, b| t.get(b, &key).await)
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<()> {
        on_bucket!(self, bucket, |t, b| t.set(b, &key, value).await)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<()> {
        on_bucket!(self, bucket, |t, b| t.delete(b, &key).await)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool> {
        on_bucket!(self, bucket, |t, b| t.exists(b, &key).await)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse> {
        on_bucket!(self, bucket, |t, b| t.keys(b).await.map(|keys| {
            let start = cursor.unwrap_or(0) as usize;
            store::KeyResponse {
                keys: keys.into_iter().skip(start).collect(),
                cursor: None,
            }
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64> {
        on_bucket!(self, bucket, |t, b| t.increment(b, &key, delta).await)
    }
}

impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>> {
        on_bucket!(self, bucket, |t, b| async {
            let mut found = Vec::with_capacity(keys.len());
            for k in keys {
                let value = t.get(b, &k).await?;
                found.push(value.map(|v| (k, v)));
            }
            Ok::<_, KeyValueError>(found)
        }
        .await)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        items: Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        on_bucket!(self, bucket, |t, b| async {
            for (k, v) in items {
                t.set(b, &k, v).await?;
            }
            Ok::<_, KeyValueError>(())
        }
        .await)
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Result<()> {
        on_bucket!(self, bucket, |t, b| async {
            for k in &keys {
                t.delete(b, k).await?;
            }
            Ok::<_, KeyValueError>(())
        }
        .await)
    }
}

/// Links the three interfaces; `get` counts the call and hands out the view.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> KeyValueView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKeyValue>(linker, get)?;
    atomics::add_to_linker::<T, HasKeyValue>(linker, get)?;
    batch::add_to_linker::<T, HasKeyValue>(linker, get)?;
    Ok(())
}
