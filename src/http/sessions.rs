//! `GET /api/websocket/client/login/{clientName}` (cookie) and
//! `/app/websocket/client/login/{clientName}` (token): a one-time session
//! id from the router.

use serde_json::json;

use super::login::{Creds, who};
use super::request::HttpRequest;
use super::response::{Reply, busy};
use super::{HttpEnv, ask_router};
use crate::events::Event;
use crate::wire::ids::ClientName;

/// A session id for `client` of the caller.
pub fn session_id(env: &HttpEnv, req: &HttpRequest, client: &str, app: bool, now: u64) -> Reply {
    let creds = if app { Creds::Token } else { Creds::Cookie };
    let user = match who(env, req, creds, now) {
        Ok(u) => u,
        Err(reply) => return reply,
    };
    let Some(client) = ClientName::parse(client) else {
        return Reply::error(400, "clientName must be 1 to 64 of A-Z a-z 0-9 . _ -");
    };
    let asked = ask_router(env, |reply| Event::IssueSession {
        user,
        client,
        reply,
    });
    match asked {
        Ok(Some(id)) => Reply::ok(json!({"sessionId": id})),
        Ok(None) => busy("too many session ids asked for; retry shortly"),
        Err(reply) => reply,
    }
}
