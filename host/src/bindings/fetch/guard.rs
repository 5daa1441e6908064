//! Where guests' outbound requests may not go, checked on the address a
//! connection is actually made to — after DNS resolution, on every redirect
//! hop — not on the URL's text, which has many spellings for one address
//! (`2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`).
//!
//! - The host's own listeners (the front door, the admin API) are never
//!   reachable, whatever `allowed_outbound_hosts` says.
//! - Loopback, private, link-local, shared (CGNAT), unspecified and
//!   multicast addresses are reachable only through a rule naming that
//!   address or a range holding it; `*` never reaches them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::OutboundRule;

/// The addresses guests may not reach that only the running host knows:
/// its listeners, and its own interface addresses.
#[derive(Default)]
pub(crate) struct AddressGuard {
    listeners: ArcSwap<Vec<SocketAddr>>,
    /// The machine's interface addresses, where a listener bound to
    /// `0.0.0.0` or `::` answers too.
    local: ArcSwap<Vec<IpAddr>>,
}

/// Why an address was refused; the text names it and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub(crate) String);

impl AddressGuard {
    /// Makes `listeners` unreachable from now on.
    pub(crate) fn protect(&self, listeners: impl IntoIterator<Item = SocketAddr>) {
        let mut all = self.listeners.load().to_vec();
        all.extend(listeners);
        self.listeners.store(Arc::new(all));
        self.local.store(Arc::new(interface_addresses()));
    }

    /// Whether a connection to `ip:port` for a `scheme` URL is allowed
    /// under `rules`.
    pub(crate) fn check(
        &self,
        rules: &[OutboundRule],
        scheme: &str,
        ip: IpAddr,
        port: u16,
    ) -> Result<(), Refused> {
        let ip = canonical(ip);
        if self.is_own_listener(ip, port) {
            return Err(Refused(format!(
                "{scheme}://{} (this host's own listener)",
                SocketAddr::new(ip, port)
            )));
        }
        if let Some(kind) = special(ip)
            && !rules.iter().any(|r| r.names_address(scheme, ip, port))
        {
            return Err(Refused(format!(
                "{scheme}://{} (a {kind} address: a rule must name it or its range)",
                SocketAddr::new(ip, port)
            )));
        }
        Ok(())
    }

    fn is_own_listener(&self, ip: IpAddr, port: u16) -> bool {
        let local = self.local.load();
        let is_local = ip.is_loopback() || ip.is_unspecified() || local.contains(&ip);
        self.listeners.load().iter().any(|listener| {
            listener.port() == port
                && if listener.ip().is_unspecified() {
                    is_local
                } else {
                    canonical(listener.ip()) == ip
                }
        })
    }
}

/// An IPv4 address written as IPv6 (mapped `::ffff:a.b.c.d`), as itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, if it is one.
fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (b & 0xc0) == 64 {
        "shared (CGNAT)"
    } else if ip.is_multicast() || ip.is_broadcast() {
        "multicast"
    } else {
        return None;
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if (first & 0xfe00) == 0xfc00 {
        "private (unique local)"
    } else if (first & 0xffc0) == 0xfe80 || (first & 0xffc0) == 0xfec0 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if let Some(embedded) = embedded_v4(ip) {
        return special_v4(embedded);
    } else {
        return None;
    })
}

/// The IPv4 address inside an IPv4-compatible (`::a.b.c.d`) or NAT64
/// (`64:ff9b::a.b.c.d`) IPv6 address, which may lead to it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let compatible = s[..6].iter().all(|&x| x == 0);
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (compatible || nat64).then(|| Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32))
}

/// The machine's interface addresses.
fn interface_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we only read
    // and then free exactly once with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while let Some(ifaddr) = entry.as_ref() {
            if let Some(addr) = ifaddr.ifa_addr.as_ref() {
                match i32::from(addr.sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(ifaddr.ifa_addr as *const libc::sockaddr_in);
                        found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(ifaddr.ifa_addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            entry = ifaddr.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// DNS for one worker's requests to one scheme and port: resolves, then
/// keeps only the addresses the guard allows. reqwest gives a resolver the
/// name alone, so each (scheme, port) gets a client and a resolver of its
/// own: the port is part of the check.
pub(crate) struct GuardedResolver {
    pub(crate) guard: Arc<AddressGuard>,
    pub(crate) rules: Arc<[OutboundRule]>,
    pub(crate) scheme: &'static str,
    pub(crate) port: u16,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (guard, rules, scheme, port) = (
            self.guard.clone(),
            self.rules.clone(),
            self.scheme,
            self.port,
        );
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await?
                .collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check(&rules, scheme, addr.ip(), port) {
                    Ok(()) => true,
                    Err(refused) => {
                        refusal = Some(refused);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let refused =
                    refusal.unwrap_or_else(|| Refused(format!("{}: no address", name.as_str())));
                return Err(Box::new(Refused(format!(
                    "{} resolves to {}",
                    name.as_str(),
                    refused.0
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(texts: &[&str]) -> Vec<OutboundRule> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn private_addresses_need_a_rule_that_names_them() {
        let guard = AddressGuard::default();
        let any = rules(&["*://*:*"]);
        for spelled in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "fd00::1",
            "fe80::1",
            "224.0.0.1",
        ] {
            let ip: IpAddr = spelled.parse().unwrap();
            assert!(guard.check(&any, "http", ip, 80).is_err(), "{spelled}");
        }
        assert!(
            guard
                .check(&any, "http", "93.184.216.34".parse().unwrap(), 80)
                .is_ok()
        );
        let named = rules(&["http://10.0.0.0/8:*", "http://127.0.0.1:9000"]);
        assert!(
            guard
                .check(&named, "http", "10.9.9.9".parse().unwrap(), 1)
                .is_ok()
        );
        assert!(
            guard
                .check(&named, "http", "127.0.0.1".parse().unwrap(), 9000)
                .is_ok()
        );
        assert!(
            guard
                .check(&named, "http", "127.0.0.1".parse().unwrap(), 9001)
                .is_err()
        );
    }

    #[test]
    fn the_hosts_own_listeners_are_never_reachable() {
        let guard = AddressGuard::default();
        guard.protect([
            "127.0.0.1:8788".parse().unwrap(),
            "0.0.0.0:8787".parse().unwrap(),
        ]);
        let everything = rules(&["*://127.0.0.1:*", "*://0.0.0.0/0:*", "*://[::]/0:*"]);
        for (ip, port) in [
            ("127.0.0.1", 8788),
            ("::ffff:127.0.0.1", 8788),
            ("127.0.0.1", 8787),
            ("::1", 8787),
            ("0.0.0.0", 8787),
        ] {
            let refused = guard.check(&everything, "http", ip.parse().unwrap(), port);
            assert!(refused.is_err(), "{ip}:{port}");
        }
        assert!(
            guard
                .check(&everything, "http", "127.0.0.1".parse().unwrap(), 9000)
                .is_ok()
        );
    }
}
