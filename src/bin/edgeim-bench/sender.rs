//! A flow's senders: closed loop ([`window_sender`], one thread) and open
//! loop ([`rate_sender`], a paced writer thread and a reader).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use edgeim::client::frames::{StatusBody, TYPE_RECEIVE_STATUS, TYPE_SEND_STATUS, TYPE_TEXT};
use edgeim::client::ws::{self, WriteHalf, Ws, is_timeout};
use tungstenite::{Message, WebSocket};

use crate::POLL;
use crate::args::Flow;
use crate::clock::{now_ns, sleep_until_ns};
use crate::conn::{Frame, ack_frame, close, parse_text_id, text_frame, text_id};
use crate::flow::{MAX_ITERATIONS, MAX_MESSAGES, RunShared, STAMP_DIGITS, Window, finish};
use crate::stats::Stats;

/// When text `seq` of sender `index` is due, for an open-loop flow.
pub(crate) struct Schedule {
    pub(crate) offset: f64,
    pub(crate) period: f64,
    pub(crate) count: u64,
}

impl Schedule {
    pub(crate) fn new(flow: &Flow, rate: f64, index: usize, window: Window) -> Schedule {
        // Senders take turns: sender i sends at (i + k * pairs) / rate.
        let period = flow.pairs as f64 * 1e9 / rate;
        let offset = index as f64 * 1e9 / rate;
        let span = (window.end - window.start) as f64;
        let count = if offset >= span {
            0
        } else {
            ((span - offset) / period).ceil() as u64
        };
        Schedule {
            offset: window.start as f64 + offset,
            period,
            count: count.min(MAX_MESSAGES / flow.pairs as u64),
        }
    }

    pub(crate) fn due(&self, seq: u64) -> u64 {
        (self.offset + seq as f64 * self.period) as u64
    }
}

/// A sender's texts: when each was sent (closed loop) or due (open loop),
/// and which got their 9001.
pub(crate) struct Outbox {
    pub(crate) index: usize,
    pub(crate) stamp: Vec<u64>,
    pub(crate) answered: Vec<bool>,
    pub(crate) n_answered: u64,
    /// Fanout: receipts (9101) per text, and texts that have their 9001
    /// and every receipt. A fanout text stays in the window until then,
    /// so that the receipts the sender is owed stay within the server's
    /// send queue (window x recipients).
    pub(crate) receipts: Vec<u32>,
    pub(crate) n_complete: u64,
    pub(crate) recipients: usize,
}

impl Outbox {
    pub(crate) fn new(index: usize, recipients: usize) -> Outbox {
        Outbox {
            index,
            stamp: Vec::new(),
            answered: Vec::new(),
            n_answered: 0,
            receipts: Vec::new(),
            n_complete: 0,
            recipients,
        }
    }

    pub(crate) fn push(&mut self, stamp: u64) {
        self.stamp.push(stamp);
        self.answered.push(false);
        self.receipts.push(0);
    }

    /// Texts of the first `sent` that still hold a place in the window.
    pub(crate) fn in_flight(&self, sent: u64) -> u64 {
        if self.recipients > 1 {
            sent - self.n_complete
        } else {
            sent - self.n_answered
        }
    }

    /// Counts text `n` complete once it has its 9001 and all receipts.
    pub(crate) fn check_complete(&mut self, n: usize) {
        if self.answered[n] && self.receipts[n] as usize == self.recipients {
            self.n_complete += 1;
        }
    }

    /// One frame on a sender's connection: a 9001 for one of its texts, a
    /// forwarded receipt, or a text left over from an earlier run (which
    /// it acknowledges). Err: the connection is unusable.
    pub(crate) fn on_frame(
        &mut self,
        ws: &mut Ws,
        me: &str,
        text: &str,
        st: &mut Stats,
        shared: &RunShared,
        window: Window,
    ) -> Result<(), ()> {
        let Ok(f) = serde_json::from_str::<Frame>(text) else {
            st.error("sender: unreadable frame");
            return Ok(());
        };
        match f.kind {
            TYPE_SEND_STATUS => {
                let known = parse_text_id(&shared.tag, &f.id)
                    .filter(|(i, _)| *i == self.index)
                    .map(|(_, n)| n as usize)
                    .filter(|n| self.answered.get(*n) == Some(&false));
                let Some(n) = known else {
                    st.error(format!("9001 for an unknown or answered id {:?}", f.id));
                    return Ok(());
                };
                self.answered[n] = true;
                self.n_answered += 1;
                let status = StatusBody::of(&f.body);
                if status.code != 200 {
                    // No receipts will come: free its place.
                    self.n_complete += 1;
                    st.error(format!("9001 {status}"));
                    return Ok(());
                }
                self.check_complete(n);
                let now = now_ns();
                st.acked += 1;
                if now <= window.end {
                    st.acked_in_window += 1;
                }
                st.ack_latency.push(now.saturating_sub(self.stamp[n]));
                shared.acked.fetch_add(1, Ordering::Relaxed);
            }
            TYPE_RECEIVE_STATUS => {
                st.receipts += 1;
                let n = parse_text_id(&shared.tag, &f.id)
                    .filter(|(i, _)| *i == self.index)
                    .map(|(_, n)| n as usize)
                    .filter(|n| *n < self.receipts.len());
                if let Some(n) = n {
                    self.receipts[n] += 1;
                    self.check_complete(n);
                }
            }
            TYPE_TEXT => {
                // Left over from an earlier run: acknowledge it so it stops.
                if let Err(e) = ws.send(Message::text(ack_frame(&f.id, me, &f.from))) {
                    st.error(format!("sender send: {e}"));
                    return Err(());
                }
            }
            other => st.error(format!("sender got type {other}")),
        }
        Ok(())
    }
}

pub(crate) enum Next {
    Text(tungstenite::Utf8Bytes),
    Idle,
    Gone,
}

/// The next text frame, `Idle` after a read timeout, `Gone` (recorded as
/// an error) when the server closed or the socket failed.
pub(crate) fn next_text(ws: &mut Ws, st: &mut Stats, who: &str) -> Next {
    match ws.read() {
        Ok(Message::Text(t)) => Next::Text(t),
        Ok(Message::Close(f)) => {
            st.error(format!("{who} closed by the server: {f:?}"));
            Next::Gone
        }
        Ok(_) => Next::Idle,
        Err(e) if is_timeout(&e) => Next::Idle,
        Err(e) => {
            st.error(format!("{who} read: {e}"));
            Next::Gone
        }
    }
}

/// Closed loop, one thread: send while fewer than `limit` texts wait for
/// their 9001, otherwise block in read (the answers wake it).
pub(crate) fn window_sender(
    mut ws: Ws,
    me: &str,
    to: &str,
    index: usize,
    shared: &RunShared,
    window: Window,
    limit: usize,
) -> Stats {
    let flow = &shared.flow;
    let mut st = Stats::default();
    let mut out = Outbox::new(index, flow.recipients);
    let pad = "x".repeat(flow.size.saturating_sub(STAMP_DIGITS));
    let hard_end = window.end + (flow.drain * 1e9) as u64;
    let cap = MAX_MESSAGES / flow.pairs as u64;
    let mut seq = 0u64;
    sleep_until_ns(window.start);
    for _ in 0..MAX_ITERATIONS {
        let now = now_ns();
        if now >= hard_end {
            break;
        }
        let sending = now < window.end && seq < cap;
        let mut wrote = false;
        while sending && seq < cap && out.in_flight(seq) < limit as u64 {
            let t = now_ns();
            if let Err(e) = send_text(&mut ws, me, to, &shared.tag, index, seq, t, &pad) {
                st.error(format!("sender send: {e}"));
                return finish(ws, st);
            }
            out.push(t);
            st.sent += 1;
            st.sent_in_window += 1;
            seq += 1;
            wrote = true;
        }
        if wrote && let Err(e) = ws.flush() {
            st.error(format!("sender send: {e}"));
            return finish(ws, st);
        }
        if !sending && out.n_answered == seq {
            break;
        }
        match next_text(&mut ws, &mut st, "sender") {
            Next::Text(t) => {
                if out
                    .on_frame(&mut ws, me, &t, &mut st, shared, window)
                    .is_err()
                {
                    return st;
                }
            }
            Next::Idle => {}
            Next::Gone => return st,
        }
    }
    if seq > out.n_answered {
        let n = seq - out.n_answered;
        st.error(format!("{n} texts without a 9001 after the drain time"));
    }
    finish(ws, st)
}

/// Open loop, two threads: a writer sends each text at its due time
/// (waiting on a channel, which wakes on time, unlike a socket timeout)
/// while this thread reads the answers.
pub(crate) fn rate_sender(
    mut ws: Ws,
    me: &str,
    to: &str,
    index: usize,
    shared: &RunShared,
    window: Window,
    rate: f64,
) -> Stats {
    let flow = &shared.flow;
    let mut st = Stats::default();
    let schedule = Schedule::new(flow, rate, index, window);
    let mut out = Outbox::new(index, 1);
    for k in 0..schedule.count {
        out.push(schedule.due(k));
    }
    let half = match ws::split(&mut ws) {
        Ok(h) => h,
        Err(e) => {
            st.error(e.to_string());
            return st;
        }
    };
    let sent = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let hard_end = window.end + (flow.drain * 1e9) as u64;
    thread::scope(|scope| {
        let writer = thread::Builder::new()
            .name(format!("{me}-w"))
            .stack_size(128 * 1024)
            .spawn_scoped(scope, || {
                let pace = Pace {
                    me,
                    to,
                    index,
                    shared,
                    window,
                    schedule: &schedule,
                    sent: &sent,
                    done: &done,
                };
                paced_writer(half, &pace)
            });
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                st.error(format!("cannot start a writer thread: {e}"));
                return st;
            }
        };
        sleep_until_ns(window.start);
        for _ in 0..MAX_ITERATIONS {
            if now_ns() >= hard_end
                || (done.load(Ordering::Acquire) && out.n_answered >= sent.load(Ordering::Acquire))
            {
                break;
            }
            match next_text(&mut ws, &mut st, "sender") {
                Next::Text(t) => {
                    if out
                        .on_frame(&mut ws, me, &t, &mut st, shared, window)
                        .is_err()
                    {
                        break;
                    }
                }
                Next::Idle => {}
                Next::Gone => break,
            }
        }
        let unanswered = sent.load(Ordering::Acquire).saturating_sub(out.n_answered);
        if unanswered > 0 {
            st.error(format!(
                "{unanswered} texts without a 9001 after the drain time"
            ));
        }
        // The close goes out through the writer, which ends when `ws` is dropped.
        close(ws);
        st.merge(writer.join().unwrap_or_default());
        st
    })
}

/// What the paced writer needs to know.
pub(crate) struct Pace<'a> {
    pub(crate) me: &'a str,
    pub(crate) to: &'a str,
    pub(crate) index: usize,
    pub(crate) shared: &'a RunShared,
    pub(crate) window: Window,
    pub(crate) schedule: &'a Schedule,
    /// Texts written so far.
    pub(crate) sent: &'a AtomicU64,
    /// Set when the writer will send no more texts.
    pub(crate) done: &'a AtomicBool,
}

/// Sends every text of the schedule at its due time (late ones at once:
/// their latency still counts from the due time), and writes what the
/// reading side hands over (Pong, Close) until that side is dropped.
pub(crate) fn paced_writer(mut half: WriteHalf, p: &Pace) -> Stats {
    let mut st = Stats::default();
    let pad = "x".repeat(p.shared.flow.size.saturating_sub(STAMP_DIGITS));
    let hard_end = p.window.end + (p.shared.flow.drain * 1e9) as u64 + 2_000_000_000;
    let s = p.schedule;
    let mut seq = 0u64;
    let mut failed = false;
    for _ in 0..MAX_ITERATIONS {
        if !failed {
            let mut wrote = false;
            while seq < s.count && s.due(seq) <= now_ns() {
                let due = s.due(seq);
                let t = now_ns();
                let tag = &p.shared.tag;
                if let Err(e) = send_text(&mut half.ws, p.me, p.to, tag, p.index, seq, due, &pad) {
                    st.error(format!("sender send: {e}"));
                    failed = true;
                    break;
                }
                st.send_lag.push(t.saturating_sub(due));
                st.sent += 1;
                if t <= p.window.end {
                    st.sent_in_window += 1;
                }
                seq += 1;
                wrote = true;
            }
            if wrote && let Err(e) = half.ws.flush() {
                st.error(format!("sender send: {e}"));
                failed = true;
            }
            p.sent.store(seq, Ordering::Release);
            if failed || seq >= s.count {
                p.done.store(true, Ordering::Release);
            }
        }
        let wait = if !failed && seq < s.count {
            Duration::from_nanos(s.due(seq).saturating_sub(now_ns())).min(POLL)
        } else {
            POLL
        };
        match half.from_reader.recv_timeout(wait) {
            Ok(bytes) => {
                if half.ws.get_mut().write_all(&bytes).is_err() {
                    failed = true;
                    p.done.store(true, Ordering::Release);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if now_ns() >= hard_end {
            break;
        }
    }
    p.done.store(true, Ordering::Release);
    st
}

/// Writes (does not flush) text `seq`; its body starts with `stamp`.
#[allow(clippy::too_many_arguments)] // the parts of one frame, kept flat for speed
pub(crate) fn send_text<S: Read + Write>(
    ws: &mut WebSocket<S>,
    me: &str,
    to: &str,
    tag: &str,
    index: usize,
    seq: u64,
    stamp: u64,
    pad: &str,
) -> Result<(), tungstenite::Error> {
    let id = text_id(tag, index, seq);
    ws.write(Message::text(text_frame(&id, me, to, stamp, pad)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Pacing;

    #[test]
    fn a_rate_schedule_spreads_the_total_over_the_senders() {
        let flow = Flow {
            pairs: 4,
            recipients: 1,
            seconds: 1.0,
            size: 120,
            pacing: Pacing::Rate(1000.0),
            drain: 1.0,
        };
        let w = Window {
            start: 0,
            end: 1_000_000_000,
        };
        let total: u64 = (0..4)
            .map(|i| Schedule::new(&flow, 1000.0, i, w).count)
            .sum();
        assert_eq!(total, 1000);
        let s1 = Schedule::new(&flow, 1000.0, 1, w);
        assert_eq!(s1.due(0), 1_000_000);
        assert_eq!(s1.due(1), 5_000_000);
    }
}
