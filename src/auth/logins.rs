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
        if let Ok(mut map) = self.map.lock() {
            // Sweep expired logins now and then rather than on a timer.
            if map.len() >= 1024 && map.len().is_power_of_two() {
                map.retain(|_, l| l.expires_ms > now_ms);
            }
            map.insert(
                hash,
                Login {
                    user,
                    tag,
                    expires_ms,
                },
            );
        }
        Some((secret, expires_ms))
    }

    /// The user a secret logs in, and with which password, if it is valid.
    pub fn check(&self, secret: &str, now_ms: u64) -> Option<(UserId, PasswordTag)> {
        let map = self.map.lock().ok()?;
        map.get(&hash_secret(secret))
            .filter(|l| l.expires_ms > now_ms)
            .map(|l| (l.user.clone(), l.tag))
    }

    /// Revokes a login; false if it was not valid.
    pub fn revoke(&self, secret: &str) -> bool {
        let hash = hash_secret(secret);
        let found = self
            .map
            .lock()
            .map(|mut m| m.remove(&hash).is_some())
            .unwrap_or(false);
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
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, l| &l.user != user);
        }
        if let Some(store) = &self.store {
            let _ = store.send(StoreOp::RevokeUser { user: user.clone() });
        }
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
}
