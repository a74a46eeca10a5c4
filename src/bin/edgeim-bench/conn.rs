//! One registered client connection: opening it (timed step by step),
//! closing it, and the frames the generator reads and writes on it.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde::Deserialize;
use serde_json::json;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

use crate::target::Target;
use crate::{POLL, WAIT};

/// The StatusBody of a 9101, escaped to sit inside a JSON string.
pub(crate) const ACK_BODY: &str = r#"{\"code\":200,\"status\":\"SUCCESS\",\"msg\":\"received\"}"#;

/// The parts of a server frame the generator looks at.
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

#[derive(Deserialize)]
pub(crate) struct StatusBody<'a> {
    pub(crate) code: i64,
    #[serde(borrow, default)]
    pub(crate) status: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) msg: Cow<'a, str>,
}

/// (code, "code STATUS: msg") of a 9001's body.
pub(crate) fn status_of(body: &str) -> (i64, String) {
    match serde_json::from_str::<StatusBody>(body) {
        Ok(s) => (s.code, format!("{} {}: {}", s.code, s.status, s.msg)),
        Err(_) => (0, format!("unreadable status body {body:?}")),
    }
}

/// The socket under a client's WebSocket. Until [`split`] its writes go
/// straight to the socket. After it they go to the writer thread, which is
/// then the only one writing: tungstenite has no thread-safe split, and its
/// `read` itself writes Pong and Close replies (the server does the same:
/// docs/ARCHITECTURE.md).
pub(crate) struct Stream {
    pub(crate) tcp: TcpStream,
    pub(crate) forward: Option<Sender<Vec<u8>>>,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.forward {
            None => self.tcp.write(buf),
            Some(tx) => tx
                .send(buf.to_vec())
                .map(|()| buf.len())
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "writer gone")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &self.forward {
            None => self.tcp.flush(),
            Some(_) => Ok(()),
        }
    }
}

pub(crate) type Ws = WebSocket<Stream>;

/// The writing side of a split connection: its own WebSocket context over
/// a clone of the socket, and the bytes the reading side wants written.
pub(crate) struct WriteHalf {
    pub(crate) ws: WebSocket<TcpStream>,
    pub(crate) from_reader: Receiver<Vec<u8>>,
}

/// From now on `ws` only reads; everything it writes goes through the
/// returned half. Nothing is lost: `ws` keeps its read buffer.
pub(crate) fn split(ws: &mut Ws) -> Result<WriteHalf, String> {
    let tcp = ws.get_ref().tcp.try_clone().map_err(|e| e.to_string())?;
    let (tx, rx) = unbounded();
    ws.get_mut().forward = Some(tx);
    Ok(WriteHalf {
        ws: WebSocket::from_raw_socket(tcp, Role::Client, None),
        from_reader: rx,
    })
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
/// and registers `user` as `client`. Reads then time out after [`POLL`].
pub(crate) fn open_client(target: &Target, user: &str, client: &str) -> Result<Opened, String> {
    let t0 = Instant::now();
    let token = target.token(user)?;
    let t1 = Instant::now();
    let path = format!("/app/websocket/client/login/{client}");
    let (status, answer) = target.http("GET", &path, Some(&token), None)?;
    let session_id = match answer["sessionId"].as_str() {
        Some(s) if status == 200 => s.to_string(),
        _ => return Err(format!("session id for {user}: HTTP {status} {answer}")),
    };
    let t2 = Instant::now();
    let connect_err = |e: &dyn std::fmt::Display| format!("connect {}: {e}", target.ws_url);
    let tcp = TcpStream::connect(&target.ws_host).map_err(|e| connect_err(&e))?;
    tcp.set_nodelay(true)
        .and_then(|()| tcp.set_read_timeout(Some(WAIT)))
        .and_then(|()| tcp.set_write_timeout(Some(WAIT)))
        .map_err(|e| connect_err(&e))?;
    let stream = Stream { tcp, forward: None };
    let (mut ws, _) =
        tungstenite::client(target.ws_url.as_str(), stream).map_err(|e| connect_err(&e))?;
    let t3 = Instant::now();
    let reg = json!({"id": "register", "type": 1000, "isSystem": false, "from": user,
        "to": "SYSTEM", "body": json!({"sessionId": session_id}).to_string()});
    ws.send(Message::text(reg.to_string()))
        .map_err(|e| format!("register {user}: {e}"))?;
    // Bounded: the socket's read timeout ends a silent wait.
    for _ in 0..1000 {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let Ok(f) = serde_json::from_str::<Frame>(&t) else {
                    continue;
                };
                if f.kind == 9001 && f.id == "register" {
                    let (code, why) = status_of(&f.body);
                    if code != 200 {
                        return Err(format!("register {user}: {why}"));
                    }
                    set_read_timeout(&ws, POLL);
                    let t4 = Instant::now();
                    return Ok(Opened {
                        ws,
                        token: t1 - t0,
                        session_id: t2 - t1,
                        handshake: t3 - t2,
                        register: t4 - t3,
                    });
                }
            }
            Ok(Message::Close(f)) => return Err(format!("register {user}: closed {f:?}")),
            Ok(_) => {}
            Err(e) => return Err(format!("register {user}: {e}")),
        }
    }
    Err(format!("register {user}: no answer"))
}

pub(crate) fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

/// The kernel rounds socket timeouts up to whole jiffies (about 8 ms here
/// at HZ=250): good for noticing a deadline, useless for pacing sends.
pub(crate) fn set_read_timeout(ws: &Ws, d: Duration) {
    let _ = ws
        .get_ref()
        .tcp
        .set_read_timeout(Some(d.max(Duration::from_millis(1))));
}

/// Close 1000, then a short bounded wait for the server's close.
pub(crate) fn close(mut ws: Ws) {
    if ws.close(None).is_err() {
        return;
    }
    set_read_timeout(&ws, POLL);
    let deadline = Instant::now() + Duration::from_millis(500);
    for _ in 0..10_000 {
        if Instant::now() >= deadline {
            break;
        }
        match ws.read() {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
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

/// A 9101 acknowledging `id` from `sender`.
pub(crate) fn ack_frame(id: &str, me: &str, sender: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        r#"{{"id":{},"type":9101,"isSystem":false,"from":{},"to":{},"body":"{ACK_BODY}"}}"#,
        q(id),
        q(me),
        q(sender)
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
}
