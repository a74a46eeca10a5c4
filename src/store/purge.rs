//! The periodic clean-up: messages past retention, clients not seen for
//! `forget_client_days`, expired logins; in small steps, so that it never
//! holds up messages for long. Retention is measured in the store's age
//! (store/clock.rs), recorded at each clean-up beside the newest seq: a
//! message is past retention once a tick at least `retention` of age ago
//! had already seen it. Timestamps play no part, so a clock step cannot
//! delete messages early.

use rusqlite::{OptionalExtension, params};

use super::messages::{Db, DbError, STATE_UNACKED, targets};
use crate::wire::ids::{ClientKey, ClientName, Origin, UserId};

impl Db {
    /// The last tick: (age, wall clock), if there is one.
    pub fn last_tick(&self) -> Result<Option<(u64, u64)>, DbError> {
        self.conn
            .prepare_cached("SELECT age_ms, wall_ms FROM clock ORDER BY rowid DESC LIMIT 1")?
            .query_row([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })
            .optional()
    }

    /// The newest timestamp any message has (0 without messages).
    pub fn last_ts(&self) -> Result<u64, DbError> {
        let ts: Option<i64> = self
            .conn
            .query_row("SELECT MAX(ts) FROM messages", [], |r| r.get(0))?;
        Ok(ts.unwrap_or(0).max(0) as u64)
    }

    /// Records the newest seq at the store's age `age_ms` (a clean-up's
    /// start), inside the open transaction.
    pub fn tick(&mut self, age_ms: u64, wall_ms: u64) -> Result<(), DbError> {
        self.conn
            .prepare_cached(
                "INSERT INTO clock (seq, age_ms, wall_ms)
                 SELECT COALESCE(MAX(seq), 0), ?1, ?2 FROM messages",
            )?
            .execute(params![age_ms as i64, wall_ms as i64])?;
        Ok(())
    }

    /// The newest seq that a tick at least `retention` of age before
    /// `age_ms` had seen; older ticks are dropped, that one is kept.
    fn expired_upto(&mut self, age_ms: u64) -> Result<Option<i64>, DbError> {
        let Some(cutoff) = age_ms.checked_sub(self.limits.retention_ms) else {
            return Ok(None);
        };
        let found: Option<(i64, i64)> = self
            .conn
            .prepare_cached(
                "SELECT seq, age_ms FROM clock WHERE age_ms <= ?1 ORDER BY age_ms DESC LIMIT 1",
            )?
            .query_row(params![cutoff.min(i64::MAX as u64) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((seq, tick_age)) = found else {
            return Ok(None);
        };
        self.conn
            .prepare_cached("DELETE FROM clock WHERE age_ms < ?1")?
            .execute(params![tick_age])?;
        Ok(Some(seq))
    }

    /// One step of the periodic clean-up: deletes up to `max` messages past
    /// retention (by the store's age `age_ms`), forgets clients not seen
    /// for `forget_client_ms` and expired logins (by the wall clock
    /// `now_ms`). Returns true when more is left to do.
    pub fn purge_step(&mut self, now_ms: u64, age_ms: u64, max: usize) -> Result<bool, DbError> {
        // What it deletes must have its rows: write every recent text's.
        self.write_behind(true)?;
        let upto = self.expired_upto(age_ms)?.unwrap_or(0);
        let expired: Vec<(i64, String, String)> = {
            let mut q = self.conn.prepare_cached(
                "SELECT seq, origin, recipients FROM messages WHERE seq <= ?1 ORDER BY seq LIMIT ?2",
            )?;
            q.query_map(params![upto, max as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?
        };
        let more = expired.len() == max;
        for (seq, origin, recipients) in &expired {
            let origin = Origin::parse(origin).unwrap_or(Origin::System);
            // A group text's rows are its members' at the time: whoever is
            // or was in the group.
            let to: Vec<UserId> = match recipients.strip_prefix('#') {
                Some(g) => self.ever_members(g)?,
                None => recipients.split(',').filter_map(UserId::parse).collect(),
            };
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
