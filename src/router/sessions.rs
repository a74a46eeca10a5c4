//! One-time WebSocket session ids (PROTOCOL.md section 1): random, bound to
//! (userId, clientName), good for one register attempt, expiring. Stored by
//! hash; owned by the router thread.

use std::collections::{HashMap, VecDeque};

use crate::auth::{SecretHash, hash_secret};
use crate::wire::ids::ClientKey;

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
    use crate::wire::ids::{ClientName, UserId};

    fn key() -> ClientKey {
        ClientKey {
            user: UserId::parse("alice").unwrap(),
            client: ClientName::parse("web").unwrap(),
        }
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
