//! One WebSocket connection: a reader thread (handshake, frames in, checks)
//! and a writer thread (the socket's writer; the router writes to an idle
//! connection itself, under the writer's lock: [`direct`]), started
//! by the [`listener`] for each accepted socket.
//!
//! - [`handshake`]: the WebSocket upgrade on the context path;
//! - [`stream`]: one socket shared by both threads and the router;
//! - [`reader`]: frames in, checked, answered or routed;
//! - [`writer`]: the socket's only writer, around the pure [`queue`];
//! - [`direct`]: the router writing a frame itself while the writer is
//!   idle, under the lock the writer holds while it writes.

pub(crate) mod direct;
mod handshake;
pub mod listener;
pub(crate) mod queue;
mod reader;
mod stream;
pub(crate) mod writer;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded, unbounded};
use tungstenite::WebSocket;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::auth::Directory;
use crate::events::{ConnHandle, ConnId, ConnShared, Ctrl, Event};
use crate::wire::checks::InboundLimits;
use direct::Wire;
use handshake::handshake;
use reader::Reader;
use stream::{SharedTcp, WriterStream};
use writer::Writer;

/// Settings every connection shares.
pub struct ConnEnv {
    /// `/websocket`: the only path the handshake accepts.
    pub context_path: String,
    /// tungstenite's buffers and limits ([`ws_config`]).
    pub ws_config: WebSocketConfig,
    /// Bounds the whole handshake, and then the time to register.
    pub register_timeout: Duration,
    /// How often the writer pings.
    pub ping_interval: Duration,
    /// Silence after which a connection is dropped.
    pub idle_timeout: Duration,
    /// How long one write may block.
    pub write_timeout: Duration,
    /// The reader's checks; a reload (SIGHUP) may change them, for the
    /// connections opened after it ([`ConnEnv::limits`]).
    pub limits: RwLock<InboundLimits>,
    /// The router's events.
    pub router: Sender<Event>,
    /// Who exists, for `to` checks.
    pub users: Arc<Directory>,
    /// Origin of `ConnShared::last_seen_ms`.
    pub started: Instant,
    /// `http.trusted_proxies`: a handshake through one of them names the
    /// client in `X-Forwarded-For`, and the logs name that client.
    pub trusted_proxies: Vec<crate::auth::throttle::Cidr>,
}

impl ConnEnv {
    /// The reader's checks as they are now; a connection takes them once,
    /// at its start.
    pub fn limits(&self) -> InboundLimits {
        *self.limits.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// New checks for the connections opened from now on (a reload).
    pub fn set_limits(&self, limits: InboundLimits) {
        *self.limits.write().unwrap_or_else(PoisonError::into_inner) = limits;
    }
}

/// Writer control queue: reader pongs and local answers; full means stuck.
pub const CTRL_QUEUE: usize = 16;
pub(crate) const WRITER_STACK: usize = 64 * 1024;

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

/// Runs one connection on the calling (reader) thread until it ends.
pub fn serve(tcp: TcpStream, id: ConnId, env: &ConnEnv) {
    let Ok(peer) = tcp.peer_addr() else { return };
    let _ = tcp.set_nodelay(true);
    // tungstenite has no handshake timeout: the handshake's stream gives
    // every read what is left of one deadline (`ReaderStream::deadline`),
    // so a client trickling its request byte by byte is still cut off.
    let tcp = Arc::new(tcp);
    let Some((mut ws, forwarded_for)) = handshake(&tcp, id, peer, env) else {
        return;
    };
    // Behind a trusted reverse proxy the logs name the client, not the proxy.
    let client = crate::auth::throttle::client_addr(
        peer.ip(),
        forwarded_for.as_deref(),
        &env.trusted_proxies,
    );
    let via = (client != peer.ip()).then_some(peer);
    let peer = SocketAddr::new(client, peer.port());
    let _ = tcp.set_read_timeout(None);
    let _ = tcp.set_write_timeout(Some(env.write_timeout));

    let (out_tx, out_rx) = unbounded();
    let (ctrl_tx, ctrl_rx) = bounded(CTRL_QUEUE);
    // The writer never reads: no read buffer (2 KiB more per connection).
    let writer_config = env.ws_config.read_buffer_size(0);
    let wire = Arc::new(Mutex::new(Wire::new(WebSocket::from_raw_socket(
        WriterStream::new(SharedTcp(tcp.clone())),
        Role::Server,
        Some(writer_config),
    ))));
    let shared = Arc::new(ConnShared::new(id, peer, Some(tcp)).with_wire(wire.clone()));
    shared
        .last_seen_ms
        .store(env.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    let writer = Writer {
        wire,
        write_timeout: env.write_timeout,
        shared: shared.clone(),
        ctrl: ctrl_rx,
        out: out_rx,
        router: env.router.clone(),
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
    match via {
        Some(proxy) => log::info!("conn {id} opened from {} through {proxy}", peer.ip()),
        None => log::info!("conn {id} opened from {peer}"),
    }
    let gauge = &crate::metrics::metrics().connections;
    gauge.fetch_add(1, Ordering::Relaxed);
    let reason = Reader {
        ws,
        id,
        env,
        shared: &shared,
        ctrl: &ctrl_tx,
    }
    .run();
    log::info!("conn {id} closed: {reason}");
    gauge.fetch_sub(1, Ordering::Relaxed);
    let _ = env.router.send(Event::Closed { conn: id });
    let _ = ctrl_tx.send(Ctrl::Stop);
}
