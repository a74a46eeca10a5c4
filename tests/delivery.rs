//! Delivery (PROTOCOL.md sections 6 and 7): who gets what, once, in order;
//! replacement; receipts; offline redelivery; resends; system messages.

mod common;
use common::*;

use std::collections::HashSet;

use serde_json::{Value, json};

const RECEIVED: &str = "{\"code\":200,\"status\":\"SUCCESS\",\"msg\":\"received\"}";
const API_KEY: &str = "0123456789abcdef-test";

/// A registered client (the harness keeps what it reads while waiting for
/// a 9001, so nothing is lost between answers).
type Dev = Client;

/// Logs in and registers `user` as `client`.
fn dev(srv: &TestServer, user: &str, client: &str) -> Dev {
    srv.client(user, client)
}

/// A server with a system API key.
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

// ------------------------------------------------------------ section 6

#[test]
fn a_recipient_gets_id_from_normalised_to_body_and_server_timestamp() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    let mut carol = dev(&srv, "carol", "web");
    let before = now_ms();
    // The client's own timestamp is ignored: the server stamps its own.
    alice.send_json(
        json!({"id": "m1", "type": 2001, "isSystem": false, "from": "alice",
        "to": " carol , bob,carol ", "body": "hello both", "timestamp": 1}),
    );
    assert_eq!(alice.status("m1").0, 200);
    let after = now_ms();
    for c in [&mut bob, &mut carol] {
        let m = expect_text(c, "m1");
        assert_eq!(m["from"], "alice");
        assert_eq!(m["to"], "carol,bob");
        assert_eq!(m["body"], "hello both");
        assert_eq!(m["isSystem"], false);
        let ts = m["timestamp"].as_i64().expect("timestamp is a number");
        assert!(
            ts >= before - 1000 && ts <= after + 1000,
            "timestamp {ts} not within [{before}, {after}]"
        );
    }
}

#[test]
fn every_client_of_a_recipient_gets_the_message() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob_web = dev(&srv, "bob", "web");
    let mut bob_phone = dev(&srv, "bob", "phone");
    send_ok(&mut alice, "m1", "bob", "hi");
    expect_text(&mut bob_web, "m1");
    expect_text(&mut bob_phone, "m1");
}

#[test]
fn the_senders_other_clients_get_a_copy_and_the_sending_connection_does_not() {
    let srv = TestServer::start();
    let mut alice_web = dev(&srv, "alice", "web");
    let mut alice_phone = dev(&srv, "alice", "phone");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice_web, "m1", "bob", "hi");
    expect_text(&mut bob, "m1");
    let copy = expect_text(&mut alice_phone, "m1");
    assert_eq!(
        (
            copy["from"].as_str(),
            copy["to"].as_str(),
            copy["body"].as_str()
        ),
        (Some("alice"), Some("bob"), Some("hi"))
    );
    expect_nothing_before(&mut alice_web, "marker");
    expect_next(&mut alice_phone, "marker");
}

#[test]
fn a_note_to_self_reaches_every_own_client_once_including_the_sender() {
    let srv = TestServer::start();
    let mut alice_web = dev(&srv, "alice", "web");
    let mut alice_phone = dev(&srv, "alice", "phone");
    send_ok(&mut alice_web, "n1", "alice", "remember the milk");
    let m = expect_text(&mut alice_web, "n1");
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str()),
        (Some("alice"), Some("alice"))
    );
    expect_text(&mut alice_phone, "n1");
    // Exactly once each: the next thing is the marker.
    expect_nothing_before(&mut alice_web, "marker");
    expect_next(&mut alice_phone, "marker");
}

#[test]
fn a_recipient_named_twice_gets_the_message_once() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice, "m1", "bob,bob", "hi");
    let m = expect_text(&mut bob, "m1");
    assert_eq!(m["to"], "bob");
    send_ok(&mut alice, "follow", "bob", "next");
    expect_text(&mut bob, "follow");
}

#[test]
fn a_sender_among_the_recipients_gets_the_message_once_per_connection() {
    let srv = TestServer::start();
    let mut alice_web = dev(&srv, "alice", "web");
    let mut alice_phone = dev(&srv, "alice", "phone");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice_web, "m1", "alice,bob", "hi all");
    for c in [&mut alice_web, &mut alice_phone, &mut bob] {
        let m = expect_text(c, "m1");
        assert_eq!(m["to"], "alice,bob");
    }
    send_ok(&mut alice_web, "follow", "alice,bob", "next");
    for c in [&mut alice_web, &mut alice_phone, &mut bob] {
        expect_text(c, "follow");
    }
}

#[test]
fn a_second_connection_with_the_same_client_replaces_the_first() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut old = dev(&srv, "bob", "web");
    let mut new = dev(&srv, "bob", "web");
    assert_eq!(old.expect_close(), (4000, "replaced".to_string()));
    send_ok(&mut alice, "m1", "bob", "hi");
    expect_text(&mut new, "m1");
    // The replacement is a connected client, not a second one.
    let token = srv.token("alice");
    let (status, online) = get(
        &format!("{}/api/websocket/online", srv.http),
        &[("token", &token)],
    );
    assert_eq!(status, 200, "{online}");
    let bob_entry = online["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["userId"] == "bob")
        .cloned()
        .expect("bob online");
    assert_eq!(bob_entry["clients"], json!(["web"]));
}

#[test]
fn messages_from_one_sender_arrive_in_order() {
    const N: usize = 1000;
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    // Bob reads on his own thread so neither side's socket fills up.
    let reader = std::thread::spawn(move || {
        (0..N)
            .map(|_| {
                let m = bob.next_message();
                m["id"].as_str().unwrap_or_default().to_string()
            })
            .collect::<Vec<String>>()
    });
    let ids: Vec<String> = (0..N).map(|i| format!("m{i:04}")).collect();
    for id in &ids {
        alice.text(id, "bob", id);
    }
    let mut answered = Vec::with_capacity(N);
    for _ in 0..N {
        let (id, code, msg) = alice.any_status();
        assert_eq!(code, 200, "{id}: {msg}");
        answered.push(id);
    }
    let unique: HashSet<&String> = answered.iter().collect();
    assert_eq!(unique.len(), N, "one SUCCESS per message");
    assert_eq!(answered, ids, "SUCCESS answers in the order sent");
    let received = reader.join().expect("bob's reader");
    assert_eq!(received, ids, "bob received all, in order");
}

// ----------------------------------------------------------- receipts

#[test]
fn a_receipt_is_forwarded_to_every_connected_client_of_the_sender() {
    let srv = TestServer::start();
    let mut alice_web = dev(&srv, "alice", "web");
    let mut alice_phone = dev(&srv, "alice", "phone");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice_web, "m1", "bob", "hi");
    expect_text(&mut bob, "m1");
    expect_text(&mut alice_phone, "m1");
    ack_expect(&mut bob, "m1", "alice", 200);
    for c in [&mut alice_web, &mut alice_phone] {
        let r = c.next_message();
        assert_eq!(r["type"], 9101, "{}: {r}", c.user);
        assert_eq!(r["id"], "m1");
        assert_eq!(r["from"], "bob");
        assert_eq!(r["to"], "alice");
        assert_eq!(r["body"], RECEIVED);
        assert_eq!(r["isSystem"], false);
    }
}

#[test]
fn a_receipt_body_given_as_an_object_is_forwarded_as_a_string() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice, "m1", "bob", "hi");
    expect_text(&mut bob, "m1");
    bob.send_json(
        json!({"id": "m1", "type": 9101, "isSystem": false, "from": "bob",
        "to": "alice", "body": {"code": 200, "status": "SUCCESS", "msg": "read"}}),
    );
    assert_eq!(bob.status("m1").0, 200);
    let r = alice.next_message();
    assert_eq!(r["type"], 9101);
    let body: Value =
        serde_json::from_str(r["body"].as_str().expect("body is a string")).expect("body is JSON");
    assert_eq!(
        body,
        json!({"code": 200, "status": "SUCCESS", "msg": "read"})
    );
}

#[test]
fn a_second_receipt_from_the_same_user_is_200_and_not_forwarded() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob_web = dev(&srv, "bob", "web");
    let mut bob_phone = dev(&srv, "bob", "phone");
    send_ok(&mut alice, "m1", "bob", "hi");
    expect_text(&mut bob_web, "m1");
    expect_text(&mut bob_phone, "m1");
    ack_expect(&mut bob_web, "m1", "alice", 200);
    let r = alice.next_message();
    assert_eq!(
        (r["type"].as_i64(), r["id"].as_str()),
        (Some(9101), Some("m1"))
    );
    ack_expect(&mut bob_phone, "m1", "alice", 200);
    // The same client acknowledging again is a repeat too.
    ack_expect(&mut bob_web, "m1", "alice", 200);
    // Sent after both repeats: if either were forwarded, it would come first.
    send_ok(&mut bob_web, "follow", "alice", "after the repeats");
    expect_text(&mut alice, "follow");
}

#[test]
fn a_receipt_for_a_message_never_received_is_401() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    let mut carol = dev(&srv, "carol", "web");
    // An id that does not exist at all.
    ack_expect(&mut bob, "never-sent", "alice", 401);
    // A message that exists but was addressed to carol only.
    send_ok(&mut alice, "for-carol", "carol", "hi carol");
    expect_text(&mut carol, "for-carol");
    ack_expect(&mut bob, "for-carol", "alice", 401);
    // A message bob did receive, but named with the wrong original sender.
    send_ok(&mut alice, "for-bob", "bob", "hi bob");
    expect_text(&mut bob, "for-bob");
    ack_expect(&mut bob, "for-bob", "carol", 401);
    ack_expect(&mut bob, "for-bob", "SYSTEM", 401);
    // None of the refused receipts reached alice; the real one does.
    ack_expect(&mut bob, "for-bob", "alice", 200);
    let r = alice.next_message();
    assert_eq!(
        (r["type"].as_i64(), r["id"].as_str()),
        (Some(9101), Some("for-bob"))
    );
}

#[test]
fn a_receipt_for_a_copy_of_ones_own_message_is_200_and_forwarded_nowhere() {
    let srv = TestServer::start();
    let mut alice_web = dev(&srv, "alice", "web");
    let mut alice_phone = dev(&srv, "alice", "phone");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice_web, "m1", "bob", "hi");
    expect_text(&mut bob, "m1");
    expect_text(&mut alice_phone, "m1");
    ack_expect(&mut alice_phone, "m1", "alice", 200);
    // The sending client may acknowledge its own message too.
    ack_expect(&mut alice_web, "m1", "alice", 200);
    send_ok(&mut alice_phone, "marker", "alice,bob", "marker");
    for c in [&mut alice_web, &mut alice_phone, &mut bob] {
        expect_next(c, "marker");
    }
}

#[test]
fn a_receipt_for_a_note_to_self_is_forwarded_to_the_users_clients() {
    let srv = TestServer::start();
    let mut alice_web = dev(&srv, "alice", "web");
    let mut alice_phone = dev(&srv, "alice", "phone");
    send_ok(&mut alice_web, "n1", "alice", "note");
    expect_text(&mut alice_web, "n1");
    expect_text(&mut alice_phone, "n1");
    ack_expect(&mut alice_phone, "n1", "alice", 200);
    for c in [&mut alice_web, &mut alice_phone] {
        let r = c.next_message();
        assert_eq!(
            (r["type"].as_i64(), r["id"].as_str(), r["from"].as_str()),
            (Some(9101), Some("n1"), Some("alice")),
            "{r}"
        );
    }
}

// ------------------------------------------------------------ offline

#[test]
fn an_offline_recipient_gets_what_it_missed_in_order_after_register() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    for id in ["o1", "o2", "o3"] {
        send_ok(&mut alice, id, "bob", id);
    }
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice, "o4", "bob", "newer");
    for id in ["o1", "o2", "o3", "o4"] {
        let m = expect_text(&mut bob, id);
        assert_eq!(m["from"], "alice");
    }
}

#[test]
fn a_message_not_acknowledged_is_redelivered_after_reconnect() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice, "m1", "bob", "one");
    send_ok(&mut alice, "m2", "bob", "two");
    expect_text(&mut bob, "m1");
    expect_text(&mut bob, "m2");
    ack_expect(&mut bob, "m1", "alice", 200);
    bob.hang_up();
    let mut bob = dev(&srv, "bob", "web");
    // m2 again; m1 (acknowledged) not.
    expect_text(&mut bob, "m2");
    ack_expect(&mut bob, "m2", "alice", 200);
    bob.hang_up();
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice, "follow", "bob", "three");
    expect_text(&mut bob, "follow");
}

#[test]
fn a_new_client_gets_only_what_no_client_of_its_user_acknowledged() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob_web = dev(&srv, "bob", "web");
    send_ok(&mut alice, "m1", "bob", "one");
    send_ok(&mut alice, "m2", "bob", "two");
    expect_text(&mut bob_web, "m1");
    expect_text(&mut bob_web, "m2");
    ack_expect(&mut bob_web, "m1", "alice", 200);
    let mut bob_tablet = dev(&srv, "bob", "tablet");
    expect_text(&mut bob_tablet, "m2");
    send_ok(&mut alice, "follow", "bob", "three");
    expect_text(&mut bob_tablet, "follow");
}

#[test]
fn an_offline_client_gets_a_message_another_client_acknowledged() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob_web = dev(&srv, "bob", "web");
    let bob_phone = dev(&srv, "bob", "phone");
    bob_phone.hang_up();
    send_ok(&mut alice, "m1", "bob", "while the phone is away");
    expect_text(&mut bob_web, "m1");
    ack_expect(&mut bob_web, "m1", "alice", 200);
    let r = alice.next_message();
    assert_eq!(
        (r["type"].as_i64(), r["id"].as_str()),
        (Some(9101), Some("m1"))
    );
    let mut bob_phone = dev(&srv, "bob", "phone");
    expect_text(&mut bob_phone, "m1");
    // The phone's own receipt is a repeat for bob: recorded, not forwarded.
    ack_expect(&mut bob_phone, "m1", "alice", 200);
    send_ok(&mut bob_phone, "follow", "alice", "back");
    expect_text(&mut alice, "follow");
}

#[test]
fn an_offline_sender_client_gets_its_copy_after_register() {
    let srv = TestServer::start();
    let mut alice_web = dev(&srv, "alice", "web");
    let alice_phone = dev(&srv, "alice", "phone");
    alice_phone.hang_up();
    send_ok(&mut alice_web, "m1", "bob", "sent from the web");
    let mut alice_phone = dev(&srv, "alice", "phone");
    let m = expect_text(&mut alice_phone, "m1");
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str()),
        (Some("alice"), Some("bob"))
    );
    // The sending client counts as having acknowledged its own message.
    alice_web.hang_up();
    let mut alice_web = dev(&srv, "alice", "web");
    expect_nothing_before(&mut alice_web, "marker");
}

// -------------------------------------------------------------- dedup

#[test]
fn a_resent_id_is_200_and_delivered_once() {
    let srv = TestServer::start();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob = dev(&srv, "bob", "web");
    send_ok(&mut alice, "d1", "bob", "first try");
    send_ok(&mut alice, "d1", "bob", "second try");
    let m = expect_text(&mut bob, "d1");
    assert_eq!(m["body"], "first try");
    send_ok(&mut alice, "follow", "bob", "next");
    expect_text(&mut bob, "follow");
    // Ids are per sender: carol may use the same id.
    let mut carol = dev(&srv, "carol", "web");
    send_ok(&mut carol, "d1", "bob", "carol's d1");
    let m = expect_text(&mut bob, "d1");
    assert_eq!(m["from"], "carol");
}

// ------------------------------------------------------ system message

#[test]
fn a_system_message_reaches_its_recipients_as_system() {
    let srv = server_with_api_key();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob_web = dev(&srv, "bob", "web");
    let mut bob_phone = dev(&srv, "bob", "phone");
    let mut carol = dev(&srv, "carol", "web");
    let before = now_ms();
    let id = system_message(&srv, "alice, bob", "maintenance at noon");
    for c in [&mut alice, &mut bob_web, &mut bob_phone] {
        let m = expect_next(c, &id);
        assert_eq!(m["type"], 2001);
        assert_eq!(m["isSystem"], true);
        assert_eq!(m["from"], "SYSTEM");
        assert_eq!(m["to"], "alice,bob");
        assert_eq!(m["body"], "maintenance at noon");
        let ts = m["timestamp"].as_i64().expect("timestamp");
        assert!(
            ts >= before - 1000 && ts <= now_ms() + 1000,
            "timestamp {ts}"
        );
    }
    expect_nothing_before(&mut carol, "marker");
}

#[test]
fn a_receipt_for_a_system_message_is_200_and_forwarded_nowhere() {
    let srv = server_with_api_key();
    let mut alice = dev(&srv, "alice", "web");
    let mut bob_web = dev(&srv, "bob", "web");
    let mut bob_phone = dev(&srv, "bob", "phone");
    let id = system_message(&srv, "alice,bob", "maintenance at noon");
    for c in [&mut alice, &mut bob_web, &mut bob_phone] {
        expect_next(c, &id);
    }
    ack_expect(&mut bob_web, &id, "SYSTEM", 200);
    ack_expect(&mut alice, &id, "SYSTEM", 200);
    send_ok(&mut bob_web, "marker", "alice,bob", "marker");
    for c in [&mut alice, &mut bob_web, &mut bob_phone] {
        expect_next(c, "marker");
    }
}

#[test]
fn an_offline_recipient_gets_a_system_message_after_register() {
    let srv = server_with_api_key();
    let id = system_message(&srv, "bob", "welcome");
    let mut bob = dev(&srv, "bob", "web");
    let m = expect_next(&mut bob, &id);
    assert_eq!(
        (m["isSystem"].as_bool(), m["from"].as_str()),
        (Some(true), Some("SYSTEM"))
    );
}
