//! `--caller-tokens`: caller names and their tokens from files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Largest token file read, and longest bearer token accepted: a service
/// account token is about 1 KiB; past this a request is refused before any
/// lookup, so a caller cannot make the host hash or forward megabytes.
pub const MAX_TOKEN_BYTES: usize = 16 << 10;
/// Most token files in `--caller-tokens`: the table is read whole.
pub const MAX_TOKEN_FILES: usize = 1024;
/// How often the token directory and the TLS files are looked at for changes
/// (a Secret update reaches the pod's mount within about a minute).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Caller tokens from a directory laid out like a mounted Secret: one file
/// per caller name, its content that caller's token. Re-read when it changes.
pub struct TokenFiles {
    pub(super) dir: PathBuf,
    table: Arc<RwLock<TokenTable>>,
}

/// Caller names by the SHA-256 of their tokens.
#[derive(Default, PartialEq, Eq)]
struct TokenTable {
    entries: Vec<(String, [u8; 32])>,
}

impl TokenFiles {
    /// Reads `dir`; any unreadable, oversized, empty or ambiguous token file
    /// is an error here (at start), naming the file.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let table = read_tokens(dir, true)?;
        if table.entries.is_empty() {
            tracing::warn!(dir = %dir.display(), "--caller-tokens: no token files yet; no caller authenticates by file until some appear");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            table: Arc::new(RwLock::new(table)),
        })
    }

    /// The caller `token` belongs to. Compares the token's digest with every
    /// entry in constant time, without stopping at a match, so timing tells
    /// nothing about which bytes or which caller matched.
    pub(super) fn lookup(&self, token: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let table = self.table.read().expect("token table lock");
        let mut found = None;
        for (name, expected) in &table.entries {
            if bool::from(expected.ct_eq(&digest)) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Polls the directory every [`RELOAD_INTERVAL`]; a change replaces the
    /// table (a file that became bad is left out: its caller stops being
    /// authenticated, the others keep working).
    pub(super) fn watch(&self) {
        let (dir, table) = (self.dir.clone(), self.table.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let d = dir.clone();
                let Ok(read) = tokio::task::spawn_blocking(move || read_tokens(&d, false)).await
                else {
                    continue;
                };
                let new = read.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "--caller-tokens unreadable: no caller authenticates by file until it is readable again");
                    TokenTable::default()
                });
                let mut current = table.write().expect("token table lock");
                if *current != new {
                    tracing::info!(dir = %dir.display(), callers = new.entries.len(), "caller tokens reloaded");
                    *current = new;
                }
            }
        });
    }
}

/// Whether `name` can be a Secret key (and so a caller file name): it cannot
/// contain `:`, so it never collides with a TokenReview user name.
fn is_secret_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads the token files of `dir`. `strict`: the first bad file is an error;
/// otherwise bad files are logged and left out.
fn read_tokens(dir: &Path, strict: bool) -> Result<TokenTable, String> {
    let where_ = |e: &dyn std::fmt::Display| format!("--caller-tokens {}: {e}", dir.display());
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| where_(&e))? {
        let entry = entry.map_err(|e| where_(&e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // A mounted Secret's own bookkeeping: `..data`, `..2026_11_29...`.
        if name.starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            continue;
        }
        names.push(name);
        if names.len() > MAX_TOKEN_FILES {
            return Err(where_(&format!("more than {MAX_TOKEN_FILES} token files")));
        }
    }
    names.sort();
    let mut entries: Vec<(String, [u8; 32])> = Vec::new();
    for name in names {
        let token = read_token(&dir.join(&name)).and_then(|token| {
            if !is_secret_key(&name) {
                return Err(format!(
                    "{name:?} is not a caller name: use letters, digits, -, _ and . (a Secret key)"
                ));
            }
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            match entries.iter().find(|(_, d)| *d == digest) {
                Some((other, _)) => Err(format!(
                    "{name}: the same token as {other}; each caller needs its own token"
                )),
                None => Ok(digest),
            }
        });
        match token {
            Ok(digest) => entries.push((name, digest)),
            Err(e) if strict => return Err(where_(&e)),
            Err(e) => {
                tracing::error!(error = %where_(&e), "token file left out: its caller is not authenticated")
            }
        }
    }
    Ok(TokenTable { entries })
}

/// One token file: at most [`MAX_TOKEN_BYTES`], visible ASCII after the
/// surrounding whitespace (a trailing newline) is trimmed.
fn read_token(path: &Path) -> Result<String, String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let bytes = crate::config::read_bounded(path, MAX_TOKEN_BYTES as u64)
        .map_err(|e| format!("{name}: {e}"))?;
    let token = String::from_utf8(bytes)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| format!("{name}: a token must be visible ASCII, not empty"))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_map_tokens_to_names_and_refuse_bad_files_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pager"), "s3cret-pager\n").unwrap();
        std::fs::write(dir.path().join("ci"), "s3cret-ci").unwrap();
        std::fs::create_dir(dir.path().join("..2026_11_29")).unwrap();
        let files = TokenFiles::open(dir.path()).unwrap();
        assert_eq!(files.lookup("s3cret-pager").as_deref(), Some("pager"));
        assert_eq!(files.lookup("s3cret-ci").as_deref(), Some("ci"));
        assert_eq!(files.lookup("s3cret"), None);

        std::fs::write(dir.path().join("copy"), "s3cret-ci").unwrap();
        let e = TokenFiles::open(dir.path()).err().unwrap();
        assert!(e.contains("the same token as ci"), "{e}");
        std::fs::remove_file(dir.path().join("copy")).unwrap();

        std::fs::write(dir.path().join("big"), vec![b'a'; MAX_TOKEN_BYTES + 1]).unwrap();
        let e = TokenFiles::open(dir.path()).err().unwrap();
        assert!(e.contains("big: larger than 16384 bytes"), "{e}");
        // Left out on a reload, the others kept.
        let table = read_tokens(dir.path(), false).unwrap();
        assert_eq!(table.entries.len(), 2);
    }
}
