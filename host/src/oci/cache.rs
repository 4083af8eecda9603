//! Pulled blobs, content-addressed (`blobs/sha256/<hex>`), bounded in bytes
//! with least-recently-used eviction; and the last signature manifest seen
//! per repository and digest (`signatures/<sha256 of the repository>/<hex>.json`:
//! a signature tag belongs to one repository), which is only a hint:
//! every load verifies it again under the current policy.
//!
//! Nothing read from here is trusted for what it claims: a blob is used only
//! if its bytes hash to its name, so a corrupted or planted entry is dropped
//! and fetched again.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::client::sha256;

/// Largest signature manifest kept, bytes.
const MAX_SIGNATURE_MANIFEST: u64 = 1 << 20;

/// The blob cache of one host (a directory, shared safely between processes).
#[derive(Debug)]
pub struct BlobCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Serialises eviction within this process.
    evicting: Mutex<()>,
}

impl BlobCache {
    /// A cache in `dir` holding at most `max_bytes` of blobs.
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            dir,
            max_bytes,
            evicting: Mutex::new(()),
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// The blob named `digest` if it is here, at most `max` bytes and intact;
    /// marks it used.
    pub fn get(&self, digest: &str, max: u64) -> Option<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = read_bounded(&path, max)?;
        if sha256(&bytes) != digest {
            tracing::warn!(entry = %path.display(), "dropping a cached blob that does not match its digest");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        touch(&path);
        Some(bytes)
    }

    /// Stores a blob already checked against `digest`, then evicts the least
    /// recently used blobs until the cache fits its bound. A blob larger than
    /// the whole bound is not kept. Failures only cost a later re-pull.
    pub fn put(&self, digest: &str, bytes: &[u8]) {
        if bytes.len() as u64 > self.max_bytes {
            return;
        }
        let path = self.blob_path(digest);
        if let Err(e) = write_atomic(&path, bytes) {
            tracing::warn!(entry = %path.display(), error = %e, "could not cache a pulled blob");
            return;
        }
        self.evict(&path);
    }

    fn evict(&self, keep: &Path) {
        let _guard = self.evicting.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(entries) = std::fs::read_dir(self.dir.join("blobs/sha256")) else {
            return;
        };
        let mut blobs: Vec<(SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let meta = e.metadata().ok()?;
                meta.is_file().then(|| {
                    (
                        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        meta.len(),
                        e.path(),
                    )
                })
            })
            .collect();
        let mut total: u64 = blobs.iter().map(|b| b.1).sum();
        blobs.sort();
        for (_, size, path) in blobs {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::debug!(entry = %path.display(), size, "evicted from the blob cache");
                total -= size;
            }
        }
    }

    /// The signature manifest last fetched for `digest` in `repository`.
    pub fn signatures(&self, repository: &str, digest: &str) -> Option<Vec<u8>> {
        read_bounded(
            &self.signatures_path(repository, digest),
            MAX_SIGNATURE_MANIFEST,
        )
    }

    /// Remembers the signature manifest fetched for `digest` in `repository`.
    pub fn put_signatures(&self, repository: &str, digest: &str, manifest: &[u8]) {
        let path = self.signatures_path(repository, digest);
        if let Err(e) = write_atomic(&path, manifest) {
            tracing::warn!(entry = %path.display(), error = %e, "could not cache a signature manifest");
        }
    }

    fn signatures_path(&self, repository: &str, digest: &str) -> PathBuf {
        let repository = sha256(repository.as_bytes());
        self.dir
            .join("signatures")
            .join(repository.trim_start_matches("sha256:"))
            .join(format!("{}.json", digest.trim_start_matches("sha256:")))
    }

    /// Total bytes of cached blobs (for tests and reports).
    pub fn blob_bytes(&self) -> u64 {
        std::fs::read_dir(self.dir.join("blobs/sha256"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= max).then_some(bytes)
}

fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_checked_on_read_and_the_least_recently_used_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path().to_path_buf(), 250);
        let blobs: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 100]).collect();
        let digests: Vec<String> = blobs.iter().map(|b| sha256(b)).collect();
        cache.put(&digests[0], &blobs[0]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.put(&digests[1], &blobs[1]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Using the first makes the second the least recently used.
        assert_eq!(cache.get(&digests[0], 1000).as_deref(), Some(&blobs[0][..]));
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.put(&digests[2], &blobs[2]);
        assert!(cache.blob_bytes() <= 250);
        assert!(
            cache.get(&digests[1], 1000).is_none(),
            "the least recently used blob was evicted"
        );
        assert!(cache.get(&digests[0], 1000).is_some());
        assert!(cache.get(&digests[2], 1000).is_some());
        // A tampered entry is dropped, not served; an oversized one is not read.
        std::fs::write(cache.blob_path(&digests[2]), b"other bytes").unwrap();
        assert!(cache.get(&digests[2], 1000).is_none());
        assert!(!cache.blob_path(&digests[2]).exists());
        assert!(cache.get(&digests[0], 99).is_none());
        // A blob larger than the whole bound is not kept.
        let big = vec![9u8; 300];
        cache.put(&sha256(&big), &big);
        assert!(cache.get(&sha256(&big), 1000).is_none());
    }
}
