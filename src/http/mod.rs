//! The HTTP API on tiny_http: a listener and a fixed pool of worker
//! threads ([`HttpServer`]). Each request is read at the edge into an
//! [`request::HttpRequest`] (body size-checked, credentials picked out),
//! answered by [`routes::handle`], which knows nothing of sockets, and
//! written back by [`response::respond`]. One file per endpoint family:
//! [`login`], [`sessions`], [`presence`], [`history`], [`system`], and the
//! chat [`page`].

mod groups;
mod history;
mod login;
pub mod page;
mod presence;
mod request;
mod response;
mod routes;
mod sessions;
mod system;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::auth::{Directory, Logins, SecretHash};
use crate::events::Event;

/// Largest login request body; login bodies are tiny.
pub(crate) const MAX_LOGIN_BODY: usize = 16 * 1024;
/// How long a request waits for the router before answering 503.
pub(crate) const ROUTER_WAIT: Duration = Duration::from_secs(5);
pub(crate) const WORKER_STACK: usize = 512 * 1024;

// The limits of every HTTP connection, enforced by the connection's own
// thread in the patched tiny_http (vendor/tiny_http/PATCHES.md) before a
// request reaches a worker: a worker never waits for a client.

/// Request line and headers together: 16 KiB, 431 beyond. The API's
/// requests carry a few short headers; browsers send 1 to 4 KiB with
/// their cookies, so this leaves room and bounds what a connection holds.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Header lines: 100, 431 beyond. A browser sends about 20.
pub(crate) const MAX_HEADERS: usize = 100;
/// From the accept (or a later request's first byte) to the end of its
/// head: 10 s, then 408 and close. A LAN client sends a head in
/// milliseconds; ten seconds forgive a slow Wi-Fi link and still free the
/// connection of a client that trickles its head.
pub(crate) const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// From the end of the head to the end of the body: 10 s, then 408 and
/// close. The largest body is `max(16 KiB, max_message_bytes)`.
pub(crate) const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// A keep-alive connection idle this long between requests is closed:
/// 30 s, long enough for a page's requests to share a connection.
pub(crate) const IDLE_KEEPALIVE: Duration = Duration::from_secs(30);
/// Writing one answer: 10 s, then the connection is closed, with what it
/// pipelined. The largest answer is the chat page's script; a client that
/// does not read it in ten seconds is not reading.
pub(crate) const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Open HTTP connections: 256 (one thread each). Beyond it a connection
/// is answered 503 with `Retry-After: 1` and closed at once, so a client
/// learns why rather than seeing a reset; the write cannot block the
/// accept thread (a fresh socket's buffer holds it). 256 is far more than
/// a LAN's browsers and apps keep open, and at most 256 threads and
/// 256 descriptors.
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 256;

/// What the handlers share.
pub struct HttpEnv {
    pub users: Arc<Directory>,
    pub logins: Arc<Logins>,
    pub router: Sender<Event>,
    /// The store's op queue: `/metrics` reads how many ops wait in it.
    pub store: Sender<crate::events::StoreOp>,
    pub api_key: Option<SecretHash>,
    /// Where browsers find the WebSocket: a configured public URL, or the
    /// WebSocket port on the host they reached this server by.
    pub ws_public_url: Option<String>,
    pub ws_port: u16,
    pub ws_context: String,
    /// The database, read directly for history (WAL: readers never block
    /// the store's writer).
    pub db_path: PathBuf,
    pub max_message_bytes: usize,
    /// A reload (SIGHUP) may change it: read for each system message.
    pub max_recipients: AtomicUsize,
    /// False once a listener thread has died: `/healthz` then fails, so
    /// a supervisor restarts the process.
    pub healthy: Arc<AtomicBool>,
    /// Failed logins per client address and user name, and the trusted
    /// proxies that say who the client is.
    pub throttle: crate::auth::throttle::LoginThrottle,
    /// Who checks a login (`[auth]`).
    pub auth: AuthEnv,
}

/// `[auth]` as the handlers use it.
pub struct AuthEnv {
    pub mode: crate::config::AuthMode,
    /// The host system (modes `http` and `local+http`).
    pub upstream: Option<crate::auth::upstream::Upstream>,
    /// `auth.header.user`.
    pub user_header: String,
}

/// Sends the router an event carrying a one-shot reply channel and waits
/// for its answer, at most [`ROUTER_WAIT`]; otherwise the 503 to send.
fn ask_router<T>(
    env: &HttpEnv,
    event: impl FnOnce(Sender<T>) -> Event,
) -> Result<T, response::Reply> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    if env.router.send(event(tx)).is_err() {
        return Err(response::busy("server is stopping"));
    }
    rx.recv_timeout(ROUTER_WAIT)
        .map_err(|_| response::busy("server busy"))
}

/// Answers one request. A handler that panics (a bug) costs that request
/// a 500, not the worker: four such requests would otherwise leave no
/// worker at all. The mutexes the handlers share recover from a panic
/// (`auth::lock`), and the tables behind them are whole between calls.
fn answer(env: &HttpEnv, req: &request::HttpRequest) -> response::Reply {
    let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if crate::supervisor::fault("http-handler") && req.path == "/healthz" {
            panic!("EDGEIM_FAULT=http-handler");
        }
        routes::handle(env, req)
    }));
    handled.unwrap_or_else(|_| {
        log::error!("an HTTP handler panicked on {}", req.path_for_log());
        response::Reply::error(500, "internal error")
    })
}

/// Why the HTTP listener did not start.
#[derive(Debug)]
pub enum HttpStartError {
    /// Its address cannot be bound.
    Bind(std::io::Error),
    /// A worker thread cannot be started.
    Worker(std::io::Error),
}

/// The HTTP listener and its worker threads.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl HttpServer {
    /// Starts the listener and its workers. The (patched) accept thread
    /// pauses and retries after an accept error such as running out of
    /// file descriptors, and ends only when the listener itself is broken:
    /// the workers then send why on `died`, so the process can stop and be
    /// restarted rather than live on without its HTTP API.
    pub fn start(
        listen: SocketAddr,
        workers: usize,
        env: Arc<HttpEnv>,
        died: Sender<String>,
    ) -> Result<HttpServer, HttpStartError> {
        let limit = MAX_LOGIN_BODY.max(env.max_message_bytes);
        let limits = tiny_http::Limits {
            max_head_bytes: MAX_HEAD_BYTES,
            max_headers: MAX_HEADERS,
            max_body_bytes: limit,
            head_timeout: HEAD_DEADLINE,
            body_timeout: BODY_DEADLINE,
            idle_timeout: IDLE_KEEPALIVE,
            write_timeout: WRITE_DEADLINE,
            max_connections: MAX_HTTP_CONNECTIONS,
            fail_accept: crate::supervisor::fault("http-accept"),
        };
        let server = tiny_http::Server::http_with_limits(listen, limits)
            .map_err(|e| HttpStartError::Bind(std::io::Error::other(e.to_string())))?;
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..workers {
            let server = server.clone();
            let env = env.clone();
            let stopping = stopping.clone();
            let died = died.clone();
            let h = std::thread::Builder::new()
                .name(format!("http-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    loop {
                        let mut rq = match server.recv() {
                            Ok(rq) => rq,
                            Err(e) => {
                                if !stopping.load(Ordering::Acquire) {
                                    env.healthy.store(false, Ordering::Release);
                                    let _ =
                                        died.try_send(format!("the HTTP listener stopped: {e}"));
                                }
                                return;
                            }
                        };
                        let reply =
                            match request::read_request(&mut rq, limit, &env.auth.user_header) {
                                Ok(req) => answer(&env, &req),
                                Err(reply) => reply,
                            };
                        response::respond(rq, reply);
                    }
                })
                .map_err(HttpStartError::Worker)?;
            handles.push(h);
        }
        Ok(HttpServer {
            server,
            workers: handles,
            stopping,
        })
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    pub fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}
