//! Login sessions (browser cookies and app tokens) and the hashing of every
//! secret the server hands out. Only hashes are kept: a memory dump or a log
//! line never holds a usable credential.

use std::collections::HashMap;
use std::sync::Mutex;

use blake2::{Blake2s256, Digest};

use crate::ids::UserId;

/// The hash under which a token, cookie or session id is stored.
pub type SecretHash = [u8; 32];

pub fn hash_secret(secret: &str) -> SecretHash {
    Blake2s256::digest(secret.as_bytes()).into()
}

/// A fresh random secret: 244 random bits as 64 hex characters.
pub fn new_secret() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// Name of the browser's login cookie.
pub const COOKIE: &str = "edgeim_session";

struct Login {
    user: UserId,
    expires_ms: u64,
}

/// Valid browser and app logins, by hash of their secret.
pub struct Logins {
    ttl_ms: u64,
    map: Mutex<HashMap<SecretHash, Login>>,
}

impl Logins {
    pub fn new(ttl_ms: u64) -> Logins {
        Logins {
            ttl_ms,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a login; returns the secret (given to the client once) and
    /// when it expires (ms since the epoch).
    pub fn create(&self, user: UserId, now_ms: u64) -> (String, u64) {
        let secret = new_secret();
        let expires_ms = now_ms.saturating_add(self.ttl_ms);
        if let Ok(mut map) = self.map.lock() {
            // Sweep expired logins now and then rather than on a timer.
            if map.len() >= 1024 && map.len().is_power_of_two() {
                map.retain(|_, l| l.expires_ms > now_ms);
            }
            map.insert(hash_secret(&secret), Login { user, expires_ms });
        }
        (secret, expires_ms)
    }

    /// The user a secret logs in, if it is valid.
    pub fn check(&self, secret: &str, now_ms: u64) -> Option<UserId> {
        let map = self.map.lock().ok()?;
        map.get(&hash_secret(secret))
            .filter(|l| l.expires_ms > now_ms)
            .map(|l| l.user.clone())
    }

    /// Revokes a login; false if it was not valid.
    pub fn revoke(&self, secret: &str) -> bool {
        self.map
            .lock()
            .map(|mut m| m.remove(&hash_secret(secret)).is_some())
            .unwrap_or(false)
    }

    /// Revokes every login of a user (removed from the users file).
    pub fn revoke_user(&self, user: &UserId) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, l| &l.user != user);
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
        let (secret, exp) = logins.create(alice.clone(), 5000);
        assert_eq!(exp, 6000);
        assert_eq!(secret.len(), 64);
        assert_eq!(logins.check(&secret, 5999), Some(alice));
        assert_eq!(logins.check(&secret, 6000), None);
        assert_eq!(logins.check("guess", 5000), None);
        assert!(logins.revoke(&secret));
        assert!(!logins.revoke(&secret));
        assert_eq!(logins.check(&secret, 5001), None);
    }

    #[test]
    fn secrets_are_distinct_and_hashes_fixed() {
        assert_ne!(new_secret(), new_secret());
        assert_eq!(hash_secret("a"), hash_secret("a"));
        assert_ne!(hash_secret("a"), hash_secret("b"));
    }
}
