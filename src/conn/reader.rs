//! The reader thread's loop: frames in, checked ([`crate::wire::checks`]),
//! then answered at once, or handed to the router.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Sender, bounded};
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::{Error as WsError, Message, WebSocket};

use super::ConnEnv;
use super::stream::ReaderStream;
use crate::clock::now_ms;
use crate::events::{ConnId, ConnShared, Ctrl, Event};
use crate::wire::Reject;
use crate::wire::checks::{Decision, Inbound, TOO_MANY_ERRORS};

/// The most bytes read and dropped after the server's Close (a normal
/// client sends only its Close reply).
const DRAIN_MAX: usize = 64 * 1024;

/// One connection's reading side.
pub struct Reader<'a> {
    pub ws: WebSocket<ReaderStream>,
    pub id: ConnId,
    pub env: &'a ConnEnv,
    pub shared: &'a ConnShared,
    pub ctrl: &'a Sender<Ctrl>,
}

impl Reader<'_> {
    /// Reads until the connection ends; returns why, for the log.
    pub fn run(mut self) -> String {
        let env = self.env;
        let mut inbound = Inbound::new(env.limits(), Instant::now());
        let user_exists = |u: &str| env.users.exists(u);
        loop {
            if let Some(wait) = inbound.pause() {
                // Pings, pongs and garbage come no faster than the message
                // rate: the socket is not read meanwhile, so TCP slows the
                // sender down, and nothing is answered for them meanwhile.
                std::thread::sleep(wait);
            }
            let msg = match self.ws.read() {
                Ok(m) => m,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return "closed".into(),
                // A closed tab, a killed app, a lost network: the peer went
                // away without a Close frame. Ordinary, not a protocol error.
                Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                    return "the peer went away without a close".into();
                }
                Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                    self.fail(1009, "message too big");
                    return format!("message of {size} bytes over the limit of {max_size}");
                }
                Err(WsError::Io(e)) => return format!("i/o: {e}"),
                // RFC 6455 section 7.4.1: 1007 for data inconsistent with
                // the message's type, here a text that is not UTF-8.
                Err(WsError::Utf8(e)) => {
                    self.fail(1007, "invalid UTF-8");
                    return format!("invalid UTF-8 in a text message: {e}");
                }
                Err(e) => {
                    self.fail(1002, "protocol error");
                    return format!("protocol error: {e}");
                }
            };
            self.shared
                .last_seen_ms
                .store(env.started.elapsed().as_millis() as u64, Ordering::Relaxed);
            let decision = match msg {
                Message::Text(t) => inbound.frame(&t, &user_exists, Instant::now(), now_ms()),
                Message::Binary(_) => inbound.binary(Instant::now(), now_ms()),
                Message::Ping(_) | Message::Pong(_) => {
                    inbound.control(Instant::now());
                    continue;
                }
                Message::Close(_) | Message::Frame(_) => continue,
            };
            match decision {
                Decision::Answer(frame) => self.send(Ctrl::Frame(frame)),
                Decision::Close(frame) => {
                    self.send(Ctrl::Frame(frame));
                    self.send(Ctrl::Close(1008, TOO_MANY_ERRORS.into()));
                    return self.drain(TOO_MANY_ERRORS);
                }
                Decision::Route(req) => {
                    if env
                        .router
                        .send(Event::Request { conn: self.id, req })
                        .is_err()
                    {
                        return "server stopped".into();
                    }
                }
                Decision::Register { msg, refused } => {
                    let id = msg.id.clone();
                    // A fresh reply channel: if the router stops, the sender
                    // drops with the queued event and `recv` returns.
                    let (reply_tx, reply_rx) = bounded(1);
                    let ev = Event::Register {
                        conn: self.id,
                        msg,
                        refused,
                        reply: reply_tx,
                    };
                    let outcome = match env.router.send(ev) {
                        Ok(()) => reply_rx.recv().ok(),
                        Err(_) => None,
                    };
                    match outcome {
                        Some(Ok(user)) => {
                            inbound.registered(user);
                            // From here on this thread mostly waits in `read`.
                            crate::stack::trim();
                        }
                        Some(Err(r)) => return self.refuse_register(&inbound, &id, &r),
                        None => return "server stopped".into(),
                    }
                }
            }
        }
    }

    /// A failed register: its 9001, then Close 1008 naming the status.
    fn refuse_register(self, inbound: &Inbound, id: &str, r: &Reject) -> String {
        log::info!("conn {} register refused: {}", self.id, r.msg);
        self.send(Ctrl::Frame(inbound.reject(Some(id), r, now_ms())));
        self.send(Ctrl::Close(1008, r.status.name().into()));
        self.drain("register refused")
    }

    fn send(&self, c: Ctrl) {
        let _ = self.ctrl.send(c);
    }

    /// Closes with `code` after an error that leaves the stream unusable.
    fn fail(&mut self, code: u16, reason: &'static str) {
        self.send(Ctrl::Close(code, reason.into()));
        self.drain_raw();
    }

    /// After the server decided to close: read and drop whatever arrives
    /// until the peer or the writer ends the socket.
    fn drain(mut self, why: &str) -> String {
        self.drain_raw();
        why.into()
    }

    /// Reads and drops what the peer still sends after our Close, so that
    /// its Close reply completes the handshake; at most [`DRAIN_MAX`]
    /// bytes, so that a flooding client cannot use the close grace to send
    /// unpaced.
    fn drain_raw(&mut self) {
        let mut sink = [0u8; 1024];
        let tcp = &mut self.ws.get_mut().tcp;
        let mut left = DRAIN_MAX;
        while left > 0 {
            match tcp.read(&mut sink) {
                Ok(n) if n > 0 => left = left.saturating_sub(n),
                _ => return,
            }
        }
    }
}
