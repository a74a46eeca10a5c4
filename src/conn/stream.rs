//! The socket as the connection's threads see it. tungstenite's `read`
//! writes pongs and close replies itself, so two `WebSocket`s on one socket
//! would interleave bytes: the reader's `WebSocket` writes into
//! [`ReaderStream`], which hands the bytes to the writer; the writer
//! flushes its own frames before writing them.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::events::Ctrl;

/// One socket shared by the reader, the writer and the router (which may
/// shut it): `&TcpStream` reads and writes, so one file descriptor serves
/// all three, where `try_clone` would take one each.
#[derive(Clone)]
pub struct SharedTcp(pub Arc<TcpStream>);

impl Read for SharedTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for SharedTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

/// The writer's side of the socket. SO_SNDTIMEO bounds one `write` call,
/// and a write that makes a little progress each time (a peer that reads a
/// few bytes now and then, or a receive window that opens slowly) starts
/// it again: a 64 KiB frame could take many timeouts. So the writer sets
/// one deadline per frame (or flush), and every `write` waits at most what
/// is left of it (give or take [`SLACK`]).
pub struct WriterStream {
    pub(super) tcp: SharedTcp,
    pub(super) deadline: Option<Instant>,
    /// The SO_SNDTIMEO last set, so that it is set again only when it is
    /// off by more than [`SLACK`] (see [`needs_rearm`]).
    pub(super) armed: Option<Duration>,
    /// Set only while the router writes a frame itself
    /// ([`super::direct`]): every `write` is then a `send` that never
    /// blocks. The reader blocks in `read` on the same descriptor, so
    /// O_NONBLOCK, which belongs to the descriptor, is not an option;
    /// `MSG_DONTWAIT` is per call.
    pub(super) dontwait: bool,
}

impl WriterStream {
    pub(super) fn new(tcp: SharedTcp) -> WriterStream {
        WriterStream {
            tcp,
            deadline: None,
            armed: None,
            dontwait: false,
        }
    }
}

/// One `send(2)` that returns `WouldBlock` rather than wait for room in the
/// socket's buffer.
fn send_dontwait(tcp: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    // MSG_NOSIGNAL: a peer that is gone is an EPIPE here, not a SIGPIPE
    // (std ignores SIGPIPE in the binary, but not every caller is it).
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: `buf` is valid for `buf.len()` bytes for the whole call, and
    // the descriptor is open as long as `tcp` is borrowed.
    let n = unsafe { libc::send(tcp.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// How far SO_SNDTIMEO may be from what is left of a frame's deadline
/// before it is set again. Most frames go out in one `write`, and setting
/// it for each was one more system call per frame; now a frame whose
/// writes span less than this sets nothing. A write may so end up to this
/// much before or after its deadline.
pub(super) const SLACK: Duration = Duration::from_millis(100);

/// Whether SO_SNDTIMEO, now `armed`, must be set to `left` before a write.
pub(super) fn needs_rearm(armed: Option<Duration>, left: Duration) -> bool {
    match armed {
        None => true,
        Some(a) => a > left + SLACK || a + SLACK < left,
    }
}

impl Read for WriterStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for WriterStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.dontwait {
            // Never waits, so no deadline to keep.
            return send_dontwait(&self.tcp.0, buf);
        }
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "write deadline"));
            }
            if needs_rearm(self.armed, left) {
                self.tcp.0.set_write_timeout(Some(left))?;
                self.armed = Some(left);
            }
        }
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// The reader's side of the socket: reads from it, hands writes over.
pub struct ReaderStream {
    pub(super) tcp: SharedTcp,
    /// `None` until the writer exists (during the handshake).
    pub(super) writer: Option<Sender<Ctrl>>,
    /// While set (the handshake), every read waits at most until then, so
    /// the whole handshake has one deadline however its bytes trickle in.
    pub(super) deadline: Option<Instant>,
}

impl Read for ReaderStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "handshake deadline",
                ));
            }
            self.tcp.0.set_read_timeout(Some(left))?;
        }
        self.tcp.read(buf)
    }
}

impl Write for ReaderStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.writer {
            // Before the writer exists (the handshake), write directly.
            None => self.tcp.write(buf),
            Some(w) => w
                .send(Ctrl::Raw(buf.to_vec()))
                .map(|()| buf.len())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "writer gone")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &self.writer {
            None => self.tcp.flush(),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_timeout_is_set_again_only_when_it_is_off_by_more_than_the_slack() {
        let s = |ms| Duration::from_millis(ms);
        // The first write sets it; a new frame with the same timeout does not.
        assert!(needs_rearm(None, s(10_000)));
        assert!(!needs_rearm(Some(s(10_000)), s(10_000)));
        assert!(!needs_rearm(Some(s(9_950)), s(10_000)));
        // A frame whose writes have taken a while: what is left shrinks
        // below what is set, so a blocked write would overrun.
        assert!(needs_rearm(Some(s(10_000)), s(9_800)));
        // A new frame after a slow one: the short timeout set for that one
        // would end this frame's write early.
        assert!(needs_rearm(Some(s(300)), s(10_000)));
    }
}
