//! Outgoing-HTTP allowlist and address policy against arbitrary input:
//! - a URL the grant allows is only ever sent to a host and port a rule names,
//!   with no dot segment left in its path;
//! - the path sent is the path checked: the request target is the path a
//!   WHATWG parser reads (the one the rule matched) and the guest's raw path,
//!   byte for byte, with nothing a server could read as another path;
//! - an address in a non-public range (checked against an independent table)
//!   is never allowed without a grant.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use agent_host::cap::http::address::AddressPolicy;
use agent_host::cap::http::HttpGrant;
use agent_host::manifest::Agent;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

const MANIFEST: &str = r#"
apiVersion: agent-host.dev/v1alpha1
kind: Agent
metadata: { name: fuzz }
spec:
  component: { path: ./a.wasm }
  capabilities:
    http:
      - { url: "http://127.0.0.1:8080/api/", methods: [GET] }
      - { url: "https://example.com/v1/issues", methods: [GET, POST] }
      - { url: "http://[::1]:9000/", methods: [PUT] }
"#;

/// (host as the grant spells it, port) of every rule above.
const ORIGINS: [(&str, u16); 3] = [("127.0.0.1", 8080), ("example.com", 443), ("[::1]", 9000)];

static GRANT: LazyLock<HttpGrant> = LazyLock::new(|| {
    let agent = Agent::from_yaml(MANIFEST).expect("fuzz manifest is valid");
    HttpGrant::configure(&agent.spec.capabilities.http)
});

/// Non-public ranges, written independently of the host's classifier.
static NON_PUBLIC: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ]
    .iter()
    .map(|n| n.parse().unwrap())
    .collect()
});

const METHODS: [http::Method; 5] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::HEAD,
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&data[1..17]).unwrap());
    let v4 = Ipv4Addr::new(data[1], data[2], data[3], data[4]);
    for ip in [
        IpAddr::V6(v6),
        IpAddr::V4(v4),
        IpAddr::V6(v4.to_ipv6_mapped()),
    ] {
        let embedded = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if NON_PUBLIC.iter().any(|net| net.contains(&embedded)) {
            assert!(
                AddressPolicy::default().check(ip).is_err(),
                "{ip} is non-public but allowed"
            );
        }
    }

    let Ok(url) = std::str::from_utf8(&data[17..]) else {
        return;
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return;
    };
    let method = &METHODS[data[0] as usize % METHODS.len()];
    if let Ok(target) = GRANT.check(method, &uri) {
        let host = match &target.host {
            url::Host::Ipv6(ip) => format!("[{ip}]"),
            other => other.to_string(),
        };
        assert!(
            ORIGINS.contains(&(host.as_str(), target.port)),
            "{method} {url} would reach {host}:{}",
            target.port
        );
        assert!(
            !uri.path().split('/').any(|s| s == "." || s == ".."),
            "{url} keeps a dot segment"
        );
        let sent = target
            .path_and_query
            .split_once('?')
            .map_or(target.path_and_query.as_str(), |(path, _)| path);
        let checked = url::Url::parse(&uri.to_string()).expect("an allowed URL parses");
        assert_eq!(sent, checked.path(), "{url}: the path sent is not the path checked");
        let raw = if uri.path().is_empty() { "/" } else { uri.path() };
        assert_eq!(sent, raw, "{url}: the path sent is not the guest's");
        assert_eq!(target.path_and_query.split_once('?').map(|(_, q)| q), uri.query());
        let lower = sent.to_ascii_lowercase();
        assert!(
            !sent.contains('\\')
                && !["%2f", "%5c", "%2e"].iter().any(|e| lower.contains(e))
                && !sent
                    .split('/')
                    .any(|seg| matches!(seg.split(';').next(), Some("." | ".."))),
            "{url}: a server could read {sent} as another path"
        );
    }
});
