//! The client's address: the socket peer, unless that peer is a trusted
//! proxy, in which case the forwarding headers are believed, right to left,
//! up to the first address that is not itself a trusted proxy.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// At most this many forwarding hops are examined.
const MAX_HOPS: usize = 16;

fn trusted(ip: &IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|n| n.contains(ip))
}

/// Addresses named in `Forwarded` (`for=`) or, without it, `X-Forwarded-For`,
/// in the order they were appended.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<IpAddr> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(v.trim().trim_matches('"')))?
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| parse_node(s.trim()))
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(host, _)| host.parse().ok())
}

/// The client address for GeoIP, given the socket peer.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    if !trusted(&peer, proxies) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let mut client = peer;
    for hop in chain.iter().rev().take(MAX_HOPS) {
        client = *hop;
        if !trusted(hop, proxies) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(peer: &str, headers: &[(&str, &str)], expected: &str) {
        let proxies: Vec<IpNet> = ["10.0.0.0/8", "127.0.0.1/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        assert_eq!(
            client_ip(peer.parse().unwrap(), &map, &proxies),
            expected.parse::<IpAddr>().unwrap(),
            "{peer} {headers:?}"
        );
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        check(
            "203.0.113.9",
            &[("x-forwarded-for", "1.1.1.1")],
            "203.0.113.9",
        );
        check(
            "203.0.113.9",
            &[("forwarded", "for=1.1.1.1")],
            "203.0.113.9",
        );
    }

    #[test]
    fn trusted_proxies_are_believed_right_to_left() {
        check("10.0.0.1", &[], "10.0.0.1");
        check(
            "10.0.0.1",
            &[("x-forwarded-for", "198.51.100.7")],
            "198.51.100.7",
        );
        // The client spoofs a first hop; the proxy appends the real address.
        check(
            "10.0.0.1",
            &[("x-forwarded-for", "1.1.1.1, 198.51.100.7")],
            "198.51.100.7",
        );
        // Two trusted proxies in a row.
        check(
            "10.0.0.1",
            &[("x-forwarded-for", "198.51.100.7, 10.0.0.2")],
            "198.51.100.7",
        );
        check(
            "127.0.0.1",
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("x-forwarded-for", "10.1.1.1"),
            ],
            "198.51.100.7",
        );
        check(
            "10.0.0.1",
            &[("x-forwarded-for", "garbage, 198.51.100.7")],
            "198.51.100.7",
        );
        check("10.0.0.1", &[("x-forwarded-for", "garbage")], "10.0.0.1");
    }

    #[test]
    fn forwarded_header_forms() {
        check(
            "10.0.0.1",
            &[("forwarded", "for=198.51.100.7;proto=https")],
            "198.51.100.7",
        );
        check(
            "10.0.0.1",
            &[("forwarded", "for=\"[2001:db8::7]:4711\"")],
            "2001:db8::7",
        );
        check(
            "10.0.0.1",
            &[("forwarded", "for=1.1.1.1, for=198.51.100.7:80")],
            "198.51.100.7",
        );
        check(
            "10.0.0.1",
            &[
                ("forwarded", "for=198.51.100.7"),
                ("x-forwarded-for", "1.1.1.1"),
            ],
            "198.51.100.7",
        );
        check(
            "10.0.0.1",
            &[
                ("forwarded", "for=unknown"),
                ("x-forwarded-for", "198.51.100.7"),
            ],
            "198.51.100.7",
        );
    }
}
