//! A minimal blocking HTTP/1.1 client for edgeim's own tools and tests,
//! and the server's one HTTP client (the host system of delegated login):
//! one request per connection (`Connection: close`), any headers, bodies
//! read to the end (Content-Length, chunked, or until close). Plain
//! `http://` only: TLS belongs in a reverse proxy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ClientError;

/// Largest answer read.
const MAX_ANSWER: u64 = 4 << 20;

/// Where an HTTP server is: `host:port` to connect to, and the path prefix
/// every request goes under (for a server behind a proxy at `/im`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpServer {
    /// `host:port`, the port defaulting to 80.
    pub host: String,
    /// `""` or `/prefix`, without a trailing slash.
    pub prefix: String,
}

impl HttpServer {
    /// `http://host:port/prefix` → host `host:port`, prefix `/prefix`.
    pub fn parse(url: &str) -> Result<HttpServer, ClientError> {
        let bad = |why: &str| ClientError::Url(format!("bad URL {url:?}: {why}"));
        if url.starts_with("https://") {
            return Err(bad("use http://; put TLS in a reverse proxy"));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("it must start with http://"))?;
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['@', ' ', '?', '#']) {
            return Err(bad("no host"));
        }
        let prefix = prefix.trim_end_matches('/');
        Ok(HttpServer {
            host: with_port(host, 80),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            },
        })
    }

    /// A request for `path` (under the prefix).
    pub fn request<'a>(&'a self, method: &'a str, path: &str) -> HttpRequest<'a> {
        let path = format!("{}{path}", self.prefix);
        HttpRequest {
            server: self,
            method,
            // A URL without a path (`http://host:9000`) is `/`.
            path: if path.is_empty() { "/".into() } else { path },
            headers: Vec::new(),
            body: Vec::new(),
            timeout: super::WAIT,
        }
    }

    /// `GET path`.
    pub fn get<'a>(&'a self, path: &str) -> HttpRequest<'a> {
        self.request("GET", path)
    }

    /// `POST path` with a JSON body.
    pub fn post_json<'a>(&'a self, path: &str, body: &Value) -> HttpRequest<'a> {
        self.request("POST", path)
            .header("Content-Type", "application/json")
            .body(body.to_string())
    }
}

/// `host` with `:port` appended unless it has one (`[::1]` has none).
pub(crate) fn with_port(host: &str, port: u16) -> String {
    if host.ends_with(']') || !host.contains(':') {
        format!("{host}:{port}")
    } else {
        host.to_string()
    }
}

/// One request being put together.
pub struct HttpRequest<'a> {
    server: &'a HttpServer,
    method: &'a str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Duration,
}

impl HttpRequest<'_> {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds `token:` when there is one (the app login's header).
    pub fn token(self, token: Option<&str>) -> Self {
        match token {
            Some(t) => self.header("token", t),
            None => self,
        }
    }

    /// Sets the body (sent with its Content-Length).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// How long connecting, writing and each read may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the request over a fresh connection and reads the answer.
    pub fn send(self) -> Result<HttpResponse, ClientError> {
        let what = format!("{} {}", self.method, self.path);
        let io = |e: std::io::Error| ClientError::Io(what.clone(), e);
        let host = &self.server.host;
        let mut stream = connect(host, self.timeout).map_err(|e| ClientError::Connect {
            addr: host.clone(),
            err: e,
        })?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(io)?;
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
            self.method, self.path
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if self.method != "GET" || !self.body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut raw = Vec::new();
        let deadline = Instant::now() + self.timeout;
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(&self.body))
            .and_then(|()| read_by(&mut stream, deadline, &mut raw))
            .map_err(io)?;
        parse_response(&raw).ok_or(ClientError::NotHttp(what))
    }
}

/// Reads the answer to the end, at most [`MAX_ANSWER`] bytes, by
/// `deadline`: the timeout bounds the whole answer, not each read, so a
/// server that trickles a byte at a time cannot hold the caller longer.
fn read_by(stream: &mut TcpStream, deadline: Instant, raw: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no whole answer in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                raw.extend_from_slice(buf.get(..n).unwrap_or_default());
                if raw.len() as u64 > MAX_ANSWER {
                    raw.truncate(MAX_ANSWER as usize);
                    return Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Connects to `host:port` within `timeout` (each address it resolves to
/// in turn): a host that drops the SYN must not hold the caller for the
/// OS's minutes-long default.
fn connect(host: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in host.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the host name resolves to no address")))
}

/// An answer: status, headers as sent, body (de-chunked).
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Every header, names as the server wrote them.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or `Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The `msg` of an error answer, or the status.
    pub fn why(&self) -> String {
        match self.json()["msg"].as_str() {
            Some(m) => m.to_string(),
            None => format!("HTTP {}", self.status),
        }
    }
}

/// Parses a whole HTTP/1.1 answer; `None` if it is not one.
fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..end)?).ok()?;
    let rest = raw.get(end + 4..)?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = response
        .header("Transfer-Encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    response.body = if chunked {
        dechunk(rest)?
    } else {
        match response
            .header("Content-Length")
            .and_then(|n| n.parse().ok())
        {
            Some(n) => rest.get(..n)?.to_vec(),
            None => rest.to_vec(),
        }
    };
    Some(response)
}

/// Decodes a chunked body; `None` if it is cut short or malformed.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(rest.get(..line_end)?).ok()?;
        let size_hex = size_line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        rest = rest.get(line_end + 2..)?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> Result<(String, String), ClientError> {
        HttpServer::parse(url).map(|s| (s.host, s.prefix))
    }

    #[test]
    fn urls_split_into_host_and_prefix() {
        assert_eq!(
            split("http://h:1/im/").unwrap(),
            ("h:1".into(), "/im".into())
        );
        assert_eq!(split("http://h").unwrap(), ("h:80".into(), String::new()));
        assert_eq!(
            split("http://[::1]").unwrap(),
            ("[::1]:80".into(), String::new())
        );
        assert!(
            split("https://h")
                .unwrap_err()
                .to_string()
                .contains("reverse proxy")
        );
        assert!(split("ftp://h").is_err());
        assert!(split("http://").is_err());
    }

    #[test]
    fn answers_parse_with_a_length_chunked_or_until_close() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}junk")
            .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("x-a")),
            (200, &b"{}"[..], Some("b"))
        );
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nall of it").unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "all of it"));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .is_none()
        );
        assert!(parse_response(b"garbage").is_none());
    }
}
