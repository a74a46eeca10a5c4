//! What the terminal prints, as plain functions of what arrived.
//!
//! Two kinds of lines, told apart at their first character:
//!
//! - texts start with their time: `12:00 <bob> hi` (to you alone),
//!   `12:00 <bob → alice,carol> hi`, `12:00 <carol → #ops> hi`, the
//!   server's `12:00 [system] ...` and a group's `12:00 [#ops] alice added
//!   carol`, and your own from another device `12:00 you → bob: hi`. A
//!   typed line is `bob: hi`, so no received line reads like one.
//! - what became of your own texts starts with a mark: `✓ to bob: hi`
//!   (the server accepted it), `✓✓ bob received: hi` (its 9101 receipt),
//!   `✗ to ghost: hi — 406 TO_ERROR: ...` (refused).

use serde_json::Value;

use super::escape::{excerpt, shown, shown_lines};
use super::sent::SentText;
use crate::client::frames::StatusBody;
use crate::wire::ids::SYSTEM;
use crate::wire::{TYPE_RECEIVE_STATUS, TYPE_SEND_STATUS, TYPE_TEXT};

/// Printed after the client connects, and on `/help`.
pub const HINT: &[&str] = &[
    "[help] bob: hi         writes to bob",
    "[help] bob,carol: hi   writes to both",
    "[help] #ops: hi        writes to the group ops",
    "[help] hi              writes to the same recipients as the line before",
    "[help] ✓ the server accepted your text, ✓✓ a recipient received it",
    "[help] /who lists the users, /help shows this, /quit leaves",
];

/// A frame from the server, as far as the terminal cares. Fields are as
/// the server sent them: escape them before printing.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text (2001), from a user or the server.
    Text {
        /// Its id, for the receipt.
        id: String,
        /// A user id, or `SYSTEM`.
        from: String,
        /// `alice`, `alice,carol`, `#ops`.
        to: String,
        /// What it says.
        body: String,
        /// When the server accepted it.
        timestamp: Option<u64>,
    },
    /// A 9001: the answer to one of this terminal's messages.
    Status {
        /// The id of the message it answers.
        id: String,
        /// Its StatusBody.
        status: StatusBody,
    },
    /// A 9101 forwarded from a recipient: a delivery receipt.
    Receipt {
        /// The id of the text received.
        id: String,
        /// Who received it.
        by: String,
    },
    /// Anything else (not JSON, a 3001 this client never asks for, a type
    /// from a newer server): ignored.
    Other,
}

impl Incoming {
    /// Reads a text frame.
    pub fn read(frame: &str) -> Incoming {
        let Ok(m) = serde_json::from_str::<Value>(frame) else {
            return Incoming::Other;
        };
        let field = |k: &str| m[k].as_str().unwrap_or_default().to_string();
        match m["type"].as_i64() {
            Some(TYPE_TEXT) => Incoming::Text {
                id: field("id"),
                from: field("from"),
                to: field("to"),
                body: field("body"),
                timestamp: m["timestamp"].as_u64(),
            },
            Some(TYPE_SEND_STATUS) => Incoming::Status {
                id: field("id"),
                status: StatusBody::of_frame(&m),
            },
            Some(TYPE_RECEIVE_STATUS) => Incoming::Receipt {
                id: field("id"),
                by: field("from"),
            },
            _ => Incoming::Other,
        }
    }
}

/// A text's line(s): `stamp` first, then who wrote to whom, then the text
/// (a multi-line text continues on indented lines).
pub fn text_line(me: &str, from: &str, to: &str, body: &str, stamp: &str) -> String {
    let (from_shown, to_shown, body) = (shown(from), shown(to), shown_lines(body));
    if from == SYSTEM {
        // A group's announcement names the group; the server's other
        // texts (section 9's API) are to this user.
        let source = if to.starts_with('#') {
            to_shown.as_str()
        } else {
            "system"
        };
        format!("{stamp} [{source}] {body}")
    } else if from == me {
        format!("{stamp} you → {to_shown}: {body}")
    } else if to == me {
        format!("{stamp} <{from_shown}> {body}")
    } else {
        format!("{stamp} <{from_shown} → {to_shown}> {body}")
    }
}

/// A 9001 SUCCESS for one of this terminal's texts.
pub fn accepted_line(sent: &SentText) -> String {
    format!("✓ to {}: {}", shown(&sent.to), excerpt(&sent.text))
}

/// A 9001 that refused a message; `sent` is the text, if it was one.
pub fn refused_line(sent: Option<&SentText>, status: &StatusBody) -> String {
    let why = shown(&status.to_string());
    match sent {
        Some(s) => format!("✗ to {}: {} — {why}", shown(&s.to), excerpt(&s.text)),
        None => format!("✗ {why}"),
    }
}

/// A receipt: `by` received the text `sent` (unknown: sent before this
/// session, or long ago).
pub fn receipt_line(by: &str, sent: Option<&SentText>) -> String {
    match sent {
        Some(s) => format!("✓✓ {} received: {}", shown(by), excerpt(&s.text)),
        None => format!("✓✓ {} received an earlier text", shown(by)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(to: &str, text: &str) -> SentText {
        SentText {
            to: to.into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_text_to_you_alone_shows_the_time_and_the_sender() {
        assert_eq!(
            text_line("alice", "bob", "alice", "hi", "12:00"),
            "12:00 <bob> hi"
        );
    }

    #[test]
    fn a_text_to_several_or_a_group_shows_its_recipients() {
        assert_eq!(
            text_line("alice", "bob", "alice,carol", "hi", "12:00"),
            "12:00 <bob → alice,carol> hi"
        );
        assert_eq!(
            text_line("alice", "carol", "#ops", "deploy", "2026-12-06 12:00"),
            "2026-12-06 12:00 <carol → #ops> deploy"
        );
    }

    #[test]
    fn your_own_text_from_another_device_shows_as_you() {
        assert_eq!(
            text_line("alice", "alice", "bob", "from my phone", "12:00"),
            "12:00 you → bob: from my phone"
        );
    }

    #[test]
    fn system_texts_show_their_source_in_brackets() {
        assert_eq!(
            text_line("alice", SYSTEM, "alice", "maintenance at noon", "12:00"),
            "12:00 [system] maintenance at noon"
        );
        assert_eq!(
            text_line("alice", SYSTEM, "#ops", "bob added carol", "12:00"),
            "12:00 [#ops] bob added carol"
        );
    }

    #[test]
    fn what_peers_wrote_is_escaped_everywhere_on_the_line() {
        assert_eq!(
            text_line("alice", "b\u{1b}b", "alice", "x\u{7}\ny\rz", "12:00"),
            "12:00 <b\\u{1b}b> x\\u{7}\n    y\\rz"
        );
        assert_eq!(
            text_line("alice", "bob", "#o\u{1b}", "x", "12:00"),
            "12:00 <bob → #o\\u{1b}> x"
        );
    }

    #[test]
    fn checks_show_the_start_of_the_text_not_its_id() {
        let long = sent("bob", "a text that is much longer than forty characters");
        assert_eq!(
            accepted_line(&long),
            "✓ to bob: a text that is much longer than forty ch…"
        );
        assert_eq!(accepted_line(&sent("#ops", "hi")), "✓ to #ops: hi");
        assert_eq!(
            receipt_line("carol", Some(&sent("#ops", "hi"))),
            "✓✓ carol received: hi"
        );
        assert_eq!(receipt_line("bob", None), "✓✓ bob received an earlier text");
    }

    #[test]
    fn a_refusal_shows_the_text_and_the_servers_reason() {
        let status = StatusBody {
            code: 406,
            status: "TO_ERROR".into(),
            msg: "unknown user: ghost".into(),
        };
        assert_eq!(
            refused_line(Some(&sent("ghost", "anyone?")), &status),
            "✗ to ghost: anyone? — 406 TO_ERROR: unknown user: ghost"
        );
        assert_eq!(
            refused_line(None, &status),
            "✗ 406 TO_ERROR: unknown user: ghost"
        );
    }

    #[test]
    fn frames_are_read_by_type_and_others_ignored() {
        let text = r##"{"id":"t1","type":2001,"isSystem":false,"from":"bob","to":"#ops","body":"hi","timestamp":5}"##;
        assert_eq!(
            Incoming::read(text),
            Incoming::Text {
                id: "t1".into(),
                from: "bob".into(),
                to: "#ops".into(),
                body: "hi".into(),
                timestamp: Some(5),
            }
        );
        let receipt =
            r#"{"id":"t1","type":9101,"isSystem":false,"from":"bob","to":"alice","body":"{}"}"#;
        assert_eq!(
            Incoming::read(receipt),
            Incoming::Receipt {
                id: "t1".into(),
                by: "bob".into()
            }
        );
        let status = r#"{"id":"t1","type":9001,"isSystem":true,"from":"SYSTEM","to":"alice","body":"{\"code\":200,\"status\":\"SUCCESS\",\"msg\":\"ok\"}"}"#;
        assert!(
            matches!(Incoming::read(status), Incoming::Status { status, .. } if status.code == 200)
        );
        let presence = r#"{"id":"p","type":3001,"isSystem":true,"from":"SYSTEM","to":"alice","body":"{\"online\":[]}"}"#;
        assert_eq!(Incoming::read(presence), Incoming::Other);
        assert_eq!(Incoming::read("not json"), Incoming::Other);
        assert_eq!(Incoming::read("[1]"), Incoming::Other);
    }
}
