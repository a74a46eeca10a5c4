//! The WebSocket handshake on a new connection, on the context path only.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::error::ProtocolError;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::{Error as WsError, HandshakeError, WebSocket};

use super::ConnEnv;
use super::stream::{ReaderStream, SharedTcp};
use crate::events::ConnId;

/// The WebSocket handshake, in a frame of its own: tungstenite parses the
/// request with several KiB of stack that the reader should not keep for
/// the life of the connection (see [`crate::stack`]).
#[inline(never)]
pub fn handshake(
    tcp: &Arc<TcpStream>,
    id: ConnId,
    peer: SocketAddr,
    env: &ConnEnv,
) -> Option<(WebSocket<ReaderStream>, Option<String>)> {
    let path = env.context_path.as_str();
    // The upgrade request's `X-Forwarded-For`, for the caller to believe
    // or not (only from `http.trusted_proxies`).
    let mut forwarded_for: Option<String> = None;
    // tungstenite's callback signature fixes this error type.
    #[allow(clippy::result_large_err)]
    let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        forwarded_for = req
            .headers()
            .get("X-Forwarded-For")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if req.uri().path() == path {
            Ok(resp)
        } else {
            let mut e = ErrorResponse::new(Some("not found\n".into()));
            *e.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let stream = ReaderStream {
        tcp: SharedTcp(tcp.clone()),
        writer: None,
        deadline: Some(Instant::now() + env.register_timeout),
    };
    match tungstenite::accept_hdr_with_config(stream, check_path, Some(env.ws_config)) {
        Ok(mut ws) => {
            ws.get_mut().deadline = None;
            Some((ws, forwarded_for))
        }
        Err(e) => {
            log::debug!("conn {id} {peer}: handshake failed: {e}");
            let failure = match &e {
                HandshakeError::Failure(f) => Some(f),
                HandshakeError::Interrupted(_) => None,
            };
            if let Some(answer) = failure.and_then(refusal) {
                // Best effort, like tungstenite's own 404: the socket is
                // dropped right after.
                let _ = tcp.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
                let _ = (&**tcp).write_all(answer.as_bytes());
            }
            None
        }
    }
}

/// How long the answer to a refused upgrade may take to write.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The HTTP answer RFC 6455 (section 4.2.2) asks for when tungstenite
/// refused an upgrade request without writing one: 426 with the version
/// the server speaks for a missing or other `Sec-WebSocket-Version`, 400
/// for any other malformed upgrade. `None` when the socket failed or an
/// answer was written already (the 404 for another path).
fn refusal(e: &WsError) -> Option<&'static str> {
    let WsError::Protocol(p) = e else {
        return None;
    };
    Some(match p {
        ProtocolError::MissingSecWebSocketVersionHeader => {
            "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        }
        ProtocolError::CustomResponseSuccessful => return None,
        _ => "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    })
}
