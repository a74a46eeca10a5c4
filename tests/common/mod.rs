//! Test harness: a real server on ephemeral loopback ports, and edgeim's
//! own client (`edgeim::client`, the one `edgeim chat` and the load
//! generator use) for HTTP and the WebSocket.
//!
//! Every wait has a timeout; nothing sleeps to wait for a condition.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod served;
pub mod upstream;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use edgeim::client::frames::{self, StatusBody};
use edgeim::client::{self, HttpResponse, HttpServer, Ws, ws};
use edgeim::config::Config;
use edgeim::server::{self, Running};
use serde_json::Value;
use tungstenite::Message;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Users every test server knows; each one's password is `pw-<name>`.
pub const USERS: &[&str] = &["alice", "bob", "carol", "dave", "erin"];

pub fn password(user: &str) -> String {
    format!("pw-{user}")
}

/// The users file, hashed once per test binary (argon2 is slow on purpose).
fn users_file() -> &'static str {
    static FILE: OnceLock<String> = OnceLock::new();
    FILE.get_or_init(|| {
        USERS
            .iter()
            .map(|u| format!("{u}:{}\n", edgeim::users::hash_password(&password(u))))
            .collect()
    })
}

/// The password of every user that [`add_users`] adds.
pub const SHARED_PASSWORD: &str = "pw-shared";

/// Appends `names` to the users file of the data dir of `config`, all with
/// the password [`SHARED_PASSWORD`] hashed once per test binary: many
/// users cost one argon2 hash, not one each.
pub fn add_users(config: &Config, names: &[String]) {
    static HASH: OnceLock<String> = OnceLock::new();
    let hash = HASH.get_or_init(|| edgeim::users::hash_password(SHARED_PASSWORD));
    let path = edgeim::users::path_in(&config.data_dir);
    let mut text = std::fs::read_to_string(&path).expect("read users");
    for n in names {
        text.push_str(&format!("{n}:{hash}\n"));
    }
    std::fs::write(&path, text).expect("write users");
}

/// Writes the users file of the data dir of `config` anew with only those
/// of the test [`USERS`] that `keep` keeps (their usual passwords).
pub fn keep_users(config: &Config, keep: impl Fn(&str) -> bool) {
    let text: String = users_file()
        .lines()
        .filter(|l| keep(l.split(':').next().unwrap_or_default()))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(edgeim::users::path_in(&config.data_dir), text).expect("write users");
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeim-test-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    // Private, as the server keeps its data_dir (it would tighten and warn).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod temp dir");
    }
    dir
}

/// A config for tests: ephemeral loopback ports, a fresh data dir with
/// the test users, generous rate limits unless a test lowers them.
pub fn test_config(tag: &str) -> Config {
    let dir = temp_dir(tag);
    std::fs::write(edgeim::users::path_in(&dir), users_file()).expect("write users");
    let mut c = Config {
        data_dir: dir,
        ..Config::default()
    };
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.websocket.listen = "127.0.0.1:0".parse().unwrap();
    c.limits.rate_per_s = 100_000.0;
    c.limits.rate_burst = 100_000.0;
    c.limits.session_ids_per_s = 100_000.0;
    c
}

pub struct TestServer {
    running: Option<Running>,
    pub config: Config,
    pub http: String,
    pub ws: String,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config("srv");
        adjust(&mut config);
        let running = server::start(&config).expect("server starts");
        let http = format!("http://{}", running.http_addr());
        let ws = format!("ws://{}/{}", running.ws_addr(), config.websocket.context);
        TestServer {
            running: Some(running),
            config,
            http,
            ws,
        }
    }

    /// Stops the server as SIGTERM would.
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(2));
        }
    }

    /// Stops the server if it runs, then starts it again with the same
    /// config on the same data dir, as after a reboot. The ports change
    /// (port 0): `http` and `ws` are updated. Connections of the old server
    /// are gone.
    pub fn restart(&mut self) {
        self.stop();
        let running = server::start(&self.config).expect("server restarts");
        self.http = format!("http://{}", running.http_addr());
        self.ws = format!(
            "ws://{}/{}",
            running.ws_addr(),
            self.config.websocket.context
        );
        self.running = Some(running);
    }

    /// Rereads the users file as SIGHUP would (the config is the running
    /// one); false if the reload was refused.
    pub fn reload(&self) -> bool {
        self.running
            .as_ref()
            .expect("the server runs")
            .reloader(None)
            .reload()
    }

    /// Logs in as an app; returns the token.
    pub fn token(&self, user: &str) -> String {
        login(&self.http, user, &password(user))
    }

    /// A one-time session id for `client` of `user`.
    pub fn session_id(&self, user: &str, client: &str) -> String {
        self.session_id_with(&self.token(user), client)
    }

    /// A one-time session id for `client`, asked for with an app `token`.
    pub fn session_id_with(&self, token: &str, client: &str) -> String {
        session_id_with(&self.http, token, client)
    }

    /// Connect, log in and register `user` as `client`; asserts SUCCESS.
    pub fn client(&self, user: &str, client: &str) -> Client {
        self.client_with(&self.token(user), user, client)
    }

    /// Registers `user` as `client` with a session id asked for with an app
    /// `token`; asserts SUCCESS.
    pub fn client_with(&self, token: &str, user: &str, client: &str) -> Client {
        registered(&self.ws, user, client, &self.session_id_with(token, client))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.config.data_dir);
    }
}

// ---- logging in and registering, against any server by its URLs ----

/// `POST /app/login` at `http` (`http://host:port`): the app token; panics
/// unless the answer is 200 with a token.
pub fn login(http: &str, user: &str, password: &str) -> String {
    client::app_login(&http_server(http), user, password)
        .unwrap_or_else(|e| panic!("login {user}: {e}"))
}

/// `GET /app/websocket/client/login/{client}` at `http` with an app
/// `token`: a one-time session id; panics unless 200 with one.
pub fn session_id_with(http: &str, token: &str, client: &str) -> String {
    client::session_id(&http_server(http), token, client)
        .unwrap_or_else(|e| panic!("session id for {client}: {e}"))
}

/// Logs in at `http`, gets a session id for `client` and registers `user`
/// over `ws`; asserts SUCCESS. For a server the harness did not start
/// (a [`served::Served`]); a [`TestServer`] has [`TestServer::client`].
pub fn register_on(http: &str, ws: &str, user: &str, password: &str, client: &str) -> Client {
    let token = login(http, user, password);
    registered(ws, user, client, &session_id_with(http, &token, client))
}

/// Opens `ws` and registers `user` (as `client`) with `session_id`;
/// asserts SUCCESS.
pub fn registered(ws: &str, user: &str, client: &str, session_id: &str) -> Client {
    let mut c = Client::registering(ws, user, session_id);
    c.assert_registered(client);
    c
}

// ---- HTTP ----

/// The server of a `http://host:port` URL.
fn http_server(base: &str) -> HttpServer {
    HttpServer::parse(base).unwrap_or_else(|e| panic!("{e}"))
}

/// `http://host:port/path?query` as the server and `/path?query`.
fn split_url(url: &str) -> (HttpServer, &str) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let at = rest.find('/').unwrap_or(rest.len());
    let path = if at == rest.len() { "/" } else { &rest[at..] };
    (http_server(&url[..url.len() - rest.len() + at]), path)
}

/// Sends `method url` with `headers` and `body`; panics if no answer comes
/// within [`WAIT`]. Any status is an answer.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let (server, path) = split_url(url);
    let mut rq = server.request(method, path).timeout(WAIT).body(body);
    for (k, v) in headers {
        rq = rq.header(k, v);
    }
    rq.send()
        .unwrap_or_else(|e| panic!("http request {method} {url}: {e}"))
}

/// An answer's body as JSON, or its text as a JSON string when it is not
/// JSON.
pub fn body_of(resp: &HttpResponse) -> Value {
    let text = resp.text();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// GET with headers; returns status and JSON body (or the text as a string).
pub fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let resp = get_raw(url, headers);
    (resp.status, body_of(&resp))
}

/// POST a JSON body with headers; returns status and JSON body (or the
/// text as a string).
pub fn post_json(url: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let mut all = headers.to_vec();
    all.push(("Content-Type", "application/json"));
    let resp = post_raw(url, &all, &body.to_string());
    (resp.status, body_of(&resp))
}

/// POST returning the whole answer, for header checks.
pub fn post_raw(url: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    request("POST", url, headers, body)
}

/// GET returning the whole answer, for header checks.
pub fn get_raw(url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    request("GET", url, headers, "")
}

// ---- WebSocket ----

/// A WebSocket client speaking the protocol. Messages read while waiting
/// for a 9001 are kept, not dropped: a sender that is one of its own
/// recipients may get its message before its SUCCESS.
pub struct Client {
    pub ws: Ws,
    pub user: String,
    held: VecDeque<Value>,
}

/// A status frame's body, parsed; panics unless it is a string holding JSON.
fn status_json(frame: &Value) -> Value {
    serde_json::from_str(frame["body"].as_str().expect("body string")).expect("StatusBody")
}

/// A 9001 frame's (code, msg).
pub fn status_of(frame: &Value) -> (i64, String) {
    let body = status_json(frame);
    (
        body["code"].as_i64().expect("code"),
        body["msg"].as_str().unwrap_or_default().to_string(),
    )
}

/// A 9001 frame's whole StatusBody; panics unless `code`, `status` and
/// `msg` are all there.
pub fn status_body(frame: &Value) -> StatusBody {
    let body = status_json(frame);
    StatusBody {
        code: body["code"].as_i64().expect("code"),
        status: body["status"].as_str().expect("status").to_string(),
        msg: body["msg"].as_str().expect("msg").to_string(),
    }
}

/// A 9001 frame as (id, code, msg); `None` for any other type.
pub fn status_answer(frame: &Value) -> Option<(String, i64, String)> {
    if frame["type"] != 9001 {
        return None;
    }
    let (code, msg) = status_of(frame);
    Some((
        frame["id"].as_str().unwrap_or_default().to_string(),
        code,
        msg,
    ))
}

/// Wall-clock milliseconds since the epoch, as the server stamps them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

impl Client {
    /// Opens the socket without registering; a read or a write that takes
    /// longer than [`WAIT`] fails.
    pub fn open(url: &str, user: &str) -> Client {
        let ws = ws::open(url).unwrap_or_else(|e| panic!("websocket connect: {e}"));
        let tcp = ws.get_ref().tcp();
        tcp.set_read_timeout(Some(WAIT))
            .and_then(|()| tcp.set_write_timeout(Some(WAIT)))
            .expect("socket timeouts");
        Client {
            ws,
            user: user.to_string(),
            held: VecDeque::new(),
        }
    }

    /// Opens the socket and sends a register with `session_id`; the answer
    /// (the 9001 for id `reg`) is the caller's.
    pub fn registering(url: &str, user: &str, session_id: &str) -> Client {
        let mut c = Client::open(url, user);
        c.register(session_id);
        c
    }

    /// Waits for the answer to this client's register (as `client`) and
    /// asserts it is SUCCESS.
    pub fn assert_registered(&mut self, client: &str) {
        let st = self.status(frames::REGISTER_ID);
        assert_eq!(st.0, 200, "register {}/{client}: {st:?}", self.user);
    }

    pub fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    pub fn send_json(&mut self, v: Value) {
        self.send_raw(&v.to_string());
    }

    /// Sends a register (1000) with id `reg`.
    pub fn register(&mut self, session_id: &str) {
        let reg = frames::register(frames::REGISTER_ID, &self.user, session_id);
        self.send_json(reg);
    }

    /// Sends a text (2001) from this client's user.
    pub fn text(&mut self, id: &str, to: &str, body: &str) {
        let text = frames::text(id, &self.user, to, body);
        self.send_json(text);
    }

    /// Acknowledges a received message (9101).
    pub fn ack(&mut self, id: &str, original_sender: &str) {
        let ack = frames::ack(id, &self.user, original_sender);
        self.send_json(ack);
    }

    /// The next frame from the socket; panics on timeout or close.
    fn read_json(&mut self) -> Value {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return serde_json::from_str(&t).expect("server sent JSON"),
                Ok(Message::Close(c)) => panic!("{}: unexpected close {c:?}", self.user),
                Ok(_) => continue,
                Err(e) => panic!("{}: read failed (timeout?): {e}", self.user),
            }
        }
    }

    /// The next frame exactly as the server wrote it (a text frame);
    /// panics if messages were kept while waiting for a 9001.
    pub fn recv_raw(&mut self) -> String {
        assert!(self.held.is_empty(), "{}: frames were kept", self.user);
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return t.to_string(),
                Ok(Message::Close(c)) => panic!("{}: unexpected close {c:?}", self.user),
                Ok(_) => continue,
                Err(e) => panic!("{}: read failed (timeout?): {e}", self.user),
            }
        }
    }

    /// The next message, those kept while waiting for a 9001 first.
    pub fn recv(&mut self) -> Value {
        match self.held.pop_front() {
            Some(m) => m,
            None => self.read_json(),
        }
    }

    /// The next 9001 that matches; other 9001s are dropped, other
    /// messages kept for `recv`/`next_message`.
    fn wait_status(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            let m = self.read_json();
            if m["type"] != 9001 {
                self.held.push_back(m);
            } else if matches(&m) {
                return m;
            }
        }
    }

    /// The whole 9001 frame for `id`.
    pub fn status_frame(&mut self, id: &str) -> Value {
        self.wait_status(|m| m["id"] == id)
    }

    /// The 9001 for `id`, as (code, msg).
    pub fn status(&mut self, id: &str) -> (i64, String) {
        status_of(&self.status_frame(id))
    }

    /// The next 9001 whatever its id: (id, code, msg).
    pub fn any_status(&mut self) -> (String, i64, String) {
        let m = self.wait_status(|_| true);
        status_answer(&m).expect("a 9001")
    }

    /// The next message that is not a 9001.
    pub fn next_message(&mut self) -> Value {
        loop {
            let m = self.recv();
            if m["type"] != 9001 {
                return m;
            }
        }
    }

    /// Closes the connection from the client side and waits until it is
    /// gone.
    pub fn hang_up(mut self) {
        let _ = self.ws.close(None);
        for _ in 0..10_000 {
            match self.ws.read() {
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
        panic!("{}: the connection did not end", self.user);
    }

    /// Waits for the server's Close frame; returns (code, reason).
    pub fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.ws.read() {
                Ok(Message::Close(Some(f))) => return (u16::from(f.code), f.reason.to_string()),
                Ok(Message::Close(None)) => return (1005, String::new()),
                Ok(_) => continue,
                Err(e) => panic!("{}: no close frame: {e}", self.user),
            }
        }
    }
}

// ---- assertions the protocol tests share ----

/// One text from `from` to `to`'s user: 200 for the sender, the message for
/// the receiver.
pub fn round_trip(from: &mut Client, to: &mut Client, id: &str) {
    let to_user = to.user.clone();
    from.text(id, &to_user, &format!("body of {id}"));
    assert_eq!(from.status(id).0, 200, "{} → {to_user}: {id}", from.user);
    let m = to.next_message();
    assert_eq!(m["id"].as_str(), Some(id), "{to_user} got {m}");
}

/// Sends a text and asserts it is accepted.
pub fn send_ok(c: &mut Client, id: &str, to: &str, body: &str) {
    c.text(id, to, body);
    let (code, msg) = c.status(id);
    assert_eq!(code, 200, "{}: text {id} to {to:?}: {msg}", c.user);
}

/// Acknowledges and asserts the 9101 is answered with `code`.
pub fn ack_expect(c: &mut Client, id: &str, original_sender: &str, code: i64) {
    c.ack(id, original_sender);
    let (got, msg) = c.status(id);
    assert_eq!(
        got, code,
        "{}: 9101 for {id} to {original_sender}: {msg}",
        c.user
    );
}

/// The next message that is not a 9001 must have `id`; returns it.
pub fn expect_next(c: &mut Client, id: &str) -> Value {
    let m = c.next_message();
    assert_eq!(m["id"], id, "{}: expected {id} next, got {m}", c.user);
    m
}

/// The next message that is not a 9001 must be the text `id` (type 2001).
pub fn expect_text(c: &mut Client, id: &str) -> Value {
    let m = expect_next(c, id);
    assert_eq!(m["type"], 2001, "{}: {m}", c.user);
    m
}

/// Proves that nothing is queued for `c` before now: sends a note to self
/// with id `marker` and asserts the next message that is not a 9001 is that
/// marker. (The user's other clients get the marker too.)
pub fn expect_nothing_before(c: &mut Client, marker: &str) {
    let me = c.user.clone();
    send_ok(c, marker, &me, "marker");
    expect_next(c, marker);
}
