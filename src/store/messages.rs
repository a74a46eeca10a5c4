//! The store's decisions on the message path over SQLite (PROTOCOL.md
//! section 7): per-client delivery, receipts, dedup of resends, the
//! offline limit. The caller wraps a batch of calls in one transaction
//! ([`Db::begin`], [`Db::commit`]). Small caches (unacknowledged counts,
//! known clients) spare the message path a read; after a failed batch they
//! are reloaded.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};

use super::groups::Groups;
use super::recent::{Ack, Recent, RecentText, RowState, SETTLE, WRITE_BEHIND};
use super::{Accepted, NewMessage, ReceiptOutcome, Refused, StoreLimits, Target};
use crate::wire::ids::{ClientKey, ClientName, GroupName, Origin, To, UserId};

/// A failure of the database itself (disk full, I/O error, corruption).
pub type DbError = rusqlite::Error;

/// Most messages in one page of a backlog.
pub const PAGE_FRAMES: usize = 256;
/// About the most body bytes in one page (a page holds at least one
/// message): well inside the smallest `send_queue`, 1 MiB.
pub const PAGE_BYTES: usize = 512 * 1024;

/// One page of a client's backlog.
#[derive(Debug)]
pub struct Page {
    /// In order.
    pub messages: Vec<StoredMessage>,
    /// The seq of the last one (the next page starts after it).
    pub last_seq: i64,
    /// Whether more follow.
    pub more: bool,
}

/// Whether a text is held to `offline_per_user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// Refused whole if a recipient has that many unacknowledged (407).
    Offline,
    /// Kept whatever: a group's announcement, so that every change is
    /// announced (they are few: one per change an owner makes).
    None,
}

pub(super) const STATE_UNACKED: i64 = 0;
pub(super) const STATE_ACKED: i64 = 1;
pub(super) const STATE_COPY: i64 = 2;
#[derive(Default)]
pub(super) struct UserCache {
    pub(super) unacked: usize,
    pub(super) clients: Vec<ClientName>,
}

pub struct Db {
    pub(super) conn: Connection,
    pub(super) limits: StoreLimits,
    pub(super) users: HashMap<UserId, UserCache>,
    /// Clients registered right now: never forgotten by the purge.
    pub(super) connected: HashSet<ClientKey>,
    /// Whether commits are flushed now (`synchronous=FULL`, as opened) or
    /// only written to the WAL (`NORMAL`); see [`Db::flush_commits`].
    flushing: bool,
    /// Texts whose inbox and pending rows are not written yet (recent.rs).
    recent: Recent,
    /// `recent_mark.h`: every text up to this seq has its rows written.
    mark: i64,
    /// The rows of texts past the mark must be derived from `messages`
    /// first (at start, and after a failed batch lost `recent`).
    recover: bool,
    /// Every group, as in the `groups` and `members` tables.
    pub(super) groups: Groups,
}

/// A stored message, as history and redelivery need it; `wire` makes the
/// frame.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The order of acceptance.
    pub seq: i64,
    pub origin: String,
    pub id: String,
    pub recipients: String,
    pub body: String,
    pub ts: u64,
}

/// A message from the columns `seq, origin, id, recipients, body, ts`.
pub(super) fn stored(row: &rusqlite::Row) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        seq: row.get(0)?,
        origin: row.get(1)?,
        id: row.get(2)?,
        recipients: row.get(3)?,
        body: row.get(4)?,
        ts: row.get::<_, i64>(5)? as u64,
    })
}

/// Targets of a message: recipients, then the sender's own user (a copy)
/// when it is not among them.
pub(super) fn targets(origin: &Origin, to: &[UserId]) -> Vec<Target> {
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
            flushing: true,
            recent: Recent::default(),
            mark: 0,
            recover: true,
            groups: Groups::default(),
        };
        db.load_caches()?;
        // What a crash left behind past the mark is written before anything
        // else (the caches are loaded again after it).
        db.begin()?;
        db.commit()?;
        Ok(db)
    }

    /// Rebuilds the caches from the database (at start, after a rollback).
    pub fn load_caches(&mut self) -> Result<(), DbError> {
        self.users = self.read_user_caches()?;
        self.load_groups()
    }

    fn read_user_caches(&self) -> Result<HashMap<UserId, UserCache>, DbError> {
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
        Ok(users)
    }

    pub fn begin(&mut self) -> Result<(), DbError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        if self.recover {
            self.recover_recent()?;
            self.recover = false;
        }
        Ok(())
    }

    /// Writes the inbox and pending rows of every text past the mark, as
    /// if no client had acknowledged it (each client of each user it
    /// concerns but the sending one gets it again), and moves the mark
    /// to the newest text. Inside the open transaction.
    fn recover_recent(&mut self) -> Result<(), DbError> {
        self.recent = Recent::default();
        self.mark = self
            .conn
            .query_row("SELECT h FROM recent_mark", [], |r| r.get(0))?;
        type Past = (i64, String, String, Option<String>);
        let past: Vec<Past> = {
            let mut q = self.conn.prepare(
                "SELECT seq, origin, recipients, client FROM messages WHERE seq > ?1 ORDER BY seq",
            )?;
            q.query_map(params![self.mark], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?
        };
        let Some(&(newest, ..)) = past.last() else {
            return Ok(());
        };
        for (seq, origin, recipients, sender) in &past {
            let origin = Origin::parse(origin).unwrap_or(Origin::System);
            // A group text is for its members as they are now.
            let to = match GroupName::parse_tagged(recipients) {
                Some(g) => self.group_members(&g, &origin),
                None => recipients.split(',').filter_map(UserId::parse).collect(),
            };
            for t in targets(&origin, &to) {
                let state = if t.copy { STATE_COPY } else { STATE_UNACKED };
                self.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO inbox (user, seq, state) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![t.user.as_str(), seq, state])?;
                // As at acceptance: the sending client is not sent its own
                // text as a copy.
                let skip = if t.copy { sender.as_deref() } else { None };
                self.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO pending (user, client, seq)
                         SELECT user, client, ?2 FROM clients WHERE user = ?1 AND client IS NOT ?3",
                    )?
                    .execute(params![t.user.as_str(), seq, skip])?;
            }
        }
        log::info!(
            "store: wrote the delivery rows of {} recent texts again after a restart or a failed batch",
            past.len()
        );
        self.set_mark(newest)?;
        self.load_caches()
    }

    fn set_mark(&mut self, h: i64) -> Result<(), DbError> {
        self.conn
            .prepare_cached("UPDATE recent_mark SET h = ?1")?
            .execute(params![h])?;
        self.mark = h;
        Ok(())
    }

    /// Writes the rows of the recent texts that are due (`all`: every one),
    /// inside the open transaction: each text's inbox rows with their state
    /// now, and pending rows only for the clients that have not
    /// acknowledged it.
    pub fn write_behind(&mut self, all: bool) -> Result<(), DbError> {
        let upto = if all {
            self.recent.last_seq()
        } else {
            self.recent.due(Instant::now(), WRITE_BEHIND, SETTLE)
        };
        match upto {
            Some(upto) => self.write_behind_upto(upto),
            None => Ok(()),
        }
    }

    /// Writes the rows of the recent texts up to `upto` (see
    /// [`Db::write_behind`]) and moves the mark there.
    pub(super) fn write_behind_upto(&mut self, upto: i64) -> Result<(), DbError> {
        for (seq, text) in self.recent.take_upto(upto) {
            for (user, state) in &text.inbox {
                let state = match state {
                    RowState::Unacked => STATE_UNACKED,
                    RowState::Acked => STATE_ACKED,
                    RowState::Copy => STATE_COPY,
                };
                self.conn
                    .prepare_cached("INSERT INTO inbox (user, seq, state) VALUES (?1, ?2, ?3)")?
                    .execute(params![user.as_str(), seq, state])?;
            }
            for (user, client) in &text.pending {
                self.conn
                    .prepare_cached("INSERT INTO pending (user, client, seq) VALUES (?1, ?2, ?3)")?
                    .execute(params![user.as_str(), client.as_str(), seq])?;
            }
        }
        if upto > self.mark {
            self.set_mark(upto)?;
        }
        Ok(())
    }

    /// Whether the next commits end with an fsync. In WAL mode a commit
    /// without one is still atomic and survives a crash of the process (it
    /// is in the OS's cache); only a power cut can undo it, and with it
    /// every unflushed commit after the last flushed one, never a flushed
    /// one: the WAL is written in order, so a flush makes all before it
    /// durable. Set between transactions.
    pub fn flush_commits(&mut self, flush: bool) -> Result<(), DbError> {
        if flush != self.flushing {
            self.conn.execute_batch(if flush {
                "PRAGMA synchronous=FULL"
            } else {
                "PRAGMA synchronous=NORMAL"
            })?;
            self.flushing = flush;
        }
        Ok(())
    }

    pub fn commit(&self) -> Result<(), DbError> {
        self.conn.execute_batch("COMMIT")
    }

    /// Undoes the open transaction and the caches with it. What the recent
    /// texts' receipts had changed is lost with it: their rows are derived
    /// again in the next transaction ([`Db::begin`]).
    pub fn rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
        self.recent = Recent::default();
        self.recover = true;
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
        match &msg.to {
            To::Users(to) => self.accept_to(msg, to, sender, Limit::Offline, now_ms),
            // Membership is known here only, so a group text's empty body
            // is refused here too, after its `to` (section 5's order).
            To::Group(g) => match self.group_recipients(g, &msg.origin) {
                Ok(_) if msg.body.is_empty() => Ok(Err(Refused::EmptyBody)),
                Ok(to) => self.accept_to(msg, &to, sender, Limit::Offline, now_ms),
                Err(r) => Ok(Err(r)),
            },
        }
    }

    /// [`Db::accept`] for the recipient users `to` (a group's members).
    pub(super) fn accept_to(
        &mut self,
        msg: &NewMessage,
        to: &[UserId],
        sender: Option<&ClientKey>,
        limit: Limit,
        now_ms: u64,
    ) -> Result<Result<Accepted, Refused>, DbError> {
        let origin = msg.origin.as_str();
        let limit = match limit {
            Limit::Offline => self.limits.offline_per_user,
            Limit::None => usize::MAX,
        };
        let full: Vec<UserId> = to
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
        let joined = msg.to.joined();
        let group = match &msg.to {
            To::Group(g) => Some(g.as_str()),
            To::Users(_) => None,
        };
        // The unique (origin, id) index is the dedup: a resend inserts nothing.
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO messages (origin, id, recipients, body, ts, client, grp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (origin, id) DO NOTHING",
            )?
            .execute(params![
                origin,
                msg.id,
                joined,
                msg.body,
                now_ms as i64,
                sender.map(|s| s.client.as_str()),
                group
            ])?;
        if inserted == 0 {
            return Ok(Ok(Accepted::Duplicate));
        }
        let seq = self.conn.last_insert_rowid();
        if seq <= self.mark {
            // SQLite reuses the seqs of deleted newest rows (the clean-up
            // emptied the table): keep "every text up to the mark has its
            // rows" true. Nothing is recent then (the clean-up wrote it).
            self.set_mark(seq - 1)?;
        }
        let targets = targets(&msg.origin, to);
        let mut recent = RecentText {
            at: Instant::now(),
            inbox: Vec::with_capacity(targets.len()),
            pending: Vec::new(),
        };
        for t in &targets {
            let state = if t.copy {
                RowState::Copy
            } else {
                RowState::Unacked
            };
            recent.inbox.push((t.user.clone(), state));
            let cache = self.users.entry(t.user.clone()).or_default();
            if !t.copy {
                cache.unacked += 1;
            }
            for client in &cache.clients {
                let is_sender = sender.is_some_and(|s| s.user == t.user && s.client == *client);
                if t.copy && is_sender {
                    continue;
                }
                recent.pending.push((t.user.clone(), client.clone()));
            }
        }
        self.recent.add(seq, recent);
        let message = StoredMessage {
            seq,
            origin: origin.to_string(),
            id: msg.id.clone(),
            recipients: joined,
            body: msg.body.clone(),
            ts: now_ms,
        };
        Ok(Ok(Accepted::New { message, targets }))
    }

    /// A client registered: what it must get before anything newer, in
    /// order. A client never seen before starts with what no client of its
    /// user has acknowledged.
    pub fn attach(&mut self, key: &ClientKey, now_ms: u64) -> Result<Page, DbError> {
        self.write_behind(true)?;
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
        self.page(key, 0)
    }

    /// The next page of what `key` has not acknowledged, after `after_seq`,
    /// in order: at most [`PAGE_FRAMES`] messages and about
    /// [`PAGE_BYTES`] of bodies, so that a backlog never sits whole in
    /// memory (up to `offline_per_user` × `max_message_bytes`).
    pub fn page(&mut self, key: &ClientKey, after_seq: i64) -> Result<Page, DbError> {
        // The backlog is read from `pending`: every recent text's rows first.
        self.write_behind(true)?;
        let mut q = self.conn.prepare_cached(
            "SELECT p.seq, m.origin, m.id, m.recipients, m.body, m.ts FROM pending p JOIN messages m ON m.seq = p.seq
             WHERE p.user = ?1 AND p.client = ?2 AND p.seq > ?3 ORDER BY p.seq LIMIT ?4",
        )?;
        let rows = q.query_map(
            params![
                key.user.as_str(),
                key.client.as_str(),
                after_seq,
                PAGE_FRAMES as i64 + 1
            ],
            stored,
        )?;
        let mut page = Page {
            messages: Vec::new(),
            last_seq: after_seq,
            more: false,
        };
        let mut bytes = 0;
        for row in rows {
            let m = row?;
            if page.messages.len() == PAGE_FRAMES
                || (bytes >= PAGE_BYTES && !page.messages.is_empty())
            {
                page.more = true;
                break;
            }
            bytes += m.body.len();
            page.last_seq = m.seq;
            page.messages.push(m);
        }
        Ok(page)
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
        let seq: Option<i64> = self
            .conn
            .prepare_cached("SELECT seq FROM messages WHERE origin = ?1 AND id = ?2")?
            .query_row(params![origin.as_str(), id], |r| r.get(0))
            .optional()?;
        let Some(seq) = seq else { return Ok(None) };
        let first = |this: &mut Db| {
            if let Some(c) = this.users.get_mut(&key.user) {
                c.unacked = c.unacked.saturating_sub(1);
            }
            match origin {
                Origin::User(sender) => ReceiptOutcome::Forward(sender.clone()),
                Origin::System => ReceiptOutcome::Recorded,
            }
        };
        // A recent text: its rows are still in memory (the common case).
        if let Some(text) = self.recent.get_mut(seq) {
            return Ok(match text.receipt(&key.user, &key.client) {
                None => None,
                Some(Ack::First) => Some(first(self)),
                Some(Ack::Again) => Some(ReceiptOutcome::Recorded),
            });
        }
        let acked = self
            .conn
            .prepare_cached(
                "UPDATE inbox SET state = ?3 WHERE user = ?1 AND seq = ?2 AND state = ?4 RETURNING seq",
            )?
            .query_row(params![user, seq, STATE_ACKED, STATE_UNACKED], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?;
        let outcome = if acked.is_some() {
            first(self)
        } else {
            // A repeat, a copy, or a message this user never received.
            let known: Option<i64> = self
                .conn
                .prepare_cached("SELECT seq FROM inbox WHERE user = ?1 AND seq = ?2")?
                .query_row(params![user, seq], |r| r.get(0))
                .optional()?;
            if known.is_none() {
                return Ok(None);
            }
            ReceiptOutcome::Recorded
        };
        self.conn
            .prepare_cached("DELETE FROM pending WHERE user = ?1 AND client = ?2 AND seq = ?3")?
            .execute(params![user, key.client.as_str(), seq])?;
        Ok(Some(outcome))
    }

    /// Messages of `user` that no client of it acknowledged.
    #[cfg(test)]
    pub fn unacked(&self, user: &UserId) -> usize {
        self.users.get(user).map_or(0, |c| c.unacked)
    }
}
