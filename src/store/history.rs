//! History pages (`GET /api/message/history`), read on a connection of
//! the HTTP worker's own: WAL lets readers run beside the store's writer.

use rusqlite::{Connection, params};

use super::messages::{DbError, StoredMessage, stored};
use crate::wire::ids::{Origin, UserId};

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
        // Texts up to the mark are found through `inbox`; the newer ones
        // (whose inbox rows the store writes up to a second later, see
        // store/recent.rs) straight from `messages`. One statement reads
        // one snapshot, so no text is in both or in neither.
        let mut q = conn.prepare_cached(
            "SELECT origin, id, recipients, body, ts FROM (
               SELECT m.seq, m.origin, m.id, m.recipients, m.body, m.ts
               FROM inbox i JOIN messages m ON m.seq = i.seq
               WHERE i.user = ?1 AND m.ts < ?3 AND m.ts >= ?4
                 AND ((m.origin = ?2 AND ?2 <> ?1) OR (m.origin = ?1 AND instr(',' || m.recipients || ',', ',' || ?2 || ',') > 0))
               UNION ALL
               SELECT m.seq, m.origin, m.id, m.recipients, m.body, m.ts
               FROM messages m
               WHERE m.seq > (SELECT h FROM recent_mark) AND m.ts < ?3 AND m.ts >= ?4
                 AND ((m.origin = ?2 AND ?2 <> ?1 AND instr(',' || m.recipients || ',', ',' || ?1 || ',') > 0)
                   OR (m.origin = ?1 AND instr(',' || m.recipients || ',', ',' || ?2 || ',') > 0))
             ) ORDER BY seq DESC LIMIT ?5",
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
