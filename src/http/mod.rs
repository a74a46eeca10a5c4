//! The HTTP API on tiny_http: a listener and a fixed pool of worker
//! threads ([`HttpServer`]). Each request is read at the edge into an
//! [`request::HttpRequest`] (body size-checked, credentials picked out),
//! answered by [`routes::handle`], which knows nothing of sockets, and
//! written back by [`response::respond`]. One file per endpoint family:
//! [`login`], [`sessions`], [`presence`], [`history`], [`system`], and the
//! chat [`page`].

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
use std::sync::atomic::{AtomicBool, Ordering};
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

/// What the handlers share.
pub struct HttpEnv {
    pub users: Arc<Directory>,
    pub logins: Arc<Logins>,
    pub router: Sender<Event>,
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
    pub max_recipients: usize,
    /// False once a listener thread has died: `/healthz` then fails, so
    /// a supervisor restarts the process.
    pub healthy: Arc<AtomicBool>,
    /// Failed logins per client address and user name, and the trusted
    /// proxies that say who the client is.
    pub throttle: crate::auth::throttle::LoginThrottle,
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
    /// Starts the listener and its workers. tiny_http's accept thread ends
    /// for good on an accept error (out of file descriptors): the workers
    /// then send why on `died`, so the process can stop and be restarted
    /// rather than live on without its HTTP API.
    pub fn start(
        listen: SocketAddr,
        workers: usize,
        env: Arc<HttpEnv>,
        died: Sender<String>,
    ) -> Result<HttpServer, HttpStartError> {
        let server = tiny_http::Server::http(listen)
            .map_err(|e| HttpStartError::Bind(std::io::Error::other(e.to_string())))?;
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let limit = MAX_LOGIN_BODY.max(env.max_message_bytes);
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
                        let reply = match request::read_request(&mut rq, limit) {
                            Ok(req) => routes::handle(&env, &req),
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
