//! One registered client connection: opening it (timed step by step),
//! closing it, and the frames the generator reads and writes on it.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use edgeim::client::{self, ClientError, ws, ws::Ws};
use serde::Deserialize;

use crate::POLL;
use crate::flow::STAMP_DIGITS;
use crate::target::Target;

/// The StatusBody of a 9101 ([`client::frames::RECEIVED`]), escaped to sit
/// inside a JSON string.
const ACK_BODY: &str = r#"{\"code\":200,\"status\":\"SUCCESS\",\"msg\":\"received\"}"#;

/// How long [`close`] waits for the server's Close.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// The parts of a server frame the generator looks at. Kept here rather
/// than parsing into the `serde_json::Value` that the client library
/// works with: every frame of a run goes through this, and borrowing from
/// the frame's text allocates nothing for ids and names.
#[derive(Deserialize)]
pub(crate) struct Frame<'a> {
    #[serde(borrow, default)]
    pub(crate) id: Cow<'a, str>,
    #[serde(rename = "type")]
    pub(crate) kind: i64,
    #[serde(borrow, default)]
    pub(crate) from: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) body: Cow<'a, str>,
}

/// How long each step of getting a registered client took.
pub(crate) struct Opened {
    pub(crate) ws: Ws,
    pub(crate) token: Duration,
    pub(crate) session_id: Duration,
    pub(crate) handshake: Duration,
    pub(crate) register: Duration,
}

/// Logs in (or reuses the token), gets a session id, opens the WebSocket
/// and registers `user` as `client_name`, timing each step: the steps of
/// [`client::connect`], one by one. Reads then time out after [`POLL`].
pub(crate) fn open_client(
    target: &Target,
    user: &str,
    client_name: &str,
) -> Result<Opened, String> {
    let t0 = Instant::now();
    let token = target.token(user)?;
    let t1 = Instant::now();
    let session_id = client::session_id(&target.server, &token, client_name)
        .map_err(|e| step_failed(&format!("session id for {user}"), e))?;
    let t2 = Instant::now();
    let mut ws = ws::open(&target.ws_url).map_err(|e| match e {
        ClientError::Connect { err, .. } => format!("connect {}: {err}", target.ws_url),
        e => e.to_string(),
    })?;
    let t3 = Instant::now();
    ws::register(&mut ws, user, &session_id)
        .map_err(|e| step_failed(&format!("register {user}"), e))?;
    ws::set_read_timeout(&ws, POLL);
    let t4 = Instant::now();
    Ok(Opened {
        ws,
        token: t1 - t0,
        session_id: t2 - t1,
        handshake: t3 - t2,
        register: t4 - t3,
    })
}

/// A failed step in words. A refusal or a WebSocket error does not say
/// whose step it was, so `what` ("register u3") goes in front; a failed
/// connection says enough as it is.
pub(crate) fn step_failed(what: &str, e: ClientError) -> String {
    match e {
        ClientError::Refused { why, .. } => format!("{what}: {why}"),
        ClientError::WebSocket(..) | ClientError::Closed(_) => format!("{what}: {e}"),
        e => e.to_string(),
    }
}

/// Close 1000, then a short bounded wait for the server's Close. Takes
/// `ws` and drops it: for a split connection that is what ends the writer.
pub(crate) fn close(mut ws: Ws) {
    ws::close(&mut ws, None, CLOSE_WAIT);
}

/// A text's id: run tag, sender index, sequence number.
pub(crate) fn text_id(tag: &str, sender: usize, seq: u64) -> String {
    format!("{tag}.{sender}.{seq}")
}

/// (sender, seq) of a text id of this run.
pub(crate) fn parse_text_id(tag: &str, id: &str) -> Option<(usize, u64)> {
    let rest = id.strip_prefix(tag)?.strip_prefix('.')?;
    let (s, q) = rest.split_once('.')?;
    Some((s.parse().ok()?, q.parse().ok()?))
}

/// A 9101 acknowledging `id` from `sender`. Formatted here rather than
/// with [`client::frames::ack`] (a `serde_json::Value` built field by field,
/// then serialised): every text of a run is acknowledged with one.
pub(crate) fn ack_frame(id: &str, me: &str, sender: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        r#"{{"id":{},"type":9101,"isSystem":false,"from":{},"to":{},"body":"{ACK_BODY}"}}"#,
        q(id),
        q(me),
        q(sender)
    )
}

/// A text (2001) whose body is `stamp` in [`STAMP_DIGITS`] digits, then
/// `pad`. Formatted here rather than with [`client::frames::text`], for the
/// same reason as [`ack_frame`]; `id`, `me` and `to` are the generator's
/// own and need no escaping.
pub(crate) fn text_frame(id: &str, me: &str, to: &str, stamp: u64, pad: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":2001,"isSystem":false,"from":"{me}","to":"{to}","body":"{stamp:0w$}{pad}"}}"#,
        w = STAMP_DIGITS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_ids_round_trip_and_other_runs_do_not_match() {
        let id = text_id("abc", 7, 42);
        assert_eq!(parse_text_id("abc", &id), Some((7, 42)));
        assert_eq!(parse_text_id("abd", &id), None);
    }

    #[test]
    fn the_preformatted_frames_are_the_client_librarys() {
        use client::frames;
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(
            parse(&ack_frame("t.1.2", "u1", "u0")),
            frames::ack("t.1.2", "u1", "u0")
        );
        assert_eq!(
            parse(&text_frame("t.1.2", "u0", "u1,u2", 42, "xx")),
            frames::text("t.1.2", "u0", "u1,u2", "00000000000000000042xx")
        );
    }
}
