//! Which addresses an outgoing request may connect to, decided after DNS
//! resolution on the very address that is then connected to (no second lookup,
//! so DNS rebinding cannot swap it).
//!
//! Non-public ranges — loopback, private, link-local (cloud metadata at
//! 169.254.169.254 included), shared/CGNAT, unique-local, multicast, reserved,
//! and their IPv4-mapped/compatible/NAT64 IPv6 forms — are refused unless the
//! rule grants them: by naming the address as its host, or in `allowedCidrs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// The addresses one rule may reach beyond the public internet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// The rule's host, when it is an IP literal.
    pub literal: Option<IpAddr>,
    /// Ranges granted explicitly.
    pub cidrs: Vec<IpNet>,
}

impl AddressPolicy {
    /// The policy of a grant naming `literal` (when its host is an IP), with
    /// `cidrs` (already validated) and, if `allow_all`, every address.
    pub fn granted(literal: Option<IpAddr>, cidrs: &[String], allow_all: bool) -> Self {
        let all = ["0.0.0.0/0", "::/0"].map(|c| c.parse().expect("valid CIDR"));
        Self {
            literal,
            cidrs: cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .chain(allow_all.then_some(all).into_iter().flatten())
                .collect(),
        }
    }

    /// `Ok` if `ip` may be connected to, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let v4_or_v6 = canonical(ip);
        let granted = self.literal.is_some_and(|l| canonical(l) == v4_or_v6)
            || self
                .cidrs
                .iter()
                .any(|net| net.contains(&v4_or_v6) || net.contains(&ip));
        match non_public(v4_or_v6) {
            Some(kind) if !granted => Err(format!(
                "{ip} is a {kind} address and the rule does not grant it"
            )),
            _ => Ok(()),
        }
    }
}

/// Why a request is not sent after resolution.
#[derive(Debug)]
pub enum ResolveError {
    /// Every address the host resolved to is refused.
    Prohibited(String),
    /// The name did not resolve.
    Dns(String),
}

/// Resolves `host` and returns the first address the policy allows.
pub async fn resolve(
    host: &url::Host<String>,
    port: u16,
    policy: &AddressPolicy,
) -> Result<SocketAddr, ResolveError> {
    let candidates: Vec<SocketAddr> = match host {
        url::Host::Ipv4(ip) => vec![SocketAddr::new((*ip).into(), port)],
        url::Host::Ipv6(ip) => vec![SocketAddr::new((*ip).into(), port)],
        url::Host::Domain(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| ResolveError::Dns(format!("{name}: {e}")))?
            .collect(),
    };
    let mut refused = Vec::new();
    for addr in candidates {
        match policy.check(addr.ip()) {
            Ok(()) => return Ok(addr),
            Err(why) => refused.push(why),
        }
    }
    Err(ResolveError::Prohibited(if refused.is_empty() {
        format!("{host} has no address")
    } else {
        refused.join("; ")
    }))
}

/// IPv4 addresses carried in IPv6 forms are judged as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `::ffff:a.b.c.d` (mapped), `::a.b.c.d` (compatible, deprecated) and
/// `64:ff9b::a.b.c.d` (NAT64).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1);
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (compatible || nat64).then_some(low)
}

/// The kind of non-public range `ip` is in, if any.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            if ip.is_loopback() {
                Some("loopback")
            } else if ip.is_private() {
                Some("private")
            } else if ip.is_link_local() {
                Some("link-local")
            } else if o[0] == 0 {
                Some("unspecified")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared (CGNAT)")
            } else if ip.is_multicast() {
                Some("multicast")
            } else if o[0] >= 240 {
                Some("reserved")
            } else if ip.is_documentation()
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[..3] == [192, 0, 0]
            {
                Some("special-purpose")
            } else {
                None
            }
        }
        IpAddr::V6(ip) => {
            let s0 = ip.segments()[0];
            if ip.is_loopback() {
                Some("loopback")
            } else if ip.is_unspecified() {
                Some("unspecified")
            } else if (s0 & 0xfe00) == 0xfc00 {
                Some("unique-local")
            } else if (s0 & 0xffc0) == 0xfe80 || (s0 & 0xffc0) == 0xfec0 {
                Some("link-local")
            } else if ip.is_multicast() {
                Some("multicast")
            } else if s0 == 0x2001 && ip.segments()[1] == 0xdb8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        AddressPolicy::default().check(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn non_public_ranges_and_their_ipv6_forms_are_refused_by_default() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!refused(ip), "{ip} is public");
        }
    }

    #[test]
    fn a_literal_rule_host_or_an_explicit_cidr_grants_the_address() {
        let literal = AddressPolicy {
            literal: Some("127.0.0.1".parse().unwrap()),
            cidrs: vec![],
        };
        assert!(literal.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(literal.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(literal.check("127.0.0.2".parse().unwrap()).is_err());
        let cidr = AddressPolicy {
            literal: None,
            cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        };
        assert!(cidr.check("10.96.0.10".parse().unwrap()).is_ok());
        assert!(cidr.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(cidr.check("169.254.169.254".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_without_a_grant() {
        let host = url::Host::Domain("localhost".to_string());
        match resolve(&host, 80, &AddressPolicy::default()).await {
            Err(ResolveError::Prohibited(why)) => assert!(why.contains("loopback"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let granted = AddressPolicy {
            literal: None,
            cidrs: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        assert!(resolve(&host, 80, &granted)
            .await
            .unwrap()
            .ip()
            .is_loopback());
    }
}
