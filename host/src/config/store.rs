//! Where the host keeps its state: the operator's `--store` choice, its
//! password file, and the errors that name the flag at fault.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest password file read: a Redis password is at most a few hundred
/// bytes; a larger file is a wrong path (a log, a disk image), not a secret.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// Longest wait for the startup check of a Redis store ([`RedisSettings::check`]).
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
    Redis(RedisSettings),
}

/// A Redis server or Cluster: its URL without the password, and the
/// password kept apart so that neither `Debug` nor an error message prints it.
#[derive(Clone)]
pub struct RedisSettings {
    /// One server, or a Cluster's seed nodes; all with the same credentials.
    nodes: Vec<redis::ConnectionInfo>,
    cluster: bool,
    /// The URL as given, with any password replaced by `***`.
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
                       redis+cluster://[user@]host:port[,host:port…] or rediss+cluster://… \
                       (a Redis Cluster's seed nodes), or no --store for the embedded \
                       store under --state-dir";
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
        let mut redis = RedisSettings::parse(url, flag)?;
        if let Some(path) = password_file {
            if redis.password().is_some() {
                return Err(StoreError::TwoPasswords {
                    flag,
                    url: redis.shown,
                });
            }
            let password = read_password_file(path)?;
            for node in &mut redis.nodes {
                let settings = node.redis_settings().clone().set_password(&password);
                *node = node.clone().set_redis_settings(settings);
            }
        }
        Ok(Store::Redis(redis))
    }

    /// A Redis store at `url` (no password file), e.g. for tests and embedders.
    pub fn redis(url: &str) -> Result<Store, StoreError> {
        RedisSettings::parse(url, StoreFlag::Store).map(Store::Redis)
    }
}

impl RedisSettings {
    /// `scheme://[user[:password]@]hosts[/db]`; several hosts only for a Cluster.
    fn parse(url: &str, flag: StoreFlag) -> Result<Self, StoreError> {
        let bad = |shown: &str, problem: &str| StoreError::BadUrl {
            flag,
            url: shown.to_owned(),
            problem: problem.to_owned(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("<not shown>", "not a URL (no scheme://)"));
        };
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let shown_user = userinfo.map(|u| match u.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{u}@"),
        });
        let shown = format!(
            "{scheme}://{}{hosts}{}",
            shown_user.unwrap_or_default(),
            if db.is_empty() {
                String::new()
            } else {
                format!("/{db}")
            }
        );
        let (cluster, node_scheme) = match scheme {
            "redis" => (false, "redis"),
            "rediss" => (false, "rediss"),
            "redis+cluster" => (true, "redis"),
            "rediss+cluster" => (true, "rediss"),
            other => {
                let problem = format!("the scheme {other}:// is not a Redis store");
                return Err(bad(&shown, &problem));
            }
        };
        if rest.contains(['?', '#']) {
            return Err(bad(&shown, "a query or fragment is not supported"));
        }
        if hosts.contains(',') && !cluster {
            return Err(bad(
                &shown,
                "several hosts are a Redis Cluster: use redis+cluster://",
            ));
        }
        if cluster && !matches!(db, "" | "0") {
            return Err(bad(&shown, "a Redis Cluster has database 0 only"));
        }
        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            if host.is_empty() || host.starts_with(':') {
                return Err(bad(&shown, "no host"));
            }
            let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
            let node = url::Url::parse(&format!("{node_scheme}://{userinfo}{host}/{db}"))
                .map_err(|e| bad(&shown, &format!("not a URL ({e})")))?;
            let info = redis::IntoConnectionInfo::into_connection_info(node)
                .map_err(|e| bad(&shown, &e.to_string()))?;
            nodes.push(info);
        }
        Ok(Self {
            nodes,
            cluster,
            shown,
        })
    }

    /// Connection settings of the server (a Cluster's first seed node),
    /// password included: for the Redis client only.
    pub fn connection_info(&self) -> redis::ConnectionInfo {
        self.nodes[0].clone()
    }

    /// The server, or a Cluster's seed nodes (for `ClusterClient::builder`).
    pub fn nodes(&self) -> &[redis::ConnectionInfo] {
        &self.nodes
    }

    /// Whether this is a Redis Cluster (`redis+cluster://`, `rediss+cluster://`).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The URL with any password replaced by `***`: safe to log.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Whether connections use TLS (`rediss://`, `rediss+cluster://`).
    pub fn tls(&self) -> bool {
        matches!(self.nodes[0].addr(), redis::ConnectionAddr::TcpTls { .. })
    }

    fn password(&self) -> Option<&str> {
        self.nodes[0].redis_settings().password()
    }

    /// Connects, authenticates and sends PING within [`CHECK_TIMEOUT`], so that
    /// a wrong address, certificate or password stops the host at start
    /// instead of failing its first invocations.
    pub fn check(&self) -> Result<(), String> {
        let describe = |e: redis::RedisError| self.describe(e);
        let ping = redis::cmd("PING");
        if self.cluster {
            let client = redis::cluster::ClusterClient::builder(self.nodes.clone())
                .connection_timeout(CHECK_TIMEOUT)
                .response_timeout(CHECK_TIMEOUT)
                .build()
                .map_err(describe)?;
            let mut conn = client.get_connection().map_err(describe)?;
            return ping.query::<String>(&mut conn).map(drop).map_err(describe);
        }
        let client = redis::Client::open(self.connection_info()).map_err(describe)?;
        let mut conn = client
            .get_connection_with_timeout(CHECK_TIMEOUT)
            .map_err(describe)?;
        conn.set_read_timeout(Some(CHECK_TIMEOUT))
            .map_err(describe)?;
        ping.query::<String>(&mut conn).map(drop).map_err(describe)
    }

    /// `e`, saying which setting to fix when Redis refused the credentials.
    fn describe(&self, e: redis::RedisError) -> String {
        // A Cluster client reports a node's refusal inside an I/O error's text.
        let text = e.to_string();
        let refused = e.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
            || text.contains("WRONGPASS")
            || text.contains("NOAUTH");
        match (refused, self.password()) {
            (false, _) => text,
            (true, Some(_)) => format!(
                "it refused the password (from {PASSWORD_FLAG} or the URL) \
                 with this user: {e}"
            ),
            (true, None) => format!("it requires a password: set {PASSWORD_FLAG} ({e})"),
        }
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.shown)
            .field("cluster", &self.cluster)
            .field("password", &self.password().map(|_| "***"))
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
    let bytes = super::read_bounded(path, MAX_PASSWORD_FILE_BYTES).map_err(|e| match e {
        super::FileReadError::Io(e) => problem(format!("cannot read it: {e}")),
        too_large => problem(format!("{too_large}: not a password file")),
    })?;
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

    fn redis(store: Store) -> RedisSettings {
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
            (StoreFlag::Store, "localhost:6379", "not a URL"),
            (StoreFlag::Store, "redis://:6379", "no host"),
            (StoreFlag::Store, "redis://a:1,b:2", "use redis+cluster://"),
            (
                StoreFlag::Store,
                "redis+cluster://a:1,b:2/1",
                "database 0 only",
            ),
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
    fn a_cluster_url_gives_every_seed_node_the_user_password_and_tls() {
        let f = file(b"s3cret\n");
        let store = redis(
            Store::from_flags(
                Some("rediss+cluster://app@n1.example:7000,10.0.0.2:7001"),
                None,
                Some(f.path()),
            )
            .unwrap(),
        );
        assert!(store.is_cluster() && store.tls());
        let nodes: Vec<String> = store.nodes().iter().map(|n| n.addr().to_string()).collect();
        assert_eq!(nodes, ["n1.example:7000", "10.0.0.2:7001"]);
        for node in store.nodes() {
            assert_eq!(node.redis_settings().username(), Some("app"));
            assert_eq!(node.redis_settings().password(), Some("s3cret"));
        }
        let inline = redis(Store::redis("redis+cluster://:pw@a:1,b:2").unwrap());
        assert_eq!(inline.url(), "redis+cluster://:***@a:1,b:2");
        assert!(!inline.tls() && inline.nodes().len() == 2);
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
