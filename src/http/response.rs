//! An answer as the handlers give it, and writing it back through
//! tiny_http with the headers every answer of its kind carries.

use serde_json::{Value, json};

use super::page::Asset;

/// An answer: status, JSON body, extra headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: ReplyBody,
    pub headers: Vec<(&'static str, String)>,
}

/// JSON for the API, embedded bytes for the page.
#[derive(Debug)]
pub enum ReplyBody {
    Json(Value),
    Static(&'static Asset),
    /// Prometheus's text exposition format.
    Metrics(String),
    Empty,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body: ReplyBody::Json(body),
            headers: Vec::new(),
        }
    }
    /// An error: `{"code", "msg"}`.
    pub fn error(status: u16, msg: impl Into<String>) -> Reply {
        Reply {
            status,
            body: ReplyBody::Json(json!({"code": status, "msg": msg.into()})),
            headers: Vec::new(),
        }
    }
    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// 503 with Retry-After: the server is busy or stopping.
pub fn busy(msg: &str) -> Reply {
    Reply::error(503, msg).header("Retry-After", "1".into())
}

/// Writes the answer; a client that hung up is no error.
pub fn respond(rq: tiny_http::Request, reply: Reply) {
    let (bytes, mut headers): (Vec<u8>, Vec<(&str, String)>) = match reply.body {
        ReplyBody::Json(v) => (
            v.to_string().into_bytes(),
            vec![
                ("Content-Type", "application/json".to_string()),
                ("Cache-Control", "no-store".to_string()),
                ("X-Content-Type-Options", "nosniff".to_string()),
            ],
        ),
        ReplyBody::Static(a) => (
            a.bytes.to_vec(),
            vec![("Content-Type", a.content_type.to_string())],
        ),
        ReplyBody::Metrics(text) => (
            text.into_bytes(),
            vec![
                (
                    "Content-Type",
                    "text/plain; version=0.0.4; charset=utf-8".to_string(),
                ),
                ("Cache-Control", "no-store".to_string()),
            ],
        ),
        ReplyBody::Empty => (Vec::new(), Vec::new()),
    };
    headers.extend(reply.headers);
    let mut resp = tiny_http::Response::from_data(bytes).with_status_code(reply.status);
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    }
    let _ = rq.respond(resp);
}
