//! On-disk cache of precompiled components, keyed by the component's SHA-256
//! and the engine key.
//!
//! Deserializing a precompiled artifact runs native code it contains, so an
//! entry is loaded only if it carries a valid HMAC-SHA256 tag, made with this
//! host's cache key over the component digest, the engine key and the payload.
//! A tampered entry, one swapped between components, or one copied from
//! another host (another key) fails the check and is recompiled, never loaded.
//! The key lives in `cache.key` in the cache directory unless the operator
//! points `cache_key_file` elsewhere (e.g. a mounted secret, so that a shared
//! cache volume alone cannot forge entries).

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"AHCWASM2";
const TAG_LEN: usize = 32;
const KEY_LEN: usize = 32;

/// How a component was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Loaded from a verified cache entry.
    Hit,
    /// Not cached yet: compiled and stored.
    Miss,
    /// A cache entry existed but failed verification: compiled and replaced.
    Rebuilt {
        /// What was wrong with the entry.
        reason: String,
    },
    /// The cache is unusable (no key): compiled, nothing read or written.
    Disabled,
}

/// The precompiled-artifact cache of one engine.
#[derive(Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    key: Option<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .field("enabled", &self.key.is_some())
            .finish()
    }
}

impl CompileCache {
    /// A cache in `dir` for an engine whose key is `engine_key`, authenticated
    /// with the key in `key_file` (default `<dir>/cache.key`, created if missing).
    /// If the key cannot be read or created the cache is disabled, not trusted.
    pub fn new(dir: PathBuf, engine_key: String, key_file: Option<PathBuf>) -> Self {
        let key_file = key_file.unwrap_or_else(|| dir.join("cache.key"));
        let key = match load_or_create_key(&key_file) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(key_file = %key_file.display(), error = %e, "compile cache disabled: no usable key");
                None
            }
        };
        Self {
            dir,
            engine_key,
            key,
        }
    }

    /// Where the entry for a component with digest `digest` lives.
    pub fn entry_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.cwasm", &self.engine_key[..16]))
    }

    /// Loads the component with `digest` from the cache, or compiles `wasm`
    /// and stores it.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, CacheStatus)> {
        let Some(key) = &self.key else {
            return Ok((Component::new(engine, wasm)?, CacheStatus::Disabled));
        };
        let path = self.entry_path(digest);
        let status = match std::fs::read(&path) {
            Ok(entry) => match self.verify(key, digest, &entry) {
                Ok(payload) => {
                    // SAFETY: the payload carries a valid tag made with this host's
                    // key over this component's digest and this engine's key, so it
                    // is byte-for-byte what this host wrote after compiling it;
                    // wasmtime additionally checks engine compatibility.
                    match unsafe { Component::deserialize(engine, payload) } {
                        Ok(component) => return Ok((component, CacheStatus::Hit)),
                        Err(e) => CacheStatus::Rebuilt {
                            reason: format!("not loadable: {e}"),
                        },
                    }
                }
                Err(reason) => CacheStatus::Rebuilt { reason },
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CacheStatus::Miss,
            Err(e) => CacheStatus::Rebuilt {
                reason: format!("unreadable: {e}"),
            },
        };
        if let CacheStatus::Rebuilt { reason } = &status {
            tracing::warn!(entry = %path.display(), %reason, "discarding compile-cache entry");
        }
        let artifact = engine.precompile_component(wasm)?;
        // SAFETY: produced just above by this engine from these bytes.
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        let tag = self.tag(key, digest, &artifact);
        if let Err(e) = store(&path, &tag, &artifact) {
            tracing::warn!(entry = %path.display(), error = %e, "could not write compile-cache entry");
        }
        Ok((component, status))
    }

    fn tag(&self, key: &[u8; KEY_LEN], digest: &str, payload: &[u8]) -> [u8; TAG_LEN] {
        self.mac(key, digest, payload)
            .finalize()
            .into_bytes()
            .into()
    }

    fn mac(&self, key: &[u8; KEY_LEN], digest: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(digest.as_bytes());
        mac.update(self.engine_key.as_bytes());
        mac.update(payload);
        mac
    }

    fn verify<'a>(
        &self,
        key: &[u8; KEY_LEN],
        digest: &str,
        entry: &'a [u8],
    ) -> Result<&'a [u8], String> {
        if entry.len() < MAGIC.len() + TAG_LEN || &entry[..MAGIC.len()] != MAGIC {
            return Err("not an agent-host cache entry".into());
        }
        let (tag, payload) = entry[MAGIC.len()..].split_at(TAG_LEN);
        self.mac(key, digest, payload)
            .verify_slice(tag)
            .map_err(|_| {
                "authentication tag does not match (tampered, or made by another host)".to_string()
            })?;
        Ok(payload)
    }
}

fn load_or_create_key(path: &Path) -> std::io::Result<[u8; KEY_LEN]> {
    match read_key(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // tempfile creates owner-only files; linking it into place never clobbers a
    // key another process created meanwhile, which is then used instead.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&key)?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(key),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(e.error),
    }
}

fn read_key(path: &Path) -> std::io::Result<[u8; KEY_LEN]> {
    std::fs::read(path)?.try_into().map_err(|b: Vec<u8>| {
        std::io::Error::other(format!(
            "cache key must be {KEY_LEN} bytes, found {}",
            b.len()
        ))
    })
}

/// Writes atomically (temp file + rename) so a crash never leaves a torn entry.
fn store(path: &Path, tag: &[u8], artifact: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(tag)?;
    tmp.write_all(artifact)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> CompileCache {
        CompileCache::new(dir.to_path_buf(), "e".repeat(64), None)
    }

    fn entry(cache: &CompileCache, digest: &str, payload: &[u8]) -> Vec<u8> {
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&cache.tag(cache.key.as_ref().unwrap(), digest, payload));
        entry.extend_from_slice(payload);
        entry
    }

    #[test]
    fn only_entries_tagged_by_this_host_for_this_component_verify() {
        let dir = tempfile::tempdir().unwrap();
        let ours = cache(dir.path());
        let key = ours.key.unwrap();
        let good = entry(&ours, "d1", b"artifact");
        assert_eq!(ours.verify(&key, "d1", &good).unwrap(), b"artifact");

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(ours
            .verify(&key, "d1", &flipped)
            .unwrap_err()
            .contains("tag"));
        assert!(
            ours.verify(&key, "d2", &good).is_err(),
            "an entry cannot be swapped to another component"
        );
        assert!(ours.verify(&key, "d1", &good[..10]).is_err());

        let other_host = tempfile::tempdir().unwrap();
        let foreign = entry(&cache(other_host.path()), "d1", b"artifact");
        assert!(
            ours.verify(&key, "d1", &foreign).is_err(),
            "entries from another host are refused"
        );
    }

    #[test]
    fn the_key_is_created_once_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = cache(dir.path()).key.unwrap();
        assert_eq!(cache(dir.path()).key.unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("cache.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_malformed_key_disables_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cache.key"), b"short").unwrap();
        assert!(cache(dir.path()).key.is_none());
    }
}
