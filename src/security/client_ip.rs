//! The client's IP address: the TCP peer, or, when the peer is a trusted reverse proxy
//! (`SWITCHBOARD_TRUSTED_PROXIES`), the nearest address in `X-Forwarded-For` that is not itself a
//! trusted proxy. A client that writes its own `X-Forwarded-For` changes nothing unless it is a
//! trusted proxy, and even then only the hops it appended count, so rotating the header cannot
//! buy fresh rate-limit buckets.

use std::fmt;
use std::future::{Ready, ready};
use std::net::{IpAddr, Ipv4Addr};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use ipnet::IpNet;

use crate::http::error::ApiError;
use crate::state::AppState;

/// The client IP of a request, as an extractor (handlers take `ip: ClientIp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromRequest for ClientIp {
    type Error = ApiError;
    type Future = Ready<Result<ClientIp, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trusted = req.app_data::<web::Data<AppState>>().map(|s| s.config.trusted_proxies.as_slice());
        ready(Ok(client_ip(req, trusted.unwrap_or_default())))
    }
}

/// The client IP of `req` given the trusted proxy networks.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> ClientIp {
    let peer = req.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| canonical(a.ip()));
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect::<Vec<_>>();
    ClientIp(resolve(peer, &forwarded, trusted))
}

/// Walks `X-Forwarded-For` from the right (the hop our proxy appended) while the address seen so
/// far is a trusted proxy. An entry that is not an address stops the walk: whoever wrote it is
/// not a proxy we trust, and the last good hop is the client.
fn resolve(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    for entry in forwarded.iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match parse_hop(entry) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:4711` or `203.0.113.7:4711`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = entry.parse::<std::net::SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    None
}

/// IPv4 addresses written as IPv6 (`::ffff:a.b.c.d`) count as IPv4, so one client has one key.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (case, peer, X-Forwarded-For entries, trusted proxies, expected client).
    type ResolveCase<'a> = (&'a str, &'a str, &'a [&'a str], &'a [IpNet], &'a str);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        let cases: &[ResolveCase] = &[
            ("no proxies configured: the peer", "198.51.100.1", &["203.0.113.7"], &[], "198.51.100.1"),
            (
                "an untrusted peer's header is ignored",
                "198.51.100.1",
                &["203.0.113.7"],
                &proxies,
                "198.51.100.1",
            ),
            ("a trusted peer: its hop", "10.0.0.2", &["203.0.113.7"], &proxies, "203.0.113.7"),
            (
                "the client's own prefix is ignored: the rightmost untrusted hop wins",
                "10.0.0.2",
                &["1.1.1.1", " 203.0.113.7"],
                &proxies,
                "203.0.113.7",
            ),
            (
                "a chain of trusted proxies is skipped",
                "10.0.0.2",
                &["203.0.113.7", "10.0.0.9"],
                &proxies,
                "203.0.113.7",
            ),
            (
                "garbage stops the walk at the last good hop",
                "10.0.0.2",
                &["203.0.113.7", "junk"],
                &proxies,
                "10.0.0.2",
            ),
            ("a trusted peer without the header: the peer", "127.0.0.1", &[], &proxies, "127.0.0.1"),
            ("IPv6 with a port", "10.0.0.2", &["[2001:db8::1]:4711"], &proxies, "2001:db8::1"),
            ("IPv4-mapped IPv6 counts as IPv4", "10.0.0.2", &["::ffff:203.0.113.7"], &proxies, "203.0.113.7"),
        ];
        for (case, peer, header, trusted, expected) in cases {
            assert_eq!(resolve(ip(peer), header, trusted), ip(expected), "{case}");
        }
    }

    #[test]
    fn ipv6_clients_share_a_key_per_64_and_ipv4_clients_have_their_own() {
        use crate::seams::limiter::ip_key;
        let a = ip_key(ip("2001:db8:1:2:aaaa::1"));
        let b = ip_key(ip("2001:db8:1:2:bbbb::2"));
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_ne!(ip_key(ip("203.0.113.7")), ip_key(ip("203.0.113.8")));
    }
}
