//! Which addresses outbound requests may reach. Refused by default: everything that is not the
//! public internet (loopback, "this network", private ranges, CGNAT, link-local and cloud
//! metadata, multicast, broadcast, documentation and reserved ranges, IPv6 loopback,
//! unique-local, link-local, site-local and multicast), also when an IPv4 address hides in an
//! IPv6 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4). `[outbound] ip_range_blacklist` adds
//! ranges; `ip_range_whitelist` lets ranges through whatever else says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::error::{Error, Result};

/// Ranges no outbound request reaches unless whitelisted.
const REFUSED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// The outbound address policy.
#[derive(Clone, Debug)]
pub struct AddressPolicy {
    refused: Vec<IpNet>,
    allowed: Vec<IpNet>,
}

fn parse_ranges(ranges: &[String], key: &str) -> Result<Vec<IpNet>> {
    ranges
        .iter()
        .map(|range| {
            range
                .trim()
                .parse::<IpNet>()
                .or_else(|_| range.trim().parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::internal(format!("outbound.{key}: {range:?} is not a CIDR range"))
                })
        })
        .collect()
}

/// The IPv4 address an IPv6 address carries, in the forms that reach IPv4 hosts.
fn embedded_ipv4(ip: &Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    let octets = ip.octets();
    let last_four = || Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible (deprecated, ::a.b.c.d), beside :: and ::1 themselves.
    if segments[..6].iter().all(|s| *s == 0) && !(segments[6] == 0 && segments[7] <= 1) {
        return Some(last_four());
    }
    // NAT64 (64:ff9b::/96).
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last_four());
    }
    // 6to4 (2002:AABB:CCDD::/48).
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

impl AddressPolicy {
    pub fn new(blacklist: &[String], whitelist: &[String]) -> Result<Self> {
        let mut refused: Vec<IpNet> = REFUSED
            .iter()
            .map(|r| r.parse().expect("built-in ranges are valid"))
            .collect();
        refused.extend(parse_ranges(blacklist, "ip_range_blacklist")?);
        Ok(Self {
            refused,
            allowed: parse_ranges(whitelist, "ip_range_whitelist")?,
        })
    }

    fn whitelisted(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&ip))
    }

    fn blacklisted(&self, ip: IpAddr) -> bool {
        self.refused.iter().any(|net| net.contains(&ip))
    }

    /// Whether an outbound request may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.whitelisted(ip) {
            return true;
        }
        if self.blacklisted(ip) {
            return false;
        }
        match ip {
            IpAddr::V6(v6) => match embedded_ipv4(&v6) {
                Some(v4) => self.allows(IpAddr::V4(v4)),
                None => true,
            },
            IpAddr::V4(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(blacklist: &[&str], whitelist: &[&str]) -> AddressPolicy {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        AddressPolicy::new(&owned(blacklist), &owned(whitelist)).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn everything_but_the_public_internet_is_refused() {
        let p = policy(&[], &[]);
        for refused in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "fec0::1",
            "2001:db8::1",
            // IPv4 hidden in IPv6.
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::10.1.2.3",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
        ] {
            assert!(!p.allows(ip(refused)), "{refused} must be refused");
        }
        for allowed in [
            "93.184.215.14",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::6810:84e5",
            "::ffff:93.184.215.14",
            "64:ff9b::5db8:d70e",
            "2002:5db8:d70e::1",
        ] {
            assert!(p.allows(ip(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn the_operator_adds_and_opens_ranges() {
        let p = policy(
            &["93.184.0.0/16", "2606:4700::/32"],
            &["127.0.0.1/32", "10.1.0.0/16"],
        );
        assert!(!p.allows(ip("93.184.215.14")));
        assert!(!p.allows(ip("::ffff:93.184.215.14")));
        assert!(!p.allows(ip("2606:4700::1")));
        assert!(p.allows(ip("127.0.0.1")), "whitelisted");
        assert!(!p.allows(ip("127.0.0.2")), "only what is whitelisted");
        assert!(p.allows(ip("10.1.2.3")));
        assert!(!p.allows(ip("10.2.0.1")));
        // A single address is a range of one.
        let single = policy(&["1.2.3.4"], &[]);
        assert!(!single.allows(ip("1.2.3.4")));
        assert!(AddressPolicy::new(&["not a range".into()], &[]).is_err());
    }
}
