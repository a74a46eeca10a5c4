//! The durable store (issue 3) against the whole server: PROTOCOL.md
//! section 7 and the history endpoint of section 9 hold across a restart of
//! an in-process server on the same data dir; logins survive it; the
//! database file, a garbage one, and `edgeim backup` with a restore.
//!
//! The SQL-level rules (retention and forget purges with explicit clocks,
//! migrations, a newer schema, an empty file) are unit tests in
//! src/store/db.rs; these tests go through WebSocket and HTTP only.
//!
//! A restart here is `TestServer::restart`: the server is shut down as by
//! SIGTERM and started again with the same config. Clients of the old
//! server are dropped before it (their TCP connections end), so the shutdown
//! does not wait for them.

mod common;
use common::*;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use serde_json::{Value, json};

const API_KEY: &str = "0123456789abcdef-test";

// ------------------------------------------------------------ clients

/// A registered client (the harness keeps what it reads while waiting for
/// a 9001, so nothing is lost between answers).
type Dev = Client;

/// Logs in and registers `user` as `client`.
fn dev(srv: &TestServer, user: &str, client: &str) -> Dev {
    srv.client(user, client)
}

/// A session id for `client` from an app token.
fn session_with_token(srv: &TestServer, token: &str, client: &str) -> (u16, Value) {
    get(
        &format!("{}/app/websocket/client/login/{client}", srv.http),
        &[("token", token)],
    )
}

/// Registers `user`/`client` once and hangs up: from now on the server
/// keeps what this client has not acknowledged.
fn known_client(srv: &TestServer, user: &str, client: &str) {
    drop(dev(srv, user, client));
}

/// Sends a text and asserts the answer's code; returns the msg.
fn send_expect(c: &mut Dev, id: &str, to: &str, code: i64) -> String {
    c.text(id, to, id);
    let (got, msg) = c.status(id);
    assert_eq!(got, code, "{}: text {id} to {to:?}: {msg}", c.user);
    msg
}

/// The next message that is not a 9001 must be a forwarded receipt.
fn expect_receipt(c: &mut Dev, id: &str, from: &str) {
    let r = c.next_message();
    assert_eq!(
        (r["type"].as_i64(), r["id"].as_str(), r["from"].as_str()),
        (Some(9101), Some(id), Some(from)),
        "{}: expected the receipt for {id} from {from}, got {r}",
        c.user
    );
}

// --------------------------------------------------------------- http

fn browser_cookie(srv: &TestServer, user: &str) -> String {
    let resp = post_raw(
        &format!("{}/api/login", srv.http),
        &[("Content-Type", "application/json")],
        &json!({"username": user, "password": password(user)}).to_string(),
    );
    assert_eq!(resp.status, 200, "browser login {user}");
    let set = resp.header("set-cookie").expect("Set-Cookie").to_string();
    let pair = set.split(';').next().unwrap_or_default().trim();
    pair.strip_prefix("edgeim_session=")
        .unwrap_or_else(|| panic!("not an edgeim_session cookie: {set}"))
        .to_string()
}

fn cookie_header(value: &str) -> String {
    format!("edgeim_session={value}")
}

fn browser_session(srv: &TestServer, cookie: &str, client: &str) -> (u16, Value) {
    get(
        &format!("{}/api/websocket/client/login/{client}", srv.http),
        &[("Cookie", &cookie_header(cookie))],
    )
}

/// GET /api/message/history?QUERY with `headers`.
fn history_raw(srv: &TestServer, headers: &[(&str, &str)], query: &str) -> (u16, Value) {
    get(
        &format!("{}/api/message/history?{query}", srv.http),
        headers,
    )
}

/// The messages of a history page asked for with an app token; asserts 200.
fn history(srv: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let (status, body) = history_raw(srv, &[("token", token)], query);
    assert_eq!(status, 200, "history?{query}: {body}");
    body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("history?{query}: no messages array: {body}"))
        .clone()
}

fn ids_of(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

fn assert_error(status: u16, body: &Value, expected: u16, what: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    assert_eq!(
        body["code"].as_u64(),
        Some(u64::from(expected)),
        "{what}: {body}"
    );
    assert!(
        body["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: msg must be a non-empty string: {body}"
    );
}

fn server_with_api_key() -> TestServer {
    TestServer::start_with(|c| c.api.key = Some(API_KEY.into()))
}

fn system_message(srv: &TestServer, to: &str, body: &str) -> String {
    let auth = format!("Bearer {API_KEY}");
    let (status, answer) = post_json(
        &format!("{}/api/system/message", srv.http),
        &[("Authorization", &auth)],
        json!({"to": to, "body": body}),
    );
    assert_eq!(status, 200, "system message: {answer}");
    answer["id"].as_str().expect("id").to_string()
}

/// Waits (bounded) until the wall clock is past `ts`, so that the next
/// message the server accepts gets a later timestamp than `ts`.
fn wait_for_clock_past(ts: i64) {
    let deadline = Instant::now() + WAIT;
    while now_ms() <= ts {
        assert!(Instant::now() < deadline, "the clock does not move");
        std::thread::yield_now();
    }
}

// ------------------------------------------------- per-client delivery

#[test]
fn a_phone_offline_while_the_web_client_acknowledges_gets_the_message_after_a_restart() {
    let mut srv = TestServer::start();
    known_client(&srv, "bob", "phone");
    let mut alice = dev(&srv, "alice", "web");
    let mut bob_web = dev(&srv, "bob", "web");
    send_ok(&mut alice, "m1", "bob", "while the phone is away");
    expect_text(&mut bob_web, "m1");
    ack_expect(&mut bob_web, "m1", "alice", 200);
    expect_receipt(&mut alice, "m1", "bob");
    drop((alice, bob_web));

    srv.restart();
    let mut bob_phone = dev(&srv, "bob", "phone");
    let m = expect_text(&mut bob_phone, "m1");
    assert_eq!(
        (m["from"].as_str(), m["body"].as_str()),
        (Some("alice"), Some("while the phone is away"))
    );
    expect_nothing_before(&mut bob_phone, "marker");
}

#[test]
fn a_new_client_name_after_a_restart_gets_only_what_no_client_acknowledged() {
    let mut srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob_web = dev(&srv, "bob", "web");
    for id in ["m1", "m2", "m3"] {
        send_ok(&mut alice, id, "bob", id);
        expect_text(&mut bob_web, id);
    }
    ack_expect(&mut bob_web, "m1", "alice", 200);
    ack_expect(&mut bob_web, "m3", "alice", 200);
    drop((alice, bob_web));

    srv.restart();
    let mut bob_tablet = dev(&srv, "bob", "tablet");
    expect_text(&mut bob_tablet, "m2");
    expect_nothing_before(&mut bob_tablet, "marker");
}

/// Opens `user`/`client`, sends its register, and, before reading the
/// answer, lets `meanwhile` send newer messages: they race the backlog.
fn register_racing(srv: &TestServer, user: &str, client: &str, meanwhile: impl FnOnce()) -> Dev {
    let sid = srv.session_id(user, client);
    let mut c = Client::registering(&srv.ws, user, &sid);
    meanwhile();
    c.assert_registered(client);
    c
}

#[test]
fn unacknowledged_messages_come_again_in_order_before_newer_ones_after_reconnect_and_restart() {
    let mut srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    for id in ["m1", "m2", "m3", "m4"] {
        send_ok(&mut alice, id, "bob", id);
    }
    for id in ["m1", "m2", "m3", "m4"] {
        expect_text(&mut bob, id);
    }
    ack_expect(&mut bob, "m1", "alice", 200);
    ack_expect(&mut bob, "m3", "alice", 200);
    drop(bob);
    send_ok(&mut alice, "m5", "bob", "while bob is away");

    // Reconnect: m6 is sent while bob's register is on its way.
    let mut bob = register_racing(&srv, "bob", "web", || alice.text("m6", "bob", "m6"));
    assert_eq!(alice.status("m6").0, 200);
    for id in ["m2", "m4", "m5", "m6"] {
        expect_text(&mut bob, id);
    }
    drop((alice, bob));

    // Restart, nothing acknowledged since: the same again, m7 after them.
    srv.restart();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = register_racing(&srv, "bob", "web", || alice.text("m7", "bob", "m7"));
    assert_eq!(alice.status("m7").0, 200);
    for id in ["m2", "m4", "m5", "m6", "m7"] {
        expect_text(&mut bob, id);
    }
    for id in ["m2", "m4", "m5", "m6", "m7"] {
        ack_expect(&mut bob, id, "alice", 200);
    }
    drop((alice, bob));

    // Everything acknowledged: nothing comes back after another restart.
    srv.restart();
    let mut bob = dev(&srv, "bob", "web");
    expect_nothing_before(&mut bob, "marker");
}

// -------------------------------------------------------------- dedup

#[test]
fn a_resend_after_a_restart_is_200_and_not_delivered_again() {
    let mut srv = TestServer::start();
    known_client(&srv, "bob", "web");
    let mut alice = dev(&srv, "alice", "web");
    send_ok(&mut alice, "d1", "bob", "first try");
    drop(alice);

    srv.restart();
    let mut alice = dev(&srv, "alice", "web");
    // Bob has not got d1 yet: the resend must not add a second copy.
    send_ok(&mut alice, "d1", "bob", "second try");
    let mut bob = dev(&srv, "bob", "web");
    let m = expect_text(&mut bob, "d1");
    assert_eq!(m["body"], "first try");
    send_ok(&mut alice, "follow1", "bob", "after the resend");
    expect_text(&mut bob, "follow1");
    ack_expect(&mut bob, "d1", "alice", 200);
    ack_expect(&mut bob, "follow1", "alice", 200);
    drop((alice, bob));

    // Acknowledged and restarted again: a resend is still known.
    srv.restart();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice, "d1", "bob", "third try");
    send_ok(&mut alice, "follow2", "bob", "after the second resend");
    expect_text(&mut bob, "follow2");
}

// ------------------------------------------------------- offline limit

#[test]
fn the_offline_limit_still_answers_407_after_a_restart_until_an_ack_makes_room() {
    let mut srv = TestServer::start_with(|c| c.limits.offline_per_user = 3);
    known_client(&srv, "bob", "web");
    let mut alice = dev(&srv, "alice", "web");
    for id in ["q1", "q2", "q3"] {
        send_ok(&mut alice, id, "bob", id);
    }
    let msg = send_expect(&mut alice, "q4", "bob", 407);
    assert!(msg.contains("bob"), "407 names the user: {msg}");
    drop(alice);

    srv.restart();
    let mut alice = dev(&srv, "alice", "web");
    let msg = send_expect(&mut alice, "q4", "bob", 407);
    assert!(msg.contains("bob"), "407 names the user: {msg}");
    let mut bob = dev(&srv, "bob", "web");
    for id in ["q1", "q2", "q3"] {
        expect_text(&mut bob, id);
    }
    ack_expect(&mut bob, "q1", "alice", 200);
    send_expect(&mut alice, "q4", "bob", 200);
    send_expect(&mut alice, "q5", "bob", 407);
    expect_text(&mut bob, "q4");
}

// ------------------------------------------------------------ receipts

#[test]
fn the_first_receipt_for_a_message_sent_before_a_restart_reaches_the_senders_clients() {
    let mut srv = TestServer::start();
    known_client(&srv, "bob", "web");
    known_client(&srv, "bob", "phone");
    let mut alice_web = dev(&srv, "alice", "web");
    let mut alice_phone = dev(&srv, "alice", "phone");
    send_ok(&mut alice_web, "m1", "bob", "hi");
    expect_text(&mut alice_phone, "m1");
    drop((alice_web, alice_phone));

    srv.restart();
    let mut alice_web = dev(&srv, "alice", "web");
    let mut alice_phone = dev(&srv, "alice", "phone");
    // The phone never acknowledged its copy: it comes again first.
    expect_text(&mut alice_phone, "m1");
    let mut bob_web = dev(&srv, "bob", "web");
    expect_text(&mut bob_web, "m1");
    ack_expect(&mut bob_web, "m1", "alice", 200);
    expect_receipt(&mut alice_web, "m1", "bob");
    expect_receipt(&mut alice_phone, "m1", "bob");
    drop((alice_web, alice_phone, bob_web));

    // After another restart bob's second client acknowledging is a repeat
    // for bob: recorded, not forwarded.
    srv.restart();
    let mut alice_web = dev(&srv, "alice", "web");
    let mut bob_phone = dev(&srv, "bob", "phone");
    expect_text(&mut bob_phone, "m1");
    ack_expect(&mut bob_phone, "m1", "alice", 200);
    send_ok(&mut bob_phone, "follow", "alice", "sent after the repeat");
    expect_text(&mut alice_web, "follow");
}

// -------------------------------------------------------------- logins

#[test]
fn app_tokens_and_browser_cookies_stay_valid_after_a_restart() {
    let mut srv = TestServer::start();
    let token = srv.token("alice");
    let cookie = browser_cookie(&srv, "bob");
    srv.restart();

    // The token registers a client.
    let alice = srv.client_with(&token, "alice", "phone");
    drop(alice);
    let (status, body) = browser_session(&srv, &cookie, "web");
    assert_eq!(status, 200, "cookie after restart: {body}");
    let (status, body) = get(
        &format!("{}/api/users", srv.http),
        &[("Cookie", &cookie_header(&cookie))],
    );
    assert_eq!(status, 200, "/api/users with the cookie: {body}");
}

#[test]
fn a_logged_out_token_or_cookie_stays_invalid_after_a_restart() {
    let mut srv = TestServer::start();
    let token = srv.token("alice");
    let cookie = browser_cookie(&srv, "bob");
    let (status, body) = post_json(
        &format!("{}/app/logout", srv.http),
        &[("token", &token)],
        json!({}),
    );
    assert_eq!(status, 200, "app logout: {body}");
    let (status, body) = post_json(
        &format!("{}/api/logout", srv.http),
        &[("Cookie", &cookie_header(&cookie))],
        json!({}),
    );
    assert_eq!(status, 200, "browser logout: {body}");
    srv.restart();

    let (status, body) = session_with_token(&srv, &token, "phone");
    assert_error(status, &body, 401, "logged-out token after restart");
    let (status, body) = browser_session(&srv, &cookie, "web");
    assert_error(status, &body, 401, "logged-out cookie after restart");
    let (status, body) = history_raw(&srv, &[("token", &token)], "with=bob");
    assert_error(status, &body, 401, "history with a logged-out token");
}

#[test]
fn a_session_id_does_not_survive_a_restart() {
    let mut srv = TestServer::start();
    let sid = srv.session_id("alice", "web");
    srv.restart();
    let mut c = Client::open(&srv.ws, "alice");
    c.register(&sid);
    assert_eq!(c.status("reg").0, 402);
    assert_eq!(c.expect_close(), (1008, "SESSION_ERROR".to_string()));
}

// ------------------------------------------------------------- history

/// Checks the wire shape of one history entry: a received frame's fields,
/// `seq` (1.1), and `receivedBy` (1.1) on the caller's own texts only.
fn assert_history_message(m: &Value, from: &str, to: &str, body: &str) {
    let keys: HashSet<&str> = m
        .as_object()
        .expect("a message is an object")
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "receivedBy")
        .collect();
    let expected: HashSet<&str> = [
        "id",
        "type",
        "isSystem",
        "from",
        "to",
        "body",
        "timestamp",
        "seq",
    ]
    .into();
    assert_eq!(keys, expected, "{m}");
    assert!(m["seq"].is_u64(), "{m}");
    assert_eq!(m["type"], 2001, "{m}");
    assert_eq!(m["isSystem"], from == "SYSTEM", "{m}");
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str(), m["body"].as_str()),
        (Some(from), Some(to), Some(body)),
        "{m}"
    );
    assert!(m["timestamp"].is_u64(), "{m}");
}

#[test]
fn history_pages_newest_first_with_before_exclusive_and_limit() {
    const N: usize = 120;
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    // Both directions; each message waits for the clock to pass the last
    // one's 9001, so that no two share a millisecond (see the note on
    // paging by timestamp below).
    let mut sent: Vec<(String, &str, &str)> = Vec::with_capacity(N);
    for i in 0..N {
        let id = format!("h{i:03}");
        let (c, from, to) = if i % 3 == 2 {
            (&mut bob, "bob", "alice")
        } else {
            (&mut alice, "alice", "bob")
        };
        c.text(&id, to, &format!("body {id}"));
        let answer = c.status_frame(&id);
        assert_eq!(status_of(&answer).0, 200, "{id}: {answer}");
        wait_for_clock_past(answer["timestamp"].as_i64().expect("9001 timestamp"));
        sent.push((id, from, to));
    }
    let newest_first: Vec<String> = sent.iter().rev().map(|(id, _, _)| id.clone()).collect();
    let token = srv.token("alice");

    // Default limit 50, newest first, with the wire fields.
    let page1 = history(&srv, &token, "with=bob");
    assert_eq!(ids_of(&page1), newest_first[..50]);
    for m in &page1 {
        let id = m["id"].as_str().expect("id");
        let (_, from, to) = sent.iter().find(|(s, _, _)| s == id).expect("sent");
        assert_history_message(m, from, to, &format!("body {id}"));
    }
    let ts: Vec<i64> = page1
        .iter()
        .map(|m| m["timestamp"].as_i64().expect("timestamp"))
        .collect();
    assert!(
        ts.windows(2).all(|w| w[0] > w[1]),
        "newest first by timestamp: {ts:?}"
    );

    // `before` is exclusive: the page after starts with the next older one.
    let mut all = ids_of(&page1);
    let mut before = *ts.last().expect("a full page");
    for expected_len in [50, 20, 0] {
        let page = history(&srv, &token, &format!("with=bob&before={before}"));
        assert_eq!(page.len(), expected_len, "page before {before}");
        if let Some(last) = page.last() {
            before = last["timestamp"].as_i64().expect("timestamp");
        }
        all.extend(ids_of(&page));
    }
    assert_eq!(all, newest_first, "all 120, none lost or repeated");

    // Bob's side, 7 at a time: the same conversation.
    let bob_token = srv.token("bob");
    let mut all = Vec::new();
    let mut query = "with=alice&limit=7".to_string();
    for _ in 0..=N / 7 + 1 {
        let page = history(&srv, &bob_token, &query);
        assert!(page.len() <= 7, "limit=7 gave {}", page.len());
        let Some(last) = page.last() else { break };
        let before = last["timestamp"].as_i64().expect("timestamp");
        query = format!("with=alice&limit=7&before={before}");
        all.extend(ids_of(&page));
    }
    assert_eq!(all, newest_first, "bob's pages of 7");
}

#[test]
fn history_limit_is_capped_at_200() {
    const N: usize = 210;
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    // One message per millisecond: a page never splits a millisecond, so
    // a burst sharing one would come back whole, whatever the limit.
    for i in 0..N {
        let id = format!("c{i:03}");
        alice.text(&id, "bob", "capped");
        let answer = alice.status_frame(&id);
        assert_eq!(status_of(&answer).0, 200, "{id}: {answer}");
        wait_for_clock_past(answer["timestamp"].as_i64().expect("9001 timestamp"));
    }
    let token = srv.token("alice");
    assert_eq!(history(&srv, &token, "with=bob").len(), 50, "default");
    assert_eq!(history(&srv, &token, "with=bob&limit=200").len(), 200);
    let capped = history(&srv, &token, "with=bob&limit=500");
    assert_eq!(capped.len(), 200, "limit=500 is capped");
    assert_eq!(capped[0]["id"], "c209", "newest first");
    assert_eq!(capped[199]["id"], "c010");
}

#[test]
fn history_with_a_user_has_both_directions_and_group_messages_that_include_both() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice, "g1", "bob,carol", "to both");
    send_ok(&mut bob, "b1", "alice", "back to alice");
    send_ok(&mut alice, "a1", "bob", "only bob");
    let mut carol = dev(&srv, "carol", "web");
    send_ok(&mut carol, "c1", "dave", "not about alice");

    let alice_t = srv.token("alice");
    let bob_t = srv.token("bob");
    let carol_t = srv.token("carol");
    let dave_t = srv.token("dave");
    let alice_with_bob = history(&srv, &alice_t, "with=bob");
    assert_eq!(ids_of(&alice_with_bob), ["a1", "b1", "g1"]);
    assert_history_message(&alice_with_bob[2], "alice", "bob,carol", "to both");
    assert_history_message(&alice_with_bob[1], "bob", "alice", "back to alice");
    assert_eq!(
        ids_of(&history(&srv, &bob_t, "with=alice")),
        ["a1", "b1", "g1"]
    );
    assert_eq!(ids_of(&history(&srv, &alice_t, "with=carol")), ["g1"]);
    assert_eq!(ids_of(&history(&srv, &carol_t, "with=alice")), ["g1"]);
    // Nobody sees a conversation they were not part of.
    assert_eq!(ids_of(&history(&srv, &dave_t, "with=alice")), [""; 0]);
    assert_eq!(ids_of(&history(&srv, &dave_t, "with=bob")), [""; 0]);
    assert_eq!(ids_of(&history(&srv, &dave_t, "with=carol")), ["c1"]);
}

#[test]
fn history_with_system_lists_the_system_messages_the_caller_received() {
    let srv = server_with_api_key();
    let s1 = system_message(&srv, "alice,bob", "maintenance at noon");
    let s2 = system_message(&srv, "bob", "your quota");
    let mut alice = dev(&srv, "alice", "web");
    send_ok(&mut alice, "t1", "bob", "a text");

    let alice_t = srv.token("alice");
    let bob_t = srv.token("bob");
    let carol_t = srv.token("carol");
    let alice_sys = history(&srv, &alice_t, "with=SYSTEM");
    assert_eq!(ids_of(&alice_sys), [s1.as_str()]);
    assert_history_message(&alice_sys[0], "SYSTEM", "alice,bob", "maintenance at noon");
    assert_eq!(ids_of(&history(&srv, &bob_t, "with=SYSTEM")), [s2, s1]);
    assert!(history(&srv, &carol_t, "with=SYSTEM").is_empty());
    // System messages appear under SYSTEM only.
    assert_eq!(ids_of(&history(&srv, &alice_t, "with=bob")), ["t1"]);
    assert_eq!(ids_of(&history(&srv, &bob_t, "with=alice")), ["t1"]);
}

#[test]
fn history_with_bad_parameters_is_400() {
    let srv = TestServer::start();
    let token = srv.token("alice");
    for query in [
        "",
        "before=1",
        "with=",
        "with=bad%20id",
        "with=bob,carol",
        "with=bob&before=abc",
        "with=bob&before=-5",
        "with=bob&before=1.5",
        "with=bob&limit=0",
        "with=bob&limit=-1",
        "with=bob&limit=ten",
    ] {
        let (status, body) = history_raw(&srv, &[("token", &token)], query);
        assert_error(status, &body, 400, &format!("history?{query}"));
    }
}

#[test]
fn history_without_login_is_401() {
    let srv = TestServer::start();
    let bogus = "0".repeat(64);
    let bogus_cookie = cookie_header(&bogus);
    for (what, headers) in [
        ("no credentials", vec![]),
        ("unknown token", vec![("token", bogus.as_str())]),
        ("unknown cookie", vec![("Cookie", bogus_cookie.as_str())]),
    ] {
        let (status, body) = history_raw(&srv, &headers, "with=bob");
        assert_error(status, &body, 401, what);
    }
    // A browser login works too.
    let cookie = browser_cookie(&srv, "alice");
    let (status, body) = history_raw(&srv, &[("Cookie", &cookie_header(&cookie))], "with=bob");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn history_survives_a_restart() {
    let mut srv = server_with_api_key();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice, "m1", "bob", "one");
    send_ok(&mut bob, "m2", "alice", "two");
    let s1 = system_message(&srv, "alice", "system one");
    let token = srv.token("alice");
    let with_bob = history(&srv, &token, "with=bob");
    let with_system = history(&srv, &token, "with=SYSTEM");
    assert_eq!(ids_of(&with_bob), ["m2", "m1"]);
    assert_eq!(ids_of(&with_system), [s1]);
    drop((alice, bob));

    srv.restart();
    assert_eq!(history(&srv, &token, "with=bob"), with_bob);
    assert_eq!(history(&srv, &token, "with=SYSTEM"), with_system);
    let fresh = srv.token("alice");
    assert_eq!(history(&srv, &fresh, "with=bob"), with_bob);
}

// ------------------------------------------------------- database file

fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("edgeim.db")
}

#[test]
fn the_database_is_edgeim_db_in_the_data_dir() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    send_ok(&mut alice, "m1", "bob", "on disk");
    let path = db_path(&srv.config.data_dir);
    let header = std::fs::read(&path).expect("edgeim.db exists");
    assert!(
        header.starts_with(b"SQLite format 3\0"),
        "{} is not an SQLite database",
        path.display()
    );
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open edgeim.db");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 7, "schema version");
}

#[test]
fn a_garbage_database_file_stops_the_start_with_an_error_naming_it() {
    let config = test_config("garbage");
    let path = db_path(&config.data_dir);
    let garbage = b"this is not an SQLite database\n".repeat(200);
    std::fs::write(&path, &garbage).expect("write garbage");
    let result = edgeim::server::start(&config);
    let error = match result {
        Ok(running) => {
            running.shutdown(std::time::Duration::from_secs(2));
            panic!("the server started on a garbage edgeim.db");
        }
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains(&path.display().to_string()),
        "the error names the file: {error}"
    );
    assert!(!error.contains('\n'), "one line: {error:?}");
    assert_eq!(
        std::fs::read(&path).expect("still there"),
        garbage,
        "the file was changed"
    );
    let _ = std::fs::remove_dir_all(&config.data_dir);
}

// -------------------------------------------------------------- backup

/// Runs the binary to completion; bounded by WAIT.
fn run_bin(args: &[&str]) -> Output {
    common::served::run_to_end(&std::env::temp_dir(), args, "")
}

/// A config file for the binary naming the server's data dir; it lives in
/// a temp dir removed on drop.
struct BinConfig {
    dir: PathBuf,
    file: PathBuf,
}

impl BinConfig {
    fn new(data_dir: &Path) -> BinConfig {
        let dir = temp_dir("backup");
        let file = dir.join("edgeim.toml");
        let data = data_dir.to_str().expect("utf-8 temp path");
        let mut f = std::fs::File::create(&file).expect("create config");
        writeln!(f, "data_dir = \"{}\"", data.replace('\\', "\\\\")).expect("write config");
        BinConfig { dir, file }
    }

    fn arg(&self) -> &str {
        self.file.to_str().expect("utf-8 temp path")
    }
}

impl Drop for BinConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn backup_while_the_server_runs_makes_a_copy_that_restores_pending_messages() {
    let mut srv = TestServer::start();
    known_client(&srv, "bob", "web");
    let mut alice = dev(&srv, "alice", "web");
    for id in ["b1", "b2", "b3"] {
        send_ok(&mut alice, id, "bob", &format!("body {id}"));
    }
    let cfg = BinConfig::new(&srv.config.data_dir);
    let copy = cfg.dir.join("copy.db");
    let out = run_bin(&[
        "backup",
        copy.to_str().expect("utf-8"),
        "--config",
        cfg.arg(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "backup failed: {stderr}");

    // The copy is a complete database with the messages.
    {
        let conn = rusqlite::Connection::open_with_flags(
            &copy,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("the copy opens");
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");
        let mut q = conn
            .prepare("SELECT id, body FROM messages ORDER BY seq")
            .expect("messages table");
        let rows: Vec<(String, String)> = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            [("b1", "body b1"), ("b2", "body b2"), ("b3", "body b3")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    // Sent after the backup: the restored database does not have it.
    send_ok(&mut alice, "after", "bob", "after the backup");
    drop(alice);

    // Restore: stop, put the copy in place of the database, start.
    srv.stop();
    let db = db_path(&srv.config.data_dir);
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", db.display()));
        if side.exists() {
            std::fs::remove_file(&side).expect("remove WAL side file");
        }
    }
    std::fs::copy(&copy, &db).expect("restore the copy");
    srv.restart();
    let mut bob = dev(&srv, "bob", "web");
    for id in ["b1", "b2", "b3"] {
        let m = expect_text(&mut bob, id);
        assert_eq!(m["body"], format!("body {id}"));
    }
    let mut alice = dev(&srv, "alice", "web");
    send_ok(&mut alice, "marker", "bob", "after the restore");
    expect_text(&mut bob, "marker");
}

#[test]
fn backup_to_an_existing_file_fails_with_exit_1_and_one_line() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    send_ok(&mut alice, "m1", "bob", "something to back up");
    let cfg = BinConfig::new(&srv.config.data_dir);
    let existing = cfg.dir.join("existing.db");
    std::fs::write(&existing, "keep me").expect("write");
    let out = run_bin(&[
        "backup",
        existing.to_str().expect("utf-8"),
        "--config",
        cfg.arg(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(
        lines[0].starts_with("edgeim: ") && lines[0].contains("existing.db"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&existing).expect("still there"),
        "keep me"
    );
}

/// The store stamps every message of one group-commit batch with the same
/// millisecond, so paging by time alone could skip the rest of a shared
/// millisecond; pages are exact (section 12), and paging with `beforeSeq`
/// = the oldest seq of the last page reaches every message of a burst.
#[test]
fn history_paging_by_before_seq_reaches_every_message_of_a_burst() {
    const N: usize = 120;
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let ids: Vec<String> = (0..N).map(|i| format!("p{i:03}")).collect();
    for id in &ids {
        alice.text(id, "bob", id);
    }
    for _ in 0..N {
        let (id, code, msg) = alice.any_status();
        assert_eq!(code, 200, "{id}: {msg}");
    }
    let token = srv.token("alice");
    let mut all: Vec<String> = Vec::new();
    let mut query = "with=bob&limit=10".to_string();
    for _ in 0..=N {
        let page = history(&srv, &token, &query);
        let Some(last) = page.last() else { break };
        assert!(
            page.len() == 10 || all.len() + page.len() == N,
            "an exact page"
        );
        let before = last["seq"].as_i64().expect("seq");
        query = format!("with=bob&limit=10&beforeSeq={before}");
        all.extend(ids_of(&page));
    }
    let newest_first: Vec<String> = ids.into_iter().rev().collect();
    assert_eq!(all.len(), N, "paging reached {} of {N} messages", all.len());
    assert_eq!(all, newest_first);
}
