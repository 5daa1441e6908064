//! `allowed_outbound_hosts`: where a worker may `fetch`. Nothing is allowed
//! unless listed, as in Spin.
//!
//! A rule is `scheme://host[:port]`: the scheme is `http`, `https` or `*`;
//! the host a name, `*.` and a name, or `*`; the port a number or `*`, and
//! the scheme's default port when left out. `*://*:*` allows everything.

use std::str::FromStr;

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    /// `None` for `*`.
    scheme: Option<String>,
    /// `None` for `*`; a leading `.` for `*.name`.
    host: Option<String>,
    /// `None` for `*`; `Some(None)` for the scheme's default port.
    port: Option<Option<u16>>,
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
        if rest.contains('/') {
            return Err(bad("a rule names a host, not a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, None),
            Some((host, port)) => (
                host,
                Some(Some(
                    port.parse()
                        .map_err(|_| bad("the port must be a number or *"))?,
                )),
            ),
            None => (rest, Some(None)),
        };
        let host = match host.to_ascii_lowercase() {
            h if h == "*" => None,
            h if h.is_empty() || h.contains('*') && !h.starts_with("*.") => {
                return Err(bad("the host may be a name, `*.` and a name, or `*`"));
            }
            h => Some(h.strip_prefix('*').map(str::to_owned).unwrap_or(h)),
        };
        Ok(Self { scheme, host, port })
    }
}

impl OutboundRule {
    /// Whether a request to `scheme://host:port` is allowed by this rule.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            None => true,
            Some(suffix) if suffix.starts_with('.') => host.ends_with(suffix.as_str()),
            Some(exact) => exact == host,
        };
        let port_ok = match self.port {
            None => true,
            Some(Some(p)) => p == port,
            Some(None) => port == default_port(scheme),
        };
        scheme_ok && host_ok && port_ok
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

    #[test]
    fn matches_scheme_host_and_port() {
        assert!(rule("https://api.example.com").allows("https", "api.example.com", 443));
        assert!(!rule("https://api.example.com").allows("http", "api.example.com", 80));
        assert!(!rule("https://api.example.com").allows("https", "api.example.com", 8443));
        assert!(rule("https://*.example.com").allows("https", "a.b.example.com", 443));
        assert!(!rule("https://*.example.com").allows("https", "example.com", 443));
        assert!(rule("http://127.0.0.1:*").allows("http", "127.0.0.1", 1234));
        assert!(rule("*://*:*").allows("http", "anything", 1));
    }

    #[test]
    fn rejects_malformed_rules() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://x/path",
            "https://x:port",
            "https://a*b",
        ] {
            assert!(bad.parse::<OutboundRule>().is_err(), "{bad}");
        }
    }
}
