//! The frames the server writes: texts, receipts, 9001 answers and 3001
//! presence frames, each serialised once and shared by every recipient
//! (a 3001's body is shared; its `to` is each watcher's own).

use serde::Serialize;
use tungstenite::Utf8Bytes;

use super::ids::SYSTEM;
use super::{Status, TYPE_SEND_STATUS, TYPE_TEXT};

/// The type of a text frame the server writes. It is known where the
/// frame is built and travels with it to the writer, which counts each
/// frame as it writes it (`edgeim_frames_out_total`) without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    /// A 9001 answer.
    Status,
    /// A text (2001), live or from a backlog.
    Text,
    /// A receipt (9101) forwarded to a sender's clients.
    Receipt,
    /// Who came online or went offline (3001), to a client that asked.
    Presence,
}

impl FrameType {
    /// The message type code the frame carries.
    pub fn code(self) -> i64 {
        match self {
            FrameType::Status => TYPE_SEND_STATUS,
            FrameType::Text => TYPE_TEXT,
            FrameType::Receipt => super::TYPE_RECEIVE_STATUS,
            FrameType::Presence => super::TYPE_PRESENCE,
        }
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: i64,
    #[serde(rename = "isSystem")]
    is_system: bool,
    from: &'a str,
    to: &'a str,
    body: &'a str,
    timestamp: u64,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    code: u16,
    status: &'a str,
    msg: &'a str,
}

/// A message as the server writes it.
pub struct Outgoing<'a> {
    pub id: &'a str,
    pub kind: i64,
    pub is_system: bool,
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a str,
    pub timestamp: u64,
}

impl Outgoing<'_> {
    /// Serialises once; the result is shared by every recipient.
    pub fn frame(&self) -> Utf8Bytes {
        let wire = WireOut {
            id: self.id,
            kind: self.kind,
            is_system: self.is_system,
            from: self.from,
            to: self.to,
            body: self.body,
            timestamp: self.timestamp,
        };
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string(&wire).unwrap_or_default().into()
    }
}

/// The 9001 answer to a client message. `to` is the client's user id, or
/// empty before register.
pub fn send_status(id: &str, to: &str, status: Status, msg: &str, now_ms: u64) -> Utf8Bytes {
    crate::metrics::metrics().status(status.code());
    let body = serde_json::to_string(&StatusBody {
        code: status.code(),
        status: status.name(),
        msg,
    })
    .unwrap_or_default();
    Outgoing {
        id,
        kind: TYPE_SEND_STATUS,
        is_system: true,
        from: SYSTEM,
        to,
        body: &body,
        timestamp: now_ms,
    }
    .frame()
}

/// A text (2001) as recipients get it, live or from the store: `from` is
/// a user id or `SYSTEM`, `to` the recipients as the sender wrote them
/// (normalised).
pub fn text(from: &str, id: &str, to: &str, body: &str, timestamp: u64) -> Utf8Bytes {
    Outgoing {
        id,
        kind: TYPE_TEXT,
        is_system: from == SYSTEM,
        from,
        to,
        body,
        timestamp,
    }
    .frame()
}

/// A presence frame (3001, section 11) for the client of `to`: `body` is
/// the `{"online":[...],"offline":[...]}` its watchers share, serialised
/// once ([`presence_body`]); the id is fresh, since nothing answers it.
pub fn presence(to: &str, body: &str, timestamp: u64) -> Utf8Bytes {
    Outgoing {
        id: &server_id(),
        kind: super::TYPE_PRESENCE,
        is_system: true,
        from: SYSTEM,
        to,
        body,
        timestamp,
    }
    .frame()
}

#[derive(Serialize)]
struct PresenceBody<'a> {
    online: Vec<&'a str>,
    offline: Vec<&'a str>,
}

/// A 3001's body: the users who are online and those who went offline,
/// each list in the order given (the caller sorts them).
pub fn presence_body<'a>(
    online: impl IntoIterator<Item = &'a str>,
    offline: impl IntoIterator<Item = &'a str>,
) -> String {
    let body = PresenceBody {
        online: online.into_iter().collect(),
        offline: offline.into_iter().collect(),
    };
    // Serialising lists of strings cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

/// A fresh id for answers to frames that carried no usable id.
pub fn server_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn status_frames_carry_a_status_body_string() {
        let f = send_status("m1", "alice", Status::ToError, "unknown user: x", 5);
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["type"], 9001);
        assert_eq!(v["isSystem"], true);
        assert_eq!(v["from"], "SYSTEM");
        assert_eq!(v["to"], "alice");
        let b: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            (b["code"].as_i64(), b["status"].as_str()),
            (Some(406), Some("TO_ERROR"))
        );
    }

    #[test]
    fn presence_frames_are_system_frames_with_the_lists_in_a_string_body() {
        let body = presence_body(["alice", "bob"], ["carol"]);
        assert_eq!(body, r#"{"online":["alice","bob"],"offline":["carol"]}"#);
        let f = presence("alice", &body, 7);
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["type"], 3001);
        assert_eq!(v["isSystem"], true);
        assert_eq!(v["from"], "SYSTEM");
        assert_eq!(v["to"], "alice");
        assert_eq!(v["body"], body.as_str());
        assert_eq!(v["timestamp"], 7);
        assert!(!v["id"].as_str().unwrap().is_empty());
        assert_eq!(presence_body([], []), r#"{"online":[],"offline":[]}"#);
    }
}
