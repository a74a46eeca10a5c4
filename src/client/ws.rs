//! A client's WebSocket: connect, register, and split into a reading and a
//! writing side. tungstenite has no thread-safe split, and its `read`
//! itself writes Pong and Close replies; so after [`split`] the reading
//! side hands whatever it would write to the writing side, which is then
//! the only one writing (the server does the same: docs/ARCHITECTURE.md).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde_json::Value;
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, WebSocket};

use super::frames::{self, REGISTER_ID, StatusBody};
use super::http::with_port;
use super::{ClientError, WAIT};
use crate::wire::TYPE_SEND_STATUS;

/// The socket under a client's WebSocket. Until [`split`] its writes go
/// straight to the socket; after it, to the writing side.
pub struct WsStream {
    tcp: TcpStream,
    forward: Option<Sender<Vec<u8>>>,
}

impl WsStream {
    /// The TCP socket (for timeouts).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for WsStream {
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

/// A client WebSocket.
pub type Ws = WebSocket<WsStream>;

/// `host:port` of a `ws://` URL.
pub fn ws_host(url: &str) -> Result<String, ClientError> {
    if url.starts_with("wss://") {
        return Err(ClientError::Url(format!(
            "bad WebSocket URL {url:?}: use ws://; put TLS in a reverse proxy"
        )));
    }
    let rest = url.strip_prefix("ws://").ok_or_else(|| {
        ClientError::Url(format!(
            "bad WebSocket URL {url:?}: it must start with ws://"
        ))
    })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(ClientError::Url(format!(
            "bad WebSocket URL {url:?}: no host"
        )));
    }
    Ok(with_port(host, 80))
}

/// Opens the WebSocket (no register yet); reads time out after [`WAIT`].
pub fn open(url: &str) -> Result<Ws, ClientError> {
    let host = ws_host(url)?;
    let failed = |e: tungstenite::Error| ClientError::WebSocket(format!("connect {url}"), e);
    let tcp = TcpStream::connect(&host).map_err(|err| ClientError::Connect {
        addr: host.clone(),
        err,
    })?;
    tcp.set_nodelay(true)
        .and_then(|()| tcp.set_read_timeout(Some(WAIT)))
        .and_then(|()| tcp.set_write_timeout(Some(WAIT)))
        .map_err(|e| failed(e.into()))?;
    let stream = WsStream { tcp, forward: None };
    match tungstenite::client(url, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(failed(e)),
        Err(tungstenite::HandshakeError::Interrupted(_)) => Err(failed(tungstenite::Error::Io(
            std::io::ErrorKind::TimedOut.into(),
        ))),
    }
}

/// Sends one JSON frame.
pub fn send(ws: &mut Ws, frame: &Value) -> Result<(), ClientError> {
    ws.send(Message::text(frame.to_string()))
        .map_err(|e| ClientError::WebSocket("connection lost".into(), e))
}

/// Registers `user` with `session_id` and waits for its 9001 SUCCESS;
/// returns that answer's `timestamp`, the server's clock at the register
/// (what the server stamped before it was missed while away).
pub fn register(ws: &mut Ws, user: &str, session_id: &str) -> Result<Option<u64>, ClientError> {
    send(ws, &frames::register(REGISTER_ID, user, session_id))?;
    // Bounded: the socket's read timeout ends a silent wait.
    for _ in 0..1000 {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let m: Value = serde_json::from_str(&t).unwrap_or_default();
                if m["type"] == TYPE_SEND_STATUS && m["id"] == REGISTER_ID {
                    let s = StatusBody::of_frame(&m);
                    if s.code == 200 {
                        return Ok(m["timestamp"].as_u64());
                    }
                    return Err(ClientError::Refused {
                        step: "register",
                        why: s.to_string(),
                    });
                }
            }
            Ok(Message::Close(frame)) => return Err(ClientError::Closed(closed_by_server(frame))),
            Ok(_) => {}
            Err(e) => return Err(ClientError::WebSocket("no answer to register".into(), e)),
        }
    }
    Err(ClientError::Closed("no answer to register".into()))
}

/// How a Close from the server reads to a person.
pub fn closed_by_server(frame: Option<CloseFrame>) -> String {
    match frame {
        Some(f) => format!(
            "the server closed the connection: {} {}",
            u16::from(f.code),
            f.reason
        ),
        None => "the server closed the connection".into(),
    }
}

/// Whether a read failed only because its timeout passed.
pub fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

/// Sets how long one read waits. The kernel rounds it up to whole jiffies.
pub fn set_read_timeout(ws: &Ws, d: Duration) {
    let _ = ws
        .get_ref()
        .tcp
        .set_read_timeout(Some(d.max(Duration::from_millis(1))));
}

/// Sends Close (1000 unless `frame` says otherwise) and waits, at most
/// `wait`, for the server's answer.
pub fn close(ws: &mut Ws, frame: Option<CloseFrame>, wait: Duration) {
    if ws.close(frame).is_err() {
        return;
    }
    set_read_timeout(ws, wait.min(Duration::from_millis(100)));
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}

/// The writing side of a split connection: its own WebSocket context over
/// a clone of the socket, and the bytes the reading side wants written.
pub struct WriteHalf {
    /// Writes frames.
    pub ws: WebSocket<TcpStream>,
    /// What the reading side's `read` wanted written (pongs, close replies).
    pub from_reader: Receiver<Vec<u8>>,
}

/// From now on `ws` only reads; everything it writes goes through the
/// returned half. Nothing is lost: `ws` keeps its read buffer.
pub fn split(ws: &mut Ws) -> Result<WriteHalf, ClientError> {
    let tcp = ws
        .get_ref()
        .tcp
        .try_clone()
        .map_err(|e| ClientError::Io("split".into(), e))?;
    let (tx, rx) = unbounded();
    ws.get_mut().forward = Some(tx);
    Ok(WriteHalf {
        ws: WebSocket::from_raw_socket(tcp, Role::Client, None),
        from_reader: rx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_name_their_host() {
        assert_eq!(ws_host("ws://h:1/websocket").unwrap(), "h:1");
        assert_eq!(ws_host("ws://h/websocket").unwrap(), "h:80");
        assert!(
            ws_host("wss://h/")
                .unwrap_err()
                .to_string()
                .contains("reverse proxy")
        );
        assert!(ws_host("http://h/").is_err());
        assert!(ws_host("ws:///x").is_err());
    }
}
