//! The router's decisions, driven step by step: against a real store on a
//! temporary SQLite file, and against a fake store whose answers the test
//! writes itself, so that races can be staged.

use super::*;
use crate::events::{ConnShared, Done, Outbound};
use crate::store::StoredMessage;
use crate::store::{Store, StoreLimits};
use crate::wire::ids::ClientName;
use crate::wire::parse::{Receipt, Text};
use crossbeam_channel::{Receiver, bounded, unbounded};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::Utf8Bytes;

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

fn register(r: &mut Rig, conn: ConnId, from: &str, sid: &str, now: u64) -> Result<UserId, Reject> {
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

// ---- against a fake store: the test holds the store's end of the channel
// and writes its answers, so the races between a connection and the
// store's commit can be staged one step at a time.

struct Fake {
    router: Router,
    ops: Receiver<StoreOp>,
}

impl Fake {
    fn new() -> Fake {
        let (tx, ops) = unbounded();
        Fake {
            router: Router::new(config(), tx),
            ops,
        }
    }

    /// Handles one event; returns the ops it sent to the store.
    fn handle(&mut self, ev: Event) -> Vec<StoreOp> {
        self.router.handle(ev, NOW);
        self.ops.try_iter().collect()
    }

    fn open(&mut self, id: ConnId) -> Peer {
        let (out_tx, out) = unbounded();
        let (ctrl_tx, ctrl) = bounded(16);
        let shared = Arc::new(ConnShared::new(id, "127.0.0.1:1".parse().unwrap(), None));
        self.handle(Event::Opened(ConnHandle {
            shared: shared.clone(),
            out: out_tx,
            ctrl: ctrl_tx,
        }));
        Peer {
            id,
            out,
            ctrl,
            shared,
        }
    }

    /// Registers `conn` as user/client; returns the Attach op the router
    /// sent (not answered yet).
    fn register(&mut self, conn: ConnId, user: &str, client: &str) -> StoreOp {
        let (tx, rx) = bounded(1);
        self.handle(Event::IssueSession {
            user: UserId::parse(user).unwrap(),
            client: ClientName::parse(client).unwrap(),
            reply: tx,
        });
        let sid = rx.recv().unwrap().expect("a session id");
        let (tx, rx) = bounded(1);
        let msg = Register {
            id: "reg".into(),
            from: user.into(),
            session_id: sid,
        };
        let mut ops = self.handle(Event::Register {
            conn,
            msg,
            refused: None,
            reply: tx,
        });
        rx.recv().unwrap().expect("registered");
        assert_eq!(ops.len(), 1, "one Attach");
        ops.remove(0)
    }

    /// The store's answer to an Attach: committed, with `backlog`.
    fn attached(&mut self, op: StoreOp, backlog: Result<Vec<StoredMessage>, Reject>) {
        let StoreOp::Attach {
            conn,
            key,
            register_id,
        } = op
        else {
            panic!("not an Attach")
        };
        self.router.done(
            Done::Attached {
                conn,
                key,
                register_id,
                result: backlog,
            },
            NOW,
        );
    }

    fn check_rule(&self) {
        self.router.table.check_rule();
    }
}

fn stored(id: &str, from: &str, to: &str) -> StoredMessage {
    StoredMessage {
        origin: from.into(),
        id: id.into(),
        recipients: to.into(),
        body: "hi".into(),
        ts: NOW,
    }
}

#[test]
fn a_done_after_closed_sends_nothing_and_keeps_the_table_whole() {
    let mut f = Fake::new();
    let bob = f.open(1);
    let attach = f.register(1, "bob", "web");
    let ops = f.handle(Event::Closed { conn: 1 });
    assert!(
        matches!(ops.as_slice(), [StoreOp::Detach { .. }]),
        "a registered client that closes is detached"
    );
    f.attached(attach, Ok(vec![stored("m1", "alice", "bob")]));
    assert!(bob.frames().is_empty(), "nothing for a closed connection");
    f.check_rule();
    assert!(f.router.table.online().is_empty());
}

#[test]
fn a_done_after_a_replace_goes_to_the_new_connection_only() {
    let mut f = Fake::new();
    let old = f.open(1);
    let first = f.register(1, "bob", "web");
    let new = f.open(2);
    let second = f.register(2, "bob", "web");
    assert_eq!(old.closed_with(), Some(4000));
    f.attached(first, Ok(vec![stored("m1", "alice", "bob")]));
    assert!(
        old.frames().is_empty(),
        "the replaced connection gets nothing"
    );
    assert!(
        new.frames().is_empty(),
        "nor the new one, from the old Attach"
    );
    f.attached(second, Ok(vec![stored("m1", "alice", "bob")]));
    let got = new.frames();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0]["type"].as_i64(), status_code(&got[0])),
        (Some(9001), 200)
    );
    assert_eq!(got[1]["id"], "m1");
    f.check_rule();
}

#[test]
fn a_failed_attach_answers_then_closes_and_detaches() {
    let mut f = Fake::new();
    let bob = f.open(1);
    let attach = f.register(1, "bob", "web");
    f.attached(attach, Err(Reject::new(Status::Failed, "storage failure")));
    let ctrl: Vec<Ctrl> = bob.ctrl.try_iter().collect();
    match ctrl.as_slice() {
        [Ctrl::Frame(answer), Ctrl::Close(1008, _)] => {
            let v: Value = serde_json::from_str(answer).unwrap();
            assert_eq!((v["id"].as_str(), status_code(&v)), (Some("reg"), 400));
        }
        _ => panic!("expected the 9001 then Close 1008 on the control queue"),
    }
    let ops: Vec<StoreOp> = f.ops.try_iter().collect();
    assert!(matches!(ops.as_slice(), [StoreOp::Detach { .. }]));
    assert!(f.router.table.online().is_empty(), "no longer online");
    f.check_rule();
    // Its reader ends later: nothing more to detach.
    assert!(f.handle(Event::Closed { conn: 1 }).is_empty());
}

#[test]
fn an_accepted_text_whose_sender_closed_meanwhile_still_reaches_its_recipient() {
    let mut f = Fake::new();
    f.open(1);
    let a = f.register(1, "alice", "web");
    f.attached(a, Ok(Vec::new()));
    let bob = f.open(2);
    let b = f.register(2, "bob", "web");
    f.attached(b, Ok(Vec::new()));
    bob.frames();
    let mut ops = f.handle(Event::Request {
        conn: 1,
        req: Request::Text(Text {
            id: "m1".into(),
            to: vec![UserId::parse("bob").unwrap()],
            body: "hi".into(),
        }),
    });
    f.handle(Event::Closed { conn: 1 });
    let Some(StoreOp::Accept {
        sender, reply_to, ..
    }) = ops.pop()
    else {
        panic!("not an Accept")
    };
    let targets = vec![crate::store::Target {
        user: UserId::parse("bob").unwrap(),
        copy: false,
    }];
    f.router.done(
        Done::Accepted {
            sender,
            id: "m1".into(),
            result: Ok(crate::store::Accepted::New {
                message: stored("m1", "alice", "bob"),
                targets,
            }),
            reply_to,
        },
        NOW,
    );
    assert_eq!(bob.texts(), ["m1"]);
    f.check_rule();
}
