//! `POST /api/system/message`: a text from SYSTEM, for integrations that
//! hold the API key.

use serde_json::{Value, json};

use super::request::HttpRequest;
use super::response::Reply;
use super::{HttpEnv, ask_router};
use crate::auth::hash_secret;
use crate::events::Event;
use crate::wire::Status;

/// Checks the key and the body, then asks the router to accept it.
pub fn system_message(env: &HttpEnv, req: &HttpRequest) -> Reply {
    let Some(key) = env.api_key else {
        return Reply::error(404, "no api key is configured");
    };
    if req.bearer.as_deref().map(hash_secret) != Some(key) {
        return Reply::error(401, "wrong or missing api key");
    }
    env.users.refresh();
    let parsed: Option<(String, String)> = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| {
            Some((
                v.get("to")?.as_str()?.to_string(),
                v.get("body")?.as_str()?.to_string(),
            ))
        });
    let Some((to, body)) = parsed else {
        return Reply::error(
            400,
            "body must be {\"to\": \"alice,bob\", \"body\": \"text\"}",
        );
    };
    let exists = |u: &str| env.users.exists(u);
    let to = match crate::wire::parse::recipients(
        &to,
        env.max_recipients
            .load(std::sync::atomic::Ordering::Relaxed),
        &exists,
    ) {
        Ok(to) => to,
        Err(r) => return Reply::error(400, r.msg),
    };
    if body.is_empty() {
        return Reply::error(400, "body is empty");
    }
    match ask_router(env, |reply| Event::SystemMessage { to, body, reply }) {
        Ok(Ok(id)) => Reply::ok(json!({"id": id})),
        Ok(Err(r)) if r.status == Status::ReceiveError => Reply::error(409, r.msg),
        Ok(Err(r)) => Reply::error(400, r.msg),
        Err(reply) => reply,
    }
}
