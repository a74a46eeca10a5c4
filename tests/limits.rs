mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::Message;

/// GET /api/websocket/online as user → clientNames.
fn online(srv: &TestServer, token: &str) -> BTreeMap<String, Vec<String>> {
    let (status, body) = get(
        &format!("{}/api/websocket/online", srv.http),
        &[("token", token)],
    );
    assert_eq!(status, 200, "online: {body}");
    body["users"]
        .as_array()
        .expect("users array")
        .iter()
        .map(|u| {
            let clients = u["clients"]
                .as_array()
                .expect("clients array")
                .iter()
                .map(|c| c.as_str().expect("clientName").to_string())
                .collect();
            (u["userId"].as_str().expect("userId").to_string(), clients)
        })
        .collect()
}

fn is_online(list: &BTreeMap<String, Vec<String>>, user: &str, client: &str) -> bool {
    list.get(user)
        .is_some_and(|cs| cs.iter().any(|c| c == client))
}

/// The WebSocket URL of this server with another path.
fn ws_url(srv: &TestServer, path: &str) -> String {
    let base = srv
        .ws
        .strip_suffix(&format!("/{}", srv.config.websocket.context))
        .expect("ws url ends with the context");
    format!("{base}{path}")
}

/// Reads frames until the next Ping; panics on anything but text in between.
fn next_ping(c: &mut Client) {
    loop {
        match c.ws.read() {
            Ok(Message::Ping(_)) => return,
            Ok(Message::Text(_) | Message::Pong(_)) => continue,
            Ok(other) => panic!("{}: unexpected frame {other:?}", c.user),
            Err(e) => panic!("{}: read failed while waiting for a ping: {e}", c.user),
        }
    }
}

/// A 2001 frame from `user` to `to` whose JSON text is exactly `len` bytes.
fn text_frame_of_len(user: &str, to: &str, id: &str, len: usize) -> String {
    let frame = |body: &str| {
        serde_json::json!({"id": id, "type": 2001, "isSystem": false, "from": user, "to": to, "body": body})
            .to_string()
    };
    let overhead = frame("").len();
    assert!(len > overhead, "frame of {len} bytes cannot hold a message");
    let text = frame(&"x".repeat(len - overhead));
    assert_eq!(text.len(), len);
    text
}

#[test]
fn a_connection_that_does_not_register_in_time_is_closed_1008_register_timeout() {
    let srv = TestServer::start_with(|c| c.limits.register_timeout_s = 1);
    let mut idle = Client::open(&srv.ws, "nobody");
    let opened = Instant::now();
    let (code, reason) = idle.expect_close();
    assert_eq!((code, reason.as_str()), (1008, "register timeout"));
    assert!(
        opened.elapsed() >= Duration::from_millis(800),
        "closed after {:?}, before the 1 s register timeout",
        opened.elapsed()
    );
}

#[test]
fn a_client_that_registers_in_time_is_not_closed_by_the_register_timer() {
    let srv = TestServer::start_with(|c| c.limits.register_timeout_s = 1);
    let (sid_a, sid_b) = (
        srv.session_id("alice", "web"),
        srv.session_id("bob", "phone"),
    );
    let mut alice = Client::open(&srv.ws, "alice");
    let mut bob = Client::open(&srv.ws, "bob");
    alice.register(&sid_a);
    bob.register(&sid_b);
    assert_eq!(alice.status("reg").0, 200);
    assert_eq!(bob.status("reg").0, 200);
    // Opened after alice's and bob's registers were answered, so its
    // deadline is later than theirs: once it is closed, theirs have passed.
    let mut idle = Client::open(&srv.ws, "nobody");
    assert_eq!(idle.expect_close(), (1008, "register timeout".to_string()));
    round_trip(&mut alice, &mut bob, "after-deadline-1");
    round_trip(&mut bob, &mut alice, "after-deadline-2");
    let list = online(&srv, &srv.token("carol"));
    assert!(is_online(&list, "alice", "web") && is_online(&list, "bob", "phone"));
}

#[test]
fn a_message_over_max_message_bytes_closes_1009_and_others_go_on() {
    let srv = TestServer::start_with(|c| c.limits.max_message_bytes = 1024);
    let mut alice = srv.client("alice", "web");
    let mut carol = srv.client("carol", "web");
    let mut dave = srv.client("dave", "web");
    let big = text_frame_of_len("alice", "bob", "big", 2000);
    alice.send_raw(&big);
    assert_eq!(alice.expect_close(), (1009, "message too big".to_string()));
    // alice hangs up; the server lets go of her while carol and dave chat.
    drop(alice);
    let token = srv.token("carol");
    let mut gone = false;
    for i in 0..50 {
        round_trip(&mut carol, &mut dave, &format!("after-big-{i}"));
        round_trip(&mut dave, &mut carol, &format!("after-big-back-{i}"));
        if !online(&srv, &token).contains_key("alice") {
            gone = true;
            break;
        }
    }
    assert!(gone, "alice still online after 1009 and hanging up");
}

#[test]
fn a_message_of_exactly_max_message_bytes_is_accepted() {
    let srv = TestServer::start_with(|c| c.limits.max_message_bytes = 1024);
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "phone");
    let under = text_frame_of_len("alice", "bob", "under", 1023);
    alice.send_raw(&under);
    assert_eq!(alice.status("under").0, 200);
    let at = text_frame_of_len("alice", "bob", "at", 1024);
    alice.send_raw(&at);
    assert_eq!(alice.status("at").0, 200);
    for (id, frame) in [("under", &under), ("at", &at)] {
        let sent: Value = serde_json::from_str(frame).unwrap();
        let m = bob.next_message();
        assert_eq!(m["id"].as_str(), Some(id));
        assert_eq!(m["body"], sent["body"], "{id}: body changed on the way");
    }
}

#[test]
fn a_handshake_on_another_path_is_http_404() {
    let srv = TestServer::start();
    for path in ["/other", "/", "/websocket/more", "/websocketx"] {
        match tungstenite::connect(ws_url(&srv, path)) {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 404, "{path}")
            }
            Err(e) => panic!("{path}: expected HTTP 404, got {e}"),
            Ok(_) => panic!("{path}: handshake succeeded"),
        }
    }
    // The right path still works.
    let mut alice = srv.client("alice", "web");
    alice.text("ok", "bob", "hi");
    assert_eq!(alice.status("ok").0, 200);
}

#[test]
fn a_client_that_answers_pings_stays_connected_past_the_idle_timeout() {
    let srv = TestServer::start_with(|c| {
        c.websocket.ping_interval_s = 1;
        c.websocket.idle_timeout_s = 2;
    });
    let mut alice = srv.client("alice", "web");
    let registered = Instant::now();
    // tungstenite answers each ping with a pong on the next read.
    for _ in 0..3 {
        next_ping(&mut alice);
    }
    let elapsed = registered.elapsed();
    assert!(
        elapsed > Duration::from_secs(2),
        "3 pings came within {elapsed:?}, before the idle timeout"
    );
    alice.text("still-here", "bob", "hello");
    assert_eq!(alice.status("still-here").0, 200);
    let list = online(&srv, &srv.token("bob"));
    assert!(is_online(&list, "alice", "web"), "{list:?}");
}

#[test]
fn a_client_that_never_answers_pings_is_dropped_without_a_close_frame() {
    let srv = TestServer::start_with(|c| {
        c.websocket.ping_interval_s = 1;
        c.websocket.idle_timeout_s = 2;
    });
    let token = srv.token("carol");
    // bob is never read from again, so he never answers a ping.
    let mut bob = srv.client("bob", "phone");
    let mut alice = srv.client("alice", "web");
    assert!(is_online(&online(&srv, &token), "bob", "phone"));
    let mut gone_after = None;
    for ping in 1..=10 {
        next_ping(&mut alice);
        let list = online(&srv, &token);
        assert!(is_online(&list, "alice", "web"), "ping {ping}: {list:?}");
        if !list.contains_key("bob") {
            gone_after = Some(ping);
            break;
        }
    }
    let pings = gone_after.expect("bob still online after 10 pings (~10 s)");
    eprintln!("idle bob gone after {pings} pings of alice");
    // The server shut the socket: bob finds the pings it sent, then the
    // end of the stream, and no Close frame (the peer is presumed gone).
    for _ in 0..100 {
        match bob.ws.read() {
            Ok(Message::Close(c)) => panic!("idle client got a close frame {c:?}"),
            Ok(_) => continue,
            Err(_) => return,
        }
    }
    panic!("bob's socket still delivers frames after 100 reads");
}

#[test]
fn a_client_that_does_not_read_is_closed_as_slow_and_gets_its_messages_later() {
    let srv = TestServer::start_with(|c| {
        c.websocket.send_queue = 64;
        c.websocket.write_timeout_s = 1;
    });
    let token = srv.token("erin");
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "phone");
    let mut carol = srv.client("carol", "web");
    let mut dave = srv.client("dave", "web");
    let body = "z".repeat(8 * 1024);
    let mut accepted: Vec<String> = Vec::new();
    let mut trips = 0;
    let mut slowest_trip = Duration::ZERO;
    let mut check = |carol: &mut Client, dave: &mut Client| {
        trips += 1;
        let t = Instant::now();
        round_trip(carol, dave, &format!("cd-{trips}"));
        slowest_trip = slowest_trip.max(t.elapsed());
        !is_online(&online(&srv, &token), "bob", "phone")
    };
    let started = Instant::now();
    let mut bob_gone = false;
    for i in 0..5000 {
        let id = format!("flood-{i}");
        alice.text(&id, "bob", &body);
        let (code, msg) = alice.status(&id);
        assert_eq!(code, 200, "{id}: {msg}");
        accepted.push(id);
        if i % 16 == 15 && check(&mut carol, &mut dave) {
            bob_gone = true;
            break;
        }
    }
    // The flood may have ended just before the server noticed.
    for _ in 0..100 {
        if bob_gone {
            break;
        }
        bob_gone = check(&mut carol, &mut dave);
    }
    assert!(
        bob_gone,
        "bob still online after {} messages of 8 KiB",
        accepted.len()
    );
    eprintln!(
        "slow bob dropped after {} messages in {:?}; slowest carol→dave trip {slowest_trip:?}",
        accepted.len(),
        started.elapsed()
    );
    // Whatever reached the old socket before the close: a prefix of the
    // flood, in order; the close, if it got through, is 1008 "slow".
    let mut old = Vec::new();
    let mut close = None;
    for _ in 0..=accepted.len() + 10 {
        match bob.ws.read() {
            Ok(Message::Text(t)) => {
                let m: Value = serde_json::from_str(&t).unwrap();
                old.push(m["id"].as_str().unwrap_or_default().to_string());
            }
            Ok(Message::Close(c)) => {
                close = c.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert!(old.len() <= accepted.len(), "old socket got {old:?}");
    assert_eq!(
        old[..],
        accepted[..old.len()],
        "the old socket got the flood out of order"
    );
    if let Some(c) = &close {
        assert_eq!((c.0, c.1.as_str()), (1008, "slow"));
    }
    eprintln!("old socket read {} messages, close {close:?}", old.len());
    drop(bob);
    // The receipts of bob's acks would otherwise pile up for alice.
    drop(alice);
    let mut bob = srv.client("bob", "phone");
    for (n, id) in accepted.iter().enumerate() {
        let m = bob.next_message();
        assert_eq!(
            m["id"].as_str(),
            Some(id.as_str()),
            "redelivered message {n} of {}",
            accepted.len()
        );
        assert_eq!(m["body"].as_str().map(str::len), Some(body.len()));
        bob.ack(id, "alice");
    }
    round_trip(&mut carol, &mut dave, "cd-last");
}

#[test]
fn a_hostile_client_sending_garbage_does_not_disturb_others() {
    let srv = TestServer::start_with(|c| c.limits.max_message_bytes = 4096);
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "phone");
    let mut erin = srv.client("erin", "evil");
    let ws_addr = srv
        .ws
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let hostile = thread::spawn(move || {
        started_tx.send(()).unwrap();
        for i in 0..100 {
            erin.send_raw(&format!("this is not json {i}"));
            assert_eq!(erin.any_status().1, 401, "non-JSON text");
            erin.ws
                .send(Message::binary(vec![0xffu8, 0, 1, 2, i as u8]))
                .unwrap();
            assert_eq!(erin.any_status().1, 401, "binary frame");
            erin.send_raw("[1,2,3]");
            assert_eq!(erin.any_status().1, 401, "JSON array");
            erin.send_raw("{\"id\": \"cut");
            assert_eq!(erin.any_status().1, 401, "cut JSON");
            // A well-formed message ends the run of errors (after
            // MAX_ERRORS_IN_A_ROW, 32, the server closes): a 9001 is 403,
            // or 400 once the garbage has used the rate bucket up.
            erin.send_raw(&format!(
                r#"{{"id":"t{i}","type":9001,"isSystem":false,"from":"erin","to":"erin","body":"x"}}"#
            ));
            let code = erin.any_status().1;
            assert!(code == 403 || code == 400, "a 9001 from a client: {code}");
        }
        // Not WebSocket at all: the server hangs up.
        let mut raw = TcpStream::connect(&ws_addr).unwrap();
        raw.set_read_timeout(Some(WAIT)).unwrap();
        raw.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        if let Err(e) = raw.read_to_end(&mut sink) {
            assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the server kept a garbage handshake open: {e}"
            );
        }
        // And a frame over the limit: 1009.
        erin.send_raw(&"{".repeat(5000));
        erin.expect_close()
    });
    started_rx.recv_timeout(WAIT).unwrap();
    for i in 0..200 {
        round_trip(&mut alice, &mut bob, &format!("ab-{i}"));
    }
    let close = hostile.join().expect("hostile thread");
    assert_eq!(close, (1009, "message too big".to_string()));
    round_trip(&mut alice, &mut bob, "ab-after");
    round_trip(&mut bob, &mut alice, "ba-after");
}

#[test]
fn a_thousand_clients_register_at_once_and_are_all_served() {
    const N: usize = 1000;
    const THREADS: usize = 8;
    let srv = TestServer::start_with(|c| c.limits.max_clients_per_user = N);
    let tokens: Vec<String> = USERS.iter().map(|u| srv.token(u)).collect();
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let tokens = tokens.clone();
            let http = srv.http.clone();
            let ws = srv.ws.clone();
            thread::spawn(move || {
                let mine: Vec<usize> = (t..N).step_by(THREADS).collect();
                let mut clients: Vec<(usize, Client)> = mine
                    .iter()
                    .map(|&i| {
                        let u = i % USERS.len();
                        let sid = session_id_with(&http, &tokens[u], &format!("c{i}"));
                        (i, Client::registering(&ws, USERS[u], &sid))
                    })
                    .collect();
                for (i, c) in &mut clients {
                    c.assert_registered(&format!("c{i}"));
                }
                clients
            })
        })
        .collect();
    let mut clients: Vec<(usize, Client)> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("client thread"))
        .collect();
    clients.sort_by_key(|(i, _)| *i);
    assert_eq!(clients.len(), N);
    eprintln!("{N} clients registered in {:?}", started.elapsed());

    let list = online(&srv, &tokens[0]);
    let listed: BTreeSet<String> = list.values().flatten().cloned().collect();
    let expected: BTreeSet<String> = (0..N).map(|i| format!("c{i}")).collect();
    assert_eq!(listed, expected);
    for (i, _) in &clients {
        let user = USERS[i % USERS.len()];
        assert!(is_online(&list, user, &format!("c{i}")), "c{i} of {user}");
    }

    // alice's c0 writes to bob: every one of bob's clients gets it.
    clients[0].1.text("to-all-bobs", "bob", "hello every bob");
    assert_eq!(clients[0].1.status("to-all-bobs").0, 200);
    let mut reached = 0;
    for (i, c) in clients.iter_mut().filter(|(_, c)| c.user == "bob") {
        let m = c.next_message();
        assert_eq!(m["id"].as_str(), Some("to-all-bobs"), "c{i}: {m}");
        reached += 1;
    }
    assert_eq!(reached, N / USERS.len());
    eprintln!("{N} clients test done in {:?}", started.elapsed());
}

#[test]
fn stopping_the_server_closes_every_connection_1001() {
    let mut srv = TestServer::start();
    let mut clients: Vec<Client> = ["alice", "bob", "carol", "dave", "erin"]
        .iter()
        .map(|u| srv.client(u, "dev"))
        .collect();
    clients.push(srv.client("alice", "second"));
    // One that never registered: SIGTERM closes every connection.
    clients.push(Client::open(&srv.ws, "nobody"));
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| thread::spawn(move || (c.user.clone(), c.expect_close())))
        .collect();
    let t = Instant::now();
    srv.stop();
    let took = t.elapsed();
    for r in readers {
        let (user, close) = r.join().expect("reader thread");
        assert_eq!(close, (1001, "server shutting down".to_string()), "{user}");
    }
    assert!(took <= Duration::from_millis(2500), "stop took {took:?}");
    assert!(
        tungstenite::connect(&srv.ws).is_err(),
        "the listener still accepts after stop"
    );
}

/// §7: a client acknowledges each text it receives. Redelivery after
/// register must not count those acknowledgements' answers against the
/// client as if it were not reading: here it reads as fast as it can.
#[test]
fn a_client_acking_a_large_backlog_as_it_reads_is_not_closed_as_slow() {
    // The default write timeout: this test is about the queue, and a busy
    // machine may stall one large write for a second.
    let srv = TestServer::start_with(|c| c.websocket.send_queue = 64);
    let mut alice = srv.client("alice", "web");
    let body = "q".repeat(16 * 1024);
    let n = 2000;
    let t = Instant::now();
    // Sent in windows of 32 so alice's own answers never pile up.
    for w in (0..n).step_by(32) {
        for i in w..(w + 32).min(n) {
            alice.text(&format!("bl-{i}"), "bob", &body);
        }
        for i in w..(w + 32).min(n) {
            let id = format!("bl-{i}");
            assert_eq!(alice.status(&id).0, 200, "{id}");
        }
    }
    eprintln!("backlog of {n} sent in {:?}", t.elapsed());
    drop(alice);
    let mut bob = srv.client("bob", "phone");
    // Read the backlog, acknowledging each text as the protocol asks.
    let mut next = 0;
    let mut acks_answered = 0;
    while next < n {
        let m = match bob.ws.read() {
            Ok(Message::Text(t)) => serde_json::from_str::<Value>(&t).unwrap(),
            Ok(Message::Close(c)) => {
                panic!("closed after reading {next} of {n} redelivered messages: {c:?}")
            }
            Ok(_) => continue,
            Err(e) => panic!("read failed after {next} of {n} redelivered messages: {e}"),
        };
        if m["type"] == 9001 {
            acks_answered += 1;
            continue;
        }
        let id = format!("bl-{next}");
        assert_eq!(m["id"].as_str(), Some(id.as_str()));
        next += 1;
        let user = bob.user.clone();
        let ack = serde_json::json!({"id": id, "type": 9101, "isSystem": false, "from": user,
            "to": "alice", "body": "{\"code\":200,\"status\":\"SUCCESS\",\"msg\":\"received\"}"});
        if let Err(e) = bob.ws.send(Message::text(ack.to_string())) {
            // Say how the server ended it: a close frame, if one got through.
            let mut close = None;
            for _ in 0..n {
                match bob.ws.read() {
                    Ok(Message::Close(c)) => {
                        close = c;
                        break;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            panic!(
                "acknowledging failed after reading {next} of {n} redelivered messages \
                 ({acks_answered} acks answered): {e}; close frame: {close:?}"
            );
        }
    }
    eprintln!(
        "backlog of {n} read in {:?} ({acks_answered} acks answered so far)",
        t.elapsed()
    );
}

/// A connection closed as slow that keeps sending must still get its
/// Close 1008 "slow" once it reads, not a reset.
#[test]
fn a_connection_closed_as_slow_gets_close_1008_slow_even_if_it_keeps_sending() {
    // The default write timeout (10 s) keeps the blocked writer alive
    // while the test runs.
    let srv = TestServer::start_with(|c| c.websocket.send_queue = 64);
    let token = srv.token("erin");
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "phone");
    // Large messages: the writer, blocked mid-batch, cannot reach its
    // control queue without bob reading.
    let body = "z".repeat(48 * 1024);
    let mut accepted = Vec::new();
    for i in 0..5000 {
        let id = format!("flood-{i}");
        alice.text(&id, "bob", &body);
        assert_eq!(alice.status(&id).0, 200, "{id}");
        accepted.push(id);
        // Looking after every message paces the flood, so bob's writer
        // fills the socket and blocks before his queue fills.
        if !is_online(&online(&srv, &token), "bob", "phone") {
            break;
        }
    }
    assert!(
        !is_online(&online(&srv, &token), "bob", "phone"),
        "bob still online after {} messages of 48 KiB",
        accepted.len()
    );
    // bob, still not reading, sends small texts on the closing connection
    // (more than send_queue, so they cannot all wait in its queue).
    for i in 0..300 {
        let late = serde_json::json!({"id": format!("late-{i}"), "type": 2001, "isSystem": false,
            "from": "bob", "to": "alice", "body": "are you there?"});
        if bob.ws.send(Message::text(late.to_string())).is_err() {
            break; // the server hung up: the read below says how
        }
    }
    // Now bob reads: a prefix of the flood, then the close.
    let mut read = 0;
    let end = loop {
        match bob.ws.read() {
            Ok(Message::Text(_)) if read <= accepted.len() + 300 => read += 1,
            Ok(Message::Close(c)) => break Ok(c.map(|f| (u16::from(f.code), f.reason.to_string()))),
            Ok(Message::Text(_)) => break Err("more text than was ever sent".to_string()),
            Ok(_) => continue,
            Err(e) => break Err(e.to_string()),
        }
    };
    assert_eq!(
        end,
        Ok(Some((1008, "slow".to_string()))),
        "after {read} frames of the {} sent",
        accepted.len()
    );
}
