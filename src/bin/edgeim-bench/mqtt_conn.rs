//! One MQTT client connection over a blocking TcpStream: CONNECT, an
//! optional SUBSCRIBE, then packets in and out. Like the edgeim client's
//! WebSocket it can be split ([`MqttConn::split`]) into a reading side and
//! a writing side, the reading side handing what it would write (its
//! DISCONNECT) to the writer, so that only one thread writes the socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::mqtt::{self, Packet};

/// How long the connect steps wait for the broker's answer.
const WAIT: Duration = Duration::from_secs(10);
/// The read buffer: many small packets per read when they are there, as
/// tungstenite's read buffer takes many frames on the edgeim side.
const READ_CHUNK: usize = 16 * 1024;

/// A packet read, owned (it outlives the read buffer).
pub(crate) enum Incoming {
    Publish {
        id: Option<u16>,
        payload: Vec<u8>,
    },
    PubAck {
        id: u16,
    },
    /// Anything else the broker sent (SUBACK after the start, PINGRESP).
    Other,
}

pub(crate) struct MqttConn {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// Unread bytes are `buf[pos..end]`; the rest is room for reads.
    pos: usize,
    end: usize,
    /// Packets written and not yet flushed.
    out: Vec<u8>,
    /// After [`split`](Self::split): the writer takes our writes.
    forward: Option<Sender<Vec<u8>>>,
}

/// The writing side of a split connection.
pub(crate) struct MqttWriter {
    pub(crate) tcp: TcpStream,
    pub(crate) out: Vec<u8>,
    /// What the reading side wants written; closed when it is dropped.
    pub(crate) from_reader: Receiver<Vec<u8>>,
}

impl MqttConn {
    /// Connects as `client_id` (clean session) and, for a receiver,
    /// subscribes to `topic` at QoS 1; returns once the broker granted
    /// both. Reads then time out after `poll`.
    pub(crate) fn open(
        addr: &str,
        client_id: &str,
        topic: Option<&str>,
        poll: Duration,
    ) -> Result<MqttConn, String> {
        let failed = |what: &str, e: io::Error| format!("mqtt {what} {addr}: {e}");
        let tcp = TcpStream::connect(addr).map_err(|e| failed("connect", e))?;
        // As the edgeim client's sockets: every write goes out at once.
        tcp.set_nodelay(true)
            .and_then(|()| tcp.set_read_timeout(Some(WAIT)))
            .and_then(|()| tcp.set_write_timeout(Some(WAIT)))
            .map_err(|e| failed("connect", e))?;
        let mut c = MqttConn {
            tcp,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
            out: Vec::new(),
            forward: None,
        };
        c.tcp
            .write_all(&mqtt::connect(client_id))
            .map_err(|e| failed("CONNECT to", e))?;
        match c.wait_setup()? {
            Setup::ConnAck(0) => {}
            Setup::ConnAck(code) => return Err(format!("mqtt {client_id}: CONNACK code {code}")),
            Setup::SubAck(_) => return Err(format!("mqtt {client_id}: SUBACK before CONNACK")),
        }
        if let Some(topic) = topic {
            c.tcp
                .write_all(&mqtt::subscribe(1, topic))
                .map_err(|e| failed("SUBSCRIBE to", e))?;
            match c.wait_setup()? {
                Setup::SubAck(1) => {}
                Setup::SubAck(code) => {
                    return Err(format!("mqtt {client_id}: {topic} granted QoS {code}"));
                }
                Setup::ConnAck(_) => return Err(format!("mqtt {client_id}: a second CONNACK")),
            }
        }
        c.tcp
            .set_read_timeout(Some(poll.max(Duration::from_millis(1))))
            .map_err(|e| failed("connect", e))?;
        Ok(c)
    }

    /// The next CONNACK or SUBACK, within the socket's timeout.
    fn wait_setup(&mut self) -> Result<Setup, String> {
        for _ in 0..100 {
            let got = self.next_with(|p| match p {
                Packet::ConnAck { code } => Some(Setup::ConnAck(code)),
                Packet::SubAck { codes, .. } => {
                    Some(Setup::SubAck(codes.first().copied().unwrap_or(0x80)))
                }
                _ => None,
            });
            match got {
                Ok(Some(Some(s))) => return Ok(s),
                Ok(_) => {}
                Err(e) => return Err(format!("mqtt: no answer to connect: {e}")),
            }
        }
        Err("mqtt: no CONNACK or SUBACK".into())
    }

    /// The next packet; Ok(None) when the read timed out first.
    pub(crate) fn next(&mut self) -> io::Result<Option<Incoming>> {
        self.next_with(|p| match p {
            Packet::Publish { id, payload, .. } => Incoming::Publish {
                id,
                payload: payload.to_vec(),
            },
            Packet::PubAck { id } => Incoming::PubAck { id },
            _ => Incoming::Other,
        })
    }

    /// Decodes the next packet with `f` (which sees it in the read
    /// buffer), reading more bytes when it is not all there yet. A read
    /// timeout is Ok(None); bytes that are not MQTT, or the broker
    /// closing, are errors: the connection cannot go on.
    fn next_with<R>(&mut self, f: impl FnOnce(Packet<'_>) -> R) -> io::Result<Option<R>> {
        for _ in 0..1000 {
            match mqtt::decode(&self.buf[self.pos..self.end]) {
                Ok(Some((p, used))) => {
                    let r = f(p);
                    self.pos += used;
                    return Ok(Some(r));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            // Keep the unread tail at the front, then read after it; grow
            // only for a packet bigger than the buffer (decode caps it).
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = match self.tcp.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            self.end += n;
        }
        Err(io::Error::other("mqtt: no whole packet after 1000 reads"))
    }

    /// Queues a QoS 1 PUBLISH; [`flush`](Self::flush) writes it.
    pub(crate) fn publish(&mut self, topic: &str, id: u16, payload: &[&[u8]]) {
        mqtt::put_publish(&mut self.out, topic, id, payload);
    }

    /// Writes what was queued, in one write call (as one WebSocket frame
    /// flushed on its own is on the edgeim side).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = match &self.forward {
            None => self.tcp.write_all(&self.out),
            Some(tx) => tx
                .send(std::mem::take(&mut self.out))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "writer gone")),
        };
        self.out.clear();
        r
    }

    /// Acknowledges a QoS 1 PUBLISH, in a write of its own.
    pub(crate) fn puback(&mut self, id: u16) -> io::Result<()> {
        self.out.extend_from_slice(&mqtt::puback(id));
        self.flush()
    }

    /// From now on this side only reads; what it writes goes through the
    /// returned writer, which ends when this side is dropped.
    pub(crate) fn split(&mut self) -> io::Result<MqttWriter> {
        let tcp = self.tcp.try_clone()?;
        let (tx, rx) = unbounded();
        self.forward = Some(tx);
        Ok(MqttWriter {
            tcp,
            out: Vec::new(),
            from_reader: rx,
        })
    }

    /// DISCONNECT, then the socket is dropped (the broker closes without
    /// an answer, so there is nothing to wait for).
    pub(crate) fn close(mut self) {
        self.out.extend_from_slice(&mqtt::disconnect());
        let _ = self.flush();
    }
}

impl MqttWriter {
    pub(crate) fn publish(&mut self, topic: &str, id: u16, payload: &[&[u8]]) {
        mqtt::put_publish(&mut self.out, topic, id, payload);
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let r = self.tcp.write_all(&self.out);
        self.out.clear();
        r
    }
}

/// What the connect steps wait for.
enum Setup {
    ConnAck(u8),
    /// The granted QoS of the one filter.
    SubAck(u8),
}
