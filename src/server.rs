//! Starting and stopping the whole server: the router thread, the
//! WebSocket listener and the HTTP listener, wired by channels.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::auth::Directory;
use crate::auth::upstream::Upstream;
use crate::auth::users::{self, UsersError};
use crate::auth::{Logins, hash_secret};
use crate::config::Config;
use crate::conn::listener::Listener;
use crate::conn::{ConnEnv, ws_config};
use crate::events::Event;
use crate::http::{AuthEnv, HttpEnv, HttpServer, HttpStartError};
use crate::reload::Reloader;
use crate::router::{Router, RouterConfig};
use crate::store::groups::GroupLimits;
use crate::store::{self, Known, OpenError, Store, StoreLimits};
use crate::supervisor::{Health, Watch, spawn_core};
use crate::wire::checks::InboundLimits;

/// Events waiting for the router; a full queue slows the senders down
/// (readers block), which is the back-pressure a flood deserves.
pub(crate) const ROUTER_QUEUE: usize = 16 * 1024;

/// How long [`Running::shutdown`] waits, when the binary stops on a
/// signal, for clients to finish the close handshake.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// A server that failed to start, said in one line.
#[derive(Debug)]
pub enum StartError {
    /// `data_dir` cannot be created.
    DataDir(PathBuf, std::io::Error),
    /// The users file cannot be read.
    Users(UsersError),
    /// The database cannot be opened.
    Store(OpenError),
    /// A listener cannot bind its address.
    Listen(&'static str, SocketAddr, std::io::Error),
    /// A thread cannot be started.
    Thread(&'static str, std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::DataDir(p, e) => write!(f, "data_dir {}: {e}", p.display()),
            StartError::Users(e) => e.fmt(f),
            StartError::Store(e) => e.fmt(f),
            StartError::Listen(what, addr, e) => write!(f, "{what} listen {addr}: {e}"),
            StartError::Thread(what, e) => write!(f, "cannot start the {what} thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl StartError {
    /// Whether starting again cannot help: the database is not one, is
    /// from a newer edgeim, or cannot be written. The operator must act,
    /// so the binary exits with its own status and systemd does not retry.
    pub fn is_permanent(&self) -> bool {
        matches!(self, StartError::Store(e) if e.permanent)
    }
}

/// A running server.
pub struct Running {
    http: Option<HttpServer>,
    ws: Listener,
    router_tx: Sender<Event>,
    router: Option<JoinHandle<()>>,
    store: Option<Store>,
    /// Every connection thread holds a sender; disconnected means all ended.
    alive: Option<Sender<()>>,
    alive_rx: Receiver<()>,
    http_addr: SocketAddr,
    health: Arc<Health>,
    died: Receiver<String>,
    /// What a reload reaches, and the config the server started with.
    config: Config,
    conn_env: Arc<ConnEnv>,
    http_env: Arc<HttpEnv>,
    /// The control socket (removed when the server stops).
    _control: Option<crate::control::listener::Control>,
}

impl Running {
    /// Says why, if a core thread (router, store, a listener) ended by
    /// itself: the server can no longer serve and should be stopped (and
    /// restarted by its supervisor).
    pub fn died(&self) -> &Receiver<String> {
        &self.died
    }

    /// The server's health, for the binary's own core thread (signals).
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Where the HTTP listener is (the real port when configured as 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the WebSocket listener is.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws.addr()
    }

    /// What carries out a reload (SIGHUP) of this server, which was
    /// started with the config in the file `path` (if any).
    pub fn reloader(&self, path: Option<PathBuf>) -> Reloader {
        Reloader {
            path,
            running: self.config.clone(),
            users: self.http_env.users.clone(),
            logins: self.http_env.logins.clone(),
            conn_env: self.conn_env.clone(),
            http_env: self.http_env.clone(),
            router: self.router_tx.clone(),
        }
    }

    /// Closes every connection with 1001 and stops, waiting at most `grace`
    /// for connections to finish their close handshake.
    pub fn shutdown(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        // The core threads end on purpose from here on.
        self.health.stopping();
        self.ws.stop();
        let _ = self.router_tx.send(Event::Shutdown);
        if let Some(r) = self.router.take() {
            let _ = r.join();
        }
        if let Some(h) = self.http.take() {
            h.stop();
        }
        // Everything that sends to the store has stopped: commit the rest.
        if let Some(store) = self.store.take() {
            store.close();
        }
        drop(self.alive.take());
        // Returns when the last connection thread drops its sender.
        let _ = self.alive_rx.recv_deadline(deadline);
    }
}

/// The store's limits from the config; `known` says who the users file
/// knows.
pub fn store_limits(config: &Config, known: Known) -> StoreLimits {
    let limits = &config.limits;
    StoreLimits {
        offline_per_user: limits.offline_per_user,
        retention_ms: limits.retention_ms(),
        forget_client_ms: limits.forget_client_days.saturating_mul(24 * 3600 * 1000),
        commit_window: config.store.commit_window(),
        groups: GroupLimits {
            max_members: limits.max_group_members,
            max_groups_per_user: limits.max_groups_per_user,
        },
        known,
    }
}

/// Starts everything the config describes.
pub fn start(config: &Config) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
    let db_path = store::path_in(&config.data_dir);
    let wal = db_path.with_extension("db-wal");
    let shm = db_path.with_extension("db-shm");
    let users_file = users::path_in(&config.data_dir);
    crate::modes::tighten(&config.data_dir, &[&db_path, &wal, &shm, &users_file]);
    let users = Arc::new(Directory::open(users_file).map_err(StartError::Users)?);
    if users.is_empty() {
        log::warn!(
            "no users yet: add one with `edgeim user add NAME` (users file {})",
            users::path_in(&config.data_dir).display()
        );
    }
    let limits = &config.limits;
    let (health, died) = Health::new();
    let opened = Store::open_watched(
        &db_path,
        store_limits(config, {
            let users = users.clone();
            Known::by(move |u| users.knows(u))
        }),
        Some(Watch::new("store", &health)),
    )
    .map_err(StartError::Store)?;
    // Users delegated login vouched for exist while a host system or a
    // proxy may log people in; back in mode local they are gone again.
    if config.auth.mode != crate::config::AuthMode::Local {
        users.set_delegated(opened.delegated);
    }
    let store = opened.store;
    let (router_tx, router_rx) = bounded(ROUTER_QUEUE);
    let router = Router::new(
        RouterConfig {
            session_ttl_ms: limits.session_ttl_s.saturating_mul(1000),
            session_ids_per_s: limits.session_ids_per_s,
            max_clients_per_user: limits.max_clients_per_user,
            send_queue: config.websocket.send_queue,
            watchdog: crate::notify::watchdog_interval(),
        },
        store.sender(),
    );
    let done = opened.done;
    let router = spawn_core("router", &health, move || router.run(router_rx, done))
        .map_err(|e| StartError::Thread("router", e))?;

    let ws = &config.websocket;
    let conn_env = Arc::new(ConnEnv {
        context_path: format!("/{}", ws.context),
        ws_config: ws_config(limits.max_message_bytes),
        register_timeout: limits.register_timeout(),
        ping_interval: Duration::from_secs(ws.ping_interval_s),
        idle_timeout: Duration::from_secs(ws.idle_timeout_s),
        write_timeout: Duration::from_secs(ws.write_timeout_s),
        limits: RwLock::new(InboundLimits {
            rate_per_s: limits.rate_per_s,
            rate_burst: limits.rate_burst,
            max_recipients: limits.max_recipients,
            offline_per_user: limits.offline_per_user,
        }),
        router: router_tx.clone(),
        users: users.clone(),
        started: Instant::now(),
        trusted_proxies: config.http.trusted_proxies(),
    });
    let (alive, alive_rx) = bounded(1);
    let listener =
        TcpListener::bind(ws.listen).map_err(|e| StartError::Listen("websocket", ws.listen, e))?;
    let ws_watch = Watch::new("websocket accept", &health);
    let ws_listener = Listener::start(listener, conn_env.clone(), alive.clone(), ws_watch)
        .map_err(|e| StartError::Thread("websocket accept", e))?;

    let users_for_control = users.clone();
    let http_env = Arc::new(HttpEnv {
        users,
        logins: Arc::new(Logins::stored(
            config.http.login_ttl_s.saturating_mul(1000),
            store.sender(),
            opened.logins,
        )),
        db_path,
        ws_public_url: ws.public_url.clone(),
        ws_port: ws_listener.addr().port(),
        ws_context: ws.context.clone(),
        router: router_tx.clone(),
        store: store.sender(),
        api_key: config.api.key.as_deref().map(hash_secret),
        max_message_bytes: limits.max_message_bytes,
        max_recipients: AtomicUsize::new(limits.max_recipients),
        healthy: health.healthy.clone(),
        throttle: crate::auth::throttle::LoginThrottle::new(config.http.trusted_proxies()),
        auth: AuthEnv {
            mode: config.auth.mode,
            upstream: config
                .auth
                .mode
                .asks_upstream()
                .then(|| Upstream::new(&config.auth.http, config.http.workers)),
            user_header: config.auth.header.user.clone(),
        },
    });
    let listen = config.http.listen;
    let http = HttpServer::start(
        listen,
        config.http.workers,
        http_env.clone(),
        health.reporter(),
    )
    .map_err(|e| match e {
        HttpStartError::Bind(e) => StartError::Listen("http", listen, e),
        HttpStartError::Worker(e) => StartError::Thread("http worker", e),
    })?;
    // `edgeim group` reaches the running server here; without it (a path
    // too long for a socket) changes wait for a restart, so say so.
    let socket = crate::control::socket_in(&config.data_dir);
    let control =
        match crate::control::listener::start(socket.clone(), router_tx.clone(), users_for_control)
        {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!(
                    "control socket {}: {e}; `edgeim group` cannot reach this server",
                    socket.display()
                );
                None
            }
        };
    let http_addr = http.addr().unwrap_or(config.http.listen);
    log::info!("http listening on {http_addr}");
    log::info!(
        "websocket listening on ws://{}/{}",
        ws_listener.addr(),
        ws.context
    );
    Ok(Running {
        http: Some(http),
        ws: ws_listener,
        router_tx,
        router: Some(router),
        store: Some(store),
        alive: Some(alive),
        alive_rx,
        http_addr,
        health,
        died,
        config: config.clone(),
        conn_env,
        http_env,
        _control: control,
    })
}
