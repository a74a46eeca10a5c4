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

/// What a history request asks for.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    with: Origin,
    before: u64,
    limit: usize,
}

/// Reads `with=&before=&limit=`; the error is the 400's message.
fn parse_query(query: &str) -> Result<Query, &'static str> {
    let mut with = None;
    let mut before = i64::MAX as u64;
    let mut limit = HISTORY_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = form_decode(v).unwrap_or_default();
        match k {
            "with" => match Origin::parse(&v) {
                Some(o) => with = Some(o),
                None => return Err("with must be a user id or SYSTEM"),
            },
            "before" => match v.parse::<u64>() {
                Ok(b) => before = b.min(i64::MAX as u64),
                Err(_) => return Err("before must be a time in ms since the epoch"),
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

/// `GET /api/message/history?with=&before=&limit=`: texts between the caller
/// and `with`, newest first.
pub fn history(env: &HttpEnv, me: &UserId, query: &str) -> Reply {
    let Query {
        with,
        before,
        limit,
    } = match parse_query(query) {
        Ok(q) => q,
        Err(why) => return Reply::error(400, why),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_query_names_with_and_may_page() {
        let q = parse_query("with=bob&before=17&limit=500").unwrap();
        assert_eq!(q.with, Origin::parse("bob").unwrap());
        assert_eq!((q.before, q.limit), (17, HISTORY_MAX));
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
                prop_assert!(p.before <= i64::MAX as u64);
            }
        }
    }
}
