//! Logins as the store keeps them: by hash, with the password they were
//! made with, until they expire.

use rusqlite::params;

use super::messages::{Db, DbError};
use crate::auth::users::PasswordTag;
use crate::auth::{SavedLogin, SecretHash};
use crate::wire::ids::UserId;

impl Db {
    /// A user a host system vouched for (delegated login): kept, so that it
    /// stays a user across restarts.
    pub fn remember_user(&self, user: &UserId, now_ms: u64) -> Result<(), DbError> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO delegated (user, since) VALUES (?1, ?2)")?
            .execute(params![user.as_str(), now_ms as i64])?;
        Ok(())
    }

    /// Every user delegated login has vouched for.
    pub fn delegated_users(&self) -> Result<Vec<UserId>, DbError> {
        let mut q = self.conn.prepare("SELECT user FROM delegated")?;
        let rows = q.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(u) = UserId::parse(&r?) {
                out.push(u);
            }
        }
        Ok(out)
    }

    pub fn save_login(
        &self,
        hash: &SecretHash,
        user: &UserId,
        tag: PasswordTag,
        expires_ms: u64,
    ) -> Result<(), DbError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO logins (hash, user, tag, expires) VALUES (?1, ?2, ?3, ?4)",
            )?
            // The tag's bits, stored as SQLite's signed integer.
            .execute(params![
                &hash[..],
                user.as_str(),
                tag as i64,
                expires_ms as i64
            ])?;
        Ok(())
    }

    pub fn revoke_login(&self, hash: &SecretHash) -> Result<(), DbError> {
        self.conn
            .prepare_cached("DELETE FROM logins WHERE hash = ?1")?
            .execute(params![&hash[..]])?;
        Ok(())
    }

    pub fn revoke_user(&self, user: &UserId) -> Result<(), DbError> {
        self.conn
            .prepare_cached("DELETE FROM logins WHERE user = ?1")?
            .execute(params![user.as_str()])?;
        Ok(())
    }

    /// Logins still valid at `now_ms`, for the auth table at start.
    pub fn logins(&self, now_ms: u64) -> Result<Vec<SavedLogin>, DbError> {
        let mut q = self
            .conn
            .prepare("SELECT hash, user, tag, expires FROM logins WHERE expires > ?1")?;
        let rows = q.query_map(params![now_ms as i64], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, user, tag, expires) = row?;
            if let (Ok(hash), Some(user)) =
                (SecretHash::try_from(hash.as_slice()), UserId::parse(&user))
            {
                out.push(SavedLogin {
                    hash,
                    user,
                    tag: tag as PasswordTag,
                    expires_ms: expires as u64,
                });
            }
        }
        Ok(out)
    }
}
