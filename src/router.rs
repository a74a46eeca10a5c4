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
            Event::Register {
                conn,
                msg,
                refused,
                reply,
            } => {
                let result = self.register(conn, msg, refused, now);
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

    fn register(
        &mut self,
        conn_id: ConnId,
        msg: Register,
        refused: Option<Reject>,
        now: u64,
    ) -> Result<UserId, Reject> {
        let key = self.sessions.take(&msg.session_id, now);
        if let Some(r) = refused {
            return Err(r);
        }
        let Some(key) = key else {
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
        self.push(conn_id, Outbound::Answer(ok));
        let backlog = self.store.attach(&key, now);
        if !backlog.is_empty() {
            self.push(conn_id, Outbound::Batch(backlog));
        }
        Ok(key.user)
    }

    fn text(&mut self, conn_id: ConnId, t: Text, now: u64) {
        let Some(sender) = self.client_of(conn_id) else {
            return self.unregistered(conn_id, &t.id, now);
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
            return self.unregistered(conn_id, &r.id, now);
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

    /// A message from a connection that was registered when its reader
    /// checked it, but has since been replaced or closed as slow.
    fn unregistered(&mut self, conn_id: ConnId, id: &str, now: u64) {
        let why = "this connection is no longer registered";
        self.answer(conn_id, id, "", Status::SessionError, why, now);
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
        self.push(conn_id, Outbound::Answer(frame));
    }

    /// Queues for one connection without ever blocking. A connection whose
    /// queue is full is closed as `slow`; what it missed stays in the store
    /// for its next register.
    fn push(&mut self, conn_id: ConnId, item: Outbound) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let shared = &conn.handle.shared;
        if shared.is_closing() {
            return;
        }
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

/// Asks a writer to close, once; if its control queue is full, the writer
/// is stuck, so the socket is shut instead.
fn close(handle: &ConnHandle, code: u16, reason: &'static str) {
    if !handle.shared.start_closing() {
        return;
    }
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
        Outbound::Frame(f) | Outbound::Answer(f) => vec![f],
        Outbound::Batch(fs) => fs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ConnShared;
    use crossbeam_channel::{Receiver, bounded, unbounded};
    use serde_json::Value;
    use std::sync::Arc;

    const NOW: u64 = 1_000_000;

    struct Peer {
        id: ConnId,
        out: Receiver<Outbound>,
        ctrl: Receiver<Ctrl>,
        shared: Arc<ConnShared>,
    }

    impl Peer {
        /// Everything queued for this connection, as JSON.
        fn frames(&self) -> Vec<Value> {
            let mut v = Vec::new();
            while let Ok(item) = self.out.try_recv() {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                v.extend(
                    frames_of(item)
                        .iter()
                        .map(|f| serde_json::from_str(f).unwrap()),
                );
            }
            v
        }
        fn texts(&self) -> Vec<String> {
            self.frames()
                .into_iter()
                .filter(|f| f["type"] == 2001)
                .map(|f| f["id"].as_str().unwrap().to_string())
                .collect()
        }
        fn closed_with(&self) -> Option<u16> {
            self.ctrl.try_iter().find_map(|c| match c {
                Ctrl::Close(code, _) => Some(code),
                _ => None,
            })
        }
    }

    fn router() -> Router {
        Router::new(RouterConfig {
            session_ttl_ms: 60_000,
            session_ids_per_s: 1000.0,
            max_clients_per_user: 2,
            send_queue: 8,
            store: StoreLimits {
                offline_per_user: 100,
                retention_ms: u64::MAX,
                forget_client_ms: u64::MAX,
            },
        })
    }

    fn open(r: &mut Router, id: ConnId) -> Peer {
        let (out_tx, out) = unbounded();
        let (ctrl_tx, ctrl) = bounded(16);
        let shared = Arc::new(ConnShared::new(id, "127.0.0.1:1".parse().unwrap(), None));
        r.handle(
            Event::Opened(ConnHandle {
                shared: shared.clone(),
                out: out_tx,
                ctrl: ctrl_tx,
            }),
            NOW,
        );
        Peer {
            id,
            out,
            ctrl,
            shared,
        }
    }

    fn session(r: &mut Router, user: &str, client: &str, now: u64) -> String {
        let (tx, rx) = bounded(1);
        let user = UserId::parse(user).unwrap();
        let client = ClientName::parse(client).unwrap();
        r.handle(
            Event::IssueSession {
                user,
                client,
                reply: tx,
            },
            now,
        );
        rx.recv().unwrap().expect("not rate limited")
    }

    fn register(
        r: &mut Router,
        conn: ConnId,
        from: &str,
        sid: &str,
        now: u64,
    ) -> Result<UserId, Reject> {
        let (tx, rx) = bounded(1);
        let msg = Register {
            id: "reg".into(),
            from: from.into(),
            session_id: sid.into(),
        };
        r.handle(
            Event::Register {
                conn,
                msg,
                refused: None,
                reply: tx,
            },
            now,
        );
        rx.recv().unwrap()
    }

    fn online(r: &mut Router, user: &str, client: &str, id: ConnId) -> Peer {
        let p = open(r, id);
        let sid = session(r, user, client, NOW);
        register(r, id, user, &sid, NOW).unwrap();
        let Ok(Outbound::Answer(first)) = p.out.try_recv() else {
            panic!("no register answer")
        };
        p.shared.queued.fetch_sub(1, Ordering::AcqRel);
        assert_eq!(
            serde_json::from_str::<Value>(&first).unwrap()["type"],
            9001,
            "register answer comes first"
        );
        p
    }

    fn send(r: &mut Router, conn: ConnId, id: &str, to: &[&str]) {
        let to = to.iter().map(|u| UserId::parse(u).unwrap()).collect();
        r.handle(
            Event::Request {
                conn,
                req: Request::Text(Text {
                    id: id.into(),
                    to,
                    body: "hi".into(),
                }),
            },
            NOW,
        );
    }

    fn status_code(frame: &Value) -> i64 {
        serde_json::from_str::<Value>(frame["body"].as_str().unwrap()).unwrap()["code"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn a_session_id_works_once_for_its_user_until_it_expires() {
        let mut r = router();
        open(&mut r, 1);
        let sid = session(&mut r, "alice", "web", NOW);
        assert_eq!(
            register(&mut r, 1, "alice", &sid, NOW).map(|u| u.to_string()),
            Ok("alice".into())
        );
        assert_eq!(
            register(&mut r, 1, "alice", &sid, NOW).unwrap_err().status,
            Status::SessionError
        );
        let late = session(&mut r, "alice", "web", NOW);
        assert_eq!(
            register(&mut r, 1, "alice", &late, NOW + 60_000)
                .unwrap_err()
                .status,
            Status::SessionError
        );
        let stolen = session(&mut r, "alice", "web", NOW);
        assert_eq!(
            register(&mut r, 1, "bob", &stolen, NOW).unwrap_err().status,
            Status::FromError
        );
        assert_eq!(
            register(&mut r, 1, "alice", &stolen, NOW)
                .unwrap_err()
                .status,
            Status::SessionError,
            "a failed register uses the id up"
        );
        assert_eq!(
            register(&mut r, 1, "alice", "made-up", NOW)
                .unwrap_err()
                .status,
            Status::SessionError
        );
    }

    #[test]
    fn a_register_refused_by_the_reader_still_uses_its_session_id_up() {
        let mut r = router();
        open(&mut r, 1);
        let sid = session(&mut r, "alice", "web", NOW);
        let (tx, rx) = bounded(1);
        let msg = Register {
            id: "reg".into(),
            from: "alice".into(),
            session_id: sid.clone(),
        };
        let refused = Some(Reject::new(Status::FromError, "isSystem"));
        r.handle(
            Event::Register {
                conn: 1,
                msg,
                refused,
                reply: tx,
            },
            NOW,
        );
        assert_eq!(rx.recv().unwrap().unwrap_err().status, Status::FromError);
        assert_eq!(
            register(&mut r, 1, "alice", &sid, NOW).unwrap_err().status,
            Status::SessionError
        );
    }

    #[test]
    fn session_ids_are_refused_when_asked_for_too_fast() {
        let mut r = Router::new(RouterConfig {
            session_ids_per_s: 1.0,
            ..router().config
        });
        session(&mut r, "alice", "web", NOW);
        let (tx, rx) = bounded(1);
        let (user, client) = (
            UserId::parse("alice").unwrap(),
            ClientName::parse("web").unwrap(),
        );
        r.handle(
            Event::IssueSession {
                user,
                client,
                reply: tx,
            },
            NOW,
        );
        assert_eq!(rx.recv().unwrap(), None);
    }

    #[test]
    fn the_same_client_name_replaces_and_the_client_limit_holds() {
        let mut r = router();
        let old = online(&mut r, "alice", "web", 1);
        let _phone = online(&mut r, "alice", "phone", 2);
        let third = open(&mut r, 3);
        let sid = session(&mut r, "alice", "tablet", NOW);
        assert_eq!(
            register(&mut r, third.id, "alice", &sid, NOW)
                .unwrap_err()
                .status,
            Status::Failed
        );
        let new = online(&mut r, "alice", "web", 4);
        assert_eq!(old.closed_with(), Some(4000));
        send(&mut r, 2, "m1", &["alice"]);
        assert_eq!(new.texts(), ["m1"]);
        assert!(
            old.texts().is_empty(),
            "the replaced connection gets nothing more"
        );
        // A message the replaced connection had in flight is not accepted:
        // that connection is closing, so it is not answered either.
        send(&mut r, 1, "late", &["alice"]);
        assert!(old.frames().is_empty());
        assert!(
            new.texts().is_empty(),
            "nothing from a replaced connection is delivered"
        );
    }

    #[test]
    fn copies_reach_the_senders_other_clients_but_not_the_sender() {
        let mut r = router();
        let web = online(&mut r, "alice", "web", 1);
        let phone = online(&mut r, "alice", "phone", 2);
        let bob = online(&mut r, "bob", "web", 3);
        send(&mut r, 1, "m1", &["bob"]);
        let sent = web.frames();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0]["id"].as_str(), status_code(&sent[0])),
            (Some("m1"), 200)
        );
        assert_eq!(phone.texts(), ["m1"]);
        assert_eq!(bob.texts(), ["m1"]);
        send(&mut r, 1, "self", &["alice"]);
        assert_eq!(
            web.texts(),
            ["self"],
            "a note to self reaches the sending connection too"
        );
        assert_eq!(phone.texts(), ["self"]);
        assert!(bob.texts().is_empty());
    }

    #[test]
    fn a_full_queue_closes_only_that_connection_and_keeps_its_messages() {
        let mut r = router();
        let alice = online(&mut r, "alice", "web", 1);
        let bob = online(&mut r, "bob", "web", 2);
        let carol = online(&mut r, "carol", "web", 3);
        for i in 0..20 {
            send(&mut r, 1, &format!("m{i}"), &["bob"]);
            send(&mut r, 3, &format!("c{i}"), &["alice"]);
            alice.frames();
            carol.frames();
        }
        assert_eq!(bob.closed_with(), Some(1008));
        assert!(bob.shared.queued.load(Ordering::Acquire) <= 8);
        // Bob comes back and gets every message, in order.
        let back = online(&mut r, "bob", "web", 4);
        let ids = back.texts();
        assert_eq!(ids.len(), 20);
        assert!(
            ids.iter().enumerate().all(|(i, id)| *id == format!("m{i}")),
            "{ids:?}"
        );
    }

    #[test]
    fn the_first_receipt_per_user_goes_to_every_client_of_the_sender() {
        let mut r = router();
        let a1 = online(&mut r, "alice", "web", 1);
        let a2 = online(&mut r, "alice", "phone", 2);
        let b1 = online(&mut r, "bob", "web", 3);
        let b2 = online(&mut r, "bob", "phone", 4);
        send(&mut r, 1, "m1", &["bob"]);
        a1.frames();
        a2.frames();
        let ack = |conn| Event::Request {
            conn,
            req: Request::Receipt(Receipt {
                id: "m1".into(),
                to: Origin::parse("alice").unwrap(),
                body: "{}".into(),
            }),
        };
        r.handle(ack(3), NOW);
        r.handle(ack(4), NOW);
        for a in [&a1, &a2] {
            let got: Vec<Value> = a.frames();
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(
                (got[0]["type"].as_i64(), got[0]["from"].as_str()),
                (Some(9101), Some("bob"))
            );
        }
        for b in [&b1, &b2] {
            assert!(
                b.frames().iter().all(|f| f["type"] != 9101),
                "receipts go to the sender only"
            );
        }
    }

    #[test]
    fn shutdown_closes_every_connection_with_1001() {
        let mut r = router();
        let a = online(&mut r, "alice", "web", 1);
        let b = open(&mut r, 2);
        assert_eq!(r.handle(Event::Shutdown, NOW), Flow::Stop);
        assert_eq!(a.closed_with(), Some(1001));
        assert_eq!(b.closed_with(), Some(1001));
    }
}
