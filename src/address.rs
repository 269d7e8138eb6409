//! Which IP addresses a webhook may reach when `allow_private_networks` is
//! off: only globally routable ones. Everything in the IANA special-purpose
//! registries is private here (loopback, RFC 1918, carrier-grade NAT,
//! link-local with the cloud metadata service at 169.254.169.254, unique
//! local IPv6, documentation, benchmarking, multicast, reserved), and so is
//! an IPv6 address that embeds one (IPv4-mapped, IPv4-translated, NAT64,
//! local-use NAT64, 6to4). The checks
//! are made on text (an IP literal in a URL, in any form the resolver
//! reads as an address) by `config` and on the resolved addresses at
//! connect time by `deliver`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of private address `ip` is, or `None` for a public one.
pub fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "a \"this network\" address (0.0.0.0/8)",
        (10, ..) => "a private address (10.0.0.0/8)",
        (100, 64..=127, _) => "a carrier-grade NAT address (100.64.0.0/10)",
        (127, ..) => "a loopback address (127.0.0.0/8)",
        (169, 254, _) => {
            "a link-local address (169.254.0.0/16, where cloud metadata services live)"
        }
        (172, 16..=31, _) => "a private address (172.16.0.0/12)",
        (192, 0, 0) => "an IETF protocol address (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (192, 88, 99) => "a 6to4 relay address (192.88.99.0/24)",
        (192, 168, _) => "a private address (192.168.0.0/16)",
        (198, 18..=19, _) => "a benchmarking address (198.18.0.0/15)",
        (224..=239, ..) => "a multicast address (224.0.0.0/4)",
        (240..=255, ..) => "a reserved or broadcast address (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => return Some("the unspecified address (::)"),
        [0, 0, 0, 0, 0, 0, 0, 1] => return Some("a loopback address (::1)"),
        _ => {}
    }
    if let Some(kind) = embedded_v4(ip).and_then(v4_kind) {
        return Some(kind);
    }
    Some(match s {
        // Not globally reachable whatever it embeds (RFC 8215, IANA).
        [0x64, 0xff9b, 1, ..] => "a local-use NAT64 address (64:ff9b:1::/48)",
        [0x100, 0, 0, 0, ..] => "a discard-only address (100::/64)",
        [0x2001, 0x0db8, ..] => "a documentation address (2001:db8::/32)",
        [0x2001, b, ..] if b < 0x200 => "an IETF protocol address (2001::/23)",
        [0x3fff, b, ..] if b < 0x1000 => "a documentation address (3fff::/20)",
        [0x5f00, ..] => "a segment-routing address (5f00::/16)",
        [a, ..] if a & 0xfe00 == 0xfc00 => "a unique local address (fc00::/7)",
        [a, ..] if a & 0xffc0 == 0xfe80 => "a link-local address (fe80::/10)",
        [a, ..] if a & 0xffc0 == 0xfec0 => "a site-local address (fec0::/10)",
        [a, ..] if a & 0xff00 == 0xff00 => "a multicast address (ff00::/8)",
        _ => return None,
    })
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-
/// translated (`::ffff:0:a.b.c.d`, SIIT), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::/96`), local-use NAT64 (`64:ff9b:1::/48`, read as a
/// /96 prefix: the last 32 bits) or 6to4 (`2002::/16`) address: it is where
/// the packets really go.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(tail(hi, lo)),
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(tail(hi, lo)),
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x64, 0xff9b, 1, _, _, _, hi, lo] => Some(tail(hi, lo)),
        [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        _ => None,
    }
}

/// The private kind of a URL host written as an IP literal, in any form
/// the resolver reads as one (`2852039166`, `0xa9fea9fe`, `127.1`: see
/// [`crate::url::host_ip`]); `None` for a public literal or a name: names,
/// `localhost` included, are checked once resolved, against every address
/// they resolve to.
pub fn private_host(host: &str) -> Option<&'static str> {
    crate::url::host_ip(host)
        .ok()
        .flatten()
        .and_then(private_kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<&'static str> {
        private_kind(s.parse().unwrap())
    }

    #[test]
    fn special_purpose_addresses_are_private() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::2",
            "64:ff9b::a00:1",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::7f00:1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:169.254.169.254",
            "::ffff:0:10.0.0.1",
            "2002:c0a8:101::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(kind(ip).is_some(), "{ip} counted as public");
        }
        assert_eq!(
            kind("169.254.169.254"),
            Some("a link-local address (169.254.0.0/16, where cloud metadata services live)")
        );
        // Classified by the IPv4 address they embed.
        for ip in ["64:ff9b:1::a9fe:a9fe", "::ffff:0:169.254.169.254"] {
            assert_eq!(kind(ip), kind("169.254.169.254"), "{ip}");
        }
        assert_eq!(
            kind("64:ff9b:1::808:808"),
            Some("a local-use NAT64 address (64:ff9b:1::/48)")
        );
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(kind(ip), None, "{ip} counted as private");
        }
    }

    #[test]
    fn hosts_as_written_in_urls() {
        assert_eq!(private_host("localhost"), None, "names resolve later");
        assert!(private_host("[::1]").is_some());
        assert!(private_host("[::ffff:10.0.0.1]").is_some());
        assert!(private_host("10.0.0.1").is_some());
        assert_eq!(private_host("example.com"), None, "names resolve later");
        assert_eq!(private_host("93.184.215.14"), None);
        for shorthand in [
            "2852039166",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
            "169.254.43518",
        ] {
            assert_eq!(
                private_host(shorthand),
                kind("169.254.169.254"),
                "{shorthand}"
            );
        }
        assert_eq!(private_host("127.1"), kind("127.0.0.1"));
        assert_eq!(private_host("134744072"), None, "8.8.8.8");
    }
}
