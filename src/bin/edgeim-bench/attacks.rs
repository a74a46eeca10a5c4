//! The probe's attacks (see `probe.rs`): each one misbehaves against the
//! server for the window it is given and says, in a few words, what it saw.
//! Every loop is bounded by the deadline and a count; loopback only.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgeim::client::frames::{StatusBody, TYPE_SEND_STATUS};
use edgeim::client::ws::{self, Ws, is_timeout};
use serde_json::json;
use tungstenite::Message;

use crate::conn::{Frame, open_client, text_frame};
use crate::lock;
use crate::probe::{IO_WAIT, MAX_LOOPS};
use crate::target::Target;

// ---- the attackers' tools ----

fn connect(host: &str) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(IO_WAIT))?;
    s.set_write_timeout(Some(IO_WAIT))?;
    Ok(s)
}

fn sleep_until(deadline: Instant) {
    thread::sleep(deadline.saturating_duration_since(Instant::now()));
}

/// What the server did with a connection it was sent junk on, without
/// waiting: its first answer line, "closed", or "open" (said nothing yet).
fn state(s: &TcpStream) -> String {
    let mut buf = [0u8; 256];
    if s.set_nonblocking(true).is_err() {
        return "?".into();
    }
    let r = (&*s).read(&mut buf);
    let _ = s.set_nonblocking(false);
    match r {
        Ok(0) => "closed".into(),
        Ok(n) => answer_line(&buf[..n]),
        Err(e) if e.kind() == ErrorKind::WouldBlock => "open".into(),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => "reset".into(),
        Err(_) => "error".into(),
    }
}

/// "HTTP/1.1 431 Request Header Fields Too Large" → "431".
pub(crate) fn answer_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.split_whitespace().nth(1) {
        Some(code) if text.starts_with("HTTP/") => code.to_string(),
        _ => "non-HTTP bytes".into(),
    }
}

/// "3 open, 5 431" from each connection's state.
pub(crate) fn tally<'a>(states: impl Iterator<Item = &'a str>) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for s in states {
        *by.entry(s).or_default() += 1;
    }
    let parts: Vec<String> = by.iter().map(|(s, n)| format!("{n} {s}")).collect();
    parts.join(", ")
}

fn states(socks: &[TcpStream], refused: usize) -> String {
    let st: Vec<String> = socks.iter().map(state).collect();
    let mut t = tally(st.iter().map(String::as_str));
    if refused > 0 {
        t.push_str(&format!(", {refused} not connected"));
    }
    t
}

/// Eight connections that each wrote `head`, then nothing more.
fn eight_with(host: &str, head: &str) -> (Vec<TcpStream>, usize) {
    let mut socks = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        match connect(host).and_then(|mut s| s.write_all(head.as_bytes()).map(|()| s)) {
            Ok(s) => socks.push(s),
            Err(_) => refused += 1,
        }
    }
    (socks, refused)
}

// ---- the quiet attacks ----

/// 8 POSTs announcing 2000 bytes of body and sending 1.
pub(crate) fn slow_bodies(t: &Target, deadline: Instant) -> String {
    let host = &t.server.host;
    let head = format!(
        "POST /app/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 2000\r\n\r\n{{"
    );
    let (socks, refused) = eight_with(host, &head);
    sleep_until(deadline);
    states(&socks, refused)
}

/// 8 connections that send nothing.
pub(crate) fn silent_http(t: &Target, deadline: Instant) -> String {
    let (socks, refused) = eight_with(&t.server.host, "");
    sleep_until(deadline);
    states(&socks, refused)
}

/// 8 requests whose head grows by 1 KiB of header line at a time, 64 KiB
/// in all, spread over the window.
pub(crate) fn huge_headers(t: &Target, deadline: Instant) -> String {
    let host = &t.server.host;
    let (mut socks, refused) =
        eight_with(host, &format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n"));
    let mut open = vec![true; socks.len()];
    let line = |i: usize| format!("X-Pad-{i:02}: {}\r\n", "a".repeat(1024 - 13));
    let rounds = 64;
    for i in 0..rounds {
        for (s, o) in socks.iter_mut().zip(open.iter_mut()) {
            if *o && s.write_all(line(i).as_bytes()).is_err() {
                *o = false;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        thread::sleep(left / (rounds - i) as u32);
    }
    let written = open.iter().filter(|o| **o).count();
    format!("{} ({written} took all 64 KiB)", states(&socks, refused))
}

/// One connection, 2,000 pipelined `GET /app.js`, never read.
pub(crate) fn pipelining(t: &Target, deadline: Instant) -> String {
    let host = &t.server.host;
    let Ok(mut s) = connect(host) else {
        return "not connected".into();
    };
    let request = format!("GET /app.js HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let batch = request.repeat(100);
    let mut written = 0;
    for _ in 0..20 {
        if Instant::now() >= deadline || s.write_all(batch.as_bytes()).is_err() {
            break;
        }
        written += 100;
    }
    sleep_until(deadline);
    format!("{written} requests written; {}", state(&s))
}

/// 8 WebSocket handshakes, one byte per 200 ms.
pub(crate) fn trickled_handshakes(t: &Target, deadline: Instant) -> String {
    let Ok(host) = ws::ws_host(&t.ws_url) else {
        return "bad ws url".into();
    };
    let path = t
        .ws_url
        .strip_prefix("ws://")
        .and_then(|r| r.find('/').map(|i| &r[i..]))
        .unwrap_or("/");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let (mut socks, refused) = eight_with(&host, "");
    let mut sent = 0;
    for b in request.as_bytes() {
        if Instant::now() >= deadline {
            break;
        }
        for s in socks.iter_mut() {
            let _ = s.write_all(&[*b]);
        }
        sent += 1;
        thread::sleep(
            Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
    format!("{sent} bytes each; {}", states(&socks, refused))
}

/// `u2` registered and never reading, while `u3` sends it 16 KiB texts at
/// 150/s (under the rate limit), reading its own answers.
pub(crate) fn slow_ws_reader(t: &Target, deadline: Instant) -> String {
    let slow = match open_client(t, "u2", "slow").and_then(|o| {
        o.ws.get_ref()
            .tcp()
            .try_clone()
            .map(|tcp| (o.ws, tcp))
            .map_err(|e| e.to_string())
    }) {
        Ok(s) => s,
        Err(e) => return format!("slow reader: {e}"),
    };
    let mut feeder = match open_client(t, "u3", "feeder") {
        Ok(o) => o.ws,
        Err(e) => return format!("feeder: {e}"),
    };
    let _ = feeder.get_ref().tcp().set_write_timeout(Some(IO_WAIT));
    let pad = "y".repeat(16 * 1024);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (mut sent, mut ok, mut other) = (0u64, 0u64, 0u64);
    let mut closed = None;
    let every = Duration::from_nanos(1_000_000_000 / 150);
    let mut next = Instant::now();
    'outer: for n in 0..MAX_LOOPS {
        if Instant::now() >= deadline {
            break;
        }
        let id = format!("{tag}.{n}");
        if let Err(e) = feeder.send(Message::text(text_frame(&id, "u3", "u2", 0, &pad))) {
            closed = Some(format!("feeder send: {e}"));
            break;
        }
        sent += 1;
        next += every;
        for _ in 0..10_000 {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            ws::set_read_timeout(&feeder, left);
            match feeder.read() {
                Ok(Message::Text(txt)) => match serde_json::from_str::<Frame>(&txt) {
                    Ok(f) if f.kind == TYPE_SEND_STATUS => {
                        if StatusBody::of(&f.body).code == 200 {
                            ok += 1;
                        } else {
                            other += 1;
                        }
                    }
                    _ => {}
                },
                Ok(Message::Close(f)) => {
                    closed = Some(format!("feeder closed: {f:?}"));
                    break 'outer;
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => {
                    closed = Some(format!("feeder read: {e}"));
                    break 'outer;
                }
            }
        }
    }
    // Was the slow reader dropped? Read what waits for it, without blocking.
    let (_ws, tcp) = slow;
    let mut fate = "still open";
    if tcp.set_nonblocking(true).is_ok() {
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..4096 {
            match (&tcp).read(&mut buf) {
                Ok(0) => {
                    fate = "closed by the server";
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    fate = "reset by the server";
                    break;
                }
            }
        }
    }
    let mut out = format!("{sent} texts sent to it, {ok} accepted, {other} refused; reader {fate}");
    if let Some(c) = closed {
        out.push_str(&format!("; {c}"));
    }
    out
}

/// One POST declaring `length` bytes of body: the server's answer.
fn declared_length(t: &Target, length: &str) -> String {
    let host = &t.server.host;
    let head = format!(
        "POST /app/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n{{}}"
    );
    let mut s = match connect(host).and_then(|mut s| s.write_all(head.as_bytes()).map(|()| s)) {
        Ok(s) => s,
        Err(e) => return format!("{e}"),
    };
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => "closed, no answer".into(),
        Ok(n) => format!("answered {}", answer_line(&buf[..n])),
        Err(e) => format!("no answer: {e}"),
    }
}

pub(crate) fn content_length_1e11(t: &Target, _deadline: Instant) -> String {
    declared_length(t, "100000000000")
}

pub(crate) fn content_length_max(t: &Target, _deadline: Instant) -> String {
    declared_length(t, "18446744073709551615")
}

// ---- the floods ----

/// Two threads, each on its own registered connection of `user` (client
/// `{prefix}{i}`), sending `frame(n)` as fast as they can and never
/// reading; a connection the server ends is opened again.
fn ws_flood(
    t: &Target,
    deadline: Instant,
    user: &str,
    prefix: &str,
    frame: fn(u64) -> Message,
) -> String {
    let frames = AtomicU64::new(0);
    let conns = AtomicU64::new(0);
    let paced = AtomicU64::new(0);
    let failed_opens = AtomicU64::new(0);
    let fates = Mutex::new(BTreeMap::<String, u64>::new());
    thread::scope(|scope| {
        for i in 0..2 {
            let (frames, conns, paced, failed_opens) = (&frames, &conns, &paced, &failed_opens);
            let fates = &fates;
            scope.spawn(move || {
                let client = format!("{prefix}{i}");
                for _ in 0..10_000 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let mut ws = match open_client(t, user, &client) {
                        Ok(o) => o.ws,
                        Err(_) => {
                            failed_opens.fetch_add(1, Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    };
                    conns.fetch_add(1, Ordering::Relaxed);
                    let _ = ws.get_ref().tcp().set_write_timeout(Some(IO_WAIT));
                    let mut failed = None;
                    for n in 0..MAX_LOOPS {
                        if Instant::now() >= deadline {
                            break;
                        }
                        match ws.send(frame(n)) {
                            Ok(()) => {
                                frames.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) if is_timeout(&e) => {
                                paced.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failed = Some(format!("write failed: {e}"));
                                break;
                            }
                        }
                    }
                    let end = failed.unwrap_or_else(|| fate(&mut ws));
                    *lock(fates).entry(end).or_default() += 1;
                }
            });
        }
    });
    let fates = std::mem::take(&mut *lock(&fates));
    let fates: Vec<String> = fates.iter().map(|(k, n)| format!("{n}x {k}")).collect();
    format!(
        "{} frames on {} connections; {} writes blocked 1 s; {} opens refused; ends: {}",
        frames.into_inner(),
        conns.into_inner(),
        paced.into_inner(),
        failed_opens.into_inner(),
        fates.join(", ")
    )
}

/// How a flooding connection ended: what it reads in at most 0.5 s after
/// its last write (the server's Close, or nothing yet).
fn fate(ws: &mut Ws) -> String {
    ws::set_read_timeout(ws, Duration::from_millis(100));
    let until = Instant::now() + Duration::from_millis(500);
    for _ in 0..1_000_000 {
        if Instant::now() >= until {
            break;
        }
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                return format!("Close {} {}", u16::from(f.code), f.reason);
            }
            Ok(Message::Close(None)) => return "Close".into(),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return "open (nothing more to read)".into(),
            Err(e) => return format!("read: {e}"),
        }
    }
    "open (still reading answers)".into()
}

/// Empty text frames (401 each; closed after 32 in a row, then reopened).
pub(crate) fn empty_text_flood(t: &Target, deadline: Instant) -> String {
    ws_flood(t, deadline, "u4", "empty", |_| Message::text(""))
}

/// Pings (paced by the server to the message rate).
pub(crate) fn ping_flood(t: &Target, deadline: Instant) -> String {
    ws_flood(t, deadline, "u5", "ping", |_| {
        Message::Ping(Default::default())
    })
}

/// Unparsable frames (401), with a well-formed text to a user that does
/// not exist after every 31 (refused, but it ends the run of errors, so
/// the server never closes for too many errors).
pub(crate) fn garbage_flood(t: &Target, deadline: Instant) -> String {
    ws_flood(t, deadline, "u6", "garbage", |n| {
        if n % 32 == 31 {
            Message::text(text_frame(&format!("g{n}"), "u6", "nobody-here", 0, ""))
        } else {
            Message::text("{garbage")
        }
    })
}

/// `threads` threads running `call` until the deadline; the tally of what
/// it returned.
fn http_flood(threads: usize, deadline: Instant, call: &(dyn Fn() -> String + Sync)) -> String {
    let seen = Mutex::new(BTreeMap::<String, u64>::new());
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut mine = BTreeMap::<String, u64>::new();
                for _ in 0..100_000 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    *mine.entry(call()).or_default() += 1;
                }
                let mut all = lock(&seen);
                for (k, n) in mine {
                    *all.entry(k).or_default() += n;
                }
            });
        }
    });
    let seen = std::mem::take(&mut *lock(&seen));
    let parts: Vec<String> = seen.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    parts.join(", ")
}

pub(crate) fn status_of(
    r: Result<edgeim::client::HttpResponse, edgeim::client::ClientError>,
) -> String {
    match r {
        Ok(a) => a.status.to_string(),
        Err(_) => "error".into(),
    }
}

/// 16 threads logging in as `u7` with a wrong password.
pub(crate) fn brute_force(t: &Target, deadline: Instant) -> String {
    let body = json!({"username": "u7", "password": "not-the-password"});
    http_flood(16, deadline, &|| {
        status_of(
            t.server
                .post_json("/app/login", &body)
                .timeout(IO_WAIT)
                .send(),
        )
    })
}

/// 8 threads asking for session ids with `u8`'s one token.
pub(crate) fn session_id_flood(t: &Target, deadline: Instant) -> String {
    let Ok(token) = t.token("u8") else {
        return "no token".into();
    };
    http_flood(8, deadline, &|| {
        status_of(
            t.server
                .get("/app/websocket/client/login/flood")
                .token(Some(&token))
                .timeout(IO_WAIT)
                .send(),
        )
    })
}
