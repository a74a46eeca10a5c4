//! The router: one thread that owns the session table and the pending
//! session ids, and decides who gets what. Connections and HTTP handlers
//! talk to it through [`Event`]s; the store answers its ops with [`Done`]s
//! after they are committed, and only then does the router answer 9001 and
//! deliver. Its decisions are methods on [`Router`], driven by unit tests
//! through plain channels.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select};
use tungstenite::Utf8Bytes;

use crate::clock::now_ms;
use crate::events::{ConnHandle, ConnId, Ctrl, Event, OnlineList, Outbound};
use crate::ids::{ClientKey, ClientName, Origin, UserId};
use crate::protocol::{self, Outgoing, Register, Reject, Request, Status, TYPE_RECEIVE_STATUS};
use crate::ratelimit::TokenBucket;
use crate::sessions::PendingSessions;
use crate::store::{Accepted, Done, Dones, NewMessage, ReceiptOutcome, StoreOp};

/// The router's settings, from the config.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub session_ttl_ms: u64,
    pub session_ids_per_s: f64,
    pub max_clients_per_user: usize,
    pub send_queue: usize,
}

/// Most events handled per wake-up before the store's answers get a look in.
const BATCH: usize = 512;

struct Conn {
    handle: ConnHandle,
    client: Option<ClientKey>,
    /// The store has sent its backlog: live messages may flow. Until then
    /// they are in the backlog, so delivering them live would duplicate them.
    attached: bool,
}

pub struct Router {
    config: RouterConfig,
    conns: HashMap<ConnId, Conn>,
    /// Registered clients per user (attached or not yet).
    clients: HashMap<UserId, Vec<(ClientName, ConnId)>>,
    sessions: PendingSessions,
    session_bucket: TokenBucket,
    store: Sender<StoreOp>,
    /// Ops sent to the store and not answered yet.
    in_flight: usize,
}

/// Whether the router loop goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

impl Router {
    pub fn new(config: RouterConfig, store: Sender<StoreOp>) -> Router {
        let rate = config.session_ids_per_s;
        Router {
            sessions: PendingSessions::new(config.session_ttl_ms),
            session_bucket: TokenBucket::new(rate, rate.max(1.0), Instant::now()),
            conns: HashMap::new(),
            clients: HashMap::new(),
            store,
            in_flight: 0,
            config,
        }
    }

    /// Runs until [`Event::Shutdown`] or until every sender is gone.
    pub fn run(mut self, events: Receiver<Event>, done: Receiver<Dones>) {
        loop {
            select! {
                recv(done) -> d => if let Ok(d) = d {
                    let now = now_ms();
                    for d in d {
                        self.done(d, now);
                    }
                },
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
            }
        }
    }

    /// Ops the store has not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn handle(&mut self, ev: Event, now: u64) -> Flow {
        match ev {
            Event::Opened(handle) => {
                self.conns.insert(
                    handle.shared.id,
                    Conn {
                        handle,
                        client: None,
                        attached: false,
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
            Event::Request { conn, req } => {
                let Some(key) = self.client_of(conn) else {
                    let id = match &req {
                        Request::Text(t) => &t.id,
                        Request::Receipt(r) => &r.id,
                    };
                    return self.unregistered(conn, &id.clone(), now);
                };
                let op = match req {
                    Request::Text(t) => {
                        let msg = NewMessage {
                            origin: Origin::User(key.user.clone()),
                            id: t.id,
                            to: t.to,
                            body: t.body,
                        };
                        StoreOp::Accept {
                            conn: Some(conn),
                            sender: Some(key),
                            msg,
                            reply: None,
                        }
                    }
                    Request::Receipt(receipt) => StoreOp::Receipt { conn, key, receipt },
                };
                self.send_to_store(op);
            }
            Event::Closed { conn } => self.closed(conn),
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
                let msg = NewMessage {
                    origin: Origin::System,
                    id: protocol::server_id(),
                    to,
                    body,
                };
                self.send_to_store(StoreOp::Accept {
                    conn: None,
                    sender: None,
                    msg,
                    reply: Some(reply),
                });
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

    /// A committed op: answer and deliver.
    pub fn done(&mut self, d: Done, now: u64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match d {
            Done::Accepted {
                conn,
                sender,
                id,
                result,
                reply,
            } => {
                let answer = match result {
                    Ok(Accepted::New { frame, targets }) => {
                        let mut to: Vec<ConnId> = Vec::new();
                        for t in &targets {
                            let Some(conns) = self.clients.get(&t.user) else {
                                continue;
                            };
                            let skip_sender = t.copy.then_some(conn).flatten();
                            to.extend(
                                conns
                                    .iter()
                                    .map(|(_, c)| *c)
                                    .filter(|c| Some(*c) != skip_sender),
                            );
                        }
                        for c in to {
                            if self.conns.get(&c).is_some_and(|c| c.attached) {
                                self.push(c, Outbound::Frame(frame.clone()));
                            }
                        }
                        Ok(())
                    }
                    Ok(Accepted::Duplicate) => Ok(()),
                    Err(r) => Err(r),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(answer.clone().map(|()| id.clone()));
                }
                if let (Some(conn), Some(sender)) = (conn, sender) {
                    let (status, why) = match answer {
                        Ok(()) => (Status::Success, "accepted".into()),
                        Err(r) => (r.status, r.msg),
                    };
                    self.answer(conn, &id, sender.user.as_str(), status, &why, now);
                }
            }
            Done::Receipt {
                conn,
                key,
                receipt,
                result,
            } => match result {
                Err(r) => self.answer(conn, &receipt.id, key.user.as_str(), r.status, &r.msg, now),
                Ok(outcome) => {
                    self.answer(
                        conn,
                        &receipt.id,
                        key.user.as_str(),
                        Status::Success,
                        "recorded",
                        now,
                    );
                    if let ReceiptOutcome::Forward(sender) = outcome {
                        let frame = Outgoing {
                            id: &receipt.id,
                            kind: TYPE_RECEIVE_STATUS,
                            is_system: false,
                            from: key.user.as_str(),
                            to: sender.as_str(),
                            body: &receipt.body,
                            timestamp: now,
                        }
                        .frame();
                        for c in self.attached_conns(&sender) {
                            self.push(c, Outbound::Frame(frame.clone()));
                        }
                    }
                }
            },
            Done::Attached {
                conn,
                key,
                register_id,
                result,
            } => {
                // The connection may have gone or been replaced meanwhile.
                let current = self
                    .conns
                    .get(&conn)
                    .is_some_and(|c| c.client.as_ref() == Some(&key));
                if !current {
                    return;
                }
                match result {
                    Ok(backlog) => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.attached = true;
                        }
                        log::info!("conn {conn} registered as {key}");
                        let ok = protocol::send_status(
                            &register_id,
                            key.user.as_str(),
                            Status::Success,
                            "registered",
                            now,
                        );
                        self.push(conn, Outbound::Answer(ok));
                        if !backlog.is_empty() {
                            self.push(conn, Outbound::Batch(backlog));
                        }
                    }
                    Err(r) => {
                        // The answer goes on the control queue too: the
                        // writer takes that first, and writes nothing after
                        // the close.
                        let frame = protocol::send_status(
                            &register_id,
                            key.user.as_str(),
                            r.status,
                            &r.msg,
                            now,
                        );
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.client = None;
                            if c.handle.ctrl.try_send(Ctrl::Frame(frame)).is_ok() {
                                close(&c.handle, 1008, r.status.name());
                            } else {
                                c.handle.shared.kill();
                            }
                        }
                        self.unlist(&key, conn);
                        self.send_to_store(StoreOp::Detach { key });
                    }
                }
            }
        }
    }

    fn send_to_store(&mut self, op: StoreOp) {
        let answered = matches!(
            op,
            StoreOp::Accept { .. } | StoreOp::Receipt { .. } | StoreOp::Attach { .. }
        );
        if self.store.send(op).is_err() {
            log::error!("the store has stopped");
        } else if answered {
            self.in_flight += 1;
        }
    }

    /// Checks the session id and takes the client's place in the table;
    /// the 9001 SUCCESS follows when the store has the client's backlog.
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
        let Some(conn) = self.conns.get(&conn_id) else {
            return Err(Reject::new(Status::Failed, "connection is closing"));
        };
        let handle = conn.handle.clone();
        let mine = self.clients.entry(key.user.clone()).or_default();
        let replaced = mine.iter().position(|(name, _)| *name == key.client);
        if replaced.is_none() && mine.len() >= self.config.max_clients_per_user {
            let max = self.config.max_clients_per_user;
            return Err(Reject::new(
                Status::Failed,
                format!("user already has {max} clients connected"),
            ));
        }
        if let Some(i) = replaced {
            let (_, old) = mine.swap_remove(i);
            if let Some(old) = self.conns.get_mut(&old) {
                old.client = None;
                old.attached = false;
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
        let user = key.user.clone();
        self.send_to_store(StoreOp::Attach {
            conn: conn_id,
            key,
            register_id: msg.id,
        });
        Ok(user)
    }

    /// A message from a connection that was registered when its reader
    /// checked it, but has since been replaced or closed as slow.
    fn unregistered(&mut self, conn_id: ConnId, id: &str, now: u64) -> Flow {
        let why = "this connection is no longer registered";
        self.answer(conn_id, id, "", Status::SessionError, why, now);
        Flow::Continue
    }

    fn closed(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        if let Some(key) = conn.client {
            self.unlist(&key, conn_id);
            self.send_to_store(StoreOp::Detach { key });
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

    fn attached_conns(&self, user: &UserId) -> Vec<ConnId> {
        let conns = self
            .clients
            .get(user)
            .into_iter()
            .flatten()
            .map(|(_, c)| *c);
        conns
            .filter(|c| self.conns.get(c).is_some_and(|c| c.attached))
            .collect()
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
        let counts = item.counts();
        if counts && shared.queued.load(Ordering::Acquire) >= self.config.send_queue {
            log::warn!(
                "conn {conn_id} ({}) is not reading: closing as slow",
                shared.peer
            );
            close(&conn.handle, 1008, "slow");
            conn.attached = false;
            if let Some(key) = conn.client.take() {
                self.unlist(&key, conn_id);
                self.send_to_store(StoreOp::Detach { key });
            }
            return;
        }
        if counts {
            shared.queued.fetch_add(1, Ordering::AcqRel);
        }
        if conn.handle.out.send(item).is_err() && counts {
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

/// The frames an outbound item carries.
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
    use crate::protocol::{Receipt, Text};
    use crate::store::{Store, StoreLimits};
    use crossbeam_channel::{Receiver, bounded, unbounded};
    use serde_json::Value;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

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
                if item.counts() {
                    self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                }
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

    /// A router with a real store on a temporary SQLite file; `handle`
    /// waits for the store's answers, so each step is complete on return.
    struct Rig {
        router: Router,
        done: Receiver<Dones>,
        store: Option<Store>,
        dir: PathBuf,
    }

    impl Rig {
        fn handle(&mut self, ev: Event, now: u64) -> Flow {
            let flow = self.router.handle(ev, now);
            while self.router.in_flight() > 0 {
                let ds = self
                    .done
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the store answers");
                for d in ds {
                    self.router.done(d, now);
                }
            }
            flow
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            if let Some(s) = self.store.take() {
                s.close();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn config() -> RouterConfig {
        RouterConfig {
            session_ttl_ms: 60_000,
            session_ids_per_s: 1000.0,
            max_clients_per_user: 2,
            send_queue: 8,
        }
    }

    fn rig(config: RouterConfig) -> Rig {
        let dir = std::env::temp_dir().join(format!("edgeim-router-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let limits = StoreLimits {
            offline_per_user: 100,
            retention_ms: u64::MAX / 2,
            forget_client_ms: u64::MAX / 2,
        };
        let opened = Store::open(&dir.join("edgeim.db"), limits).unwrap();
        let router = Router::new(config, opened.store.sender());
        Rig {
            router,
            done: opened.done,
            store: Some(opened.store),
            dir,
        }
    }

    fn router() -> Rig {
        rig(config())
    }

    fn open(r: &mut Rig, id: ConnId) -> Peer {
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

    fn session(r: &mut Rig, user: &str, client: &str, now: u64) -> String {
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
        r: &mut Rig,
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

    fn online(r: &mut Rig, user: &str, client: &str, id: ConnId) -> Peer {
        let p = open(r, id);
        let sid = session(r, user, client, NOW);
        register(r, id, user, &sid, NOW).unwrap();
        let Ok(Outbound::Answer(first)) = p.out.try_recv() else {
            panic!("no register answer")
        };
        assert_eq!(
            serde_json::from_str::<Value>(&first).unwrap()["type"],
            9001,
            "register answer comes first"
        );
        p
    }

    fn send(r: &mut Rig, conn: ConnId, id: &str, to: &[&str]) {
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
        let mut r = rig(RouterConfig {
            session_ids_per_s: 1.0,
            ..config()
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

    /// The issue-5 fanout aim: one text to 100 online recipients is
    /// serialised once, and every recipient's writer gets the same bytes.
    #[test]
    fn a_text_to_a_hundred_is_serialised_once_for_all_of_them() {
        let mut r = router();
        let _alice = online(&mut r, "alice", "web", 1);
        let names: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
        let peers: Vec<Peer> = (0..100)
            .map(|i| online(&mut r, &names[i], "web", 10 + i as ConnId))
            .collect();
        let to: Vec<&str> = names.iter().map(String::as_str).collect();
        send(&mut r, 1, "wide", &to);
        let frames: Vec<Utf8Bytes> = peers
            .iter()
            .map(|p| match p.out.try_recv() {
                Ok(Outbound::Frame(f)) => f,
                _ => panic!("a recipient got nothing"),
            })
            .collect();
        let first = frames[0].as_str().as_ptr();
        assert!(
            frames.iter().all(|f| f.as_str().as_ptr() == first),
            "each recipient must share one serialised frame"
        );
        assert!(frames[0].as_str().contains("\"id\":\"wide\""));
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
