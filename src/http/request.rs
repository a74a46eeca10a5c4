//! A tiny_http request read into what the handlers need: method, path,
//! query, credentials, and a body no bigger than the limit.

use std::io::Read;

use super::response::Reply;
use crate::auth::COOKIE;

/// The methods the API knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET (and HEAD is not served).
    Get,
    /// POST.
    Post,
    /// Anything else: answered 405 or 404.
    Other,
}

/// A request as the handlers see it.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub cookie: Option<String>,
    /// From `token:` or `Authorization: Bearer`.
    pub token: Option<String>,
    /// The `Host` header, for the WebSocket URL the page should use.
    pub host: Option<String>,
    pub if_none_match: Option<String>,
    /// From `Authorization: Bearer` only (the system API key).
    pub bearer: Option<String>,
    pub form: bool,
    pub body: Vec<u8>,
}

/// Reads a tiny_http request into an [`HttpRequest`], refusing bodies over
/// `limit` (tiny_http itself has no limit).
pub fn read_request(rq: &mut tiny_http::Request, limit: usize) -> Result<HttpRequest, Reply> {
    let method = match rq.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Post => Method::Post,
        _ => Method::Other,
    };
    let url = rq.url();
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let headers = rq.headers();
    let header = |name: &'static str| {
        headers
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().trim().to_string())
    };
    let cookie = header("Cookie").and_then(|c| {
        c.split(';').find_map(|kv| {
            kv.trim()
                .strip_prefix(COOKIE)?
                .strip_prefix('=')
                .map(str::to_string)
        })
    });
    // The auth scheme is case-insensitive (RFC 9110).
    let bearer = header("Authorization").and_then(|a| {
        let (scheme, value) = a.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| value.trim().to_string())
    });
    let token = header("token").or_else(|| bearer.clone());
    let host = header("Host");
    let if_none_match = header("If-None-Match");
    let form =
        header("Content-Type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    // The connection has read the body already, at most `limit + 1` bytes
    // of it (a longer one is not read, and the connection closes after
    // this answer); any method's body counts.
    let mut body = Vec::new();
    if rq.body_length().is_some_and(|n| n > limit) {
        return Err(Reply::error(413, format!("body over {limit} bytes")));
    }
    let read = rq.as_reader().take(limit as u64 + 1).read_to_end(&mut body);
    if read.is_err() {
        return Err(Reply::error(400, "cannot read the body"));
    }
    if body.len() > limit {
        return Err(Reply::error(413, format!("body over {limit} bytes")));
    }
    if method != Method::Post {
        body.clear();
    }
    Ok(HttpRequest {
        method,
        path,
        query,
        cookie,
        token,
        host,
        if_none_match,
        bearer,
        form,
        body,
    })
}

/// Decodes `application/x-www-form-urlencoded` text; `None` if malformed.
pub fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        assert_eq!(form_decode("a+b%21%C3%A9").as_deref(), Some("a b!é"));
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%zz"), None);
    }
}
