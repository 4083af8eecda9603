//! Key-value state that outlives the invocation (`spec.capabilities.keyValue`).
//!
//! The host scopes every key to the agent (and its namespace) and makes an
//! invocation's writes one transaction: they become visible to later
//! invocations only if `run` returns `Ok`, and a trap, an error result or a
//! timeout leaves nothing behind. Within an invocation, reads see its own
//! writes. Values are bytes; [`Store::get_json`]/[`Store::set_json`] store
//! serde values as JSON, and [`Store::increment`] keeps a counter in the
//! format the host uses (a little-endian `u64`, read back by [`Store::counter`]).
//!
//! ```no_run
//! use agent_host_guest::kv::Store;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Decision {
//!     tool: String,
//! }
//!
//! // A bucket outside `spec.capabilities.keyValue.buckets` -> `kv::Error::Denied`.
//! let handled = Store::open("handled")?;
//! if let Some(previous) = handled.get_json::<Decision>("alert-42")? {
//!     println!("already handled with {}", previous.tool);
//! } else {
//!     handled.set_json("alert-42", &Decision { tool: "create_ticket".into() })?;
//! }
//! let seen = handled.increment("alerts-seen", 1)?;
//! assert_eq!(handled.counter("alerts-seen")?, seen);
//! # Ok::<(), agent_host_guest::kv::Error>(())
//! ```

use serde::{de::DeserializeOwned, Serialize};

use crate::bindings::wasi::keyvalue::{atomics, store};
use crate::AgentError;

/// Why a key-value operation failed. Converts to [`AgentError`] so `?` in
/// [`Agent::run`](crate::Agent::run) reports it with the right case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The host refused the bucket (`access-denied`): the agent has no
    /// `spec.capabilities.keyValue` grant, or the bucket is not in its
    /// `buckets` list.
    #[error("key-value bucket `{bucket}` denied by the host: grant it in spec.capabilities.keyValue (and its buckets list)")]
    Denied {
        /// The bucket the agent asked for.
        bucket: String,
    },
    /// The host does not know the bucket (`no-such-store`).
    #[error("key-value bucket `{bucket}` does not exist on this host")]
    NoSuchStore {
        /// The bucket the agent asked for.
        bucket: String,
    },
    /// The host refused or failed the operation (`other`): the agent's
    /// `maxBytes` quota, a key longer than the host allows, too many keys in
    /// one invocation, or a backend failure. The message is the host's.
    #[error("key-value bucket `{bucket}`: {message}")]
    Host {
        /// The bucket operated on.
        bucket: String,
        /// The host's explanation.
        message: String,
    },
    /// A value could not be encoded as JSON, or the stored JSON does not fit
    /// the requested type.
    #[error("key-value bucket `{bucket}`, key `{key}`: {message}")]
    Json {
        /// The bucket operated on.
        bucket: String,
        /// The key whose value did not fit.
        key: String,
        /// serde's message (line, column, field).
        message: String,
    },
    /// The key holds a value that is not a counter (8 bytes, little-endian `u64`).
    #[error("key-value bucket `{bucket}`, key `{key}`: holds {len} bytes, not an 8-byte little-endian u64 counter")]
    NotACounter {
        /// The bucket operated on.
        bucket: String,
        /// The key.
        key: String,
        /// How many bytes the key holds.
        len: usize,
    },
}

impl From<Error> for AgentError {
    /// [`Error::Denied`] and [`Error::NoSuchStore`] become
    /// [`AgentError::CapabilityDenied`] (fix the manifest); stored data that
    /// does not fit the agent's own types becomes [`AgentError::Internal`];
    /// what the host refused or failed becomes [`AgentError::Upstream`].
    fn from(e: Error) -> AgentError {
        match e {
            Error::Denied { .. } | Error::NoSuchStore { .. } => {
                AgentError::CapabilityDenied(e.to_string())
            }
            Error::Json { .. } | Error::NotACounter { .. } => AgentError::Internal(e.to_string()),
            Error::Host { .. } => AgentError::Upstream(e.to_string()),
        }
    }
}

/// An open bucket of the agent's key-value state.
#[derive(Debug)]
pub struct Store {
    bucket: store::Bucket,
    name: String,
}

impl Store {
    /// Opens `bucket`. Fails with [`Error::Denied`] when the manifest grants no
    /// key-value state or does not list the bucket.
    pub fn open(bucket: &str) -> Result<Store, Error> {
        let opened = store::open(bucket).map_err(|e| host_error(bucket, e))?;
        Ok(Store {
            bucket: opened,
            name: bucket.to_owned(),
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bytes at `key`, or `None` if it is absent.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.bucket.get(key).map_err(|e| self.error(e))
    }

    /// Stores `value` at `key`, replacing any previous value.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.bucket.set(key, value).map_err(|e| self.error(e))
    }

    /// Removes `key`; removing an absent key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.bucket.delete(key).map_err(|e| self.error(e))
    }

    /// Whether `key` holds a value.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.bucket.exists(key).map_err(|e| self.error(e))
    }

    /// Every key in the bucket, following the host's pages to the end.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        all_pages(&self.name, |cursor| {
            self.bucket.list_keys(cursor).map_err(|e| self.error(e))
        })
    }

    /// The JSON value at `key` decoded into `T`, or `None` if it is absent.
    /// [`Error::Json`] if the stored bytes are not JSON of that shape.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let Some(bytes) = self.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            self.json_error(key, format!("stored value is not the expected JSON: {e}"))
        })
    }

    /// Stores `value` serialised as JSON at `key`.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| self.json_error(key, format!("cannot encode value as JSON: {e}")))?;
        self.set(key, &bytes)
    }

    /// Adds `delta` to the counter at `key` (an absent key counts as 0) and
    /// returns the value this invocation sees: the counter as it first looked
    /// at it plus its own increments so far. Increments commute: concurrent
    /// invocations that only increment a key never conflict, each delta is
    /// added at commit to whatever the counter holds then. A key the
    /// invocation also reads, sets or deletes is checked for concurrent
    /// changes like any other (the commit is refused if it changed). The host
    /// stores counters as 8-byte little-endian `u64`s and wraps on overflow;
    /// a key holding anything else fails with [`Error::Host`].
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        atomics::increment(&self.bucket, key, delta).map_err(|e| self.error(e))
    }

    /// The counter at `key` as [`Store::increment`] left it (an absent key is
    /// 0); [`Error::NotACounter`] if the key holds something else.
    pub fn counter(&self, key: &str) -> Result<u64, Error> {
        let Some(bytes) = self.get(key)? else {
            return Ok(0);
        };
        let len = bytes.len();
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| Error::NotACounter {
            bucket: self.name.clone(),
            key: key.to_owned(),
            len,
        })?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn error(&self, e: store::Error) -> Error {
        host_error(&self.name, e)
    }

    fn json_error(&self, key: &str, message: String) -> Error {
        Error::Json {
            bucket: self.name.clone(),
            key: key.to_owned(),
            message,
        }
    }
}

/// Concatenates the pages `list_keys` returns from the first (`None`) cursor
/// on. A cursor that does not move forward is an error, not an endless loop.
fn all_pages(
    bucket: &str,
    mut list_keys: impl FnMut(Option<u64>) -> Result<store::KeyResponse, Error>,
) -> Result<Vec<String>, Error> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = list_keys(cursor)?;
        keys.extend(page.keys);
        match page.cursor {
            None => return Ok(keys),
            Some(next) if cursor.is_some_and(|c| next <= c) => {
                return Err(Error::Host {
                    bucket: bucket.to_owned(),
                    message: format!(
                        "list-keys returned cursor {next}, which does not advance past {cursor:?}"
                    ),
                })
            }
            next => cursor = next,
        }
    }
}

/// The one mapping from `wasi:keyvalue` errors to [`Error`].
fn host_error(bucket: &str, e: store::Error) -> Error {
    let bucket = bucket.to_owned();
    match e {
        store::Error::AccessDenied => Error::Denied { bucket },
        store::Error::NoSuchStore => Error::NoSuchStore { bucket },
        store::Error::Other(message) => Error::Host { bucket, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_bucket_is_a_capability_denial_naming_the_bucket() {
        let e = host_error("secrets", store::Error::AccessDenied);
        assert_eq!(
            e,
            Error::Denied {
                bucket: "secrets".into()
            }
        );
        match AgentError::from(e) {
            AgentError::CapabilityDenied(m) => {
                assert!(
                    m.contains("`secrets`") && m.contains("spec.capabilities.keyValue"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    fn page(keys: &[&str], cursor: Option<u64>) -> store::KeyResponse {
        store::KeyResponse {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            cursor,
        }
    }

    #[test]
    fn keys_follow_every_page_of_the_host() {
        let mut asked = Vec::new();
        let keys = all_pages("state", |cursor| {
            asked.push(cursor);
            Ok(match cursor {
                None => page(&["a", "b"], Some(2)),
                Some(2) => page(&["c"], Some(3)),
                _ => page(&["d"], None),
            })
        })
        .unwrap();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        assert_eq!(asked, [None, Some(2), Some(3)]);
    }

    #[test]
    fn a_cursor_that_does_not_advance_is_an_error_not_an_endless_loop() {
        let mut calls = 0;
        let e = all_pages("state", |_| {
            calls += 1;
            // Bounded here so that a missing guard fails the test instead of hanging it.
            if calls > 10 {
                return Err(host_error(
                    "state",
                    store::Error::Other("asked forever".into()),
                ));
            }
            Ok(page(&["a"], Some(1)))
        })
        .unwrap_err();
        assert_eq!(calls, 2);
        assert!(
            matches!(e, Error::Host { ref message, .. } if message.contains("does not advance")),
            "{e}"
        );
    }

    #[test]
    fn host_refusals_keep_the_hosts_message_and_are_upstream() {
        let e = host_error("state", store::Error::Other("quota: maxBytes is 10".into()));
        match AgentError::from(e) {
            AgentError::Upstream(m) => assert!(m.contains("quota: maxBytes is 10"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
