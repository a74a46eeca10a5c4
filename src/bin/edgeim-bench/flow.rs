//! `pairs`, `rate` and `fanout`: one flow of texts from N senders to their
//! receivers ([`run_flow`]), the receivers' side, and the flow's figures,
//! against edgeim or an MQTT broker alike (the connection is an
//! [`endpoint::Conn`](crate::endpoint::Conn)). The senders are in
//! [`crate::sender`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::args::{Flow, Pacing};
use crate::clock::{now_ns, sleep_until_ns};
use crate::cost::{self, ServerSample};
use crate::endpoint::{Conn, Got, Whose, topic};
use crate::procfs::rss_kib;
use crate::sender::{rate_sender, window_sender};
use crate::stats::{RunResult, Stats, quantile_ms};
use crate::target::Server;

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
    /// Whether the server forwards each receiver's acknowledgement to the
    /// sender (edgeim's 9101; an MQTT broker does not).
    pub(crate) forwards_receipts: bool,
}

impl RunShared {
    /// Receipts a sender waits for per text before its place in the
    /// window is free (fanout): every recipient's, where they come.
    pub(crate) fn receipts_per_text(&self) -> usize {
        if self.forwards_receipts {
            self.flow.recipients
        } else {
            1
        }
    }
}

/// The measured window, in ns since [`epoch`](crate::clock::epoch).
#[derive(Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

pub(crate) enum Part {
    /// `to`: the recipients' user ids (edgeim) or the topic (MQTT).
    Sender { index: usize, to: String },
    /// `topic`: what it subscribes to (MQTT).
    Receiver { topic: String },
}

/// One run of `flow`: connect everyone, release them together, measure
/// the window, drain, collect.
pub(crate) fn run_flow(server: Server<'_>, flow: &Flow) -> Result<RunResult, String> {
    let shared = Arc::new(RunShared {
        tag: uuid::Uuid::new_v4().simple().to_string()[..10].to_string(),
        flow: flow.clone(),
        acked: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        forwards_receipts: matches!(server, Server::Edgeim(_)),
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
            let first = i - i % group;
            let role = match (i % group, server) {
                (0, Server::Edgeim(_)) => {
                    let to: Vec<String> = (1..group).map(|k| format!("u{}", i + k)).collect();
                    Part::Sender {
                        index: i / group,
                        to: to.join(","),
                    }
                }
                (0, Server::Mqtt(_)) => Part::Sender {
                    index: i / group,
                    to: topic(&format!("u{}", i + 1)),
                },
                _ => Part::Receiver {
                    topic: topic(&format!("u{}", first + 1)),
                },
            };
            let is_sender = matches!(role, Part::Sender { .. });
            let (ready_tx, go_rx, shared) = (ready_tx.clone(), go_rx.clone(), Arc::clone(&shared));
            let spawned = thread::Builder::new()
                .name(user.clone())
                .stack_size(256 * 1024)
                .spawn_scoped(scope, move || {
                    worker(server, &user, role, &shared, &ready_tx, &go_rx)
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
        let ticks = server.ticks();
        let rss = || server.pid().and_then(|p| rss_kib(&p.to_string()));
        sleep_until_ns(window.start);
        let s0 = ServerSample::take(server, ticks, true);
        let rss0 = rss();
        sleep_until_ns(window.end);
        let s1 = ServerSample::take(server, ticks, false);
        let rss1 = rss();
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
        Ok(flow_figures(flow, window, total, &s0, &s1, rss0, rss1))
    })
}

/// One worker thread: connect, report ready, wait for the start, play its role.
pub(crate) fn worker(
    server: Server<'_>,
    user: &str,
    role: Part,
    shared: &RunShared,
    ready: &Sender<Result<(), String>>,
    go: &Receiver<Option<Window>>,
) -> Stats {
    let subscribe = match &role {
        Part::Receiver { topic } => Some(topic.as_str()),
        Part::Sender { .. } => None,
    };
    let conn = match Conn::open(server, user, CLIENT_NAME, subscribe) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Stats::default();
        }
    };
    let _ = ready.send(Ok(()));
    let Ok(Some(window)) = go.recv_timeout(Duration::from_secs(300)) else {
        conn.close();
        return Stats::default();
    };
    match (role, shared.flow.pacing) {
        (Part::Sender { index, to }, Pacing::Window(w)) => {
            window_sender(conn, user, &to, index, shared, window, w)
        }
        (Part::Sender { index, to }, Pacing::Rate(r)) => {
            rate_sender(conn, user, &to, index, shared, window, r)
        }
        (Part::Receiver { .. }, _) => receiver(conn, user, shared, window),
    }
}

pub(crate) fn finish(conn: Conn, st: Stats) -> Stats {
    conn.close();
    st
}

/// A receiver: checks each text of the run arrives once and in order,
/// times it from its stamp, and answers it (a 9101 or a PUBACK) in a
/// write of its own.
pub(crate) fn receiver(mut conn: Conn, me: &str, shared: &RunShared, window: Window) -> Stats {
    let mut st = Stats::default();
    let hard_end = window.end + (2.0 * shared.flow.drain * 1e9) as u64 + 1_000_000_000;
    // The last seq seen from each sender: delivery is in order, once.
    let mut last: HashMap<usize, u64> = HashMap::new();
    sleep_until_ns(window.start);
    for _ in 0..MAX_ITERATIONS {
        if shared.stop.load(Ordering::Relaxed) || now_ns() >= hard_end {
            break;
        }
        let got = conn.next(me, &shared.tag);
        let now = now_ns();
        match got {
            Got::Text {
                of_run,
                stamp,
                answer,
            } => {
                if let Some((sender, seq)) = of_run {
                    if last.get(&sender).is_some_and(|l| seq <= *l) {
                        st.error("a text delivered twice or out of order");
                    }
                    last.insert(sender, seq);
                    match stamp {
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
                if let Err(e) = conn.answer(answer) {
                    st.error(format!("receiver send: {e}"));
                    return finish(conn, st);
                }
            }
            Got::Status { whose, refused } => {
                // A 9001 to one of our receipts; MQTT brokers send none.
                if let Some(why) = refused {
                    st.error(format!("9001 to a receipt: {why}"));
                } else if let Whose::Packet(id) = whose {
                    st.error(format!("receiver got a PUBACK for packet {id}"));
                }
            }
            Got::Receipt(_) => st.error("receiver got a receipt"),
            Got::Unreadable(why) => st.error(format!("receiver: {why}")),
            Got::Gone(why) => {
                st.error(format!("receiver {why}"));
                return st;
            }
            Got::Nothing | Got::Idle => {}
        }
    }
    finish(conn, st)
}

pub(crate) fn flow_figures(
    flow: &Flow,
    window: Window,
    mut t: Stats,
    s0: &ServerSample,
    s1: &ServerSample,
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
    let server_cpu = diff(s0.cpu, s1.cpu);
    let client_cpu = diff(s0.client_cpu, s1.client_cpu);
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
        let mut figures = vec![
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
        ];
        figures.extend(cost::figures(s0, s1, t.delivered_in_window, "delivery"));
        figures.extend([
            ("server_cpu_pct", server_cpu * 100.0 / secs),
            ("client_cpu_pct", client_cpu * 100.0 / secs),
            ("server_rss_kib", rss1.unwrap_or(f64::NAN)),
            ("sent", t.sent as f64),
            ("delivered", t.delivered as f64),
            ("receipts", t.receipts as f64),
        ]);
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
    figures.extend([("server_cpu_us_per_msg", per_msg_us)]);
    figures.extend(cost::figures(s0, s1, t.delivered_in_window, "msg"));
    figures.extend([
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
