//! Which handler answers which path and method.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::request::{HttpRequest, Method};
use super::response::Reply;
use super::{HttpEnv, groups, history, login, page, presence, sessions, system};
use crate::auth::origin::{Host, is_cross_site};
use crate::clock::now_ms;

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Healthz,
    Metrics,
    WebSocketUrl,
    ApiLogin,
    ApiLogout,
    AppLogin,
    AppLogout,
    SessionId { client: &'a str, app: bool },
    Online,
    Users,
    History,
    Conversations,
    SystemMessage,
}

fn route(path: &str) -> Option<(Method, Route<'_>)> {
    use Method::{Get, Post};
    let r = match path {
        "/healthz" => (Get, Route::Healthz),
        "/metrics" => (Get, Route::Metrics),
        "/api/websocket/url" => (Get, Route::WebSocketUrl),
        "/api/login" => (Post, Route::ApiLogin),
        "/api/logout" => (Post, Route::ApiLogout),
        "/app/login" => (Post, Route::AppLogin),
        "/app/logout" => (Post, Route::AppLogout),
        "/api/websocket/online" => (Get, Route::Online),
        "/api/users" => (Get, Route::Users),
        "/api/message/history" => (Get, Route::History),
        "/api/conversations" => (Get, Route::Conversations),
        "/api/system/message" => (Post, Route::SystemMessage),
        _ => {
            if let Some(client) = path.strip_prefix("/api/websocket/client/login/") {
                (Get, Route::SessionId { client, app: false })
            } else if let Some(client) = path.strip_prefix("/app/websocket/client/login/") {
                (Get, Route::SessionId { client, app: true })
            } else {
                return None;
            }
        }
    };
    Some(r)
}

/// Answers one request.
pub fn handle(env: &HttpEnv, req: &HttpRequest) -> Reply {
    // The Host goes into the page's CSP and the WebSocket URL: only a host
    // name or address and a port get that far.
    let host = match req.host.as_deref().map(Host::parse) {
        Some(None) => {
            return Reply::error(
                400,
                "bad Host header: must be a host name or IP address and an optional port",
            );
        }
        Some(Some(h)) => Some(h),
        None => None,
    };
    if req.method == Method::Get
        && let Some(asset) = page::asset(&req.path)
    {
        return page::page_reply(env, req, asset);
    }
    // Several methods on one path: the groups answer their own 405s.
    if let Some(rest) = req.path.strip_prefix("/api/groups")
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return groups::handle(env, req, rest, now_ms());
    }
    let Some((method, route)) = route(&req.path) else {
        return Reply::error(404, "no such endpoint");
    };
    if req.method != method {
        let allow = if method == Method::Get { "GET" } else { "POST" };
        return Reply::error(405, "method not allowed").header("Allow", allow.into());
    }
    // Cookie endpoints refuse other sites' requests (login CSRF, forced
    // logout); apps and curl send neither header and are let through.
    if matches!(route, Route::ApiLogin | Route::ApiLogout)
        && is_cross_site(
            req.origin.as_deref(),
            req.sec_fetch_site.as_deref(),
            host.as_ref(),
            env.ws_public_url.as_deref(),
        )
    {
        return Reply::error(
            403,
            "cross-site request refused: the Origin is not this server",
        );
    }
    let now = now_ms();
    match route {
        Route::Metrics => presence::metrics(env),
        Route::Healthz => {
            if env.healthy.load(Ordering::Acquire) {
                Reply::ok(json!({"status": "ok"}))
            } else {
                Reply::error(503, "a listener has stopped")
            }
        }
        Route::WebSocketUrl => {
            let mut answer = json!({ "url": page::ws_url(env, req) });
            // Behind a single-sign-on proxy the page learns who it is here,
            // and needs no login form.
            if let (Some(user), Some(o)) = (login::header_user(env, req), answer.as_object_mut()) {
                o.insert("user".into(), json!(user.as_str()));
            }
            Reply::ok(answer)
        }
        Route::ApiLogin | Route::AppLogin => login::login(env, req, route == Route::AppLogin, now),
        Route::ApiLogout => login::api_logout(env, req),
        Route::AppLogout => login::app_logout(env, req),
        Route::SessionId { client, app } => sessions::session_id(env, req, client, app, now),
        Route::Online => presence::online(env, req, now),
        Route::Users => presence::users(env, req, now),
        Route::History => match login::caller(env, req, now) {
            Ok(me) => history::history(env, &me, &req.query),
            Err(reply) => reply,
        },
        Route::Conversations => match login::caller(env, req, now) {
            Ok(me) => history::conversations(env, &me),
            Err(reply) => reply,
        },
        Route::SystemMessage => system::system_message(env, req),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_typed_at_the_edge() {
        assert_eq!(route("/api/login"), Some((Method::Post, Route::ApiLogin)));
        assert_eq!(
            route("/app/websocket/client/login/phone-1"),
            Some((
                Method::Get,
                Route::SessionId {
                    client: "phone-1",
                    app: true
                }
            ))
        );
        assert_eq!(route("/api/nothing"), None);
    }
}
