//! Splitting a URL into the parts `wasi:http` wants: scheme, authority and
//! path-with-query. Deliberately strict: no user info, no whitespace.

use super::HttpError;
use crate::bindings::wasi::http::types::Scheme;

/// A request target split into its `wasi:http` parts.
pub(crate) struct Target {
    /// The URL as the agent gave it (for error messages).
    pub original: String,
    pub scheme: Scheme,
    pub authority: String,
    pub path_with_query: String,
}

impl Target {
    /// Parses `scheme://authority[/path][?query][#fragment]`; the fragment is dropped.
    pub fn parse(url: &str) -> Result<Target, HttpError> {
        let invalid = |why: &str| HttpError::InvalidUrl(format!("{url:?}: {why}"));
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains whitespace or control characters"));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("missing scheme://"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "" => return Err(invalid("empty scheme")),
            other => Scheme::Other(other.to_owned()),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() {
            return Err(invalid("missing host"));
        }
        if authority.contains('@') {
            return Err(invalid(
                "user info in URLs is not supported; send credentials in a header",
            ));
        }
        let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
        let path_with_query = match tail.chars().next() {
            None => "/".to_owned(),
            Some('?') => format!("/{tail}"),
            Some(_) => tail.to_owned(),
        };
        Ok(Target {
            original: url.to_owned(),
            scheme,
            authority: authority.to_owned(),
            path_with_query,
        })
    }
}

/// Percent-encodes `s` for use as one query value or path segment: every byte
/// except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`.
///
/// ```
/// assert_eq!(
///     agent_host_guest::http::encode_component(r#"up{job="api"}"#),
///     "up%7Bjob%3D%22api%22%7D"
/// );
/// ```
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, String, String) {
        let t = Target::parse(url).unwrap();
        let scheme = match t.scheme {
            Scheme::Http => "http".to_owned(),
            Scheme::Https => "https".to_owned(),
            Scheme::Other(s) => s,
        };
        (scheme, t.authority, t.path_with_query)
    }

    #[test]
    fn splits_scheme_authority_and_path_with_query() {
        let (s, a, p) = parts("http://127.0.0.1:18090/api/v1/query?query=up#frag");
        assert_eq!(
            (s.as_str(), a.as_str(), p.as_str()),
            ("http", "127.0.0.1:18090", "/api/v1/query?query=up")
        );
    }

    #[test]
    fn defaults_the_path_to_slash() {
        assert_eq!(parts("HTTPS://example.com").2, "/");
        assert_eq!(parts("https://example.com?x=1").2, "/?x=1");
        assert_eq!(parts("https://example.com#top").2, "/");
    }

    #[test]
    fn rejects_urls_without_scheme_host_or_with_user_info() {
        for bad in [
            "example.com/x",
            "http:///x",
            "http://user:pw@example.com/",
            "http://a b/",
            "://x",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(HttpError::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn keeps_unknown_schemes_for_the_host_to_refuse() {
        assert_eq!(parts("ftp://example.com/f").0, "ftp");
    }

    #[test]
    fn percent_encodes_everything_but_unreserved() {
        assert_eq!(encode_component("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode_component("a b/é"), "a%20b%2F%C3%A9");
    }
}
