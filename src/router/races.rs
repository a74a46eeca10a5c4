//! Races between a connection and the store's commit, staged one step at
//! a time against a fake store: the test holds the store's end of the
//! channel and writes the store's answers itself.

use std::sync::Arc;

use crossbeam_channel::{Receiver, bounded, unbounded};
use serde_json::Value;

use super::Router;
use super::tests::{NOW, Peer, config, status_code};
use crate::events::{ConnHandle, ConnId, ConnShared, Ctrl, Done, Event, StoreOp};
use crate::store::StoredMessage;
use crate::wire::ids::{ClientName, To, UserId};
use crate::wire::parse::{Register, Request, Text};
use crate::wire::{Reject, Status};

/// A router whose store is the test: shared with the presence tests
/// (`announce.rs`).
pub(super) struct Fake {
    pub(super) router: Router,
    ops: Receiver<StoreOp>,
}

impl Fake {
    pub(super) fn new() -> Fake {
        let (tx, ops) = unbounded();
        Fake {
            router: Router::new(config(), tx),
            ops,
        }
    }

    /// Handles one event; returns the ops it sent to the store.
    pub(super) fn handle(&mut self, ev: Event) -> Vec<StoreOp> {
        self.router.handle(ev, NOW);
        self.ops.try_iter().collect()
    }

    pub(super) fn open(&mut self, id: ConnId) -> Peer {
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
        self.register_asking(conn, user, client, false)
    }

    /// [`Fake::register`], asking for presence or not.
    pub(super) fn register_asking(
        &mut self,
        conn: ConnId,
        user: &str,
        client: &str,
        presence: bool,
    ) -> StoreOp {
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
            presence,
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
    pub(super) fn attached(&mut self, op: StoreOp, backlog: Result<Vec<StoredMessage>, Reject>) {
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
                result: backlog.map(|messages| crate::store::Page {
                    messages,
                    last_seq: 0,
                    more: false,
                }),
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
        seq: 1,
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
            to: To::Users(vec![UserId::parse("bob").unwrap()]),
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
