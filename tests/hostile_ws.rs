//! Hostile WebSocket clients (issue 10): a slow reader, trickled
//! handshakes, floods of garbage and pings, and a matrix of malformed
//! frames written by hand. Each case says what the server answers, and
//! that the server (or the connection, where it survives) still serves.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

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
    slow_reader(None);
}

/// The same with a budget too large to matter: the write deadline alone
/// drops it (SO_SNDTIMEO alone let each partial write start the clock
/// again: 8.7 s with a 2 s timeout, 43 s with 10 s).
#[test]
fn a_blocked_write_alone_drops_a_slow_reader_within_the_write_timeout() {
    slow_reader(Some(1 << 30));
}

fn slow_reader(send_queue: Option<usize>) {
    const WRITE_TIMEOUT_S: u64 = 2;
    let srv = TestServer::start_with(|c| {
        c.websocket.write_timeout_s = WRITE_TIMEOUT_S;
        if let Some(q) = send_queue {
            c.websocket.send_queue = q;
        }
    });
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
        "slow bob (send_queue {send_queue:?}) dropped after {gone_after:?} and {} texts; RSS {} → {} KiB",
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

/// A client that sends 9101s for messages that do not exist (each answered
/// 401) and never reads its answers is closed once its answers pile up; it
/// used to grow its queue without limit, since answers did not count.
#[test]
fn a_client_that_does_not_read_its_own_answers_is_closed() {
    let srv = TestServer::start();
    let token = srv.token("erin");
    let mut carol = srv.client("carol", "web");
    let mut dave = srv.client("dave", "web");
    let mut erin = srv.client("erin", "evil");
    let started = Instant::now();
    let mut sent = 0;
    let closed = loop {
        for _ in 0..2000 {
            let ack = frames_ack(&format!("nope-{sent}"), "erin", "alice");
            if erin.ws.send(tungstenite::Message::text(ack)).is_err() {
                break;
            }
            sent += 1;
        }
        if !is_online(&srv, &token, "erin", "evil") {
            break true;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    assert!(closed, "erin still online after {sent} unread answers");
    eprintln!("erin closed after {sent} 9101s in {:?}", started.elapsed());
    round_trip(&mut carol, &mut dave, "cd-after");
}

fn frames_ack(id: &str, me: &str, to: &str) -> String {
    edgeim::client::frames::ack(id, me, to).to_string()
}

// ------------------------------------------------ raw frames, by hand

/// A WebSocket connection driven byte by byte.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

fn ws_addr(srv: &TestServer) -> String {
    srv.ws
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Sends an HTTP request as it is; returns what came back before the
/// server closed or went quiet (empty if nothing).
fn http_exchange(srv: &TestServer, request: &str) -> String {
    let mut tcp = TcpStream::connect(ws_addr(srv)).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn upgrade_request(path: &str, extra: &[&str], skip: &[&str]) -> String {
    let mut headers = vec![
        "Host: 127.0.0.1".to_string(),
        "Upgrade: websocket".to_string(),
        "Connection: Upgrade".to_string(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_string(),
        "Sec-WebSocket-Version: 13".to_string(),
    ];
    headers.retain(|h| !skip.iter().any(|s| h.starts_with(s)));
    headers.extend(extra.iter().map(|h| h.to_string()));
    format!("GET {path} HTTP/1.1\r\n{}\r\n\r\n", headers.join("\r\n"))
}

/// A client frame: FIN, RSV bits (0–7), opcode, masked or not.
fn frame(fin: bool, rsv: u8, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        f.push(mask_bit | n as u8);
    } else if n <= 0xffff {
        f.push(mask_bit | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(mask_bit | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    if masked {
        let key = [0x37u8, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

fn text_frame(s: &str) -> Vec<u8> {
    frame(true, 0, 1, true, s.as_bytes())
}

fn close_frame(payload: &[u8]) -> Vec<u8> {
    frame(true, 0, 8, true, payload)
}

impl Raw {
    fn open(srv: &TestServer) -> Raw {
        let mut tcp = TcpStream::connect(ws_addr(srv)).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        tcp.set_write_timeout(Some(WAIT)).unwrap();
        tcp.write_all(upgrade_request("/websocket", &[], &[]).as_bytes())
            .unwrap();
        let mut raw = Raw {
            tcp,
            buf: Vec::new(),
        };
        let head = raw.read_until_head();
        assert!(head.starts_with("HTTP/1.1 101"), "handshake: {head}");
        raw
    }

    fn registered(srv: &TestServer, user: &str, client: &str) -> Raw {
        let mut raw = Raw::open(srv);
        let sid = srv.session_id(user, client);
        let reg = edgeim::client::frames::register("reg", user, &sid);
        raw.send(&text_frame(&reg.to_string()));
        assert_eq!(raw.status(), ("reg".to_string(), 200));
        raw
    }

    fn read_until_head(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 4);
                return head;
            }
            assert!(self.fill(), "no handshake answer");
        }
    }

    /// Reads more bytes; false at the end of the stream (or an error).
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.tcp.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed: what it sent says why.
        let _ = self.tcp.write_all(bytes);
    }

    /// The next server frame (opcode, payload), or `None` at the end.
    fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let opcode = self.buf[0] & 0x0f;
                let len7 = (self.buf[1] & 0x7f) as usize;
                let (len, start) = match len7 {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && self.buf.len() >= start + len {
                    let payload = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    return Some((opcode, payload));
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next 9001: (id, code). Panics on a close or the end.
    fn status(&mut self) -> (String, i64) {
        loop {
            match self.next() {
                Some((1, p)) => {
                    let v: Value = serde_json::from_slice(&p).unwrap();
                    if v["type"] == 9001 {
                        let (code, _) = status_of(&v);
                        return (v["id"].as_str().unwrap_or_default().to_string(), code);
                    }
                }
                Some((8, p)) => panic!("closed: {:?}", close_code(&p)),
                Some(_) => continue,
                None => panic!("the connection ended"),
            }
        }
    }

    /// Reads until the server's Close; its code (1005 without one).
    /// `None` if the connection ended without a Close frame.
    fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next() {
                Some((8, p)) => return Some(close_code(&p)),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// The connection still works: a text gets its 200.
    fn still_serves(&mut self, n: usize) {
        let id = format!("ok-{n}");
        let t = edgeim::client::frames::text(&id, "alice", "bob", "still here");
        self.send(&text_frame(&t.to_string()));
        // Answers to the case itself (a fragmented text's) may come first.
        loop {
            let (got, code) = self.status();
            if got == id {
                assert_eq!(code, 200, "{id}");
                return;
            }
        }
    }
}

fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 1005,
    }
}

/// A text frame from alice to bob with `body`, padded by `pad` spaces
/// after the last field.
fn alice_text(id: &str, body: &str) -> String {
    json!({"id": id, "type": 2001, "isSystem": false, "from": "alice", "to": "bob", "body": body})
        .to_string()
}

/// alice's text with one field replaced (or removed, with `Value::Null`
/// under `"-"` prefixed name).
fn with(field: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(&alice_text("w", "hi")).unwrap();
    if let Some(name) = field.strip_prefix('-') {
        v.as_object_mut().unwrap().remove(name);
    } else {
        v[field] = value;
    }
    v.to_string()
}

/// A text of exactly `total` bytes.
fn text_of_size(id: &str, total: usize) -> String {
    let empty = alice_text(id, "");
    let body = "x".repeat(total - empty.len());
    let t = alice_text(id, &body);
    assert_eq!(t.len(), total);
    t
}

fn nested(depth: usize) -> String {
    format!(
        r#"{{"id":"deep","type":2001,"isSystem":false,"from":"alice","to":"bob","body":"x","extra":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// What a malformed input gets.
#[derive(Debug)]
enum Expect {
    /// This 9001 code; the connection stays open and serves.
    Status(i64),
    /// This 9001 code for this id (echoed as the last duplicate, say).
    StatusFor(&'static str, i64),
    /// A pong with this many bytes; the connection stays open.
    Pong(usize),
    /// A Close frame with this code; the server still serves others.
    Close(u16),
}

fn status_cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let t = |s: &str| text_frame(s);
    let mut recipients: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    recipients.dedup();
    vec![
        ("not JSON", t("nope"), Status(401)),
        ("an empty text frame", t(""), Status(401)),
        ("null", t("null"), Status(401)),
        ("an array", t("[1,2]"), Status(401)),
        ("a JSON string", t("\"str\""), Status(401)),
        ("an empty object", t("{}"), Status(401)),
        ("an empty id", t(&with("id", json!(""))), Status(401)),
        (
            "an id of 65 characters",
            t(&with("id", json!("i".repeat(65)))),
            Status(401),
        ),
        (
            "an id of 65 non-ASCII characters",
            t(&with("id", json!("é".repeat(65)))),
            Status(401),
        ),
        (
            "an id of 64 non-ASCII characters",
            t(&with("id", json!("é".repeat(64)))),
            Status(200),
        ),
        (
            "control characters in the id",
            t(&with("id", json!("a\u{1}\u{1f}\u{7f}b"))),
            Status(200),
        ),
        ("a number as id", t(&with("id", json!(7))), Status(401)),
        (
            "type as a string",
            t(&with("type", json!("2001"))),
            Status(401),
        ),
        (
            "type 2001.0",
            t(&alice_text("w", "hi").replace("2001", "2001.0")),
            Status(401),
        ),
        (
            "type 1e400",
            t(&alice_text("w", "hi").replace("2001", "1e400")),
            Status(401),
        ),
        (
            "type 2^64",
            t(&alice_text("w", "hi").replace("2001", "18446744073709551616")),
            Status(401),
        ),
        (
            "type -2^63-1",
            t(&alice_text("w", "hi").replace("2001", "-9223372036854775809")),
            Status(401),
        ),
        (
            "type 2^63-1",
            t(&alice_text("w", "hi").replace("2001", "9223372036854775807")),
            Status(403),
        ),
        (
            "a huge number elsewhere",
            t(&alice_text("w", "hi").replace("\"isSystem\"", "\"n\":1e999999,\"isSystem\"")),
            Status(401),
        ),
        ("type 9001", t(&with("type", json!(9001))), Status(403)),
        ("type 0", t(&with("type", json!(0))), Status(403)),
        (
            "a second register",
            t(&with("type", json!(1000))),
            Status(403),
        ),
        (
            "isSystem as a string",
            t(&with("isSystem", json!("false"))),
            Status(401),
        ),
        (
            "isSystem true",
            t(&with("isSystem", json!(true))),
            Status(405),
        ),
        (
            "from another user",
            t(&with("from", json!("bob"))),
            Status(405),
        ),
        (
            "a NUL in from",
            t(&with("from", json!("al\u{0}ice"))),
            Status(405),
        ),
        ("an empty to", t(&with("to", json!(""))), Status(406)),
        (
            "an empty entry in to",
            t(&with("to", json!("bob,,carol"))),
            Status(406),
        ),
        ("SYSTEM in to", t(&with("to", json!("SYSTEM"))), Status(406)),
        (
            "a control character in to",
            t(&with("to", json!("b\u{7}ob"))),
            Status(406),
        ),
        ("non-ASCII in to", t(&with("to", json!("bób"))), Status(406)),
        (
            "101 recipients",
            t(&with("to", json!(recipients.join(",")))),
            Status(406),
        ),
        ("an empty body", t(&with("body", json!(""))), Status(404)),
        (
            "an object body on a 2001",
            t(&with("body", json!({"x": 1}))),
            Status(401),
        ),
        ("an array body", t(&with("body", json!([1]))), Status(401)),
        ("a null body", t(&with("body", Value::Null)), Status(401)),
        ("no body", t(&with("-body", Value::Null)), Status(401)),
        (
            "a 9101 whose body is no StatusBody",
            t(&with("type", json!(9101)).replace("\"hi\"", "\"thanks\"")),
            Status(404),
        ),
        (
            "a 9101 for a message never received",
            t(&edgeim::client::frames::ack("made-up", "alice", "bob").to_string()),
            Status(401),
        ),
        (
            "duplicate keys: the last counts",
            t(&alice_text("d1", "hi").replace("{\"", "{\"id\":\"d0\",\"")),
            StatusFor("d1", 200),
        ),
        (
            "JSON nested 64 deep, the frame included",
            t(&nested(63)),
            Status(200),
        ),
        ("JSON nested 65 deep", t(&nested(64)), Status(401)),
        ("JSON nested 100 deep", t(&nested(100)), Status(401)),
        ("JSON nested 1,000 deep", t(&nested(1000)), Status(401)),
        (
            "exactly max_message_bytes (64 KiB)",
            t(&text_of_size("max", 64 * 1024)),
            Status(200),
        ),
        (
            "max_message_bytes - 1",
            t(&text_of_size("max-1", 64 * 1024 - 1)),
            Status(200),
        ),
        (
            "a binary frame",
            frame(true, 0, 2, true, b"\xff\x00\x01"),
            Status(401),
        ),
        (
            "a text in two fragments, a ping between them",
            [
                frame(
                    false,
                    0,
                    1,
                    true,
                    &alice_text("frag", "hi").as_bytes()[..10],
                ),
                frame(true, 0, 9, true, b"mid"),
                frame(true, 0, 0, true, &alice_text("frag", "hi").as_bytes()[10..]),
            ]
            .concat(),
            Pong(3),
        ),
        (
            "a ping of 125 bytes",
            frame(true, 0, 9, true, &[7u8; 125]),
            Pong(125),
        ),
        (
            "a pong nobody asked for",
            [frame(true, 0, 10, true, b"x"), t("nope")].concat(),
            Status(401),
        ),
    ]
}

fn fatal_cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let t = |s: &str| text_frame(s);
    let header_only = |len: u64| {
        let mut f = vec![0x81u8, 0x80 | 127];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        f
    };
    vec![
        (
            "invalid UTF-8 in a text frame",
            frame(true, 0, 1, true, b"{\"id\":\"\xc3\x28\"}"),
            Close(1007),
        ),
        (
            "an overlong UTF-8 encoding",
            frame(true, 0, 1, true, b"\xc0\xaf"),
            Close(1007),
        ),
        (
            "max_message_bytes + 1",
            t(&text_of_size("max+1", 64 * 1024 + 1)),
            Close(1009),
        ),
        (
            "JSON nested 100,000 deep (over the size limit)",
            t(&nested(100_000)),
            Close(1009),
        ),
        (
            "a continuation without a start",
            frame(true, 0, 0, true, b"xx"),
            Close(1002),
        ),
        (
            "a new text inside a fragmented one",
            [
                frame(false, 0, 1, true, b"{"),
                frame(true, 0, 1, true, b"}"),
            ]
            .concat(),
            Close(1002),
        ),
        ("RSV1 set", frame(true, 4, 1, true, b"{}"), Close(1002)),
        ("RSV3 set", frame(true, 1, 1, true, b"{}"), Close(1002)),
        (
            "an unmasked client frame",
            frame(true, 0, 1, false, b"{}"),
            Close(1002),
        ),
        (
            "a header declaring 2^63 bytes",
            header_only(1 << 63),
            Close(1009),
        ),
        (
            "a header declaring 2^63 - 1 bytes",
            header_only((1 << 63) - 1),
            Close(1009),
        ),
        (
            "reserved opcode 3",
            frame(true, 0, 3, true, b"x"),
            Close(1002),
        ),
        (
            "reserved control opcode 0xB",
            frame(true, 0, 0xb, true, b"x"),
            Close(1002),
        ),
        (
            "a fragmented ping",
            frame(false, 0, 9, true, b"x"),
            Close(1002),
        ),
        (
            "a ping of 126 bytes",
            frame(true, 0, 9, true, &[7u8; 126]),
            Close(1002),
        ),
        (
            "close code 999",
            close_frame(&999u16.to_be_bytes()),
            Close(1002),
        ),
        (
            "close code 1005 on the wire",
            close_frame(&1005u16.to_be_bytes()),
            Close(1002),
        ),
        (
            "close code 1006 on the wire",
            close_frame(&1006u16.to_be_bytes()),
            Close(1002),
        ),
        (
            "close code 5000",
            close_frame(&5000u16.to_be_bytes()),
            Close(1002),
        ),
        (
            "a close payload of one byte",
            close_frame(&[3]),
            Close(1002),
        ),
        (
            "close 1000 is echoed",
            close_frame(&[&1000u16.to_be_bytes()[..], b"bye"].concat()),
            Close(1000),
        ),
        (
            "close 4999 (private use) is echoed",
            close_frame(&4999u16.to_be_bytes()),
            Close(4999),
        ),
        (
            "an empty close is answered without a code",
            close_frame(&[]),
            Close(1005),
        ),
    ]
}

/// ≥ 40 malformed inputs on registered connections: each gets its answer,
/// and the connection keeps serving where it should.
#[test]
fn malformed_frames_get_their_answer_and_the_connection_still_serves() {
    let srv = TestServer::start_with(|c| c.limits.max_clients_per_user = 1000);
    let cases = status_cases();
    for (n, (name, input, expect)) in cases.into_iter().enumerate() {
        let mut raw = Raw::registered(&srv, "alice", &format!("m{n}"));
        raw.send(&input);
        match expect {
            Expect::Status(code) => {
                let (id, got) = raw.status();
                assert_eq!(got, code, "{name}: answered {got} (id {id:?})");
            }
            Expect::StatusFor(want, code) => {
                assert_eq!(raw.status(), (want.to_string(), code), "{name}");
            }
            Expect::Pong(len) => loop {
                match raw.next() {
                    Some((10, p)) => {
                        assert_eq!(p.len(), len, "{name}: pong");
                        break;
                    }
                    Some((8, p)) => panic!("{name}: closed {}", close_code(&p)),
                    Some(_) => continue,
                    None => panic!("{name}: the connection ended"),
                }
            },
            Expect::Close(_) => unreachable!(),
        }
        raw.still_serves(n);
    }
}

/// Inputs that end the connection: each gets its close code (RFC 6455
/// section 7.4.1), and the server still serves a polite pair.
#[test]
fn fatal_frames_get_their_close_code_and_the_server_still_serves() {
    let srv = TestServer::start_with(|c| c.limits.max_clients_per_user = 1000);
    let mut carol = srv.client("carol", "web");
    let mut dave = srv.client("dave", "web");
    for (n, (name, input, expect)) in fatal_cases().into_iter().enumerate() {
        let Expect::Close(code) = expect else {
            unreachable!()
        };
        let mut raw = Raw::registered(&srv, "alice", &format!("f{n}"));
        raw.send(&input);
        assert_eq!(raw.close_code(), Some(code), "{name}");
        round_trip(&mut carol, &mut dave, &format!("cd-{n}"));
    }
}

/// Malformed upgrade requests get the HTTP answer RFC 6455 section 4.2.2
/// asks for (tungstenite used to drop them without one), and the server
/// still serves.
#[test]
fn malformed_handshakes_get_an_http_answer() {
    let srv = TestServer::start();
    let ok = "/websocket";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a wrong path",
            upgrade_request("/nope", &[], &[]),
            "HTTP/1.1 404",
        ),
        (
            "no key",
            upgrade_request(ok, &[], &["Sec-WebSocket-Key"]),
            "HTTP/1.1 400",
        ),
        (
            "a key that is not 16 bytes",
            upgrade_request(ok, &["Sec-WebSocket-Key: c2hvcnQ="], &["Sec-WebSocket-Key"]),
            "HTTP/1.1 400",
        ),
        (
            "version 12",
            upgrade_request(
                ok,
                &["Sec-WebSocket-Version: 12"],
                &["Sec-WebSocket-Version"],
            ),
            "HTTP/1.1 426",
        ),
        (
            "no version",
            upgrade_request(ok, &[], &["Sec-WebSocket-Version"]),
            "HTTP/1.1 426",
        ),
        (
            "no Upgrade header",
            upgrade_request(ok, &[], &["Upgrade"]),
            "HTTP/1.1 400",
        ),
        (
            "POST",
            upgrade_request(ok, &[], &[]).replacen("GET", "POST", 1),
            "HTTP/1.1 400",
        ),
        (
            "HTTP/1.0",
            upgrade_request(ok, &[], &[]).replacen("HTTP/1.1", "HTTP/1.0", 1),
            "HTTP/1.1 400",
        ),
        (
            "not HTTP",
            "\u{16}\u{3}\u{1}garbage\r\n\r\n".to_string(),
            "HTTP/1.1 400",
        ),
    ];
    for (name, request, want) in cases {
        let answer = http_exchange(&srv, &request);
        assert!(answer.starts_with(want), "{name}: {answer:?}");
        if want.ends_with("426") {
            assert!(
                answer.contains("Sec-WebSocket-Version: 13"),
                "{name}: {answer}"
            );
        }
    }
    let mut carol = srv.client("carol", "web");
    let mut dave = srv.client("dave", "web");
    round_trip(&mut carol, &mut dave, "after");
}

/// A handshake trickled one byte at a time, each within the read timeout,
/// is cut off once `register_timeout_s` has passed since it began.
#[test]
fn a_trickled_handshake_is_cut_off_at_the_register_timeout() {
    let srv = TestServer::start_with(|c| c.limits.register_timeout_s = 1);
    let mut tcp = TcpStream::connect(ws_addr(&srv)).unwrap();
    let request = upgrade_request("/websocket", &[], &[]);
    let started = Instant::now();
    let mut cut_after = None;
    for b in request.as_bytes() {
        // The stimulus: one byte each 100 ms, well inside 1 s per read.
        std::thread::sleep(Duration::from_millis(100));
        if tcp.write_all(&[*b]).is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    // A write can still succeed after the server closed (it answers with
    // a reset): reading says for sure.
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = Vec::new();
    let read = tcp.read_to_end(&mut sink);
    let cut_after = cut_after.unwrap_or_else(|| started.elapsed());
    assert!(
        !matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "still open after {:?}",
        started.elapsed()
    );
    assert!(sink.is_empty(), "no 101 for a trickled handshake");
    assert!(
        cut_after < Duration::from_secs(3),
        "cut off only after {cut_after:?} with register_timeout_s = 1"
    );
}

/// Garbage before register is 402/401 and uses the rate bucket; 32 in a
/// row close the connection with 1008 `too many errors`.
#[test]
fn a_run_of_errors_closes_with_1008_too_many_errors() {
    let srv = TestServer::start();
    let mut raw = Raw::open(&srv);
    raw.send(&text_frame(&alice_text("early", "hi")));
    assert_eq!(raw.status(), ("early".to_string(), 402));
    for i in 1..32 {
        raw.send(&text_frame(if i % 2 == 0 { "nope" } else { "" }));
    }
    for _ in 1..32 {
        let (_, code) = raw.status();
        assert_eq!(code, 401);
    }
    assert_eq!(raw.close_code(), Some(1008));
    // One well-formed message in a run starts the count again.
    let mut raw = Raw::registered(&srv, "alice", "again");
    for round in 0..3 {
        for _ in 0..31 {
            raw.send(&text_frame(""));
        }
        raw.still_serves(round);
    }
}

/// After its Close the server reads at most 64 KiB more: a flood that goes
/// on past it finds the socket shut instead of a second of unpaced reading.
#[test]
fn after_its_close_the_server_stops_reading_a_flood_soon() {
    let srv = TestServer::start();
    let mut raw = Raw::open(&srv);
    for _ in 0..32 {
        raw.send(&text_frame(""));
    }
    let _ = raw.tcp.set_write_timeout(Some(WAIT));
    // Empty frames, 64 KiB of them per write, so that a second of
    // unpaced reading would take far more than the limit.
    let frames: Vec<u8> = std::iter::repeat_n(text_frame(""), 64 * 1024 / 6)
        .flatten()
        .collect();
    let mut written = 0usize;
    let mut refused = false;
    // Bounded: 64 MiB at the most.
    while written < 64 * 1024 * 1024 {
        if raw.tcp.write_all(&frames).is_err() {
            refused = true;
            break;
        }
        written += frames.len();
    }
    assert!(
        refused,
        "the server read all {written} bytes after its Close"
    );
    assert!(
        written < 8 * 1024 * 1024,
        "{written} bytes were taken after the Close"
    );
    let mut polite = srv.client("bob", "web");
    let me = polite.user.clone();
    send_ok(&mut polite, "still", &me, "here");
}

/// A ping flood is answered no faster than the message rate; empty text
/// frames too. Before, 94,000 pings a second were answered.
#[test]
fn pings_and_tiny_frames_are_paced_to_the_message_rate() {
    const RATE: f64 = 500.0;
    const BURST: f64 = 50.0;
    const FLOOD: usize = 300;
    let srv = TestServer::start_with(|c| {
        c.limits.rate_per_s = RATE;
        c.limits.rate_burst = BURST;
    });
    let mut raw = Raw::registered(&srv, "alice", "pinger");
    let started = Instant::now();
    let pings: Vec<u8> = (0..FLOOD)
        .flat_map(|_| frame(true, 0, 9, true, b"p"))
        .collect();
    raw.send(&pings);
    let mut pongs = 0;
    while pongs < FLOOD {
        match raw.next() {
            Some((10, _)) => pongs += 1,
            Some((8, p)) => panic!("closed {}", close_code(&p)),
            Some(_) => continue,
            None => panic!("ended after {pongs} pongs"),
        }
    }
    let took = started.elapsed();
    let least = Duration::from_secs_f64((FLOOD as f64 - BURST - 1.0) / RATE * 0.9);
    assert!(
        took >= least,
        "{FLOOD} pongs in {took:?}, at least {least:?} expected"
    );
    eprintln!("{FLOOD} pings answered in {took:?}");
    // The same for garbage (fewer than 32 in a row, so none closes).
    let started = Instant::now();
    let mut answered = 0;
    for round in 0..10 {
        for _ in 0..30 {
            raw.send(&text_frame(""));
        }
        for _ in 0..30 {
            assert_eq!(raw.status().1, 401);
            answered += 1;
        }
        // A message in between; it may be refused by the bucket (400).
        let t = edgeim::client::frames::text(&format!("r{round}"), "alice", "bob", "x");
        raw.send(&text_frame(&t.to_string()));
        assert!(matches!(raw.status().1, 200 | 400));
    }
    let took = started.elapsed();
    let least = Duration::from_secs_f64((answered as f64 - BURST) / RATE * 0.9);
    assert!(
        took >= least,
        "{answered} garbage frames answered in {took:?}"
    );
}

/// JSON nested 100,000 deep, in a message the size limit lets through, is
/// 401, and so are 40,000 nested objects, which overflowed the reader's
/// stack (and aborted the server) in a debug build before the depth check.
#[test]
fn json_nested_100000_deep_is_401_not_a_stack_overflow() {
    let srv = TestServer::start_with(|c| c.limits.max_message_bytes = 256 * 1024);
    let mut raw = Raw::registered(&srv, "alice", "deep");
    raw.send(&text_frame(&nested(100_000)));
    // Not parsed at all, so no id to echo: a server-made one.
    assert_eq!(raw.status().1, 401);
    let objects = format!("{}{}", "{\"a\":".repeat(40_000), "}".repeat(40_000));
    raw.send(&text_frame(&objects));
    assert_eq!(raw.status().1, 401);
    // The deepest nesting allowed (MAX_JSON_DEPTH, 64, the frame
    // included), in objects, which take the parser the most stack.
    let deepest = format!(
        r#"{{"id":"deepest","type":2001,"isSystem":false,"from":"alice","to":"bob","body":"x","e":{}1{}}}"#,
        "{\"k\":".repeat(63),
        "}".repeat(63)
    );
    raw.send(&text_frame(&deepest));
    assert_eq!(raw.status(), ("deepest".to_string(), 200));
    raw.still_serves(0);
}

/// A 9101 whose body string holds deeply nested JSON is 404, parsed no
/// deeper than a frame.
#[test]
fn a_receipt_body_nested_deep_is_404() {
    let srv = TestServer::start();
    let mut raw = Raw::registered(&srv, "alice", "deep-body");
    let body = format!("{}{}", "{\"k\":".repeat(5000), "}".repeat(5000));
    let ack = json!({"id": "deep-ack", "type": 9101, "isSystem": false,
        "from": "alice", "to": "bob", "body": body});
    raw.send(&text_frame(&ack.to_string()));
    assert_eq!(raw.status(), ("deep-ack".to_string(), 404));
    raw.still_serves(0);
}
