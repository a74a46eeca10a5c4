//! The socket as the connection's threads see it. tungstenite's `read`
//! writes pongs and close replies itself, so two `WebSocket`s on one socket
//! would interleave bytes: the reader's `WebSocket` writes into
//! [`ReaderStream`], which hands the bytes to the writer; the writer
//! flushes its own frames before writing them.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

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
/// is left of it.
pub struct WriterStream {
    pub(super) tcp: SharedTcp,
    pub(super) deadline: Option<Instant>,
}

impl Read for WriterStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for WriterStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "write deadline"));
            }
            self.tcp.0.set_write_timeout(Some(left))?;
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
