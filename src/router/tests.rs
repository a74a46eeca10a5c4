//! The router's decisions, driven step by step against a real store on a
//! temporary SQLite file (races against a fake store: `races.rs`).

use super::*;
use crate::clock::Now;
use crate::conn::queue::Released;
use crate::events::{ConnShared, Outbound};
use crate::store::{Store, StoreLimits};
use crate::wire::ids::{ClientName, To};
use crate::wire::parse::{Receipt, Text};
use crossbeam_channel::{Receiver, bounded, unbounded};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::Utf8Bytes;

pub(super) const NOW: u64 = 1_000_000;

pub(super) struct Peer {
    pub(super) id: ConnId,
    pub(super) out: Receiver<Outbound>,
    pub(super) ctrl: Receiver<Ctrl>,
    pub(super) shared: Arc<ConnShared>,
}

impl Peer {
    /// Everything queued for this connection, as JSON.
    pub(super) fn frames(&self) -> Vec<Value> {
        let mut v = Vec::new();
        while let Ok(item) = self.out.try_recv() {
            let released = Released::of(&item);
            self.shared.queued.release(released);
            v.extend(
                frames_of(item)
                    .iter()
                    .map(|f| serde_json::from_str(f).unwrap()),
            );
        }
        v
    }
    pub(super) fn texts(&self) -> Vec<String> {
        self.frames()
            .into_iter()
            .filter(|f| f["type"] == 2001)
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    }
    pub(super) fn closed_with(&self) -> Option<u16> {
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
    fn handle(&mut self, ev: Event, now: impl Into<Now>) -> Flow {
        let now = now.into();
        let flow = self.router.handle(ev, now);
        while self.router.in_flight() > 0 {
            let ds = self
                .done
                .recv_timeout(Duration::from_secs(10))
                .expect("the store answers");
            for d in ds {
                self.router.done(d, now.wall_ms);
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

pub(super) fn config() -> RouterConfig {
    RouterConfig {
        watchdog: None,
        session_ttl_ms: 60_000,
        session_ids_per_s: 1000.0,
        max_clients_per_user: 2,
        // Raised to deliver::MIN_SEND_QUEUE (1 MiB) by the router.
        send_queue: 8,
    }
}

fn rig(config: RouterConfig) -> Rig {
    let dir = std::env::temp_dir().join(format!("edgeim-router-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let limits = StoreLimits {
        offline_per_user: 10_000,
        retention_ms: u64::MAX / 2,
        forget_client_ms: u64::MAX / 2,
        commit_window: std::time::Duration::ZERO,
        groups: crate::store::groups::GroupLimits {
            max_members: 500,
            max_groups_per_user: 100,
        },
        known: crate::store::Known::everyone(),
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
        presence: false,
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

/// The ids of texts queued for `p`, its whole backlog included: after each
/// page, the test plays its writer and says it is written (Drained).
fn backlog(r: &mut Rig, p: &Peer) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..1000 {
        let got = p.texts();
        if got.is_empty() {
            break;
        }
        ids.extend(got);
        r.handle(Event::Drained { conn: p.id }, NOW);
    }
    ids
}

fn send(r: &mut Rig, conn: ConnId, id: &str, to: &[&str]) {
    send_body(r, conn, id, to, "hi");
}

fn send_body(r: &mut Rig, conn: ConnId, id: &str, to: &[&str], body: &str) {
    let to = To::Users(to.iter().map(|u| UserId::parse(u).unwrap()).collect());
    r.handle(
        Event::Request {
            conn,
            req: Request::Text(Text {
                id: id.into(),
                to,
                body: body.into(),
            }),
        },
        NOW,
    );
}

pub(super) fn status_code(frame: &Value) -> i64 {
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
        presence: false,
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
    // send_queue is a byte budget (at least MIN_SEND_QUEUE, 1 MiB): twenty
    // texts of 64 KiB are more than bob's writer may hold.
    let big = "b".repeat(64 * 1024);
    for i in 0..20 {
        send_body(&mut r, 1, &format!("m{i}"), &["bob"], &big);
        send(&mut r, 3, &format!("c{i}"), &["alice"]);
        alice.frames();
        carol.frames();
    }
    assert_eq!(bob.closed_with(), Some(1008));
    let queued = bob.shared.queued.all();
    assert!(
        (super::deliver::MIN_SEND_QUEUE..super::deliver::MIN_SEND_QUEUE + 70 * 1024)
            .contains(&queued),
        "bob was closed with {queued} bytes waiting"
    );
    // Bob comes back and gets every message, in order.
    let back = online(&mut r, "bob", "web", 4);
    let ids = backlog(&mut r, &back);
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

/// Sends a reload with these limits and users; the connections closed.
fn reload(r: &mut Rig, session_ids_per_s: f64, max_clients: usize, users: &[&str]) -> usize {
    let (tx, rx) = bounded(1);
    let users = users.iter().map(|u| UserId::parse(u).unwrap()).collect();
    r.handle(
        Event::Reload(crate::events::Reload {
            session_ids_per_s,
            max_clients_per_user: max_clients,
            users,
            reply: tx,
        }),
        NOW,
    );
    rx.recv().unwrap()
}

#[test]
fn a_reload_closes_the_connections_of_removed_users_and_only_theirs() {
    let mut r = router();
    let a = online(&mut r, "alice", "web", 1);
    let a2 = online(&mut r, "alice", "phone", 2);
    let b = online(&mut r, "bob", "web", 3);
    let idle = open(&mut r, 4);
    let pending = session(&mut r, "alice", "tablet", NOW);
    assert_eq!(reload(&mut r, 1000.0, 2, &["bob"]), 2);
    assert_eq!(a.closed_with(), Some(1008));
    assert_eq!(a2.closed_with(), Some(1008));
    assert_eq!(b.closed_with(), None);
    assert_eq!(idle.closed_with(), None);
    // Gone from who is online at once, and nothing more is delivered.
    let (tx, rx) = bounded(1);
    r.handle(Event::Online { reply: tx }, NOW);
    let names: Vec<String> = rx
        .recv()
        .unwrap()
        .iter()
        .map(|(u, _)| u.to_string())
        .collect();
    assert_eq!(names, ["bob"]);
    send(&mut r, 3, "m1", &["alice", "bob"]);
    assert!(a.texts().is_empty());
    // A session id issued before the removal is no good any more.
    let c = open(&mut r, 5);
    assert_eq!(
        register(&mut r, c.id, "alice", &pending, NOW)
            .unwrap_err()
            .status,
        Status::SessionError
    );
}

#[test]
fn a_reload_sets_the_client_limit_for_the_registers_after_it() {
    let mut r = router();
    let _web = online(&mut r, "alice", "web", 1);
    let _phone = online(&mut r, "alice", "phone", 2);
    // Raised: a third client now fits.
    assert_eq!(reload(&mut r, 1000.0, 3, &["alice"]), 0);
    let _tablet = online(&mut r, "alice", "tablet", 3);
    // Lowered: nobody is closed, but no new client fits.
    assert_eq!(reload(&mut r, 1000.0, 1, &["alice"]), 0);
    let fourth = open(&mut r, 4);
    let sid = session(&mut r, "alice", "watch", NOW);
    let refused = register(&mut r, fourth.id, "alice", &sid, NOW).unwrap_err();
    assert_eq!(refused.status, Status::Failed);
    assert!(refused.msg.contains("1 clients"), "{}", refused.msg);
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

#[test]
fn a_big_backlog_comes_in_pages_in_order_and_live_texts_wait_behind_it() {
    use crate::store::{PAGE_BYTES, PAGE_FRAMES};
    let mut r = router();
    let alice = online(&mut r, "alice", "web", 1);
    for i in 0..600 {
        send(&mut r, 1, &format!("m{i}"), &["bob"]);
    }
    alice.frames();
    let bob = online(&mut r, "bob", "web", 2);
    let first = bob.texts();
    assert_eq!(first.len(), PAGE_FRAMES, "one page at a time");
    // A text sent while the backlog is being paged is not delivered live
    // (it would overtake the backlog): it comes in a later page.
    send(&mut r, 1, "live", &["bob"]);
    assert!(bob.texts().is_empty());
    r.handle(Event::Drained { conn: 2 }, NOW);
    let mut ids = first;
    ids.extend(backlog(&mut r, &bob));
    let want: Vec<String> = (0..600)
        .map(|i| format!("m{i}"))
        .chain(["live".to_string()])
        .collect();
    assert_eq!(ids, want);
    // Through: live texts flow again, and a stray Drained asks for nothing.
    r.handle(Event::Drained { conn: 2 }, NOW);
    send(&mut r, 1, "after", &["bob"]);
    assert_eq!(bob.texts(), ["after"]);
    r.router.table.check_rule();
    // Pages are also bounded in bytes.
    let big = "x".repeat(PAGE_BYTES / 4);
    for i in 0..8 {
        send_body(&mut r, 1, &format!("b{i}"), &["carol"], &big);
    }
    let carol = online(&mut r, "carol", "web", 3);
    assert_eq!(carol.texts().len(), 4, "about PAGE_BYTES of bodies");
    r.handle(Event::Drained { conn: 3 }, NOW);
    assert_eq!(carol.texts().len(), 4);
}

#[test]
fn session_ids_expire_by_the_monotonic_clock_not_the_wall_clock() {
    let mut r = router();
    open(&mut r, 1);
    open(&mut r, 2);
    let day = 24 * 3600 * 1000;
    let issue = |r: &mut Rig, at: Now| {
        let (tx, rx) = bounded(1);
        r.handle(
            Event::IssueSession {
                user: UserId::parse("alice").unwrap(),
                client: ClientName::parse("web").unwrap(),
                reply: tx,
            },
            at,
        );
        rx.recv().unwrap().expect("an id")
    };
    let register_at = |r: &mut Rig, conn: ConnId, sid: String, at: Now| {
        let (tx, rx) = bounded(1);
        let msg = Register {
            id: "reg".into(),
            from: "alice".into(),
            session_id: sid,
            presence: false,
        };
        let ev = Event::Register {
            conn,
            msg,
            refused: None,
            reply: tx,
        };
        r.handle(ev, at);
        rx.recv().unwrap().map(|u| u.to_string())
    };
    let sid = issue(
        &mut r,
        Now {
            wall_ms: NOW,
            mono_ms: 0,
        },
    );
    // NTP steps the wall clock ten days ahead; one second has passed.
    let later = Now {
        wall_ms: NOW + 10 * day,
        mono_ms: 1_000,
    };
    assert_eq!(register_at(&mut r, 1, sid, later), Ok("alice".into()));
    // A wall clock stepped back keeps no id alive past its 60 s.
    let sid = issue(
        &mut r,
        Now {
            wall_ms: NOW,
            mono_ms: 0,
        },
    );
    let stale = Now {
        wall_ms: NOW / 2,
        mono_ms: 60_000,
    };
    assert_eq!(
        register_at(&mut r, 2, sid, stale).unwrap_err().status,
        Status::SessionError
    );
}
