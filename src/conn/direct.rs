//! Writing a frame straight from the router, without waking the writer.
//!
//! Most frames go to a connection whose writer is idle: nothing queued,
//! nothing being written. Handing such a frame to the writer thread costs
//! a wake-up (a futex wake, a context switch, and one back to sleep) for a
//! write that would not block. So the writer's socket state ([`Wire`]: its
//! `WebSocket` and its [`WriterQueue`]) sits behind one lock per
//! connection. The writer holds it from before it takes anything off its
//! queue until that is written and flushed; the router only ever
//! `try_lock`s it, and when [`may_write_direct`] says the connection is
//! idle, writes the frame itself with a send that never blocks
//! (`MSG_DONTWAIT`, [`WriterStream::dontwait`]). Should that send block
//! part way, tungstenite keeps the rest in its write buffer; the router
//! marks the connection handed over and wakes the writer
//! ([`Ctrl::Flush`]), which flushes it with its usual blocking writes and
//! their deadline. Until then every frame for the connection is queued as
//! before, behind those bytes.

use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use crossbeam_channel::Sender;
use tungstenite::{Message, WebSocket};

use super::queue::WriterQueue;
use super::stream::WriterStream;
use crate::events::{ConnShared, Ctrl, Outbound};
use crate::metrics::metrics;
use crate::wire::frames::FrameType;

/// What the writer and the router share under the connection's lock.
pub struct Wire {
    /// The writer's WebSocket: the only one that writes to the socket.
    pub(super) ws: WebSocket<WriterStream>,
    /// What the writer has taken off its channels and not written yet.
    pub(super) queue: WriterQueue,
    /// A direct write left bytes in `ws`'s buffer, and the writer has not
    /// flushed them yet: nothing may be written ahead of the writer.
    pub(super) handed_over: bool,
    /// The router has buffered frames in `ws` and will flush them at the
    /// end of its batch ([`flush`]), unless the writer does first.
    pub(super) unflushed: bool,
}

impl Wire {
    pub(super) fn new(ws: WebSocket<WriterStream>) -> Wire {
        Wire {
            ws,
            queue: WriterQueue::default(),
            handed_over: false,
            unflushed: false,
        }
    }
}

/// Takes the lock, whoever held it before: a writer that panicked holding
/// it left nothing half done that a later write could corrupt (tungstenite
/// keeps whole frames in its buffer), and the connection is ending anyway.
pub(super) fn lock(wire: &Mutex<Wire>) -> MutexGuard<'_, Wire> {
    wire.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the router sees of a connection, holding its lock, before it
/// writes a frame itself.
#[derive(Clone, Copy, Debug)]
pub struct DirectState {
    /// Bytes the router queued that the writer has not written yet
    /// (`ConnShared::queued`): an item on the channel, not yet taken.
    pub queued: usize,
    /// The writer's queue holds nothing (it took items off the channel
    /// but has not written them).
    pub queue_empty: bool,
    /// A Close was asked for or sent.
    pub closing: bool,
    /// An earlier direct write is still being flushed by the writer.
    pub handed_over: bool,
}

/// Whether the router may write `item` itself, now, holding the lock
/// (which the writer holds whenever it is mid-write). Only when nothing
/// is waiting anywhere for the connection: then the frame is the next one
/// the writer would have written anyway, so the order of the
/// [`WriterQueue`] is kept. A backlog always goes through the writer: it
/// is written in chunks, and the router learns it is done from the writer
/// (`Event::Drained`).
pub fn may_write_direct(item: &Outbound, s: &DirectState) -> bool {
    !matches!(item, Outbound::Batch(_))
        && s.queued == 0
        && s.queue_empty
        && !s.closing
        && !s.handed_over
}

/// How a direct write went.
#[derive(Debug, PartialEq, Eq)]
pub enum Direct {
    /// In the WebSocket's buffer, the first frame since the last flush:
    /// the caller must [`flush`] the connection once its batch is done.
    Buffered,
    /// In the buffer behind frames the caller is already to flush.
    Appended,
    /// Written whole: the client has it (as far as the kernel goes).
    Written,
    /// Part of it is in the WebSocket's buffer; the writer will flush it.
    HandedOver,
}

/// Writes `item` for the connection from the calling (router) thread,
/// without blocking, if the connection is idle; gives it back otherwise,
/// to be queued. Counts the frame in `frames_out` as the writer would.
///
/// The frame goes into the WebSocket's buffer (which tungstenite writes
/// out, here without blocking, once it holds 16 KiB), so that the frames
/// one commit gives a connection leave in one `send`, as the writer would
/// write them: the router [`flush`]es each connection it wrote to at the
/// end of its batch. Whatever sits in that buffer is ahead of anything
/// written later, by either thread, so it cannot be overtaken.
pub fn try_write(
    shared: &ConnShared,
    ctrl: &Sender<Ctrl>,
    item: Outbound,
) -> Result<Direct, Outbound> {
    let Some(wire) = &shared.wire else {
        return Err(item);
    };
    let mut w = match wire.try_lock() {
        Ok(w) => w,
        // The writer is writing (it may be blocked in a write for its whole
        // deadline): queue, as before.
        Err(TryLockError::WouldBlock) => return Err(item),
        // The writer panicked holding it: it is gone, queueing fails too.
        Err(TryLockError::Poisoned(_)) => return Err(item),
    };
    let state = DirectState {
        queued: shared.queued.all(),
        queue_empty: w.queue.is_empty(),
        closing: shared.is_closing() || w.queue.is_closed(),
        handed_over: w.handed_over,
    };
    if !may_write_direct(&item, &state) {
        return Err(item);
    }
    let (frame, kind) = match item {
        Outbound::Frame(f) => (f, FrameType::Text),
        Outbound::Receipt(f) => (f, FrameType::Receipt),
        Outbound::Answer(f) => (f, FrameType::Status),
        Outbound::Presence(f) => (f, FrameType::Presence),
        Outbound::Batch(_) => return Err(item),
    };
    // Counted before the write, as the writer does: a client that has read
    // the frame never scrapes a count without it.
    metrics().frame_out(kind);
    w.ws.get_mut().dontwait = true;
    let sent = w.ws.write(Message::Text(frame));
    w.ws.get_mut().dontwait = false;
    if sent.is_err() {
        hand_over(&mut w, ctrl);
        return Ok(Direct::HandedOver);
    }
    if std::mem::replace(&mut w.unflushed, true) {
        Ok(Direct::Appended)
    } else {
        Ok(Direct::Buffered)
    }
}

/// Flushes, without blocking, what [`try_write`] buffered for the
/// connection. `HandedOver` when that would block: the writer finishes it.
pub fn flush(shared: &ConnShared, ctrl: &Sender<Ctrl>) -> Direct {
    let Some(wire) = &shared.wire else {
        return Direct::Written;
    };
    // Held: by the writer, which took it after our write and flushes
    // before it lets go; poisoned: the writer is gone.
    let Ok(mut w) = wire.try_lock() else {
        return Direct::Written;
    };
    // Already flushed by the writer, or handed over to it.
    if !std::mem::take(&mut w.unflushed) || w.handed_over {
        return Direct::Written;
    }
    w.ws.get_mut().dontwait = true;
    let sent = w.ws.flush();
    w.ws.get_mut().dontwait = false;
    if sent.is_err() {
        hand_over(&mut w, ctrl);
        return Direct::HandedOver;
    }
    Direct::Written
}

/// A write without blocking would have blocked (or failed): what is left
/// is in the WebSocket's buffer. The writer flushes it with its blocking,
/// deadline-bound writes, and ends the connection if that fails; until
/// then nothing is written directly. A full control queue means the writer
/// has work waiting and will flush anyway; a closed one, that it is gone.
fn hand_over(w: &mut Wire, ctrl: &Sender<Ctrl>) {
    w.handed_over = true;
    w.unflushed = false;
    let _ = ctrl.try_send(Ctrl::Flush);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crossbeam_channel::{bounded, unbounded};
    use tungstenite::protocol::Role;

    use crate::conn::CTRL_QUEUE;
    use crate::conn::stream::SharedTcp;
    use crate::conn::writer::Writer;

    fn idle() -> DirectState {
        DirectState {
            queued: 0,
            queue_empty: true,
            closing: false,
            handed_over: false,
        }
    }

    fn frame() -> Outbound {
        Outbound::Frame("m".into())
    }

    #[test]
    fn an_idle_connection_takes_frames_answers_and_receipts_directly() {
        for item in [
            frame(),
            Outbound::Answer("a".into()),
            Outbound::Receipt("r".into()),
            Outbound::Presence("p".into()),
        ] {
            assert!(may_write_direct(&item, &idle()));
        }
    }

    #[test]
    fn a_backlog_always_goes_through_the_writer() {
        let batch = Outbound::Batch(vec!["b".into()]);
        assert!(!may_write_direct(&batch, &idle()));
    }

    #[test]
    fn anything_waiting_or_unflushed_keeps_the_frame_behind_it() {
        // An item on the channel that the writer has not taken yet.
        let s = DirectState {
            queued: 1,
            ..idle()
        };
        assert!(!may_write_direct(&frame(), &s));
        // Taken off the channel (its bytes already released) but not
        // written yet.
        let s = DirectState {
            queue_empty: false,
            ..idle()
        };
        assert!(!may_write_direct(&frame(), &s));
        // An earlier direct write's rest, not flushed by the writer yet.
        let s = DirectState {
            handed_over: true,
            ..idle()
        };
        assert!(!may_write_direct(&frame(), &s));
    }

    #[test]
    fn nothing_is_written_directly_once_the_connection_is_closing() {
        let s = DirectState {
            closing: true,
            ..idle()
        };
        assert!(!may_write_direct(&Outbound::Answer("a".into()), &s));
    }

    /// A frame of 16 KiB that says which it is.
    fn numbered(i: usize) -> String {
        format!("{i:06}{}", "x".repeat(16 * 1024))
    }

    /// A connected pair on loopback: the server's side with a small send
    /// buffer, so that a peer that does not read fills it soon.
    fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let size: libc::c_int = 4096;
        // SAFETY: a valid descriptor and a c_int option value of its size.
        let r = unsafe {
            libc::setsockopt(
                server.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        (Arc::new(server), client)
    }

    fn conn(server: &Arc<TcpStream>) -> Arc<ConnShared> {
        let ws = WebSocket::from_raw_socket(
            WriterStream::new(SharedTcp(server.clone())),
            Role::Server,
            None,
        );
        let wire = Arc::new(Mutex::new(Wire::new(ws)));
        let peer = server.peer_addr().unwrap();
        Arc::new(ConnShared::new(1, peer, Some(server.clone())).with_wire(wire))
    }

    #[test]
    fn a_connection_whose_writer_holds_the_lock_gets_its_frame_queued() {
        let (server, _client) = pair();
        let shared = conn(&server);
        let (ctrl, _ctrl_rx) = bounded(CTRL_QUEUE);
        let wire = shared.wire.clone().unwrap();
        let held = lock(&wire);
        assert!(try_write(&shared, &ctrl, frame()).is_err());
        drop(held);
        assert!(matches!(
            try_write(&shared, &ctrl, frame()),
            Ok(Direct::Buffered)
        ));
        assert!(matches!(
            try_write(&shared, &ctrl, frame()),
            Ok(Direct::Appended)
        ));
        assert_eq!(flush(&shared, &ctrl), Direct::Written);
        assert!(!lock(&wire).unflushed);
    }

    #[test]
    fn a_direct_write_that_would_block_is_finished_by_the_writer_in_order() {
        let (server, client) = pair();
        let shared = conn(&server);
        let (out_tx, out_rx) = unbounded();
        let (ctrl_tx, ctrl_rx) = bounded(CTRL_QUEUE);
        // What the router does with a frame: write it itself (and flush at
        // the end of its batch, here at once), or queue it.
        let push = |i: usize| {
            let item = Outbound::Frame(numbered(i).into());
            match try_write(&shared, &ctrl_tx, item) {
                Ok(Direct::Buffered | Direct::Appended) => Some(flush(&shared, &ctrl_tx)),
                Ok(d) => Some(d),
                Err(item) => {
                    shared.queued.add(item.bytes(), false);
                    out_tx.send(item).unwrap();
                    None
                }
            }
        };
        // The peer does not read: direct writes go through until the
        // socket's buffers are full, and the one that would block is
        // handed over, part of it still in the WebSocket's buffer.
        let mut n = 0;
        loop {
            let d = push(n);
            n += 1;
            match d {
                Some(Direct::Written) => assert!(n < 10_000, "never blocked"),
                Some(Direct::HandedOver) => break,
                other => panic!("frame {n}: {other:?} while the writer is idle"),
            }
        }
        assert!(matches!(ctrl_rx.try_recv(), Ok(Ctrl::Flush)));
        // Until the writer has flushed that, nothing overtakes it.
        for _ in 0..3 {
            assert_eq!(push(n), None);
            n += 1;
        }
        // The writer wakes on the Flush, writes the rest with blocking
        // writes, and then what was queued behind it.
        ctrl_tx.send(Ctrl::Flush).unwrap();
        let (router, _events) = unbounded();
        let writer = Writer {
            wire: shared.wire.clone().unwrap(),
            write_timeout: Duration::from_secs(10),
            shared: shared.clone(),
            ctrl: ctrl_rx,
            out: out_rx,
            router,
            register_deadline: None,
            ping_interval: Duration::from_secs(600),
            idle_timeout_ms: u64::MAX,
            started: Instant::now(),
        };
        let writer = std::thread::spawn(move || writer.run());
        let mut peer = WebSocket::from_raw_socket(client, Role::Client, None);
        let mut read = |i: usize| match peer.read() {
            Ok(Message::Text(t)) => assert_eq!(&t[..6], &numbered(i)[..6], "frame {i}"),
            other => panic!("frame {i}: {other:?}"),
        };
        for i in 0..n {
            read(i);
        }
        // Flushed: the writer is idle again, and the router writes itself.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut direct = false;
        while !direct && Instant::now() < deadline {
            direct = push(n) == Some(Direct::Written);
            read(n);
            n += 1;
        }
        assert!(direct, "the connection stayed handed over");
        assert_eq!(shared.queued.all(), 0);
        ctrl_tx.send(Ctrl::Stop).unwrap();
        writer.join().unwrap();
    }
}
