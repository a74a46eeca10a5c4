//! A minimal blocking HTTP/1.1 client for edgeim's own tools (`edgeim chat`
//! and the load generator): one request per connection, JSON bodies, the
//! `token:` header. Plain http:// only: TLS belongs in a reverse proxy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// Largest answer read.
const MAX_ANSWER: u64 = 1 << 20;

/// `http://host:port/prefix` → ("host:port", "/prefix"); the port defaults to 80.
pub fn split_http_url(url: &str) -> Result<(String, String), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "bad URL {url:?}: use http://; put TLS in a reverse proxy"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("bad URL {url:?}: it must start with http://"))?;
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains(['@', ' ', '?', '#']) {
        return Err(format!("bad URL {url:?}: no host"));
    }
    let host = if host.ends_with(']') || !host.contains(':') {
        format!("{host}:80")
    } else {
        host.to_string()
    };
    let prefix = prefix.trim_end_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    };
    Ok((host, prefix))
}

/// One request over a fresh connection: (status, JSON body or Null).
pub fn request(
    host: &str,
    path: &str,
    method: &str,
    token: Option<&str>,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let mut stream =
        TcpStream::connect(host).map_err(|e| format!("cannot connect to {host}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(t) = token {
        request.push_str(&format!("token: {t}\r\n"));
    }
    let body = body.unwrap_or_default();
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut answer = Vec::new();
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.take(MAX_ANSWER).read_to_end(&mut answer))
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: not an HTTP answer"))?;
    Ok((status, serde_json::from_str(body).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_prefix() {
        assert_eq!(
            split_http_url("http://h:1/im/").unwrap(),
            ("h:1".into(), "/im".into())
        );
        assert_eq!(
            split_http_url("http://h").unwrap(),
            ("h:80".into(), String::new())
        );
        assert_eq!(
            split_http_url("http://[::1]").unwrap(),
            ("[::1]:80".into(), String::new())
        );
        assert!(
            split_http_url("https://h")
                .unwrap_err()
                .contains("reverse proxy")
        );
        assert!(split_http_url("ftp://h").is_err());
        assert!(split_http_url("http://").is_err());
    }
}
