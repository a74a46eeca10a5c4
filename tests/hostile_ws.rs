//! Hostile WebSocket clients (issue 10): a slow reader, trickled
//! handshakes, floods of garbage and pings, and a matrix of malformed
//! frames written by hand. Each case says what the server answers, and
//! that the server (or the connection, where it survives) still serves.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

fn online(srv: &TestServer, token: &str) -> BTreeMap<String, Vec<String>> {
    let (status, body) = get(
        &format!("{}/api/websocket/online", srv.http),
        &[("token", token)],
    );
    assert_eq!(status, 200, "online: {body}");
    let mut out = BTreeMap::new();
    for u in body["users"].as_array().into_iter().flatten() {
        let clients = u["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        out.insert(
            u["userId"].as_str().unwrap_or_default().to_string(),
            clients,
        );
    }
    out
}

fn is_online(srv: &TestServer, token: &str, user: &str, client: &str) -> bool {
    online(srv, token)
        .get(user)
        .is_some_and(|cs| cs.iter().any(|c| c == client))
}

/// One text from `from` to `to`'s user: 200 for the sender, the message for
/// the receiver.
fn round_trip(from: &mut Client, to: &mut Client, id: &str) {
    let to_user = to.user.clone();
    from.text(id, &to_user, &format!("body of {id}"));
    assert_eq!(from.status(id).0, 200, "{} → {to_user}: {id}", from.user);
    let m = to.next_message();
    assert_eq!(m["id"].as_str(), Some(id), "{to_user} got {m}");
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

// ------------------------------------------------------------ slow reader

/// A client that stops reading while another sends it large texts is
/// dropped about `write_timeout_s` after its socket stopped draining, not
/// several times that; nothing accepted is lost: all of it comes after its
/// next register.
#[test]
fn a_slow_reader_is_dropped_within_the_write_timeout_and_loses_nothing() {
    const WRITE_TIMEOUT_S: u64 = 2;
    let srv = TestServer::start_with(|c| c.websocket.write_timeout_s = WRITE_TIMEOUT_S);
    let token = srv.token("erin");
    let mut alice = srv.client("alice", "web");
    let bob = srv.client("bob", "phone");
    let body = "z".repeat(60 * 1024);
    let rss_before = vm_rss_kib();
    let started = Instant::now();
    let mut accepted: Vec<String> = Vec::new();
    let mut gone_after = None;
    // Bounded by the 9001 round trips and by the deadline.
    while started.elapsed() < Duration::from_secs(10 * WRITE_TIMEOUT_S) {
        let id = format!("slow-{}", accepted.len());
        alice.text(&id, "bob", &body);
        let (code, msg) = alice.status(&id);
        assert_eq!(code, 200, "{id}: {msg}");
        accepted.push(id);
        if !is_online(&srv, &token, "bob", "phone") {
            gone_after = Some(started.elapsed());
            break;
        }
    }
    let rss_after = vm_rss_kib();
    let gone_after = gone_after.unwrap_or_else(|| {
        panic!(
            "bob still online {:?} after {} texts of 60 KiB",
            started.elapsed(),
            accepted.len()
        )
    });
    eprintln!(
        "slow bob dropped after {gone_after:?} and {} texts; RSS {} → {} KiB",
        accepted.len(),
        rss_before,
        rss_after
    );
    assert!(
        gone_after < Duration::from_secs(3 * WRITE_TIMEOUT_S),
        "dropped after {gone_after:?} with write_timeout_s = {WRITE_TIMEOUT_S}"
    );
    drop(bob);
    let mut bob = srv.client("bob", "phone");
    for (n, id) in accepted.iter().enumerate() {
        let m = bob.next_message();
        assert_eq!(m["id"].as_str(), Some(id.as_str()), "redelivered {n}");
        bob.ack(id, "alice");
    }
    round_trip(&mut alice, &mut bob, "after");
}
