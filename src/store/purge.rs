//! The periodic clean-up: messages past retention, clients not seen for
//! `forget_client_days`, expired logins; in small steps, so that it never
//! holds up messages for long.

use rusqlite::{OptionalExtension, params};

use super::messages::{Db, DbError, STATE_UNACKED, targets};
use crate::wire::ids::{ClientKey, ClientName, Origin, UserId};

impl Db {
    /// One step of the periodic clean-up: deletes up to `max` messages past
    /// retention, forgets clients not seen for `forget_client_ms` and
    /// expired logins. Returns true when more is left to do.
    pub fn purge_step(&mut self, now_ms: u64, max: usize) -> Result<bool, DbError> {
        let cutoff = now_ms.saturating_sub(self.limits.retention_ms) as i64;
        let old: Vec<(i64, String, String, i64)> = {
            let mut q = self.conn.prepare_cached(
                "SELECT seq, origin, recipients, ts FROM messages ORDER BY seq LIMIT ?1",
            )?;
            q.query_map(params![max as i64 + 1], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?
        };
        // Acceptance times grow with seq; stop at the first message still kept.
        let expired: Vec<&(i64, String, String, i64)> =
            old.iter().take_while(|m| m.3 < cutoff).take(max).collect();
        let more = expired.len() == max;
        for (seq, origin, recipients, _) in expired {
            let origin = Origin::parse(origin).unwrap_or(Origin::System);
            let to: Vec<UserId> = recipients.split(',').filter_map(UserId::parse).collect();
            for t in targets(&origin, &to) {
                let state: Option<i64> = self
                    .conn
                    .prepare_cached(
                        "DELETE FROM inbox WHERE user = ?1 AND seq = ?2 RETURNING state",
                    )?
                    .query_row(params![t.user.as_str(), seq], |r| r.get(0))
                    .optional()?;
                if state == Some(STATE_UNACKED)
                    && let Some(c) = self.users.get_mut(&t.user)
                {
                    c.unacked = c.unacked.saturating_sub(1);
                }
                self.conn
                    .prepare_cached("DELETE FROM pending WHERE user = ?1 AND seq = ?2")?
                    .execute(params![t.user.as_str(), seq])?;
            }
            self.conn
                .prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                .execute(params![seq])?;
        }
        let forget_before = now_ms.saturating_sub(self.limits.forget_client_ms) as i64;
        let idle: Vec<(String, String)> = {
            let mut q = self
                .conn
                .prepare_cached("SELECT user, client FROM clients WHERE last_seen < ?1")?;
            q.query_map(params![forget_before], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (user, client) in idle {
            let (Some(u), Some(c)) = (UserId::parse(&user), ClientName::parse(&client)) else {
                continue;
            };
            let key = ClientKey { user: u, client: c };
            if self.connected.contains(&key) {
                continue;
            }
            self.conn
                .prepare_cached("DELETE FROM pending WHERE user = ?1 AND client = ?2")?
                .execute(params![user, client])?;
            self.conn
                .prepare_cached("DELETE FROM clients WHERE user = ?1 AND client = ?2")?
                .execute(params![user, client])?;
            if let Some(cache) = self.users.get_mut(&key.user) {
                cache.clients.retain(|n| *n != key.client);
            }
        }
        self.conn
            .prepare_cached("DELETE FROM logins WHERE expires <= ?1")?
            .execute(params![now_ms as i64])?;
        Ok(more)
    }
}
