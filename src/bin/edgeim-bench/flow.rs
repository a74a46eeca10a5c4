//! `pairs`, `rate` and `fanout`: one flow of texts from N senders to their
//! receivers ([`run_flow`]), the receivers' side, and the flow's figures.
//! The senders are in [`crate::sender`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use edgeim::client::frames::{StatusBody, TYPE_SEND_STATUS, TYPE_TEXT};
use edgeim::client::ws::{Ws, is_timeout};
use tungstenite::Message;

use crate::args::{Flow, Pacing};
use crate::clock::{now_ns, sleep_until_ns};
use crate::conn::{Frame, ack_frame, close, open_client, parse_text_id};
use crate::procfs::CpuSample;
use crate::sender::{rate_sender, window_sender};
use crate::stats::{RunResult, Stats, quantile_ms};
use crate::target::Target;

/// The clientName of every benchmark connection (the same across runs, so a
/// rerun replaces the client instead of making the server track new ones).
pub(crate) const CLIENT_NAME: &str = "bench";
/// Digits of the send time (ns since the generator started) that start
/// every text body, so a receiver can time the delivery.
pub(crate) const STAMP_DIGITS: usize = 20;
/// Upper bound on texts sent in one run, whatever the server's speed.
pub(crate) const MAX_MESSAGES: u64 = 20_000_000;
/// Upper bound on loop iterations of one worker (each one reads or sends).
pub(crate) const MAX_ITERATIONS: u64 = 200_000_000;

/// What every worker of one run shares.
pub(crate) struct RunShared {
    pub(crate) tag: String,
    pub(crate) flow: Flow,
    /// Texts answered 9001 SUCCESS so far.
    pub(crate) acked: AtomicU64,
    /// Texts of this run received so far.
    pub(crate) delivered: AtomicU64,
    /// Tells the receivers to finish.
    pub(crate) stop: AtomicBool,
}

/// The measured window, in ns since [`epoch`](crate::clock::epoch).
#[derive(Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

pub(crate) enum Part {
    Sender { index: usize, to: String },
    Receiver,
}

/// One run of `flow`: connect everyone, release them together, measure
/// the window, drain, collect.
pub(crate) fn run_flow(target: &Target, flow: &Flow) -> Result<RunResult, String> {
    let shared = Arc::new(RunShared {
        tag: uuid::Uuid::new_v4().simple().to_string()[..10].to_string(),
        flow: flow.clone(),
        acked: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let group = 1 + flow.recipients;
    let n = flow.pairs * group;
    let (ready_tx, ready_rx) = unbounded::<Result<(), String>>();
    let (go_tx, go_rx) = unbounded::<Option<Window>>();
    thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        let mut spawn_error = None;
        for i in 0..n {
            let user = format!("u{i}");
            let role = if i % group == 0 {
                let to: Vec<String> = (1..group).map(|k| format!("u{}", i + k)).collect();
                Part::Sender {
                    index: i / group,
                    to: to.join(","),
                }
            } else {
                Part::Receiver
            };
            let is_sender = matches!(role, Part::Sender { .. });
            let (ready_tx, go_rx, shared) = (ready_tx.clone(), go_rx.clone(), Arc::clone(&shared));
            let spawned = thread::Builder::new()
                .name(user.clone())
                .stack_size(256 * 1024)
                .spawn_scoped(scope, move || {
                    worker(target, &user, role, &shared, &ready_tx, &go_rx)
                });
            match spawned {
                Ok(h) if is_sender => senders.push(h),
                Ok(h) => receivers.push(h),
                Err(e) => {
                    spawn_error = Some(format!("cannot start thread {i}: {e}"));
                    break;
                }
            }
        }
        let started = senders.len() + receivers.len();
        let mut failure = spawn_error.take();
        let setup_deadline = Instant::now() + Duration::from_secs(120);
        for _ in 0..started {
            match ready_rx.recv_timeout(setup_deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert("clients not ready within 120 s".into());
                    break;
                }
            }
        }
        if let Some(e) = failure {
            for _ in 0..started {
                let _ = go_tx.send(None);
            }
            shared.stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        let start = now_ns() + 20_000_000;
        let window = Window {
            start,
            end: start + (flow.seconds * 1e9) as u64,
        };
        for _ in 0..started {
            let _ = go_tx.send(Some(window));
        }
        sleep_until_ns(window.start);
        let cpu0 = target.cpu();
        let rss0 = target.server_rss_kib();
        sleep_until_ns(window.end);
        let cpu1 = target.cpu();
        let rss1 = target.server_rss_kib();
        let mut total = Stats::default();
        for h in senders.drain(..) {
            total.merge(h.join().unwrap_or_default());
        }
        // The receivers go on until everything acknowledged has arrived,
        // or the drain time is up.
        let drain_end = Instant::now() + Duration::from_secs_f64(flow.drain);
        while Instant::now() < drain_end
            && shared.delivered.load(Ordering::Relaxed)
                < shared.acked.load(Ordering::Relaxed) * flow.recipients as u64
        {
            thread::sleep(Duration::from_millis(5));
        }
        shared.stop.store(true, Ordering::Relaxed);
        for h in receivers.drain(..) {
            total.merge(h.join().unwrap_or_default());
        }
        Ok(flow_figures(flow, window, total, &cpu0, &cpu1, rss0, rss1))
    })
}

/// One worker thread: connect, report ready, wait for the start, play its role.
pub(crate) fn worker(
    target: &Target,
    user: &str,
    role: Part,
    shared: &RunShared,
    ready: &Sender<Result<(), String>>,
    go: &Receiver<Option<Window>>,
) -> Stats {
    let ws = match open_client(target, user, CLIENT_NAME) {
        Ok(o) => o.ws,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Stats::default();
        }
    };
    let _ = ready.send(Ok(()));
    let Ok(Some(window)) = go.recv_timeout(Duration::from_secs(300)) else {
        close(ws);
        return Stats::default();
    };
    match (role, shared.flow.pacing) {
        (Part::Sender { index, to }, Pacing::Window(w)) => {
            window_sender(ws, user, &to, index, shared, window, w)
        }
        (Part::Sender { index, to }, Pacing::Rate(r)) => {
            rate_sender(ws, user, &to, index, shared, window, r)
        }
        (Part::Receiver, _) => receiver(ws, user, shared, window),
    }
}

pub(crate) fn finish(ws: Ws, st: Stats) -> Stats {
    close(ws);
    st
}

pub(crate) fn receiver(mut ws: Ws, me: &str, shared: &RunShared, window: Window) -> Stats {
    let mut st = Stats::default();
    let hard_end = window.end + (2.0 * shared.flow.drain * 1e9) as u64 + 1_000_000_000;
    // The last seq seen from each sender: delivery is in order, once.
    let mut last: HashMap<usize, u64> = HashMap::new();
    sleep_until_ns(window.start);
    for _ in 0..MAX_ITERATIONS {
        if shared.stop.load(Ordering::Relaxed) || now_ns() >= hard_end {
            break;
        }
        let text = match ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(f)) => {
                st.error(format!("receiver closed by the server: {f:?}"));
                return st;
            }
            Ok(_) => continue,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => {
                st.error(format!("receiver read: {e}"));
                return st;
            }
        };
        let now = now_ns();
        let Ok(f) = serde_json::from_str::<Frame>(&text) else {
            st.error("receiver: unreadable frame");
            continue;
        };
        match f.kind {
            TYPE_TEXT => {
                if let Some((sender, seq)) = parse_text_id(&shared.tag, &f.id) {
                    if last.get(&sender).is_some_and(|l| seq <= *l) {
                        st.error("a text delivered twice or out of order");
                    }
                    last.insert(sender, seq);
                    match f
                        .body
                        .get(..STAMP_DIGITS)
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        Some(t) => {
                            st.delivery_latency.push(now.saturating_sub(t));
                            if shared.flow.recipients > 1 {
                                st.deliveries.push((sender, seq, now.saturating_sub(t)));
                            }
                        }
                        None => st.error("a text without its time stamp"),
                    }
                    st.delivered += 1;
                    if now <= window.end {
                        st.delivered_in_window += 1;
                    }
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = ws.send(Message::text(ack_frame(&f.id, me, &f.from))) {
                    st.error(format!("receiver send: {e}"));
                    return finish(ws, st);
                }
            }
            TYPE_SEND_STATUS => {
                let status = StatusBody::of(&f.body);
                if status.code != 200 {
                    st.error(format!("9001 to a receipt: {status}"));
                }
            }
            other => st.error(format!("receiver got type {other}")),
        }
    }
    finish(ws, st)
}

pub(crate) fn flow_figures(
    flow: &Flow,
    window: Window,
    mut t: Stats,
    cpu0: &CpuSample,
    cpu1: &CpuSample,
    rss0: Option<f64>,
    rss1: Option<f64>,
) -> RunResult {
    let secs = (window.end - window.start) as f64 / 1e9;
    t.ack_latency.sort_unstable();
    t.delivery_latency.sort_unstable();
    t.send_lag.sort_unstable();
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let server_cpu = diff(cpu0.server, cpu1.server);
    let client_cpu = diff(cpu0.client, cpu1.client);
    let per_s = |n: u64| n as f64 / secs;
    let per_msg_us = if t.delivered_in_window > 0 {
        server_cpu * 1e6 / t.delivered_in_window as f64
    } else {
        f64::NAN
    };
    if flow.recipients > 1 {
        // The time until the last recipient had a text; texts that did not
        // reach every recipient count as unanswered.
        let mut per_text: HashMap<(usize, u64), (usize, u64)> = HashMap::new();
        for (sender, seq, ns) in &t.deliveries {
            let e = per_text.entry((*sender, *seq)).or_default();
            e.0 += 1;
            e.1 = e.1.max(*ns);
        }
        let mut last: Vec<u64> = per_text
            .values()
            .filter(|(n, _)| *n == flow.recipients)
            .map(|(_, ns)| *ns)
            .collect();
        last.sort_unstable();
        let all = t.sent * flow.recipients as u64;
        let figures = vec![
            ("messages_acked_per_s", per_s(t.acked_in_window)),
            ("deliveries_per_s", per_s(t.delivered_in_window)),
            ("ack_p50_ms", quantile_ms(&t.ack_latency, t.sent, 0.50)),
            ("ack_p99_ms", quantile_ms(&t.ack_latency, t.sent, 0.99)),
            ("last_delivery_p50_ms", quantile_ms(&last, t.sent, 0.50)),
            ("last_delivery_p99_ms", quantile_ms(&last, t.sent, 0.99)),
            (
                "any_delivery_p50_ms",
                quantile_ms(&t.delivery_latency, all, 0.50),
            ),
            ("server_cpu_us_per_delivery", per_msg_us),
            ("server_cpu_pct", server_cpu * 100.0 / secs),
            ("client_cpu_pct", client_cpu * 100.0 / secs),
            ("server_rss_kib", rss1.unwrap_or(f64::NAN)),
            ("sent", t.sent as f64),
            ("delivered", t.delivered as f64),
            ("receipts", t.receipts as f64),
        ];
        return RunResult {
            figures,
            errors: t.errors,
            delivered: t.delivered,
        };
    }
    let mut figures = vec![];
    if let Pacing::Rate(_) = flow.pacing {
        figures.push(("sent_per_s", per_s(t.sent_in_window)));
    }
    figures.extend([
        ("delivered_per_s", per_s(t.delivered_in_window)),
        ("acked_per_s", per_s(t.acked_in_window)),
        ("ack_p50_ms", quantile_ms(&t.ack_latency, t.sent, 0.50)),
        ("ack_p99_ms", quantile_ms(&t.ack_latency, t.sent, 0.99)),
        ("ack_p999_ms", quantile_ms(&t.ack_latency, t.sent, 0.999)),
        (
            "delivery_p50_ms",
            quantile_ms(&t.delivery_latency, t.sent, 0.50),
        ),
        (
            "delivery_p99_ms",
            quantile_ms(&t.delivery_latency, t.sent, 0.99),
        ),
        (
            "delivery_p999_ms",
            quantile_ms(&t.delivery_latency, t.sent, 0.999),
        ),
    ]);
    if let Pacing::Rate(_) = flow.pacing {
        figures.push(("send_lag_p99_ms", quantile_ms(&t.send_lag, t.sent, 0.99)));
    }
    figures.extend([
        ("server_cpu_us_per_msg", per_msg_us),
        ("server_cpu_pct", server_cpu * 100.0 / secs),
        ("client_cpu_pct", client_cpu * 100.0 / secs),
        ("server_rss_start_kib", rss0.unwrap_or(f64::NAN)),
        ("server_rss_kib", rss1.unwrap_or(f64::NAN)),
        ("sent", t.sent as f64),
        ("delivered", t.delivered as f64),
        ("receipts", t.receipts as f64),
    ]);
    RunResult {
        figures,
        errors: t.errors,
        delivered: t.delivered,
    }
}
