//! The writer's ordering rules, as a state machine free of I/O. The writer
//! thread pushes what arrives on its two channels and writes what
//! [`WriterQueue::next`] gives it, in that order:
//!
//! 1. control first: a close must not wait behind a full queue;
//! 2. otherwise first come, first written;
//! 3. a backlog (the redelivery after register) goes out in chunks of
//!    [`BACKLOG_CHUNK`], and between two chunks the writer looks at its
//!    channels again;
//! 4. answers (9001) that arrive meanwhile go ahead of the rest of the
//!    backlog, so a client acknowledging its backlog is not starved, and
//!    so do presence frames (3001), which no text is ordered against;
//! 5. newer messages wait behind the backlog, so order is kept;
//! 6. nothing is written after a Close.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tungstenite::Utf8Bytes;

use crate::events::{Ctrl, Outbound};
use crate::wire::frames::FrameType;

/// Backlog frames written between two looks for answers to send.
pub const BACKLOG_CHUNK: usize = 16;

/// Bytes the writer took off its queue since it last looked: all of them,
/// and those of answers and of presence frames among them (what
/// [`Queued::release`] takes off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub bytes: usize,
    pub answer_bytes: usize,
    pub presence_bytes: usize,
}

impl Released {
    /// One item's bytes, given back whole (the router's send failed).
    pub fn of(item: &Outbound) -> Released {
        let mut r = Released::default();
        r.add(item);
        r
    }

    /// An answer (a 9001) the router counts twice: in all the bytes
    /// waiting, and in the answers' own; a presence frame (3001) too, in
    /// the presence frames' own.
    fn frame(&mut self, f: &Utf8Bytes, kind: FrameType) {
        self.bytes += f.len();
        match kind {
            FrameType::Status => self.answer_bytes += f.len(),
            FrameType::Presence => self.presence_bytes += f.len(),
            FrameType::Text | FrameType::Receipt => {}
        }
    }

    fn add(&mut self, item: &Outbound) {
        self.bytes += item.bytes();
        if item.is_answer() {
            self.answer_bytes += item.bytes();
        }
        if item.is_presence() {
            self.presence_bytes += item.bytes();
        }
    }
}

/// The bytes waiting for one connection's writer ([`Outbound::bytes`]):
/// the router adds an item's as it queues it and holds them against
/// `send_queue`; the writer takes them off once it has written the item
/// or dropped it ([`Released`]). Every change is mirrored in `gauge`, one sum
/// over all connections (`edgeim_send_queue_bytes`), with one relaxed add.
/// What is still counted when this is dropped, with the connection's
/// state, comes off the gauge then: items left in the writer's queue or
/// channel when it ended are never released one by one, and the gauge
/// must still return to 0 once the connections are gone.
pub struct Queued {
    all: AtomicUsize,
    answers: AtomicUsize,
    presence: AtomicUsize,
    gauge: &'static AtomicU64,
}

impl Queued {
    pub fn new(gauge: &'static AtomicU64) -> Queued {
        Queued {
            all: AtomicUsize::new(0),
            answers: AtomicUsize::new(0),
            presence: AtomicUsize::new(0),
            gauge,
        }
    }

    /// All bytes waiting, answers included.
    pub fn all(&self) -> usize {
        self.all.load(Ordering::Acquire)
    }

    /// The bytes of answers (9001) waiting: they have an allowance of
    /// their own, so that answers never close a connection that keeps up
    /// with them, whatever else (a backlog) waits before them.
    pub fn answers(&self) -> usize {
        self.answers.load(Ordering::Acquire)
    }

    /// All bytes waiting but those of presence frames: what texts are
    /// measured against, so that a 3001 never closes a client that keeps
    /// up with its texts (PROTOCOL.md section 11). The presence count is
    /// read first and [`Queued::release`] takes from `all` first, so a
    /// release between the two reads can make this short by a frame for
    /// a moment, never long by one.
    pub fn texts(&self) -> usize {
        let presence = self.presence.load(Ordering::Acquire);
        self.all().saturating_sub(presence)
    }

    /// The router queued an item of `bytes`, an answer or not.
    pub fn add(&self, bytes: usize, answer: bool) {
        self.all.fetch_add(bytes, Ordering::AcqRel);
        if answer {
            self.answers.fetch_add(bytes, Ordering::AcqRel);
        }
        self.gauge.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The router queued a presence frame of `bytes` (only the router
    /// adds, and only it asks for [`Queued::texts`]: no order to keep).
    pub fn add_presence(&self, bytes: usize) {
        self.presence.fetch_add(bytes, Ordering::AcqRel);
        self.add(bytes, false);
    }

    /// Bytes no longer waiting: taken to be written, or dropped.
    pub fn release(&self, r: Released) {
        if r.bytes > 0 {
            self.all.fetch_sub(r.bytes, Ordering::AcqRel);
            self.gauge.fetch_sub(r.bytes as u64, Ordering::Relaxed);
        }
        if r.answer_bytes > 0 {
            self.answers.fetch_sub(r.answer_bytes, Ordering::AcqRel);
        }
        if r.presence_bytes > 0 {
            self.presence.fetch_sub(r.presence_bytes, Ordering::AcqRel);
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        // Nothing else can touch the count now: whatever it holds was
        // added to the gauge and never taken off.
        let left = *self.all.get_mut();
        if left > 0 {
            self.gauge.fetch_sub(left as u64, Ordering::Relaxed);
        }
    }
}

/// What the writer does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Write this text frame, of this type.
    Text(Utf8Bytes, FrameType),
    /// Write these bytes as they are (the reader's pongs, close replies).
    Raw(Vec<u8>),
    /// Send a Close frame; nothing else follows it.
    Close(u16, Cow<'static, str>),
    /// The reader is gone: flush and stop.
    Stop,
    /// A backlog chunk is done: flush, and push what has arrived since
    /// before asking again.
    EndOfChunk,
}

/// The writer's queue. Every byte the router queued counts against
/// `send_queue` until the writer takes its frame to write it, or drops it
/// after a Close ([`WriterQueue::released`]): what waits here is counted
/// as long as it takes memory.
#[derive(Default)]
pub struct WriterQueue {
    ctrl: VecDeque<Ctrl>,
    /// In arrival order; written before the backlog.
    ready: VecDeque<(Utf8Bytes, FrameType)>,
    /// The backlog being written.
    backlog: VecDeque<Utf8Bytes>,
    /// Backlog frames written in the current chunk.
    in_chunk: usize,
    /// Frames and backlogs that came while a backlog was being written.
    later: VecDeque<Outbound>,
    closed: bool,
    /// Bytes taken (or dropped) since the last [`WriterQueue::released`].
    released: Released,
}

impl WriterQueue {
    /// An order from the control channel.
    pub fn push_ctrl(&mut self, c: Ctrl) {
        // The writer flushes after every wake-up: a Flush only wakes it.
        if matches!(c, Ctrl::Flush) {
            return;
        }
        // After the Close only the reader's Stop still matters.
        if !self.closed || matches!(c, Ctrl::Stop) {
            self.ctrl.push_back(c);
        }
    }

    /// An item from the router.
    pub fn push(&mut self, item: Outbound) {
        if self.closed {
            self.released.add(&item);
            return;
        }
        let behind_backlog = !self.backlog.is_empty() || !self.later.is_empty();
        match item {
            Outbound::Answer(f) => self.ready.push_back((f, FrameType::Status)),
            Outbound::Presence(f) => self.ready.push_back((f, FrameType::Presence)),
            other if behind_backlog => self.later.push_back(other),
            other => self.start(other),
        }
    }

    /// Starts on an item: a frame is ready, a batch the backlog.
    fn start(&mut self, item: Outbound) {
        match item {
            Outbound::Frame(f) => self.ready.push_back((f, FrameType::Text)),
            Outbound::Receipt(f) => self.ready.push_back((f, FrameType::Receipt)),
            Outbound::Answer(f) => self.ready.push_back((f, FrameType::Status)),
            Outbound::Presence(f) => self.ready.push_back((f, FrameType::Presence)),
            Outbound::Batch(fs) => self.backlog.extend(fs),
        }
    }

    /// The next thing to do, or `None` when there is nothing to write.
    pub fn next(&mut self) -> Option<Next> {
        while let Some(c) = self.ctrl.pop_front() {
            return Some(match c {
                // Never queued (`push_ctrl`).
                Ctrl::Flush => continue,
                Ctrl::Raw(bytes) => Next::Raw(bytes),
                // Only 9001s come this way (the reader's own answers, a
                // register the store refused).
                Ctrl::Frame(f) => Next::Text(f, FrameType::Status),
                Ctrl::Close(code, reason) => {
                    self.close();
                    Next::Close(code, reason)
                }
                Ctrl::Stop => Next::Stop,
            });
        }
        if self.closed {
            return None;
        }
        if let Some((f, kind)) = self.ready.pop_front() {
            self.released.frame(&f, kind);
            return Some(Next::Text(f, kind));
        }
        if self.in_chunk == BACKLOG_CHUNK {
            self.in_chunk = 0;
            return Some(Next::EndOfChunk);
        }
        if let Some(f) = self.backlog.pop_front() {
            self.released.frame(&f, FrameType::Text);
            self.in_chunk += 1;
            return Some(Next::Text(f, FrameType::Text));
        }
        if self.in_chunk > 0 {
            // The backlog's last, short chunk.
            self.in_chunk = 0;
            return Some(Next::EndOfChunk);
        }
        let item = self.later.pop_front()?;
        self.start(item);
        self.next()
    }

    /// Bytes taken to be written (or dropped) since the last call: the
    /// writer takes them off the connection's `queued` count.
    pub fn released(&mut self) -> Released {
        std::mem::take(&mut self.released)
    }

    /// Right after [`Next::EndOfChunk`]: whether that chunk ended a whole
    /// backlog (a Batch), rather than one chunk of it.
    pub fn backlog_done(&self) -> bool {
        self.backlog.is_empty()
    }

    /// Whether nothing at all waits to be written: then a frame the router
    /// writes itself is the next one ([`super::direct`]).
    pub fn is_empty(&self) -> bool {
        self.ctrl.is_empty()
            && self.ready.is_empty()
            && self.backlog.is_empty()
            && self.in_chunk == 0
            && self.later.is_empty()
    }

    /// Whether a Close has been taken: nothing more will be written.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Drops everything not yet written; only a Stop is taken from now on.
    fn close(&mut self) {
        self.closed = true;
        for (f, kind) in self.ready.drain(..) {
            self.released.frame(&f, kind);
        }
        for f in self.backlog.drain(..) {
            self.released.frame(&f, FrameType::Text);
        }
        self.backlog.clear();
        self.in_chunk = 0;
        while let Some(item) = self.later.pop_front() {
            self.released.add(&item);
        }
        self.ctrl.retain(|c| matches!(c, Ctrl::Stop));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Utf8Bytes {
        s.into()
    }

    fn batch(prefix: &str, n: usize) -> Outbound {
        Outbound::Batch((0..n).map(|i| f(&format!("{prefix}{i}"))).collect())
    }

    /// Everything `next` gives until it has nothing, as short strings.
    fn drain(q: &mut WriterQueue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(n) = q.next() {
            out.push(match n {
                Next::Text(t, _) => t.to_string(),
                Next::Raw(b) => format!("raw:{}", b.len()),
                Next::Close(code, _) => format!("close:{code}"),
                Next::Stop => "stop".into(),
                Next::EndOfChunk => "|".into(),
            });
        }
        out
    }

    #[test]
    fn control_goes_first() {
        let mut q = WriterQueue::default();
        q.push(Outbound::Frame(f("m1")));
        q.push_ctrl(Ctrl::Raw(vec![1, 2]));
        q.push_ctrl(Ctrl::Frame(f("local")));
        assert_eq!(drain(&mut q), ["raw:2", "local", "m1"]);
    }

    #[test]
    fn without_a_backlog_frames_and_answers_keep_their_order() {
        let mut q = WriterQueue::default();
        q.push(Outbound::Frame(f("m1")));
        q.push(Outbound::Answer(f("a1")));
        q.push(Outbound::Frame(f("m2")));
        assert_eq!(drain(&mut q), ["m1", "a1", "m2"]);
    }

    #[test]
    fn a_backlog_goes_out_in_chunks_of_16() {
        let mut q = WriterQueue::default();
        q.push(batch("b", 40));
        let out = drain(&mut q);
        let marks: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, s)| *s == "|")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(marks, [16, 33, 42], "{out:?}");
        assert_eq!(out.len(), 40 + 3);
    }

    #[test]
    fn the_end_of_a_whole_backlog_is_told_once_not_each_chunk() {
        for n in [1, 16, 17, 40] {
            let mut q = WriterQueue::default();
            q.push(batch("b", n));
            let mut done = 0;
            while let Some(next) = q.next() {
                if next == Next::EndOfChunk && q.backlog_done() {
                    done += 1;
                }
            }
            assert_eq!(done, 1, "a backlog of {n}");
        }
    }

    #[test]
    fn answers_go_ahead_of_a_backlog_in_progress() {
        let mut q = WriterQueue::default();
        q.push(batch("b", 20));
        let first: Vec<String> = (0..17)
            .map_while(|_| q.next())
            .map(|n| format!("{n:?}"))
            .collect();
        assert_eq!(first.last().map(String::as_str), Some("EndOfChunk"));
        q.push(Outbound::Answer(f("a1")));
        assert_eq!(drain(&mut q), ["a1", "b16", "b17", "b18", "b19", "|"]);
    }

    #[test]
    fn newer_frames_wait_behind_a_backlog() {
        let mut q = WriterQueue::default();
        q.push(batch("b", 17));
        q.push(Outbound::Frame(f("new1")));
        q.push(batch("c", 1));
        q.push(Outbound::Frame(f("new2")));
        let out = drain(&mut q);
        let texts: Vec<&str> = out
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "|")
            .collect();
        assert_eq!(texts.len(), 20);
        assert_eq!(&texts[16..], ["b16", "new1", "c0", "new2"]);
    }

    #[test]
    fn nothing_is_written_after_close() {
        let mut q = WriterQueue::default();
        q.push(batch("b", 3));
        q.push(Outbound::Frame(f("later")));
        q.push_ctrl(Ctrl::Close(1008, "slow".into()));
        assert_eq!(q.next(), Some(Next::Close(1008, "slow".into())));
        assert!(q.is_closed());
        q.push(Outbound::Frame(f("after")));
        q.push(Outbound::Answer(f("answer")));
        q.push_ctrl(Ctrl::Frame(f("local")));
        q.push_ctrl(Ctrl::Raw(vec![0]));
        assert_eq!(q.next(), None);
        q.push_ctrl(Ctrl::Stop);
        assert_eq!(drain(&mut q), ["stop"]);
    }

    #[test]
    fn queued_bytes_are_mirrored_in_the_gauge_and_given_back_on_drop() {
        // A gauge of this test's own: the process-wide one moves with
        // every other test's connections.
        static GAUGE: AtomicU64 = AtomicU64::new(0);
        let a = Queued::new(&GAUGE);
        let b = Queued::new(&GAUGE);
        a.add(10, false);
        a.add(5, true);
        b.add(4, false);
        assert_eq!((a.all(), a.answers()), (15, 5));
        assert_eq!(GAUGE.load(Ordering::Relaxed), 19);
        a.release(Released {
            bytes: 7,
            answer_bytes: 5,
            presence_bytes: 0,
        });
        a.release(Released::default());
        assert_eq!((a.all(), a.answers()), (8, 0));
        assert_eq!(GAUGE.load(Ordering::Relaxed), 12);
        drop(a);
        assert_eq!(GAUGE.load(Ordering::Relaxed), 4, "a's 8 bytes went");
        b.release(Released {
            bytes: 4,
            ..Released::default()
        });
        drop(b);
        assert_eq!(GAUGE.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn what_a_writer_leaves_queued_comes_off_the_gauge_with_the_connection() {
        static GAUGE: AtomicU64 = AtomicU64::new(0);
        let queued = Queued::new(&GAUGE);
        let mut q = WriterQueue::default();
        // The router's side: count, then queue.
        let push = |q: &mut WriterQueue, item: Outbound| {
            queued.add(item.bytes(), item.is_answer());
            q.push(item);
        };
        push(&mut q, Outbound::Answer(f("aa")));
        push(&mut q, batch("b", 5));
        push(&mut q, Outbound::Frame(f("mmm")));
        // The writer's side: it writes a few frames and releases them.
        for _ in 0..3 {
            q.next();
        }
        queued.release(q.released());
        // Written: aa, b0, b1. Waiting: b2, b3, b4, mmm.
        assert_eq!(queued.all(), 3 * 2 + 3);
        assert_eq!(queued.answers(), 0);
        assert_eq!(GAUGE.load(Ordering::Relaxed), 3 * 2 + 3);
        // Its write fails: the writer ends without a Close, the queue is
        // dropped unreleased, and an item still in the channel too.
        drop(q);
        queued.add(4, false);
        drop(queued);
        assert_eq!(GAUGE.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn each_frame_keeps_the_type_it_was_queued_as() {
        let mut q = WriterQueue::default();
        q.push(Outbound::Frame(f("t")));
        q.push(Outbound::Receipt(f("r")));
        q.push(Outbound::Answer(f("a")));
        q.push(batch("b", 1));
        q.push_ctrl(Ctrl::Frame(f("local")));
        let mut types = Vec::new();
        while let Some(n) = q.next() {
            if let Next::Text(t, kind) = n {
                types.push((t.to_string(), kind));
            }
        }
        let want = [
            ("local", FrameType::Status),
            ("t", FrameType::Text),
            ("r", FrameType::Receipt),
            ("a", FrameType::Status),
            ("b0", FrameType::Text),
        ];
        let want: Vec<(String, FrameType)> =
            want.iter().map(|(t, k)| (t.to_string(), *k)).collect();
        assert_eq!(types, want);
    }

    #[test]
    fn bytes_are_released_when_taken_to_be_written_or_dropped() {
        let released = |bytes, answer_bytes| Released {
            bytes,
            answer_bytes,
            presence_bytes: 0,
        };
        let mut q = WriterQueue::default();
        q.push(Outbound::Answer(f("aa")));
        q.push(batch("b", 2));
        q.push(Outbound::Frame(f("mmm")));
        assert_eq!(q.released(), released(0, 0), "nothing taken yet");
        assert_eq!(q.next(), Some(Next::Text(f("aa"), FrameType::Status)));
        assert_eq!(
            q.released(),
            released(2, 2),
            "an answer counts, as an answer"
        );
        drain(&mut q);
        assert_eq!(
            q.released(),
            released(2 + 2 + 3, 0),
            "the batch's frames and the frame"
        );
        q.push(batch("c", 20));
        q.push(Outbound::Frame(f("x")));
        q.push(Outbound::Answer(f("ans")));
        q.push_ctrl(Ctrl::Close(1000, "".into()));
        q.next();
        q.push(Outbound::Frame(f("yy")));
        q.push(Outbound::Answer(f("a")));
        let batch_bytes = 10 * 2 + 10 * 3;
        assert_eq!(
            q.released(),
            released(batch_bytes + 1 + 3 + 2 + 1, 3 + 1),
            "dropped bytes are released too"
        );
    }

    #[test]
    fn presence_frames_go_ahead_of_a_backlog_in_their_own_order() {
        let mut q = WriterQueue::default();
        q.push(batch("b", 17));
        q.push(Outbound::Frame(f("new")));
        q.push(Outbound::Presence(f("p1")));
        q.push(Outbound::Presence(f("p2")));
        let out = drain(&mut q);
        let texts: Vec<&str> = out
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "|")
            .collect();
        assert_eq!(&texts[..2], ["p1", "p2"], "{out:?}");
        assert_eq!(texts.last(), Some(&"new"));
    }

    #[test]
    fn presence_bytes_count_in_all_but_not_against_texts() {
        static GAUGE: AtomicU64 = AtomicU64::new(0);
        let queued = Queued::new(&GAUGE);
        let mut q = WriterQueue::default();
        queued.add(3, false);
        q.push(Outbound::Frame(f("mmm")));
        queued.add_presence(4);
        q.push(Outbound::Presence(f("pppp")));
        assert_eq!((queued.all(), queued.texts()), (7, 3));
        assert_eq!(GAUGE.load(Ordering::Relaxed), 7, "memory is memory");
        assert_eq!(q.next(), Some(Next::Text(f("mmm"), FrameType::Text)));
        assert_eq!(q.next(), Some(Next::Text(f("pppp"), FrameType::Presence)));
        let r = q.released();
        assert_eq!((r.bytes, r.presence_bytes), (7, 4));
        queued.release(r);
        assert_eq!((queued.all(), queued.texts()), (0, 0));
        // A presence frame given back whole (its channel was gone).
        let item = Outbound::Presence(f("pp"));
        queued.add_presence(item.bytes());
        queued.release(Released::of(&item));
        assert_eq!((queued.all(), queued.texts()), (0, 0));
        // Dropped after a Close, released like the rest.
        queued.add_presence(2);
        q.push_ctrl(Ctrl::Close(1000, "".into()));
        q.next();
        q.push(Outbound::Presence(f("zz")));
        queued.release(q.released());
        assert_eq!(queued.all(), 0);
        drop(queued);
        assert_eq!(GAUGE.load(Ordering::Relaxed), 0);
    }
}
