//! Presence (PROTOCOL.md section 11) against the real binary: who asked
//! gets a 3001 snapshot right after its register's 9001, then one 3001 per
//! change (coalesced), listing only what changed; nobody else ever gets
//! one; 3001s are not stored, not redelivered, and never close anyone.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How soon a change must show at a watcher: the browser's dot turns
/// green (or grey) within 2 s of a login (or logout).
const SHOWS_WITHIN: Duration = Duration::from_secs(2);

/// Opens the WebSocket and registers `user` as `client` with `body` as
/// its RegisterBody (the session id is added); asserts SUCCESS.
fn register_with(srv: &TestServer, token: &str, user: &str, client: &str, body: Value) -> Client {
    let mut body = body;
    body["sessionId"] = json!(srv.session_id_with(token, client));
    let mut c = Client::open(&srv.ws, user);
    c.send_json(
        json!({"id": "reg", "type": 1000, "isSystem": false, "from": user,
        "to": "SYSTEM", "body": body.to_string()}),
    );
    c.assert_registered(client);
    c
}

/// A client that asked for presence.
fn watcher(srv: &TestServer, user: &str, client: &str) -> Client {
    register_with(
        srv,
        &srv.token(user),
        user,
        client,
        json!({"presence": true}),
    )
}

/// The body of the next message, which must be a 3001 to `c`'s user;
/// waits at most the harness's read timeout.
fn next_presence(c: &mut Client) -> Value {
    let m = c.next_message();
    assert_eq!(m["type"], 3001, "{}: expected a 3001, got {m}", c.user);
    assert_eq!(m["isSystem"], true, "{m}");
    assert_eq!(m["from"], "SYSTEM", "{m}");
    assert_eq!(m["to"].as_str(), Some(c.user.as_str()), "{m}");
    assert!(m["timestamp"].as_i64().is_some(), "{m}");
    assert!(!m["id"].as_str().unwrap_or_default().is_empty(), "{m}");
    serde_json::from_str(m["body"].as_str().expect("a string body")).expect("a JSON body")
}

/// The users a 3001 body lists under `key`.
fn listed(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not a list: {body}"))
        .iter()
        .map(|u| u.as_str().expect("a user id").to_string())
        .collect()
}

#[test]
fn the_first_3001_comes_after_the_9001_before_a_backlog_and_lists_everyone_online_itself_too() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "web");
    let _carol = srv.client("carol", "phone");
    // A text waits for alice: her backlog comes after the 3001.
    send_ok(&mut bob, "waiting", "alice", "for later");
    let mut alice = watcher(&srv, "alice", "web");
    // The harness keeps what came while it waited for the 9001: the 3001
    // is the next frame after it.
    let body = next_presence(&mut alice);
    assert_eq!(
        body,
        json!({"online": ["alice", "bob", "carol"], "offline": []})
    );
    expect_text(&mut alice, "waiting");
}

#[test]
fn a_later_login_appears_in_online_within_2_s() {
    let srv = TestServer::start();
    let mut alice = watcher(&srv, "alice", "web");
    assert_eq!(listed(&next_presence(&mut alice), "online"), ["alice"]);
    let token = srv.token("bob");
    let started = Instant::now();
    let _bob = srv.client_with(&token, "bob", "web");
    let body = next_presence(&mut alice);
    let took = started.elapsed();
    assert_eq!(body, json!({"online": ["bob"], "offline": []}));
    assert!(took < SHOWS_WITHIN, "bob showed online after {took:?}");
}

#[test]
fn a_logout_or_a_closed_connection_appears_in_offline_within_2_s() {
    let srv = TestServer::start();
    let bob = srv.client("bob", "web");
    let carol = srv.client("carol", "web");
    let mut alice = watcher(&srv, "alice", "web");
    assert_eq!(
        listed(&next_presence(&mut alice), "online"),
        ["alice", "bob", "carol"]
    );
    let started = Instant::now();
    bob.hang_up();
    assert_eq!(
        next_presence(&mut alice),
        json!({"online": [], "offline": ["bob"]})
    );
    assert!(started.elapsed() < SHOWS_WITHIN, "{:?}", started.elapsed());
    // A connection that just drops (no Close) counts too.
    let started = Instant::now();
    let _ = carol.ws.get_ref().tcp().shutdown(std::net::Shutdown::Both);
    assert_eq!(
        next_presence(&mut alice),
        json!({"online": [], "offline": ["carol"]})
    );
    assert!(started.elapsed() < SHOWS_WITHIN, "{:?}", started.elapsed());
}

#[test]
fn a_user_is_online_while_any_of_its_clients_is_registered() {
    let srv = TestServer::start();
    let token = srv.token("bob");
    let _bob_web = srv.client_with(&token, "bob", "web");
    let mut alice = watcher(&srv, "alice", "web");
    next_presence(&mut alice);
    // bob's second client comes and goes: bob was online all along.
    let phone = srv.client_with(&token, "bob", "phone");
    phone.hang_up();
    // Then carol comes: the next 3001 is about her alone.
    let _carol = srv.client("carol", "web");
    assert_eq!(
        next_presence(&mut alice),
        json!({"online": ["carol"], "offline": []})
    );
}

#[test]
fn a_client_that_did_not_ask_for_presence_never_gets_a_3001() {
    let srv = TestServer::start();
    let token = srv.token("bob");
    // Absent, false, or anything but true: no presence, and no error.
    let mut bobs = vec![
        srv.client_with(&token, "bob", "web"),
        register_with(&srv, &token, "bob", "phone", json!({"presence": false})),
        register_with(&srv, &token, "bob", "tab", json!({"presence": "true"})),
    ];
    let mut alice = watcher(&srv, "alice", "web");
    next_presence(&mut alice);
    let carol = srv.client("carol", "web");
    assert_eq!(listed(&next_presence(&mut alice), "online"), ["carol"]);
    carol.hang_up();
    assert_eq!(listed(&next_presence(&mut alice), "offline"), ["carol"]);
    // Each flush that told alice would have queued bob's 3001s by now:
    // the first message each of bob's clients gets is a marker sent now.
    send_ok(&mut bobs[0], "marker", "bob", "marker");
    for b in &mut bobs {
        expect_text(b, "marker");
    }
}

#[test]
fn a_client_may_not_send_a_3001() {
    let srv = TestServer::start();
    let mut alice = watcher(&srv, "alice", "web");
    next_presence(&mut alice);
    alice.send_json(
        json!({"id": "p1", "type": 3001, "isSystem": false, "from": "alice",
        "to": "bob", "body": "{\"online\":[\"alice\"],\"offline\":[]}"}),
    );
    let (code, msg) = alice.status("p1");
    assert_eq!(code, 403, "{msg}");
    assert!(msg.contains("3001") && msg.contains("server"), "{msg}");
}

#[test]
fn a_3001_is_not_stored_so_a_register_again_gets_a_fresh_snapshot_and_nothing_older() {
    let srv = TestServer::start();
    let token = srv.token("alice");
    let presence = json!({"presence": true});
    let mut alice = register_with(&srv, &token, "alice", "web", presence.clone());
    next_presence(&mut alice);
    let bob = srv.client("bob", "web");
    assert_eq!(listed(&next_presence(&mut alice), "online"), ["bob"]);
    alice.hang_up();
    bob.hang_up();
    // Back, as the same client: the 9001, the snapshot of now, and no
    // 3001 of before (it would come before a marker sent now).
    let mut alice = register_with(&srv, &token, "alice", "web", presence);
    assert_eq!(
        next_presence(&mut alice),
        json!({"online": ["alice"], "offline": []})
    );
    expect_nothing_before(&mut alice, "marker-1");
    // (The marker is a text: acknowledged, so that it is not redelivered.)
    ack_expect(&mut alice, "marker-1", "alice", 200);
    // Without presence this time: no 3001 at all.
    alice.hang_up();
    let mut alice = register_with(&srv, &token, "alice", "web", json!({}));
    expect_nothing_before(&mut alice, "marker-2");
}

#[test]
fn a_watcher_not_reading_while_others_churn_is_not_closed_and_each_3001_is_an_exact_change() {
    let srv = TestServer::start();
    let mut alice = watcher(&srv, "alice", "web");
    let mut online: BTreeSet<String> = listed(&next_presence(&mut alice), "online")
        .into_iter()
        .collect();
    // alice reads nothing while bob and carol come and go over several
    // windows.
    let bob = srv.token("bob");
    let carol = srv.token("carol");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let b = srv.client_with(&bob, "bob", "web");
        let c = srv.client_with(&carol, "carol", "web");
        b.hang_up();
        c.hang_up();
    }
    let _dave = srv.client("dave", "web");
    // alice still works, and the 3001s she got, applied in order, take
    // her from her snapshot to who is online now: each one only adds who
    // was offline and removes who was online.
    send_ok(&mut alice, "marker", "alice", "marker");
    let want: BTreeSet<String> = ["alice", "dave"].map(String::from).into();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut frames = 0;
    while online != want {
        assert!(Instant::now() < deadline, "alice ended with {online:?}");
        let m = alice.next_message();
        if m["type"] == 2001 {
            continue;
        }
        assert_eq!(m["type"], 3001, "{m}");
        frames += 1;
        let body: Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
        for u in listed(&body, "online") {
            assert!(online.insert(u.clone()), "{u} was online already: {body}");
        }
        for u in listed(&body, "offline") {
            assert!(online.remove(&u), "{u} was not online: {body}");
        }
    }
    assert!(frames >= 1);
    // Coalesced: at most one 3001 per window, not one per login.
    let windows = started.elapsed().as_millis() / 500 + 2;
    assert!(
        (frames as u128) <= windows,
        "{frames} 3001s in {windows} windows"
    );
}
