//! Parsing a client's text frame into a typed message, in the protocol's
//! check order (PROTOCOL.md sections 3–5). No I/O here: the connection
//! threads and the router call these functions and unit tests drive them
//! directly.

use serde_json::{Map, Value};

use super::ids::{GroupName, Origin, To, UserId};
use super::{
    MAX_ID_CHARS, Reject, Status, TYPE_PRESENCE, TYPE_RECEIVE_STATUS, TYPE_REGISTER,
    TYPE_SEND_STATUS, TYPE_TEXT,
};

/// A frame that passed the shape checks (401): every required field is
/// present with its type. The id is kept as the client sent it.
#[derive(Debug)]
pub struct Envelope {
    pub id: String,
    pub kind: i64,
    pub is_system: bool,
    pub from: String,
    pub to: String,
    pub body: Body,
}

/// `body` is a string on the wire; 1000 and 9101 also accept an object.
#[derive(Debug)]
pub enum Body {
    Text(String),
    Object(Map<String, Value>),
}

/// Parses a text frame. On failure, returns the id to answer with (the
/// client's when it was a usable string) and the 401 refusal.
pub fn parse(text: &str) -> Result<Envelope, (Option<String>, Reject)> {
    let bad =
        |id: Option<String>, why: &'static str| Err((id, Reject::new(Status::MessageError, why)));
    if nested_deeper_than(text, MAX_JSON_DEPTH) {
        return bad(None, "JSON nested too deep");
    }
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else {
        return bad(None, "frame is not a JSON object");
    };
    // Echo the client's id whenever it is a usable string, even if another
    // field is wrong, so the client can match the answer.
    let id = match map.remove("id") {
        Some(Value::String(s)) => s,
        None => return bad(None, "missing field `id`"),
        Some(_) => return bad(None, "field `id` must be a string"),
    };
    let echo = (!id.is_empty() && id.chars().count() <= MAX_ID_CHARS).then(|| id.clone());
    let kind = match map.remove("type") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(k) => k,
            None => return bad(echo, "field `type` must be an integer"),
        },
        None => return bad(echo, "missing field `type`"),
        Some(_) => return bad(echo, "field `type` must be an integer"),
    };
    let is_system = match map.remove("isSystem") {
        Some(Value::Bool(b)) => b,
        None => return bad(echo, "missing field `isSystem`"),
        Some(_) => return bad(echo, "field `isSystem` must be a boolean"),
    };
    let from = match map.remove("from") {
        Some(Value::String(s)) => s,
        None => return bad(echo, "missing field `from`"),
        Some(_) => return bad(echo, "field `from` must be a string"),
    };
    let to = match map.remove("to") {
        Some(Value::String(s)) => s,
        None => return bad(echo, "missing field `to`"),
        Some(_) => return bad(echo, "field `to` must be a string"),
    };
    let body = match map.remove("body") {
        Some(Value::String(s)) => Body::Text(s),
        Some(Value::Object(o)) => Body::Object(o),
        None => return bad(echo, "missing field `body`"),
        Some(_) => return bad(echo, "field `body` must be a string"),
    };
    // Only 1000 and 9101 take an object (section 4): for any other type an
    // object is a field of the wrong type, a 401 like the others.
    if matches!(body, Body::Object(_)) && kind != TYPE_REGISTER && kind != TYPE_RECEIVE_STATUS {
        return bad(echo, "field `body` must be a string");
    }
    if echo.is_none() {
        return bad(None, "field `id` must be 1 to 64 characters");
    }
    Ok(Envelope {
        id,
        kind,
        is_system,
        from,
        to,
        body,
    })
}

/// The deepest nesting of arrays and objects a frame may have, the frame's
/// own object counting as one. A protocol frame needs two (an object
/// `body`); unknown fields are ignored but still parsed. serde_json stops at
/// 128 levels, but parsing 128 nested objects overflowed a reader's 256 KiB
/// stack in a debug build (measured, tests/hostile_ws.rs), and a stack
/// overflow aborts the whole server: 64 keeps well inside it.
pub const MAX_JSON_DEPTH: usize = 64;

/// Whether `text` nests arrays and objects deeper than `max`, by one pass
/// over its bytes (brackets inside strings do not count). Invalid JSON is
/// the parser's to refuse; this only bounds how deep the parser recurses.
fn nested_deeper_than(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A register message (1000), checked as far as the reader can check it.
#[derive(Debug, PartialEq, Eq)]
pub struct Register {
    pub id: String,
    pub from: String,
    pub session_id: String,
    /// `"presence": true` in the body: the client wants 3001 frames
    /// (section 11). Any other value, or none, is false, not an error: a
    /// version 1 client never sends it.
    pub presence: bool,
}

/// A text (2001) from a registered user, recipients normalised.
#[derive(Debug, PartialEq, Eq)]
pub struct Text {
    pub id: String,
    pub to: To,
    pub body: String,
}

/// A receive status (9101): `to` names the original sender, `body` is the
/// StatusBody as the string that is forwarded.
#[derive(Debug, PartialEq, Eq)]
pub struct Receipt {
    pub id: String,
    pub to: Origin,
    pub body: String,
}

/// What a message from a registered client asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Text(Text),
    Receipt(Receipt),
}

/// Checks a register message (the only message allowed before register):
/// `isSystem` (405), then the body (404). Returns the attempt and, if it
/// already failed here, why. The session id is taken whenever the body has
/// one, so the router can use it up: every register attempt spends its id.
/// The session id and `from` are the router's to check, since only it
/// knows whose session it is.
pub fn check_register(env: Envelope) -> (Register, Option<Reject>) {
    let mut body = body_object(env.body);
    let session_id = body.as_mut().and_then(|o| match o.remove("sessionId") {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    });
    let presence = body.is_some_and(|o| o.get("presence") == Some(&Value::Bool(true)));
    let refused = if env.is_system {
        Some(Reject::new(
            Status::FromError,
            "isSystem must be false on a client's message",
        ))
    } else if session_id.is_none() {
        Some(Reject::new(
            Status::BodyError,
            "body must be {\"sessionId\": \"...\"}",
        ))
    } else {
        None
    };
    let msg = Register {
        id: env.id,
        from: env.from,
        session_id: session_id.unwrap_or_default(),
        presence,
    };
    (msg, refused)
}

/// What `check` needs to know about the world.
pub struct Rules<'a> {
    pub user: &'a UserId,
    pub max_recipients: usize,
    pub user_exists: &'a dyn Fn(&str) -> bool,
}

/// Checks a message from a registered client in the protocol's order after
/// the rate limit: type (403) → from/isSystem (405) → to (406) → body (404).
pub fn check(env: Envelope, rules: &Rules) -> Result<Request, Reject> {
    match env.kind {
        TYPE_TEXT | TYPE_RECEIVE_STATUS => {}
        TYPE_REGISTER => {
            return Err(Reject::new(
                Status::TypeError,
                "this connection is already registered",
            ));
        }
        TYPE_SEND_STATUS => {
            return Err(Reject::new(
                Status::TypeError,
                "type 9001 is sent by the server only",
            ));
        }
        TYPE_PRESENCE => {
            return Err(Reject::new(
                Status::TypeError,
                "type 3001 is sent by the server only",
            ));
        }
        other => {
            return Err(Reject::new(
                Status::TypeError,
                format!("unknown type {other}"),
            ));
        }
    }
    if env.is_system {
        return Err(Reject::new(
            Status::FromError,
            "isSystem must be false on a client's message",
        ));
    }
    if env.from != rules.user.as_str() {
        return Err(Reject::new(
            Status::FromError,
            "from is not the registered user",
        ));
    }
    if env.kind == TYPE_TEXT {
        let to = recipients(&env.to, rules.max_recipients, rules.user_exists)?;
        let body = match env.body {
            // A group text's empty body is the store's to refuse, after
            // it has checked the group and the sender's membership (406
            // comes before 404).
            Body::Text(s) if !s.is_empty() || matches!(to, To::Group(_)) => s,
            Body::Text(_) => return Err(Reject::new(Status::BodyError, "body is empty")),
            // `parse` refuses an object body for a text (401).
            Body::Object(_) => {
                return Err(Reject::new(
                    Status::MessageError,
                    "field `body` must be a string",
                ));
            }
        };
        return Ok(Request::Text(Text {
            id: env.id,
            to,
            body,
        }));
    }
    let to = match Origin::parse(env.to.trim()) {
        Some(o) => o,
        None => {
            return Err(Reject::new(
                Status::ToError,
                "to must name the original sender",
            ));
        }
    };
    let body = status_body(env.body).ok_or_else(|| {
        Reject::new(
            Status::BodyError,
            "body must be a StatusBody {code, status, msg}",
        )
    })?;
    Ok(Request::Receipt(Receipt {
        id: env.id,
        to,
        body,
    }))
}

/// Splits and normalises `to`: trimmed, duplicates once, first-seen order;
/// then the count (at most `max`) and that every user exists.
pub fn recipients(to: &str, max: usize, user_exists: &dyn Fn(&str) -> bool) -> Result<To, Reject> {
    if to.trim().is_empty() {
        return Err(Reject::new(Status::ToError, "to is empty"));
    }
    // A group is the only entry (section 10); whether it exists and the
    // sender is a member is the store's to check, which owns the groups.
    if to.contains('#') {
        let one = to.trim();
        return match GroupName::parse_tagged(one) {
            Some(g) if !one.contains(',') => Ok(To::Group(g)),
            _ if one.contains(',') => Err(Reject::new(
                Status::ToError,
                "a group must be the only recipient",
            )),
            _ => Err(Reject::new(
                Status::ToError,
                format!("to has a malformed group name: {}", printable(one)),
            )),
        };
    }
    let mut out: Vec<UserId> = Vec::new();
    for part in to.split(',') {
        let part = part.trim();
        let Some(user) = UserId::parse(part) else {
            return Err(Reject::new(
                Status::ToError,
                if part.is_empty() {
                    "to has an empty entry".to_string()
                } else {
                    format!("to has a malformed user id: {}", printable(part))
                },
            ));
        };
        if !out.contains(&user) {
            out.push(user);
        }
        if out.len() > max {
            return Err(Reject::new(
                Status::ToError,
                format!("too many recipients (at most {max})"),
            ));
        }
    }
    let unknown: Vec<&str> = out
        .iter()
        .map(UserId::as_str)
        .filter(|u| !user_exists(u))
        .collect();
    if !unknown.is_empty() {
        return Err(Reject::new(
            Status::ToError,
            format!("unknown user: {}", unknown.join(",")),
        ));
    }
    Ok(To::Users(out))
}

/// Echoes at most a short, printable prefix of client text in an error.
fn printable(s: &str) -> String {
    s.chars()
        .take(MAX_ID_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn body_object(body: Body) -> Option<Map<String, Value>> {
    match body {
        Body::Object(o) => Some(o),
        Body::Text(s) if nested_deeper_than(&s, MAX_JSON_DEPTH) => None,
        Body::Text(s) => match serde_json::from_str(&s) {
            Ok(Value::Object(o)) => Some(o),
            _ => None,
        },
    }
}

/// Validates a StatusBody and returns it as the string that is forwarded.
fn status_body(body: Body) -> Option<String> {
    let (text, obj) = match body {
        Body::Text(s) => {
            // The body is JSON in a string: bounded like a frame.
            if nested_deeper_than(&s, MAX_JSON_DEPTH) {
                return None;
            }
            let o = match serde_json::from_str(&s) {
                Ok(Value::Object(o)) => o,
                _ => return None,
            };
            (Some(s), o)
        }
        Body::Object(o) => (None, o),
    };
    let ok = obj.get("code").is_some_and(|c| c.as_i64().is_some())
        && obj.get("status").is_some_and(Value::is_string)
        && obj.get("msg").is_some_and(Value::is_string);
    if !ok {
        return None;
    }
    Some(text.unwrap_or_else(|| Value::Object(obj).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(json: &str) -> Envelope {
        parse(json).expect("valid envelope")
    }

    fn rules_for(user: &UserId) -> Rules<'_> {
        Rules {
            user,
            max_recipients: 3,
            user_exists: &|u| u != "ghost",
        }
    }

    fn text(to: &str, body: &str) -> String {
        serde_json::json!({"id":"m1","type":2001,"isSystem":false,"from":"alice","to":to,"body":body}).to_string()
    }

    #[test]
    fn shape_errors_are_401_and_echo_usable_ids() {
        for bad in ["", "[]", "42", "{", "\"x\""] {
            assert_eq!(
                parse(bad).unwrap_err().1.status,
                Status::MessageError,
                "{bad}"
            );
        }
        let (id, r) =
            parse(r#"{"id":"x1","type":"2001","isSystem":false,"from":"a","to":"b","body":"c"}"#)
                .unwrap_err();
        assert_eq!(
            (id.as_deref(), r.status),
            (Some("x1"), Status::MessageError)
        );
        assert!(r.msg.contains("type"));
        let (id, _) =
            parse(r#"{"type":2001,"isSystem":false,"from":"a","to":"b","body":"c"}"#).unwrap_err();
        assert_eq!(id, None);
        let long = "i".repeat(65);
        let (id, r) = parse(&format!(
            r#"{{"id":"{long}","type":2001,"isSystem":false,"from":"a","to":"b","body":"c"}}"#
        ))
        .unwrap_err();
        assert_eq!((id, r.status), (None, Status::MessageError));
        for missing in ["isSystem", "from", "to", "body"] {
            let mut v: Value = serde_json::from_str(&text("bob", "hi")).unwrap();
            v.as_object_mut().unwrap().remove(missing);
            let (_, r) = parse(&v.to_string()).unwrap_err();
            assert!(r.msg.contains(missing), "{missing}: {}", r.msg);
        }
        let (_, r) =
            parse(r#"{"id":"a","type":2001,"isSystem":false,"from":"a","to":"b","body":7}"#)
                .unwrap_err();
        assert_eq!(r.status, Status::MessageError);
    }

    #[test]
    fn unknown_fields_are_ignored_and_ids_count_characters() {
        let id = "é".repeat(64);
        let e = env(&format!(
            r#"{{"id":"{id}","type":2001,"isSystem":false,"from":"a","to":"b","body":"c","x":[1]}}"#
        ));
        assert_eq!(e.id, id);
    }

    #[test]
    fn check_order_type_then_from_then_to_then_body() {
        let alice = UserId::parse("alice").unwrap();
        let r = rules_for(&alice);
        let all_wrong = r#"{"id":"1","type":7,"isSystem":true,"from":"eve","to":"","body":""}"#;
        assert_eq!(
            check(env(all_wrong), &r).unwrap_err().status,
            Status::TypeError
        );
        let from_wrong =
            r#"{"id":"1","type":2001,"isSystem":false,"from":"eve","to":"","body":""}"#;
        assert_eq!(
            check(env(from_wrong), &r).unwrap_err().status,
            Status::FromError
        );
        let system =
            r#"{"id":"1","type":2001,"isSystem":true,"from":"alice","to":"bob","body":"x"}"#;
        assert_eq!(
            check(env(system), &r).unwrap_err().status,
            Status::FromError
        );
        assert_eq!(
            check(env(&text("", "")), &r).unwrap_err().status,
            Status::ToError
        );
        assert_eq!(
            check(env(&text("bob", "")), &r).unwrap_err().status,
            Status::BodyError
        );
        let nine =
            r#"{"id":"1","type":9001,"isSystem":false,"from":"alice","to":"bob","body":"x"}"#;
        assert_eq!(check(env(nine), &r).unwrap_err().status, Status::TypeError);
    }

    #[test]
    fn recipients_are_trimmed_deduplicated_and_in_first_seen_order() {
        let alice = UserId::parse("alice").unwrap();
        let r = rules_for(&alice);
        let Request::Text(t) = check(env(&text(" carol , bob,carol ", "hi")), &r).unwrap() else {
            panic!()
        };
        assert_eq!(t.to.joined(), "carol,bob");
    }

    #[test]
    fn a_group_is_named_with_a_hash_and_is_the_only_recipient() {
        let alice = UserId::parse("alice").unwrap();
        let r = rules_for(&alice);
        let Request::Text(t) = check(env(&text(" #ops ", "hi")), &r).unwrap() else {
            panic!()
        };
        assert_eq!(t.to, To::Group(GroupName::parse("ops").unwrap()));
        for (to, why) in [
            ("bob,#ops", "only recipient"),
            ("#ops,#dev", "only recipient"),
            ("#Ops", "malformed group"),
            ("#", "malformed group"),
            ("# ops", "malformed group"),
        ] {
            let e = check(env(&text(to, "hi")), &r).unwrap_err();
            assert_eq!(e.status, Status::ToError, "{to}");
            assert!(e.msg.contains(why), "{to}: {}", e.msg);
        }
    }

    #[test]
    fn bad_recipient_lists_are_406() {
        let alice = UserId::parse("alice").unwrap();
        let r = rules_for(&alice);
        for (to, why) in [
            ("bob,,carol", "empty entry"),
            ("bob, ", "empty entry"),
            ("bob carol", "malformed"),
            ("SYSTEM", "malformed"),
            ("a,b,c,d", "too many"),
            ("bob,ghost", "unknown user: ghost"),
        ] {
            let e = check(env(&text(to, "hi")), &r).unwrap_err();
            assert_eq!(e.status, Status::ToError, "{to}");
            assert!(e.msg.contains(why), "{to}: {}", e.msg);
        }
        assert!(
            check(env(&text("a,b,c,a", "hi")), &r).is_ok(),
            "duplicates count once"
        );
    }

    #[test]
    fn receipts_need_a_status_body_as_string_or_object() {
        let alice = UserId::parse("alice").unwrap();
        let r = rules_for(&alice);
        let ok = r#"{"id":"m","type":9101,"isSystem":false,"from":"alice","to":"bob","body":"{\"code\":200,\"status\":\"SUCCESS\",\"msg\":\"received\"}"}"#;
        let Request::Receipt(rc) = check(env(ok), &r).unwrap() else {
            panic!()
        };
        assert_eq!(rc.to, Origin::parse("bob").unwrap());
        assert!(rc.body.contains("received"));
        let obj = r#"{"id":"m","type":9101,"isSystem":false,"from":"alice","to":"SYSTEM","body":{"code":200,"status":"SUCCESS","msg":"ok"}}"#;
        let Request::Receipt(rc) = check(env(obj), &r).unwrap() else {
            panic!()
        };
        assert_eq!(rc.to, Origin::System);
        assert_eq!(
            serde_json::from_str::<Value>(&rc.body).unwrap()["msg"],
            "ok"
        );
        let bad = r#"{"id":"m","type":9101,"isSystem":false,"from":"alice","to":"bob","body":"{\"code\":\"x\"}"}"#;
        assert_eq!(check(env(bad), &r).unwrap_err().status, Status::BodyError);
    }

    #[test]
    fn register_body_needs_a_session_id() {
        let ok = r#"{"id":"r","type":1000,"isSystem":false,"from":"alice","to":"SYSTEM","body":"{\"sessionId\":\"abc\"}"}"#;
        assert_eq!(check_register(env(ok)).0.session_id, "abc");
        let obj = r#"{"id":"r","type":1000,"isSystem":false,"from":"alice","to":"SYSTEM","body":{"sessionId":"abc"}}"#;
        assert_eq!(check_register(env(obj)).0.session_id, "abc");
        let bad =
            r#"{"id":"r","type":1000,"isSystem":false,"from":"alice","to":"SYSTEM","body":"{}"}"#;
        assert_eq!(
            check_register(env(bad)).1.map(|r| r.status),
            Some(Status::BodyError)
        );
        assert!(!check_register(env(ok)).0.presence, "absent: no presence");
        let system = ok.replace("\"isSystem\":false", "\"isSystem\":true");
        let (msg, refused) = check_register(env(&system));
        assert_eq!(
            (msg.session_id.as_str(), refused.map(|r| r.status)),
            ("abc", Some(Status::FromError))
        );
    }

    #[test]
    fn presence_is_asked_for_by_true_only_and_anything_else_is_ignored() {
        let reg = |presence: &str| {
            let body = format!(r#"{{"sessionId":"abc","presence":{presence}}}"#);
            let frame = serde_json::json!({"id":"r","type":1000,"isSystem":false,
                "from":"alice","to":"SYSTEM","body":body});
            check_register(env(&frame.to_string()))
        };
        let (msg, refused) = reg("true");
        assert!(msg.presence && refused.is_none());
        for other in ["false", "1", "\"true\"", "null", "{}", "[true]"] {
            let (msg, refused) = reg(other);
            assert!(!msg.presence, "presence {other}");
            assert!(refused.is_none(), "presence {other} is no error");
            assert_eq!(msg.session_id, "abc");
        }
        let obj = r#"{"id":"r","type":1000,"isSystem":false,"from":"alice","to":"SYSTEM","body":{"sessionId":"abc","presence":true}}"#;
        assert!(check_register(env(obj)).0.presence, "an object body too");
    }

    #[test]
    fn a_client_may_not_send_presence() {
        let alice = UserId::parse("alice").unwrap();
        let r = rules_for(&alice);
        let p = r#"{"id":"p","type":3001,"isSystem":false,"from":"alice","to":"bob","body":"{}"}"#;
        let e = check(env(p), &r).unwrap_err();
        assert_eq!(e.status, Status::TypeError);
        assert!(e.msg.contains("3001"), "{}", e.msg);
    }

    #[test]
    fn nesting_is_bounded_before_the_parser_recurses() {
        let frame = |depth: usize| {
            format!(
                r#"{{"id":"n","type":2001,"isSystem":false,"from":"a","to":"b","body":"x","e":{}{}}}"#,
                "{\"k\":".repeat(depth) + "1",
                "}".repeat(depth)
            )
        };
        assert!(parse(&frame(MAX_JSON_DEPTH - 1)).is_ok());
        let Err((None, r)) = parse(&frame(MAX_JSON_DEPTH)) else {
            panic!("one level too deep must be refused")
        };
        assert_eq!(r.status, Status::MessageError);
        // Brackets inside strings do not count; escaped quotes stay inside.
        let s = format!(r#"{{"id":"{}\"[[","k":1}}"#, "[".repeat(100));
        assert!(!nested_deeper_than(&s, 1));
        assert!(nested_deeper_than("[[[", 2));
    }

    #[test]
    fn an_object_body_is_401_except_for_register_and_receipt() {
        let obj = |t: i64| {
            format!(
                r#"{{"id":"o","type":{t},"isSystem":false,"from":"a","to":"b","body":{{"x":1}}}}"#
            )
        };
        for t in [2001, 9001, 7] {
            let Err((id, r)) = parse(&obj(t)) else {
                panic!("type {t} with an object body must be refused")
            };
            assert_eq!((id.as_deref(), r.status), (Some("o"), Status::MessageError));
        }
        for t in [1000, 9101] {
            assert!(parse(&obj(t)).is_ok(), "type {t} takes an object");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn rules_check(env: Envelope) {
            let user = UserId::parse("alice").unwrap();
            let rules = Rules {
                user: &user,
                max_recipients: 10,
                user_exists: &|_| true,
            };
            let _ = check(env, &rules);
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn any_string_parses_or_is_refused(text in any::<String>()) {
                match parse(&text) {
                    Ok(env) => rules_check(env),
                    Err((_, r)) => prop_assert_eq!(r.status, Status::MessageError),
                }
            }

            #[test]
            fn any_bytes_as_lossy_text_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let text = String::from_utf8_lossy(&bytes);
                if let Ok(env) = parse(&text) {
                    rules_check(env);
                }
            }

            #[test]
            fn any_field_values_parse_or_are_refused(
                id in prop_oneof![Just(serde_json::json!(null)), any::<String>().prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from)],
                kind in prop_oneof![any::<i64>().prop_map(serde_json::Value::from), any::<f64>().prop_map(serde_json::Value::from), Just(serde_json::json!("2001"))],
                to in any::<String>(),
                body in prop_oneof![any::<String>().prop_map(serde_json::Value::from), Just(serde_json::json!({"code": 200, "status": "S", "msg": "m"})), Just(serde_json::json!([1]))],
            ) {
                let v = serde_json::json!({
                    "id": id, "type": kind, "isSystem": false,
                    "from": "alice", "to": to, "body": body,
                });
                if let Ok(env) = parse(&v.to_string()) {
                    rules_check(env);
                }
            }
        }
    }
}
