//! IP addresses as Elasticsearch indexes them: every address is a 128-bit
//! IPv6 value, IPv4 `a.b.c.d` being `::ffff:a.b.c.d` (so the IPv4-mapped IPv6
//! form and the dotted form are the same address). A CIDR is a prefix over
//! that 128-bit space; an IPv4 CIDR `/n` is the mapped prefix `/96+n`, so it
//! never contains a native IPv6 address.
//!
//! **Why hand-written.** Parsing is std's (`IpAddr`) and ipnet's (CIDR
//! blocks); what is this module's own is only the single 128-bit space, which
//! is Elasticsearch's model: `ipnet::IpNet::contains` keeps IPv4 and IPv6
//! apart, so the mapped form `::ffff:a.b.c.d` would not fall in an IPv4 block
//! as it does in Elasticsearch.

use std::net::IpAddr;

/// Parse an address (`10.1.2.3`, `::ffff:10.1.2.3`, `FE80::1`) into its
/// 128-bit form. Zone ids (`fe80::1%eth0`), ports and garbage are `None`.
pub fn parse_ip(s: &str) -> Option<u128> {
    let ip: IpAddr = s.parse().ok()?;
    Some(match ip {
        IpAddr::V4(v4) => 0xffff_0000_0000u128 | u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    })
}

/// A CIDR block over the 128-bit address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: u128,
    pub prefix: u8,
}

impl Cidr {
    /// Parse `a.b.c.d/n`, `x::/n`, or a bare address (a one-address block).
    /// Host bits beyond the prefix are ignored, as Elasticsearch does.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (base, prefix) = if s.contains('/') {
            // ipnet checks the address and the prefix length for its family.
            match s.parse::<ipnet::IpNet>().ok()? {
                ipnet::IpNet::V4(n) => (0xffff_0000_0000u128 | u32::from(n.addr()) as u128, 96 + n.prefix_len()),
                ipnet::IpNet::V6(n) => (u128::from(n.addr()), n.prefix_len()),
            }
        } else {
            (parse_ip(s)?, 128)
        };
        Some(Cidr { network: base & mask(prefix), prefix })
    }

    /// True if `ip` lies in this block.
    pub fn contains(&self, ip: u128) -> bool {
        ip & mask(self.prefix) == self.network
    }
}

fn mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_v4_is_v4() {
        assert_eq!(parse_ip("::ffff:10.1.2.3"), parse_ip("10.1.2.3"));
        assert_eq!(parse_ip("::ffff:0.0.0.0"), parse_ip("0.0.0.0"));
        assert!(Cidr::parse("10.0.0.0/8").unwrap().contains(parse_ip("::ffff:10.1.2.3").unwrap()));
    }

    #[test]
    fn v4_blocks_never_hold_native_v6() {
        let all_v4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all_v4.contains(parse_ip("8.8.8.8").unwrap()));
        assert!(!all_v4.contains(parse_ip("2001:db8::1").unwrap()));
        assert!(!all_v4.contains(parse_ip("::").unwrap()));
    }

    #[test]
    fn exact_and_case() {
        let one = Cidr::parse("::1").unwrap();
        assert!(one.contains(parse_ip("::1").unwrap()));
        assert!(!one.contains(parse_ip("::2").unwrap()));
        let ll = Cidr::parse("FE80::/10").unwrap();
        assert!(ll.contains(parse_ip("fe80::abcd").unwrap()));
        assert!(ll.contains(parse_ip("FEBF::1").unwrap()));
        assert!(!ll.contains(parse_ip("fec0::1").unwrap()));
    }

    #[test]
    fn garbage() {
        for s in ["", "1.2.3", "1.2.3.4.5", "fe80::1%eth0", "1.2.3.4:80", "256.1.1.1", "x"] {
            assert_eq!(parse_ip(s), None, "{s}");
        }
        for s in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10/8", "a/8", "10.0.0.0/-1"] {
            assert_eq!(Cidr::parse(s), None, "{s}");
        }
    }
}
