//! Login sessions (browser cookies and app tokens), by hash of their
//! secret ([`super::secret`]): a memory dump or a log line never holds a
//! usable credential. With a store, logins are also kept on disk and
//! survive a restart.

use std::collections::HashMap;
use std::sync::Mutex;

use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use super::secret::{SecretHash, hash_secret, new_secret};
use crate::auth::users::PasswordTag;
use crate::events::StoreOp;
use crate::wire::ids::UserId;

/// A login as the store keeps it.
pub struct SavedLogin {
    pub hash: SecretHash,
    pub user: UserId,
    pub tag: PasswordTag,
    pub expires_ms: u64,
}

/// Name of the browser's login cookie.
pub const COOKIE: &str = "edgeim_session";

struct Login {
    user: UserId,
    /// The password the login was made with.
    tag: PasswordTag,
    expires_ms: u64,
}

/// Valid browser and app logins, by hash of their secret. With a store,
/// they are also kept on disk and survive a restart.
pub struct Logins {
    ttl_ms: u64,
    map: Mutex<HashMap<SecretHash, Login>>,
    store: Option<Sender<StoreOp>>,
}

/// Most logins one user may have; a new one beyond it ends the oldest.
pub const MAX_LOGINS_PER_USER: usize = 64;

/// Drops expired logins (they are gone from the store at its next purge)
/// and, beyond [`MAX_LOGINS_PER_USER`], `user`'s oldest ones, whose hashes
/// are returned to be revoked in the store. One pass over the map: a login
/// already costs an argon2 check, far more than this.
fn sweep(map: &mut HashMap<SecretHash, Login>, user: &UserId, now_ms: u64) -> Vec<SecretHash> {
    map.retain(|_, l| l.expires_ms > now_ms);
    let mut mine: Vec<(u64, SecretHash)> = map
        .iter()
        .filter(|(_, l)| &l.user == user)
        .map(|(h, l)| (l.expires_ms, *h))
        .collect();
    if mine.len() <= MAX_LOGINS_PER_USER {
        return Vec::new();
    }
    // One TTL for all: the soonest to expire is the oldest.
    mine.sort_unstable();
    let extra = mine.len() - MAX_LOGINS_PER_USER;
    let evicted: Vec<SecretHash> = mine.into_iter().take(extra).map(|(_, h)| h).collect();
    for h in &evicted {
        map.remove(h);
    }
    evicted
}

/// How long a login waits for the store to commit it.
pub(crate) const SAVE_WAIT: Duration = Duration::from_secs(10);

impl Logins {
    /// Logins in memory only.
    #[cfg(test)]
    pub fn new(ttl_ms: u64) -> Logins {
        Logins {
            ttl_ms,
            map: Mutex::new(HashMap::new()),
            store: None,
        }
    }

    /// Logins kept in the store, starting with those it had.
    pub fn stored(ttl_ms: u64, store: Sender<StoreOp>, saved: Vec<SavedLogin>) -> Logins {
        let map = saved
            .into_iter()
            .map(|s| {
                (
                    s.hash,
                    Login {
                        user: s.user,
                        tag: s.tag,
                        expires_ms: s.expires_ms,
                    },
                )
            })
            .collect();
        Logins {
            ttl_ms,
            map: Mutex::new(map),
            store: Some(store),
        }
    }

    /// Starts a login; returns the secret (given to the client once) and
    /// when it expires (ms since the epoch). `None`: it could not be stored.
    pub fn create(&self, user: UserId, tag: PasswordTag, now_ms: u64) -> Option<(String, u64)> {
        let secret = new_secret();
        let expires_ms = now_ms.saturating_add(self.ttl_ms);
        let hash = hash_secret(&secret);
        if let Some(store) = &self.store {
            let (tx, rx) = bounded(1);
            let op = StoreOp::SaveLogin {
                hash,
                user: user.clone(),
                tag,
                expires_ms,
                reply: tx,
            };
            store.send(op).ok()?;
            rx.recv_timeout(SAVE_WAIT).ok().filter(|saved| *saved)?;
        }
        let evicted = {
            let mut map = super::lock(&self.map);
            map.insert(
                hash,
                Login {
                    user: user.clone(),
                    tag,
                    expires_ms,
                },
            );
            sweep(&mut map, &user, now_ms)
        };
        // The evicted logins are revoked on disk too (not waited for: the
        // new login is what this request is about).
        if let Some(store) = &self.store {
            for hash in evicted {
                let (tx, _) = bounded(1);
                let _ = store.send(StoreOp::RevokeLogin { hash, reply: tx });
            }
        }
        Some((secret, expires_ms))
    }

    /// The user a secret logs in, and with which password, if it is valid.
    pub fn check(&self, secret: &str, now_ms: u64) -> Option<(UserId, PasswordTag)> {
        let map = super::lock(&self.map);
        map.get(&hash_secret(secret))
            .filter(|l| l.expires_ms > now_ms)
            .map(|l| (l.user.clone(), l.tag))
    }

    /// Revokes a login; false if it was not valid.
    pub fn revoke(&self, secret: &str) -> bool {
        let hash = hash_secret(secret);
        let found = super::lock(&self.map).remove(&hash).is_some();
        // Answered after the revocation is on disk, so a restart cannot
        // bring the login back.
        if found && let Some(store) = &self.store {
            let (tx, rx) = bounded(1);
            if store.send(StoreOp::RevokeLogin { hash, reply: tx }).is_ok() {
                let _ = rx.recv_timeout(SAVE_WAIT);
            }
        }
        found
    }

    /// Revokes every login of a user (removed from the users file).
    pub fn revoke_user(&self, user: &UserId) {
        super::lock(&self.map).retain(|_, l| &l.user != user);
        if let Some(store) = &self.store {
            let _ = store.send(StoreOp::RevokeUser { user: user.clone() });
        }
    }

    /// Revokes every login of the users for whom `exists` is false (a
    /// reload found them removed from the users file); returns them.
    pub fn revoke_missing(&self, exists: impl Fn(&UserId) -> bool) -> Vec<UserId> {
        let mut gone: Vec<UserId> = super::lock(&self.map)
            .values()
            .filter(|l| !exists(&l.user))
            .map(|l| l.user.clone())
            .collect();
        gone.sort();
        gone.dedup();
        for user in &gone {
            self.revoke_user(user);
        }
        gone
    }

    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_expire_and_revoke() {
        let logins = Logins::new(1000);
        let alice = UserId::parse("alice").unwrap();
        let (secret, exp) = logins.create(alice.clone(), 7, 5000).unwrap();
        assert_eq!(exp, 6000);
        assert_eq!(secret.len(), 64);
        assert_eq!(logins.check(&secret, 5999), Some((alice, 7)));
        assert_eq!(logins.check(&secret, 6000), None);
        assert_eq!(logins.check("guess", 5000), None);
        assert!(logins.revoke(&secret));
        assert!(!logins.revoke(&secret));
        assert_eq!(logins.check(&secret, 5001), None);
    }

    #[test]
    fn the_logins_of_missing_users_are_revoked_and_no_others() {
        let logins = Logins::new(1000);
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let (a1, _) = logins.create(alice.clone(), 1, 0).unwrap();
        let (a2, _) = logins.create(alice.clone(), 1, 0).unwrap();
        let (b, _) = logins.create(bob.clone(), 1, 0).unwrap();
        assert_eq!(logins.revoke_missing(|u| *u == bob), vec![alice]);
        assert_eq!(logins.check(&a1, 1), None);
        assert_eq!(logins.check(&a2, 1), None);
        assert_eq!(logins.check(&b, 1), Some((bob, 1)));
    }

    #[test]
    fn a_user_has_at_most_the_cap_and_the_oldest_goes_first() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let logins = Logins::stored(1_000_000, tx, Vec::new());
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        // A fake store that saves every login.
        let store = std::thread::spawn(move || {
            let mut revoked = Vec::new();
            for op in rx {
                match op {
                    StoreOp::SaveLogin { reply, .. } => {
                        let _ = reply.send(true);
                    }
                    StoreOp::RevokeLogin { hash, .. } => revoked.push(hash),
                    _ => {}
                }
            }
            revoked
        });
        let (bobs, _) = logins.create(bob.clone(), 1, 0).unwrap();
        let secrets: Vec<String> = (0..MAX_LOGINS_PER_USER as u64 + 2)
            .map(|i| logins.create(alice.clone(), 1, 1 + i).unwrap().0)
            .collect();
        assert_eq!(logins.check(&secrets[0], 100), None);
        assert_eq!(logins.check(&secrets[1], 100), None);
        assert!(logins.check(&secrets[2], 100).is_some());
        assert!(logins.check(secrets.last().unwrap(), 100).is_some());
        assert!(
            logins.check(&bobs, 100).is_some(),
            "other users keep theirs"
        );
        // Expired logins are swept at the next login.
        logins.create(bob, 1, 2_000_000).unwrap();
        assert_eq!(logins.map.lock().unwrap().len(), 1);
        drop(logins);
        let revoked = store.join().unwrap();
        assert_eq!(
            revoked,
            vec![hash_secret(&secrets[0]), hash_secret(&secrets[1])]
        );
    }
}
