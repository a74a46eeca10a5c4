//! One-time WebSocket session ids (PROTOCOL.md section 1): random, bound to
//! (userId, clientName), good for one register attempt, expiring. Stored by
//! hash; owned by the router thread.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::auth::{SecretHash, hash_secret};
use crate::wire::ids::{ClientKey, UserId};

/// One user may take at most this fraction (1/N) of the server-wide
/// session-id rate, so that one user asking in a loop leaves the rest to
/// everyone else.
pub const FAIR_SHARE: f64 = 8.0;
/// Most per-user buckets kept; full ones are dropped first.
pub const MAX_USER_BUCKETS: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn refilled(self, rate: f64, burst: f64, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        Bucket {
            tokens: (self.tokens + elapsed * rate).min(burst),
            last: now,
        }
    }
}

/// The session-id rate: a server-wide bucket (`session_ids_per_s`, a burst
/// of one second's worth), and a bucket per user of a fair share of it
/// (1/[`FAIR_SHARE`] of the rate, at least 1/s, with a burst of at least
/// `max_clients_per_user`, so a user can reconnect all its clients at once).
/// An id is issued only if both have a token; a refusal takes none.
pub struct SessionRate {
    rate: f64,
    burst: f64,
    global: Bucket,
    user_rate: f64,
    user_burst: f64,
    users: HashMap<UserId, Bucket>,
}

impl SessionRate {
    pub fn new(rate: f64, max_clients_per_user: usize, now: Instant) -> SessionRate {
        let burst = rate.max(1.0);
        let user_rate = (rate / FAIR_SHARE).max(1.0);
        SessionRate {
            rate,
            burst,
            global: Bucket {
                tokens: burst,
                last: now,
            },
            user_rate,
            user_burst: user_rate.max(max_clients_per_user as f64).min(burst),
            users: HashMap::new(),
        }
    }

    /// Takes a new rate (a reload): the buckets keep the tokens they have,
    /// at most the new burst, so a reload hands nobody a burst they would
    /// not have had.
    pub fn retune(&mut self, rate: f64, max_clients_per_user: usize, now: Instant) {
        let fresh = SessionRate::new(rate, max_clients_per_user, now);
        let global = self.global.refilled(self.rate, self.burst, now);
        let (old_rate, old_burst) = (self.user_rate, self.user_burst);
        self.users = self
            .users
            .drain()
            .map(|(u, b)| {
                let b = b.refilled(old_rate, old_burst, now);
                let tokens = b.tokens.min(fresh.user_burst);
                (u, Bucket { tokens, last: now })
            })
            .collect();
        self.global = Bucket {
            tokens: global.tokens.min(fresh.burst),
            last: now,
        };
        self.rate = fresh.rate;
        self.burst = fresh.burst;
        self.user_rate = fresh.user_rate;
        self.user_burst = fresh.user_burst;
    }

    /// Takes a token for `user` if both buckets have one.
    pub fn take(&mut self, user: &UserId, now: Instant) -> bool {
        let global = self.global.refilled(self.rate, self.burst, now);
        self.global = global;
        let (rate, burst) = (self.user_rate, self.user_burst);
        let mine = self.users.get(user).map_or(
            Bucket {
                tokens: burst,
                last: now,
            },
            |b| b.refilled(rate, burst, now),
        );
        if global.tokens < 1.0 || mine.tokens < 1.0 {
            if self.users.contains_key(user) {
                self.users.insert(user.clone(), mine);
            }
            return false;
        }
        self.global.tokens -= 1.0;
        if !self.users.contains_key(user) && self.users.len() >= MAX_USER_BUCKETS {
            // A full bucket is the same as none.
            self.users
                .retain(|_, b| b.refilled(rate, burst, now).tokens < burst);
            if self.users.len() >= MAX_USER_BUCKETS {
                return true;
            }
        }
        self.users.insert(
            user.clone(),
            Bucket {
                tokens: mine.tokens - 1.0,
                last: now,
            },
        );
        true
    }
}

struct Pending {
    key: ClientKey,
    expires_ms: u64,
}

/// Issued ids not used yet. They expire in issue order (one TTL for all),
/// so a queue finds the expired ones without a timer.
pub struct PendingSessions {
    ttl_ms: u64,
    by_hash: HashMap<SecretHash, Pending>,
    order: VecDeque<(u64, SecretHash)>,
}

impl PendingSessions {
    pub fn new(ttl_ms: u64) -> PendingSessions {
        PendingSessions {
            ttl_ms,
            by_hash: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn sweep(&mut self, now_ms: u64) {
        while let Some((expires, hash)) = self.order.front().copied() {
            if expires > now_ms {
                break;
            }
            self.order.pop_front();
            if self
                .by_hash
                .get(&hash)
                .is_some_and(|p| p.expires_ms == expires)
            {
                self.by_hash.remove(&hash);
            }
        }
    }

    /// A new id (a UUID v4: 122 random bits) for `key`.
    pub fn issue(&mut self, key: ClientKey, now_ms: u64) -> String {
        self.sweep(now_ms);
        let id = uuid::Uuid::new_v4().to_string();
        let hash = hash_secret(&id);
        let expires_ms = now_ms.saturating_add(self.ttl_ms);
        self.by_hash.insert(hash, Pending { key, expires_ms });
        self.order.push_back((expires_ms, hash));
        id
    }

    /// Forgets the ids issued to users for whom `keep` is false (removed
    /// from the users file). Their places in the expiry order go when they
    /// come up, as a used id's do.
    pub fn retain_users(&mut self, keep: impl Fn(&UserId) -> bool) {
        self.by_hash.retain(|_, p| keep(&p.key.user));
    }

    /// Uses the id up, whatever the register's outcome.
    pub fn take(&mut self, id: &str, now_ms: u64) -> Option<ClientKey> {
        self.sweep(now_ms);
        self.by_hash
            .remove(&hash_secret(id))
            .filter(|p| p.expires_ms > now_ms)
            .map(|p| p.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ids::ClientName;
    use std::time::Duration;

    fn key() -> ClientKey {
        ClientKey {
            user: UserId::parse("alice").unwrap(),
            client: ClientName::parse("web").unwrap(),
        }
    }

    #[test]
    fn one_user_gets_a_fair_share_and_leaves_the_rest() {
        let t0 = Instant::now();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let mut r = SessionRate::new(80.0, 16, t0);
        // alice's burst is max(80/8, 16) = 16, then 10 a second.
        assert_eq!((0..100).filter(|_| r.take(&alice, t0)).count(), 16);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| r.take(&alice, t1)).count(), 5);
        // bob still finds his own share, and the server-wide bucket.
        assert_eq!((0..100).filter(|_| r.take(&bob, t1)).count(), 16);
        // Many users at once share the server-wide bucket, no more.
        let t2 = t0 + Duration::from_secs(60);
        let users: Vec<UserId> = (0..10)
            .map(|i| UserId::parse(&format!("u{i}")).unwrap())
            .collect();
        let got: usize = users
            .iter()
            .map(|u| (0..100).filter(|_| r.take(u, t2)).count())
            .sum();
        assert_eq!(got, 80);
    }

    #[test]
    fn a_new_rate_keeps_the_tokens_left_up_to_its_burst() {
        let t0 = Instant::now();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let mut r = SessionRate::new(100.0, 16, t0);
        assert_eq!((0..100).filter(|_| r.take(&alice, t0)).count(), 16);
        // A reload hands alice no new burst, and the new rate holds.
        r.retune(16.0, 4, t0);
        assert!(!r.take(&alice, t0));
        // bob's bucket is new: the new burst of 4 (max(16/8, 4)).
        assert_eq!((0..100).filter(|_| r.take(&bob, t0)).count(), 4);
        // The server-wide bucket is capped at the new burst, 16: 12 left.
        let carol = UserId::parse("carol").unwrap();
        let dave = UserId::parse("dave").unwrap();
        let erin = UserId::parse("erin").unwrap();
        let more: usize = [&carol, &dave, &erin]
            .iter()
            .map(|u| (0..100).filter(|_| r.take(u, t0)).count())
            .sum();
        assert_eq!(more, 12);
    }

    #[test]
    fn ids_of_removed_users_are_forgotten() {
        let mut p = PendingSessions::new(60_000);
        let alice = p.issue(key(), 0);
        let bob_key = ClientKey {
            user: UserId::parse("bob").unwrap(),
            client: ClientName::parse("web").unwrap(),
        };
        let bob = p.issue(bob_key.clone(), 0);
        p.retain_users(|u| u.as_str() == "bob");
        assert_eq!(p.take(&alice, 1), None);
        assert_eq!(p.take(&bob, 1), Some(bob_key));
    }

    #[test]
    fn user_buckets_are_bounded() {
        let t0 = Instant::now();
        let mut r = SessionRate::new(1_000_000.0, 16, t0);
        for i in 0..(MAX_USER_BUCKETS + 10) {
            let u = UserId::parse(&format!("u{i}")).unwrap();
            assert!(r.take(&u, t0));
        }
        assert!(r.users.len() <= MAX_USER_BUCKETS);
        let later = t0 + Duration::from_secs(10);
        assert!(r.take(&UserId::parse("late").unwrap(), later));
        assert!(r.users.len() <= 1, "full buckets were dropped");
    }

    #[test]
    fn an_id_is_good_once_and_until_it_expires() {
        let mut s = PendingSessions::new(1000);
        let id = s.issue(key(), 0);
        assert_eq!(s.take(&id, 999), Some(key()));
        assert_eq!(s.take(&id, 999), None);
        let late = s.issue(key(), 0);
        assert_eq!(s.take(&late, 1000), None);
        assert_eq!(s.take("guess", 0), None);
        assert!(
            s.by_hash.is_empty() && s.order.is_empty(),
            "expired ids are swept"
        );
    }
}
