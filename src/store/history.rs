//! History pages (`GET /api/message/history`) and the conversation list
//! (`GET /api/conversations`), read on a connection of the HTTP worker's
//! own: WAL lets readers run beside the store's writer. The worker asks the
//! store to write what it holds in memory first ([`crate::events::StoreOp::Settle`]),
//! so that the receipts so far are in `inbox`.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};

use super::messages::{DbError, STATE_ACKED, STATE_UNACKED, StoredMessage, stored};
use crate::wire::ids::{GroupName, Origin, SYSTEM, UserId};

/// Who a history page is with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum With {
    /// A user, or `SYSTEM` for the system messages the caller received.
    Peer(Origin),
    /// A group's whole history (members only).
    Group(GroupName),
}

impl With {
    /// `bob`, `SYSTEM` or `#ops`.
    pub fn parse(s: &str) -> Option<With> {
        if s.starts_with('#') {
            GroupName::parse_tagged(s).map(With::Group)
        } else {
            Origin::parse(s).map(With::Peer)
        }
    }
}

/// Where a page ends: texts accepted before both (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Before {
    pub ms: u64,
    pub seq: i64,
}

/// A message in a history answer: the text, and for the caller's own
/// texts the users whose first receipt came (sorted).
#[derive(Debug, Clone)]
pub struct HistoryItem {
    pub message: StoredMessage,
    pub received_by: Option<Vec<String>>,
}

/// Whether `user` is in the group now.
pub fn is_member(conn: &Connection, group: &GroupName, user: &UserId) -> Result<bool, DbError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM members WHERE grp = ?1 AND user = ?2")?
        .query_row(params![group.as_str(), user.as_str()], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The newest `limit` texts between `me` and `with` before `before`,
/// newest first. Pages are ordered by seq, which is unique, so a page holds
/// exactly `min(limit, what is left)` and the next one starts at its oldest
/// seq. Membership of a group is the caller's to check.
pub fn history(
    conn: &Connection,
    me: &UserId,
    with: &With,
    before: Before,
    limit: usize,
) -> Result<Vec<HistoryItem>, DbError> {
    let before_ms = before.ms.min(i64::MAX as u64) as i64;
    let messages: Vec<StoredMessage> = match with {
        With::Group(g) => {
            let mut q = conn.prepare_cached(
                "SELECT seq, origin, id, recipients, body, ts FROM messages
                 WHERE grp = ?1 AND seq < ?2 AND ts < ?3 ORDER BY seq DESC LIMIT ?4",
            )?;
            q.query_map(
                params![g.as_str(), before.seq, before_ms, limit as i64],
                stored,
            )?
            .collect::<Result<_, _>>()?
        }
        With::Peer(peer) => {
            // Texts up to the mark are found through `inbox`; newer ones
            // (whose inbox rows the store writes up to a second later, see
            // store/recent.rs) straight from `messages`. One statement
            // reads one snapshot, so no text is in both or in neither.
            // Group texts belong to their group's history only.
            let mut q = conn.prepare_cached(
                "SELECT seq, origin, id, recipients, body, ts FROM (
                   SELECT m.seq, m.origin, m.id, m.recipients, m.body, m.ts
                   FROM inbox i JOIN messages m ON m.seq = i.seq
                   WHERE i.user = ?1 AND m.seq < ?3 AND m.ts < ?4 AND m.grp IS NULL
                     AND ((m.origin = ?2 AND ?2 <> ?1) OR (m.origin = ?1 AND instr(',' || m.recipients || ',', ',' || ?2 || ',') > 0))
                   UNION ALL
                   SELECT m.seq, m.origin, m.id, m.recipients, m.body, m.ts
                   FROM messages m
                   WHERE m.seq > (SELECT h FROM recent_mark) AND m.seq < ?3 AND m.ts < ?4 AND m.grp IS NULL
                     AND ((m.origin = ?2 AND ?2 <> ?1 AND instr(',' || m.recipients || ',', ',' || ?1 || ',') > 0)
                       OR (m.origin = ?1 AND instr(',' || m.recipients || ',', ',' || ?2 || ',') > 0))
                 ) ORDER BY seq DESC LIMIT ?5",
            )?;
            let p = params![
                me.as_str(),
                peer.as_str(),
                before.seq,
                before_ms,
                limit as i64
            ];
            q.query_map(p, stored)?.collect::<Result<_, _>>()?
        }
    };
    messages
        .into_iter()
        .map(|m| {
            let received_by = if m.origin == me.as_str() {
                Some(received_by(conn, &m)?)
            } else {
                None
            };
            Ok(HistoryItem {
                message: m,
                received_by,
            })
        })
        .collect()
}

/// The recipient users of the caller's text whose first receipt came:
/// their inbox rows are acknowledged. Looked up by (user, seq), the inbox
/// key: the text's recipients, or whoever is or was in its group.
fn received_by(conn: &Connection, m: &StoredMessage) -> Result<Vec<String>, DbError> {
    let mut out: Vec<String> = match m.recipients.strip_prefix('#') {
        Some(g) => {
            let mut q = conn.prepare_cached(
                "SELECT i.user FROM (SELECT user FROM members WHERE grp = ?1
                                      UNION SELECT user FROM former WHERE grp = ?1) u
                 JOIN inbox i ON i.user = u.user AND i.seq = ?2 AND i.state = ?3",
            )?;
            q.query_map(params![g, m.seq, STATE_ACKED], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        }
        None => {
            let mut q = conn.prepare_cached(
                "SELECT user FROM inbox WHERE user = ?1 AND seq = ?2 AND state = ?3",
            )?;
            let mut acked = Vec::new();
            for user in m.recipients.split(',') {
                if let Some(u) = q
                    .query_row(params![user, m.seq, STATE_ACKED], |r| r.get(0))
                    .optional()?
                {
                    acked.push(u);
                }
            }
            acked
        }
    };
    out.sort();
    out.dedup();
    Ok(out)
}

/// One conversation of the caller.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// `bob`, `#ops` or `SYSTEM`.
    pub with: String,
    pub last: HistoryItem,
    /// Texts to the caller in it that none of its clients acknowledged.
    pub unread: usize,
}

/// The caller's conversations, newest activity first, from its inbox rows
/// (the store has written them all: the caller asked it to settle first).
/// A text the caller sent to several users is in each one's conversation,
/// as in their histories; a group is listed while the caller is in it.
pub fn conversations(conn: &Connection, me: &UserId) -> Result<Vec<Conversation>, DbError> {
    let mine: HashSet<String> = {
        let mut q = conn.prepare_cached("SELECT grp FROM members WHERE user = ?1")?;
        q.query_map(params![me.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    let mut q = conn.prepare_cached(
        "SELECT m.seq, m.origin, m.id, m.recipients, m.body, m.ts, i.state, m.grp
         FROM inbox i JOIN messages m ON m.seq = i.seq
         WHERE i.user = ?1 ORDER BY i.seq DESC",
    )?;
    let rows = q.query_map(params![me.as_str()], |r| {
        Ok((
            stored(r)?,
            r.get::<_, i64>(6)?,
            r.get::<_, Option<String>>(7)?,
        ))
    })?;
    let mut order: Vec<String> = Vec::new();
    let mut found: HashMap<String, (StoredMessage, usize)> = HashMap::new();
    for row in rows {
        let (m, state, grp) = row?;
        let keys: Vec<String> = match &grp {
            Some(g) if mine.contains(g) => vec![format!("#{g}")],
            Some(_) => continue,
            None if m.origin == SYSTEM => vec![SYSTEM.to_string()],
            None if m.origin == me.as_str() => {
                m.recipients.split(',').map(str::to_string).collect()
            }
            None => vec![m.origin.clone()],
        };
        let unread = state == STATE_UNACKED && m.origin != me.as_str();
        for key in keys {
            let entry = found.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (m.clone(), 0)
            });
            if unread {
                entry.1 += 1;
            }
        }
    }
    order
        .into_iter()
        .filter_map(|with| found.remove(&with).map(|(m, unread)| (with, m, unread)))
        .map(|(with, m, unread)| {
            let received_by = if m.origin == me.as_str() {
                Some(received_by(conn, &m)?)
            } else {
                None
            };
            Ok(Conversation {
                with,
                last: HistoryItem {
                    message: m,
                    received_by,
                },
                unread,
            })
        })
        .collect()
}
