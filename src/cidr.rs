//! Client IP addresses, CIDR ranges and address intervals for blocking and throttling conditions.

use std::net::IpAddr;

/// An address range: a network address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `203.0.113.0/24` or `2001:db8::/32`; a bare address is a single-host range.
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().map_err(|_| format!("`{address}` is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(format!("`/{prefix}` is not a prefix length from 0 to {max}"))?,
            None => max,
        };
        Ok(IpRange::canonical(network, prefix))
    }

    /// A range as client addresses are compared: canonical, as [`parse_source_address`] makes
    /// them (an IPv4-mapped range of at least `/96`, `::ffff:203.0.113.0/120`, is the IPv4 range
    /// `203.0.113.0/24`, or it would hold no client).
    fn canonical(network: IpAddr, prefix: u8) -> IpRange {
        match (network, prefix.checked_sub(96)) {
            (IpAddr::V6(v6), Some(v4_prefix)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpRange { network: IpAddr::V4(v4), prefix: v4_prefix },
                None => IpRange { network, prefix },
            },
            _ => IpRange { network, prefix },
        }
    }

    /// Whether the range holds `address` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// Whether `ip` lies between `low` and `high` (canonical addresses of one family), the ends
/// included or not. `::ffff:192.0.2.1` is `192.0.2.1`; an address of the other family is never
/// between them.
pub fn between(ip: IpAddr, low: IpAddr, high: IpAddr, inclusive: bool) -> bool {
    let ip = ip.to_canonical();
    let comparable = low.is_ipv4() == ip.is_ipv4();
    comparable && if inclusive { low <= ip && ip <= high } else { low < ip && ip < high }
}

/// The IP of Envoy's `source.address` (`1.2.3.4:5678`, `[::1]:5678`, or a bare address).
pub fn parse_source_address(text: &str) -> Option<IpAddr> {
    // An IPv4-mapped IPv6 address (a dual-stack listener's) is the IPv4 address it carries:
    // blocking conditions, JWT API key restrictions and `$clientIp` keys see one spelling.
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_match_v4_v6_and_mapped_addresses() {
        let range = IpRange::parse("203.0.113.0/24").unwrap();
        assert!(range.contains(ip("203.0.113.77")));
        assert!(!range.contains(ip("203.0.114.1")));
        assert!(range.contains(ip("::ffff:203.0.113.5")));
        let everything = IpRange::parse("0.0.0.0/0").unwrap();
        assert!(everything.contains(ip("8.8.8.8")));
        let host = IpRange::parse("127.0.0.1").unwrap();
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let v6 = IpRange::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("1.2.3.4")));
    }

    /// Client addresses are compared canonical (a dual-stack listener's `::ffff:192.0.2.1` is
    /// `192.0.2.1`): a range or an address written IPv4-mapped is the IPv4 one, or it loads (a
    /// blocking condition, a JWT API key's `permittedIP`) and never holds any client.
    #[test]
    fn ranges_written_ipv4_mapped_hold_the_ipv4_clients() {
        let client = parse_source_address("[::ffff:203.0.113.5]:443").unwrap();
        for written in ["::ffff:203.0.113.0/120", "::ffff:203.0.113.5", "::FFFF:cb00:7105", "::ffff:0:0/96"] {
            let range = IpRange::parse(written).unwrap();
            assert!(range.contains(client), "{written}");
            assert!(range.contains(ip("::ffff:203.0.113.5")), "{written}");
        }
        assert!(!IpRange::parse("::ffff:203.0.113.0/120").unwrap().contains(ip("203.0.114.5")));
        assert_eq!(IpRange::parse("::ffff:203.0.113.0/120"), IpRange::parse("203.0.113.0/24"));
        // Below `/96` a mapped range is an IPv6 one (it holds more than IPv4 addresses).
        assert!(!IpRange::parse("::fffe:0:0/95").unwrap().contains(ip("203.0.113.5")));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for text in ["1.2.3.4/33", "::/129", "1.2.3/8", "x", "1.2.3.4/-1", ""] {
            assert!(IpRange::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn source_addresses() {
        assert_eq!(parse_source_address("127.0.0.1:5555"), Some(ip("127.0.0.1")));
        assert_eq!(parse_source_address("[::1]:80"), Some(ip("::1")));
        assert_eq!(parse_source_address("10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(parse_source_address("pipe:/x"), None);
        assert_eq!(parse_source_address("[::ffff:192.0.2.1]:80"), Some(ip("192.0.2.1")));
        assert_eq!(parse_source_address("::ffff:192.0.2.1"), Some(ip("192.0.2.1")));
    }
}
