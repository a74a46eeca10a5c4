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
    /// PATCH (`/api/groups/{name}`).
    Patch,
    /// DELETE (`/api/groups/{name}`).
    Delete,
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
    /// The TCP peer (a proxy's address when behind one).
    pub peer: Option<std::net::IpAddr>,
    /// `Origin`, `Sec-Fetch-Site` and `X-Forwarded-For`, for the login
    /// throttle and the cross-site checks of cookie endpoints.
    pub origin: Option<String>,
    pub sec_fetch_site: Option<String>,
    pub forwarded_for: Option<String>,
    /// The header a single-sign-on proxy names the user in
    /// (`auth.header.user`), believed only from `http.trusted_proxies`.
    pub remote_user: Option<String>,
    /// Whether `token` came from `Authorization: Bearer` (not `token:`),
    /// so a host system is asked with the header the client used.
    pub token_is_bearer: bool,
}

/// Reads a tiny_http request into an [`HttpRequest`], refusing bodies over
impl HttpRequest {
    /// The path as a log line may show it: short, no control characters.
    pub fn path_for_log(&self) -> String {
        self.path
            .chars()
            .take(100)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    }
}

/// `limit` (tiny_http itself has no limit).
pub fn read_request(
    rq: &mut tiny_http::Request,
    limit: usize,
    user_header: &str,
) -> Result<HttpRequest, Reply> {
    let method = match rq.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Patch => Method::Patch,
        tiny_http::Method::Delete => Method::Delete,
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
    let token_header = header("token");
    let token_is_bearer = token_header.is_none() && bearer.is_some();
    let token = token_header.or_else(|| bearer.clone());
    let remote_user = headers
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(user_header))
        .map(|h| h.value.as_str().trim().to_string());
    let host = header("Host");
    let (origin, sec_fetch_site) = (header("Origin"), header("Sec-Fetch-Site"));
    let forwarded_for = header("X-Forwarded-For");
    let peer = rq.remote_addr().map(|a| a.ip());
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
    if !matches!(method, Method::Post | Method::Patch) {
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
        peer,
        origin,
        sec_fetch_site,
        forwarded_for,
        remote_user,
        token_is_bearer,
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

    use proptest::prelude::*;

    /// A tiny_http request as the connection hands it on.
    fn request(
        method: tiny_http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> tiny_http::Request {
        let mut rq = tiny_http::TestRequest::new()
            .with_method(method)
            .with_path(url)
            .with_body(Box::leak(body.to_string().into_boxed_str()));
        for (k, v) in headers {
            if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                rq = rq.with_header(h);
            }
        }
        rq.into()
    }

    /// Percent-encodes every byte (as a browser's form may).
    fn encode(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    /// Encodes as a browser's form does: space as `+`, letters and digits
    /// as they are, every other byte percent-encoded.
    fn form_encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b' ' => "+".to_string(),
                b if b.is_ascii_alphanumeric() => (b as char).to_string(),
                b => format!("%{b:02x}"),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn form_decode_answers_any_input(s in ".{0,64}") {
            let _ = form_decode(&s);
        }

        #[test]
        fn form_decode_undoes_percent_encoding(s in ".{0,32}") {
            prop_assert_eq!(form_decode(&encode(&s)), Some(s.clone()));
            prop_assert_eq!(form_decode(&form_encode(&s)), Some(s.clone()));
        }

        #[test]
        fn read_request_answers_any_headers(
            url in "[ -~]{0,64}",
            cookie in "[ -~]{0,64}",
            auth in "[ -~]{0,64}",
            token in "[ -~]{0,64}",
            other in "[ -~]{0,64}",
            body in "[ -~]{0,64}",
            post in any::<bool>(),
        ) {
            let method = if post { tiny_http::Method::Post } else { tiny_http::Method::Get };
            let headers = [
                ("Cookie", cookie.as_str()),
                ("Authorization", auth.as_str()),
                ("token", token.as_str()),
                ("Host", other.as_str()),
                ("If-None-Match", other.as_str()),
                ("Content-Type", other.as_str()),
            ];
            let mut rq = request(method, &url, &headers, &body);
            match read_request(&mut rq, 16, "X-Remote-User") {
                Ok(req) => {
                    prop_assert!(body.len() <= 16);
                    prop_assert_eq!(req.body.len(), if post { body.len() } else { 0 });
                }
                Err(reply) => prop_assert_eq!(reply.status, 413),
            }
        }

        #[test]
        fn credentials_are_picked_out(
            value in "[!-:<-~]{1,40}",
            noise in "[a-z]{1,8}",
            scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER"]),
        ) {
            let cookie = format!("{noise}=1; {COOKIE}={value}; x=2");
            let auth = format!("{scheme} {value}");
            let mut rq = request(
                tiny_http::Method::Get,
                "/x",
                &[("Cookie", cookie.as_str()), ("Authorization", auth.as_str())],
                "",
            );
            let req = read_request(&mut rq, 16, "X-Remote-User").expect("read");
            prop_assert_eq!(req.cookie.as_deref(), Some(value.as_str()));
            prop_assert_eq!(req.bearer.as_deref(), Some(value.as_str()));
            prop_assert_eq!(req.token.as_deref(), Some(value.as_str()));
        }
    }
}
