//! The local addresses outgoing target connections are bound to ([`SourceAddrs`],
//! `barrage worker --source-addresses`): past the ephemeral-port limit.
//!
//! A TCP connection is named by (source IP, source port, target IP, target port). With
//! one source IP, one worker holds at most one connection per ephemeral port to a
//! target address: about 28,000 with Linux's default `ip_local_port_range`
//! (32768-60999). Binding each connection to the next of several local addresses
//! (round-robin, port 0 so the kernel still picks the port) multiplies that by the
//! number of addresses. No `SO_REUSEADDR`: a port is never shared between two
//! connections of one source address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most addresses one worker binds to: 4,096 x ~28k ports is far past what one
/// process holds in file descriptors, and the bound keeps a typo (`10.0.0.0/8`) from
/// allocating millions of entries.
pub const MAX_SOURCE_ADDRESSES: usize = 4096;

/// Local addresses to bind outgoing target connections to, taken in turn.
#[derive(Debug)]
pub struct SourceAddrs {
    /// Every address, one family, in the order given (a CIDR block expanded in order).
    addrs: Vec<IpAddr>,
    /// The index of the next connection's address (modulo `addrs.len()`); one relaxed
    /// increment per connection opened, never per request.
    next: AtomicUsize,
}

impl SourceAddrs {
    /// Parses a comma-separated list of IP addresses and CIDR blocks
    /// (`127.0.0.2,127.0.0.3`, `127.0.1.0/28`, `fd00::10/124`). Every address of a block
    /// is used, its first and last included. All must be of one family (a connection's
    /// source and target are of one family) and at most [`MAX_SOURCE_ADDRESSES`] in all.
    pub fn parse(list: &str) -> Result<SourceAddrs, String> {
        let mut addrs: Vec<IpAddr> = Vec::new();
        for item in list.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!(
                    "\"{list}\": an empty entry; expected IP addresses or CIDR blocks separated by commas"
                ));
            }
            expand(item, &mut addrs)?;
            if addrs.len() > MAX_SOURCE_ADDRESSES {
                return Err(format!(
                    "\"{list}\": more than {MAX_SOURCE_ADDRESSES} addresses; name fewer (a smaller CIDR block)"
                ));
            }
        }
        if let (Some(first), Some(other)) = (addrs.first(), addrs.iter().find(|a| a.is_ipv4() != addrs[0].is_ipv4())) {
            return Err(format!(
                "\"{list}\" mixes IPv4 and IPv6 ({first} and {other}); a connection's source and target are of one family, so name one family"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = addrs.iter().find(|a| !seen.insert(**a)) {
            return Err(format!("\"{list}\" names {dup} twice"));
        }
        Ok(SourceAddrs {
            addrs,
            next: AtomicUsize::new(0),
        })
    }

    /// How many addresses there are (at least one).
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Never true: [`SourceAddrs::parse`] refuses an empty list.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Whether the addresses are IPv4 ones.
    pub fn is_ipv4(&self) -> bool {
        self.addrs.first().is_some_and(IpAddr::is_ipv4)
    }

    /// Binds a socket to each address (port 0) and lets it go: an address this host
    /// does not have fails here, named, rather than as every connection's failure.
    pub fn check_bindable(&self) -> Result<(), String> {
        for ip in &self.addrs {
            let socket = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
            .map_err(|e| format!("cannot open a socket to bind {ip}: {e}"))?;
            socket.bind(SocketAddr::new(*ip, 0)).map_err(|e| {
                format!("cannot bind to source address {ip}: {e} (is the address configured on this host?)")
            })?;
        }
        Ok(())
    }

    /// The address the next connection binds to (round-robin).
    pub(crate) fn next(&self) -> IpAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        // `parse` refuses an empty list, so the modulo has a divisor.
        self.addrs[i % self.addrs.len()]
    }
}

/// Appends the addresses of one entry: an address or a CIDR block.
fn expand(item: &str, out: &mut Vec<IpAddr>) -> Result<(), String> {
    let Some((ip, bits)) = item.split_once('/') else {
        let ip = item
            .parse::<IpAddr>()
            .map_err(|_| format!("`{item}` is not an IP address or a CIDR block (like 127.0.1.0/28)"))?;
        out.push(ip);
        return Ok(());
    };
    let ip = ip
        .parse::<IpAddr>()
        .map_err(|_| format!("`{item}`: `{ip}` is not an IP address"))?;
    let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
    let bits: u32 = bits
        .parse()
        .ok()
        .filter(|b| *b <= width)
        .ok_or_else(|| format!("`{item}`: the prefix length must be 0 to {width}"))?;
    let host_bits = width - bits;
    if host_bits > MAX_SOURCE_ADDRESSES.trailing_zeros() {
        return Err(format!(
            "`{item}` holds {} addresses; at most {MAX_SOURCE_ADDRESSES} are allowed",
            if host_bits >= 64 {
                format!("2^{host_bits}")
            } else {
                (1u128 << host_bits).to_string()
            }
        ));
    }
    let base = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    // `host_bits` is at most 12 here, so neither shift overflows.
    let mask = u128::MAX << host_bits;
    if base & !mask != 0 {
        return Err(format!(
            "`{item}`: {ip} has host bits set for a /{bits}; write the block's first address"
        ));
    }
    for n in 0..(1u128 << host_bits) {
        let v = base | n;
        out.push(match ip {
            // `v` stays inside the /bits block of a 32-bit address.
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(s: &SourceAddrs) -> Vec<String> {
        s.addrs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_list_and_blocks_expand_in_order() {
        let s = SourceAddrs::parse("127.0.0.2, 127.0.0.3").unwrap();
        assert_eq!(ips(&s), ["127.0.0.2", "127.0.0.3"]);
        let s = SourceAddrs::parse("127.0.1.0/30,127.0.2.7/32").unwrap();
        assert_eq!(
            ips(&s),
            ["127.0.1.0", "127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.2.7"]
        );
        assert_eq!(SourceAddrs::parse("127.0.16.0/20").unwrap().len(), 4096);
        let s = SourceAddrs::parse("fd00::10/126").unwrap();
        assert_eq!(ips(&s), ["fd00::10", "fd00::11", "fd00::12", "fd00::13"]);
        assert!(!s.is_ipv4());
    }

    #[test]
    fn connections_take_the_addresses_in_turn() {
        let s = SourceAddrs::parse("127.0.0.2,127.0.0.3,127.0.0.4").unwrap();
        let picked: Vec<String> = (0..5).map(|_| s.next().to_string()).collect();
        assert_eq!(
            picked,
            ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2", "127.0.0.3"]
        );
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        let err = |s: &str| SourceAddrs::parse(s).unwrap_err();
        assert!(err("").contains("empty entry"));
        assert!(err("127.0.0.2,,127.0.0.3").contains("empty entry"));
        assert!(err("localhost").contains("`localhost` is not an IP address"));
        assert!(err("127.0.0.0/33").contains("0 to 32"));
        assert!(err("127.0.0.0/x").contains("0 to 32"));
        assert!(err("10.0.0.0/8").contains("16777216 addresses"));
        assert!(err("fd00::/64").contains("2^64 addresses"));
        assert!(err("127.0.0.1/24").contains("host bits"));
        assert!(err("127.0.0.2,::1").contains("mixes IPv4 and IPv6"));
        assert!(err("127.0.0.2,127.0.0.2").contains("127.0.0.2 twice"));
        assert!(err("127.0.16.0/20,127.0.0.2").contains("more than 4096"));
    }

    #[test]
    fn loopback_aliases_bind_and_foreign_addresses_are_named() {
        // Linux routes all of 127.0.0.0/8 on lo; 192.0.2.1 (TEST-NET-1) is on no host.
        SourceAddrs::parse("127.0.0.2/31").unwrap().check_bindable().unwrap();
        let err = SourceAddrs::parse("192.0.2.1").unwrap().check_bindable().unwrap_err();
        assert!(err.contains("192.0.2.1"), "{err}");
    }
}
