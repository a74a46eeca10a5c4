//! The HTTP API on tiny_http: login and logout, one-time WebSocket session
//! ids, directory and presence, the system-message endpoint, health.
//!
//! Each request is read at the edge into [`HttpRequest`] (body size-checked,
//! credentials picked out) and answered by [`handle`], which knows nothing
//! of sockets.

pub mod page;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use serde_json::{Value, json};

use crate::auth::{COOKIE, Logins, SecretHash, hash_secret};
use crate::clock::now_ms;
use crate::events::Event;
use crate::wire::ids::{ClientName, Origin, SYSTEM, UserId};
use crate::wire::{self, Status};

use crate::auth::Directory;
use crate::store;

/// Largest login request body; login bodies are tiny.
const MAX_LOGIN_BODY: usize = 16 * 1024;
/// How long a request waits for the router before answering 503.
const ROUTER_WAIT: Duration = Duration::from_secs(5);
const WORKER_STACK: usize = 512 * 1024;

/// What the handlers share.
pub struct HttpEnv {
    pub users: Arc<Directory>,
    pub logins: Arc<Logins>,
    pub router: Sender<Event>,
    pub api_key: Option<SecretHash>,
    /// Where browsers find the WebSocket: a configured public URL, or the
    /// WebSocket port on the host they reached this server by.
    pub ws_public_url: Option<String>,
    pub ws_port: u16,
    pub ws_context: String,
    /// The database, read directly for history (WAL: readers never block
    /// the store's writer).
    pub db_path: PathBuf,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    /// False once a listener thread has died: `/healthz` then fails, so
    /// a supervisor restarts the process.
    pub healthy: Arc<AtomicBool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
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
    Static(&'static page::Asset),
    Empty,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body: ReplyBody::Json(body),
            headers: Vec::new(),
        }
    }
    fn error(status: u16, msg: impl Into<String>) -> Reply {
        Reply {
            status,
            body: ReplyBody::Json(json!({"code": status, "msg": msg.into()})),
            headers: Vec::new(),
        }
    }
    fn header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Healthz,
    WebSocketUrl,
    ApiLogin,
    ApiLogout,
    AppLogin,
    AppLogout,
    SessionId { client: &'a str, app: bool },
    Online,
    Users,
    History,
    SystemMessage,
}

fn route(path: &str) -> Option<(Method, Route<'_>)> {
    use Method::{Get, Post};
    let r = match path {
        "/healthz" => (Get, Route::Healthz),
        "/api/websocket/url" => (Get, Route::WebSocketUrl),
        "/api/login" => (Post, Route::ApiLogin),
        "/api/logout" => (Post, Route::ApiLogout),
        "/app/login" => (Post, Route::AppLogin),
        "/app/logout" => (Post, Route::AppLogout),
        "/api/websocket/online" => (Get, Route::Online),
        "/api/users" => (Get, Route::Users),
        "/api/message/history" => (Get, Route::History),
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
    if req.method == Method::Get
        && let Some(asset) = page::asset(&req.path)
    {
        return page_reply(env, req, asset);
    }
    let Some((method, route)) = route(&req.path) else {
        return Reply::error(404, "no such endpoint");
    };
    if req.method != method {
        let allow = if method == Method::Get { "GET" } else { "POST" };
        return Reply::error(405, "method not allowed").header("Allow", allow.into());
    }
    let now = now_ms();
    match route {
        Route::Healthz => {
            if env.healthy.load(Ordering::Acquire) {
                Reply::ok(json!({"status": "ok"}))
            } else {
                Reply::error(503, "a listener has stopped")
            }
        }
        Route::WebSocketUrl => Reply::ok(json!({ "url": ws_url(env, req) })),
        Route::ApiLogin | Route::AppLogin => login(env, req, route == Route::AppLogin, now),
        Route::ApiLogout => {
            let cleared = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
            match req.cookie.as_deref().filter(|c| env.logins.revoke(c)) {
                Some(_) => Reply::ok(json!({})).header("Set-Cookie", cleared),
                None => Reply::error(401, "not logged in").header("Set-Cookie", cleared),
            }
        }
        Route::AppLogout => match req.token.as_deref().filter(|t| env.logins.revoke(t)) {
            Some(_) => Reply::ok(json!({})),
            None => Reply::error(401, "no valid token"),
        },
        Route::SessionId { client, app } => {
            let secret = if app {
                req.token.as_deref()
            } else {
                req.cookie.as_deref()
            };
            let Some(user) = secret.and_then(|s| logged_in(env, s, now)) else {
                return Reply::error(
                    401,
                    if app {
                        "no valid token"
                    } else {
                        "not logged in"
                    },
                );
            };
            let Some(client) = ClientName::parse(client) else {
                return Reply::error(400, "clientName must be 1 to 64 of A-Z a-z 0-9 . _ -");
            };
            let (tx, rx) = bounded(1);
            if env
                .router
                .send(Event::IssueSession {
                    user,
                    client,
                    reply: tx,
                })
                .is_err()
            {
                return busy("server is stopping");
            }
            match rx.recv_timeout(ROUTER_WAIT) {
                Ok(Some(id)) => Reply::ok(json!({"sessionId": id})),
                Ok(None) => busy("too many session ids asked for; retry shortly"),
                Err(_) => busy("server busy"),
            }
        }
        Route::Online | Route::Users => {
            if caller(env, req, now).is_none() {
                return Reply::error(401, "not logged in");
            }
            let Some(online) = ask_online(env) else {
                return busy("server busy");
            };
            if route == Route::Online {
                let users: Vec<Value> = online
                    .iter()
                    .map(|(u, cs)| json!({"userId": u.as_str(), "clients": cs.iter().map(ClientName::as_str).collect::<Vec<_>>()}))
                    .collect();
                return Reply::ok(json!({"users": users}));
            }
            env.users.refresh();
            let users: Vec<Value> = env
                .users
                .all()
                .iter()
                .map(
                    |u| json!({"userId": u.as_str(), "online": online.iter().any(|(o, _)| o == u)}),
                )
                .collect();
            Reply::ok(json!({"users": users}))
        }
        Route::History => {
            let Some(me) = caller(env, req, now) else {
                return Reply::error(401, "not logged in");
            };
            history(env, &me, &req.query)
        }
        Route::SystemMessage => system_message(env, req),
    }
}

/// Default and largest page of history.
const HISTORY_LIMIT: usize = 50;
const HISTORY_MAX: usize = 200;

/// `GET /api/message/history?with=&before=&limit=`: texts between the caller
/// and `with`, newest first.
fn history(env: &HttpEnv, me: &UserId, query: &str) -> Reply {
    let mut with = None;
    let mut before = i64::MAX as u64;
    let mut limit = HISTORY_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = form_decode(v).unwrap_or_default();
        match k {
            "with" => match Origin::parse(&v) {
                Some(o) => with = Some(o),
                None => return Reply::error(400, "with must be a user id or SYSTEM"),
            },
            "before" => match v.parse::<u64>() {
                Ok(b) => before = b.min(i64::MAX as u64),
                Err(_) => return Reply::error(400, "before must be a time in ms since the epoch"),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if n > 0 => limit = n.min(HISTORY_MAX),
                _ => return Reply::error(400, "limit must be a positive whole number"),
            },
            _ => {}
        }
    }
    let Some(with) = with else {
        return Reply::error(400, "with is required: ?with=<userId>");
    };
    let found = store::open_reader(&env.db_path)
        .and_then(|conn| store::history(&conn, me, &with, before, limit));
    match found {
        Ok(messages) => {
            let messages: Vec<Value> = messages
                .iter()
                .map(|m| {
                    json!({"id": m.id, "type": wire::TYPE_TEXT, "isSystem": m.origin == SYSTEM,
                        "from": m.origin, "to": m.recipients, "body": m.body, "timestamp": m.ts})
                })
                .collect();
            Reply::ok(json!({ "messages": messages }))
        }
        Err(e) => {
            log::error!("history: {e}");
            Reply::error(503, "storage failure").header("Retry-After", "1".into())
        }
    }
}

fn ws_url(env: &HttpEnv, req: &HttpRequest) -> String {
    page::websocket_url(
        env.ws_public_url.as_deref(),
        req.host.as_deref(),
        env.ws_port,
        &env.ws_context,
    )
}

/// A page file, revalidated by ETag on every load (so a new binary's page
/// is picked up at once) and locked down by its CSP.
fn page_reply(env: &HttpEnv, req: &HttpRequest, asset: &'static page::Asset) -> Reply {
    let etag = asset.etag();
    let unchanged = req
        .if_none_match
        .as_deref()
        .is_some_and(|t| t.split(',').any(|t| t.trim() == etag));
    let mut reply = Reply {
        status: if unchanged { 304 } else { 200 },
        body: if unchanged {
            ReplyBody::Empty
        } else {
            ReplyBody::Static(asset)
        },
        headers: vec![
            ("Cache-Control", "no-cache".into()),
            ("ETag", etag.to_string()),
            (
                "Content-Security-Policy",
                page::content_security_policy(page::origin_of(&ws_url(env, req))),
            ),
        ],
    };
    for (k, v) in page::SECURITY_HEADERS {
        reply.headers.push((k, v.to_string()));
    }
    reply
}

fn busy(msg: &str) -> Reply {
    Reply::error(503, msg).header("Retry-After", "1".into())
}

/// Who is calling an endpoint that is "logged in": the browser cookie or
/// the app token.
fn caller(env: &HttpEnv, req: &HttpRequest, now: u64) -> Option<UserId> {
    let secrets = req
        .cookie
        .as_deref()
        .into_iter()
        .chain(req.token.as_deref());
    secrets.into_iter().find_map(|s| logged_in(env, s, now))
}

/// The user a cookie or token logs in, if it is valid and the user still exists.
fn logged_in(env: &HttpEnv, secret: &str, now: u64) -> Option<UserId> {
    let (user, tag) = env.logins.check(secret, now)?;
    env.users.refresh();
    match env.users.tag(&user) {
        Some(current) if current == tag => Some(user),
        // The password changed since this login: it ends here.
        Some(_) => {
            log::info!("a login of {user} ended: the password changed");
            env.logins.revoke(secret);
            None
        }
        None => {
            env.logins.revoke_user(&user);
            None
        }
    }
}

fn ask_online(env: &HttpEnv) -> Option<crate::events::OnlineList> {
    let (tx, rx) = bounded(1);
    env.router.send(Event::Online { reply: tx }).ok()?;
    rx.recv_timeout(ROUTER_WAIT).ok()
}

fn login(env: &HttpEnv, req: &HttpRequest, app: bool, now: u64) -> Reply {
    let Some((username, password)) = credentials(req) else {
        return Reply::error(
            400,
            "body must be {\"username\": \"...\", \"password\": \"...\"}",
        );
    };
    let Some((user, tag)) = env.users.verify(&username, &password) else {
        log::info!("login failed for {:?}", printable(&username));
        return Reply::error(401, "wrong username or password");
    };
    let Some((secret, expires_ms)) = env.logins.create(user.clone(), tag, now) else {
        return busy("storage failure: could not save the login");
    };
    log::info!(
        "{} logged in ({})",
        user,
        if app { "app" } else { "browser" }
    );
    if app {
        return Reply::ok(
            json!({"userId": user.as_str(), "token": secret, "expiresAt": expires_ms}),
        );
    }
    let max_age = env.logins.ttl_ms() / 1000;
    let cookie = format!("{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    Reply::ok(json!({"userId": user.as_str()})).header("Set-Cookie", cookie)
}

fn printable(s: &str) -> String {
    s.chars().take(64).filter(|c| !c.is_control()).collect()
}

/// `{"username","password"}` from a JSON or form body. A body that starts
/// with `{` is JSON whatever its Content-Type (`curl -d` says "form").
fn credentials(req: &HttpRequest) -> Option<(String, String)> {
    let looks_json = req.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if req.form && !looks_json {
        let text = std::str::from_utf8(&req.body).ok()?;
        let mut user = None;
        let mut pass = None;
        for pair in text.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match form_decode(k)?.as_str() {
                "username" => user = Some(form_decode(v)?),
                "password" => pass = Some(form_decode(v)?),
                _ => {}
            }
        }
        return Some((user?, pass?));
    }
    let v: Value = serde_json::from_slice(&req.body).ok()?;
    Some((
        v.get("username")?.as_str()?.to_string(),
        v.get("password")?.as_str()?.to_string(),
    ))
}

/// Decodes `application/x-www-form-urlencoded` text; `None` if malformed.
fn form_decode(s: &str) -> Option<String> {
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

fn system_message(env: &HttpEnv, req: &HttpRequest) -> Reply {
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
    let to = match wire::parse::recipients(&to, env.max_recipients, &exists) {
        Ok(to) => to,
        Err(r) => return Reply::error(400, r.msg),
    };
    if body.is_empty() {
        return Reply::error(400, "body is empty");
    }
    let (tx, rx) = bounded(1);
    if env
        .router
        .send(Event::SystemMessage {
            to,
            body,
            reply: tx,
        })
        .is_err()
    {
        return busy("server is stopping");
    }
    match rx.recv_timeout(ROUTER_WAIT) {
        Ok(Ok(id)) => Reply::ok(json!({"id": id})),
        Ok(Err(r)) if r.status == Status::ReceiveError => Reply::error(409, r.msg),
        Ok(Err(r)) => Reply::error(400, r.msg),
        Err(_) => busy("server busy"),
    }
}

/// Reads a tiny_http request into an [`HttpRequest`], refusing bodies over
/// `limit` (tiny_http itself has no limit).
fn read_request(rq: &mut tiny_http::Request, limit: usize) -> Result<HttpRequest, Reply> {
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
    let mut body = Vec::new();
    if method == Method::Post {
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

fn respond(rq: tiny_http::Request, reply: Reply) {
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

/// The HTTP listener and its worker threads.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl HttpServer {
    /// Starts the listener and its workers. tiny_http's accept thread ends
    /// for good on an accept error (out of file descriptors): the workers
    /// then send why on `died`, so the process can stop and be restarted
    /// rather than live on without its HTTP API.
    pub fn start(
        listen: SocketAddr,
        workers: usize,
        env: Arc<HttpEnv>,
        died: Sender<String>,
    ) -> Result<HttpServer, String> {
        let server = Arc::new(tiny_http::Server::http(listen).map_err(|e| e.to_string())?);
        let stopping = Arc::new(AtomicBool::new(false));
        let limit = MAX_LOGIN_BODY.max(env.max_message_bytes);
        let mut handles = Vec::new();
        for i in 0..workers {
            let server = server.clone();
            let env = env.clone();
            let stopping = stopping.clone();
            let died = died.clone();
            let h = std::thread::Builder::new()
                .name(format!("http-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    loop {
                        let mut rq = match server.recv() {
                            Ok(rq) => rq,
                            Err(e) => {
                                if !stopping.load(Ordering::Acquire) {
                                    env.healthy.store(false, Ordering::Release);
                                    let _ =
                                        died.try_send(format!("the HTTP listener stopped: {e}"));
                                }
                                return;
                            }
                        };
                        let reply = match read_request(&mut rq, limit) {
                            Ok(req) => handle(&env, &req),
                            Err(reply) => reply,
                        };
                        respond(rq, reply);
                    }
                })
                .map_err(|e| format!("cannot start http worker: {e}"))?;
            handles.push(h);
        }
        Ok(HttpServer {
            server,
            workers: handles,
            stopping,
        })
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    pub fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
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

    #[test]
    fn form_bodies_decode() {
        assert_eq!(form_decode("a+b%21%C3%A9").as_deref(), Some("a b!é"));
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%zz"), None);
        let req = HttpRequest {
            method: Method::Post,
            path: "/api/login".into(),
            query: String::new(),
            cookie: None,
            token: None,
            host: None,
            if_none_match: None,
            bearer: None,
            form: true,
            body: b"username=alice&password=p%26ss+word".to_vec(),
        };
        assert_eq!(
            credentials(&req),
            Some(("alice".into(), "p&ss word".into()))
        );
    }
}
