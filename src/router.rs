//! The router: one thread that owns the session table, the pending session
//! ids and the store, and decides who gets what. Connections and HTTP
//! handlers talk to it only through [`Event`]s. Its decisions are methods
//! on [`Router`], driven by unit tests through plain channels.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select, tick};
use tungstenite::Utf8Bytes;

use crate::auth::{SecretHash, hash_secret};
use crate::clock::now_ms;
use crate::events::{ConnHandle, ConnId, Ctrl, Event, OnlineList, Outbound};
use crate::ids::{ClientKey, ClientName, Origin, UserId};
use crate::protocol::{
    self, Outgoing, Receipt, Register, Reject, Request, Status, TYPE_RECEIVE_STATUS, Text,
};
use crate::ratelimit::TokenBucket;
use crate::store::{Accepted, NewMessage, ReceiptOutcome, Refused, Store, StoreLimits};

/// The router's settings, from the config.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub session_ttl_ms: u64,
    pub session_ids_per_s: f64,
    pub max_clients_per_user: usize,
    pub send_queue: usize,
    pub store: StoreLimits,
}

/// How often the store is purged of expired messages and forgotten clients.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Most events handled per wake-up before purging gets a look in.
const BATCH: usize = 512;

struct Conn {
    handle: ConnHandle,
    client: Option<ClientKey>,
}

struct PendingSession {
    key: ClientKey,
    expires_ms: u64,
}

/// One-time session ids, stored by hash, expiring in issue order.
struct PendingSessions {
    ttl_ms: u64,
    by_hash: HashMap<SecretHash, PendingSession>,
    order: VecDeque<(u64, SecretHash)>,
}

impl PendingSessions {
    fn sweep(&mut self, now_ms: u64) {
        while let Some((expires, hash)) = self.order.front().copied() {
            if expires > now_ms {
                break;
            }
            self.order.pop_front();
            if self
                .by_hash
                .get(&hash)
                .is_some_and(|p| p.expires_ms == expires)
            {
                self.by_hash.remove(&hash);
            }
        }
    }

    fn issue(&mut self, key: ClientKey, now_ms: u64) -> String {
        self.sweep(now_ms);
        let id = uuid::Uuid::new_v4().to_string();
        let hash = hash_secret(&id);
        let expires_ms = now_ms.saturating_add(self.ttl_ms);
        self.by_hash
            .insert(hash, PendingSession { key, expires_ms });
        self.order.push_back((expires_ms, hash));
        id
    }

    /// Uses the id up, whatever the register's outcome.
    fn take(&mut self, id: &str, now_ms: u64) -> Option<ClientKey> {
        self.sweep(now_ms);
        self.by_hash
            .remove(&hash_secret(id))
            .filter(|p| p.expires_ms > now_ms)
            .map(|p| p.key)
    }
}

pub struct Router {
    config: RouterConfig,
    conns: HashMap<ConnId, Conn>,
    clients: HashMap<UserId, Vec<(ClientName, ConnId)>>,
    sessions: PendingSessions,
    session_bucket: TokenBucket,
    store: Store,
}

/// Whether the router loop goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

impl Router {
    pub fn new(config: RouterConfig) -> Router {
        let rate = config.session_ids_per_s;
        Router {
            sessions: PendingSessions {
                ttl_ms: config.session_ttl_ms,
                by_hash: HashMap::new(),
                order: VecDeque::new(),
            },
            session_bucket: TokenBucket::new(rate, rate.max(1.0), Instant::now()),
            store: Store::new(config.store.clone()),
            conns: HashMap::new(),
            clients: HashMap::new(),
            config,
        }
    }

    /// Runs the router until [`Event::Shutdown`] or until every sender is gone.
    pub fn run(mut self, events: Receiver<Event>) {
        let purge = tick(PURGE_EVERY);
        loop {
            select! {
                recv(events) -> ev => {
                    let Ok(ev) = ev else { return };
                    if self.handle(ev, now_ms()) == Flow::Stop {
                        return;
                    }
                    // Drain a burst in one wake-up.
                    for ev in events.try_iter().take(BATCH) {
                        if self.handle(ev, now_ms()) == Flow::Stop {
                            return;
                        }
                    }
                }
                recv(purge) -> _ => self.purge(now_ms()),
            }
        }
    }

    pub fn handle(&mut self, ev: Event, now: u64) -> Flow {
        match ev {
            Event::Opened(handle) => {
                self.conns.insert(
                    handle.shared.id,
                    Conn {
                        handle,
                        client: None,
                    },
                );
            }
            Event::Register { conn, msg, reply } => {
                let result = self.register(conn, msg, now);
                let _ = reply.send(result);
            }
            Event::Request { conn, req } => match req {
                Request::Text(t) => self.text(conn, t, now),
                Request::Receipt(r) => self.receipt(conn, r, now),
            },
            Event::Closed { conn } => self.closed(conn, now),
            Event::IssueSession {
                user,
                client,
                reply,
            } => {
                let id = self
                    .session_bucket
                    .take(Instant::now())
                    .then(|| self.sessions.issue(ClientKey { user, client }, now));
                let _ = reply.send(id);
            }
            Event::SystemMessage { to, body, reply } => {
                let id = protocol::server_id();
                let msg = NewMessage {
                    origin: Origin::System,
                    id: id.clone(),
                    to,
                    body,
                };
                let _ = reply.send(self.accept(msg, None, now).map(|()| id));
            }
            Event::Online { reply } => {
                let _ = reply.send(self.online());
            }
            Event::Shutdown => {
                for conn in self.conns.values() {
                    close(&conn.handle, 1001, "server shutting down");
                }
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn register(&mut self, conn_id: ConnId, msg: Register, now: u64) -> Result<UserId, Reject> {
        let Some(key) = self.sessions.take(&msg.session_id, now) else {
            return Err(Reject::new(
                Status::SessionError,
                "unknown, expired or used session id",
            ));
        };
        if msg.from != key.user.as_str() {
            return Err(Reject::new(
                Status::FromError,
                "from is not the session's user",
            ));
        }
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Err(Reject::new(Status::Failed, "connection is closing"));
        };
        let handle = conn.handle.clone();
        let mine = self.clients.entry(key.user.clone()).or_default();
        let replaced = mine.iter().position(|(name, _)| *name == key.client);
        if replaced.is_none() && mine.len() >= self.config.max_clients_per_user {
            return Err(Reject::new(
                Status::Failed,
                format!(
                    "user already has {} clients connected",
                    self.config.max_clients_per_user
                ),
            ));
        }
        if let Some(i) = replaced {
            let (_, old) = mine.swap_remove(i);
            if let Some(old) = self.conns.get_mut(&old) {
                old.client = None;
                log::info!(
                    "conn {} {} replaced by conn {conn_id}",
                    old.handle.shared.id,
                    key
                );
                close(&old.handle, 4000, "replaced");
            }
        }
        self.clients
            .entry(key.user.clone())
            .or_default()
            .push((key.client.clone(), conn_id));
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.client = Some(key.clone());
        }
        handle.shared.registered.store(true, Ordering::Release);
        log::info!("conn {conn_id} registered as {key}");
        let ok = protocol::send_status(
            &msg.id,
            key.user.as_str(),
            Status::Success,
            "registered",
            now,
        );
        self.push(conn_id, Outbound::Frame(ok));
        let backlog = self.store.attach(&key, now);
        if !backlog.is_empty() {
            self.push(conn_id, Outbound::Batch(backlog));
        }
        Ok(key.user)
    }

    fn text(&mut self, conn_id: ConnId, t: Text, now: u64) {
        let Some(sender) = self.client_of(conn_id) else {
            return;
        };
        let id = t.id.clone();
        let msg = NewMessage {
            origin: Origin::User(sender.user.clone()),
            id: t.id,
            to: t.to,
            body: t.body,
        };
        let (status, why) = match self.accept(msg, Some((&sender, conn_id)), now) {
            Ok(()) => (Status::Success, "accepted".into()),
            Err(r) => (r.status, r.msg),
        };
        self.answer(conn_id, &id, sender.user.as_str(), status, &why, now);
    }

    /// Accepts and delivers; the sending connection gets its copy only when
    /// its user is a recipient.
    fn accept(
        &mut self,
        msg: NewMessage,
        sender: Option<(&ClientKey, ConnId)>,
        now: u64,
    ) -> Result<(), Reject> {
        let accepted = self
            .store
            .accept(msg, sender.map(|(k, _)| k), now)
            .map_err(|e| match e {
                Refused::Full(users) => {
                    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
                    Reject::new(
                        Status::ReceiveError,
                        format!("offline queue full: {}", names.join(",")),
                    )
                }
            })?;
        let Accepted::New { frame, targets } = accepted else {
            return Ok(());
        };
        let sending_conn = sender.map(|(_, c)| c);
        let mut to: Vec<ConnId> = Vec::new();
        for t in &targets {
            let Some(conns) = self.clients.get(&t.user) else {
                continue;
            };
            to.extend(
                conns
                    .iter()
                    .map(|(_, c)| *c)
                    .filter(|c| !(t.copy && Some(*c) == sending_conn)),
            );
        }
        for c in to {
            self.push(c, Outbound::Frame(frame.clone()));
        }
        Ok(())
    }

    fn receipt(&mut self, conn_id: ConnId, r: Receipt, now: u64) {
        let Some(key) = self.client_of(conn_id) else {
            return;
        };
        match self.store.receipt(&key, &r.to, &r.id) {
            Err(_) => {
                let why = "receipt for a message this user never received";
                self.answer(
                    conn_id,
                    &r.id,
                    key.user.as_str(),
                    Status::MessageError,
                    why,
                    now,
                );
            }
            Ok(outcome) => {
                self.answer(
                    conn_id,
                    &r.id,
                    key.user.as_str(),
                    Status::Success,
                    "recorded",
                    now,
                );
                if let ReceiptOutcome::Forward(sender) = outcome {
                    let frame = Outgoing {
                        id: &r.id,
                        kind: TYPE_RECEIVE_STATUS,
                        is_system: false,
                        from: key.user.as_str(),
                        to: sender.as_str(),
                        body: &r.body,
                        timestamp: now,
                    }
                    .frame();
                    let conns: Vec<ConnId> = self
                        .clients
                        .get(&sender)
                        .into_iter()
                        .flatten()
                        .map(|(_, c)| *c)
                        .collect();
                    for c in conns {
                        self.push(c, Outbound::Frame(frame.clone()));
                    }
                }
            }
        }
    }

    fn closed(&mut self, conn_id: ConnId, now: u64) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        if let Some(key) = conn.client {
            self.unlist(&key, conn_id);
            self.store.detach(&key, now);
        }
    }

    fn unlist(&mut self, key: &ClientKey, conn_id: ConnId) {
        if let Some(mine) = self.clients.get_mut(&key.user) {
            mine.retain(|(_, c)| *c != conn_id);
            if mine.is_empty() {
                self.clients.remove(&key.user);
            }
        }
    }

    fn client_of(&self, conn_id: ConnId) -> Option<ClientKey> {
        self.conns.get(&conn_id).and_then(|c| c.client.clone())
    }

    fn answer(&mut self, conn_id: ConnId, id: &str, to: &str, status: Status, msg: &str, now: u64) {
        let frame = protocol::send_status(id, to, status, msg, now);
        self.push(conn_id, Outbound::Frame(frame));
    }

    /// Queues for one connection without ever blocking. A connection whose
    /// queue is full is closed as `slow`; what it missed stays in the store
    /// for its next register.
    fn push(&mut self, conn_id: ConnId, item: Outbound) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let shared = &conn.handle.shared;
        if shared.queued.load(Ordering::Acquire) >= self.config.send_queue {
            log::warn!(
                "conn {conn_id} ({}) is not reading: closing as slow",
                shared.peer
            );
            close(&conn.handle, 1008, "slow");
            if let Some(key) = conn.client.take() {
                self.unlist(&key, conn_id);
                self.store.detach(&key, now_ms());
            }
            return;
        }
        shared.queued.fetch_add(1, Ordering::AcqRel);
        if conn.handle.out.send(item).is_err() {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn online(&self) -> OnlineList {
        let mut list: OnlineList = self
            .clients
            .iter()
            .map(|(u, cs)| {
                let mut names: Vec<ClientName> = cs.iter().map(|(n, _)| n.clone()).collect();
                names.sort();
                (u.clone(), names)
            })
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    fn purge(&mut self, now: u64) {
        let clients = &self.clients;
        self.store.purge(now, |k| {
            clients
                .get(&k.user)
                .is_some_and(|cs| cs.iter().any(|(n, _)| *n == k.client))
        });
    }
}

/// Asks a writer to close; if its control queue is full, the writer is
/// stuck, so the socket is shut instead.
fn close(handle: &ConnHandle, code: u16, reason: &'static str) {
    if handle
        .ctrl
        .try_send(Ctrl::Close(code, reason.into()))
        .is_err()
    {
        handle.shared.kill();
    }
}

/// Helper for unit tests and the server: the frames a writer would get.
pub fn frames_of(item: Outbound) -> Vec<Utf8Bytes> {
    match item {
        Outbound::Frame(f) => vec![f],
        Outbound::Batch(fs) => fs,
    }
}
