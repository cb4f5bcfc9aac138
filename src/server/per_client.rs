//! A cap on what one client address holds at once, below the server's global connection
//! cap, so that one address can never take every connection.
//!
//! What is counted depends on where the address comes from (see [`ClientAddressSource`]):
//! open connections per peer address when clients connect directly, requests in flight per
//! the trusted proxy header's address behind a proxy, where every connection comes from the
//! proxy itself.
//!
//! An IPv6 client is counted per /64, the block one subscriber is usually given, since it
//! can pick any address in it; an IPv4 address written in IPv6 form counts as itself.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderName};

/// Connections (or, behind a proxy, requests) one client address may hold at once.
pub const MAX_PER_CLIENT: usize = 32;

const _: () = assert!(
    MAX_PER_CLIENT < super::listener::MAX_CONNECTIONS,
    "one address must never be able to take every connection"
);

/// How the server learns a request's client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAddressSource {
    /// The TCP peer: clients connect directly.
    Peer,
    /// `TRUSTED_PROXY_HEADER`: the proxy in front writes the client's address in this
    /// header (Fly.io's `Fly-Client-IP`). Only right when nothing reaches the port except
    /// through that proxy, since anyone else could write the header too.
    ProxyHeader(HeaderName),
}

impl ClientAddressSource {
    /// The client address of a request from `peer` with `headers`. Behind a proxy, the
    /// header's last address (the one the proxy itself added, in a list such as
    /// `X-Forwarded-For`); the peer when the header is missing or holds no address.
    pub fn client_address(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        let ClientAddressSource::ProxyHeader(name) = self else {
            return peer.ip();
        };
        headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|address| address.trim().parse().ok())
            .unwrap_or(peer.ip())
    }
}

/// How many slots each client address holds, and the most it may.
#[derive(Clone)]
pub struct PerClientLimit {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

impl PerClientLimit {
    pub fn new(max: usize) -> Self {
        PerClientLimit {
            held: Arc::new(Mutex::new(HashMap::new())),
            max,
        }
    }

    /// A slot for `address`, or `None` when it holds the most it may already.
    pub fn try_take(&self, address: IpAddr) -> Option<ClientSlot> {
        let address = counted_as(address);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(address).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            limit: self.clone(),
            address,
        })
    }

    /// Slots `address` holds now.
    pub fn held_by(&self, address: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&counted_as(address)).copied().unwrap_or(0)
    }
}

/// The address `address` is counted under: an IPv4 one as itself (also when written as an
/// IPv4-mapped IPv6 address), an IPv6 one as its /64.
fn counted_as(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
            v6.to_bits() & !u128::from(u64::MAX),
        )),
    }
}

/// One connection or request of a client address; given back when dropped.
pub struct ClientSlot {
    limit: PerClientLimit,
    address: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.limit.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.address) {
            *count -= 1;
            // Addresses that hold nothing are forgotten, so the map stays as small as
            // what is open.
            if *count == 0 {
                held.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_its_share_and_gets_it_back() {
        let limit = PerClientLimit::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let first = limit.try_take(a).unwrap();
        let _second = limit.try_take(a).unwrap();
        assert!(limit.try_take(a).is_none());
        let other = limit.try_take(b).expect("another address is not affected");
        drop(first);
        assert_eq!(limit.held_by(a), 1);
        assert!(limit.try_take(a).is_some());
        drop(other);
        assert!(limit.held.lock().unwrap().get(&b).is_none());
    }

    #[test]
    fn an_ipv6_client_is_counted_per_64_and_a_mapped_ipv4_one_as_itself() {
        let limit = PerClientLimit::new(2);
        let in_one_64 = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"];
        let _held: Vec<ClientSlot> = in_one_64
            .iter()
            .map(|a| limit.try_take(a.parse().unwrap()).unwrap())
            .collect();
        assert!(
            limit
                .try_take("2001:db8:1:2:abcd::7".parse().unwrap())
                .is_none(),
            "another address of the same /64 is the same client"
        );
        assert!(limit.try_take("2001:db8:1:3::1".parse().unwrap()).is_some());

        let v4: IpAddr = "192.0.2.8".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.8".parse().unwrap();
        let _first = limit.try_take(v4).unwrap();
        let _second = limit.try_take(mapped).unwrap();
        assert!(limit.try_take(v4).is_none());
        assert_eq!(limit.held_by(mapped), 2);
        assert!(limit.try_take("192.0.2.9".parse().unwrap()).is_some());
    }

    #[test]
    fn the_address_comes_from_the_peer_or_the_trusted_header() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("fly-client-ip", "203.0.113.9".parse().unwrap());
        headers.insert("x-forwarded-for", "1.2.3.4, 198.51.100.7".parse().unwrap());
        assert_eq!(
            ClientAddressSource::Peer.client_address(&headers, peer),
            peer.ip()
        );
        let fly = ClientAddressSource::ProxyHeader(HeaderName::from_static("fly-client-ip"));
        assert_eq!(
            fly.client_address(&headers, peer),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let forwarded =
            ClientAddressSource::ProxyHeader(HeaderName::from_static("x-forwarded-for"));
        assert_eq!(
            forwarded.client_address(&headers, peer),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "the address the proxy added, not the one the client wrote"
        );
        headers.insert("fly-client-ip", "not an address".parse().unwrap());
        assert_eq!(fly.client_address(&headers, peer), peer.ip());
        assert_eq!(fly.client_address(&HeaderMap::new(), peer), peer.ip());
    }
}
