//! Where the host keeps its state: the operator's `--store` choice, its
//! password file, and the errors that name the flag at fault.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest password file read: a Redis password is at most a few hundred
/// bytes; a larger file is a wrong path (a log, a disk image), not a secret.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// Longest wait for the startup check of a Redis store ([`RedisStore::check`]).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the host keeps its state (today: agents' key-value data). Chosen by
/// the operator, never by an agent.
#[derive(Clone, Debug, Default)]
pub enum Store {
    /// An embedded redb file under the state directory: one host, durable
    /// across its restarts.
    #[default]
    Embedded,
    /// A Redis server shared by replicas.
    Redis(RedisStore),
}

/// A Redis server: its URL without the password, and the password kept apart
/// so that neither `Debug` nor an error message can print it.
#[derive(Clone)]
pub struct RedisStore {
    info: redis::ConnectionInfo,
    /// The URL as given, with any password removed.
    shown: String,
}

/// The flag (and its variable) that chose a store, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFlag {
    /// `--store` / `AGENT_HOST_STORE`.
    Store,
    /// `--kv-redis` / `AGENT_HOST_KV_REDIS` (deprecated alias of `--store`).
    KvRedis,
}

impl std::fmt::Display for StoreFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreFlag::Store => "--store (AGENT_HOST_STORE)",
            StoreFlag::KvRedis => "--kv-redis (AGENT_HOST_KV_REDIS)",
        })
    }
}

const ALLOWED: &str = "allowed: redis://[user@]host[:port][/db], rediss://… (TLS), \
                       or no --store for the embedded store under --state-dir";
const PASSWORD_FLAG: &str = "--store-password-file (AGENT_HOST_STORE_PASSWORD_FILE)";

/// A store setting that cannot be used. No variant carries a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Both the flag and its deprecated alias were given.
    #[error(
        "--store (AGENT_HOST_STORE) and --kv-redis (AGENT_HOST_KV_REDIS) are both set; \
         --kv-redis is a deprecated alias of --store: keep only --store"
    )]
    BothFlags,
    /// Not a URL, or a URL the Redis client cannot use.
    #[error("{flag} {url}: {problem}; {ALLOWED}")]
    BadUrl {
        /// The flag that gave it.
        flag: StoreFlag,
        /// The URL without its password.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A password file without a Redis store to use it for.
    #[error(
        "{PASSWORD_FLAG} is set but no Redis store is: it needs --store redis://… or rediss://…"
    )]
    PasswordWithoutRedis,
    /// The URL carries a password and a password file is given as well.
    #[error(
        "{flag} {url}: the URL carries a password and {PASSWORD_FLAG} gives another; \
         give the password in one place, preferably the file"
    )]
    TwoPasswords {
        /// The flag that gave the URL.
        flag: StoreFlag,
        /// The URL without its password.
        url: String,
    },
    /// The password file cannot be used.
    #[error("{PASSWORD_FLAG} {path}: {problem}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its contents).
        problem: String,
    },
}

impl Store {
    /// The store the operator chose: `--store` or its deprecated alias
    /// `--kv-redis` (not both), plus an optional password file.
    pub fn from_flags(
        store: Option<&str>,
        kv_redis: Option<&str>,
        password_file: Option<&Path>,
    ) -> Result<Store, StoreError> {
        let (url, flag) = match (store, kv_redis) {
            (Some(_), Some(_)) => return Err(StoreError::BothFlags),
            (Some(url), None) => (url, StoreFlag::Store),
            (None, Some(url)) => (url, StoreFlag::KvRedis),
            (None, None) => {
                return match password_file {
                    Some(_) => Err(StoreError::PasswordWithoutRedis),
                    None => Ok(Store::Embedded),
                }
            }
        };
        let mut redis = RedisStore::parse(url, flag)?;
        if let Some(path) = password_file {
            if redis.info.redis_settings().password().is_some() {
                return Err(StoreError::TwoPasswords {
                    flag,
                    url: redis.shown,
                });
            }
            let password = read_password_file(path)?;
            redis.info = redis
                .info
                .clone()
                .set_redis_settings(redis.info.redis_settings().clone().set_password(password));
        }
        Ok(Store::Redis(redis))
    }

    /// A Redis store at `url` (no password file), e.g. for tests and embedders.
    pub fn redis(url: &str) -> Result<Store, StoreError> {
        RedisStore::parse(url, StoreFlag::Store).map(Store::Redis)
    }
}

impl RedisStore {
    fn parse(url: &str, flag: StoreFlag) -> Result<Self, StoreError> {
        let bad = |shown: String, problem: String| StoreError::BadUrl {
            flag,
            url: shown,
            problem,
        };
        let parsed = url::Url::parse(url)
            .map_err(|e| bad("<not shown>".into(), format!("not a URL ({e})")))?;
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        let shown = shown.to_string();
        match parsed.scheme() {
            "redis" | "rediss" => {}
            other => {
                return Err(bad(
                    shown,
                    format!("the scheme {other}:// is not a Redis store"),
                ))
            }
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad(shown, "no host".into()));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad(shown, "a query or fragment is not supported".into()));
        }
        let info = redis::IntoConnectionInfo::into_connection_info(parsed)
            .map_err(|e| bad(shown.clone(), e.to_string()))?;
        Ok(Self { info, shown })
    }

    /// Connection settings, password included: for the Redis client only.
    pub fn connection_info(&self) -> redis::ConnectionInfo {
        self.info.clone()
    }

    /// The URL with any password replaced by `***`: safe to log.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Whether connections use TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        matches!(self.info.addr(), redis::ConnectionAddr::TcpTls { .. })
    }

    /// Connects, authenticates and sends PING within [`CHECK_TIMEOUT`], so that
    /// a wrong address, certificate or password stops the host at start
    /// instead of failing its first invocations.
    pub fn check(&self) -> Result<(), String> {
        let describe = |e: redis::RedisError| self.describe(e);
        let client = redis::Client::open(self.connection_info()).map_err(describe)?;
        let mut conn = client
            .get_connection_with_timeout(CHECK_TIMEOUT)
            .map_err(describe)?;
        conn.set_read_timeout(Some(CHECK_TIMEOUT))
            .map_err(describe)?;
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .map(drop)
            .map_err(describe)
    }

    /// `e`, saying which setting to fix when Redis refused the credentials.
    fn describe(&self, e: redis::RedisError) -> String {
        let refused = e.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"));
        match (refused, self.info.redis_settings().password()) {
            (false, _) => e.to_string(),
            (true, Some(_)) => format!(
                "it refused the password (from {PASSWORD_FLAG} or the URL) \
                 with this user: {e}"
            ),
            (true, None) => format!("it requires a password: set {PASSWORD_FLAG} ({e})"),
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = self.info.redis_settings().password().map(|_| "***");
        f.debug_struct("RedisStore")
            .field("url", &self.shown)
            .field("password", &password)
            .finish()
    }
}

/// The password in `path`: UTF-8, at most [`MAX_PASSWORD_FILE_BYTES`], one
/// trailing newline (`\n` or `\r\n`, as editors and `echo` leave) trimmed.
fn read_password_file(path: &Path) -> Result<String, StoreError> {
    let problem = |problem: String| StoreError::PasswordFile {
        path: path.to_path_buf(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| problem(format!("cannot read it: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| problem(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE_BYTES {
        return Err(problem(format!(
            "larger than {MAX_PASSWORD_FILE_BYTES} bytes: not a password file"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| problem("not UTF-8 text".into()))?;
    let password = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(problem("it is empty".into()));
    }
    Ok(password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, contents).unwrap();
        f
    }

    fn redis(store: Store) -> RedisStore {
        match store {
            Store::Redis(r) => r,
            Store::Embedded => panic!("embedded"),
        }
    }

    #[test]
    fn no_flag_is_the_embedded_store() {
        assert!(matches!(
            Store::from_flags(None, None, None).unwrap(),
            Store::Embedded
        ));
    }

    #[test]
    fn the_password_file_is_read_with_one_trailing_newline_trimmed() {
        for (contents, expected) in [
            (&b"s3cret\n"[..], "s3cret"),
            (b"s3cret\r\n", "s3cret"),
            (b"s3cret", "s3cret"),
            (b" s3cret \n\n", " s3cret \n"),
        ] {
            let f = file(contents);
            let store = redis(
                Store::from_flags(Some("rediss://cache.example:6380/2"), None, Some(f.path()))
                    .unwrap(),
            );
            let info = store.connection_info();
            assert_eq!(info.redis_settings().password(), Some(expected));
            assert_eq!(info.redis_settings().db(), 2);
            assert!(store.tls());
        }
    }

    #[test]
    fn the_password_is_in_no_debug_output_or_shown_url() {
        let f = file(b"s3cret\n");
        let store = Store::from_flags(Some("redis://app@h:1/0"), None, Some(f.path())).unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains(r#"password: Some("***")"#), "{shown}");
        let inline = redis(Store::redis("redis://:hunter2@h:1/0").unwrap());
        assert!(!inline.url().contains("hunter2"), "{}", inline.url());
        assert!(!format!("{inline:?}").contains("hunter2"));
        assert_eq!(
            inline.connection_info().redis_settings().password(),
            Some("hunter2")
        );
    }

    #[test]
    fn a_url_with_a_password_and_a_password_file_is_refused() {
        let f = file(b"from-file\n");
        let err = Store::from_flags(Some("redis://:in-url@h:1/0"), None, Some(f.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--store-password-file"), "{err}");
        assert!(
            !err.contains("in-url") && !err.contains("from-file"),
            "{err}"
        );
    }

    #[test]
    fn an_unusable_password_file_is_refused_naming_the_flag_and_the_problem() {
        let missing = Path::new("/nonexistent/agent-host/password");
        let big = file(&vec![b'x'; MAX_PASSWORD_FILE_BYTES as usize + 1]);
        let empty = file(b"\n");
        let binary = file(&[0xff, 0xfe]);
        for (path, problem) in [
            (missing, "cannot read it"),
            (big.path(), "larger than 4096 bytes"),
            (empty.path(), "it is empty"),
            (binary.path(), "not UTF-8"),
        ] {
            let err = Store::from_flags(Some("redis://h:1"), None, Some(path))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--store-password-file") && err.contains(problem),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_urls_are_refused_naming_the_flag_and_what_is_allowed() {
        for (flag, url, problem) in [
            (StoreFlag::Store, "http://h:6379", "scheme http://"),
            (
                StoreFlag::KvRedis,
                "unix:///run/redis.sock",
                "scheme unix://",
            ),
            (StoreFlag::Store, "localhost:6379", "scheme localhost://"),
            (StoreFlag::Store, "not a url", "not a URL"),
            (StoreFlag::Store, "redis://h:1/x", "database"),
            (StoreFlag::Store, "redis://h:1/0?protocol=resp3", "query"),
        ] {
            let (store, kv) = match flag {
                StoreFlag::Store => (Some(url), None),
                StoreFlag::KvRedis => (None, Some(url)),
            };
            let err = Store::from_flags(store, kv, None).unwrap_err().to_string();
            assert!(
                err.contains(&flag.to_string()) && err.contains(problem),
                "{url}: {err}"
            );
            assert!(err.contains("rediss://"), "says what is allowed: {err}");
        }
    }

    #[test]
    fn both_flags_or_a_password_without_redis_are_refused() {
        let err = Store::from_flags(Some("redis://a"), Some("redis://b"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--store") && err.contains("--kv-redis"),
            "{err}"
        );
        let f = file(b"pw\n");
        let err = Store::from_flags(None, None, Some(f.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--store-password-file"), "{err}");
    }
}
