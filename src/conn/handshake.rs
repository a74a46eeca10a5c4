//! The WebSocket handshake on a new connection, on the context path only.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use tungstenite::WebSocket;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};

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
) -> Option<WebSocket<ReaderStream>> {
    let path = env.context_path.as_str();
    // tungstenite's callback signature fixes this error type.
    #[allow(clippy::result_large_err)]
    let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
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
            Some(ws)
        }
        Err(e) => {
            log::debug!("conn {id} {peer}: handshake failed: {e}");
            None
        }
    }
}
