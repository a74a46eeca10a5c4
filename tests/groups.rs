//! Groups (PROTOCOL.md section 10; decisions in docs/PROTOCOL.md): names,
//! sending to `#name`, delivery with the guarantee of section 7, who may
//! change a group, announcements, the `/api/groups` API with a login or the
//! API key, limits, restarts and users removed from the users file.

mod common;
use common::*;

use std::collections::BTreeSet;

use serde_json::{Value, json};

const API_KEY: &str = "0123456789abcdef-groups";

fn server() -> TestServer {
    TestServer::start_with(|c| c.api.key = Some(API_KEY.into()))
}

/// Who calls the API: a user's app token, the API key, or nobody.
#[derive(Clone, Copy)]
enum By<'a> {
    Token(&'a str),
    Key,
    Nobody,
}

/// `method /api/groups{path}` with `body` (JSON unless empty); status and
/// JSON answer.
fn api(srv: &TestServer, by: By, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bearer = format!("Bearer {API_KEY}");
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    match by {
        By::Token(t) => headers.push(("token", t)),
        By::Key => headers.push(("Authorization", &bearer)),
        By::Nobody => {}
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = request(
        method,
        &format!("{}/api/groups{path}", srv.http),
        &headers,
        &body,
    );
    (resp.status, body_of(&resp))
}

/// `POST /api/groups`; asserts 201 and returns the group.
fn create(srv: &TestServer, by: By, name: &str, title: &str, members: &[&str]) -> Value {
    let (status, g) = api(
        srv,
        by,
        "POST",
        "",
        Some(json!({"name": name, "title": title, "members": members})),
    );
    assert_eq!(status, 201, "create #{name}: {g}");
    g
}

/// `POST /api/groups/{name}/members`; status and answer.
fn members(srv: &TestServer, by: By, name: &str, change: Value) -> (u16, Value) {
    api(srv, by, "POST", &format!("/{name}/members"), Some(change))
}

/// Like [`members`], asserting 200.
fn change_ok(srv: &TestServer, by: By, name: &str, change: Value) -> Value {
    let (status, g) = members(srv, by, name, change.clone());
    assert_eq!(status, 200, "{change} on #{name}: {g}");
    g
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|n| n.as_str().expect("a string").to_string())
        .collect()
}

/// Asserts an error answer: the status and the JSON error shape.
fn assert_error(answer: (u16, Value), status: u16) -> String {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["code"].as_u64(), Some(u64::from(status)), "{body}");
    body["msg"].as_str().expect("msg").to_string()
}

/// The next message must be the group's announcement `body`.
fn expect_announcement(c: &mut Client, group: &str, body: &str) -> Value {
    let m = c.next_message();
    assert_eq!(m["type"], 2001, "{}: {m}", c.user);
    assert_eq!(m["isSystem"], true, "{}: {m}", c.user);
    assert_eq!(m["from"], "SYSTEM", "{}: {m}", c.user);
    assert_eq!(m["to"], format!("#{group}"), "{}: {m}", c.user);
    assert_eq!(m["body"], body, "{}: {m}", c.user);
    m
}

/// Sends a text and returns the 9001's (code, msg).
fn send(c: &mut Client, id: &str, to: &str) -> (i64, String) {
    c.text(id, to, &format!("body of {id}"));
    c.status(id)
}

/// alice (owner), bob and carol in #ops "Operations"; the tokens.
struct Ops {
    srv: TestServer,
    alice: String,
    bob: String,
    carol: String,
}

fn ops() -> Ops {
    let srv = server();
    let (alice, bob, carol) = (srv.token("alice"), srv.token("bob"), srv.token("carol"));
    create(
        &srv,
        By::Token(&alice),
        "ops",
        "Operations",
        &["bob", "carol"],
    );
    Ops {
        srv,
        alice,
        bob,
        carol,
    }
}

impl Ops {
    fn client(&self, user: &str, client: &str) -> Client {
        let token = match user {
            "alice" => &self.alice,
            "bob" => &self.bob,
            "carol" => &self.carol,
            _ => return self.srv.client(user, client),
        };
        self.srv.client_with(token, user, client)
    }
}

const CREATED: &str = "alice created the group Operations with bob, carol";

// ---------------------------------------------------------------- names

#[test]
fn a_group_name_is_1_to_63_of_lowercase_letters_digits_dot_underscore_and_dash() {
    let srv = server();
    let alice = srv.token("alice");
    let long_ok = "a".repeat(63);
    for name in ["a", "ops.team_1-x", long_ok.as_str()] {
        create(&srv, By::Token(&alice), name, "T", &[]);
    }
    let too_long = "b".repeat(64);
    for name in ["", "Ops", "o ps", "#ops", "ops/x", "öps", too_long.as_str()] {
        let answer = api(
            &srv,
            By::Token(&alice),
            "POST",
            "",
            Some(json!({"name": name, "title": "T"})),
        );
        assert_error(answer, 400);
    }
}

#[test]
fn a_group_title_is_1_to_100_characters() {
    let srv = server();
    let alice = srv.token("alice");
    // Characters, not bytes: 100 two-byte characters are fine.
    let hundred = "é".repeat(100);
    let g = create(&srv, By::Token(&alice), "ok", &hundred, &[]);
    assert_eq!(g["title"], hundred.as_str());
    for (name, title) in [("empty", String::new()), ("long", "x".repeat(101))] {
        let answer = api(
            &srv,
            By::Token(&alice),
            "POST",
            "",
            Some(json!({"name": name, "title": title})),
        );
        assert_error(answer, 400);
        let answer = api(
            &srv,
            By::Token(&alice),
            "PATCH",
            "/ok",
            Some(json!({ "title": title })),
        );
        assert_error(answer, 400);
    }
}

#[test]
fn a_group_is_named_with_a_hash_in_to_and_bare_in_url_paths() {
    let o = ops();
    let (status, g) = api(&o.srv, By::Token(&o.alice), "GET", "/ops", None);
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["name"], "ops", "the name, without #: {g}");
    let (status, _) = api(&o.srv, By::Token(&o.alice), "GET", "/%23ops", None);
    assert_eq!(status, 404, "#ops is not a name in a path");
    let mut alice = o.client("alice", "web");
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    assert_eq!(send(&mut alice, "g1", "#ops").0, 200);
    assert_eq!(expect_text(&mut bob, "g1")["to"], "#ops");
    // Spaces around it are trimmed, as around user ids.
    assert_eq!(send(&mut alice, "g2", " #ops ").0, 200);
    assert_eq!(expect_text(&mut bob, "g2")["to"], "#ops");
    // `ops` without # is a user id, and no user is called ops.
    assert_eq!(send(&mut alice, "u1", "ops").0, 406);
}

#[test]
fn a_group_is_name_title_members_owners_and_created_at_with_members_and_owners_sorted() {
    let srv = server();
    let carol = srv.token("carol");
    let before = now_ms();
    let g = create(
        &srv,
        By::Token(&carol),
        "ops",
        "Operations",
        &["erin", "bob"],
    );
    let keys: BTreeSet<&str> = g
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["name", "title", "members", "owners", "createdAt"]),
        "{g}"
    );
    assert_eq!(g["title"], "Operations");
    assert_eq!(names(&g["members"]), ["bob", "carol", "erin"]);
    assert_eq!(names(&g["owners"]), ["carol"]);
    let created = g["createdAt"].as_i64().expect("createdAt in ms");
    assert!(
        created >= before - 1000 && created <= now_ms() + 1000,
        "{g}"
    );
    let g = change_ok(&srv, By::Token(&carol), "ops", json!({"owners": ["bob"]}));
    assert_eq!(names(&g["owners"]), ["bob", "carol"]);
}

// ------------------------------------------------------------- sending

#[test]
fn a_group_must_be_the_only_entry_of_to() {
    let o = ops();
    create(&o.srv, By::Token(&o.alice), "dev", "Dev", &["bob"]);
    let mut alice = o.client("alice", "web");
    let mut bob = o.client("bob", "web");
    for (i, to) in ["bob,#ops", "#ops,bob", "#ops,#dev", "#ops,#ops"]
        .iter()
        .enumerate()
    {
        let (code, msg) = send(&mut alice, &format!("bad{i}"), to);
        assert_eq!(code, 406, "to {to:?}: {msg}");
    }
    // Nothing of them reached anyone: bob's next texts are the
    // announcements, then the marker.
    expect_announcement(&mut bob, "ops", CREATED);
    expect_announcement(&mut bob, "dev", "alice created the group Dev with bob");
    expect_nothing_before(&mut bob, "marker");
}

#[test]
fn a_text_from_a_user_who_is_not_a_member_is_406_not_a_member() {
    let o = ops();
    let mut dave = o.client("dave", "web");
    let mut bob = o.client("bob", "web");
    let (code, msg) = send(&mut dave, "d1", "#ops");
    assert_eq!((code, msg.as_str()), (406, "not a member of #ops"));
    expect_announcement(&mut bob, "ops", CREATED);
    expect_nothing_before(&mut bob, "marker");
}

#[test]
fn a_text_to_an_unknown_group_is_406() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    let (code, msg) = send(&mut alice, "x1", "#nosuch");
    assert_eq!(code, 406, "{msg}");
    assert!(msg.contains("#nosuch"), "msg names the group: {msg}");
}

#[test]
fn every_client_of_every_member_gets_a_group_text_and_the_senders_other_clients_a_copy() {
    let o = ops();
    let mut alice_web = o.client("alice", "web");
    let mut alice_phone = o.client("alice", "phone");
    let mut bob_web = o.client("bob", "web");
    let mut bob_phone = o.client("bob", "phone");
    let mut carol = o.client("carol", "web");
    for c in [
        &mut alice_web,
        &mut alice_phone,
        &mut bob_web,
        &mut bob_phone,
        &mut carol,
    ] {
        expect_announcement(c, "ops", CREATED);
    }
    send_ok(&mut alice_web, "g1", "#ops", "hello team");
    for c in [&mut bob_web, &mut bob_phone, &mut carol, &mut alice_phone] {
        let m = expect_text(c, "g1");
        assert_eq!(
            (&m["from"], &m["to"], &m["body"], &m["isSystem"]),
            (
                &json!("alice"),
                &json!("#ops"),
                &json!("hello team"),
                &json!(false)
            ),
            "{}: {m}",
            c.user
        );
    }
    // The sending connection does not get it; nobody gets it twice.
    expect_nothing_before(&mut alice_web, "m-a");
    expect_next(&mut alice_phone, "m-a");
    expect_nothing_before(&mut bob_web, "m-b");
    expect_next(&mut bob_phone, "m-b");
    expect_nothing_before(&mut carol, "m-c");
}

#[test]
fn texts_to_a_group_from_one_sender_arrive_in_the_order_accepted() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    for i in 0..20 {
        alice.text(&format!("o{i}"), "#ops", "in order");
    }
    for i in 0..20 {
        assert_eq!(alice.status(&format!("o{i}")).0, 200);
    }
    for i in 0..20 {
        expect_text(&mut bob, &format!("o{i}"));
    }
}

#[test]
fn the_first_9101_per_member_user_is_forwarded_to_the_sender() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    let mut alice_phone = o.client("alice", "phone");
    let mut bob_web = o.client("bob", "web");
    let mut bob_phone = o.client("bob", "phone");
    let mut carol = o.client("carol", "web");
    expect_announcement(&mut alice, "ops", CREATED);
    expect_announcement(&mut alice_phone, "ops", CREATED);
    send_ok(&mut alice, "g1", "#ops", "ack me");
    expect_text(&mut alice_phone, "g1");
    for c in [&mut bob_web, &mut bob_phone, &mut carol] {
        expect_announcement(c, "ops", CREATED);
        expect_text(c, "g1");
    }
    ack_expect(&mut bob_web, "g1", "alice", 200);
    let r = expect_next(&mut alice, "g1");
    assert_eq!(
        (&r["type"], &r["from"], &r["to"], &r["isSystem"]),
        (&json!(9101), &json!("bob"), &json!("alice"), &json!(false)),
        "{r}"
    );
    // bob's second client acknowledging is not a second receipt.
    ack_expect(&mut bob_phone, "g1", "alice", 200);
    ack_expect(&mut carol, "g1", "alice", 200);
    let r = expect_next(&mut alice, "g1");
    assert_eq!((&r["type"], &r["from"]), (&json!(9101), &json!("carol")));
    expect_nothing_before(&mut alice, "marker");
    // The sender's other connected clients get the receipts too.
    for from in ["bob", "carol"] {
        let r = expect_next(&mut alice_phone, "g1");
        assert_eq!((&r["type"], &r["from"]), (&json!(9101), &json!(from)));
    }
    expect_next(&mut alice_phone, "marker");
}

#[test]
fn a_9101_for_a_group_text_from_a_user_who_is_not_a_member_is_401() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    let mut dave = o.client("dave", "web");
    send_ok(&mut alice, "g1", "#ops", "not for dave");
    ack_expect(&mut dave, "g1", "alice", 401);
}

#[test]
fn a_members_client_that_was_offline_gets_a_group_text_its_other_client_acknowledged() {
    let o = ops();
    // bob's phone is known to the server, then goes offline.
    let phone = o.client("bob", "phone");
    drop(phone);
    let mut alice = o.client("alice", "web");
    let mut bob_web = o.client("bob", "web");
    let created = expect_announcement(&mut bob_web, "ops", CREATED);
    ack_expect(
        &mut bob_web,
        created["id"].as_str().expect("id"),
        "SYSTEM",
        200,
    );
    send_ok(&mut alice, "g1", "#ops", "for every device");
    expect_text(&mut bob_web, "g1");
    ack_expect(&mut bob_web, "g1", "alice", 200);
    let mut phone = o.client("bob", "phone");
    expect_announcement(&mut phone, "ops", CREATED);
    expect_text(&mut phone, "g1");
}

#[test]
fn an_unknown_group_or_a_non_member_is_406_before_an_empty_body_is_404() {
    // Section 5's order of checks: to (406) before body (404).
    let o = ops();
    let mut alice = o.client("alice", "web");
    let mut dave = o.client("dave", "web");
    alice.text("e1", "#nosuch", "");
    assert_eq!(alice.status("e1").0, 406, "unknown group, empty body");
    dave.text("e2", "#ops", "");
    assert_eq!(dave.status("e2").0, 406, "not a member, empty body");
    alice.text("e3", "#ops", "");
    assert_eq!(alice.status("e3").0, 404, "a member, empty body");
}

#[test]
fn a_deleted_groups_texts_are_gone_with_it() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    send_ok(&mut alice, "old1", "#ops", "before the delete");
    let (status, _) = api(&o.srv, By::Token(&o.alice), "DELETE", "/ops", None);
    assert_eq!(status, 204);
    create(&o.srv, By::Token(&o.alice), "ops", "Ops again", &["bob"]);
    // bob's queue and the new group's history do not have the old text.
    let mut bob = o.client("bob", "web");
    expect_announcement(
        &mut bob,
        "ops",
        "alice created the group Ops again with bob",
    );
    expect_nothing_before(&mut bob, "marker");
    let (status, h) = get(
        &format!("{}/api/message/history?with=%23ops", o.srv.http),
        &[("token", &o.bob)],
    );
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(1), "{h}");
}

#[test]
fn an_offline_member_gets_the_groups_texts_after_register() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    let mut bob = o.client("bob", "web");
    for i in 0..5 {
        send_ok(&mut alice, &format!("g{i}"), "#ops", "while carol is away");
    }
    // bob reads them all; that does not count for carol.
    expect_announcement(&mut bob, "ops", CREATED);
    for i in 0..5 {
        let id = format!("g{i}");
        expect_text(&mut bob, &id);
        ack_expect(&mut bob, &id, "alice", 200);
    }
    let mut carol = o.client("carol", "phone");
    expect_announcement(&mut carol, "ops", CREATED);
    for i in 0..5 {
        let m = expect_text(&mut carol, &format!("g{i}"));
        assert_eq!(m["to"], "#ops");
    }
    send_ok(&mut alice, "after", "#ops", "now");
    expect_text(&mut carol, "after");
}

#[test]
fn an_unacknowledged_group_text_is_delivered_again_after_the_next_register() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    send_ok(&mut alice, "g1", "#ops", "again");
    expect_text(&mut bob, "g1");
    drop(bob);
    let mut bob = o.client("bob", "web");
    // The announcement was not acknowledged either.
    expect_announcement(&mut bob, "ops", CREATED);
    expect_text(&mut bob, "g1");
}

#[test]
fn a_resent_group_text_is_answered_200_and_not_delivered_again() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    send_ok(&mut alice, "g1", "#ops", "once");
    send_ok(&mut alice, "g1", "#ops", "once");
    expect_text(&mut bob, "g1");
    expect_nothing_before(&mut bob, "marker");
}

#[test]
fn a_member_over_offline_per_user_refuses_the_whole_group_text_with_407_naming_it() {
    let srv = TestServer::start_with(|c| c.limits.offline_per_user = 3);
    let alice_token = srv.token("alice");
    create(
        &srv,
        By::Token(&alice_token),
        "ops",
        "Operations",
        &["bob", "carol"],
    );
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let mut alice_phone = srv.client_with(&alice_token, "alice", "phone");
    let mut bob = srv.client("bob", "web");
    // carol is offline: the announcement and two texts fill her queue of
    // 3; bob acknowledges everything.
    let created = expect_announcement(&mut bob, "ops", CREATED);
    ack_expect(&mut bob, created["id"].as_str().expect("id"), "SYSTEM", 200);
    for id in ["g1", "g2"] {
        send_ok(&mut alice, id, "#ops", "fill");
        expect_text(&mut bob, id);
        ack_expect(&mut bob, id, "alice", 200);
    }
    let (code, msg) = send(&mut alice, "g3", "#ops");
    assert_eq!(code, 407, "{msg}");
    assert!(msg.contains("carol"), "msg names carol: {msg}");
    assert!(!msg.contains("bob"), "only carol is full: {msg}");
    // Refused whole: bob did not get it either, nor alice's other client.
    expect_nothing_before(&mut bob, "marker");
    expect_announcement(&mut alice_phone, "ops", CREATED);
    for id in ["g1", "g2"] {
        expect_text(&mut alice_phone, id);
        // bob's receipt.
        assert_eq!(expect_next(&mut alice_phone, id)["type"], 9101);
    }
    expect_nothing_before(&mut alice_phone, "marker2");
}

// ------------------------------------------------------------- limits

#[test]
fn a_group_has_at_most_max_group_members() {
    let srv = TestServer::start_with(|c| c.limits.max_group_members = 3);
    let alice = srv.token("alice");
    let msg = assert_error(
        api(
            &srv,
            By::Token(&alice),
            "POST",
            "",
            Some(json!({"name": "big", "members": ["bob", "carol", "dave"]})),
        ),
        400,
    );
    assert!(msg.contains('3'), "{msg}");
    create(
        &srv,
        By::Token(&alice),
        "ops",
        "Operations",
        &["bob", "carol"],
    );
    assert_error(
        members(&srv, By::Token(&alice), "ops", json!({"add": ["dave"]})),
        400,
    );
    let (_, g) = api(&srv, By::Token(&alice), "GET", "/ops", None);
    assert_eq!(names(&g["members"]), ["alice", "bob", "carol"]);
}

#[test]
fn a_user_is_in_at_most_max_groups_per_user_groups() {
    let srv = TestServer::start_with(|c| c.limits.max_groups_per_user = 2);
    let alice = srv.token("alice");
    create(&srv, By::Token(&alice), "one", "One", &["bob"]);
    create(&srv, By::Token(&alice), "two", "Two", &[]);
    let answer = api(
        &srv,
        By::Token(&alice),
        "POST",
        "",
        Some(json!({"name": "three"})),
    );
    let msg = assert_error(answer, 400);
    assert!(msg.contains("alice"), "names who is over: {msg}");
    let carol = srv.token("carol");
    create(&srv, By::Token(&carol), "three", "Three", &["bob"]);
    let msg = assert_error(
        members(&srv, By::Token(&carol), "three", json!({"add": ["alice"]})),
        400,
    );
    assert!(msg.contains("alice"), "{msg}");
}

#[test]
fn a_group_of_500_members_gets_each_text_serialised_once() {
    // The binary, not the harness's in-process server: /metrics counts
    // for the whole process, and other tests run beside this one.
    let config = test_config("g500");
    let others: Vec<String> = (0..497).map(|i| format!("m{i:03}")).collect();
    add_users(&config, &others);
    let file = served::write_config(&config);
    let srv = served::Served::start(&file, None);
    let alice_token = login(&srv.http, "alice", &password("alice"));
    let auth = [("token", alice_token.as_str())];
    let mut all: Vec<&str> = vec!["bob", "carol"];
    all.extend(others.iter().map(String::as_str));
    let (status, g) = post_json(
        &format!("{}/api/groups", srv.http),
        &auth,
        json!({"name": "all", "title": "Everyone", "members": all}),
    );
    assert_eq!(status, 201, "{g}");
    assert_eq!(g["members"].as_array().map(Vec::len), Some(500));
    // The 501st is refused (the default max_group_members is 500).
    let (status, answer) = post_json(
        &format!("{}/api/groups/all/members", srv.http),
        &auth,
        json!({"add": ["dave"]}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["msg"].as_str().is_some_and(|m| m.contains("500")),
        "{answer}"
    );

    let client = |user: &str, pw: &str, name: &str| {
        let token = login(&srv.http, user, pw);
        registered(
            &srv.ws,
            user,
            name,
            &session_id_with(&srv.http, &token, name),
        )
    };
    let mut alice = client("alice", &password("alice"), "web");
    let mut alice_phone = client("alice", &password("alice"), "phone");
    let mut bob = client("bob", &password("bob"), "web");
    let mut carol = client("carol", &password("carol"), "web");
    // One of the 497 logs in too (they share a password).
    let mut m123 = client("m123", SHARED_PASSWORD, "web");
    for c in [&mut alice_phone, &mut bob, &mut carol, &mut m123] {
        let a = c.next_message();
        assert_eq!((&a["from"], &a["to"]), (&json!("SYSTEM"), &json!("#all")));
    }
    let built = metric(&srv.http, "edgeim_text_frames_built_total");
    let accepted = metric(&srv.http, "edgeim_texts_accepted_total");
    send_ok(&mut alice, "big1", "#all", "to five hundred");
    // Every connected member gets the same bytes.
    let frame = bob.recv_raw();
    for c in [&mut carol, &mut m123, &mut alice_phone] {
        assert_eq!(c.recv_raw(), frame, "{}", c.user);
    }
    let m: Value = serde_json::from_str(&frame).expect("JSON");
    assert_eq!((&m["id"], &m["to"]), (&json!("big1"), &json!("#all")));
    assert_eq!(
        metric(&srv.http, "edgeim_texts_accepted_total"),
        accepted + 1.0
    );
    assert_eq!(
        metric(&srv.http, "edgeim_text_frames_built_total"),
        built + 1.0,
        "one frame built for 500 members"
    );
    // The offline members have it in their queues: one of them registers.
    let mut m400 = client("m400", SHARED_PASSWORD, "web");
    m400.next_message();
    expect_text(&mut m400, "big1");
    drop(srv);
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_file(&file);
}

/// The value of an unlabelled metric at `http`.
fn metric(http: &str, name: &str) -> f64 {
    let (status, text) = get(&format!("{http}/metrics"), &[]);
    assert_eq!(status, 200);
    let text = text.as_str().expect("text").to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .expect("a number")
}

// ------------------------------------------------- who may change a group

#[test]
fn the_creator_is_the_first_owner_and_a_member() {
    let srv = server();
    let bob = srv.token("bob");
    let g = create(&srv, By::Token(&bob), "ops", "Operations", &[]);
    assert_eq!(names(&g["members"]), ["bob"]);
    assert_eq!(names(&g["owners"]), ["bob"]);
}

#[test]
fn owners_add_remove_make_owners_rename_and_delete() {
    let o = ops();
    let a = By::Token(&o.alice);
    let g = change_ok(
        &o.srv,
        a,
        "ops",
        json!({"add": ["dave"], "remove": ["bob"]}),
    );
    assert_eq!(names(&g["members"]), ["alice", "carol", "dave"]);
    let g = change_ok(&o.srv, a, "ops", json!({"owners": ["carol"]}));
    assert_eq!(names(&g["owners"]), ["alice", "carol"]);
    // The new owner may change the group too.
    let g = change_ok(&o.srv, By::Token(&o.carol), "ops", json!({"add": ["erin"]}));
    assert_eq!(names(&g["members"]), ["alice", "carol", "dave", "erin"]);
    let (status, g) = api(
        &o.srv,
        By::Token(&o.carol),
        "PATCH",
        "/ops",
        Some(json!({"title": "Ops team"})),
    );
    assert_eq!((status, &g["title"]), (200, &json!("Ops team")), "{g}");
    // A change that changes nothing is 400.
    assert_error(members(&o.srv, a, "ops", json!({"add": ["dave"]})), 400);
    assert_error(members(&o.srv, a, "ops", json!({})), 400);
    let (status, body) = api(&o.srv, a, "DELETE", "/ops", None);
    assert_eq!(status, 204, "{body}");
    assert_error(api(&o.srv, a, "GET", "/ops", None), 404);
    assert_error(api(&o.srv, By::Key, "GET", "/ops", None), 404);
}

#[test]
fn a_member_who_is_not_an_owner_gets_403_for_every_change_but_leaving() {
    let o = ops();
    let b = By::Token(&o.bob);
    for change in [
        json!({"add": ["dave"]}),
        json!({"remove": ["carol"]}),
        json!({"remove": ["bob", "carol"]}),
        json!({"owners": ["bob"]}),
    ] {
        assert_error(members(&o.srv, b, "ops", change), 403);
    }
    assert_error(
        api(&o.srv, b, "PATCH", "/ops", Some(json!({"title": "Mine"}))),
        403,
    );
    assert_error(api(&o.srv, b, "DELETE", "/ops", None), 403);
    let (_, g) = api(&o.srv, b, "GET", "/ops", None);
    assert_eq!(names(&g["members"]), ["alice", "bob", "carol"]);
    assert_eq!(g["title"], "Operations");
    // A member may remove itself: it leaves.
    let g = change_ok(&o.srv, b, "ops", json!({"remove": ["bob"]}));
    assert_eq!(names(&g["members"]), ["alice", "carol"]);
    assert_error(api(&o.srv, b, "GET", "/ops", None), 404);
}

#[test]
fn a_group_is_404_to_a_user_who_is_not_a_member_and_when_unknown() {
    let o = ops();
    let dave = o.srv.token("dave");
    let d = By::Token(&dave);
    assert_error(api(&o.srv, d, "GET", "/ops", None), 404);
    assert_error(
        api(&o.srv, By::Token(&o.alice), "GET", "/nosuch", None),
        404,
    );
    assert_error(
        api(&o.srv, By::Token(&o.alice), "GET", "/No-Such", None),
        404,
    );
    // A non-member cannot change it either: for it the group does not
    // exist (docs/PROTOCOL.md's decision).
    assert_error(members(&o.srv, d, "ops", json!({"add": ["dave"]})), 404);
    assert_error(members(&o.srv, d, "ops", json!({"remove": ["dave"]})), 404);
    assert_error(
        api(&o.srv, d, "PATCH", "/ops", Some(json!({"title": "x"}))),
        404,
    );
    assert_error(api(&o.srv, d, "DELETE", "/ops", None), 404);
    let (_, g) = api(&o.srv, By::Token(&o.alice), "GET", "/ops", None);
    assert_eq!(names(&g["members"]), ["alice", "bob", "carol"]);
}

#[test]
fn a_taken_name_is_409() {
    let o = ops();
    let dave = o.srv.token("dave");
    let msg = assert_error(
        api(
            &o.srv,
            By::Token(&dave),
            "POST",
            "",
            Some(json!({"name": "ops", "title": "Mine"})),
        ),
        409,
    );
    assert!(!msg.is_empty());
    assert_error(
        api(&o.srv, By::Key, "POST", "", Some(json!({"name": "ops"}))),
        409,
    );
}

#[test]
fn an_unknown_member_is_400_naming_it() {
    let srv = server();
    let alice = srv.token("alice");
    let msg = assert_error(
        api(
            &srv,
            By::Token(&alice),
            "POST",
            "",
            Some(json!({"name": "ops", "members": ["bob", "zed"]})),
        ),
        400,
    );
    assert!(msg.contains("zed") && !msg.contains("bob"), "{msg}");
    assert_error(api(&srv, By::Token(&alice), "GET", "/ops", None), 404);
    create(&srv, By::Token(&alice), "ops", "Operations", &["bob"]);
    let msg = assert_error(
        members(&srv, By::Token(&alice), "ops", json!({"add": ["yves"]})),
        400,
    );
    assert!(msg.contains("yves"), "{msg}");
}

#[test]
fn a_body_that_is_not_a_json_object_is_400() {
    let srv = server();
    let alice = srv.token("alice");
    for body in ["", "[]", "{", "\"ops\""] {
        let resp = request(
            "POST",
            &format!("{}/api/groups", srv.http),
            &[("token", &alice), ("Content-Type", "application/json")],
            body,
        );
        assert_eq!(resp.status, 400, "{body:?}: {}", resp.text());
    }
}

#[test]
fn the_groups_api_without_a_login_or_with_a_wrong_key_is_401() {
    let o = ops();
    assert_error(api(&o.srv, By::Nobody, "GET", "", None), 401);
    assert_error(api(&o.srv, By::Nobody, "GET", "/ops", None), 401);
    assert_error(
        api(&o.srv, By::Nobody, "POST", "", Some(json!({"name": "x"}))),
        401,
    );
    let resp = request(
        "GET",
        &format!("{}/api/groups", o.srv.http),
        &[("Authorization", "Bearer wrong-key")],
        "",
    );
    assert_eq!(resp.status, 401);
}

#[test]
fn another_method_is_405_with_allow() {
    let o = ops();
    let a = By::Token(&o.alice);
    for (method, path, allow) in [
        ("DELETE", "", "GET, POST"),
        ("POST", "/ops", "GET, PATCH, DELETE"),
        ("GET", "/ops/members", "POST"),
    ] {
        let resp = request(
            method,
            &format!("{}/api/groups{path}", o.srv.http),
            &[("token", &o.alice)],
            "",
        );
        assert_eq!(resp.status, 405, "{method} {path}");
        assert_eq!(resp.header("Allow"), Some(allow), "{method} {path}");
    }
    let (_, g) = api(&o.srv, a, "GET", "/ops", None);
    assert_eq!(g["name"], "ops");
}

#[test]
fn a_system_message_may_name_a_group() {
    let o = ops();
    let mut bob = o.client("bob", "web");
    let mut carol = o.client("carol", "web");
    let (status, answer) = post_json(
        &format!("{}/api/system/message", o.srv.http),
        &[("Authorization", &format!("Bearer {API_KEY}"))],
        json!({"to": "#ops", "body": "maintenance at 6"}),
    );
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().expect("id");
    for c in [&mut bob, &mut carol] {
        expect_announcement(c, "ops", CREATED);
        let m = expect_announcement(c, "ops", "maintenance at 6");
        assert_eq!(m["id"], id);
    }
}

#[test]
fn get_api_groups_lists_the_callers_groups_sorted_by_name_and_all_with_the_key() {
    let srv = server();
    let alice = srv.token("alice");
    let bob = srv.token("bob");
    create(&srv, By::Token(&alice), "zeta", "Z", &["bob"]);
    create(&srv, By::Token(&bob), "beta", "B", &[]);
    create(&srv, By::Token(&alice), "alpha", "A", &[]);
    create(&srv, By::Key, "gamma", "G", &["carol"]);
    let list = |by| {
        let (status, v) = api(&srv, by, "GET", "", None);
        assert_eq!(status, 200, "{v}");
        v["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["name"].as_str().expect("name").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(list(By::Token(&alice)), ["alpha", "zeta"]);
    assert_eq!(list(By::Token(&bob)), ["beta", "zeta"]);
    assert_eq!(list(By::Key), ["alpha", "beta", "gamma", "zeta"]);
    let erin = srv.token("erin");
    assert_eq!(list(By::Token(&erin)), Vec::<String>::new());
}

#[test]
fn the_api_key_manages_every_group_and_its_groups_may_have_no_owners() {
    let srv = server();
    let g = create(&srv, By::Key, "hr", "Human resources", &["bob", "carol"]);
    assert_eq!(names(&g["members"]), ["bob", "carol"]);
    assert_eq!(
        names(&g["owners"]),
        Vec::<String>::new(),
        "nobody created it"
    );
    let bob = srv.token("bob");
    // Without owners only the key manages it.
    assert_error(
        members(&srv, By::Token(&bob), "hr", json!({"add": ["dave"]})),
        403,
    );
    assert_error(
        api(
            &srv,
            By::Token(&bob),
            "PATCH",
            "/hr",
            Some(json!({"title": "x"})),
        ),
        403,
    );
    assert_error(api(&srv, By::Token(&bob), "DELETE", "/hr", None), 403);
    let g = change_ok(
        &srv,
        By::Key,
        "hr",
        json!({"add": ["dave"], "remove": ["carol"]}),
    );
    assert_eq!(names(&g["members"]), ["bob", "dave"]);
    let (status, g) = api(&srv, By::Key, "PATCH", "/hr", Some(json!({"title": "HR"})));
    assert_eq!((status, &g["title"]), (200, &json!("HR")));
    // Leaving does not make anyone owner of a group that had none.
    let g = change_ok(&srv, By::Token(&bob), "hr", json!({"remove": ["bob"]}));
    assert_eq!(names(&g["owners"]), Vec::<String>::new());
    // The key also manages a group a user made.
    let alice = srv.token("alice");
    create(&srv, By::Token(&alice), "ops", "Operations", &[]);
    let g = change_ok(&srv, By::Key, "ops", json!({"add": ["erin"]}));
    assert_eq!(names(&g["members"]), ["alice", "erin"]);
    let (status, _) = api(&srv, By::Key, "DELETE", "/ops", None);
    assert_eq!(status, 204);
    let (status, _) = api(&srv, By::Key, "DELETE", "/hr", None);
    assert_eq!(status, 204);
    let (_, all) = api(&srv, By::Key, "GET", "", None);
    assert_eq!(all["groups"], json!([]));
}

#[test]
fn when_the_last_owner_leaves_the_longest_standing_member_becomes_owner() {
    let srv = server();
    let alice = srv.token("alice");
    // carol joins first, bob a millisecond later at least: bob's name
    // sorts first, so only the join time can pick carol.
    let g = create(&srv, By::Token(&alice), "ops", "Operations", &["carol"]);
    let created = g["createdAt"].as_i64().expect("createdAt");
    while now_ms() <= created + 1 {
        std::hint::spin_loop();
    }
    change_ok(&srv, By::Token(&alice), "ops", json!({"add": ["bob"]}));
    let g = change_ok(&srv, By::Token(&alice), "ops", json!({"remove": ["alice"]}));
    assert_eq!(names(&g["members"]), ["bob", "carol"]);
    assert_eq!(names(&g["owners"]), ["carol"]);
}

#[test]
fn a_group_whose_last_member_leaves_is_deleted() {
    let srv = server();
    let alice = srv.token("alice");
    create(&srv, By::Token(&alice), "solo", "Solo", &[]);
    let (status, _) = members(
        &srv,
        By::Token(&alice),
        "solo",
        json!({"remove": ["alice"]}),
    );
    assert!(status == 200 || status == 204, "{status}");
    assert_error(api(&srv, By::Key, "GET", "/solo", None), 404);
    // Its name is free again.
    create(&srv, By::Token(&alice), "solo", "Solo again", &[]);
}

#[test]
fn a_text_to_a_deleted_group_is_406_and_a_removed_member_can_no_longer_send() {
    let o = ops();
    let mut bob = o.client("bob", "web");
    change_ok(
        &o.srv,
        By::Token(&o.alice),
        "ops",
        json!({"remove": ["bob"]}),
    );
    let (code, msg) = send(&mut bob, "b1", "#ops");
    assert_eq!((code, msg.as_str()), (406, "not a member of #ops"));
    let (status, _) = api(&o.srv, By::Token(&o.alice), "DELETE", "/ops", None);
    assert_eq!(status, 204);
    let mut alice = o.client("alice", "web");
    assert_eq!(send(&mut alice, "a1", "#ops").0, 406);
}

// ------------------------------------------------------- announcements

#[test]
fn the_creation_is_announced_to_every_member() {
    let o = ops();
    for user in ["alice", "bob", "carol"] {
        let mut c = o.client(user, "web");
        let m = expect_announcement(&mut c, "ops", CREATED);
        assert!(m["timestamp"].is_i64(), "{m}");
    }
}

#[test]
fn an_addition_is_announced_to_the_group_and_the_added_member() {
    let o = ops();
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    change_ok(&o.srv, By::Token(&o.alice), "ops", json!({"add": ["dave"]}));
    expect_announcement(&mut bob, "ops", "alice added dave");
    let mut dave = o.client("dave", "web");
    expect_announcement(&mut dave, "ops", "alice added dave");
    expect_nothing_before(&mut dave, "marker");
}

#[test]
fn a_removal_is_announced_also_to_the_removed_member() {
    let o = ops();
    let mut bob = o.client("bob", "web");
    let mut carol = o.client("carol", "web");
    for c in [&mut bob, &mut carol] {
        expect_announcement(c, "ops", CREATED);
    }
    change_ok(
        &o.srv,
        By::Token(&o.alice),
        "ops",
        json!({"remove": ["bob"]}),
    );
    expect_announcement(&mut carol, "ops", "alice removed bob");
    let removed = expect_announcement(&mut bob, "ops", "alice removed bob");
    // It was addressed to bob: he may acknowledge it.
    ack_expect(&mut bob, removed["id"].as_str().expect("id"), "SYSTEM", 200);
    // And nothing more of the group for bob.
    let mut alice = o.client("alice", "web");
    send_ok(&mut alice, "after", "#ops", "without bob");
    expect_text(&mut carol, "after");
    expect_nothing_before(&mut bob, "marker");
}

#[test]
fn a_removed_member_that_was_offline_gets_the_announcement_after_register() {
    let o = ops();
    change_ok(
        &o.srv,
        By::Token(&o.alice),
        "ops",
        json!({"remove": ["bob"]}),
    );
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    expect_announcement(&mut bob, "ops", "alice removed bob");
    expect_nothing_before(&mut bob, "marker");
}

#[test]
fn leaving_is_announced() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut alice, "ops", CREATED);
    expect_announcement(&mut bob, "ops", CREATED);
    change_ok(&o.srv, By::Token(&o.bob), "ops", json!({"remove": ["bob"]}));
    expect_announcement(&mut alice, "ops", "bob left");
    expect_announcement(&mut bob, "ops", "bob left");
}

#[test]
fn making_an_owner_is_announced() {
    let o = ops();
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    change_ok(
        &o.srv,
        By::Token(&o.alice),
        "ops",
        json!({"owners": ["carol"]}),
    );
    expect_announcement(&mut bob, "ops", "alice made carol an owner");
}

#[test]
fn the_hand_over_when_the_last_owner_leaves_is_announced() {
    let o = ops();
    let mut carol = o.client("carol", "web");
    expect_announcement(&mut carol, "ops", CREATED);
    // bob and carol joined together; the tie goes to the name.
    change_ok(
        &o.srv,
        By::Token(&o.alice),
        "ops",
        json!({"remove": ["alice"]}),
    );
    let m = carol.next_message();
    assert_eq!((&m["from"], &m["to"]), (&json!("SYSTEM"), &json!("#ops")));
    let body = m["body"].as_str().expect("body");
    assert!(
        body.contains("alice left") && body.contains("bob") && body.contains("owner"),
        "{body}"
    );
}

#[test]
fn a_rename_is_announced() {
    let o = ops();
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    let (status, _) = api(
        &o.srv,
        By::Token(&o.alice),
        "PATCH",
        "/ops",
        Some(json!({"title": "Ops team"})),
    );
    assert_eq!(status, 200);
    expect_announcement(&mut bob, "ops", "alice renamed the group to Ops team");
}

#[test]
fn a_change_is_announced_and_kept_even_when_a_members_offline_queue_is_full() {
    let srv = TestServer::start_with(|c| c.limits.offline_per_user = 1);
    let alice = srv.token("alice");
    // bob is offline: the creation fills his queue of 1.
    create(&srv, By::Token(&alice), "ops", "Operations", &["bob"]);
    let mut dave = srv.client("dave", "web");
    change_ok(&srv, By::Token(&alice), "ops", json!({"add": ["dave"]}));
    expect_announcement(&mut dave, "ops", "alice added dave");
    let (status, h) = get(
        &format!("{}/api/message/history?with=%23ops", srv.http),
        &[("token", &alice)],
    );
    assert_eq!(status, 200);
    let bodies: Vec<&str> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(
        bodies,
        [
            "alice added dave",
            "alice created the group Operations with bob"
        ]
    );
}

#[test]
fn a_change_by_the_api_key_is_announced() {
    let o = ops();
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    change_ok(&o.srv, By::Key, "ops", json!({"add": ["erin"]}));
    let m = bob.next_message();
    assert_eq!((&m["from"], &m["to"]), (&json!("SYSTEM"), &json!("#ops")));
    assert!(
        m["body"].as_str().expect("body").contains("added erin"),
        "{m}"
    );
}

// ----------------------------------------------- restarts and the users file

#[test]
fn groups_and_memberships_survive_a_restart() {
    let mut o = ops();
    change_ok(
        &o.srv,
        By::Token(&o.alice),
        "ops",
        json!({"add": ["dave"], "remove": ["carol"], "owners": ["bob"]}),
    );
    let (status, _) = api(
        &o.srv,
        By::Token(&o.alice),
        "PATCH",
        "/ops",
        Some(json!({"title": "Ops team"})),
    );
    assert_eq!(status, 200);
    let (_, before) = api(&o.srv, By::Key, "GET", "/ops", None);
    o.srv.restart();
    // Tokens are kept across restarts, as logins are.
    let (status, after) = api(&o.srv, By::Token(&o.alice), "GET", "/ops", None);
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before);
    assert_eq!(names(&after["members"]), ["alice", "bob", "dave"]);
    assert_eq!(names(&after["owners"]), ["alice", "bob"]);
    assert_eq!(after["title"], "Ops team");
    let mut alice = o.client("alice", "web");
    let mut dave = o.client("dave", "web");
    expect_announcement(
        &mut dave,
        "ops",
        "alice added dave; alice made bob an owner; alice removed carol",
    );
    expect_announcement(&mut dave, "ops", "alice renamed the group to Ops team");
    send_ok(&mut alice, "g1", "#ops", "after the restart");
    expect_text(&mut dave, "g1");
    let mut carol = o.client("carol", "web");
    assert_eq!(send(&mut carol, "c1", "#ops").0, 406);
}

#[test]
fn a_group_change_answered_survives_a_crash_with_its_announcement() {
    // The binary, killed with SIGKILL right after the answers.
    let config = test_config("gcrash");
    let file = served::write_config(&config);
    let mut srv = served::Served::start(&file, None);
    let alice_token = login(&srv.http, "alice", &password("alice"));
    let auth = [("token", alice_token.as_str())];
    let (status, g) = post_json(
        &format!("{}/api/groups", srv.http),
        &auth,
        json!({"name": "ops", "title": "Operations", "members": ["bob", "carol"]}),
    );
    assert_eq!(status, 201, "{g}");
    let (status, g) = post_json(
        &format!("{}/api/groups/ops/members", srv.http),
        &auth,
        json!({"remove": ["bob"]}),
    );
    assert_eq!(status, 200, "{g}");
    let mut alice = registered(
        &srv.ws,
        "alice",
        "web",
        &session_id_with(&srv.http, &alice_token, "web"),
    );
    send_ok(&mut alice, "g1", "#ops", "before the crash");
    srv.kill_hard();
    drop(alice);
    let srv = served::Served::start(&file, None);
    let (status, g) = get(&format!("{}/api/groups/ops", srv.http), &auth);
    assert_eq!(status, 200, "{g}");
    assert_eq!(names(&g["members"]), ["alice", "carol"]);
    let client = |user: &str| {
        let token = login(&srv.http, user, &password(user));
        registered(
            &srv.ws,
            user,
            "web",
            &session_id_with(&srv.http, &token, "web"),
        )
    };
    let mut carol = client("carol");
    expect_announcement(&mut carol, "ops", CREATED);
    expect_announcement(&mut carol, "ops", "alice removed bob");
    expect_text(&mut carol, "g1");
    let mut bob = client("bob");
    expect_announcement(&mut bob, "ops", CREATED);
    expect_announcement(&mut bob, "ops", "alice removed bob");
    expect_nothing_before(&mut bob, "marker");
    drop(srv);
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn an_unacknowledged_group_text_survives_a_restart() {
    let mut o = ops();
    let mut alice = o.client("alice", "web");
    send_ok(&mut alice, "g1", "#ops", "kept");
    drop(alice);
    o.srv.restart();
    let mut carol = o.client("carol", "web");
    expect_announcement(&mut carol, "ops", CREATED);
    expect_text(&mut carol, "g1");
}

#[test]
fn a_members_full_offline_queue_is_still_full_after_a_restart() {
    let mut srv = TestServer::start_with(|c| c.limits.offline_per_user = 2);
    let alice_token = srv.token("alice");
    create(
        &srv,
        By::Token(&alice_token),
        "ops",
        "Operations",
        &["carol"],
    );
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    // carol is offline: the creation and g1 fill her queue of 2.
    send_ok(&mut alice, "g1", "#ops", "one");
    drop(alice);
    srv.restart();
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let (code, msg) = send(&mut alice, "g2", "#ops");
    assert_eq!(code, 407, "{msg}");
    assert!(msg.contains("carol"), "{msg}");
}

#[test]
fn deleting_a_group_frees_the_offline_queues_its_texts_held() {
    let srv = TestServer::start_with(|c| c.limits.offline_per_user = 2);
    let alice_token = srv.token("alice");
    create(
        &srv,
        By::Token(&alice_token),
        "ops",
        "Operations",
        &["carol"],
    );
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    send_ok(&mut alice, "g1", "#ops", "one");
    assert_eq!(send(&mut alice, "d1", "carol").0, 407);
    let (status, _) = api(&srv, By::Token(&alice_token), "DELETE", "/ops", None);
    assert_eq!(status, 204);
    assert_eq!(send(&mut alice, "d2", "carol").0, 200);
    let mut carol = srv.client("carol", "web");
    expect_text(&mut carol, "d2");
    expect_nothing_before(&mut carol, "marker");
}

#[test]
fn a_user_removed_from_the_users_file_stays_listed_but_receives_nothing() {
    let o = ops();
    let mut alice = o.client("alice", "web");
    let mut bob = o.client("bob", "web");
    expect_announcement(&mut bob, "ops", CREATED);
    keep_users(&o.srv.config, |u| u != "carol");
    assert!(o.srv.reload());
    let (_, g) = api(&o.srv, By::Token(&o.alice), "GET", "/ops", None);
    assert_eq!(names(&g["members"]), ["alice", "bob", "carol"]);
    send_ok(&mut alice, "g1", "#ops", "carol is gone");
    expect_text(&mut bob, "g1");
    // carol comes back: nothing was kept for her while she was gone.
    keep_users(&o.srv.config, |_| true);
    assert!(o.srv.reload());
    let mut carol = o.srv.client("carol", "web");
    expect_announcement(&mut carol, "ops", CREATED);
    expect_nothing_before(&mut carol, "marker");
    // She can still be removed, and is then no longer listed.
    keep_users(&o.srv.config, |u| u != "carol");
    assert!(o.srv.reload());
    let g = change_ok(
        &o.srv,
        By::Token(&o.alice),
        "ops",
        json!({"remove": ["carol"]}),
    );
    assert_eq!(names(&g["members"]), ["alice", "bob"]);
}

#[test]
fn a_removed_user_does_not_count_against_the_offline_queue_of_a_group_text() {
    let srv = TestServer::start_with(|c| c.limits.offline_per_user = 1);
    let alice_token = srv.token("alice");
    create(
        &srv,
        By::Token(&alice_token),
        "ops",
        "Operations",
        &["carol"],
    );
    // carol's queue is full with the announcement; she leaves the users file.
    keep_users(&srv.config, |u| u != "carol");
    assert!(srv.reload());
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let (code, msg) = send(&mut alice, "g1", "#ops");
    assert_eq!(code, 200, "{msg}");
}

// ---------------------------------------------------- version 1 clients

/// The fields of a version 1 frame (section 3).
const V1_FIELDS: [&str; 7] = ["id", "type", "isSystem", "from", "to", "body", "timestamp"];

/// The names of a frame's fields.
fn field_names(frame: &Value) -> BTreeSet<&str> {
    frame
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn a_version_1_text_between_two_users_has_exactly_the_version_1_fields() {
    // Users in no group, on a server that has groups.
    let o = ops();
    let mut erin = o.client("erin", "web");
    let mut dave = o.client("dave", "web");
    send_ok(&mut erin, "v1", "dave", "plain");
    let m = expect_text(&mut dave, "v1");
    assert_eq!(field_names(&m), BTreeSet::from(V1_FIELDS), "{m}");
    ack_expect(&mut dave, "v1", "erin", 200);
    let r = expect_next(&mut erin, "v1");
    assert!(field_names(&r).is_subset(&BTreeSet::from(V1_FIELDS)), "{r}");
    // The 9001 is as in version 1 too.
    erin.text("v2", "dave", "again");
    let st = erin.status_frame("v2");
    assert!(
        field_names(&st).is_subset(&BTreeSet::from(V1_FIELDS)),
        "{st}"
    );
}
