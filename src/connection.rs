//! One WebSocket connection: a reader thread (handshake, frames in, checks)
//! and a writer thread (the only one that writes to the socket).
//!
//! tungstenite's `read` writes pongs and close replies itself, so two
//! `WebSocket`s on one socket would interleave bytes. The reader's
//! `WebSocket` therefore writes into [`ReaderStream`], which hands the bytes
//! to the writer; the writer flushes its own frames before writing them.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, never, select, unbounded};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket, error::CapacityError};

use crate::clock::now_ms;
use crate::events::{ConnHandle, ConnId, ConnShared, Ctrl, Event, Outbound};
use crate::inbound::{Decision, Inbound, InboundLimits};
use crate::protocol::{Reject, Status};
use crate::users::Directory;

/// Settings every connection shares.
pub struct ConnEnv {
    pub context_path: String,
    pub ws_config: WebSocketConfig,
    pub register_timeout: Duration,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub limits: InboundLimits,
    pub router: Sender<Event>,
    pub users: Arc<Directory>,
    /// Origin of `ConnShared::last_seen_ms`.
    pub started: Instant,
}

/// How long a closing connection waits for the peer's Close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Most frames written before one flush.
const WRITE_BATCH: usize = 64;
/// Backlog frames written between two looks for answers to send.
const BACKLOG_CHUNK: usize = 16;
/// Writer control queue: reader pongs and local answers; full means stuck.
const CTRL_QUEUE: usize = 16;
const WRITER_STACK: usize = 64 * 1024;

/// tungstenite buffers sized for many idle connections: its defaults cost
/// 128 KiB of zeroed read buffer each. The read buffer is zeroed up to its
/// size on every read, so it is resident: 2 KiB still holds about ten
/// typical frames per `read`, and bigger frames take more reads.
pub fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// One socket shared by the reader, the writer and the router (which may
/// shut it): `&TcpStream` reads and writes, so one file descriptor serves
/// all three, where `try_clone` would take one each.
#[derive(Clone)]
pub struct SharedTcp(Arc<TcpStream>);

impl Read for SharedTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for SharedTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

/// The reader's side of the socket: reads from it, hands writes over.
pub struct ReaderStream {
    tcp: SharedTcp,
    writer: Option<Sender<Ctrl>>,
}

impl Read for ReaderStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for ReaderStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.writer {
            // Before the writer exists (the handshake), write directly.
            None => self.tcp.write(buf),
            Some(w) => w
                .send(Ctrl::Raw(buf.to_vec()))
                .map(|()| buf.len())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "writer gone")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &self.writer {
            None => self.tcp.flush(),
            Some(_) => Ok(()),
        }
    }
}

/// Runs one connection on the calling (reader) thread until it ends.
pub fn serve(tcp: TcpStream, id: ConnId, env: &ConnEnv) {
    let Ok(peer) = tcp.peer_addr() else { return };
    let _ = tcp.set_nodelay(true);
    // tungstenite has no handshake timeout: a read timeout stands in, for
    // the handshake only.
    let _ = tcp.set_read_timeout(Some(env.register_timeout));
    let tcp = Arc::new(tcp);
    let Some(mut ws) = handshake(&tcp, id, peer, env) else {
        return;
    };
    let _ = tcp.set_read_timeout(None);
    let _ = tcp.set_write_timeout(Some(env.write_timeout));

    let (out_tx, out_rx) = unbounded();
    let (ctrl_tx, ctrl_rx) = bounded(CTRL_QUEUE);
    let shared = Arc::new(ConnShared::new(id, peer, Some(tcp.clone())));
    shared
        .last_seen_ms
        .store(env.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    // The writer never reads: no read buffer (4 KiB per connection).
    let writer_config = env.ws_config.read_buffer_size(0);
    let writer = Writer {
        ws: WebSocket::from_raw_socket(SharedTcp(tcp), Role::Server, Some(writer_config)),
        shared: shared.clone(),
        ctrl: ctrl_rx,
        out: out_rx,
        deferred: VecDeque::new(),
        closing: None,
        register_deadline: Some(Instant::now() + env.register_timeout),
        ping_interval: env.ping_interval,
        idle_timeout_ms: env.idle_timeout.as_millis() as u64,
        started: env.started,
    };
    let spawned = std::thread::Builder::new()
        .name(format!("ws-w{id}"))
        .stack_size(WRITER_STACK)
        .spawn(move || writer.run());
    if let Err(e) = spawned {
        log::warn!("conn {id} {peer}: cannot start a writer thread: {e}");
        return;
    }
    ws.get_mut().writer = Some(ctrl_tx.clone());
    let handle = ConnHandle {
        shared: shared.clone(),
        out: out_tx,
        ctrl: ctrl_tx.clone(),
    };
    if env.router.send(Event::Opened(handle)).is_err() {
        let _ = ctrl_tx.send(Ctrl::Close(1001, "server shutting down".into()));
    }
    log::info!("conn {id} opened from {peer}");
    let reason = Reader {
        ws,
        id,
        env,
        shared: &shared,
        ctrl: &ctrl_tx,
    }
    .run();
    log::info!("conn {id} closed: {reason}");
    let _ = env.router.send(Event::Closed { conn: id });
    let _ = ctrl_tx.send(Ctrl::Stop);
}

/// The WebSocket handshake, in a frame of its own: tungstenite parses the
/// request with several KiB of stack that the reader should not keep for
/// the life of the connection (see [`crate::stack`]).
#[inline(never)]
fn handshake(
    tcp: &Arc<TcpStream>,
    id: ConnId,
    peer: std::net::SocketAddr,
    env: &ConnEnv,
) -> Option<WebSocket<ReaderStream>> {
    let path = env.context_path.as_str();
    // tungstenite's callback signature fixes this error type.
    #[allow(clippy::result_large_err)]
    let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == path {
            Ok(resp)
        } else {
            let mut e = ErrorResponse::new(Some("not found\n".into()));
            *e.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let stream = ReaderStream {
        tcp: SharedTcp(tcp.clone()),
        writer: None,
    };
    match tungstenite::accept_hdr_with_config(stream, check_path, Some(env.ws_config)) {
        Ok(ws) => Some(ws),
        Err(e) => {
            log::debug!("conn {id} {peer}: handshake failed: {e}");
            None
        }
    }
}

struct Reader<'a> {
    ws: WebSocket<ReaderStream>,
    id: ConnId,
    env: &'a ConnEnv,
    shared: &'a ConnShared,
    ctrl: &'a Sender<Ctrl>,
}

impl Reader<'_> {
    /// Reads until the connection ends; returns why, for the log.
    fn run(mut self) -> String {
        let env = self.env;
        let mut inbound = Inbound::new(env.limits, Instant::now());
        let user_exists = |u: &str| env.users.exists(u);
        loop {
            let msg = match self.ws.read() {
                Ok(m) => m,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return "closed".into(),
                Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                    self.fail(1009, "message too big");
                    return format!("message of {size} bytes over the limit of {max_size}");
                }
                Err(WsError::Io(e)) => return format!("i/o: {e}"),
                Err(e) => {
                    self.fail(1002, "protocol error");
                    return format!("protocol error: {e}");
                }
            };
            self.shared
                .last_seen_ms
                .store(env.started.elapsed().as_millis() as u64, Ordering::Relaxed);
            let text = match msg {
                Message::Text(t) => t,
                Message::Binary(_) => {
                    let r = Reject::new(Status::MessageError, "binary frames are not supported");
                    self.send(Ctrl::Frame(inbound.reject(None, &r, now_ms())));
                    continue;
                }
                _ => continue,
            };
            match inbound.frame(&text, &user_exists, Instant::now(), now_ms()) {
                Decision::Answer(frame) => self.send(Ctrl::Frame(frame)),
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

    fn drain_raw(&mut self) {
        let mut sink = [0u8; 1024];
        let tcp = &mut self.ws.get_mut().tcp;
        while matches!(tcp.read(&mut sink), Ok(n) if n > 0) {}
    }
}

struct Writer {
    ws: WebSocket<SharedTcp>,
    shared: Arc<ConnShared>,
    ctrl: Receiver<Ctrl>,
    out: Receiver<Outbound>,
    /// Messages that arrived while a backlog was being written.
    deferred: VecDeque<Outbound>,
    /// Set once our Close is sent: when to give up on the peer's reply.
    closing: Option<Instant>,
    register_deadline: Option<Instant>,
    ping_interval: Duration,
    idle_timeout_ms: u64,
    started: Instant,
}

/// The writer ends: the socket is done.
struct Done;

impl Writer {
    fn run(mut self) {
        let _ = self.serve();
        let _ = self.ws.flush();
        self.shared.kill();
    }

    fn serve(&mut self) -> Result<(), Done> {
        let mut next_ping = Instant::now() + self.ping_interval;
        let mut out = self.out.clone();
        loop {
            // Control first: a close must not wait behind a full queue.
            while let Ok(c) = self.ctrl.try_recv() {
                self.control(c)?;
            }
            while let Some(item) = self.deferred.pop_front() {
                self.outbound(item)?;
            }
            self.flush()?;
            // Registered: drop the deadline now rather than wake up for it
            // later (10,000 idle connections would each wake once for
            // nothing). The register's own 9001 is what woke us.
            if self.register_deadline.is_some() && self.shared.is_registered() {
                self.register_deadline = None;
                crate::stack::trim();
            }
            let now = Instant::now();
            let deadline = [Some(next_ping), self.register_deadline, self.closing]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_ping);
            select! {
                recv(self.ctrl) -> c => match c {
                    Ok(c) => self.control(c)?,
                    Err(_) => return Ok(()),
                },
                recv(out) -> item => match item {
                    Ok(item) => {
                        self.outbound(item)?;
                        for item in out.try_iter().take(WRITE_BATCH) {
                            // Behind a backlog's deferred messages, keep order.
                            if self.deferred.is_empty() {
                                self.outbound(item)?;
                            } else {
                                self.deferred.push_back(item);
                            }
                        }
                    }
                    // The router dropped us; wait for the reader's Stop.
                    Err(_) => out = never(),
                },
                default(deadline.saturating_duration_since(now)) => {
                    let now = Instant::now();
                    if self.closing.is_some_and(|t| now >= t) {
                        return Err(Done);
                    }
                    if self.register_deadline.is_some_and(|t| now >= t) {
                        self.register_deadline = None;
                        if !self.shared.is_registered() {
                            log::info!("conn {} did not register in time", self.shared.id);
                            self.close(1008, "register timeout")?;
                        }
                    }
                    if now >= next_ping {
                        next_ping = now + self.ping_interval;
                        self.keepalive()?;
                    }
                }
            }
        }
    }

    fn control(&mut self, c: Ctrl) -> Result<(), Done> {
        match c {
            Ctrl::Raw(bytes) => {
                // After our own Close, the reader's replies are moot.
                if self.closing.is_none() {
                    self.flush()?;
                    self.ws.get_mut().write_all(&bytes).map_err(|_| Done)?;
                }
                Ok(())
            }
            Ctrl::Frame(f) => self.write(Message::Text(f)),
            Ctrl::Close(code, reason) => self.close(code, reason),
            Ctrl::Stop => Err(Done),
        }
    }

    fn outbound(&mut self, item: Outbound) -> Result<(), Done> {
        if item.counts() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
        match item {
            Outbound::Frame(f) | Outbound::Answer(f) => self.write(Message::Text(f)),
            Outbound::Batch(fs) => {
                for chunk in fs.chunks(BACKLOG_CHUNK) {
                    for f in chunk {
                        self.write(Message::Text(f.clone()))?;
                    }
                    self.between_backlog_chunks()?;
                }
                Ok(())
            }
        }
    }

    /// While a backlog is being written, the client reads and acknowledges
    /// it: send the answers now, keep newer messages for after the backlog.
    fn between_backlog_chunks(&mut self) -> Result<(), Done> {
        while let Ok(c) = self.ctrl.try_recv() {
            self.control(c)?;
        }
        while let Ok(item) = self.out.try_recv() {
            match item {
                Outbound::Answer(_) => self.outbound(item)?,
                other => self.deferred.push_back(other),
            }
        }
        self.flush()
    }

    fn write(&mut self, m: Message) -> Result<(), Done> {
        if self.closing.is_some() {
            return Ok(());
        }
        self.ws.write(m).map_err(|e| {
            log::debug!("conn {}: write failed: {e}", self.shared.id);
            Done
        })
    }

    fn flush(&mut self) -> Result<(), Done> {
        self.ws.flush().map_err(|e| {
            log::debug!("conn {}: flush failed: {e}", self.shared.id);
            Done
        })
    }

    fn close(&mut self, code: u16, reason: impl Into<String>) -> Result<(), Done> {
        if self.closing.is_some() {
            return Ok(());
        }
        self.shared.closing.store(true, Ordering::Release);
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into().into(),
        };
        self.closing = Some(Instant::now() + CLOSE_GRACE);
        let _ = self.ws.close(Some(frame));
        self.flush()
    }

    fn keepalive(&mut self) -> Result<(), Done> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let last = self.shared.last_seen_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) > self.idle_timeout_ms {
            log::info!("conn {} silent for too long: closing", self.shared.id);
            return Err(Done);
        }
        self.write(Message::Ping(Default::default()))
    }
}
