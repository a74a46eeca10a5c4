//! `probe`: the server under attack, one attack after another, while a
//! polite pair keeps texting ([`run_probe`]).
//!
//! The polite pair is `u0` → `u1`: `u0` sends a text every 10 ms, `u1`
//! answers each with a 9101. Its round trip is send → the receipt (the
//! 9101 forwarded back to `u0`); send → 9001 is reported too. Each attack
//! ([`ATTACKS`]) runs for `--seconds` from threads of its own; the pair's
//! texts sent in that window are its figures. After the window the server
//! must answer `/healthz` with 200 and every text that got a 9001 SUCCESS
//! must have reached `u1` (lost = 0); otherwise the attack broke it.
//!
//! The spawned server keeps the default limits (those under test), unlike
//! the other scenarios' raised ones. Every attacker's loop is bounded by a
//! count and by the attack's deadline; every socket has timeouts.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgeim::client::frames::{StatusBody, TYPE_RECEIVE_STATUS, TYPE_SEND_STATUS, TYPE_TEXT};
use edgeim::client::ws::{self, Ws, is_timeout};
use tungstenite::Message;

use crate::args::Probe;
use crate::attacks::*;
use crate::clock::now_ns;
use crate::conn::{Frame, ack_frame, close, open_client, text_frame};
use crate::lock;
use crate::stats::quantile_ms;
use crate::target::Target;

/// Users the probe needs: u0, u1 the polite pair; u2 the slow reader, u3
/// who writes to it; u4 empty texts, u5 pings, u6 garbage; u7 brute forced
/// (never logged in); u8 the session-id flood's token.
pub(crate) const PROBE_USERS: usize = 9;
/// The polite sender's pace.
const POLITE_EVERY_NS: u64 = 10_000_000;
/// Quiet attacks' targets: median and p99 of the polite round trip.
pub(crate) const QUIET_MEDIAN_MS: f64 = 10.0;
pub(crate) const QUIET_P99_MS: f64 = 100.0;
/// Floods' target: median of the polite round trip.
pub(crate) const FLOOD_MEDIAN_MS: f64 = 25.0;
/// Pause between attacks, so that one's aftermath is not the next's.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the pair's texts of a window may take to be answered.
const DRAIN: Duration = Duration::from_secs(5);
/// Attackers' socket timeouts.
pub(crate) const IO_WAIT: Duration = Duration::from_secs(1);
/// Upper bound on any loop's iterations.
pub(crate) const MAX_LOOPS: u64 = 10_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Baseline,
    /// Needs no CPU of the server: median and p99 targets.
    Quiet,
    /// Saturates a core: a median target only.
    Flood,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Baseline => "none",
            Kind::Quiet => "quiet",
            Kind::Flood => "flood",
        }
    }
}

/// One attack's outcome: the polite pair's figures, and what the attacker saw.
pub(crate) struct Row {
    pub(crate) attack: &'static str,
    pub(crate) kind: Kind,
    pub(crate) sent: u64,
    /// 9001 SUCCESS.
    pub(crate) acked: u64,
    /// 9001 other than SUCCESS.
    pub(crate) refused: u64,
    /// Acknowledged but not delivered within the drain.
    pub(crate) lost: u64,
    pub(crate) median_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) ack_median_ms: f64,
    pub(crate) alive: bool,
    pub(crate) attacker: String,
}

impl Row {
    /// Whether the polite pair's round trip met the attack's target.
    pub(crate) fn met(&self) -> bool {
        match self.kind {
            Kind::Flood => self.median_ms < FLOOD_MEDIAN_MS,
            _ => self.median_ms < QUIET_MEDIAN_MS && self.p99_ms < QUIET_P99_MS,
        }
    }

    /// The server died, or lost an acknowledged text.
    pub(crate) fn broken(&self) -> bool {
        !self.alive || self.lost > 0
    }
}

/// What the probe found: one row per window, and the polite pair's errors.
pub(crate) struct ProbeResult {
    pub(crate) rows: Vec<Row>,
    pub(crate) errors: BTreeMap<String, u64>,
}

type AttackFn = fn(&Target, Instant) -> String;

/// The attacks, in the order they run. The brute force comes late: it
/// leaves loopback throttled for logins (tokens are fetched before).
pub(crate) const ATTACKS: [(&str, Kind, AttackFn); 13] = [
    ("slow-http-bodies", Kind::Quiet, slow_bodies),
    ("silent-http", Kind::Quiet, silent_http),
    ("huge-headers-slowly", Kind::Quiet, huge_headers),
    ("pipelining-non-reader", Kind::Quiet, pipelining),
    ("trickled-ws-handshakes", Kind::Quiet, trickled_handshakes),
    ("slow-ws-reader", Kind::Quiet, slow_ws_reader),
    ("content-length-1e11", Kind::Quiet, content_length_1e11),
    ("content-length-2^64-1", Kind::Quiet, content_length_max),
    ("empty-text-flood", Kind::Flood, empty_text_flood),
    ("ping-flood", Kind::Flood, ping_flood),
    ("401-garbage-flood", Kind::Flood, garbage_flood),
    ("login-brute-force", Kind::Flood, brute_force),
    ("session-id-flood", Kind::Flood, session_id_flood),
];

#[derive(Clone, Copy, Default)]
struct Sent {
    at: u64,
    /// When the 9001 came, and whether it was SUCCESS.
    ack: Option<(u64, bool)>,
    receipt: Option<u64>,
}

/// The polite pair's shared state.
struct Polite {
    tag: String,
    sent: Mutex<Vec<Sent>>,
    delivered: Mutex<HashSet<u64>>,
    stop: AtomicBool,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Polite {
    fn error(&self, what: String) {
        let mut what = what;
        if what.len() > 160 {
            let mut cut = 160;
            while !what.is_char_boundary(cut) {
                cut -= 1;
            }
            what.truncate(cut);
        }
        *lock(&self.errors).entry(what).or_default() += 1;
    }

    fn seq(&self, id: &str) -> Option<u64> {
        id.strip_prefix(self.tag.as_str())?
            .strip_prefix('.')?
            .parse()
            .ok()
    }
}

/// Runs the baseline, then every attack, with the polite pair throughout.
pub(crate) fn run_probe(target: &Target, probe: &Probe) -> Result<ProbeResult, String> {
    for u in (0..PROBE_USERS).filter(|u| *u != 7) {
        target.token(&format!("u{u}"))?;
    }
    let polite = Polite {
        tag: uuid::Uuid::new_v4().simple().to_string()[..10].to_string(),
        sent: Mutex::new(Vec::new()),
        delivered: Mutex::new(HashSet::new()),
        stop: AtomicBool::new(false),
        errors: Mutex::new(BTreeMap::new()),
    };
    let window = Duration::from_secs_f64(probe.seconds);
    let ready = AtomicBool::new(false);
    let rows = thread::scope(|scope| {
        scope.spawn(|| polite_receiver(target, &polite, &ready));
        let t0 = Instant::now();
        while !ready.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(10));
        }
        scope.spawn(|| polite_sender(target, &polite));
        let first = Instant::now();
        while lock(&polite.sent).iter().all(|s| s.receipt.is_none()) {
            if first.elapsed() > Duration::from_secs(10) {
                polite.stop.store(true, Ordering::Relaxed);
                return Err("the polite pair got no receipt within 10 s".to_string());
            }
            thread::sleep(Duration::from_millis(10));
        }
        let mut rows = Vec::new();
        let mut windows: Vec<(&'static str, Kind, AttackFn)> =
            vec![("baseline", Kind::Baseline, |_, _| String::from("-"))];
        windows.extend(ATTACKS);
        for (name, kind, attack) in windows {
            eprintln!("edgeim-bench: probe: {name}");
            let start = now_ns();
            let deadline = Instant::now() + window;
            let attacker = attack(target, deadline);
            thread::sleep(deadline.saturating_duration_since(Instant::now()));
            let end = now_ns();
            let alive = healthz(target);
            let mut row = figures(&polite, start, end, DRAIN);
            row.attack = name;
            row.kind = kind;
            row.alive = alive;
            row.attacker = attacker;
            rows.push(row);
            thread::sleep(SETTLE);
        }
        polite.stop.store(true, Ordering::Relaxed);
        Ok(rows)
    })?;
    let errors = std::mem::take(&mut *lock(&polite.errors));
    Ok(ProbeResult { rows, errors })
}

/// The polite pair's figures for its texts sent in `[start, end]`, once
/// they are answered (or the drain is over).
fn figures(p: &Polite, start: u64, end: u64, drain: Duration) -> Row {
    let in_window = |s: &Sent| s.at >= start && s.at <= end;
    let t0 = Instant::now();
    while t0.elapsed() < drain {
        let done = {
            let sent = lock(&p.sent);
            let delivered = lock(&p.delivered);
            sent.iter()
                .enumerate()
                .filter(|(_, s)| in_window(s))
                .all(|(n, s)| match s.ack {
                    Some((_, true)) => s.receipt.is_some() && delivered.contains(&(n as u64)),
                    Some((_, false)) => true,
                    None => false,
                })
        };
        if done {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let sent = lock(&p.sent);
    let delivered = lock(&p.delivered);
    let mine: Vec<(usize, &Sent)> = sent
        .iter()
        .enumerate()
        .filter(|(_, s)| in_window(s))
        .collect();
    let n = mine.len() as u64;
    let mut rtt: Vec<u64> = mine
        .iter()
        .filter_map(|(_, s)| s.receipt.map(|r| r.saturating_sub(s.at)))
        .collect();
    rtt.sort_unstable();
    let mut ack: Vec<u64> = mine
        .iter()
        .filter_map(|(_, s)| s.ack.map(|(a, _)| a.saturating_sub(s.at)))
        .collect();
    ack.sort_unstable();
    let ok = |s: &Sent| matches!(s.ack, Some((_, true)));
    Row {
        attack: "",
        kind: Kind::Baseline,
        sent: n,
        acked: mine.iter().filter(|(_, s)| ok(s)).count() as u64,
        refused: mine
            .iter()
            .filter(|(_, s)| matches!(s.ack, Some((_, false))))
            .count() as u64,
        lost: mine
            .iter()
            .filter(|(i, s)| ok(s) && !delivered.contains(&(*i as u64)))
            .count() as u64,
        median_ms: quantile_ms(&rtt, n, 0.5),
        p99_ms: quantile_ms(&rtt, n, 0.99),
        ack_median_ms: quantile_ms(&ack, n, 0.5),
        alive: false,
        attacker: String::new(),
    }
}

/// `/healthz` answers 200 (three tries within about 3 s).
fn healthz(t: &Target) -> bool {
    (0..3).any(|i| {
        if i > 0 {
            thread::sleep(Duration::from_millis(500));
        }
        t.server
            .get("/healthz")
            .timeout(IO_WAIT)
            .send()
            .is_ok_and(|r| r.status == 200)
    })
}

/// Opens `user` as `client`, reconnecting after a failure (bounded).
fn polite_open(target: &Target, p: &Polite, user: &str, tries: &mut u32) -> Option<Ws> {
    while *tries < 50 && !p.stop.load(Ordering::Relaxed) {
        if *tries > 0 {
            thread::sleep(Duration::from_millis(200));
        }
        *tries += 1;
        match open_client(target, user, "polite") {
            Ok(o) => return Some(o.ws),
            Err(e) => p.error(format!("polite {user}: {e}")),
        }
    }
    None
}

/// `u0`: a text to `u1` every 10 ms; notes each 9001 and receipt.
fn polite_sender(target: &Target, p: &Polite) {
    let mut tries = 0;
    let mut conn: Option<Ws> = None;
    let mut next = now_ns();
    for _ in 0..MAX_LOOPS {
        if p.stop.load(Ordering::Relaxed) {
            break;
        }
        let Some(ws) = conn.as_mut() else {
            conn = polite_open(target, p, "u0", &mut tries);
            if conn.is_none() {
                break;
            }
            continue;
        };
        let now = now_ns();
        if now >= next {
            let seq = {
                let mut sent = lock(&p.sent);
                sent.push(Sent {
                    at: now,
                    ..Sent::default()
                });
                sent.len() - 1
            };
            let id = format!("{}.{seq}", p.tag);
            if let Err(e) = ws.send(Message::text(text_frame(&id, "u0", "u1", now, ""))) {
                p.error(format!("polite u0 send: {e}"));
                conn = None;
            }
            next = (next + POLITE_EVERY_NS).max(now);
            continue;
        }
        ws::set_read_timeout(ws, Duration::from_nanos(next - now));
        match ws.read() {
            Ok(Message::Text(t)) => {
                let at = now_ns();
                let Ok(f) = serde_json::from_str::<Frame>(&t) else {
                    p.error("polite u0: unreadable frame".into());
                    continue;
                };
                let Some(seq) = p.seq(&f.id) else { continue };
                let mut sent = lock(&p.sent);
                let Some(s) = sent.get_mut(seq as usize) else {
                    continue;
                };
                match f.kind {
                    TYPE_SEND_STATUS if s.ack.is_none() => {
                        let status = StatusBody::of(&f.body);
                        s.ack = Some((at, status.code == 200));
                        if status.code != 200 {
                            drop(sent);
                            p.error(format!("polite u0: 9001 {status}"));
                        }
                    }
                    TYPE_RECEIVE_STATUS if s.receipt.is_none() => s.receipt = Some(at),
                    _ => {}
                }
            }
            Ok(Message::Close(f)) => {
                p.error(format!("polite u0 closed by the server: {f:?}"));
                conn = None;
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                p.error(format!("polite u0 read: {e}"));
                conn = None;
            }
        }
    }
    if let Some(ws) = conn {
        close(ws);
    }
}

/// `u1`: answers each text from `u0` with a 9101 and notes it delivered.
fn polite_receiver(target: &Target, p: &Polite, ready: &AtomicBool) {
    let mut tries = 0;
    let mut conn: Option<Ws> = None;
    for _ in 0..MAX_LOOPS {
        if p.stop.load(Ordering::Relaxed) {
            break;
        }
        let Some(ws) = conn.as_mut() else {
            conn = polite_open(target, p, "u1", &mut tries);
            ready.store(true, Ordering::Relaxed);
            if conn.is_none() {
                break;
            }
            continue;
        };
        match ws.read() {
            Ok(Message::Text(t)) => {
                let Ok(f) = serde_json::from_str::<Frame>(&t) else {
                    p.error("polite u1: unreadable frame".into());
                    continue;
                };
                if f.kind != TYPE_TEXT {
                    continue;
                }
                if let Err(e) = ws.send(Message::text(ack_frame(&f.id, "u1", &f.from))) {
                    p.error(format!("polite u1 send: {e}"));
                    conn = None;
                    continue;
                }
                if let Some(seq) = p.seq(&f.id) {
                    lock(&p.delivered).insert(seq);
                }
            }
            Ok(Message::Close(f)) => {
                p.error(format!("polite u1 closed by the server: {f:?}"));
                conn = None;
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                p.error(format!("polite u1 read: {e}"));
                conn = None;
            }
        }
    }
    if let Some(ws) = conn {
        close(ws);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: Kind, median_ms: f64, p99_ms: f64) -> Row {
        Row {
            attack: "x",
            kind,
            sent: 1,
            acked: 1,
            refused: 0,
            lost: 0,
            median_ms,
            p99_ms,
            ack_median_ms: 1.0,
            alive: true,
            attacker: String::new(),
        }
    }

    #[test]
    fn quiet_attacks_need_median_and_p99_floods_a_median() {
        assert!(row(Kind::Quiet, 9.0, 99.0).met());
        assert!(!row(Kind::Quiet, 9.0, 101.0).met());
        assert!(!row(Kind::Quiet, 11.0, 50.0).met());
        assert!(row(Kind::Flood, 24.0, 1000.0).met());
        assert!(!row(Kind::Flood, 26.0, 30.0).met());
        assert!(!row(Kind::Flood, f64::INFINITY, f64::INFINITY).met());
    }

    #[test]
    fn a_dead_server_or_a_lost_text_is_broken() {
        let mut r = row(Kind::Quiet, 1.0, 1.0);
        assert!(!r.broken());
        r.lost = 1;
        assert!(r.broken());
        r.lost = 0;
        r.alive = false;
        assert!(r.broken());
    }

    #[test]
    fn answers_read_as_their_status() {
        assert_eq!(answer_line(b"HTTP/1.1 431 Too Large\r\n"), "431");
        assert_eq!(answer_line(b"junk"), "non-HTTP bytes");
        assert_eq!(tally(["open", "431", "open"].into_iter()), "1 431, 2 open");
    }

    #[test]
    fn the_figures_count_unanswered_texts_as_slowest_and_acked_undelivered_as_lost() {
        let p = Polite {
            tag: "t".into(),
            sent: Mutex::new(vec![
                Sent {
                    at: 10,
                    ack: Some((1_000_010, true)),
                    receipt: Some(2_000_010),
                },
                Sent {
                    at: 20,
                    ack: Some((1_000_020, true)),
                    receipt: None,
                },
                Sent {
                    at: 5_000,
                    ack: None,
                    receipt: None,
                },
            ]),
            delivered: Mutex::new(HashSet::from([0])),
            stop: AtomicBool::new(false),
            errors: Mutex::new(BTreeMap::new()),
        };
        assert_eq!(p.seq("t.41"), Some(41));
        assert_eq!(p.seq("u.41"), None);
        // Only the first two are in the window; the second never arrives.
        let r = figures(&p, 0, 100, Duration::ZERO);
        assert_eq!((r.sent, r.acked, r.lost), (2, 2, 1));
        assert_eq!(r.median_ms, 2.0);
        assert!(r.p99_ms.is_infinite());
    }
}
