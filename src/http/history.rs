//! `GET /api/message/history?with=&before=&limit=`: a page of the texts
//! between the caller and `with`, read from the database directly.

use serde_json::{Value, json};

use super::HttpEnv;
use super::request::form_decode;
use super::response::Reply;
use crate::store;
use crate::wire::TYPE_TEXT;
use crate::wire::ids::{Origin, SYSTEM, UserId};

/// Default and largest page of history.
const HISTORY_LIMIT: usize = 50;
const HISTORY_MAX: usize = 200;

/// `GET /api/message/history?with=&before=&limit=`: texts between the caller
/// and `with`, newest first.
pub fn history(env: &HttpEnv, me: &UserId, query: &str) -> Reply {
    let mut with = None;
    let mut before = i64::MAX as u64;
    let mut limit = HISTORY_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = form_decode(v).unwrap_or_default();
        match k {
            "with" => match Origin::parse(&v) {
                Some(o) => with = Some(o),
                None => return Reply::error(400, "with must be a user id or SYSTEM"),
            },
            "before" => match v.parse::<u64>() {
                Ok(b) => before = b.min(i64::MAX as u64),
                Err(_) => return Reply::error(400, "before must be a time in ms since the epoch"),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if n > 0 => limit = n.min(HISTORY_MAX),
                _ => return Reply::error(400, "limit must be a positive whole number"),
            },
            _ => {}
        }
    }
    let Some(with) = with else {
        return Reply::error(400, "with is required: ?with=<userId>");
    };
    let found = store::open_reader(&env.db_path)
        .and_then(|conn| store::history(&conn, me, &with, before, limit));
    match found {
        Ok(messages) => {
            let messages: Vec<Value> = messages
                .iter()
                .map(|m| {
                    json!({"id": m.id, "type": TYPE_TEXT, "isSystem": m.origin == SYSTEM,
                        "from": m.origin, "to": m.recipients, "body": m.body, "timestamp": m.ts})
                })
                .collect();
            Reply::ok(json!({ "messages": messages }))
        }
        Err(e) => {
            log::error!("history: {e}");
            Reply::error(503, "storage failure").header("Retry-After", "1".into())
        }
    }
}
