//! `REGISTRY/REPOSITORY(@sha256:HEX | :TAG)`: the references the host pulls,
//! pushes and signs (`spec.component.image` is checked with it). The registry is always explicit (no implied Docker Hub):
//! what the trust policy matches is what is fetched.

use std::fmt;

/// A parsed reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// Path components joined by `/`, lower case.
    pub repository: String,
    /// The tag or digest.
    pub target: Target,
}

/// What a reference points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A mutable tag: resolved to a digest at every pull.
    Tag(String),
    /// An immutable manifest digest, `sha256:<64 hex>`.
    Digest(String),
}

/// Longest reference accepted, bytes (the distribution spec's name limit is 255).
const MAX_REFERENCE_BYTES: usize = 512;

impl Reference {
    /// Parses `text`; errors say what is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Reference, String> {
        if text.len() > MAX_REFERENCE_BYTES {
            return Err(format!(
                "is {} bytes; a reference has at most {MAX_REFERENCE_BYTES}",
                text.len()
            ));
        }
        let (name, target) =
            if let Some((name, digest)) = text.split_once('@') {
                check_digest(digest)?;
                (name, Target::Digest(digest.to_owned()))
            } else {
                // A tag follows the last `:` after the last `/` (a port precedes a `/`).
                let slash = text.rfind('/').unwrap_or(0);
                match text[slash..].rfind(':') {
                    Some(i) => {
                        let tag = &text[slash + i + 1..];
                        check_tag(tag)?;
                        (&text[..slash + i], Target::Tag(tag.to_owned()))
                    }
                    None => return Err(
                        "names neither a digest nor a tag; write REGISTRY/REPOSITORY@sha256:<hex>"
                            .into(),
                    ),
                }
            };
        let Some((registry, repository)) = name.split_once('/') else {
            return Err(format!(
                "{name}: no registry; write REGISTRY/REPOSITORY, e.g. registry.example.com/agents/x"
            ));
        };
        check_registry(registry)?;
        check_repository(repository)?;
        Ok(Reference {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            target,
        })
    }

    /// `registry/repository`, what trust-policy rules match.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at `digest`.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            target: Target::Digest(digest.to_owned()),
            ..self.clone()
        }
    }

    /// The digest, when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        match &self.target {
            Target::Digest(d) => Some(d),
            Target::Tag(_) => None,
        }
    }

    /// The tag or digest, as the registry API takes it.
    pub fn target_str(&self) -> &str {
        match &self.target {
            Target::Tag(t) | Target::Digest(t) => t,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Tag(t) => write!(f, "{}/{}:{t}", self.registry, self.repository),
            Target::Digest(d) => write!(f, "{}/{}@{d}", self.registry, self.repository),
        }
    }
}

/// `sha256:` and 64 lower-case hex digits: the only algorithm the host checks.
pub fn check_digest(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{digest}: not a digest; write sha256: and 64 lower-case hex digits"
        )),
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tag}: not a tag; a tag is 1-128 of [A-Za-z0-9_.-], not starting with . or -"
        ))
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (registry, None),
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[') && host.ends_with(']')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "{registry}: not a registry; write a host name or address with an optional :port"
        ))
    }
}

fn check_repository(repository: &str) -> Result<(), String> {
    // Path components as the distribution spec writes them: [a-z0-9]+ joined by
    // one `.`, `_`, `__` or any number of `-`.
    let component_ok = |c: &str| {
        let bytes = c.as_bytes();
        !c.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && !c.contains("..")
            && !c.contains("___")
    };
    if repository.len() <= 255 && repository.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!(
            "{repository}: not a repository; write lower-case [a-z0-9] path components separated by /, joined within by . _ or -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_tags_and_ports_are_told_apart() {
        let r = Reference::parse(&format!("127.0.0.1:5000/agents/x@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "agents/x");
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/agents/x@{D}"));
        let r = Reference::parse("registry.example.com:443/a/b:v1.2").unwrap();
        assert_eq!(r.registry, "registry.example.com:443");
        assert_eq!(r.target, Target::Tag("v1.2".into()));
        assert_eq!(r.name(), "registry.example.com:443/a/b");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for (text, wanted) in [
            ("registry.example.com/a", "neither a digest nor a tag"),
            ("a@sha256:00", "not a digest"),
            (
                &format!("r.example.com/a@sha512:{}", &D[7..]),
                "not a digest",
            ),
            ("x:v1", "no registry"),
            ("r.example.com/A/b:v1", "not a repository"),
            ("r.example.com/a/../b:v1", "not a repository"),
            ("r.example.com:0/a:v1", "not a registry"),
            ("r.example.com/a:-x", "not a tag"),
            (
                &format!("r.example.com/a/b@{}", D.to_uppercase()),
                "not a digest",
            ),
        ] {
            let err = Reference::parse(text).unwrap_err();
            assert!(err.contains(wanted), "{text}: {err}");
        }
        assert!(Reference::parse(&"a".repeat(600))
            .unwrap_err()
            .contains("at most 512"));
    }
}
