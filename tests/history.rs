//! History details (PROTOCOL.md section 12; decisions in docs/PROTOCOL.md):
//! `seq`, `beforeSeq`, exact pages, `with=#group`, `receivedBy` and
//! `GET /api/conversations` with unread counts.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

const API_KEY: &str = "0123456789abcdef-history";

fn server() -> TestServer {
    TestServer::start_with(|c| c.api.key = Some(API_KEY.into()))
}

/// `GET /api/message/history?{query}` as the holder of `token`; the
/// status and answer.
fn history_answer(srv: &TestServer, token: &str, query: &str) -> (u16, Value) {
    get(
        &format!("{}/api/message/history?{query}", srv.http),
        &[("token", token)],
    )
}

/// The messages of a history page; asserts 200.
fn history(srv: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let (status, v) = history_answer(srv, token, query);
    assert_eq!(status, 200, "history?{query}: {v}");
    v["messages"].as_array().expect("messages").clone()
}

/// `GET /api/conversations`; asserts 200.
fn conversations(srv: &TestServer, token: &str) -> Vec<Value> {
    let (status, v) = get(
        &format!("{}/api/conversations", srv.http),
        &[("token", token)],
    );
    assert_eq!(status, 200, "{v}");
    v["conversations"]
        .as_array()
        .expect("conversations")
        .clone()
}

/// A conversation's entry by its `with`.
fn conversation(list: &[Value], with: &str) -> Value {
    list.iter()
        .find(|c| c["with"] == with)
        .unwrap_or_else(|| panic!("no conversation with {with}: {list:?}"))
        .clone()
}

fn ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

fn seq(m: &Value) -> i64 {
    m["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("seq is a number: {m}"))
}

/// `receivedBy` as a list; panics when absent.
fn received_by(m: &Value) -> Vec<String> {
    m["receivedBy"]
        .as_array()
        .unwrap_or_else(|| panic!("no receivedBy: {m}"))
        .iter()
        .map(|u| u.as_str().expect("a user id").to_string())
        .collect()
}

/// The message `id` in the history with `with`.
fn find(srv: &TestServer, token: &str, with: &str, id: &str) -> Value {
    let all = history(srv, token, &format!("with={with}&limit=200"));
    all.into_iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the history with {with}"))
}

/// `POST /api/groups` as `token`; asserts 201.
fn create_group(srv: &TestServer, token: &str, name: &str, members: &[&str]) {
    let (status, g) = post_json(
        &format!("{}/api/groups", srv.http),
        &[("token", token)],
        json!({"name": name, "title": name, "members": members}),
    );
    assert_eq!(status, 201, "{g}");
}

/// `POST /api/groups/{name}/members` as `token`; asserts 200.
fn change_group(srv: &TestServer, token: &str, name: &str, change: Value) {
    let (status, g) = post_json(
        &format!("{}/api/groups/{name}/members", srv.http),
        &[("token", token)],
        change,
    );
    assert_eq!(status, 200, "{g}");
}

/// Sends `n` texts as fast as the socket takes them, then reads their
/// 9001s: the store commits them in batches that stamp many with the same
/// millisecond. Returns the ids in the order sent.
fn pipelined(c: &mut Client, to: &str, prefix: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i:04}")).collect();
    for id in &ids {
        c.text(id, to, id);
    }
    let mut answered = BTreeSet::new();
    while answered.len() < n {
        let (id, code, msg) = c.any_status();
        assert_eq!(code, 200, "{id}: {msg}");
        answered.insert(id);
    }
    ids
}

// ------------------------------------------------------------- seq and pages

#[test]
fn every_history_message_carries_a_seq_increasing_in_acceptance_order() {
    let srv = server();
    let alice_token = srv.token("alice");
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let mut bob = srv.client("bob", "web");
    send_ok(&mut alice, "a1", "bob", "one");
    expect_text(&mut bob, "a1");
    send_ok(&mut bob, "b1", "alice", "two");
    send_ok(&mut alice, "a2", "bob", "three");
    let page = history(&srv, &alice_token, "with=bob");
    assert_eq!(ids(&page), ["a2", "b1", "a1"], "newest first");
    let seqs: Vec<i64> = page.iter().map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    // Every field of the message is there too.
    let m = &page[1];
    assert_eq!(
        (&m["type"], &m["isSystem"], &m["from"], &m["to"], &m["body"]),
        (
            &json!(2001),
            &json!(false),
            &json!("bob"),
            &json!("alice"),
            &json!("two")
        )
    );
    assert!(m["timestamp"].is_i64(), "{m}");
}

#[test]
fn a_page_holds_exactly_min_of_limit_and_what_is_left() {
    let srv = server();
    let alice_token = srv.token("alice");
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    for i in 0..7 {
        send_ok(&mut alice, &format!("t{i}"), "bob", "x");
    }
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut query = "with=bob&limit=3".to_string();
    loop {
        let page = history(&srv, &alice_token, &query);
        sizes.push(page.len());
        let Some(last) = page.last() else { break };
        query = format!("with=bob&limit=3&beforeSeq={}", seq(last));
        seen.extend(ids(&page));
    }
    assert_eq!(sizes, [3, 3, 1, 0]);
    assert_eq!(seen, ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]);
}

#[test]
fn before_seq_is_exclusive_and_may_be_given_with_before() {
    let srv = server();
    let alice_token = srv.token("alice");
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    for i in 0..4 {
        send_ok(&mut alice, &format!("t{i}"), "bob", "x");
    }
    let all = history(&srv, &alice_token, "with=bob");
    assert_eq!(ids(&all), ["t3", "t2", "t1", "t0"]);
    let s2 = seq(&all[1]);
    let page = history(&srv, &alice_token, &format!("with=bob&beforeSeq={s2}"));
    assert_eq!(ids(&page), ["t1", "t0"]);
    // Both bounds: the stricter one wins.
    let far = now_ms() + 60_000;
    let page = history(
        &srv,
        &alice_token,
        &format!("with=bob&before={far}&beforeSeq={s2}"),
    );
    assert_eq!(ids(&page), ["t1", "t0"]);
    let t1_ms = all[2]["timestamp"].as_i64().expect("timestamp");
    let page = history(
        &srv,
        &alice_token,
        &format!("with=bob&before={t1_ms}&beforeSeq={}", seq(&all[0]) + 1),
    );
    assert!(
        page.iter()
            .all(|m| m["timestamp"].as_i64() < Some(t1_ms) && m["id"] != "t1"),
        "{page:?}"
    );
    let (status, _) = history_answer(&srv, &alice_token, "with=bob&beforeSeq=x");
    assert_eq!(status, 400);
}

#[test]
fn pages_of_exactly_limit_across_a_thousand_texts_that_share_milliseconds() {
    let mut srv = server();
    let alice_token = srv.token("alice");
    let bob_token = srv.token("bob");
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    // bob is offline: all of it waits in his queue and his history.
    let sent = pipelined(&mut alice, "bob", "k", 1000);
    drop(alice);
    // As the sender and as the recipient; and after a restart, from what
    // the store recovered.
    for (token, restart) in [
        (&alice_token, false),
        (&bob_token, false),
        (&bob_token, true),
    ] {
        if restart {
            srv.restart();
        }
        let with = if token == &alice_token {
            "bob"
        } else {
            "alice"
        };
        let mut pages = Vec::new();
        let mut got: Vec<Value> = Vec::new();
        let mut query = format!("with={with}&limit=200");
        loop {
            let page = history(&srv, token, &query);
            pages.push(page.len());
            let Some(last) = page.last() else { break };
            query = format!("with={with}&limit=200&beforeSeq={}", seq(last));
            got.extend(page);
        }
        assert_eq!(pages, [200, 200, 200, 200, 200, 0], "as {with}'s peer");
        let mut want = sent.clone();
        want.reverse();
        assert_eq!(ids(&got), want, "every text exactly once, newest first");
        let seqs: Vec<i64> = got.iter().map(seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]));
        let mut per_ms: BTreeMap<i64, usize> = BTreeMap::new();
        for m in &got {
            *per_ms
                .entry(m["timestamp"].as_i64().expect("ts"))
                .or_default() += 1;
        }
        assert!(
            per_ms.values().any(|&n| n > 1),
            "the texts were meant to share milliseconds: {} ms for 1000",
            per_ms.len()
        );
    }
    // The default page is 50; a larger limit is capped at 200.
    assert_eq!(history(&srv, &bob_token, "with=alice").len(), 50);
    assert_eq!(history(&srv, &bob_token, "with=alice&limit=500").len(), 200);
}

// ------------------------------------------------------------- with=#group

#[test]
fn with_a_group_is_for_its_members_only_and_403_for_anyone_else() {
    let srv = server();
    let alice_token = srv.token("alice");
    let dave_token = srv.token("dave");
    create_group(&srv, &alice_token, "ops", &["bob"]);
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    send_ok(&mut alice, "g1", "#ops", "members only");
    let (status, v) = history_answer(&srv, &dave_token, "with=%23ops");
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["msg"], "not a member of #ops");
    let (status, v) = history_answer(&srv, &dave_token, "with=%23nosuch");
    assert_eq!(status, 403, "{v}");
    // A member removed loses it.
    change_group(&srv, &alice_token, "ops", json!({"remove": ["bob"]}));
    let bob_token = srv.token("bob");
    let (status, v) = history_answer(&srv, &bob_token, "with=%23ops");
    assert_eq!(status, 403, "{v}");
    assert_eq!(history(&srv, &alice_token, "with=%23ops").len(), 3);
}

#[test]
fn with_a_group_lists_its_whole_kept_history_including_before_the_caller_joined() {
    let srv = server();
    let alice_token = srv.token("alice");
    let bob_token = srv.token("bob");
    let carol_token = srv.token("carol");
    create_group(&srv, &alice_token, "ops", &["bob"]);
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let mut bob = srv.client_with(&bob_token, "bob", "web");
    send_ok(&mut alice, "g1", "#ops", "before carol");
    send_ok(&mut bob, "g2", "#ops", "before carol too");
    change_group(&srv, &alice_token, "ops", json!({"add": ["carol"]}));
    send_ok(&mut alice, "g3", "#ops", "with carol");
    let page = history(&srv, &carol_token, "with=%23ops");
    let bodies: Vec<&str> = page
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(
        bodies,
        [
            "with carol",
            "alice added carol",
            "before carol too",
            "before carol",
            "alice created the group ops with bob"
        ]
    );
    for m in &page {
        assert_eq!(m["to"], "#ops", "{m}");
        assert!(
            m.get("receivedBy").is_none(),
            "carol sent none of them: {m}"
        );
    }
    assert_eq!(page[1]["isSystem"], true);
    assert_eq!(page[1]["from"], "SYSTEM");
    // Paging works there too.
    let older = history(
        &srv,
        &carol_token,
        &format!("with=%23ops&limit=2&beforeSeq={}", seq(&page[1])),
    );
    assert_eq!(ids(&older), ["g2", "g1"]);
}

#[test]
fn group_texts_are_in_the_groups_history_not_in_the_history_with_a_member() {
    let srv = server();
    let alice_token = srv.token("alice");
    create_group(&srv, &alice_token, "ops", &["bob"]);
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    send_ok(&mut alice, "g1", "#ops", "to the group");
    send_ok(&mut alice, "d1", "bob", "to bob");
    assert_eq!(ids(&history(&srv, &alice_token, "with=bob")), ["d1"]);
    let bob_token = srv.token("bob");
    assert_eq!(ids(&history(&srv, &bob_token, "with=alice")), ["d1"]);
}

// ------------------------------------------------------------- receivedBy

#[test]
fn received_by_lists_the_recipient_users_whose_first_9101_arrived_sorted() {
    let srv = server();
    let alice_token = srv.token("alice");
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let mut bob = srv.client("bob", "web");
    let mut carol_web = srv.client("carol", "web");
    let mut carol_phone = srv.client("carol", "phone");
    send_ok(&mut alice, "m1", "dave,carol,bob", "to three");
    assert_eq!(
        received_by(&find(&srv, &alice_token, "bob", "m1")),
        Vec::<String>::new()
    );
    expect_text(&mut carol_web, "m1");
    ack_expect(&mut carol_web, "m1", "alice", 200);
    assert_eq!(
        received_by(&find(&srv, &alice_token, "carol", "m1")),
        ["carol"]
    );
    expect_text(&mut bob, "m1");
    ack_expect(&mut bob, "m1", "alice", 200);
    expect_text(&mut carol_phone, "m1");
    ack_expect(&mut carol_phone, "m1", "alice", 200);
    // Sorted, not in the order of the receipts; each user once; dave
    // never acknowledged.
    for with in ["bob", "carol", "dave"] {
        assert_eq!(
            received_by(&find(&srv, &alice_token, with, "m1")),
            ["bob", "carol"],
            "with={with}"
        );
    }
}

#[test]
fn received_by_is_only_on_messages_the_caller_sent() {
    let srv = server();
    let bob_token = srv.token("bob");
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client_with(&bob_token, "bob", "web");
    send_ok(&mut alice, "a1", "bob", "to bob");
    expect_text(&mut bob, "a1");
    ack_expect(&mut bob, "a1", "alice", 200);
    send_ok(&mut bob, "b1", "alice", "to alice");
    let page = history(&srv, &bob_token, "with=alice");
    assert_eq!(ids(&page), ["b1", "a1"]);
    assert_eq!(received_by(&page[0]), Vec::<String>::new());
    assert!(page[1].get("receivedBy").is_none(), "{}", page[1]);
}

#[test]
fn a_note_to_self_lists_the_caller_once_another_of_its_clients_acknowledged_it() {
    let srv = server();
    let alice_token = srv.token("alice");
    let mut web = srv.client_with(&alice_token, "alice", "web");
    let mut phone = srv.client_with(&alice_token, "alice", "phone");
    send_ok(&mut web, "n1", "alice", "remember the milk");
    let m = find(&srv, &alice_token, "alice", "n1");
    assert_eq!(received_by(&m), Vec::<String>::new(), "no other client yet");
    expect_text(&mut phone, "n1");
    ack_expect(&mut phone, "n1", "alice", 200);
    let m = find(&srv, &alice_token, "alice", "n1");
    assert_eq!(received_by(&m), ["alice"]);
}

#[test]
fn a_group_texts_received_by_lists_the_members_who_acknowledged() {
    let srv = server();
    let alice_token = srv.token("alice");
    create_group(&srv, &alice_token, "ops", &["bob", "carol", "dave"]);
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let mut alice_phone = srv.client_with(&alice_token, "alice", "phone");
    let mut dave = srv.client("dave", "web");
    let mut bob = srv.client("bob", "web");
    let mut bob_phone = srv.client("bob", "phone");
    send_ok(&mut alice, "g1", "#ops", "ack me");
    for c in [&mut dave, &mut bob, &mut bob_phone, &mut alice_phone] {
        c.next_message();
        expect_text(c, "g1");
    }
    assert_eq!(
        received_by(&find(&srv, &alice_token, "%23ops", "g1")),
        Vec::<String>::new()
    );
    ack_expect(&mut dave, "g1", "alice", 200);
    ack_expect(&mut bob, "g1", "alice", 200);
    ack_expect(&mut bob_phone, "g1", "alice", 200);
    // alice's own copy acknowledged is no receipt.
    ack_expect(&mut alice_phone, "g1", "alice", 200);
    assert_eq!(
        received_by(&find(&srv, &alice_token, "%23ops", "g1")),
        ["bob", "dave"]
    );
    // The announcements have no receivedBy for a member: SYSTEM sent them.
    let page = history(&srv, &alice_token, "with=%23ops");
    assert!(page.last().expect("creation")["receivedBy"].is_null());
}

#[test]
fn received_by_is_kept_across_a_restart() {
    let mut srv = server();
    let alice_token = srv.token("alice");
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let mut bob = srv.client("bob", "web");
    send_ok(&mut alice, "m1", "bob", "kept");
    expect_text(&mut bob, "m1");
    ack_expect(&mut bob, "m1", "alice", 200);
    expect_next(&mut alice, "m1");
    drop((alice, bob));
    srv.restart();
    assert_eq!(received_by(&find(&srv, &alice_token, "bob", "m1")), ["bob"]);
}

// ------------------------------------------------------------- conversations

#[test]
fn conversations_are_newest_activity_first_with_their_last_message() {
    let srv = server();
    let alice_token = srv.token("alice");
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let mut bob = srv.client("bob", "web");
    let mut carol = srv.client("carol", "web");
    send_ok(&mut bob, "b1", "alice", "from bob");
    send_ok(&mut carol, "c1", "alice", "from carol");
    create_group(&srv, &alice_token, "ops", &["bob"]);
    send_ok(&mut bob, "g1", "#ops", "in ops");
    let (status, _) = post_json(
        &format!("{}/api/system/message", srv.http),
        &[("Authorization", &format!("Bearer {API_KEY}"))],
        json!({"to": "alice", "body": "maintenance tonight"}),
    );
    assert_eq!(status, 200);
    send_ok(&mut alice, "a2", "bob", "back to bob");
    let list = conversations(&srv, &alice_token);
    let withs: Vec<&str> = list
        .iter()
        .map(|c| c["with"].as_str().expect("with"))
        .collect();
    assert_eq!(withs, ["bob", "SYSTEM", "#ops", "carol"]);
    let bob_conv = &list[0];
    assert_eq!(bob_conv["last"]["id"], "a2");
    assert!(bob_conv["last"]["seq"].is_i64());
    assert_eq!(received_by(&bob_conv["last"]), Vec::<String>::new());
    assert_eq!(list[1]["last"]["body"], "maintenance tonight");
    assert_eq!(list[1]["last"]["from"], "SYSTEM");
    assert_eq!(list[2]["last"]["id"], "g1");
    assert_eq!(list[2]["last"]["to"], "#ops");
    assert_eq!(list[3]["last"]["id"], "c1");
    // Each entry's last is the message as the history shows it.
    let newest = history(&srv, &alice_token, "with=carol&limit=1");
    assert_eq!(list[3]["last"], newest[0]);
}

#[test]
fn unread_counts_texts_to_the_caller_no_client_acknowledged_and_goes_down_with_acks() {
    let srv = server();
    let alice_token = srv.token("alice");
    let mut bob = srv.client("bob", "web");
    for i in 0..3 {
        send_ok(&mut bob, &format!("b{i}"), "alice", "unread");
    }
    let unread = || conversation(&conversations(&srv, &alice_token), "bob")["unread"].clone();
    assert_eq!(unread(), 3);
    let mut web = srv.client_with(&alice_token, "alice", "web");
    let mut phone = srv.client_with(&alice_token, "alice", "phone");
    for c in [&mut web, &mut phone] {
        for i in 0..3 {
            expect_text(c, &format!("b{i}"));
        }
    }
    // Delivered is not read: only a 9101 counts.
    assert_eq!(unread(), 3);
    ack_expect(&mut web, "b0", "bob", 200);
    assert_eq!(unread(), 2);
    // Any client of the caller counts.
    ack_expect(&mut phone, "b2", "bob", 200);
    assert_eq!(unread(), 1);
    // Both acknowledging one text counts it once.
    ack_expect(&mut web, "b2", "bob", 200);
    assert_eq!(unread(), 1);
    // The caller's own texts are never unread.
    send_ok(&mut web, "a1", "bob", "mine");
    assert_eq!(unread(), 1);
    let bob_token = srv.token("bob");
    let bobs = conversations(&srv, &bob_token);
    assert_eq!(conversation(&bobs, "alice")["unread"], 1);
}

#[test]
fn unread_counts_survive_a_restart() {
    let mut srv = server();
    let alice_token = srv.token("alice");
    let mut bob = srv.client("bob", "web");
    send_ok(&mut bob, "b0", "alice", "one");
    send_ok(&mut bob, "b1", "alice", "two");
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    expect_text(&mut alice, "b0");
    ack_expect(&mut alice, "b0", "bob", 200);
    drop((alice, bob));
    srv.restart();
    let list = conversations(&srv, &alice_token);
    assert_eq!(conversation(&list, "bob")["unread"], 1);
}

#[test]
fn system_messages_are_the_system_conversation_and_carry_a_seq() {
    let srv = server();
    let alice_token = srv.token("alice");
    for body in ["one", "two"] {
        let (status, _) = post_json(
            &format!("{}/api/system/message", srv.http),
            &[("Authorization", &format!("Bearer {API_KEY}"))],
            json!({"to": "alice", "body": body}),
        );
        assert_eq!(status, 200);
    }
    let page = history(&srv, &alice_token, "with=SYSTEM");
    assert_eq!(page.len(), 2);
    assert!(seq(&page[0]) > seq(&page[1]));
    assert!(
        page.iter().all(|m| m.get("receivedBy").is_none()),
        "{page:?}"
    );
    let list = conversations(&srv, &alice_token);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["with"], &list[0]["unread"]),
        (&json!("SYSTEM"), &json!(2))
    );
    assert_eq!(list[0]["last"], page[0]);
}

#[test]
fn unread_in_a_group_counts_its_texts_and_announcements_to_the_caller() {
    let srv = server();
    let alice_token = srv.token("alice");
    let bob_token = srv.token("bob");
    create_group(&srv, &alice_token, "ops", &["bob"]);
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    send_ok(&mut alice, "g1", "#ops", "one");
    send_ok(&mut alice, "g2", "#ops", "two");
    let ops = conversation(&conversations(&srv, &bob_token), "#ops");
    assert_eq!(ops["unread"], 3, "the creation and two texts: {ops}");
    assert_eq!(ops["last"]["id"], "g2");
    // alice's: only the announcement is to her.
    let ops = conversation(&conversations(&srv, &alice_token), "#ops");
    assert_eq!(ops["unread"], 1, "{ops}");
    let mut bob = srv.client_with(&bob_token, "bob", "web");
    bob.next_message();
    expect_text(&mut bob, "g1");
    ack_expect(&mut bob, "g1", "alice", 200);
    let ops = conversation(&conversations(&srv, &bob_token), "#ops");
    assert_eq!(ops["unread"], 2);
    // Announcements are in the group's conversation, not in SYSTEM's.
    let list = conversations(&srv, &bob_token);
    assert!(list.iter().all(|c| c["with"] != "SYSTEM"), "{list:?}");
    assert_eq!(
        history(&srv, &bob_token, "with=SYSTEM"),
        Vec::<Value>::new()
    );
}

#[test]
fn a_note_to_self_is_the_conversation_with_oneself_and_never_unread() {
    let srv = server();
    let alice_token = srv.token("alice");
    let mut web = srv.client_with(&alice_token, "alice", "web");
    let _phone = srv.client_with(&alice_token, "alice", "phone");
    send_ok(&mut web, "n1", "alice", "note");
    let list = conversations(&srv, &alice_token);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["with"], &list[0]["unread"]),
        (&json!("alice"), &json!(0))
    );
    assert_eq!(list[0]["last"]["id"], "n1");
}

#[test]
fn a_group_page_is_exact_too() {
    let srv = server();
    let alice_token = srv.token("alice");
    let bob_token = srv.token("bob");
    create_group(&srv, &alice_token, "ops", &["bob"]);
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let sent = pipelined(&mut alice, "#ops", "g", 450);
    let mut pages = Vec::new();
    let mut got = Vec::new();
    let mut query = "with=%23ops&limit=200".to_string();
    loop {
        let page = history(&srv, &bob_token, &query);
        pages.push(page.len());
        let Some(last) = page.last() else { break };
        query = format!("with=%23ops&limit=200&beforeSeq={}", seq(last));
        got.extend(ids(&page));
    }
    // 450 texts and the creation.
    assert_eq!(pages, [200, 200, 51, 0]);
    let texts: Vec<String> = got
        .iter()
        .filter(|id| id.starts_with('g'))
        .cloned()
        .collect();
    let mut want = sent;
    want.reverse();
    assert_eq!(texts, want);
}

#[test]
fn received_by_keeps_a_member_who_acknowledged_and_then_left() {
    let srv = server();
    let alice_token = srv.token("alice");
    let bob_token = srv.token("bob");
    create_group(&srv, &alice_token, "ops", &["bob", "carol"]);
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    let mut bob = srv.client_with(&bob_token, "bob", "web");
    send_ok(&mut alice, "g1", "#ops", "ack and go");
    bob.next_message();
    expect_text(&mut bob, "g1");
    ack_expect(&mut bob, "g1", "alice", 200);
    change_group(&srv, &bob_token, "ops", json!({"remove": ["bob"]}));
    assert_eq!(
        received_by(&find(&srv, &alice_token, "%23ops", "g1")),
        ["bob"]
    );
}

#[test]
fn a_text_to_several_users_is_in_each_of_their_conversations() {
    let srv = server();
    let alice_token = srv.token("alice");
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    send_ok(&mut alice, "m1", "bob,carol", "to both");
    let list = conversations(&srv, &alice_token);
    let withs: BTreeSet<&str> = list
        .iter()
        .map(|c| c["with"].as_str().expect("with"))
        .collect();
    assert_eq!(withs, BTreeSet::from(["bob", "carol"]));
    for c in &list {
        assert_eq!(c["last"]["id"], "m1");
        assert_eq!(c["unread"], 0);
    }
    let carol_token = srv.token("carol");
    let carols = conversations(&srv, &carol_token);
    assert_eq!(carols.len(), 1, "{carols:?}");
    assert_eq!(carols[0]["with"], "alice");
    assert_eq!(carols[0]["unread"], 1);
}

#[test]
fn a_group_is_in_the_conversations_only_while_the_caller_is_a_member() {
    let srv = server();
    let alice_token = srv.token("alice");
    let bob_token = srv.token("bob");
    create_group(&srv, &alice_token, "ops", &["bob"]);
    let mut alice = srv.client_with(&alice_token, "alice", "web");
    send_ok(&mut alice, "g1", "#ops", "hi");
    conversation(&conversations(&srv, &bob_token), "#ops");
    change_group(&srv, &bob_token, "ops", json!({"remove": ["bob"]}));
    let list = conversations(&srv, &bob_token);
    assert!(list.iter().all(|c| c["with"] != "#ops"), "{list:?}");
}

#[test]
fn history_and_conversations_need_a_login() {
    let srv = server();
    let (status, _) = get(&format!("{}/api/message/history?with=bob", srv.http), &[]);
    assert_eq!(status, 401);
    let (status, _) = get(&format!("{}/api/conversations", srv.http), &[]);
    assert_eq!(status, 401);
    let (status, _) = get(
        &format!("{}/api/conversations", srv.http),
        &[("token", "not-a-token")],
    );
    assert_eq!(status, 401);
}
