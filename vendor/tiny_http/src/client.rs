use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::{Header, Limits, Request, Response, StatusCode};

/// How long a connection whose request body was left unread keeps
/// reading (and discarding) what the client still sends after its answer,
/// so that closing it does not reset the answer away (a "lingering
/// close").
const LINGER: Duration = Duration::from_secs(1);
/// The most a lingering close reads and discards.
const LINGER_BYTES: u64 = 256 * 1024;

/// A ClientConnection owns the one socket to a client: it reads each
/// request whole (head and body, within the limits and deadlines), hands
/// it on, and writes the answer the worker produced.
///
/// Patched (PATCHES.md): upstream read the body lazily on the worker, kept
/// two descriptors per connection and had no limits.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // the socket, read through a buffer
    stream: BufReader<RefinedTcpStream>,

    limits: Arc<Limits>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // what the client sent was not read whole (a body over the limit, a
    // refused head): close after the answer, lingering
    unread_input: bool,

    // true until the first request was read
    first: bool,

    // true if the connection goes through SSL
    secure: bool,
}

/// Why no request came out of the connection.
#[derive(Debug)]
enum ReadError {
    /// The client closed, or the socket failed, or it stayed idle: close
    /// without an answer.
    Closed,
    /// Answer this status and close.
    Answer(u16),
}

fn timed_out(e: &IoError) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// A reader over the connection's buffer that fails with `TimedOut` once
/// `deadline` has passed.
struct Timed<'a> {
    stream: &'a mut BufReader<RefinedTcpStream>,
    deadline: Instant,
}

impl Timed<'_> {
    fn fill(&mut self) -> IoResult<&[u8]> {
        if self.stream.buffer().is_empty() {
            let now = Instant::now();
            if now >= self.deadline {
                return Err(IoError::new(ErrorKind::TimedOut, "deadline passed"));
            }
            self.stream
                .get_ref()
                .set_read_timeout(Some(self.deadline - now))?;
        }
        loop {
            match self.stream.fill_buf() {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if timed_out(&e) => {
                    return Err(IoError::new(ErrorKind::TimedOut, "deadline passed"))
                }
                Err(e) => return Err(e),
                Ok(_) => break,
            }
        }
        Ok(self.stream.buffer())
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let available = self.fill()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.stream.consume(n);
        Ok(n)
    }
}

/// Writes all of `bytes` before `deadline`.
fn write_all_before(stream: &mut RefinedTcpStream, mut bytes: &[u8], deadline: Instant) -> IoResult<()> {
    while !bytes.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            return Err(IoError::new(ErrorKind::TimedOut, "write deadline passed"));
        }
        stream.set_write_timeout(Some(deadline - now))?;
        match stream.write(bytes) {
            Ok(0) => return Err(IoError::new(ErrorKind::WriteZero, "socket closed")),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

/// What a status says, for the answers the connection writes itself.
fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// The bytes of an empty answer with `code` that closes the connection.
pub(crate) fn closing_answer(code: u16) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        code,
        reason(code)
    )
    .into_bytes()
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the socket.
    pub fn new(mut socket: RefinedTcpStream, limits: Arc<Limits>) -> ClientConnection {
        let remote_addr = socket.peer_addr().ok().flatten();
        let secure = socket.secure();

        ClientConnection {
            stream: BufReader::with_capacity(1024, socket),
            remote_addr,
            limits,
            no_more_requests: false,
            unread_input: false,
            first: true,
            secure,
        }
    }

    /// true if the connection is HTTPS
    #[allow(dead_code)]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads one line ending in CRLF, counting its bytes against `budget`.
    fn read_line(&mut self, deadline: Instant, budget: &mut usize) -> Result<AsciiString, ReadError> {
        let mut buf = Vec::new();
        let mut timed = Timed {
            stream: &mut self.stream,
            deadline,
        };
        loop {
            let available = match timed.fill() {
                Ok([]) => return Err(ReadError::Closed),
                Ok(a) => a,
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    return Err(ReadError::Answer(408))
                }
                Err(_) => return Err(ReadError::Closed),
            };
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if take > *budget {
                return Err(ReadError::Answer(431));
            }
            *budget -= take;
            buf.extend_from_slice(&available[..take]);
            timed.stream.consume(take);
            // a bare LF does not end a line (as upstream)
            if done && buf.ends_with(b"\r\n") {
                buf.truncate(buf.len() - 2);
                return AsciiString::from_ascii(buf)
                    .map_err(|_| ReadError::Answer(400));
            }
        }
    }

    /// Waits for the first byte of the next request: the idle timeout
    /// between requests, the head deadline for the first one.
    fn wait_for_request(&mut self) -> Result<Instant, ReadError> {
        let wait = if self.first {
            self.limits.head_timeout
        } else {
            self.limits.idle_timeout
        };
        let mut timed = Timed {
            deadline: Instant::now() + wait,
            stream: &mut self.stream,
        };
        match timed.fill() {
            Ok([]) => Err(ReadError::Closed),
            Ok(_) if self.first => Ok(timed.deadline),
            Ok(_) => Ok(Instant::now() + self.limits.head_timeout),
            Err(e) if e.kind() == ErrorKind::TimedOut && self.first => {
                Err(ReadError::Answer(408))
            }
            Err(_) => Err(ReadError::Closed),
        }
    }

    /// Reads a request, head and body, from the stream.
    fn read(&mut self) -> Result<Request, ReadError> {
        let head_deadline = self.wait_for_request()?;
        self.first = false;
        let mut budget = self.limits.max_head_bytes;

        // reading the request line
        let line = self.read_line(head_deadline, &mut budget)?;
        let (method, path, version) = parse_request_line(line.as_str().trim())
            .map_err(|_| ReadError::Answer(400))?;

        // getting all headers
        let mut headers: Vec<Header> = Vec::new();
        loop {
            let line = self.read_line(head_deadline, &mut budget)?;
            if line.is_empty() {
                break;
            }
            if headers.len() >= self.limits.max_headers {
                return Err(ReadError::Answer(431));
            }
            match Header::from_str(line.as_str().trim()) {
                Ok(h) => headers.push(h),
                Err(_) => return Err(ReadError::Answer(400)),
            }
        }

        // true if the client sent a `Expect: 100-continue` header
        let expects_continue = match headers
            .iter()
            .find(|h| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(ReadError::Answer(417)),
        };

        let framing = body_framing(&headers).map_err(|_| ReadError::Answer(400))?;
        let max = self.limits.max_body_bytes;
        let (body, body_length) = match framing {
            Framing::None => (Vec::new(), None),
            Framing::Length(0) => (Vec::new(), Some(0)),
            Framing::Length(n) if n > max => {
                // not read: the answer is the handler's (413), then close
                self.unread_input = true;
                (Vec::new(), Some(n))
            }
            Framing::Length(n) => {
                self.send_continue(expects_continue, &version, &headers)?;
                let mut body = Vec::with_capacity(n);
                let mut timed = Timed {
                    deadline: Instant::now() + self.limits.body_timeout,
                    stream: &mut self.stream,
                };
                match (&mut timed).take(n as u64).read_to_end(&mut body) {
                    Ok(_) if body.len() == n => {}
                    Err(e) if e.kind() == ErrorKind::TimedOut => {
                        return Err(ReadError::Answer(408))
                    }
                    _ => return Err(ReadError::Closed),
                }
                (body, Some(n))
            }
            Framing::Chunked => {
                self.send_continue(expects_continue, &version, &headers)?;
                let mut body = Vec::new();
                let timed = Timed {
                    deadline: Instant::now() + self.limits.body_timeout,
                    stream: &mut self.stream,
                };
                let mut decoder = chunked_transfer::Decoder::new(timed);
                match (&mut decoder).take(max as u64 + 1).read_to_end(&mut body) {
                    Ok(_) if body.len() > max => self.unread_input = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::TimedOut => {
                        return Err(ReadError::Answer(408))
                    }
                    Err(e) if e.kind() == ErrorKind::InvalidInput => {
                        return Err(ReadError::Answer(400))
                    }
                    Err(_) => return Err(ReadError::Closed),
                }
                (body, None)
            }
        };

        Ok(crate::request::new_buffered_request(
            self.secure,
            method,
            path,
            version,
            headers,
            self.remote_addr,
            body,
            body_length,
        ))
    }

    /// Writes `100 Continue` (as upstream did when the body was first read).
    fn send_continue(
        &mut self,
        expects_continue: bool,
        version: &HTTPVersion,
        headers: &[Header],
    ) -> Result<(), ReadError> {
        if !expects_continue {
            return Ok(());
        }
        let mut bytes = Vec::new();
        Response::new_empty(StatusCode(100))
            .raw_print(&mut bytes, version.clone(), headers, true, None)
            .ok();
        self.write_answer(&bytes).map_err(|_| ReadError::Closed)
    }

    /// Writes an answer, within the write timeout.
    pub(crate) fn write_answer(&mut self, bytes: &[u8]) -> IoResult<()> {
        let deadline = Instant::now() + self.limits.write_timeout;
        write_all_before(self.stream.get_mut(), bytes, deadline)
    }

    /// Ends a connection whose input was not read whole:
    /// stops writing, then reads and discards what the client still sends
    /// for a moment, so that the answer is not lost to a reset.
    pub(crate) fn linger(mut self) {
        if !self.unread_input {
            return;
        }
        self.stream.get_ref().shutdown_write();
        let mut timed = Timed {
            deadline: Instant::now() + LINGER,
            stream: &mut self.stream,
        };
        let _ = std::io::copy(&mut (&mut timed).take(LINGER_BYTES), &mut std::io::sink());
    }

    /// Reads the next request, or answers why not and returns `None`: the
    /// connection is then to be closed. `answers` is where the request's
    /// answer is sent.
    pub(crate) fn next_request(&mut self, answers: &Sender<Vec<u8>>) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, or its body was not read: no new request
        if self.no_more_requests || self.unread_input {
            return None;
        }

        loop {
            let rq = match self.read() {
                Ok(rq) => rq,
                Err(ReadError::Closed) => return None,
                Err(ReadError::Answer(code)) => {
                    // we don't know where the next request would start,
                    // so we have to close
                    self.unread_input = true;
                    let _ = self.write_answer(&closing_answer(code));
                    return None;
                }
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                let mut bytes = Vec::new();
                let response = Response::from_string(
                    "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                )
                .with_status_code(StatusCode(505));
                response
                    .raw_print(&mut bytes, HTTPVersion(1, 1), &[], false, None)
                    .ok();
                drop(rq);
                if self.write_answer(&bytes).is_err() || self.unread_input {
                    return None;
                }
                continue;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq.with_answer_sender(answers.clone()));
        }
    }
}

/// How a request's body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    /// `Content-Length`; `usize::MAX` for a length that does not fit.
    Length(usize),
    Chunked,
}

/// The body's framing from the headers; `Err` for a request whose body
/// cannot be delimited safely: a `Content-Length` that is not a number,
/// several that differ, or one next to `Transfer-Encoding` (RFC 9112 6.1,
/// request smuggling).
fn body_framing(headers: &[Header]) -> Result<Framing, ()> {
    let chunked = headers.iter().any(|h| h.field.equiv("Transfer-Encoding"));
    let mut length: Option<usize> = None;
    for h in headers.iter().filter(|h| h.field.equiv("Content-Length")) {
        let v = h.value.as_str().trim();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let n = v.parse::<usize>().unwrap_or(usize::MAX);
        if length.is_some_and(|l| l != n) {
            return Err(());
        }
        length = Some(n);
    }
    match (chunked, length) {
        (true, Some(_)) => Err(()),
        // if a transfer-encoding was specified, then "chunked" is ALWAYS applied
        // over the message (RFC2616 #3.6)
        (true, None) => Ok(Framing::Chunked),
        (false, Some(n)) => Ok(Framing::Length(n)),
        (false, None) => Ok(Framing::None),
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ()> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(()),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ()> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(())
}

#[cfg(test)]
mod test {
    use super::{body_framing, Framing};
    use crate::Header;
    use std::str::FromStr;

    fn framing(lines: &[&str]) -> Result<Framing, ()> {
        let headers: Vec<Header> = lines.iter().map(|l| Header::from_str(l).unwrap()).collect();
        body_framing(&headers)
    }

    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }

    #[test]
    fn content_length_is_strict() {
        assert_eq!(framing(&["Content-Length: 12"]), Ok(Framing::Length(12)));
        assert_eq!(
            framing(&["Content-Length: 18446744073709551616"]),
            Ok(Framing::Length(usize::MAX))
        );
        assert_eq!(
            framing(&["Content-Length: 3", "Content-Length: 3"]),
            Ok(Framing::Length(3))
        );
        assert_eq!(framing(&["Content-Length: 3", "Content-Length: 4"]), Err(()));
        assert_eq!(framing(&["Content-Length: -1"]), Err(()));
        assert_eq!(framing(&["Content-Length: +1"]), Err(()));
        assert_eq!(framing(&["Content-Length: 1,1"]), Err(()));
        assert_eq!(
            framing(&["Content-Length: 3", "Transfer-Encoding: chunked"]),
            Err(())
        );
        assert_eq!(framing(&["Transfer-Encoding: chunked"]), Ok(Framing::Chunked));
        assert_eq!(framing(&[]), Ok(Framing::None));
    }
}
