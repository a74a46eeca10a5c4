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
//!    backlog, so a client acknowledging its backlog is not starved;
//! 5. newer messages wait behind the backlog, so order is kept;
//! 6. nothing is written after a Close.

use std::borrow::Cow;
use std::collections::VecDeque;

use tungstenite::Utf8Bytes;

use crate::events::{Ctrl, Outbound};

/// Backlog frames written between two looks for answers to send.
pub const BACKLOG_CHUNK: usize = 16;

/// What the writer does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Write this text frame.
    Text(Utf8Bytes),
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

/// The writer's queue. Items that count against `send_queue` are released
/// when the writer starts on them ([`WriterQueue::released`]).
#[derive(Default)]
pub struct WriterQueue {
    ctrl: VecDeque<Ctrl>,
    /// In arrival order; written before the backlog.
    ready: VecDeque<Utf8Bytes>,
    /// The backlog being written.
    backlog: VecDeque<Utf8Bytes>,
    /// Backlog frames written in the current chunk.
    in_chunk: usize,
    /// Frames and backlogs that came while a backlog was being written.
    later: VecDeque<Outbound>,
    closed: bool,
    /// Counted items taken since the last [`WriterQueue::released`].
    released: usize,
}

impl WriterQueue {
    /// An order from the control channel.
    pub fn push_ctrl(&mut self, c: Ctrl) {
        // After the Close only the reader's Stop still matters.
        if !self.closed || matches!(c, Ctrl::Stop) {
            self.ctrl.push_back(c);
        }
    }

    /// An item from the router.
    pub fn push(&mut self, item: Outbound) {
        if self.closed {
            if item.counts() {
                self.released += 1;
            }
            return;
        }
        let behind_backlog = !self.backlog.is_empty() || !self.later.is_empty();
        match item {
            Outbound::Answer(f) => self.ready.push_back(f),
            other if behind_backlog => self.later.push_back(other),
            other => self.start(other),
        }
    }

    /// Starts on a counted item: a frame is ready, a batch the backlog.
    fn start(&mut self, item: Outbound) {
        if item.counts() {
            self.released += 1;
        }
        match item {
            Outbound::Frame(f) | Outbound::Answer(f) => self.ready.push_back(f),
            Outbound::Batch(fs) => self.backlog.extend(fs),
        }
    }

    /// The next thing to do, or `None` when there is nothing to write.
    pub fn next(&mut self) -> Option<Next> {
        if let Some(c) = self.ctrl.pop_front() {
            return Some(match c {
                Ctrl::Raw(bytes) => Next::Raw(bytes),
                Ctrl::Frame(f) => Next::Text(f),
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
        if let Some(f) = self.ready.pop_front() {
            return Some(Next::Text(f));
        }
        if self.in_chunk == BACKLOG_CHUNK {
            self.in_chunk = 0;
            return Some(Next::EndOfChunk);
        }
        if let Some(f) = self.backlog.pop_front() {
            self.in_chunk += 1;
            return Some(Next::Text(f));
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

    /// Counted items started since the last call: the writer takes them
    /// off the connection's `queued` count.
    pub fn released(&mut self) -> usize {
        std::mem::take(&mut self.released)
    }

    /// Whether a Close has been taken: nothing more will be written.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Drops everything not yet written; only a Stop is taken from now on.
    fn close(&mut self) {
        self.closed = true;
        self.ready.clear();
        self.backlog.clear();
        self.in_chunk = 0;
        while let Some(item) = self.later.pop_front() {
            if item.counts() {
                self.released += 1;
            }
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
                Next::Text(t) => t.to_string(),
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
    fn counted_items_are_released_when_started_or_dropped() {
        let mut q = WriterQueue::default();
        q.push(Outbound::Answer(f("a")));
        q.push(batch("b", 2));
        q.push(Outbound::Frame(f("m")));
        assert_eq!(
            q.released(),
            1,
            "the batch started; the answer never counts"
        );
        drain(&mut q);
        assert_eq!(q.released(), 1, "the frame behind it started");
        q.push(batch("c", 20));
        q.push(Outbound::Frame(f("x")));
        q.push_ctrl(Ctrl::Close(1000, "".into()));
        q.next();
        q.push(Outbound::Frame(f("y")));
        assert_eq!(q.released(), 3, "dropped items are released too");
    }
}
