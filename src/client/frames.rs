//! The frames a client sends, and the StatusBody of those it gets.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::SYSTEM;
pub use crate::wire::{TYPE_RECEIVE_STATUS, TYPE_REGISTER, TYPE_SEND_STATUS, TYPE_TEXT};

/// The id a client's register message has.
pub const REGISTER_ID: &str = "reg";

/// The StatusBody a client acknowledges a text with.
pub const RECEIVED: &str = r#"{"code":200,"status":"SUCCESS","msg":"received"}"#;

/// A register (1000) with id `id`.
pub fn register(id: &str, user: &str, session_id: &str) -> Value {
    json!({"id": id, "type": TYPE_REGISTER, "isSystem": false, "from": user, "to": SYSTEM,
        "body": json!({"sessionId": session_id}).to_string()})
}

/// A text (2001).
pub fn text(id: &str, from: &str, to: &str, body: &str) -> Value {
    json!({"id": id, "type": TYPE_TEXT, "isSystem": false, "from": from, "to": to, "body": body})
}

/// A receive status (9101) for the text `id` from `original_sender`.
pub fn ack(id: &str, me: &str, original_sender: &str) -> Value {
    json!({"id": id, "type": TYPE_RECEIVE_STATUS, "isSystem": false, "from": me,
        "to": original_sender, "body": RECEIVED})
}

/// A 9001's or 9101's StatusBody.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusBody {
    /// 200, or one of the 4xx of PROTOCOL.md section 5.
    pub code: i64,
    /// `SUCCESS`, `FAILED`, ...
    #[serde(default)]
    pub status: String,
    /// Why, in words.
    #[serde(default)]
    pub msg: String,
}

impl StatusBody {
    /// The StatusBody in a frame's `body` string; code 0 when unreadable.
    pub fn of(body: &str) -> StatusBody {
        serde_json::from_str(body).unwrap_or(StatusBody {
            code: 0,
            status: String::new(),
            msg: format!("unreadable status body {body:?}"),
        })
    }

    /// The StatusBody of a whole frame (its `body` field).
    pub fn of_frame(frame: &Value) -> StatusBody {
        StatusBody::of(frame["body"].as_str().unwrap_or_default())
    }
}

impl std::fmt::Display for StatusBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.status, self.msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_read_and_say_what_they_are() {
        let s = StatusBody::of(RECEIVED);
        assert_eq!(s.code, 200);
        assert_eq!(s.to_string(), "200 SUCCESS: received");
        assert_eq!(StatusBody::of("nope").code, 0);
        let reg = register("r", "alice", "sid");
        assert_eq!(reg["body"], r#"{"sessionId":"sid"}"#);
    }
}
