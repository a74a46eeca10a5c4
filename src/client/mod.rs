//! The one edgeim client, for `edgeim chat`, the load generator and the
//! tests: HTTP calls ([`http`]), app login and one-time session ids, then a
//! WebSocket that registers ([`ws`]), and the frames a client sends
//! ([`frames`]). Blocking, plain `http://` and `ws://` only: TLS belongs in
//! a reverse proxy.

pub mod frames;
pub mod http;
pub mod ws;

use std::fmt;
use std::time::Duration;

use serde_json::json;

pub use http::{HttpResponse, HttpServer};
pub use ws::{Ws, WsStream};

/// How long one HTTP request, one read while registering, or a connect
/// may take by default.
pub const WAIT: Duration = Duration::from_secs(10);

/// Why a client step failed, in words for the person running it.
#[derive(Debug)]
pub enum ClientError {
    /// A URL the client cannot use.
    Url(String),
    /// The TCP connection could not be made.
    Connect {
        /// `host:port`.
        addr: String,
        /// What the OS said.
        err: std::io::Error,
    },
    /// Reading or writing an HTTP request failed (`what` names it).
    Io(String, std::io::Error),
    /// The server's answer was not HTTP.
    NotHttp(String),
    /// The server answered, but not with what the step needs.
    Refused {
        /// The step: "login", "session id", "register".
        step: &'static str,
        /// The server's reason (its `msg`, or the status).
        why: String,
    },
    /// The WebSocket failed.
    WebSocket(String, tungstenite::Error),
    /// The server closed the WebSocket.
    Closed(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url(why) => f.write_str(why),
            ClientError::Connect { addr, err } => write!(f, "cannot connect to {addr}: {err}"),
            ClientError::Io(what, e) => write!(f, "{what}: {e}"),
            ClientError::NotHttp(what) => write!(f, "{what}: not an HTTP answer"),
            ClientError::Refused { step, why } => write!(f, "{step} failed: {why}"),
            ClientError::WebSocket(what, e) => write!(f, "{what}: {e}"),
            ClientError::Closed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClientError {}

/// `POST /app/login`: an app token for `user`.
pub fn app_login(server: &HttpServer, user: &str, password: &str) -> Result<String, ClientError> {
    let answer = server
        .post_json(
            "/app/login",
            &json!({"username": user, "password": password}),
        )
        .send()?;
    match answer.json()["token"].as_str() {
        Some(t) if answer.status == 200 => Ok(t.to_string()),
        _ => Err(ClientError::Refused {
            step: "login",
            why: answer.why(),
        }),
    }
}

/// `POST /app/logout`: ends the token's login.
pub fn app_logout(server: &HttpServer, token: &str) -> Result<HttpResponse, ClientError> {
    server
        .request("POST", "/app/logout")
        .token(Some(token))
        .send()
}

/// `GET /app/websocket/client/login/{client}`: a one-time session id.
pub fn session_id(server: &HttpServer, token: &str, client: &str) -> Result<String, ClientError> {
    let answer = server
        .get(&format!("/app/websocket/client/login/{client}"))
        .token(Some(token))
        .send()?;
    match answer.json()["sessionId"].as_str() {
        Some(s) if answer.status == 200 => Ok(s.to_string()),
        _ => Err(ClientError::Refused {
            step: "session id",
            why: answer.why(),
        }),
    }
}
