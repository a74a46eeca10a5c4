//! The writer thread's loop, the socket's writer (but for the frames the
//! router writes itself to an idle connection, [`super::direct`]): it
//! pushes what arrives on its two channels into a
//! [`WriterQueue`](super::queue::WriterQueue), writes
//! what the queue gives, and keeps the connection's timers (ping, idle,
//! register deadline, close grace).

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, never, select};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use super::direct::{Wire, lock};
use super::queue::Next;
use crate::events::{ConnShared, Ctrl, Event, Outbound};
use crate::metrics::metrics;

/// How long a closing connection waits for the peer's Close reply.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Most items taken from the router's channel per wake-up before writing.
pub(crate) const WRITE_BATCH: usize = 64;

/// One connection's writing side.
pub struct Writer {
    /// The writer's own WebSocket context over the shared socket, and its
    /// queue, behind the lock the router `try_lock`s to write a frame
    /// itself ([`super::direct`]). The writer holds it from before it
    /// takes anything off the queue until that is written and flushed.
    pub wire: Arc<Mutex<Wire>>,
    /// How long one frame (or flush) may take to write; then the
    /// connection ends.
    pub write_timeout: Duration,
    /// State shared with the reader and the router.
    pub shared: Arc<ConnShared>,
    /// From the reader and the router: pongs, local answers, closes.
    pub ctrl: Receiver<Ctrl>,
    /// From the router: messages and answers.
    pub out: Receiver<Outbound>,
    /// To tell the router a backlog page is written ([`Event::Drained`]).
    pub router: Sender<Event>,
    /// When an unregistered connection is closed.
    pub register_deadline: Option<Instant>,
    /// How often a ping goes out.
    pub ping_interval: Duration,
    /// Silence after which the connection is dropped.
    pub idle_timeout_ms: u64,
    /// Origin of `ConnShared::last_seen_ms`.
    pub started: Instant,
}

/// The writer ends: the socket is done.
struct Done;

/// What ended a wait in `select!`, handled once the lock is held.
enum Woke {
    /// The first turn of the loop: nothing yet.
    Start,
    Ctrl(Ctrl),
    Out(Outbound),
    Deadline,
}

/// The loop's state besides its settings (the queue is in [`Wire`]).
struct WriterLoop {
    w: Writer,
    /// Set once our Close is sent: when to give up on the peer's reply.
    closing: Option<Instant>,
}

impl Writer {
    /// Writes until the connection ends, then shuts the socket.
    pub fn run(self) {
        let wire = Arc::clone(&self.wire);
        let mut r = WriterLoop {
            w: self,
            closing: None,
        };
        let _ = r.serve(&wire);
        let _ = lock(&wire).ws.flush();
        r.w.shared.kill();
    }
}

impl WriterLoop {
    fn serve(&mut self, wire: &Mutex<Wire>) -> Result<(), Done> {
        let mut next_ping = Instant::now() + self.w.ping_interval;
        let mut out = self.w.out.clone();
        let mut woke = Woke::Start;
        loop {
            {
                // Held from before anything is taken off the queue until it
                // is written and flushed: the router, which only try_locks,
                // can never write ahead of an item the writer has taken.
                let mut w = lock(wire);
                match woke {
                    Woke::Start => {}
                    Woke::Ctrl(c) => w.queue.push_ctrl(c),
                    Woke::Out(item) => {
                        w.queue.push(item);
                        for item in out.try_iter().take(WRITE_BATCH) {
                            w.queue.push(item);
                        }
                    }
                    Woke::Deadline => {
                        let now = Instant::now();
                        if self.closing.is_some_and(|t| now >= t) {
                            return Err(Done);
                        }
                        // A registered connection drops the deadline below,
                        // even when its 9001 was written without waking us.
                        let registered = self.w.shared.is_registered();
                        if !registered && self.w.register_deadline.is_some_and(|t| now >= t) {
                            self.w.register_deadline = None;
                            log::info!("conn {} did not register in time", self.w.shared.id);
                            w.queue
                                .push_ctrl(Ctrl::Close(1008, "register timeout".into()));
                        }
                        if now >= next_ping {
                            next_ping = now + self.w.ping_interval;
                            self.keepalive(&mut w)?;
                        }
                    }
                }
                self.take_waiting_ctrl(&mut w);
                self.write_queued(&mut w)?;
                self.flush(&mut w)?;
                // Whatever a direct write left in the buffer is out now.
                w.handed_over = false;
                w.unflushed = false;
            }
            // Registered: drop the deadline now rather than wake up for it
            // later (10,000 idle connections would each wake once for
            // nothing). The register's own 9001 is what woke us, unless
            // the router wrote it itself; then the deadline does, once.
            if self.w.register_deadline.is_some() && self.w.shared.is_registered() {
                self.w.register_deadline = None;
                crate::stack::trim();
            }
            let now = Instant::now();
            let deadline = [Some(next_ping), self.w.register_deadline, self.closing]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_ping);
            woke = select! {
                recv(self.w.ctrl) -> c => match c {
                    Ok(c) => Woke::Ctrl(c),
                    Err(_) => return Ok(()),
                },
                recv(out) -> item => match item {
                    Ok(item) => Woke::Out(item),
                    // The router dropped us; wait for the reader's Stop.
                    Err(_) => {
                        out = never();
                        Woke::Start
                    }
                },
                default(deadline.saturating_duration_since(now)) => Woke::Deadline,
            };
        }
    }

    /// Control first: a close must not wait behind a full queue.
    fn take_waiting_ctrl(&mut self, w: &mut Wire) {
        while let Ok(c) = self.w.ctrl.try_recv() {
            w.queue.push_ctrl(c);
        }
    }

    /// Writes what the queue gives until it has nothing more.
    fn write_queued(&mut self, w: &mut Wire) -> Result<(), Done> {
        loop {
            self.w.shared.queued.release(w.queue.released());
            let Some(next) = w.queue.next() else {
                return Ok(());
            };
            match next {
                Next::Text(f, kind) => {
                    // Counted here, as it is written: a frame shared by N
                    // connections is N frames out, one dropped after a Close
                    // is none. Before the write, so that a client that has
                    // read the frame never scrapes a count without it (a
                    // large frame reaches the socket inside `write`); a
                    // write that fails ends the connection.
                    metrics().frame_out(kind);
                    self.write(w, Message::Text(f))?;
                }
                Next::Raw(bytes) => {
                    self.flush(w)?;
                    self.arm(w);
                    w.ws.get_mut().write_all(&bytes).map_err(|_| Done)?;
                }
                Next::Close(code, reason) => self.close(w, code, reason.into_owned())?,
                Next::Stop => return Err(Done),
                Next::EndOfChunk => {
                    // While a backlog is being written, the client reads and
                    // acknowledges it: let the answers in.
                    self.flush(w)?;
                    if w.queue.backlog_done() {
                        // The router sends the next page, if there is one.
                        let conn = self.w.shared.id;
                        let _ = self.w.router.send(Event::Drained { conn });
                    }
                    self.take_waiting_ctrl(w);
                    while let Ok(item) = self.w.out.try_recv() {
                        w.queue.push(item);
                    }
                }
            }
        }
    }

    /// Starts the clock for one write: each frame, flush and raw write has
    /// `write_timeout` in all, however many `write` calls it takes.
    fn arm(&mut self, w: &mut Wire) {
        w.ws.get_mut().deadline = Some(Instant::now() + self.w.write_timeout);
    }

    fn write(&mut self, w: &mut Wire, m: Message) -> Result<(), Done> {
        self.arm(w);
        w.ws.write(m).map_err(|e| {
            log::debug!("conn {}: write failed: {e}", self.w.shared.id);
            Done
        })
    }

    fn flush(&mut self, w: &mut Wire) -> Result<(), Done> {
        self.arm(w);
        w.ws.flush().map_err(|e| {
            log::debug!("conn {}: flush failed: {e}", self.w.shared.id);
            Done
        })
    }

    fn close(&mut self, w: &mut Wire, code: u16, reason: String) -> Result<(), Done> {
        self.w.shared.closing.store(true, Ordering::Release);
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        self.closing = Some(Instant::now() + CLOSE_GRACE);
        let _ = w.ws.close(Some(frame));
        self.flush(w)
    }

    fn keepalive(&mut self, w: &mut Wire) -> Result<(), Done> {
        let now_ms = self.w.started.elapsed().as_millis() as u64;
        let last = self.w.shared.last_seen_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) > self.w.idle_timeout_ms {
            log::info!("conn {} silent for too long: closing", self.w.shared.id);
            return Err(Done);
        }
        if w.queue.is_closed() {
            return Ok(());
        }
        self.write(w, Message::Ping(Default::default()))
    }
}
