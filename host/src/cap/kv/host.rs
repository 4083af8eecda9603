//! `wasi:keyvalue` (store, atomics, batch) for guests, over the invocation's
//! [`Transaction`]. Buckets are handles holding a granted name; every call
//! goes through the transaction, so nothing a guest does here is visible
//! outside the invocation before the host commits it.

use wasmtime::component::{HasData, Resource, ResourceTable};

use super::{Bucket, KvError, Transaction};
use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// What the key-value host calls work on: the handle table and, when the
/// manifest grants key-value state, the invocation's transaction.
pub struct KvView<'a> {
    /// Where bucket handles live.
    pub table: &'a mut ResourceTable,
    /// The invocation's transaction; `None` without the grant (every call denied).
    pub txn: Option<&'a mut Transaction>,
}

/// `HasData` marker for [`KvView`].
pub struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

type Result<T> = wasmtime::Result<std::result::Result<T, store::Error>>;

fn to_wit(e: KvError) -> store::Error {
    match e {
        KvError::BucketDenied(_) => store::Error::AccessDenied,
        other => store::Error::Other(other.to_string()),
    }
}

impl KvView<'_> {
    /// The transaction and the bucket name behind `bucket`.
    fn with<T>(
        &mut self,
        bucket: &Resource<Bucket>,
        f: impl FnOnce(&mut Transaction, &str) -> std::result::Result<T, KvError>,
    ) -> Result<T> {
        let name = self.table.get(bucket)?.name.clone();
        let Some(txn) = self.txn.as_deref_mut() else {
            return Ok(Err(store::Error::AccessDenied));
        };
        Ok(f(txn, &name).map_err(to_wit))
    }
}

impl store::Host for KvView<'_> {
    fn open(&mut self, identifier: String) -> Result<Resource<Bucket>> {
        let Some(txn) = self.txn.as_deref() else {
            return Ok(Err(store::Error::AccessDenied));
        };
        if let Err(e) = txn.check_bucket(&identifier) {
            return Ok(Err(to_wit(e)));
        }
        Ok(Ok(self.table.push(Bucket { name: identifier })?))
    }
}

impl store::HostBucket for KvView<'_> {
    fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>> {
        self.with(&bucket, |t, b| t.get(b, &key))
    }

    fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<()> {
        self.with(&bucket, |t, b| t.set(b, &key, value))
    }

    fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<()> {
        self.with(&bucket, |t, b| t.delete(b, &key))
    }

    fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool> {
        self.with(&bucket, |t, b| t.exists(b, &key))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse> {
        self.with(&bucket, |t, b| {
            let keys = t.keys(b)?;
            let start = cursor.unwrap_or(0) as usize;
            Ok(store::KeyResponse {
                keys: keys.into_iter().skip(start).collect(),
                cursor: None,
            })
        })
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    fn increment(&mut self, bucket: Resource<Bucket>, key: String, delta: u64) -> Result<u64> {
        self.with(&bucket, |t, b| t.increment(b, &key, delta))
    }
}

impl batch::Host for KvView<'_> {
    fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>> {
        self.with(&bucket, |t, b| {
            keys.into_iter()
                .map(|k| Ok(t.get(b, &k)?.map(|v| (k, v))))
                .collect()
        })
    }

    fn set_many(&mut self, bucket: Resource<Bucket>, items: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.with(&bucket, |t, b| {
            items.into_iter().try_for_each(|(k, v)| t.set(b, &k, v))
        })
    }

    fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Result<()> {
        self.with(&bucket, |t, b| keys.iter().try_for_each(|k| t.delete(b, k)))
    }
}

/// Links the three interfaces; `get` counts the call and hands out the view.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, get)?;
    atomics::add_to_linker::<T, HasKv>(linker, get)?;
    batch::add_to_linker::<T, HasKv>(linker, get)?;
    Ok(())
}
