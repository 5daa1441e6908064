//! Route patterns (`routes` in verge.toml) and the table that maps an
//! inbound request to a worker.
//!
//! A pattern is an optional host followed by a path, as in Cloudflare:
//! `/hello` (any host, exact path), `/api/*` (any host, path prefix),
//! `example.com/*`, `*.example.com/app/*`. The most specific pattern wins:
//! a named host beats a `*.` host beats any host, then a longer literal path
//! beats a shorter one, then an exact path beats a prefix.

use std::fmt;
use std::str::FromStr;

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    /// `*.example.com`: any subdomain, stored as `.example.com`.
    Suffix(String),
    Exact(String),
}

/// Two patterns are equal when they match the same requests, however they
/// are spelled (`/hello` and `*/hello`, `Example.com/*` and
/// `example.com/*`): two workers claiming equal patterns conflict.
#[derive(Debug, Clone)]
pub struct RoutePattern {
    /// As written, for messages.
    text: String,
    host: HostMatch,
    /// The literal part of the path.
    path: String,
    /// Whether the pattern ended in `*`.
    prefix: bool,
}

impl FromStr for RoutePattern {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::new(format!("route {text:?}: {why}"));
        if text.contains("://") {
            return Err(bad("leave out the scheme, e.g. `example.com/*`"));
        }
        let slash = text
            .find('/')
            .ok_or_else(|| bad("needs a path, e.g. `/api/*` or `example.com/*`"))?;
        let (host, path) = text.split_at(slash);
        let host = match host.to_ascii_lowercase() {
            h if h.is_empty() || h == "*" => HostMatch::Any,
            h => match h.strip_prefix("*.") {
                Some(suffix) if valid_host(suffix) => HostMatch::Suffix(format!(".{suffix}")),
                None if valid_host(&h) => HostMatch::Exact(h),
                _ => return Err(bad("the host may be a name, `*.` and a name, or `*`")),
            },
        };
        let (path, prefix) = match path.strip_suffix('*') {
            Some(literal) => (literal, true),
            None => (path, false),
        };
        if path.contains('*') {
            return Err(bad("`*` may only end the pattern"));
        }
        Ok(Self {
            text: text.to_owned(),
            host,
            path: path.to_owned(),
            prefix,
        })
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl PartialEq for RoutePattern {
    fn eq(&self, other: &Self) -> bool {
        (&self.host, &self.path, self.prefix) == (&other.host, &other.path, other.prefix)
    }
}

impl Eq for RoutePattern {}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl RoutePattern {
    /// Whether a request for `host` (without port, lower-case) and `path`
    /// matches.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostMatch::Exact(exact) => host == exact,
        };
        host_ok
            && if self.prefix {
                path.starts_with(&self.path)
            } else {
                path == self.path
            }
    }

    /// Orders patterns so that the most specific comes first. Two
    /// patterns that match one request and rank the same are equal, so
    /// which one serves never depends on the order routes were listed in.
    fn specificity(&self) -> (u8, usize, usize, bool) {
        let (host, suffix) = match &self.host {
            HostMatch::Exact(_) => (2, 0),
            // `*.shop.example.com` before `*.example.com`.
            HostMatch::Suffix(suffix) => (1, suffix.len()),
            HostMatch::Any => (0, 0),
        };
        (host, suffix, self.path.len(), !self.prefix)
    }
}

/// Two workers claiming the same route.
#[derive(Debug, thiserror::Error)]
#[error("route `{route}` is claimed by both `{first}` and `{second}`; remove it from one of them")]
pub struct RouteConflict {
    pub route: String,
    pub first: String,
    pub second: String,
}

/// Every active route, most specific first.
#[derive(Debug, Default, Clone)]
pub(crate) struct RouteTable {
    entries: Vec<(RoutePattern, String)>,
}

impl RouteTable {
    /// Builds the table from `(pattern, worker)` pairs. Two workers claiming
    /// the same pattern is an error naming both.
    pub(crate) fn new(
        routes: impl IntoIterator<Item = (RoutePattern, String)>,
    ) -> Result<Self, RouteConflict> {
        let mut entries: Vec<(RoutePattern, String)> = Vec::new();
        for (pattern, worker) in routes {
            if let Some((_, other)) = entries.iter().find(|(p, w)| *p == pattern && *w != worker) {
                return Err(RouteConflict {
                    route: pattern.text,
                    first: other.clone(),
                    second: worker,
                });
            }
            entries.push((pattern, worker));
        }
        entries.sort_by_key(|(p, _)| std::cmp::Reverse(p.specificity()));
        Ok(Self { entries })
    }

    /// The worker serving `host` and `path`, if any. `host` may carry a port.
    pub(crate) fn lookup(&self, host: &str, path: &str) -> Option<&str> {
        let host = host
            .rsplit_once(':')
            .map_or(host, |(h, _)| h)
            .to_ascii_lowercase();
        self.entries
            .iter()
            .find(|(pattern, _)| pattern.matches(&host, path))
            .map(|(_, worker)| worker.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str)]) -> RouteTable {
        RouteTable::new(
            routes
                .iter()
                .map(|(p, w)| (p.parse().unwrap(), w.to_string())),
        )
        .unwrap()
    }

    #[test]
    fn most_specific_pattern_wins() {
        let t = table(&[
            ("/*", "catch-all"),
            ("/api/*", "api"),
            ("/api/health", "health"),
            ("example.com/api/*", "example-api"),
            ("*.example.com/*", "subdomains"),
        ]);
        assert_eq!(t.lookup("localhost:8787", "/"), Some("catch-all"));
        assert_eq!(t.lookup("localhost", "/api/users"), Some("api"));
        assert_eq!(t.lookup("localhost", "/api/health"), Some("health"));
        assert_eq!(t.lookup("EXAMPLE.com:443", "/api/x"), Some("example-api"));
        assert_eq!(t.lookup("shop.example.com", "/api/x"), Some("subdomains"));
    }

    #[test]
    fn exact_paths_do_not_match_longer_paths() {
        let t = table(&[("/hello", "hello")]);
        assert_eq!(t.lookup("h", "/hello"), Some("hello"));
        assert_eq!(t.lookup("h", "/hello/x"), None);
    }

    #[test]
    fn rejects_malformed_patterns_and_conflicts() {
        for bad in ["hello", "https://x.com/*", "/a/*/b", "exa mple.com/"] {
            assert!(bad.parse::<RoutePattern>().is_err(), "{bad}");
        }
        let conflict = RouteTable::new([
            ("/a".parse().unwrap(), "one".to_string()),
            ("/a".parse().unwrap(), "two".to_string()),
        ]);
        assert!(conflict.is_err());
    }

    /// Found by fuzzing (`host/fuzz`, target `routes`): with these, which
    /// worker served depended on the order of the table's input.
    #[test]
    fn one_route_spelled_two_ways_conflicts_and_the_longer_suffix_wins() {
        for (a, b) in [("/hello", "*/hello"), ("example.com/*", "EXAMPLE.com/*")] {
            let conflict = RouteTable::new([
                (a.parse().unwrap(), "one".to_string()),
                (b.parse().unwrap(), "two".to_string()),
            ]);
            assert!(conflict.is_err(), "{a} and {b}");
        }
        for routes in [
            [
                ("*.example.com/*", "wide"),
                ("*.shop.example.com/*", "narrow"),
            ],
            [
                ("*.shop.example.com/*", "narrow"),
                ("*.example.com/*", "wide"),
            ],
        ] {
            let t = table(&routes);
            assert_eq!(t.lookup("a.shop.example.com", "/"), Some("narrow"));
            assert_eq!(t.lookup("a.example.com", "/"), Some("wide"));
        }
    }
}
