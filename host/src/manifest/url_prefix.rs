//! The URL prefixes an HTTP grant covers.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use url::Url;

/// An `http`/`https` URL naming one host, one port and a path prefix that a grant covers.
///
/// Rejected, because each would make a grant cover more or other than it appears to:
/// other schemes, credentials (`user:pass@`), a query (`?`), a fragment (`#`) and
/// wildcards (`*`). The host is lowercased (and IDNA-encoded) with any trailing dot
/// removed, the default port is filled in, and `.`/`..` path segments are resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UrlPrefix(Url);

impl UrlPrefix {
    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    /// The host: a lowercase domain without trailing dot, an IPv4 address, or an IPv6
    /// address in brackets (`[::1]`).
    pub fn host(&self) -> &str {
        // Checked non-empty when constructed.
        self.0.host_str().unwrap_or_default()
    }

    /// The host when it is an IP literal: a rule naming an address grants that address.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self.0.host()? {
            url::Host::Ipv4(ip) => Some(ip.into()),
            url::Host::Ipv6(ip) => Some(ip.into()),
            url::Host::Domain(_) => None,
        }
    }

    /// The port, with the scheme's default (80 or 443) filled in.
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or_default()
    }

    /// The path the grant covers, starting with `/` (just `/` for the whole host).
    pub fn path_prefix(&self) -> &str {
        self.0.path()
    }
}

impl fmt::Display for UrlPrefix {
    /// The canonical URL, e.g. `https://example.com/api/` (a default port is left out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl TryFrom<String> for UrlPrefix {
    type Error = String;

    fn try_from(input: String) -> Result<Self, String> {
        input.parse()
    }
}

impl From<UrlPrefix> for String {
    fn from(prefix: UrlPrefix) -> String {
        prefix.0.into()
    }
}

impl std::str::FromStr for UrlPrefix {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let reject = |why: &str| Err(format!("\"{input}\" {why}"));
        if input.contains('*') {
            return reject("has a wildcard (*); list each host and path prefix instead");
        }
        let mut url = match Url::parse(input) {
            Ok(url) => url,
            Err(e) => return reject(&format!("is not a URL: {e}")),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return reject(&format!(
                "has scheme {}; only http and https are allowed",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return reject(
                "contains credentials (user:password@); pass secrets through env valueFrom instead",
            );
        }
        if url.query().is_some() {
            return reject("has a query (?...); a grant covers a path prefix only");
        }
        if url.fragment().is_some() {
            return reject("has a fragment (#...); a grant covers a path prefix only");
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return reject("has no host");
        };
        // Every trailing dot, as requests are matched: one left behind would
        // make the canonical form change when parsed again.
        if host.ends_with('.') {
            let trimmed = host.trim_end_matches('.').to_owned();
            if trimmed.is_empty() || url.set_host(Some(&trimmed)).is_err() {
                return reject("has no valid host");
            }
        }
        Ok(UrlPrefix(url))
    }
}

impl JsonSchema for UrlPrefix {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "UrlPrefix".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // The same rules as FromStr, as far as a regular expression can state them.
        json_schema!({
            "description": "An http or https URL: host, optional port and a path prefix; no credentials, query, fragment or wildcard.",
            "type": "string",
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/@?#*]+(/[^?#*]*)?$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_host_port_and_path() {
        let cases: &[(&str, &str, &str, u16, &str, &str)] = &[
            // input, scheme, host, port, path prefix, display
            (
                "https://prometheus.monitoring.svc:9090/api/v1/",
                "https",
                "prometheus.monitoring.svc",
                9090,
                "/api/v1/",
                "https://prometheus.monitoring.svc:9090/api/v1/",
            ),
            (
                "HTTPS://Tickets.Example.COM./api/issues",
                "https",
                "tickets.example.com",
                443,
                "/api/issues",
                "https://tickets.example.com/api/issues",
            ),
            (
                "http://example.com",
                "http",
                "example.com",
                80,
                "/",
                "http://example.com/",
            ),
            (
                "https://Tickets.Example.COM../api",
                "https",
                "tickets.example.com",
                443,
                "/api",
                "https://tickets.example.com/api",
            ),
            (
                "http://example.com:80/a/../b",
                "http",
                "example.com",
                80,
                "/b",
                "http://example.com/b",
            ),
            (
                "http://10.0.0.1:8080/x",
                "http",
                "10.0.0.1",
                8080,
                "/x",
                "http://10.0.0.1:8080/x",
            ),
            (
                "https://[::1]/",
                "https",
                "[::1]",
                443,
                "/",
                "https://[::1]/",
            ),
        ];
        for (input, scheme, host, port, path, shown) in cases {
            let prefix: UrlPrefix = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(prefix.scheme(), *scheme, "{input}");
            assert_eq!(prefix.host(), *host, "{input}");
            assert_eq!(prefix.port(), *port, "{input}");
            assert_eq!(prefix.path_prefix(), *path, "{input}");
            assert_eq!(prefix.to_string(), *shown, "{input}");
        }
    }

    #[test]
    fn rejects_what_would_widen_or_disguise_a_grant() {
        let only_http = "only http and https are allowed";
        let credentials =
            "contains credentials (user:password@); pass secrets through env valueFrom instead";
        let query = "has a query (?...); a grant covers a path prefix only";
        let wildcard = "has a wildcard (*); list each host and path prefix instead";
        let cases: &[(&str, &str)] = &[
            (
                "ftp://example.com/",
                &format!("has scheme ftp; {only_http}"),
            ),
            (
                "file:///etc/passwd",
                &format!("has scheme file; {only_http}"),
            ),
            ("https://user:pw@example.com/", credentials),
            ("https://user@example.com/", credentials),
            ("https://example.com/?a=1", query),
            ("https://example.com/?", query),
            (
                "https://example.com/#top",
                "has a fragment (#...); a grant covers a path prefix only",
            ),
            ("https://*.example.com/", wildcard),
            ("https://example.com/api/*", wildcard),
            (
                "example.com/api",
                "is not a URL: relative URL without a base",
            ),
            ("https://", "is not a URL: empty host"),
            (
                "https://example.com:99999/",
                "is not a URL: invalid port number",
            ),
        ];
        for (input, reason) in cases {
            let err = input.parse::<UrlPrefix>().unwrap_err();
            assert_eq!(err, format!("\"{input}\" {reason}"));
        }
    }
}
