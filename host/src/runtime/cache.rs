//! On-disk cache of precompiled components, keyed by the component's SHA-256
//! and the engine key. Every entry carries the SHA-256 of its payload and is
//! verified before it is deserialized; a mismatch is recompiled, never loaded.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"AHCWASM1";
const HEADER_LEN: usize = MAGIC.len() + 32;

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
}

/// The precompiled-artifact cache of one engine.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    /// A cache in `dir` for an engine whose key is `engine_key`.
    pub fn new(dir: PathBuf, engine_key: String) -> Self {
        Self { dir, engine_key }
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
        let path = self.entry_path(digest);
        let status = match std::fs::read(&path) {
            Ok(entry) => match verify(&entry) {
                Ok(payload) => {
                    // SAFETY: the payload is byte-for-byte what this host wrote
                    // after compiling with an engine of the same key (the key is in
                    // the file name, the payload's SHA-256 in its header); wasmtime
                    // additionally checks the artifact's engine compatibility.
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
        if let Err(e) = store(&path, &artifact) {
            tracing::warn!(entry = %path.display(), error = %e, "could not write compile-cache entry");
        }
        Ok((component, status))
    }
}

fn verify(entry: &[u8]) -> Result<&[u8], String> {
    if entry.len() < HEADER_LEN || &entry[..MAGIC.len()] != MAGIC {
        return Err("not an agent-host cache entry".into());
    }
    let (expected, payload) = entry[MAGIC.len()..].split_at(32);
    if Sha256::digest(payload).as_slice() != expected {
        return Err("payload does not match its recorded SHA-256".into());
    }
    Ok(payload)
}

/// Writes atomically (temp file + rename) so a crash never leaves a torn entry.
fn store(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(&Sha256::digest(artifact))?;
    tmp.write_all(artifact)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_only_intact_entries() {
        let payload = b"artifact bytes";
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&Sha256::digest(payload));
        entry.extend_from_slice(payload);
        assert_eq!(verify(&entry).unwrap(), payload);

        let mut flipped = entry.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(verify(&flipped).unwrap_err().contains("SHA-256"));
        assert!(verify(&entry[..10]).is_err());
        assert!(verify(b"\0asm\x0d\0\x01\0 random other bytes padding padding padding").is_err());
    }
}
