//! A flow's senders: closed loop ([`window_sender`], one thread) and open
//! loop ([`rate_sender`], a paced writer thread and a reader), over either
//! kind of [`Conn`]. Each text is written and flushed on its own (one
//! write call, as a browser sends) unless the flow is `--batched`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

use crate::POLL;
use crate::args::Flow;
use crate::clock::{now_ns, sleep_until_ns};
use crate::endpoint::{Conn, Got, TextOut, Whose, WriteSide};
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
    /// Texts below this one all have their answer (where MQTT packet ids
    /// are looked up from).
    pub(crate) first_open: usize,
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
            first_open: 0,
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

    /// The text whose MQTT packet id is `id` and that waits for its
    /// answer: ids repeat every 65,535 texts, and fewer are in flight.
    pub(crate) fn seq_of_packet(&mut self, id: u16) -> Option<usize> {
        while self.answered.get(self.first_open) == Some(&true) {
            self.first_open += 1;
        }
        let residue = usize::from(id.checked_sub(1)?);
        let k0 = self.first_open / 65_535;
        (k0..k0 + 2)
            .map(|k| k * 65_535 + residue)
            .find(|n| self.answered.get(*n) == Some(&false))
    }

    /// What one read on a sender's connection gave: an answer (9001 or
    /// PUBACK) for one of its texts, a forwarded receipt, or a text left
    /// over from an earlier run (which it acknowledges). Err: the
    /// connection is unusable.
    pub(crate) fn on_got(
        &mut self,
        conn: &mut Conn,
        got: Got,
        st: &mut Stats,
        shared: &RunShared,
        window: Window,
    ) -> Result<(), ()> {
        match got {
            Got::Status { whose, refused } => {
                let n = match &whose {
                    Whose::Text(i, n) if *i == self.index => Some(*n as usize),
                    Whose::Packet(id) => self.seq_of_packet(*id),
                    _ => None,
                };
                let Some(n) = n.filter(|n| self.answered.get(*n) == Some(&false)) else {
                    let id = match whose {
                        Whose::Text(i, n) => format!("{i}.{n}"),
                        Whose::Packet(id) => format!("packet {id}"),
                        Whose::Unknown(id) => id,
                    };
                    st.error(format!("an answer for an unknown or answered id {id:?}"));
                    return Ok(());
                };
                self.answered[n] = true;
                self.n_answered += 1;
                if let Some(why) = refused {
                    // No receipts will come: free its place.
                    self.n_complete += 1;
                    st.error(format!("9001 {why}"));
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
            Got::Receipt(id) => {
                st.receipts += 1;
                let n = id
                    .filter(|(i, _)| *i == self.index)
                    .map(|(_, n)| n as usize)
                    .filter(|n| *n < self.receipts.len());
                if let Some(n) = n {
                    self.receipts[n] += 1;
                    self.check_complete(n);
                }
            }
            Got::Text { answer, .. } => {
                // Left over from an earlier run: acknowledge it so it stops.
                if let Err(e) = conn.answer(answer) {
                    st.error(format!("sender send: {e}"));
                    return Err(());
                }
            }
            Got::Unreadable(why) => st.error(format!("sender: {why}")),
            Got::Gone(why) => {
                st.error(format!("sender {why}"));
                return Err(());
            }
            Got::Nothing | Got::Idle => {}
        }
        Ok(())
    }
}

/// Closed loop, one thread: send while fewer than `limit` texts wait for
/// their answer, otherwise block in read (the answers wake it).
pub(crate) fn window_sender(
    mut conn: Conn,
    me: &str,
    to: &str,
    index: usize,
    shared: &RunShared,
    window: Window,
    limit: usize,
) -> Stats {
    let flow = &shared.flow;
    let mut st = Stats::default();
    let mut out = Outbox::new(index, shared.receipts_per_text());
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
            let text = TextOut {
                me,
                to,
                tag: &shared.tag,
                index,
                seq,
                stamp: t,
                pad: &pad,
            };
            // One frame per write unless batched: then one flush below.
            let sent = conn
                .send_text(&text)
                .and_then(|()| if flow.batched { Ok(()) } else { conn.flush() });
            if let Err(e) = sent {
                st.error(format!("sender send: {e}"));
                return finish(conn, st);
            }
            out.push(t);
            st.sent += 1;
            st.sent_in_window += 1;
            seq += 1;
            wrote = true;
        }
        if wrote
            && flow.batched
            && let Err(e) = conn.flush()
        {
            st.error(format!("sender send: {e}"));
            return finish(conn, st);
        }
        if !sending && out.n_answered == seq {
            break;
        }
        let got = conn.next(me, &shared.tag);
        if out.on_got(&mut conn, got, &mut st, shared, window).is_err() {
            return st;
        }
    }
    if seq > out.n_answered {
        let n = seq - out.n_answered;
        st.error(format!("{n} texts without an answer after the drain time"));
    }
    finish(conn, st)
}

/// Open loop, two threads: a writer sends each text at its due time
/// (waiting on a channel, which wakes on time, unlike a socket timeout)
/// while this thread reads the answers.
pub(crate) fn rate_sender(
    mut conn: Conn,
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
    let half = match conn.split() {
        Ok(h) => h,
        Err(e) => {
            st.error(e);
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
            let got = conn.next(me, &shared.tag);
            if out.on_got(&mut conn, got, &mut st, shared, window).is_err() {
                break;
            }
        }
        let unanswered = sent.load(Ordering::Acquire).saturating_sub(out.n_answered);
        if unanswered > 0 {
            st.error(format!(
                "{unanswered} texts without an answer after the drain time"
            ));
        }
        // The close goes out through the writer, which ends when `conn` is dropped.
        conn.close();
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
/// their latency still counts from the due time), each in a write of its
/// own unless batched, and writes what the reading side hands over (Pong,
/// Close, DISCONNECT) until that side is dropped.
pub(crate) fn paced_writer(mut half: WriteSide, p: &Pace) -> Stats {
    let mut st = Stats::default();
    let flow = &p.shared.flow;
    let pad = "x".repeat(flow.size.saturating_sub(STAMP_DIGITS));
    let hard_end = p.window.end + (flow.drain * 1e9) as u64 + 2_000_000_000;
    let s = p.schedule;
    let mut seq = 0u64;
    let mut failed = false;
    for _ in 0..MAX_ITERATIONS {
        if !failed {
            let mut wrote = false;
            while seq < s.count && s.due(seq) <= now_ns() {
                let due = s.due(seq);
                let t = now_ns();
                let text = TextOut {
                    me: p.me,
                    to: p.to,
                    tag: &p.shared.tag,
                    index: p.index,
                    seq,
                    stamp: due,
                    pad: &pad,
                };
                let sent = half
                    .send_text(&text)
                    .and_then(|()| if flow.batched { Ok(()) } else { half.flush() });
                if let Err(e) = sent {
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
            if wrote
                && flow.batched
                && let Err(e) = half.flush()
            {
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
        match half.handed_over().recv_timeout(wait) {
            Ok(bytes) => {
                if half.write_raw(&bytes).is_err() {
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
            batched: false,
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

    #[test]
    fn an_mqtt_packet_id_finds_its_text_across_the_wrap() {
        use crate::endpoint::packet_id;
        let mut out = Outbox::new(0, 1);
        for seq in 0..70_000u64 {
            out.push(seq);
        }
        assert_eq!(out.seq_of_packet(packet_id(3)), Some(3));
        assert_eq!(out.seq_of_packet(0), None);
        // Once the first 65,535 are answered, id 1 means text 65,535.
        for n in 0..65_535 {
            out.answered[n] = true;
        }
        assert_eq!(out.seq_of_packet(packet_id(65_535)), Some(65_535));
        assert_eq!(out.seq_of_packet(packet_id(3)), Some(65_538));
    }
}
