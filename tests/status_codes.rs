//! Every status code of PROTOCOL.md section 5, each triggered by a crafted
//! message, and the order in which the checks run.

mod common;
use common::*;

use edgeim::client::frames::{self, RECEIVED, StatusBody};
use serde_json::{Value, json};
use tungstenite::Message;

/// A client message with every required field.
fn frame(id: &str, kind: i64, from: &str, to: &str, body: &str) -> Value {
    json!({"id": id, "type": kind, "isSystem": false, "from": from, "to": to, "body": body})
}

/// A text (2001) from `c`'s user.
fn text(c: &Client, id: &str, to: &str, body: &str) -> Value {
    frames::text(id, &c.user, to, body)
}

/// Sends `v` and returns the (code, msg) of the 9001 answering its id.
fn ask(c: &mut Client, v: Value) -> (i64, String) {
    let id = v["id"]
        .as_str()
        .expect("message with a string id")
        .to_string();
    c.send_json(v);
    c.status(&id)
}

/// Sends `v` and asserts that its answer has `code`; returns the msg.
fn expect_code(c: &mut Client, v: Value, code: i64) -> String {
    let what = v.to_string();
    let (got, msg) = ask(c, v);
    assert_eq!(got, code, "{what}: answered {got} {msg:?}");
    msg
}

/// The next 9001 frame, whatever its id, as the server wrote it.
fn next_status_frame(c: &mut Client) -> Value {
    loop {
        let m = c.recv();
        if m["type"] == 9001 {
            return m;
        }
    }
}

/// Sends a raw text frame that carries no usable id; asserts the answer is a
/// 401 with a server-made id (a UUID) addressed to `c`'s user (`to_user`).
fn expect_401_with_server_id(c: &mut Client, raw: &str, to_user: &str) {
    c.send_raw(raw);
    let m = next_status_frame(c);
    let StatusBody { code, status, msg } = status_body(&m);
    assert_eq!(
        (code, status.as_str()),
        (401, "MESSAGE_ERROR"),
        "{raw}: {msg}"
    );
    let id = m["id"].as_str().expect("id");
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "{raw}: answer id {id:?} is not server-made"
    );
    assert_eq!(m["to"], to_user, "{raw}");
    assert_eq!(
        (m["isSystem"].as_bool(), m["from"].as_str()),
        (Some(true), Some("SYSTEM"))
    );
}

/// Proves that nothing is queued for `c` (or its user's other clients)
/// before now: sends a note to self with id `marker` and asserts the next
/// message that is not a 9001 is that marker.
fn expect_nothing_before(c: &mut Client, marker: &str) {
    let me = c.user.clone();
    let v = text(c, marker, &me, "marker");
    c.send_json(v);
    let m = c.next_message();
    assert_eq!(
        m["id"], marker,
        "{me}: something arrived before the marker: {m}"
    );
}

/// Opens a connection for `user` without registering it.
fn unregistered(srv: &TestServer, user: &str) -> Client {
    Client::open(&srv.ws, user)
}

/// A register message for `from` with a body of our choosing.
fn register_frame(id: &str, from: &str, body: Value) -> Value {
    json!({"id": id, "type": 1000, "isSystem": false, "from": from, "to": "SYSTEM", "body": body})
}

/// After a failed register: the error, then Close 1008 with the status name.
fn expect_register_refused(c: &mut Client, v: Value, code: i64, name: &str) {
    let id = v["id"].as_str().unwrap().to_string();
    c.send_json(v);
    let m = next_status_frame(c);
    let StatusBody {
        code: got,
        status,
        msg,
    } = status_body(&m);
    assert_eq!(
        (m["id"].as_str(), got, status.as_str()),
        (Some(id.as_str()), code, name),
        "register answer: {msg}"
    );
    assert_eq!(m["to"], "", "a refused register is answered to nobody");
    assert_eq!(c.expect_close(), (1008, name.to_string()));
}

// ---------------------------------------------------------------- 401

#[test]
fn a_success_answer_is_a_system_9001_addressed_to_the_user() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let v = text(&alice, "m1", "bob", "hi");
    alice.send_json(v);
    let m = next_status_frame(&mut alice);
    assert_eq!(m["id"], "m1");
    assert_eq!(m["isSystem"], true);
    assert_eq!(m["from"], "SYSTEM");
    assert_eq!(m["to"], "alice");
    assert!(m["body"].is_string(), "a 9001 body is a string: {m}");
    let StatusBody { code, status, .. } = status_body(&m);
    assert_eq!((code, status.as_str()), (200, "SUCCESS"));
    let ts = m["timestamp"].as_i64().expect("timestamp");
    assert!((ts - before).abs() < 60_000, "timestamp {ts} vs {before}");
}

#[test]
fn a_frame_that_is_not_json_is_401_with_a_server_made_id() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    expect_401_with_server_id(&mut alice, "hello, not json", "alice");
    expect_401_with_server_id(&mut alice, "{\"id\":\"x\",", "alice");
    expect_401_with_server_id(&mut alice, "\"just a string\"", "alice");
    let v = text(&alice, "after", "bob", "still usable");
    expect_code(&mut alice, v, 200);
}

#[test]
fn a_json_array_is_401() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let v = text(&alice, "in-array", "bob", "hi");
    expect_401_with_server_id(&mut alice, &json!([v]).to_string(), "alice");
    expect_401_with_server_id(&mut alice, "[]", "alice");
    let v = text(&alice, "after", "bob", "still usable");
    expect_code(&mut alice, v, 200);
}

#[test]
fn a_missing_required_field_is_401() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    // Without an id the answer carries a server-made one.
    let mut v = text(&alice, "x", "bob", "hi");
    v.as_object_mut().unwrap().remove("id");
    expect_401_with_server_id(&mut alice, &v.to_string(), "alice");
    // Without any other field the client's id is echoed.
    for field in ["type", "isSystem", "from", "to", "body"] {
        let id = format!("no-{field}");
        let mut v = text(&alice, &id, "bob", "hi");
        v.as_object_mut().unwrap().remove(field);
        let msg = expect_code(&mut alice, v, 401);
        assert!(
            msg.contains(field),
            "missing {field}: msg {msg:?} does not name it"
        );
    }
    // timestamp is optional.
    let v = text(&alice, "no-timestamp", "bob", "hi");
    expect_code(&mut alice, v, 200);
    let v = text(&alice, "after", "bob", "still usable");
    expect_code(&mut alice, v, 200);
}

#[test]
fn a_field_of_the_wrong_type_is_401() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    for bad_id in [json!(5), json!(null), json!(["a"]), json!({"a": 1})] {
        let mut v = text(&alice, "x", "bob", "hi");
        v["id"] = bad_id;
        expect_401_with_server_id(&mut alice, &v.to_string(), "alice");
    }
    let cases: &[(&str, Value)] = &[
        ("type", json!("2001")),
        ("type", json!(2001.5)),
        ("type", json!(null)),
        ("isSystem", json!("false")),
        ("isSystem", json!(0)),
        ("from", json!(7)),
        ("from", json!(null)),
        ("to", json!(["bob"])),
        ("to", json!(1)),
        ("body", json!(7)),
        ("body", json!(["hi"])),
        ("body", json!(null)),
        ("body", json!(true)),
    ];
    for (i, (field, value)) in cases.iter().enumerate() {
        let id = format!("wrong-{i}");
        let mut v = text(&alice, &id, "bob", "hi");
        v[*field] = value.clone();
        let msg = expect_code(&mut alice, v, 401);
        assert!(
            msg.contains(field),
            "{field} = {value}: msg {msg:?} does not name it"
        );
    }
    // An optional timestamp of the wrong type is harmless: it is ignored.
    let mut v = text(&alice, "odd-timestamp", "bob", "hi");
    v["timestamp"] = json!("yesterday");
    expect_code(&mut alice, v, 200);
    let v = text(&alice, "after", "bob", "still usable");
    expect_code(&mut alice, v, 200);
}

#[test]
fn an_id_of_65_characters_is_401_with_a_server_made_id() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let long = "i".repeat(65);
    let v = text(&alice, &long, "bob", "hi");
    expect_401_with_server_id(&mut alice, &v.to_string(), "alice");
    let long = "é".repeat(65);
    let v = text(&alice, &long, "bob", "hi");
    expect_401_with_server_id(&mut alice, &v.to_string(), "alice");
    let v = text(&alice, "", "bob", "hi");
    expect_401_with_server_id(&mut alice, &v.to_string(), "alice");
    let v = text(&alice, "after", "bob", "still usable");
    expect_code(&mut alice, v, 200);
}

#[test]
fn an_id_of_64_characters_is_accepted() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    // Characters, not bytes: 64 two-byte characters are fine.
    for id in ["i".repeat(64), "é".repeat(64)] {
        let v = text(&alice, &id, "bob", "hi");
        expect_code(&mut alice, v, 200);
    }
}

#[test]
fn a_binary_frame_is_401_and_the_connection_stays_usable() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let v = text(&alice, "bin", "bob", "hi");
    alice
        .ws
        .send(Message::binary(v.to_string().into_bytes()))
        .expect("send binary");
    let m = next_status_frame(&mut alice);
    let StatusBody { code, status, .. } = status_body(&m);
    assert_eq!((code, status.as_str()), (401, "MESSAGE_ERROR"));
    let id = m["id"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "binary answer id {id:?} is not server-made"
    );
    assert_eq!(m["to"], "alice");
    let v = text(&alice, "after", "bob", "still usable");
    expect_code(&mut alice, v, 200);
}

#[test]
fn unknown_extra_fields_are_ignored() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "web");
    let mut v = text(&alice, "extra", "bob", "hi");
    v["color"] = json!("red");
    v["nested"] = json!({"a": [1, 2]});
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "extra");
}

#[test]
fn a_shape_error_before_register_is_401_not_402() {
    let srv = TestServer::start();
    let mut c = unregistered(&srv, "alice");
    expect_401_with_server_id(&mut c, "not json", "");
    let mut v = frame("no-body", 2001, "alice", "bob", "hi");
    v.as_object_mut().unwrap().remove("body");
    assert_eq!(ask(&mut c, v).0, 401);
    // Still open: register works.
    let sid = srv.session_id("alice", "web");
    c.register(&sid);
    assert_eq!(c.status("reg").0, 200);
}

// ---------------------------------------------------------------- 402

#[test]
fn a_message_before_register_is_402_and_the_connection_stays_open() {
    let srv = TestServer::start();
    let mut c = unregistered(&srv, "alice");
    c.send_json(frame("early", 2001, "alice", "bob", "hi"));
    let m = next_status_frame(&mut c);
    let StatusBody { code, status, .. } = status_body(&m);
    assert_eq!((code, status.as_str()), (402, "SESSION_ERROR"));
    assert_eq!(m["id"], "early");
    assert_eq!(m["to"], "", "before register a 9001 is addressed to nobody");
    c.send_json(frame("early-ack", 9101, "alice", "bob", RECEIVED));
    assert_eq!(c.status("early-ack").0, 402);
    let sid = srv.session_id("alice", "web");
    c.register(&sid);
    let m = next_status_frame(&mut c);
    assert_eq!(
        (m["id"].as_str(), m["to"].as_str()),
        (Some("reg"), Some("alice"))
    );
    assert_eq!(status_body(&m).code, 200);
    let v = text(&c, "after", "bob", "registered now");
    expect_code(&mut c, v, 200);
}

#[test]
fn register_with_an_unknown_session_id_is_402_then_close_1008() {
    let srv = TestServer::start();
    let mut c = unregistered(&srv, "alice");
    let sid = uuid::Uuid::new_v4().to_string();
    let v = register_frame("reg", "alice", json!(json!({"sessionId": sid}).to_string()));
    expect_register_refused(&mut c, v, 402, "SESSION_ERROR");
}

#[test]
fn register_with_an_expired_session_id_is_402() {
    // A lifetime of 0 s: every session id has expired by the time it is used.
    let srv = TestServer::start_with(|c| c.limits.session_ttl_s = 0);
    let sid = srv.session_id("alice", "web");
    let mut c = unregistered(&srv, "alice");
    let v = register_frame("reg", "alice", json!(json!({"sessionId": sid}).to_string()));
    expect_register_refused(&mut c, v, 402, "SESSION_ERROR");
}

#[test]
fn a_session_id_used_twice_is_402_the_second_time() {
    let srv = TestServer::start();
    let sid = srv.session_id("alice", "web");
    let mut first = unregistered(&srv, "alice");
    first.register(&sid);
    assert_eq!(first.status("reg").0, 200);
    let mut second = unregistered(&srv, "alice");
    let v = register_frame(
        "reg2",
        "alice",
        json!(json!({"sessionId": sid}).to_string()),
    );
    expect_register_refused(&mut second, v, 402, "SESSION_ERROR");
    // The first connection was not replaced.
    let v = text(&first, "after", "bob", "still here");
    expect_code(&mut first, v, 200);
}

#[test]
fn a_session_id_whose_register_failed_is_used_up() {
    let srv = TestServer::start();
    let sid = srv.session_id("bob", "web");
    let mut c = unregistered(&srv, "alice");
    let v = register_frame("reg", "alice", json!(json!({"sessionId": sid}).to_string()));
    expect_register_refused(&mut c, v, 405, "FROM_ERROR");
    // The rightful owner cannot use it any more.
    let mut bob = unregistered(&srv, "bob");
    let v = register_frame("reg", "bob", json!(json!({"sessionId": sid}).to_string()));
    expect_register_refused(&mut bob, v, 402, "SESSION_ERROR");
}

// ---------------------------------------------------------------- 403

#[test]
fn an_unknown_type_is_403() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    for (i, kind) in [0i64, 2000, 3000, 9102, -1, 1 << 40]
        .into_iter()
        .enumerate()
    {
        let id = format!("t{i}");
        let msg = expect_code(&mut alice, frame(&id, kind, "alice", "bob", "hi"), 403);
        assert!(msg.contains(&kind.to_string()), "{kind}: {msg:?}");
    }
    let v = text(&alice, "after", "bob", "still usable");
    expect_code(&mut alice, v, 200);
}

#[test]
fn type_9001_from_a_client_is_403() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "web");
    expect_code(
        &mut alice,
        frame("fake", 9001, "alice", "bob", RECEIVED),
        403,
    );
    // Nothing reached bob.
    let v = text(&alice, "follow", "bob", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "follow");
}

#[test]
fn a_second_register_is_403_and_the_connection_stays_open() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let sid = srv.session_id("alice", "phone");
    let v = register_frame(
        "reg-again",
        "alice",
        json!(json!({"sessionId": sid}).to_string()),
    );
    expect_code(&mut alice, v, 403);
    let v = text(&alice, "after", "bob", "still usable");
    expect_code(&mut alice, v, 200);
}

// ---------------------------------------------------------------- 404

#[test]
fn an_empty_text_body_is_404() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "web");
    let v = text(&alice, "empty", "bob", "");
    assert_eq!(ask(&mut alice, v).0, 404);
    let v = text(&alice, "follow", "bob", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "follow");
}

#[test]
fn a_text_body_that_is_an_object_is_401() {
    // PROTOCOL.md section 5: a field of the wrong type is 401; only 1000 and
    // 9101 take an object body.
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut v = text(&alice, "obj", "bob", "x");
    v["body"] = json!({"text": "hi"});
    expect_code(&mut alice, v, 401);
    let v = text(&alice, "after", "bob", "still usable");
    expect_code(&mut alice, v, 200);
}

#[test]
fn a_register_body_without_a_session_id_is_404_then_close_1008() {
    let srv = TestServer::start();
    let mut c = unregistered(&srv, "alice");
    let v = register_frame("reg", "alice", json!("{}"));
    expect_register_refused(&mut c, v, 404, "BODY_ERROR");
}

#[test]
fn register_bodies_that_are_not_a_register_body_are_404() {
    let srv = TestServer::start();
    for (i, body) in [
        json!(""),
        json!("not json"),
        json!("{\"sessionId\": 5}"),
        json!("{\"sessionId\": \"\"}"),
        json!({"session": "x"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = unregistered(&srv, "alice");
        let id = format!("reg{i}");
        c.send_json(register_frame(&id, "alice", body.clone()));
        assert_eq!(c.status(&id).0, 404, "register body {body}");
    }
}

#[test]
fn a_register_body_given_as_an_object_is_accepted() {
    let srv = TestServer::start();
    let sid = srv.session_id("alice", "web");
    let mut c = unregistered(&srv, "alice");
    let v = register_frame("reg", "alice", json!({"sessionId": sid}));
    expect_code(&mut c, v, 200);
}

#[test]
fn a_receipt_whose_body_is_not_a_status_body_is_404() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "web");
    let v = text(&alice, "m1", "bob", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "m1");
    for body in [
        json!("received"),
        json!(""),
        json!("{\"code\":\"200\",\"status\":\"SUCCESS\",\"msg\":\"x\"}"),
        json!("{\"code\":200,\"status\":\"SUCCESS\"}"),
        json!("{\"code\":200,\"msg\":\"x\"}"),
        json!({"code": 200, "status": 1, "msg": "x"}),
        json!("[200,\"SUCCESS\",\"x\"]"),
    ] {
        let mut v = frame("m1", 9101, "bob", "alice", "");
        v["body"] = body.clone();
        let (code, msg) = ask(&mut bob, v);
        assert_eq!(code, 404, "receipt body {body}: {msg}");
    }
    // None of them counted as a receipt: the real one is forwarded.
    bob.ack("m1", "alice");
    assert_eq!(bob.status("m1").0, 200);
    let r = alice.next_message();
    assert_eq!(
        (r["type"].as_i64(), r["id"].as_str()),
        (Some(9101), Some("m1"))
    );
    assert_eq!(r["body"], RECEIVED);
}

// ---------------------------------------------------------------- 405

#[test]
fn from_another_user_is_405() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "web");
    let msg = expect_code(&mut alice, frame("forged", 2001, "carol", "bob", "hi"), 405);
    assert!(msg.contains("from"), "{msg:?}");
    expect_code(&mut alice, frame("sys", 2001, "SYSTEM", "bob", "hi"), 405);
    expect_code(&mut alice, frame("empty-from", 2001, "", "bob", "hi"), 405);
    expect_code(
        &mut alice,
        frame("forged-ack", 9101, "carol", "bob", RECEIVED),
        405,
    );
    let v = text(&alice, "follow", "bob", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "follow");
}

#[test]
fn is_system_true_on_a_client_message_is_405() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "web");
    let mut v = text(&alice, "sys", "bob", "hi");
    v["isSystem"] = json!(true);
    let msg = expect_code(&mut alice, v, 405);
    assert!(msg.contains("isSystem"), "{msg:?}");
    let mut v = frame("sys-ack", 9101, "alice", "bob", RECEIVED);
    v["isSystem"] = json!(true);
    expect_code(&mut alice, v, 405);
    let v = text(&alice, "follow", "bob", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "follow");
}

#[test]
fn register_with_from_other_than_the_session_user_is_405_then_close_1008() {
    let srv = TestServer::start();
    let sid = srv.session_id("alice", "web");
    let mut c = unregistered(&srv, "bob");
    let v = register_frame("reg", "bob", json!(json!({"sessionId": sid}).to_string()));
    expect_register_refused(&mut c, v, 405, "FROM_ERROR");
}

#[test]
fn register_with_is_system_true_is_405_then_close_1008() {
    let srv = TestServer::start();
    let sid = srv.session_id("alice", "web");
    let mut c = unregistered(&srv, "alice");
    let mut v = register_frame("reg", "alice", json!(json!({"sessionId": sid}).to_string()));
    v["isSystem"] = json!(true);
    expect_register_refused(&mut c, v, 405, "FROM_ERROR");
}

// ---------------------------------------------------------------- 406

#[test]
fn an_empty_to_is_406() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    for (i, to) in ["", "   ", ","].into_iter().enumerate() {
        let id = format!("e{i}");
        let v = text(&alice, &id, to, "hi");
        expect_code(&mut alice, v, 406);
    }
}

#[test]
fn an_empty_entry_in_to_is_406() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "web");
    for (i, to) in ["bob,,carol", "bob, ,carol", "bob,", ",bob"]
        .into_iter()
        .enumerate()
    {
        let id = format!("e{i}");
        let v = text(&alice, &id, to, "hi");
        let msg = expect_code(&mut alice, v, 406);
        assert!(msg.contains("empty"), "{to}: {msg:?}");
    }
    let v = text(&alice, "follow", "bob", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "follow");
}

#[test]
fn a_malformed_user_id_in_to_is_406() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let long = "b".repeat(65);
    for (i, to) in ["bob carol", "SYSTEM", "bob;carol", &long]
        .into_iter()
        .enumerate()
    {
        let id = format!("e{i}");
        let v = text(&alice, &id, to, "hi");
        expect_code(&mut alice, v, 406);
    }
}

#[test]
fn an_unknown_recipient_is_406_and_nothing_is_delivered() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut alice_phone = srv.client("alice", "phone");
    let mut bob = srv.client("bob", "web");
    let v = text(&alice, "ghostly", "bob,ghost", "hi");
    let msg = expect_code(&mut alice, v, 406);
    assert!(
        msg.contains("ghost"),
        "msg must name the unknown user: {msg:?}"
    );
    let v = text(&alice, "follow", "bob", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "follow");
    // The sender's other client got no copy of the refused message either.
    expect_next(&mut alice_phone, "follow");
}

#[test]
fn too_many_recipients_is_406() {
    let srv = TestServer::start_with(|c| c.limits.max_recipients = 2);
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "web");
    let v = text(&alice, "three", "bob,carol,dave", "hi");
    let msg = expect_code(&mut alice, v, 406);
    assert!(msg.contains("too many"), "{msg:?}");
    // Duplicates count once: two distinct recipients are fine.
    let v = text(&alice, "two", "bob,carol,bob", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "two");
}

#[test]
fn a_receipt_with_a_malformed_to_is_406() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "web");
    let v = text(&alice, "m1", "bob", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut bob, "m1");
    for to in ["", "alice,carol", "alice bob", "alice,"] {
        let (code, msg) = ask(&mut bob, frame("m1", 9101, "bob", to, RECEIVED));
        assert_eq!(code, 406, "receipt to {to:?}: {msg}");
    }
}

// ---------------------------------------------------------------- 407

#[test]
fn a_full_offline_queue_is_407_naming_the_recipient() {
    let srv = TestServer::start_with(|c| c.limits.offline_per_user = 2);
    let mut alice = srv.client("alice", "web");
    for id in ["o1", "o2"] {
        let v = text(&alice, id, "bob", "hi");
        expect_code(&mut alice, v, 200);
    }
    let v = text(&alice, "o3", "bob", "hi");
    let (code, msg) = ask(&mut alice, v);
    assert_eq!(code, 407, "{msg}");
    assert!(msg.contains("bob"), "msg must name bob: {msg:?}");
}

#[test]
fn a_message_with_one_full_recipient_is_refused_whole() {
    let srv = TestServer::start_with(|c| c.limits.offline_per_user = 2);
    let mut alice = srv.client("alice", "web");
    let mut carol = srv.client("carol", "web");
    for id in ["o1", "o2"] {
        let v = text(&alice, id, "bob", "hi");
        expect_code(&mut alice, v, 200);
    }
    let v = text(&alice, "both", "carol,bob", "hi");
    let (code, msg) = ask(&mut alice, v);
    assert_eq!(code, 407, "{msg}");
    assert!(msg.contains("bob") && !msg.contains("carol"), "{msg:?}");
    let v = text(&alice, "follow", "carol", "hi");
    expect_code(&mut alice, v, 200);
    expect_next(&mut carol, "follow");
}

#[test]
fn an_acknowledgement_makes_room_in_a_full_offline_queue() {
    let srv = TestServer::start_with(|c| c.limits.offline_per_user = 2);
    let mut alice = srv.client("alice", "web");
    for id in ["o1", "o2"] {
        let v = text(&alice, id, "bob", "hi");
        expect_code(&mut alice, v, 200);
    }
    let v = text(&alice, "o3", "bob", "hi");
    expect_code(&mut alice, v, 407);
    let mut bob = srv.client("bob", "web");
    expect_next(&mut bob, "o1");
    expect_next(&mut bob, "o2");
    bob.ack("o1", "alice");
    assert_eq!(bob.status("o1").0, 200);
    // The refused message was not kept: its resend is new and delivered.
    let v = text(&alice, "o3", "bob", "hi again");
    expect_code(&mut alice, v, 200);
    let m = bob.next_message();
    assert_eq!(
        (m["id"].as_str(), m["body"].as_str()),
        (Some("o3"), Some("hi again"))
    );
}

#[test]
fn copies_do_not_count_against_the_senders_offline_limit() {
    let srv = TestServer::start_with(|c| c.limits.offline_per_user = 2);
    let mut alice = srv.client("alice", "web");
    let _alice_phone = srv.client("alice", "phone");
    for id in ["c1", "c2"] {
        let v = text(&alice, id, "carol", "hi");
        expect_code(&mut alice, v, 200);
    }
    // Alice's phone has not read its copies, yet alice can still receive.
    let mut bob = srv.client("bob", "web");
    let v = text(&bob, "b1", "alice", "hi alice");
    expect_code(&mut bob, v, 200);
}

// ---------------------------------------------------------------- 400

#[test]
fn the_fourth_frame_of_a_burst_is_400_rate_limit() {
    // A bucket of 3 that refills too slowly to matter during the test.
    // Every frame counts, the register too: register + 2 texts empty it.
    let srv = TestServer::start_with(|c| {
        c.limits.rate_per_s = 0.01;
        c.limits.rate_burst = 3.0;
    });
    let mut alice = srv.client("alice", "web");
    for id in ["r1", "r2", "r3", "r4"] {
        let v = text(&alice, id, "bob", "hi");
        alice.send_json(v);
    }
    let mut got = std::collections::HashMap::new();
    for _ in 0..4 {
        let (id, code, msg) = alice.any_status();
        got.insert(id, (code, msg));
    }
    assert_eq!(got["r1"].0, 200, "{got:?}");
    assert_eq!(got["r2"].0, 200, "{got:?}");
    for id in ["r3", "r4"] {
        let (code, msg) = &got[id];
        assert_eq!(*code, 400, "{id}: {got:?}");
        assert!(
            msg.contains("rate"),
            "{id}: msg must mention the rate: {msg:?}"
        );
    }
}

#[test]
fn a_user_over_max_clients_is_400_then_close_1008() {
    let srv = TestServer::start_with(|c| c.limits.max_clients_per_user = 2);
    let mut web = srv.client("alice", "web");
    let _phone = srv.client("alice", "phone");
    let sid = srv.session_id("alice", "tab");
    let mut tab = unregistered(&srv, "alice");
    let v = register_frame("reg", "alice", json!(json!({"sessionId": sid}).to_string()));
    expect_register_refused(&mut tab, v, 400, "FAILED");
    // Replacing one of its own clients is always allowed.
    let mut web2 = srv.client("alice", "web");
    assert_eq!(web.expect_close(), (4000, "replaced".to_string()));
    let v = text(&web2, "after", "bob", "hi");
    expect_code(&mut web2, v, 200);
}

// ---------------------------------------------------------- check order

#[test]
fn check_order_unregistered_and_wrong_type_is_402() {
    let srv = TestServer::start();
    let mut c = unregistered(&srv, "alice");
    let mut v = frame("x", 3000, "carol", "", "");
    v["isSystem"] = json!(true);
    assert_eq!(ask(&mut c, v).0, 402);
    let v = frame("y", 9001, "alice", "bob", "hi");
    assert_eq!(ask(&mut c, v).0, 402);
}

#[test]
fn check_order_shape_before_registered_401() {
    let srv = TestServer::start();
    let mut c = unregistered(&srv, "alice");
    let mut v = frame("x", 3000, "carol", "", "");
    v["isSystem"] = json!("yes");
    assert_eq!(ask(&mut c, v).0, 401);
    let v = frame(&"x".repeat(65), 2001, "alice", "bob", "hi");
    expect_401_with_server_id(&mut c, &v.to_string(), "");
}

#[test]
fn check_order_wrong_type_wrong_from_bad_to_is_403() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let mut v = frame("x", 3000, "carol", "bob,,", "");
    v["isSystem"] = json!(true);
    assert_eq!(ask(&mut alice, v).0, 403);
}

#[test]
fn check_order_wrong_from_and_bad_to_is_405() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let v = frame("x", 2001, "carol", "bob,,ghost", "");
    assert_eq!(ask(&mut alice, v).0, 405);
    let v = frame("y", 9101, "carol", "a b", "nope");
    assert_eq!(ask(&mut alice, v).0, 405);
}

#[test]
fn check_order_bad_to_and_empty_body_is_406() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let v = text(&alice, "x", "ghost", "");
    assert_eq!(ask(&mut alice, v).0, 406);
    let v = frame("y", 9101, "alice", "", "not a status body");
    assert_eq!(ask(&mut alice, v).0, 406);
}

#[test]
fn check_order_empty_body_to_a_full_recipient_is_404() {
    let srv = TestServer::start_with(|c| c.limits.offline_per_user = 1);
    let mut alice = srv.client("alice", "web");
    let v = text(&alice, "fill", "bob", "hi");
    expect_code(&mut alice, v, 200);
    let v = text(&alice, "x", "bob", "");
    assert_eq!(ask(&mut alice, v).0, 404);
    let v = text(&alice, "y", "bob", "hi");
    assert_eq!(ask(&mut alice, v).0, 407);
}

#[test]
fn check_order_rate_limited_and_wrong_type_is_400() {
    let srv = TestServer::start_with(|c| {
        c.limits.rate_per_s = 0.01;
        c.limits.rate_burst = 1.0;
    });
    // The register took the only token.
    let mut alice = srv.client("alice", "web");
    let mut v = frame("x", 3000, "carol", "", "");
    v["isSystem"] = json!(true);
    let (code, msg) = ask(&mut alice, v);
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("rate"), "{msg:?}");
    // Shape still comes first.
    let mut v = frame("y", 2001, "alice", "bob", "hi");
    v.as_object_mut().unwrap().remove("to");
    assert_eq!(ask(&mut alice, v).0, 401);
}

#[test]
fn register_checks_run_in_order() {
    let srv = TestServer::start();
    let bob_sid = srv.session_id("bob", "web");
    let cases = [
        // isSystem (405) before the body (404) and the session (402).
        (json!({"isSystem": true, "body": "{}"}), 405),
        // Body (404) before the session and from.
        (json!({"from": "carol", "body": "nope"}), 404),
        // Session (402) before from (405).
        (
            json!({"from": "carol", "body": json!({"sessionId": uuid::Uuid::new_v4().to_string()}).to_string()}),
            402,
        ),
        // A valid session with the wrong from.
        (
            json!({"from": "carol", "body": json!({"sessionId": bob_sid}).to_string()}),
            405,
        ),
    ];
    for (i, (patch, code)) in cases.into_iter().enumerate() {
        let mut c = unregistered(&srv, "alice");
        let id = format!("reg{i}");
        let mut v = register_frame(&id, "alice", json!("{}"));
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        let (got, msg) = ask(&mut c, v);
        assert_eq!(got, code, "case {i} {patch}: {msg}");
    }
}

// ------------------------------------------------------- one answer each

#[test]
fn every_client_message_gets_exactly_one_9001() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let _bob = srv.client("bob", "web");
    let mut no_body = frame("b10", 2001, "alice", "bob", "x");
    no_body.as_object_mut().unwrap().remove("body");
    let mut system = frame("b11", 2001, "alice", "bob", "x");
    system["isSystem"] = json!(true);
    let sid = srv.session_id("alice", "tab");
    let reg = register_frame("b8", "alice", json!(json!({"sessionId": sid}).to_string()));
    let sent: Vec<(Value, i64)> = vec![
        (frame("g1", 2001, "alice", "bob", "good"), 200),
        (frame("b1", 3000, "alice", "bob", "x"), 403),
        (frame("b2", 2001, "bob", "bob", "x"), 405),
        (frame("b3", 2001, "alice", "", "x"), 406),
        (frame("b4", 2001, "alice", "bob", ""), 404),
        (frame("b5", 2001, "alice", "bob,ghost", "x"), 406),
        (frame("b6", 9101, "alice", "bob", RECEIVED), 401),
        (frame("b7", 9101, "alice", "bob", "thanks"), 404),
        (reg, 403),
        (frame("b9", 9001, "alice", "bob", RECEIVED), 403),
        (frame("g2", 2001, "alice", "alice", "note to self"), 200),
        (no_body, 401),
        (system, 405),
        (frame("g3", 2001, "alice", "bob,carol", "good"), 200),
        (frame("b12", 9101, "alice", "bob,carol", RECEIVED), 406),
    ];
    for (v, _) in &sent {
        alice.send_json(v.clone());
    }
    let mut answers: Vec<(String, i64)> = Vec::new();
    for _ in 0..sent.len() {
        let (id, code, _) = alice.any_status();
        answers.push((id, code));
    }
    let mut expected: Vec<(String, i64)> = sent
        .iter()
        .map(|(v, code)| (v["id"].as_str().unwrap().to_string(), *code))
        .collect();
    expected.sort();
    answers.sort();
    assert_eq!(answers, expected);
    // And nothing more: the next 9001 is the marker's.
    let v = text(&alice, "marker", "bob", "end");
    alice.send_json(v);
    let (id, code, msg) = alice.any_status();
    assert_eq!((id.as_str(), code), ("marker", 200), "extra 9001: {msg}");
}

#[test]
fn every_message_before_register_gets_exactly_one_9001() {
    let srv = TestServer::start();
    let mut c = unregistered(&srv, "alice");
    let sent = [
        (frame("p1", 2001, "alice", "bob", "x"), 402),
        (frame("p2", 9101, "alice", "bob", RECEIVED), 402),
        (frame("p3", 3000, "alice", "bob", "x"), 402),
        (frame("p4", 9001, "alice", "bob", "x"), 402),
    ];
    for (v, _) in &sent {
        c.send_json(v.clone());
    }
    let mut answers: Vec<(String, i64)> = (0..sent.len())
        .map(|_| {
            let (id, code, _) = c.any_status();
            (id, code)
        })
        .collect();
    answers.sort();
    let expected: Vec<(String, i64)> = sent
        .iter()
        .map(|(v, code)| (v["id"].as_str().unwrap().to_string(), *code))
        .collect();
    assert_eq!(answers, expected);
    let sid = srv.session_id("alice", "web");
    c.register(&sid);
    let (id, code, _) = c.any_status();
    assert_eq!((id.as_str(), code), ("reg", 200));
}

/// A refused message is delivered to nobody, its sender included.
#[test]
fn a_refused_message_is_not_echoed_to_the_sender() {
    let srv = TestServer::start();
    let mut alice = srv.client("alice", "web");
    let v = text(&alice, "self-bad", "alice,ghost", "hi");
    alice.send_json(v);
    // Read frame by frame: nothing but the 406 may come first...
    let m = alice.recv();
    assert_eq!(
        (m["type"].as_i64(), m["id"].as_str()),
        (Some(9001), Some("self-bad")),
        "{m}"
    );
    assert_eq!(status_body(&m).code, 406);
    // ...or after it.
    expect_nothing_before(&mut alice, "marker");
}
