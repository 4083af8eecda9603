//! Link-time check: every import of a component is bound to a capability the
//! manifest grants, bound to something inert, or refused, before any instance
//! exists. `agent-host check` prints this table.

use std::fmt;

use super::{Capability, Grants};
use crate::manifest::Limits;

/// What one import of a component is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportBinding {
    /// The import's full name, e.g. `wasi:http/outgoing-handler@0.2.0`.
    pub import: String,
    /// The decision.
    pub binding: Binding,
}

/// The decision for one import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// Linked; `detail` says what the manifest grants through it.
    Granted {
        /// The capability.
        capability: Capability,
        /// What is reachable through it.
        detail: String,
    },
    /// Linked, but grants nothing by itself (clocks, random, empty environment...).
    Inert {
        /// What it does.
        detail: String,
    },
    /// Not linked: the component is refused at load.
    Refused {
        /// Why, and what would allow it.
        reason: String,
    },
}

impl fmt::Display for ImportBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.binding {
            Binding::Granted { capability, detail } => {
                write!(
                    f,
                    "{:<42} granted ({}): {detail}",
                    self.import,
                    capability.as_str()
                )
            }
            Binding::Inert { detail } => {
                write!(f, "{:<42} linked, grants nothing: {detail}", self.import)
            }
            Binding::Refused { reason } => write!(f, "{:<42} REFUSED: {reason}", self.import),
        }
    }
}

/// Binds every import in `imports` against the agent's grants.
pub fn bind_imports<'a>(
    imports: impl IntoIterator<Item = &'a str>,
    grants: &Grants,
    limits: &Limits,
) -> Vec<ImportBinding> {
    imports
        .into_iter()
        .map(|import| ImportBinding {
            import: import.to_string(),
            binding: bind(import, grants, limits),
        })
        .collect()
}

fn bind(import: &str, grants: &Grants, limits: &Limits) -> Binding {
    let interface = import.split('@').next().unwrap_or(import);
    let (package, name) = interface.split_once('/').unwrap_or((interface, ""));
    let inert = |detail: &str| Binding::Inert {
        detail: detail.to_string(),
    };
    let granted = |capability, detail: String| Binding::Granted { capability, detail };
    match (package, name) {
        ("wasi:cli", "environment") if grants.env.is_empty() => inert("empty environment, no arguments"),
        ("wasi:cli", "environment") => granted(
            Capability::Env,
            format!("{} declared variable(s): {}", grants.env.len(), grants.env.names().collect::<Vec<_>>().join(", ")),
        ),
        ("wasi:cli", "exit") => inert("ends the invocation"),
        ("wasi:cli", "stdin") => inert("always empty"),
        ("wasi:cli", "stdout" | "stderr") => granted(
            Capability::Stdio,
            format!("captured to the host log, {} per invocation (maxLogBytes)", limits.max_log_bytes),
        ),
        ("wasi:cli", n) if n.starts_with("terminal-") => inert("no terminal is attached"),
        ("wasi:clocks", _) => inert("reads clocks"),
        ("wasi:random", _) => inert("random bytes"),
        ("wasi:io", _) => inert("streams and polling on resources granted elsewhere"),
        ("wasi:filesystem", _) if grants.fs.mounts().is_empty() => inert("no preopened directories"),
        ("wasi:filesystem", _) => granted(
            Capability::Filesystem,
            grants
                .fs
                .mounts()
                .iter()
                .map(|m| format!("{} ({})", m.guest_path, if m.read_only { "read-only" } else { "read-write" }))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("wasi:http", "types" | "outgoing-handler") if grants.http.is_empty() => Binding::Refused {
            reason: "outgoing HTTP is not granted; declare the URLs the agent may call in spec.capabilities.http".into(),
        },
        ("wasi:http", "types" | "outgoing-handler") => granted(
            Capability::Http,
            format!(
                "{} (max {} requests per invocation)",
                grants.http.rules().iter().map(|r| r.display.as_str()).collect::<Vec<_>>().join("; "),
                limits.max_http_requests
            ),
        ),
        ("wasi:sockets", _) => Binding::Refused {
            reason: "raw sockets are never linked; use wasi:http with spec.capabilities.http".into(),
        },
        ("agent-host:agent", "log") => granted(
            Capability::Log,
            format!("structured records to the host log, {} per invocation (maxLogBytes)", limits.max_log_bytes),
        ),
        ("agent-host:agent", "types") => inert("type definitions only"),
        ("wasi:keyvalue", "store" | "atomics" | "batch") => match &grants.kv {
            None => Binding::Refused {
                reason: "key-value state is not granted; declare spec.capabilities.keyValue".into(),
            },
            Some(kv) => granted(
                Capability::KeyValue,
                format!(
                    "{}, at most {} bytes, committed when run returns ok",
                    if kv.buckets.is_empty() { "any bucket".to_string() } else { format!("buckets {}", kv.buckets.join(", ")) },
                    kv.max_bytes
                ),
            ),
        },
        ("agent-host:agent", "llm") => match &grants.llm {
            None => Binding::Refused {
                reason: "model access is not granted; declare spec.capabilities.llm".into(),
            },
            Some(g) => granted(
                Capability::Llm,
                format!(
                    "{:?} model {} at {}, {} tokens and {} requests per invocation",
                    g.endpoint.provider, g.endpoint.model, g.endpoint.base, g.max_tokens_per_invocation, g.max_requests_per_invocation
                ),
            ),
        },
        _ => Binding::Refused { reason: "not provided by agent-host; the agent world is defined in wit/world.wit".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::{env::EnvGrant, fs::FsGrant, http::HttpGrant};

    fn grants(http: &str) -> Grants {
        let rules: Vec<crate::manifest::HttpRule> = serde_norway::from_str(http).unwrap();
        Grants {
            env: EnvGrant::configure(&[], std::path::Path::new("/nonexistent")).unwrap(),
            fs: FsGrant::default(),
            http: std::sync::Arc::new(HttpGrant::configure(&rules)),
            kv: None,
            llm: None,
            secrets: Default::default(),
        }
    }

    fn binding(import: &str, g: &Grants) -> Binding {
        bind(import, g, &Limits::default())
    }

    #[test]
    fn http_imports_are_refused_without_a_grant_and_bound_with_one() {
        let none = grants("[]");
        assert!(matches!(
            binding("wasi:http/outgoing-handler@0.2.0", &none),
            Binding::Refused { .. }
        ));
        let some = grants(r#"[{url: "http://a.test/", methods: [GET]}]"#);
        assert!(matches!(
            binding("wasi:http/outgoing-handler@0.2.0", &some),
            Binding::Granted {
                capability: Capability::Http,
                ..
            }
        ));
    }

    #[test]
    fn key_value_imports_are_refused_without_a_grant_and_bound_with_one() {
        let mut g = grants("[]");
        for import in [
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue/atomics@0.2.0-draft",
            "wasi:keyvalue/batch@0.2.0-draft",
        ] {
            assert!(
                matches!(binding(import, &g), Binding::Refused { .. }),
                "{import}"
            );
        }
        g.kv = Some(crate::cap::kv::KvGrant {
            scope: crate::cap::kv::Scope {
                namespace: String::new(),
                agent: "a".into(),
            },
            buckets: vec!["seen".into()],
            max_bytes: 1024,
        });
        match binding("wasi:keyvalue/store@0.2.0-draft", &g) {
            Binding::Granted { capability, detail } => {
                assert_eq!(capability, Capability::KeyValue);
                assert!(
                    detail.contains("seen") && detail.contains("1024"),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sockets_and_unknown_interfaces_are_refused() {
        let g = grants("[]");
        assert!(matches!(
            binding("wasi:sockets/tcp@0.2.0", &g),
            Binding::Refused { .. }
        ));
        assert!(matches!(
            binding("example:evil/backdoor", &g),
            Binding::Refused { .. }
        ));
    }

    #[test]
    fn std_interfaces_are_inert_without_grants() {
        let g = grants("[]");
        for import in [
            "wasi:cli/environment@0.2.3",
            "wasi:filesystem/preopens@0.2.3",
            "wasi:clocks/monotonic-clock@0.2.3",
        ] {
            assert!(
                matches!(binding(import, &g), Binding::Inert { .. }),
                "{import}"
            );
        }
    }
}
