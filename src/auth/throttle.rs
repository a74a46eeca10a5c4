//! Login throttling: a decision, no I/O, with the time passed in.
//!
//! Three kinds of state, each keyed by what the attacker cannot share with
//! the real user:
//!
//! - per client address: after [`ADDR_FREE_FAILS`] failed logins from one
//!   address (any user names), that address waits, doubling from
//!   [`BASE_BACKOFF_MS`] up to [`MAX_BACKOFF_MS`];
//! - per (address, user name): after [`PAIR_FREE_FAILS`] failures for one
//!   name from one address, the same backoff for that pair;
//! - per user name: at most [`USER_FAILS_PER_MIN`] failures a minute in
//!   total, from all addresses. When they are used up, only addresses that
//!   have failed before (for any name) are refused: an address with a clean
//!   record, such as the real user's, is never slowed by what others do.
//!
//! A refused attempt is answered before the password is checked (no argon2
//! time) and is itself not counted. A success clears its (address, user)
//! record only, so that an attacker with one good account cannot wash an
//! address clean. Records are forgotten [`FORGET_MS`] after their last
//! failure, and each map holds at most [`MAX_ENTRIES`] (the least recently
//! failed is dropped first), so memory is bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failures one address may have before it must wait.
pub const ADDR_FREE_FAILS: u32 = 20;
/// Failures one address may have for one user name before that pair waits.
pub const PAIR_FREE_FAILS: u32 = 5;
/// The first wait; each further failure doubles it.
pub const BASE_BACKOFF_MS: u64 = 1_000;
/// The longest wait.
pub const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;
/// Failures per minute one user name may get from all addresses together.
pub const USER_FAILS_PER_MIN: u32 = 30;
/// A record is forgotten this long after its last failure.
pub const FORGET_MS: u64 = 15 * 60 * 1000;
/// Most records kept per map.
pub const MAX_ENTRIES: usize = 4096;

#[derive(Clone, Copy, Debug, Default)]
struct Record {
    fails: u32,
    last_ms: u64,
    until_ms: u64,
}

fn backoff_ms(fails: u32, free: u32) -> u64 {
    if fails <= free {
        return 0;
    }
    let doublings = (fails - free - 1).min(20);
    BASE_BACKOFF_MS
        .saturating_mul(1u64 << doublings)
        .min(MAX_BACKOFF_MS)
}

/// When a record with `fails` stops refusing: 0 (never refuses) while
/// the failures are free. Not `now_ms`: HTTP workers read the clock before
/// they take the lock, so a login that read it a millisecond earlier than
/// the one just recorded would be refused ("retry in 1 s") for nothing.
fn wait_until(now_ms: u64, fails: u32, free: u32) -> u64 {
    match backoff_ms(fails, free) {
        0 => 0,
        wait => now_ms.saturating_add(wait),
    }
}

/// A bounded map of records.
struct Records<K> {
    map: HashMap<K, Record>,
}

impl<K: Hash + Eq + Clone> Records<K> {
    fn new() -> Self {
        Records {
            map: HashMap::new(),
        }
    }

    fn get(&self, k: &K, now_ms: u64) -> Option<Record> {
        self.map
            .get(k)
            .copied()
            .filter(|r| now_ms < r.last_ms.saturating_add(FORGET_MS))
    }

    fn fail(&mut self, k: K, free: u32, now_ms: u64) {
        if !self.map.contains_key(&k) && self.map.len() >= MAX_ENTRIES {
            self.map
                .retain(|_, r| now_ms < r.last_ms.saturating_add(FORGET_MS));
            if self.map.len() >= MAX_ENTRIES
                && let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, r)| r.last_ms)
                    .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        let mut r = self.get(&k, now_ms).unwrap_or_default();
        r.fails = r.fails.saturating_add(1);
        r.last_ms = r.last_ms.max(now_ms);
        r.until_ms = wait_until(now_ms, r.fails, free);
        self.map.insert(k, r);
    }

    fn clear(&mut self, k: &K) {
        self.map.remove(k);
    }

    /// Takes back one failure recorded by [`Throttle::begin`].
    fn undo(&mut self, k: &K, free: u32) {
        if let Some(r) = self.map.get_mut(k) {
            r.fails = r.fails.saturating_sub(1);
            if r.fails == 0 {
                self.map.remove(k);
            } else {
                r.until_ms = wait_until(r.last_ms, r.fails, free);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The failures of one user name in the current minute.
#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: u64,
    fails: u32,
}

/// The throttle's state. [`LoginThrottle`] wraps it in a mutex.
pub struct Throttle {
    by_addr: Records<IpAddr>,
    by_pair: Records<(IpAddr, String)>,
    by_user: HashMap<String, Window>,
}

/// Why a login is not tried now: wait this many seconds (at least 1).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct RetryAfter(pub u64);

fn secs_until(until_ms: u64, now_ms: u64) -> RetryAfter {
    RetryAfter(until_ms.saturating_sub(now_ms).div_ceil(1000).max(1))
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle {
            by_addr: Records::new(),
            by_pair: Records::new(),
            by_user: HashMap::new(),
        }
    }

    /// Whether a login for `user` from `addr` may be tried now.
    pub fn check(&self, addr: IpAddr, user: &str, now_ms: u64) -> Result<(), RetryAfter> {
        let a = self.by_addr.get(&addr, now_ms);
        if let Some(r) = a
            && r.until_ms > now_ms
        {
            return Err(secs_until(r.until_ms, now_ms));
        }
        let pair = (addr, user.to_string());
        if let Some(r) = self.by_pair.get(&pair, now_ms)
            && r.until_ms > now_ms
        {
            return Err(secs_until(r.until_ms, now_ms));
        }
        // The per-user cap binds only addresses with failures on record.
        if a.is_some()
            && let Some(w) = self.by_user.get(user)
            && now_ms < w.start_ms.saturating_add(60_000)
            && w.fails >= USER_FAILS_PER_MIN
        {
            return Err(secs_until(w.start_ms.saturating_add(60_000), now_ms));
        }
        Ok(())
    }

    /// Records a failed login.
    pub fn failed(&mut self, addr: IpAddr, user: &str, now_ms: u64) {
        self.by_addr.fail(addr, ADDR_FREE_FAILS, now_ms);
        self.by_pair
            .fail((addr, user.to_string()), PAIR_FREE_FAILS, now_ms);
        if !self.by_user.contains_key(user) && self.by_user.len() >= MAX_ENTRIES {
            self.by_user
                .retain(|_, w| now_ms < w.start_ms.saturating_add(60_000));
            if self.by_user.len() >= MAX_ENTRIES {
                // Still full within one minute: the cap is moot for new names.
                return;
            }
        }
        let w = self.by_user.entry(user.to_string()).or_insert(Window {
            start_ms: now_ms,
            fails: 0,
        });
        if now_ms >= w.start_ms.saturating_add(60_000) {
            *w = Window {
                start_ms: now_ms,
                fails: 0,
            };
        }
        w.fails = w.fails.saturating_add(1);
    }

    /// Checks and, if the attempt may go ahead, counts it as a failure at
    /// once, in one step: concurrent guesses (one per HTTP worker) cannot
    /// all pass the check before any of them is counted. A success then
    /// takes the count back ([`Throttle::succeeded`]).
    pub fn begin(&mut self, addr: IpAddr, user: &str, now_ms: u64) -> Result<(), RetryAfter> {
        self.check(addr, user, now_ms)?;
        self.failed(addr, user, now_ms);
        Ok(())
    }

    /// Records a successful login begun with [`Throttle::begin`]: its
    /// failure is taken back from the address and the user name, and the
    /// (address, user) record is cleared.
    pub fn succeeded(&mut self, addr: IpAddr, user: &str) {
        self.by_pair.clear(&(addr, user.to_string()));
        self.by_addr.undo(&addr, ADDR_FREE_FAILS);
        if let Some(w) = self.by_user.get_mut(user) {
            w.fails = w.fails.saturating_sub(1);
        }
    }

    /// Records held, for the tests of the bounds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_addr.len() + self.by_pair.len() + self.by_user.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_addr.len() + self.by_pair.len() == 0 && self.by_user.values().all(|w| w.fails == 0)
    }
}

/// The throttle shared by the HTTP workers, with the proxies trusted to
/// say who the client is.
pub struct LoginThrottle {
    inner: Mutex<Throttle>,
    trusted: Vec<Cidr>,
}

impl LoginThrottle {
    pub fn new(trusted: Vec<Cidr>) -> LoginThrottle {
        LoginThrottle {
            inner: Mutex::new(Throttle::new()),
            trusted,
        }
    }
    /// Whether `peer` is one of `http.trusted_proxies`: its
    /// `X-Forwarded-For` and its single-sign-on header are believed.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(peer))
    }
    /// The client's address (see [`client_addr`]).
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        client_addr(peer, forwarded_for, &self.trusted)
    }
    /// See [`Throttle::begin`]: a failure unless [`Self::succeeded`] follows.
    pub fn begin(&self, addr: IpAddr, user: &str, now_ms: u64) -> Result<(), RetryAfter> {
        super::lock(&self.inner).begin(addr, user, now_ms)
    }
    pub fn succeeded(&self, addr: IpAddr, user: &str) {
        super::lock(&self.inner).succeeded(addr, user);
    }
}

/// An IP network, `10.0.0.0/8` or `::1/128` (a bare address is /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `ADDR/BITS` or `ADDR`; `None` if it is not one.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = a.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) && b.len() <= 3 => {
                b.parse::<u8>().ok().filter(|b| *b <= max)?
            }
            Some(_) => return None,
            None => max,
        };
        Some(Cidr { net, bits })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in
/// which case the rightmost address of `X-Forwarded-For` that is not itself
/// a trusted proxy (what the nearest untrusted hop said it was cannot be
/// forged by the client further left). A malformed header is ignored.
pub fn client_addr(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let trusted_ip = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !trusted_ip(peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else {
        return peer;
    };
    let mut hops = Vec::new();
    for part in xff.split(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) => hops.push(ip),
            Err(_) => return peer,
        }
    }
    let mut client = peer;
    for ip in hops.into_iter().rev() {
        client = ip;
        if !trusted_ip(ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_backs_off_exponentially_per_user_name() {
        let mut t = Throttle::new();
        let a = ip("10.0.0.1");
        for i in 0..PAIR_FREE_FAILS {
            assert_eq!(t.check(a, "alice", 0), Ok(()), "free attempt {i}");
            t.failed(a, "alice", 0);
        }
        assert_eq!(t.check(a, "alice", 0), Ok(()));
        t.failed(a, "alice", 0);
        assert_eq!(t.check(a, "alice", 0), Err(RetryAfter(1)));
        assert_eq!(t.check(a, "alice", 1000), Ok(()));
        t.failed(a, "alice", 1000);
        assert_eq!(t.check(a, "alice", 1000), Err(RetryAfter(2)));
        assert_eq!(t.check(a, "alice", 2999), Err(RetryAfter(1)));
        assert_eq!(t.check(a, "alice", 3000), Ok(()));
        // Another name from the same address is not held up by the pair.
        assert_eq!(t.check(a, "bob", 1000), Ok(()));
        // The wait never exceeds the maximum.
        for n in 0..40 {
            t.failed(a, "alice", 10_000 + n);
        }
        let Err(RetryAfter(s)) = t.check(a, "alice", 10_040) else {
            panic!("throttled")
        };
        assert!(s <= MAX_BACKOFF_MS / 1000, "{s}");
    }

    #[test]
    fn an_address_spraying_names_backs_off_as_a_whole() {
        let mut t = Throttle::new();
        let a = ip("10.0.0.2");
        for i in 0..=ADDR_FREE_FAILS {
            t.failed(a, &format!("user{i}"), 0);
        }
        assert_eq!(t.check(a, "fresh", 0), Err(RetryAfter(1)));
        assert_eq!(t.check(ip("10.0.0.3"), "fresh", 0), Ok(()));
    }

    #[test]
    fn the_real_user_from_a_clean_address_is_never_slowed() {
        let mut t = Throttle::new();
        // Many attacker addresses, each within its free failures.
        for n in 0..200u32 {
            let a = IpAddr::from([10, 1, (n / 256) as u8, (n % 256) as u8]);
            t.failed(a, "alice", 0);
        }
        // The per-user cap now binds addresses that have failed...
        assert!(t.check(ip("10.1.0.7"), "alice", 0).is_err());
        // ...but not one with a clean record.
        assert_eq!(t.check(ip("192.168.1.9"), "alice", 0), Ok(()));
        // And the cap ends with its minute.
        assert_eq!(t.check(ip("10.1.0.7"), "alice", 60_000), Ok(()));
    }

    #[test]
    fn success_clears_only_its_pair_and_records_are_forgotten() {
        let mut t = Throttle::new();
        let a = ip("10.0.0.4");
        for _ in 0..=PAIR_FREE_FAILS {
            t.failed(a, "alice", 0);
        }
        assert!(t.check(a, "alice", 0).is_err());
        t.succeeded(a, "alice");
        assert_eq!(t.check(a, "alice", 0), Ok(()));
        for _ in 0..=ADDR_FREE_FAILS {
            t.failed(a, "bob", 0);
        }
        t.succeeded(a, "alice");
        assert!(
            t.check(a, "alice", 0).is_err(),
            "the address stays throttled"
        );
        assert_eq!(t.check(a, "alice", FORGET_MS + MAX_BACKOFF_MS), Ok(()));
    }

    #[test]
    fn begun_attempts_count_at_once_and_successes_are_taken_back() {
        let mut t = Throttle::new();
        let office = ip("10.0.0.5");
        // Many good logins from one address (an office NAT) never throttle it.
        for n in 0..(3 * ADDR_FREE_FAILS) {
            let user = format!("u{n}");
            assert_eq!(t.begin(office, &user, 0), Ok(()));
            t.succeeded(office, &user);
        }
        assert!(t.is_empty(), "nothing is left of good logins");
        // Concurrent guesses, none finished: the limit holds all the same.
        let a = ip("10.0.0.6");
        let begun = (0..20).filter(|_| t.begin(a, "alice", 0).is_ok()).count();
        assert_eq!(begun, PAIR_FREE_FAILS as usize + 1);
    }

    #[test]
    fn a_login_that_read_the_clock_a_little_earlier_is_not_refused() {
        // Two HTTP workers read the clock in one order and take the lock
        // in the other (CI saw "retry in 1 s" on a fresh server's first
        // login): a record with no backoff must not refuse anything.
        let mut t = Throttle::new();
        let a = ip("127.0.0.1");
        assert_eq!(t.begin(a, "u1", 1_000), Ok(()));
        assert_eq!(t.begin(a, "u0", 999), Ok(()));
        assert_eq!(t.begin(a, "u1", 998), Ok(()));
        t.succeeded(a, "u1");
        assert_eq!(t.begin(a, "u0", 0), Ok(()));
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Throttle::new();
        for n in 0..(MAX_ENTRIES as u32 + 100) {
            t.failed(
                IpAddr::from(n.to_be_bytes()),
                &format!("u{n}"),
                u64::from(n),
            );
        }
        assert!(t.len() <= 3 * MAX_ENTRIES, "{}", t.len());
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.200.1.1")) && !c.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::1/128").unwrap().contains(ip("::1")));
        assert!(
            Cidr::parse("127.0.0.0/8")
                .unwrap()
                .contains(ip("::ffff:127.0.0.1"))
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10/8",
            "::/129",
            "x",
            "1.2.3.4/+1",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted = [Cidr::parse("127.0.0.1/32").unwrap()];
        let proxy = ip("127.0.0.1");
        assert_eq!(
            client_addr(proxy, Some("10.0.0.9"), &trusted),
            ip("10.0.0.9")
        );
        // The client's own (forgeable) entries are left of the last hop.
        assert_eq!(
            client_addr(proxy, Some("1.1.1.1, 10.0.0.9"), &trusted),
            ip("10.0.0.9")
        );
        assert_eq!(
            client_addr(proxy, Some("10.0.0.9, 127.0.0.1"), &trusted),
            ip("10.0.0.9")
        );
        assert_eq!(client_addr(proxy, Some("junk"), &trusted), proxy);
        assert_eq!(client_addr(proxy, None, &trusted), proxy);
        let other = ip("192.168.0.5");
        assert_eq!(client_addr(other, Some("10.0.0.9"), &trusted), other);
        assert_eq!(client_addr(proxy, Some("10.0.0.9"), &[]), proxy);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn cidr_and_forwarded_for_never_panic(s in ".{0,64}") {
            let _ = Cidr::parse(&s);
            let trusted = [Cidr::parse("0.0.0.0/0").unwrap()];
            let _ = client_addr(ip("127.0.0.1"), Some(&s), &trusted);
        }
    }
}
