//! `GET /api/message/history?with=&before=&beforeSeq=&limit=`: a page of
//! the texts between the caller and `with` (a user, `SYSTEM` or `#group`),
//! and `GET /api/conversations`, read from the database directly once the
//! store has written what it holds in memory.

use serde_json::{Value, json};

use super::HttpEnv;
use super::request::form_decode;
use super::response::{Reply, busy};
use crate::events::StoreOp;
use crate::store::{self, Before, HistoryItem, With};
use crate::wire::TYPE_TEXT;
use crate::wire::ids::{SYSTEM, UserId};

/// Default and largest page of history.
pub const HISTORY_LIMIT: usize = 50;
pub const HISTORY_MAX: usize = 200;

/// What a history request asks for.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    with: With,
    before: Before,
    limit: usize,
}

/// Reads `with=&before=&beforeSeq=&limit=`; the error is the 400's message.
fn parse_query(query: &str) -> Result<Query, &'static str> {
    let mut with = None;
    let mut before = Before {
        ms: i64::MAX as u64,
        seq: i64::MAX,
    };
    let mut limit = HISTORY_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = form_decode(v).unwrap_or_default();
        match k {
            "with" => match With::parse(&v) {
                Some(w) => with = Some(w),
                None => return Err("with must be a user id, SYSTEM or #group"),
            },
            "before" => match v.parse::<u64>() {
                Ok(b) => before.ms = b.min(i64::MAX as u64),
                Err(_) => return Err("before must be a time in ms since the epoch"),
            },
            "beforeSeq" => match v.parse::<i64>() {
                Ok(s) if s >= 0 => before.seq = s,
                _ => return Err("beforeSeq must be a seq from an earlier page"),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if n > 0 => limit = n.min(HISTORY_MAX),
                _ => return Err("limit must be a positive whole number"),
            },
            _ => {}
        }
    }
    let with = with.ok_or("with is required: ?with=<userId>")?;
    Ok(Query {
        with,
        before,
        limit,
    })
}

/// A stored text as history and the conversation list show it: the frame's
/// fields, its `seq`, and for the caller's own texts `receivedBy`.
pub fn message_json(item: &HistoryItem) -> Value {
    let m = &item.message;
    let mut v = json!({"id": m.id, "type": TYPE_TEXT, "isSystem": m.origin == SYSTEM,
        "from": m.origin, "to": m.recipients, "body": m.body, "timestamp": m.ts, "seq": m.seq});
    if let (Some(by), Some(o)) = (&item.received_by, v.as_object_mut()) {
        o.insert("receivedBy".into(), json!(by));
    }
    v
}

/// Asks the store to write the delivery rows it holds in memory, so that
/// a read sees every receipt so far. Best effort: when the store cannot
/// write (a full disk), its queue is full or it does not answer, the read
/// goes ahead and may miss the receipts of the last second; history stays
/// readable.
pub fn settle(env: &HttpEnv) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    if env.store.try_send(StoreOp::Settle { reply: tx }).is_ok()
        && rx.recv_timeout(super::ROUTER_WAIT) != Ok(true)
    {
        log::debug!("history: the store could not write its recent rows first");
    }
}

fn storage_failure(what: &str, e: &dyn std::fmt::Display) -> Reply {
    log::error!("{what}: {e}");
    busy("storage failure")
}

/// `GET /api/message/history`: texts between the caller and `with`, newest
/// first; a group's to its members only (403).
pub fn history(env: &HttpEnv, me: &UserId, query: &str) -> Reply {
    let Query {
        with,
        before,
        limit,
    } = match parse_query(query) {
        Ok(q) => q,
        Err(why) => return Reply::error(400, why),
    };
    settle(env);
    let conn = match store::open_reader(&env.db_path) {
        Ok(c) => c,
        Err(e) => return storage_failure("history", &e),
    };
    if let With::Group(g) = &with {
        match store::is_member(&conn, g, me) {
            Ok(true) => {}
            Ok(false) => return Reply::error(403, format!("not a member of #{g}")),
            Err(e) => return storage_failure("history", &e),
        }
    }
    match store::history(&conn, me, &with, before, limit) {
        Ok(items) => {
            let messages: Vec<Value> = items.iter().map(message_json).collect();
            Reply::ok(json!({ "messages": messages }))
        }
        Err(e) => storage_failure("history", &e),
    }
}

/// `GET /api/conversations`: the caller's conversations, newest activity
/// first, each with its last text and how many texts to the caller in it
/// none of its clients acknowledged.
pub fn conversations(env: &HttpEnv, me: &UserId) -> Reply {
    settle(env);
    let found = store::open_reader(&env.db_path).and_then(|c| store::conversations(&c, me));
    match found {
        Ok(list) => {
            let list: Vec<Value> = list
                .iter()
                .map(|c| json!({"with": c.with, "last": message_json(&c.last), "unread": c.unread}))
                .collect();
            Reply::ok(json!({ "conversations": list }))
        }
        Err(e) => storage_failure("conversations", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_query_names_with_and_may_page() {
        let q = parse_query("with=bob&before=17&beforeSeq=9&limit=500").unwrap();
        assert_eq!(q.with, With::parse("bob").unwrap());
        assert_eq!((q.before.ms, q.before.seq, q.limit), (17, 9, HISTORY_MAX));
        let q = parse_query("with=%23ops").unwrap();
        assert!(matches!(q.with, With::Group(g) if g.as_str() == "ops"));
        assert!(parse_query("with=%23Ops").is_err());
        assert!(parse_query("with=bob&beforeSeq=-1").is_err());
        assert_eq!(parse_query("with=SYSTEM").unwrap().limit, HISTORY_LIMIT);
        assert!(parse_query("before=1").is_err(), "with is required");
        assert!(parse_query("with=bob&limit=0").is_err());
        assert!(parse_query("with=bob&before=-1").is_err());
        assert!(parse_query("with=no%20way").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn any_query_gives_a_page_or_a_400(q in ".{0,200}") {
            if let Ok(p) = parse_query(&q) {
                prop_assert!(p.limit >= 1 && p.limit <= HISTORY_MAX);
                prop_assert!(p.before.ms <= i64::MAX as u64);
            }
        }
    }
}
