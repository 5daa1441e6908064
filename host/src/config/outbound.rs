//! `allowed_outbound_hosts`: where a worker may `fetch`. Nothing is allowed
//! unless listed, as in Spin.
//!
//! A rule is `scheme://host[:port]`: the scheme is `http`, `https` or `*`;
//! the host a name, `*.` and a name, `*`, an IP address (IPv6 in brackets)
//! or a CIDR range (`10.0.0.0/8`, `[fd00::]/8`); the port a number or `*`,
//! and the scheme's default port when left out. `*://*:*` allows every
//! public address.
//!
//! Loopback, private, link-local, unspecified and multicast addresses are
//! reachable only through a rule that names that address or a range
//! holding it: a wildcard never reaches them, whatever name resolves to
//! them (see `bindings/fetch/guard.rs`).

use std::net::IpAddr;
use std::str::FromStr;

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    /// `None` for `*`.
    scheme: Option<String>,
    host: HostPattern,
    /// `None` for `*`; `Some(None)` for the scheme's default port.
    port: Option<Option<u16>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any name, any public address.
    Any,
    /// `*.example.com`, kept as `.example.com`.
    Suffix(String),
    /// A name, lower case.
    Name(String),
    /// An address, or a range of them: the first `prefix` bits of `network`.
    Addresses { network: IpAddr, prefix: u8 },
}

impl FromStr for OutboundRule {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::new(format!("allowed_outbound_hosts {text:?}: {why}"));
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            bad("needs a scheme, e.g. `https://api.example.com` (or `*://*:*` for any)")
        })?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_owned()),
            _ => return Err(bad("the scheme must be http, https or *")),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = split_port(rest);
        let port = match port {
            None => Some(None),
            Some("*") => None,
            Some(port) => Some(Some(
                port.parse()
                    .map_err(|_| bad("the port must be a number or *"))?,
            )),
        };
        let host = parse_host(host).map_err(bad)?;
        Ok(Self { scheme, host, port })
    }
}

/// `host[:port]`, minding IPv6 brackets and a range's `/prefix`.
fn split_port(text: &str) -> (&str, Option<&str>) {
    let host_end = match text.find(']') {
        Some(bracket) => bracket + 1,
        None => 0,
    };
    match text[host_end..].rfind(':') {
        Some(colon) => (
            &text[..host_end + colon],
            Some(&text[host_end + colon + 1..]),
        ),
        None => (text, None),
    }
}

fn parse_host(text: &str) -> Result<HostPattern, &'static str> {
    const SHAPES: &str =
        "the host may be a name, `*.` and a name, `*`, an IP address or a CIDR range";
    if text == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some((address, prefix)) = text.split_once('/') {
        let network = parse_ip(address).ok_or("a CIDR range starts with an IP address")?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or("a CIDR prefix is a number of bits (at most 32, or 128 for IPv6)")?;
        return Ok(HostPattern::Addresses { network, prefix });
    }
    if let Some(ip) = parse_ip(text) {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(HostPattern::Addresses {
            network: ip,
            prefix,
        });
    }
    let name = text.to_ascii_lowercase();
    if name.is_empty() || name.contains(['/', '[', ']', '@', '?', '#']) {
        return Err(SHAPES);
    }
    match name.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && !suffix[1..].contains('*') => {
            Ok(HostPattern::Suffix(suffix.to_owned()))
        }
        Some(_) => Err(SHAPES),
        None if name.contains('*') => Err(SHAPES),
        // Let `url` say whether it is a host name at all.
        None => match url::Host::parse(&name) {
            Ok(url::Host::Domain(domain)) => Ok(HostPattern::Name(domain)),
            Ok(_) | Err(_) => Err(SHAPES),
        },
    }
}

/// `1.2.3.4` or `[::1]`, as a rule writes an address.
fn parse_ip(text: &str) -> Option<IpAddr> {
    match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(v6) => v6.parse().ok(),
        None => text.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

impl OutboundRule {
    /// Whether a request to `scheme://host:port` is allowed by this rule,
    /// as far as its host's name or literal address goes. Where a name
    /// resolves to is checked separately, against [`Self::names_address`].
    pub(crate) fn allows(&self, scheme: &str, host: &url::Host<&str>, port: u16) -> bool {
        let host_ok = match (&self.host, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Suffix(suffix), url::Host::Domain(name)) => {
                name.to_ascii_lowercase().ends_with(suffix.as_str())
            }
            (HostPattern::Name(exact), url::Host::Domain(name)) => exact.eq_ignore_ascii_case(name),
            (HostPattern::Addresses { .. }, url::Host::Ipv4(ip)) => self.contains((*ip).into()),
            (HostPattern::Addresses { .. }, url::Host::Ipv6(ip)) => self.contains((*ip).into()),
            _ => false,
        };
        host_ok && self.scheme_and_port(scheme, port)
    }

    /// Whether this rule names `ip` (itself, or a range holding it) for
    /// `scheme` and `port`: what a private or loopback address needs.
    pub(crate) fn names_address(&self, scheme: &str, ip: IpAddr, port: u16) -> bool {
        self.contains(ip) && self.scheme_and_port(scheme, port)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let HostPattern::Addresses { network, prefix } = self.host else {
            return false;
        };
        match (network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    fn scheme_and_port(&self, scheme: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let port_ok = match self.port {
            None => true,
            Some(Some(p)) => p == port,
            Some(None) => port == default_port(scheme),
        };
        scheme_ok && port_ok
    }
}

pub(super) fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> OutboundRule {
        text.parse().unwrap()
    }

    fn name(n: &str) -> url::Host<&str> {
        url::Host::Domain(n)
    }

    #[test]
    fn matches_scheme_host_and_port() {
        assert!(rule("https://api.example.com").allows("https", &name("api.example.com"), 443));
        assert!(!rule("https://api.example.com").allows("http", &name("api.example.com"), 80));
        assert!(!rule("https://api.example.com").allows("https", &name("api.example.com"), 8443));
        assert!(rule("https://*.example.com").allows("https", &name("a.b.example.com"), 443));
        assert!(!rule("https://*.example.com").allows("https", &name("example.com"), 443));
        let loopback = url::Host::Ipv4("127.0.0.1".parse().unwrap());
        assert!(rule("http://127.0.0.1:*").allows("http", &loopback, 1234));
        assert!(!rule("http://127.0.0.1:*").allows("http", &name("localhost"), 1234));
        assert!(rule("*://*:*").allows("http", &name("anything"), 1));
    }

    #[test]
    fn addresses_and_ranges_name_what_they_hold() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(rule("http://10.0.0.0/8:*").names_address("http", ip("10.1.2.3"), 99));
        assert!(!rule("http://10.0.0.0/8:*").names_address("http", ip("11.0.0.1"), 99));
        assert!(rule("http://[fd00::]/8:*").names_address("http", ip("fd12::1"), 1));
        assert!(rule("http://[::1]:8080").names_address("http", ip("::1"), 8080));
        assert!(!rule("http://[::1]:8080").names_address("http", ip("::1"), 8081));
        assert!(rule("*://0.0.0.0/0:*").names_address("https", ip("192.168.1.1"), 443));
        // A wildcard names no address.
        assert!(!rule("*://*:*").names_address("http", ip("127.0.0.1"), 80));
    }

    #[test]
    fn rejects_malformed_rules() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://x/path",
            "https://x:port",
            "https://a*b",
            "http://10.0.0.0/33",
            "http://x/8",
            "http://[::1",
        ] {
            assert!(bad.parse::<OutboundRule>().is_err(), "{bad}");
        }
    }
}
