//! The trust policy (`--trust-policy FILE`): operator-owned, never part of an
//! Agent. It says, per registry/repository pattern, whether a component must
//! carry a signature by one of the listed keys, whether tags may stand for
//! digests, and, per signer, the most a component may be granted.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::signature::{read_key_file, PublicKey};
use crate::manifest::reference::Reference;
use crate::manifest::{Capabilities, LlmProvider};

/// Largest policy file read, bytes.
const MAX_POLICY_BYTES: u64 = 1 << 20;
/// The `apiVersion` and `kind` a policy file declares.
const API_VERSION: &str = "agent-host.dev/v1alpha1";
const KIND: &str = "TrustPolicy";
/// The capability sections a ceiling may name (the manifest's own spelling).
pub const GRANTABLE: [&str; 6] = ["http", "filesystem", "env", "keyValue", "llm", "mcp"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    api_version: String,
    kind: String,
    #[serde(default)]
    keys: Vec<KeyFile>,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyFile {
    name: String,
    public_key: Option<String>,
    public_key_file: Option<PathBuf>,
    ceiling: Option<Ceiling>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleFile {
    repositories: String,
    signatures: Mode,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    allow_tags: bool,
    ceiling: Option<Ceiling>,
}

/// Whether a rule's components must be signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A signature by one of the rule's keys over the pulled digest.
    Require,
    /// No signature checked; the rule's own ceiling applies.
    AllowUnsigned,
}

/// The most a component may be granted. Absent fields do not limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ceiling {
    /// Capability sections that may be granted (`http`, `filesystem`, `env`, `keyValue`, `llm`, `mcp`).
    pub capabilities: Option<Vec<String>>,
    /// Whether the manifest may reference Secrets (`secretKeyRef`, `apiKeySecretRef`, MCP `credentials`).
    pub secrets: Option<bool>,
    /// Host patterns HTTP rules, the model endpoint and MCP servers may name
    /// (`api.example.com`, `*.svc.cluster.local`).
    pub egress: Option<Vec<String>>,
}

impl Ceiling {
    /// One line per limit, for `agent-host check`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = &self.capabilities {
            out.push(format!(
                "capabilities: {}",
                if c.is_empty() {
                    "none".into()
                } else {
                    c.join(", ")
                }
            ));
        }
        if let Some(s) = self.secrets {
            out.push(format!("secrets: {}", if s { "allowed" } else { "none" }));
        }
        if let Some(e) = &self.egress {
            out.push(format!(
                "egress: {}",
                if e.is_empty() {
                    "none".into()
                } else {
                    e.join(", ")
                }
            ));
        }
        if out.is_empty() {
            out.push("none beyond the manifest".into());
        }
        out
    }

    /// Refuses the first grant of `caps` above this ceiling, naming it and `rule`
    /// (where the ceiling is written, e.g. `keys[1].ceiling`) and `who` (the signer).
    pub fn check(&self, caps: &Capabilities, who: &str, rule: &str) -> Result<(), String> {
        let refuse = |grant: String, what: &str, field: &str| {
            Err(format!("{grant}: {what}, above the ceiling for components {who} (trust policy {rule}.{field})"))
        };
        if let Some(allowed) = &self.capabilities {
            let present = [
                ("http", !caps.http.is_empty()),
                ("filesystem", !caps.filesystem.is_empty()),
                ("env", !caps.env.is_empty()),
                ("keyValue", caps.key_value.is_some()),
                ("llm", caps.llm.is_some()),
                ("mcp", !caps.mcp.is_empty()),
            ];
            for (kind, granted) in present {
                if granted && !allowed.iter().any(|a| a == kind) {
                    return refuse(
                        format!("spec.capabilities.{kind}"),
                        &format!("granted, but only [{}] may be", allowed.join(", ")),
                        "capabilities",
                    );
                }
            }
        }
        if self.secrets == Some(false) {
            for (i, var) in caps.env.iter().enumerate() {
                if var.value_from.is_some() {
                    return refuse(
                        format!("spec.capabilities.env[{i}].valueFrom.secretKeyRef"),
                        "reads a Secret",
                        "secrets",
                    );
                }
            }
            if caps
                .llm
                .as_ref()
                .is_some_and(|l| l.api_key_secret_ref.is_some())
            {
                return refuse(
                    "spec.capabilities.llm.apiKeySecretRef".into(),
                    "reads a Secret",
                    "secrets",
                );
            }
            if let Some(i) = caps.mcp.iter().position(|s| s.credentials.is_some()) {
                return refuse(
                    format!("spec.capabilities.mcp[{i}].credentials"),
                    "reads a Secret",
                    "secrets",
                );
            }
        }
        if let Some(patterns) = &self.egress {
            for (i, rule_spec) in caps.http.iter().enumerate() {
                let host = rule_spec.url.host();
                if !patterns.iter().any(|p| host_matches(p, host)) {
                    return refuse(
                        format!("spec.capabilities.http[{i}].url"),
                        &format!("reaches {host}, not one of [{}]", patterns.join(", ")),
                        "egress",
                    );
                }
            }
            if let Some(llm) = &caps.llm {
                let host = match (&llm.endpoint, llm.provider) {
                    (Some(e), _) => e.host().to_owned(),
                    (None, LlmProvider::Openai) => "api.openai.com".into(),
                    (None, LlmProvider::Anthropic) => "api.anthropic.com".into(),
                };
                if !patterns.iter().any(|p| host_matches(p, &host)) {
                    return refuse(
                        "spec.capabilities.llm.endpoint".into(),
                        &format!("reaches {host}, not one of [{}]", patterns.join(", ")),
                        "egress",
                    );
                }
            }
            for (i, server) in caps.mcp.iter().enumerate() {
                let host = server.url.host();
                if !patterns.iter().any(|p| host_matches(p, host)) {
                    return refuse(
                        format!("spec.capabilities.mcp[{i}].url"),
                        &format!("reaches {host}, not one of [{}]", patterns.join(", ")),
                        "egress",
                    );
                }
            }
        }
        Ok(())
    }
}

/// `*.example.com` matches any subdomain (not the apex); otherwise exact.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// A trusted key.
#[derive(Clone, Debug)]
pub struct Key {
    /// `keys[].name`.
    pub name: String,
    /// The P-256 public key.
    pub key: PublicKey,
    /// What components it signed may be granted.
    pub ceiling: Option<Ceiling>,
    /// Where it is written, `keys[i]`.
    pub at: String,
}

/// One rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `registry/repository` glob.
    pub pattern: String,
    /// Whether a signature is required.
    pub mode: Mode,
    /// The keys whose signature is accepted.
    pub keys: Vec<String>,
    /// Whether a tag may stand for a digest.
    pub allow_tags: bool,
    /// The ceiling of unsigned components (allow-unsigned rules).
    pub ceiling: Option<Ceiling>,
    /// Where it is written, `rules[i]`.
    pub at: String,
}

/// A parsed, checked trust policy.
#[derive(Clone, Debug)]
pub struct TrustPolicy {
    /// Where it was read from.
    pub file: PathBuf,
    /// Trusted keys.
    pub keys: Vec<Key>,
    /// Rules, first match wins.
    pub rules: Vec<Rule>,
}

impl TrustPolicy {
    /// Reads and checks `path`: every key readable and P-256, every rule's keys
    /// listed, every pattern and ceiling well-formed. Errors name the field.
    pub fn from_file(path: &Path) -> Result<TrustPolicy, String> {
        let err = |m: String| format!("{}: {m}", path.display());
        let bytes =
            crate::config::read_bounded(path, MAX_POLICY_BYTES).map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")), path).map_err(err)
    }

    fn parse(text: &str, base: &Path, path: &Path) -> Result<TrustPolicy, String> {
        let de = serde_norway::Deserializer::from_str(text);
        let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            if at == "." {
                e.inner().to_string()
            } else {
                format!("{at}: {}", e.inner())
            }
        })?;
        if file.api_version != API_VERSION || file.kind != KIND {
            return Err(format!(
                "apiVersion/kind: expected {API_VERSION} {KIND}, found {} {}",
                file.api_version, file.kind
            ));
        }
        let mut keys: Vec<Key> = Vec::new();
        for (i, k) in file.keys.into_iter().enumerate() {
            let at = format!("keys[{i}]");
            if k.name.is_empty() || keys.iter().any(|o| o.name == k.name) {
                return Err(format!("{at}.name: must be non-empty and unique"));
            }
            let pem = match (k.public_key, k.public_key_file) {
                (Some(pem), None) => pem.into_bytes(),
                (None, Some(file)) => read_key_file(&base.join(file))
                    .map_err(|e| format!("{at}.publicKeyFile: {e}"))?,
                _ => {
                    return Err(format!(
                        "{at}: set exactly one of publicKey (PEM) or publicKeyFile"
                    ))
                }
            };
            let key = PublicKey::from_pem(&pem).map_err(|e| format!("{at}: {e}"))?;
            if let Some(c) = &k.ceiling {
                check_ceiling(c, &format!("{at}.ceiling"))?;
            }
            keys.push(Key {
                name: k.name,
                key,
                ceiling: k.ceiling,
                at,
            });
        }
        let mut rules = Vec::new();
        for (i, r) in file.rules.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            if r.repositories.is_empty() || r.repositories.contains("***") {
                return Err(format!("{at}.repositories: a pattern such as registry.example.com/agents/** (* within a path segment, ** across)"));
            }
            for name in &r.keys {
                if !keys.iter().any(|k| &k.name == name) {
                    return Err(format!(
                        "{at}.keys: {name} is not a key of this policy (keys[].name)"
                    ));
                }
            }
            if r.signatures == Mode::Require && r.keys.is_empty() {
                return Err(format!(
                    "{at}.keys: a rule that requires signatures lists the keys it trusts"
                ));
            }
            if r.signatures == Mode::AllowUnsigned && !r.keys.is_empty() {
                return Err(format!("{at}.keys: allow-unsigned checks no signature; list keys only with signatures: require"));
            }
            if r.signatures == Mode::Require && r.ceiling.is_some() {
                return Err(format!("{at}.ceiling: with signatures: require the signer's key carries the ceiling (keys[].ceiling)"));
            }
            if let Some(c) = &r.ceiling {
                check_ceiling(c, &format!("{at}.ceiling"))?;
            }
            rules.push(Rule {
                pattern: r.repositories,
                mode: r.signatures,
                keys: r.keys,
                allow_tags: r.allow_tags,
                ceiling: r.ceiling,
                at,
            });
        }
        Ok(TrustPolicy {
            file: path.to_path_buf(),
            keys,
            rules,
        })
    }

    /// The first rule whose pattern matches `registry/repository`.
    pub fn rule_for(&self, reference: &Reference) -> Option<&Rule> {
        let name = reference.name();
        self.rules
            .iter()
            .find(|r| glob(r.pattern.as_bytes(), name.as_bytes()))
    }

    /// The key called `name`.
    pub fn key(&self, name: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.name == name)
    }
}

fn check_ceiling(c: &Ceiling, at: &str) -> Result<(), String> {
    for kind in c.capabilities.iter().flatten() {
        if !GRANTABLE.contains(&kind.as_str()) {
            return Err(format!(
                "{at}.capabilities: {kind} is not a capability; use {}",
                GRANTABLE.join(", ")
            ));
        }
    }
    for p in c.egress.iter().flatten() {
        let host = p.strip_prefix("*.").unwrap_or(p);
        if host.is_empty() || host.contains('*') || host.contains('/') || host.contains(':') {
            return Err(format!(
                "{at}.egress: {p}: a host name, or *.domain for its subdomains"
            ));
        }
    }
    Ok(())
}

/// `*` matches within one path segment, `**` across segments.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern {
        [] => name.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        [b'*', rest @ ..] => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'/')
            .any(|i| glob(rest, &name[i..])),
        [c, rest @ ..] => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_segments_and_across() {
        assert!(glob(b"r.example.com/agents/*", b"r.example.com/agents/x"));
        assert!(!glob(
            b"r.example.com/agents/*",
            b"r.example.com/agents/x/y"
        ));
        assert!(glob(
            b"r.example.com/agents/**",
            b"r.example.com/agents/x/y"
        ));
        assert!(glob(b"127.0.0.1:*/dev/**", b"127.0.0.1:5000/dev/a"));
        assert!(!glob(b"r.example.com/agents/*", b"r.example.com/agentsx"));
        assert!(host_matches(
            "*.svc.cluster.local",
            "a.ns.svc.cluster.local"
        ));
        assert!(!host_matches("*.svc.cluster.local", "svc.cluster.local"));
        assert!(!host_matches(
            "*.svc.cluster.local",
            "evilsvc.cluster.local"
        ));
    }

    #[test]
    fn a_ceiling_bounds_mcp_grants_like_the_others() {
        let caps: Capabilities = serde_norway::from_str(
            "mcp: [{ name: t, url: 'https://tickets.example.com/mcp', tools: [search], credentials: { secretKeyRef: { name: s, key: k } } }]",
        )
        .unwrap();
        let ceiling = |yaml: &str| -> Ceiling { serde_norway::from_str(yaml).unwrap() };
        let check = |c: Ceiling| c.check(&caps, "signed by `k`", "keys[0]");
        let refused = check(ceiling("capabilities: [http, llm]")).unwrap_err();
        assert!(
            refused.starts_with("spec.capabilities.mcp: granted"),
            "{refused}"
        );
        let refused = check(ceiling("secrets: false")).unwrap_err();
        assert!(
            refused.starts_with("spec.capabilities.mcp[0].credentials: reads a Secret"),
            "{refused}"
        );
        let refused = check(ceiling("egress: ['*.internal']")).unwrap_err();
        assert!(
            refused.contains("spec.capabilities.mcp[0].url: reaches tickets.example.com"),
            "{refused}"
        );
        check(ceiling("{capabilities: [mcp], egress: ['*.example.com']}")).unwrap();
    }

    #[test]
    fn policy_errors_name_the_field() {
        let base = Path::new("/nonexistent");
        let parse = |t: &str| TrustPolicy::parse(t, base, Path::new("p.yaml"));
        let head = "apiVersion: agent-host.dev/v1alpha1\nkind: TrustPolicy\n";
        for (body, wanted) in [
            ("rules: [{repositories: 'a/**', signatures: require}]", "rules[0].keys: a rule that requires"),
            ("rules: [{repositories: 'a/**', signatures: require, keys: [x]}]", "x is not a key"),
            ("rules: [{repositories: 'a/**', signatures: maybe}]", "rules[0].signatures"),
            ("keys: [{name: k, publicKey: junk}]", "keys[0]: not a PEM public key"),
            ("keys: [{name: k, publicKeyFile: k.pub}]", "keys[0].publicKeyFile"),
            ("rules: [{repositories: 'a/**', signatures: allow-unsigned, ceiling: {capabilities: [net]}}]", "net is not a capability"),
            ("rule: []", "unknown field"),
        ] {
            let err = parse(&format!("{head}{body}\n")).unwrap_err();
            assert!(err.contains(wanted), "{body}: {err}");
        }
        assert!(parse("apiVersion: v1\nkind: TrustPolicy\n")
            .unwrap_err()
            .contains("apiVersion/kind"));
    }
}
