//! Registry credentials from a Docker `config.json` (the `.dockerconfigjson`
//! of a `kubernetes.io/dockerconfigjson` Secret): operator-owned, mounted into
//! the host, never taken from an Agent.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;

/// Largest credentials file read, bytes.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Username and password per registry (`host[:port]`). `Debug` shows only the registries.
#[derive(Clone, Default)]
pub struct Credentials {
    by_registry: HashMap<String, (String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_registry.keys()).finish()
    }
}

#[derive(serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Credentials {
    /// Reads `path`; every error names the file and the entry.
    pub fn from_file(path: &Path) -> Result<Credentials, String> {
        let err = |m: String| format!("{}: {m}", path.display());
        let text = crate::config::read_bounded(path, MAX_FILE_BYTES).map_err(|e| match e {
            crate::config::FileReadError::Io(e) => err(e.to_string()),
            too_large => err(format!("{too_large}; not a Docker config.json")),
        })?;
        Self::parse(&text).map_err(err)
    }

    /// Parses the JSON of a Docker `config.json`.
    pub fn parse(json: &[u8]) -> Result<Credentials, String> {
        let file: ConfigFile = serde_json::from_slice(json).map_err(|e| {
            format!(
                "not a Docker config.json ({{\"auths\": {{REGISTRY: {{\"auth\": ...}}}}}}): {e}"
            )
        })?;
        let mut by_registry = HashMap::new();
        for (key, entry) in file.auths {
            let registry = registry_of(&key);
            let pair = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| format!("auths.{key}.auth: not base64 of USER:PASSWORD"))?;
                    let (user, password) = decoded
                        .split_once(':')
                        .ok_or_else(|| format!("auths.{key}.auth: not base64 of USER:PASSWORD"))?;
                    (user.to_owned(), password.to_owned())
                }
                (_, Some(user), Some(password)) => (user, password),
                _ => {
                    return Err(format!(
                        "auths.{key}: neither auth nor username and password (credential helpers and identity tokens are not supported)"
                    ))
                }
            };
            by_registry.insert(registry, pair);
        }
        Ok(Credentials { by_registry })
    }

    /// The `Authorization` header value for `registry`, if it has credentials.
    pub fn basic(&self, registry: &str) -> Option<String> {
        self.by_registry
            .get(registry)
            .map(|(user, password)| super::client::basic(user, password))
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `host:port` stays.
fn registry_of(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_and_username_forms_are_read_and_urls_normalised() {
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        let creds = Credentials::parse(
            format!(r#"{{"auths": {{"https://r.example.com/v1/": {{"auth": "{auth}"}}, "127.0.0.1:5000": {{"username": "a", "password": "b"}}}}}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            creds.basic("r.example.com"),
            Some(crate::oci::client::basic("u", "p:w"))
        );
        assert_eq!(
            creds.basic("127.0.0.1:5000"),
            Some(crate::oci::client::basic("a", "b"))
        );
        assert_eq!(creds.basic("other"), None);
        assert!(!format!("{creds:?}").contains("p:w"));
    }

    #[test]
    fn malformed_entries_are_named() {
        let err = Credentials::parse(br#"{"auths": {"r": {"auth": "!!"}}}"#).unwrap_err();
        assert!(err.contains("auths.r.auth"), "{err}");
        let err = Credentials::parse(br#"{"auths": {"r": {"identitytoken": "x"}}}"#).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
        let err = Credentials::parse(b"\"text\"").unwrap_err();
        assert!(err.contains("not a Docker config.json"), "{err}");
    }
}
