//! Per-client and per-publisher limits of the HTTP API, shared by the connection layer's fast
//! path and the axum handlers:
//!
//! - who a client is ([`client_ip`]): the TCP peer, or, when the peer is a trusted proxy
//!   ([`IpRange`]), the rightmost `X-Forwarded-For` address that is not itself trusted;
//! - how many subscriptions one client address holds at once ([`SubscriberSlots`]), counted by
//!   a [`SlotGuard`] that lives as long as the subscriber's stream;
//! - how fast one publisher token may publish ([`PublishRate`], a keyed GCRA from `governor`).
//!
//! The hub-wide limits (total subscribers, queue bounds) live in `ssehub-hub`; the request-size
//! limits are checked where requests are read (`conn.rs`, hyper, `mercure/publish.rs`).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;

/// A range of IP addresses in CIDR notation (`10.0.0.0/8`, `::1/128`), or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// The network address (host bits zeroed).
    addr: IpAddr,
    /// Leading bits that must match.
    prefix: u8,
}

/// Why a string is not an [`IpRange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR range (examples: 10.0.0.0/8, 192.168.1.7, ::1)")]
pub struct InvalidIpRange(String);

impl IpRange {
    /// The range of `prefix` leading bits of `addr`; `None` when the prefix is longer than the
    /// address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (prefix <= bits).then(|| IpRange {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }

    /// The default trusted proxies: loopback only (`127.0.0.0/8` and `::1`), where a reverse
    /// proxy on the same machine connects from.
    pub fn loopback() -> Vec<IpRange> {
        vec![
            IpRange {
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            IpRange {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ]
    }
}

impl FromStr for IpRange {
    type Err = InvalidIpRange;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidIpRange(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
                // Digits only: `u8::from_str` would take a leading `+`.
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                (addr, prefix.parse().map_err(|_| invalid())?)
            }
            None => {
                let addr: IpAddr = s.trim().parse().map_err(|_| invalid())?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        IpRange::new(addr.to_canonical(), prefix).ok_or_else(invalid)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `ip` with all but its `prefix` leading bits zeroed.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy; then the rightmost
/// `X-Forwarded-For` address that is not trusted itself (each proxy appends the address it
/// got the request from, so everything left of the last trusted hop could be forged by the
/// client). When every forwarded address is trusted, the leftmost one; when an entry is not an
/// address, the trusted hop that forwarded it.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    // Several header lines are one list, in order (RFC 9110, section 5.3).
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        let Some(ip) = parse_forwarded(entry.trim()) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// What per-address counting groups: the IPv4 address, or the IPv6 /64 (one customer's
/// network usually owns a whole /64, so counting single IPv6 addresses would not limit anyone).
fn slot_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 => mask(v6, 64),
    }
}

/// Open subscriptions per client address, at most `max` each.
#[derive(Debug)]
pub(crate) struct SubscriberSlots {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One subscription's slot; released when dropped (with the subscriber's stream).
#[derive(Debug)]
pub(crate) struct SlotGuard {
    slots: Arc<SubscriberSlots>,
    key: IpAddr,
}

impl SubscriberSlots {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(SubscriberSlots {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for `ip`, or `None` when its address already holds `max`.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<SlotGuard> {
        let key = slot_key(ip);
        let mut counts = self.counts.lock();
        let n = counts.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SlotGuard {
            slots: self.clone(),
            key,
        })
    }

    /// Slots held by `ip`'s address now.
    #[cfg(test)]
    pub(crate) fn held(&self, ip: IpAddr) -> usize {
        self.counts.lock().get(&slot_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock();
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            // Addresses without subscribers take no memory.
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// How often the publish limiter forgets tokens that have been quiet long enough to be back to
/// a full burst: keeps its memory proportional to the tokens used recently.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Publishes per second per publisher token (burst = the same number).
pub(crate) struct PublishRate {
    limiter: DefaultKeyedRateLimiter<u64>,
    /// Keys are hashes of the token: a token can be a few KiB, and the limiter must not hold
    /// credentials. Seeded per process, so no one can aim for a collision.
    hasher: RandomState,
    last_sweep: Mutex<Instant>,
}

impl fmt::Debug for PublishRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishRate")
            .field("tokens", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl PublishRate {
    /// `None` when `per_second` is 0 (no limit).
    pub(crate) fn new(per_second: u32) -> Option<Self> {
        let n = NonZeroU32::new(per_second)?;
        Some(PublishRate {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(n).allow_burst(n)),
            hasher: RandomState::new(),
            last_sweep: Mutex::new(Instant::now()),
        })
    }

    /// Counts one publish with `token`: `Err(wait)` when it is over its rate, `wait` being how
    /// long until one more would be accepted.
    pub(crate) fn check(&self, token: &str) -> Result<(), Duration> {
        self.sweep();
        let key = self.hasher.hash_one(token);
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// At most every [`SWEEP_EVERY`], drops the state of tokens back at a full burst. Whoever
    /// finds it due does it; the others do not wait for it.
    fn sweep(&self) {
        let Some(mut last) = self.last_sweep.try_lock() else {
            return;
        };
        if last.elapsed() < SWEEP_EVERY {
            return;
        }
        *last = Instant::now();
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    #[cfg(test)]
    fn tokens(&self) -> usize {
        self.limiter.len()
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: IpRange = "10.1.2.3/8".parse().unwrap();
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert!(r.contains(ip("10.200.0.1")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped");
        let one: IpRange = "192.168.1.7".parse().unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")) && !all.contains(ip("::1")));
        let v6: IpRange = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x/8",
            "1.2.3",
        ] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_ip_trusts_only_trusted_hops() {
        let trusted = IpRange::loopback();
        // Not a proxy: its header is ignored.
        assert_eq!(
            client_ip(ip("8.8.8.8"), &xff(&["1.1.1.1"]), &trusted),
            ip("8.8.8.8")
        );
        // A trusted proxy: the rightmost untrusted entry; what the client forged is left of it.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &xff(&["6.6.6.6, 9.9.9.9"]), &trusted),
            ip("9.9.9.9")
        );
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                &xff(&["6.6.6.6", "9.9.9.9, 127.0.0.2"]),
                &trusted
            ),
            ip("9.9.9.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        // Garbage: the trusted hop that forwarded it.
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                &xff(&["9.9.9.9, junk, 127.0.0.5"]),
                &trusted
            ),
            ip("127.0.0.5")
        );
        // All trusted: the leftmost.
        assert_eq!(
            client_ip(ip("::1"), &xff(&["127.0.0.3, 127.0.0.4"]), &trusted),
            ip("127.0.0.3")
        );
        // Ports and IPv4-mapped peers.
        assert_eq!(
            client_ip(
                ip("::ffff:127.0.0.1"),
                &xff(&["[2001:db8::1]:443"]),
                &trusted
            ),
            ip("2001:db8::1")
        );
        // Nothing trusted.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &xff(&["9.9.9.9"]), &[]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn slots_count_per_address_and_release_on_drop() {
        let slots = SubscriberSlots::new(2);
        let a = slots.acquire(ip("1.1.1.1")).unwrap();
        let b = slots.acquire(ip("1.1.1.1")).unwrap();
        assert!(slots.acquire(ip("1.1.1.1")).is_none());
        let other = slots.acquire(ip("1.1.1.2"));
        assert!(other.is_some(), "another address has its own slots");
        drop(a);
        let c = slots.acquire(ip("1.1.1.1"));
        assert!(c.is_some());
        drop((b, c, other));
        assert_eq!(slots.held(ip("1.1.1.1")), 0);
        assert!(
            slots.counts.lock().is_empty(),
            "released addresses are forgotten"
        );
        // IPv6: one /64 is one client.
        let _x = slots.acquire(ip("2001:db8::1")).unwrap();
        let _y = slots.acquire(ip("2001:db8::ffff")).unwrap();
        assert!(slots.acquire(ip("2001:db8::2")).is_none());
        assert!(slots.acquire(ip("2001:db8:0:1::1")).is_some());
    }

    #[test]
    fn publish_rate_is_per_token() {
        let rate = PublishRate::new(3).unwrap();
        for _ in 0..3 {
            rate.check("a").unwrap();
        }
        let wait = rate.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        rate.check("b").unwrap();
        assert_eq!(rate.tokens(), 2);
        assert!(PublishRate::new(0).is_none());
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
