//! The store's decisions over SQLite (PROTOCOL.md section 7): per-client
//! delivery, receipts, dedup of resends, the offline limit, retention. The
//! caller wraps a batch of calls in one transaction ([`Db::begin`],
//! [`Db::commit`]). Small caches (unacknowledged counts, known clients) spare
//! the message path a read; after a failed batch they are reloaded.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tungstenite::Utf8Bytes;

use super::schema;
use super::{Accepted, NewMessage, ReceiptOutcome, Refused, StoreLimits, Target};
use crate::auth::{SavedLogin, SecretHash};
use crate::ids::{ClientKey, ClientName, Origin, UserId};
use crate::protocol::{Outgoing, TYPE_TEXT};
use crate::users::PasswordTag;

/// A failure of the database itself (disk full, I/O error, corruption).
pub type DbError = rusqlite::Error;

const STATE_UNACKED: i64 = 0;
const STATE_ACKED: i64 = 1;
const STATE_COPY: i64 = 2;

#[derive(Default)]
struct UserCache {
    unacked: usize,
    clients: Vec<ClientName>,
}

pub struct Db {
    conn: Connection,
    limits: StoreLimits,
    users: HashMap<UserId, UserCache>,
    /// Clients registered right now: never forgotten by the purge.
    connected: HashSet<ClientKey>,
}

/// A stored message, as history and redelivery need it.
pub struct StoredMessage {
    pub origin: String,
    pub id: String,
    pub recipients: String,
    pub body: String,
    pub ts: u64,
}

impl StoredMessage {
    pub fn frame(&self) -> Utf8Bytes {
        Outgoing {
            id: &self.id,
            kind: TYPE_TEXT,
            is_system: self.origin == crate::ids::SYSTEM,
            from: &self.origin,
            to: &self.recipients,
            body: &self.body,
            timestamp: self.ts,
        }
        .frame()
    }
}

/// Opens (creating if needed) and migrates the database; the error is one
/// line for the operator.
pub fn open_connection(path: &Path) -> Result<Connection, String> {
    let existed = path.exists();
    let mut conn = Connection::open(path).map_err(|e| e.to_string())?;
    // SQLite quietly opens a file it may not write read-only; then every
    // message would fail. Refuse to start instead.
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| e.to_string())?
    {
        return Err("the file is not writable by this user (check its owner and mode)".into());
    }
    if !existed {
        log::info!("created a new database {}", path.display());
    }
    // WAL: readers (history) never block the writer; FULL: a commit is on
    // disk when COMMIT returns, so 9001 SUCCESS can follow it.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("cannot use WAL journal mode (got {mode})"));
    }
    // An 8 MiB page cache holds the hot ends of the tables; SQLite's 2 MiB
    // default made the store re-read pages under load.
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-8192;",
    )
    .map_err(|e| e.to_string())?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    schema::migrate(&mut conn, schema::VERSION)?;
    // Every statement of the message path stays prepared (the default
    // cache holds 16, fewer than the store uses).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A read-only connection for queries outside the store thread.
pub fn open_reader(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn stored(row: &rusqlite::Row) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        origin: row.get(0)?,
        id: row.get(1)?,
        recipients: row.get(2)?,
        body: row.get(3)?,
        ts: row.get::<_, i64>(4)? as u64,
    })
}

/// Targets of a message: recipients, then the sender's own user (a copy)
/// when it is not among them.
fn targets(origin: &Origin, to: &[UserId]) -> Vec<Target> {
    let mut t: Vec<Target> = to
        .iter()
        .map(|u| Target {
            user: u.clone(),
            copy: false,
        })
        .collect();
    if let Origin::User(from) = origin
        && !to.contains(from)
    {
        t.push(Target {
            user: from.clone(),
            copy: true,
        });
    }
    t
}

impl Db {
    pub fn new(conn: Connection, limits: StoreLimits) -> Result<Db, DbError> {
        let mut db = Db {
            conn,
            limits,
            users: HashMap::new(),
            connected: HashSet::new(),
        };
        db.load_caches()?;
        Ok(db)
    }

    /// Rebuilds the caches from the database (at start, after a rollback).
    pub fn load_caches(&mut self) -> Result<(), DbError> {
        let mut users: HashMap<UserId, UserCache> = HashMap::new();
        let mut q = self
            .conn
            .prepare("SELECT user, COUNT(*) FROM inbox WHERE state = 0 GROUP BY user")?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (user, n) = row?;
            if let Some(u) = UserId::parse(&user) {
                users.entry(u).or_default().unacked = n as usize;
            }
        }
        let mut q = self.conn.prepare("SELECT user, client FROM clients")?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (user, client) = row?;
            if let (Some(u), Some(c)) = (UserId::parse(&user), ClientName::parse(&client)) {
                users.entry(u).or_default().clients.push(c);
            }
        }
        drop(q);
        self.users = users;
        Ok(())
    }

    pub fn begin(&self) -> Result<(), DbError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")
    }

    pub fn commit(&self) -> Result<(), DbError> {
        self.conn.execute_batch("COMMIT")
    }

    /// Undoes the open transaction and the caches with it.
    pub fn rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
        if let Err(e) = self.load_caches() {
            log::error!("reloading the store's caches failed: {e}");
        }
    }

    /// Accepts a message for every recipient or for none. `sender` is the
    /// sending client, which counts as having acknowledged its own message.
    pub fn accept(
        &mut self,
        msg: &NewMessage,
        sender: Option<&ClientKey>,
        now_ms: u64,
    ) -> Result<Result<Accepted, Refused>, DbError> {
        let origin = msg.origin.as_str();
        let limit = self.limits.offline_per_user;
        let full: Vec<UserId> = msg
            .to
            .iter()
            .filter(|u| self.users.get(*u).is_some_and(|c| c.unacked >= limit))
            .cloned()
            .collect();
        // A resend of an accepted message is SUCCESS even when a recipient
        // is full now; only that rare case needs the separate look-up.
        if !full.is_empty() {
            let seen: Option<i64> = self
                .conn
                .prepare_cached("SELECT seq FROM messages WHERE origin = ?1 AND id = ?2")?
                .query_row(params![origin, msg.id], |r| r.get(0))
                .optional()?;
            return Ok(match seen {
                Some(_) => Ok(Accepted::Duplicate),
                None => Err(Refused::Full(full)),
            });
        }
        let to = msg
            .to
            .iter()
            .map(UserId::as_str)
            .collect::<Vec<_>>()
            .join(",");
        // The unique (origin, id) index is the dedup: a resend inserts nothing.
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO messages (origin, id, recipients, body, ts) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (origin, id) DO NOTHING",
            )?
            .execute(params![origin, msg.id, to, msg.body, now_ms as i64])?;
        if inserted == 0 {
            return Ok(Ok(Accepted::Duplicate));
        }
        let seq = self.conn.last_insert_rowid();
        let targets = targets(&msg.origin, &msg.to);
        for t in &targets {
            let state = if t.copy { STATE_COPY } else { STATE_UNACKED };
            self.conn
                .prepare_cached("INSERT INTO inbox (user, seq, state) VALUES (?1, ?2, ?3)")?
                .execute(params![t.user.as_str(), seq, state])?;
            let cache = self.users.entry(t.user.clone()).or_default();
            if !t.copy {
                cache.unacked += 1;
            }
            for client in &cache.clients {
                let is_sender = sender.is_some_and(|s| s.user == t.user && s.client == *client);
                if t.copy && is_sender {
                    continue;
                }
                self.conn
                    .prepare_cached("INSERT INTO pending (user, client, seq) VALUES (?1, ?2, ?3)")?
                    .execute(params![t.user.as_str(), client.as_str(), seq])?;
            }
        }
        let frame = StoredMessage {
            origin: origin.to_string(),
            id: msg.id.clone(),
            recipients: to,
            body: msg.body.clone(),
            ts: now_ms,
        }
        .frame();
        Ok(Ok(Accepted::New { frame, targets }))
    }

    /// A client registered: what it must get before anything newer, in
    /// order. A client never seen before starts with what no client of its
    /// user has acknowledged.
    pub fn attach(&mut self, key: &ClientKey, now_ms: u64) -> Result<Vec<Utf8Bytes>, DbError> {
        let (user, client) = (key.user.as_str(), key.client.as_str());
        let cache = self.users.entry(key.user.clone()).or_default();
        if cache.clients.contains(&key.client) {
            self.conn
                .prepare_cached(
                    "UPDATE clients SET last_seen = ?3 WHERE user = ?1 AND client = ?2",
                )?
                .execute(params![user, client, now_ms as i64])?;
        } else {
            self.conn
                .prepare_cached(
                    "INSERT INTO clients (user, client, last_seen) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![user, client, now_ms as i64])?;
            self.conn
                .prepare_cached(
                    "INSERT INTO pending (user, client, seq) SELECT user, ?2, seq FROM inbox WHERE user = ?1 AND state = 0",
                )?
                .execute(params![user, client])?;
            cache.clients.push(key.client.clone());
        }
        self.connected.insert(key.clone());
        let mut q = self.conn.prepare_cached(
            "SELECT m.origin, m.id, m.recipients, m.body, m.ts FROM pending p JOIN messages m ON m.seq = p.seq
             WHERE p.user = ?1 AND p.client = ?2 ORDER BY p.seq",
        )?;
        q.query_map(params![user, client], stored)?
            .map(|m| m.map(|m| m.frame()))
            .collect()
    }

    /// A client's connection ended.
    pub fn detach(&mut self, key: &ClientKey, now_ms: u64) -> Result<(), DbError> {
        self.connected.remove(key);
        self.conn
            .prepare_cached("UPDATE clients SET last_seen = ?3 WHERE user = ?1 AND client = ?2")?
            .execute(params![
                key.user.as_str(),
                key.client.as_str(),
                now_ms as i64
            ])?;
        Ok(())
    }

    /// A client acknowledged the message (`origin`, `id`). `None`: this
    /// user never received such a message.
    pub fn receipt(
        &mut self,
        key: &ClientKey,
        origin: &Origin,
        id: &str,
    ) -> Result<Option<ReceiptOutcome>, DbError> {
        let user = key.user.as_str();
        // The common case in one statement: the first receipt of this user.
        let first: Option<i64> = self
            .conn
            .prepare_cached(
                "UPDATE inbox SET state = ?4 WHERE user = ?1 AND state = ?5
                 AND seq = (SELECT seq FROM messages WHERE origin = ?2 AND id = ?3) RETURNING seq",
            )?
            .query_row(
                params![user, origin.as_str(), id, STATE_ACKED, STATE_UNACKED],
                |r| r.get(0),
            )
            .optional()?;
        let (seq, outcome) = match first {
            Some(seq) => {
                if let Some(c) = self.users.get_mut(&key.user) {
                    c.unacked = c.unacked.saturating_sub(1);
                }
                let outcome = match origin {
                    Origin::User(sender) => ReceiptOutcome::Forward(sender.clone()),
                    Origin::System => ReceiptOutcome::Recorded,
                };
                (seq, outcome)
            }
            None => {
                // A repeat, a copy, or a message this user never received.
                let known: Option<i64> = self
                    .conn
                    .prepare_cached(
                        "SELECT i.seq FROM messages m JOIN inbox i ON i.seq = m.seq
                         WHERE m.origin = ?2 AND m.id = ?3 AND i.user = ?1",
                    )?
                    .query_row(params![user, origin.as_str(), id], |r| r.get(0))
                    .optional()?;
                let Some(seq) = known else { return Ok(None) };
                (seq, ReceiptOutcome::Recorded)
            }
        };
        self.conn
            .prepare_cached("DELETE FROM pending WHERE user = ?1 AND client = ?2 AND seq = ?3")?
            .execute(params![user, key.client.as_str(), seq])?;
        Ok(Some(outcome))
    }

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

    /// Messages of `user` that no client of it acknowledged.
    #[cfg(test)]
    pub fn unacked(&self, user: &UserId) -> usize {
        self.users.get(user).map_or(0, |c| c.unacked)
    }
}

/// Texts between `me` and `with` (or the system messages `me` received),
/// newest first, accepted before `before_ms`. A page never splits a
/// millisecond: messages of one commit share a timestamp, and the next page
/// (`before` = the oldest timestamp here) must not skip the rest of them.
/// So a page ends early rather than cut a millisecond, and holds more than
/// `limit` only if one millisecond alone does.
pub fn history(
    conn: &Connection,
    me: &UserId,
    with: &Origin,
    before_ms: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, DbError> {
    let query = |before: i64, from: i64, limit: usize| -> Result<Vec<StoredMessage>, DbError> {
        let mut q = conn.prepare_cached(
            "SELECT m.origin, m.id, m.recipients, m.body, m.ts FROM inbox i JOIN messages m ON m.seq = i.seq
             WHERE i.user = ?1 AND m.ts < ?3 AND m.ts >= ?4
               AND ((m.origin = ?2 AND ?2 <> ?1) OR (m.origin = ?1 AND instr(',' || m.recipients || ',', ',' || ?2 || ',') > 0))
             ORDER BY i.seq DESC LIMIT ?5",
        )?;
        let params = params![me.as_str(), with.as_str(), before, from, limit as i64];
        q.query_map(params, stored)?.collect()
    };
    let before = before_ms.min(i64::MAX as u64) as i64;
    let mut page = query(before, 0, limit + 1)?;
    if page.len() <= limit {
        return Ok(page);
    }
    let split = page[limit].ts;
    page.truncate(limit);
    match page.iter().position(|m| m.ts == split) {
        None => Ok(page),
        Some(0) => query(split as i64 + 1, split as i64, usize::MAX >> 1),
        Some(at) => {
            page.truncate(at);
            Ok(page)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Accepted;
    use std::path::PathBuf;

    struct TempDb {
        db: Db,
        dir: PathBuf,
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgeim-db-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn open(dir: &Path, limit: usize) -> Db {
        let conn = open_connection(&dir.join("edgeim.db")).unwrap();
        let limits = StoreLimits {
            offline_per_user: limit,
            retention_ms: 1000,
            forget_client_ms: 5000,
        };
        Db::new(conn, limits).unwrap()
    }

    fn store(limit: usize) -> TempDb {
        let dir = temp_dir();
        TempDb {
            db: open(&dir, limit),
            dir,
        }
    }

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }
    fn key(user: &str, client: &str) -> ClientKey {
        ClientKey {
            user: u(user),
            client: ClientName::parse(client).unwrap(),
        }
    }
    fn text(from: &str, id: &str, to: &[&str]) -> NewMessage {
        NewMessage {
            origin: Origin::User(u(from)),
            id: id.into(),
            to: to.iter().map(|t| u(t)).collect(),
            body: "hi".into(),
        }
    }
    fn ids(frames: &[Utf8Bytes]) -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                serde_json::from_str::<serde_json::Value>(f).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    impl TempDb {
        /// Each call in its own committed transaction, like one batch.
        fn accept(
            &mut self,
            m: NewMessage,
            sender: Option<&ClientKey>,
            now: u64,
        ) -> Result<Accepted, Refused> {
            self.db.begin().unwrap();
            let r = self.db.accept(&m, sender, now).unwrap();
            self.db.commit().unwrap();
            r
        }
        fn attach(&mut self, k: &ClientKey, now: u64) -> Vec<String> {
            self.db.begin().unwrap();
            let r = self.db.attach(k, now).unwrap();
            self.db.commit().unwrap();
            ids(&r)
        }
        fn receipt(&mut self, k: &ClientKey, from: &str, id: &str) -> Option<ReceiptOutcome> {
            self.db.begin().unwrap();
            let r = self
                .db
                .receipt(k, &Origin::parse(from).unwrap(), id)
                .unwrap();
            self.db.commit().unwrap();
            r
        }
        fn purge(&mut self, now: u64) {
            self.db.begin().unwrap();
            while self.db.purge_step(now, 2).unwrap() {}
            self.db.commit().unwrap();
        }
    }

    #[test]
    fn each_client_keeps_what_it_has_not_acknowledged() {
        let mut s = store(100);
        s.attach(&key("bob", "web"), 0);
        s.attach(&key("bob", "phone"), 0);
        s.accept(text("alice", "m1", &["bob"]), Some(&key("alice", "web")), 1)
            .unwrap();
        assert_eq!(
            s.receipt(&key("bob", "web"), "alice", "m1"),
            Some(ReceiptOutcome::Forward(u("alice")))
        );
        assert!(s.attach(&key("bob", "web"), 2).is_empty());
        assert_eq!(s.attach(&key("bob", "phone"), 2), ["m1"]);
        assert_eq!(
            s.receipt(&key("bob", "phone"), "alice", "m1"),
            Some(ReceiptOutcome::Recorded)
        );
        s.accept(text("alice", "m2", &["bob"]), None, 3).unwrap();
        assert_eq!(
            s.attach(&key("bob", "tablet"), 4),
            ["m2"],
            "a new client starts with what nobody acknowledged"
        );
    }

    #[test]
    fn copies_go_to_the_senders_other_clients_and_are_never_receipts() {
        let mut s = store(100);
        s.attach(&key("alice", "web"), 0);
        s.attach(&key("alice", "phone"), 0);
        let Ok(Accepted::New { targets, .. }) =
            s.accept(text("alice", "m1", &["bob"]), Some(&key("alice", "web")), 1)
        else {
            panic!()
        };
        assert!(targets.iter().any(|t| t.user == u("alice") && t.copy));
        assert!(
            s.attach(&key("alice", "web"), 2).is_empty(),
            "the sender acked its own message"
        );
        assert_eq!(s.attach(&key("alice", "phone"), 2), ["m1"]);
        assert_eq!(
            s.receipt(&key("alice", "phone"), "alice", "m1"),
            Some(ReceiptOutcome::Recorded)
        );
        assert_eq!(s.db.unacked(&u("alice")), 0);
    }

    #[test]
    fn resends_are_duplicates_and_unknown_receipts_are_refused() {
        let mut s = store(100);
        assert!(matches!(
            s.accept(text("alice", "m1", &["bob"]), None, 1),
            Ok(Accepted::New { .. })
        ));
        assert!(matches!(
            s.accept(text("alice", "m1", &["bob"]), None, 2),
            Ok(Accepted::Duplicate)
        ));
        assert!(matches!(
            s.accept(text("carol", "m1", &["bob"]), None, 2),
            Ok(Accepted::New { .. })
        ));
        assert_eq!(s.receipt(&key("bob", "web"), "alice", "nope"), None);
        assert_eq!(
            s.receipt(&key("dave", "web"), "alice", "m1"),
            None,
            "dave never received it"
        );
    }

    #[test]
    fn the_offline_limit_refuses_whole_messages() {
        let mut s = store(2);
        s.accept(text("alice", "1", &["bob"]), None, 1).unwrap();
        s.accept(text("alice", "2", &["bob"]), None, 1).unwrap();
        assert_eq!(
            s.accept(text("alice", "3", &["carol", "bob"]), None, 1)
                .err(),
            Some(Refused::Full(vec![u("bob")]))
        );
        assert_eq!(s.db.unacked(&u("carol")), 0, "nothing was kept for carol");
        s.receipt(&key("bob", "web"), "alice", "1");
        assert!(s.accept(text("alice", "3", &["bob"]), None, 1).is_ok());
    }

    #[test]
    fn state_survives_reopening_the_file() {
        let dir = temp_dir();
        {
            let mut s = TempDb {
                db: open(&dir, 2),
                dir: PathBuf::new(),
            };
            s.attach(&key("bob", "web"), 0);
            s.accept(text("alice", "m1", &["bob"]), None, 1).unwrap();
            s.accept(text("alice", "m2", &["bob"]), None, 1).unwrap();
        }
        let mut s = TempDb {
            db: open(&dir, 2),
            dir,
        };
        assert_eq!(
            s.db.unacked(&u("bob")),
            2,
            "counts are rebuilt from the file"
        );
        assert!(s.accept(text("alice", "m3", &["bob"]), None, 2).is_err());
        assert!(matches!(
            s.accept(text("alice", "m1", &["bob"]), None, 2),
            Ok(Accepted::Duplicate)
        ));
        assert_eq!(s.attach(&key("bob", "web"), 3), ["m1", "m2"]);
    }

    #[test]
    fn purge_deletes_old_messages_and_forgets_idle_clients() {
        let mut s = store(100);
        s.attach(&key("bob", "old"), 0);
        for i in 0..5 {
            s.accept(text("alice", &format!("m{i}"), &["bob"]), None, 10)
                .unwrap();
        }
        s.purge(2000);
        assert_eq!(s.db.unacked(&u("bob")), 0);
        assert!(s.attach(&key("bob", "web"), 2000).is_empty());
        assert!(
            matches!(
                s.accept(text("alice", "m1", &["bob"]), None, 2000),
                Ok(Accepted::New { .. })
            ),
            "ids are forgotten with their messages"
        );
        s.receipt(&key("bob", "web"), "alice", "m1");
        s.purge(6000);
        // "old" was forgotten: it comes back as a new client, and gets only
        // what nobody acknowledged (nothing).
        assert!(s.attach(&key("bob", "old"), 6001).is_empty());
        let left: i64 =
            s.db.conn
                .query_row("SELECT COUNT(*) FROM pending", [], |r| r.get(0))
                .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn history_pages_newest_first_between_two_users() {
        let mut s = store(1000);
        // Accepted at t = 100, 101, ...: a0 b0 a1 b1 ... a4 b4 c g.
        let mut t = 100;
        for i in 0..5 {
            s.accept(text("alice", &format!("a{i}"), &["bob"]), None, t)
                .unwrap();
            s.accept(text("bob", &format!("b{i}"), &["alice"]), None, t + 1)
                .unwrap();
            t += 2;
        }
        s.accept(text("alice", "c", &["carol"]), None, t).unwrap();
        s.accept(text("alice", "g", &["bob", "carol"]), None, t + 1)
            .unwrap();
        let page = |s: &TempDb, before, limit| {
            let with = Origin::parse("bob").unwrap();
            let h = history(&s.db.conn, &u("alice"), &with, before, limit).unwrap();
            h.into_iter().map(|m| m.id).collect::<Vec<_>>()
        };
        assert_eq!(page(&s, u64::MAX, 3), ["g", "b4", "a4"]);
        assert_eq!(page(&s, 103, 3), ["a1", "b0", "a0"], "before is exclusive");
        assert_eq!(page(&s, 100, 3), Vec::<String>::new());
        s.accept(text("alice", "note", &["alice"]), None, 400)
            .unwrap();
        let me = history(
            &s.db.conn,
            &u("alice"),
            &Origin::parse("alice").unwrap(),
            u64::MAX,
            50,
        )
        .unwrap();
        let ids: Vec<String> = me.into_iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            ["note"],
            "with=me is notes to self, not everything sent"
        );
        // Messages of one millisecond are never split across pages.
        for i in 0..4 {
            s.accept(text("bob", &format!("same{i}"), &["alice"]), None, 500)
                .unwrap();
        }
        s.accept(text("bob", "last", &["alice"]), None, 501)
            .unwrap();
        assert_eq!(
            page(&s, u64::MAX, 3),
            ["last"],
            "the page ends before the shared millisecond"
        );
        assert_eq!(
            page(&s, 501, 3),
            ["same3", "same2", "same1", "same0"],
            "one millisecond is one page"
        );
        assert_eq!(page(&s, 500, 2), ["g", "b4"]);
        let bob_view = history(
            &s.db.conn,
            &u("bob"),
            &Origin::parse("alice").unwrap(),
            u64::MAX,
            100,
        )
        .unwrap();
        assert_eq!(bob_view.len(), 16, "both directions and the group message");
    }

    #[test]
    fn a_version_1_file_is_migrated_with_its_data() {
        let dir = temp_dir();
        let path = dir.join("edgeim.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            schema::migrate(&mut conn, 1).unwrap();
            conn.execute("INSERT INTO messages (origin, id, recipients, body, ts) VALUES ('alice', 'm1', 'bob', 'hi', 5)", [])
                .unwrap();
            conn.execute(
                "INSERT INTO inbox (user, seq, state) VALUES ('bob', 1, 0)",
                [],
            )
            .unwrap();
        }
        let mut s = TempDb {
            db: open(&dir, 100),
            dir,
        };
        let v: i64 =
            s.db.conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
        assert_eq!(v, schema::VERSION);
        assert_eq!(s.attach(&key("bob", "web"), 10), ["m1"]);
        s.db.save_login(&[7; 32], &u("bob"), 5, 99).unwrap();
        assert_eq!(s.db.logins(50).unwrap().len(), 1);
        assert!(
            s.db.logins(99).unwrap().is_empty(),
            "expired logins are not loaded"
        );
    }

    #[test]
    fn an_empty_file_becomes_a_database() {
        let dir = temp_dir();
        std::fs::write(dir.join("edgeim.db"), b"").unwrap();
        let mut s = TempDb {
            db: open(&dir, 100),
            dir,
        };
        assert!(s.attach(&key("bob", "web"), 1).is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_not_a_reset() {
        let dir = temp_dir();
        let path = dir.join("edgeim.db");
        let junk = vec![0x5a_u8; 8192];
        std::fs::write(&path, &junk).unwrap();
        let e = open_connection(&path).expect_err("refused");
        assert!(e.contains("not a database"), "{e}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            junk,
            "the file was left alone"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = temp_dir();
        let path = dir.join("edgeim.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = open_connection(&path).expect_err("refused");
        assert!(e.contains("newer"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
