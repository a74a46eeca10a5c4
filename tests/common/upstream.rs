//! A host system for delegated login (PROTOCOL.md section 13), played for
//! real: an HTTP server on an ephemeral loopback port, in threads of the
//! test binary. It checks passwords at `POST /login` and tokens at
//! `GET /me` the way a business application would, records every request
//! it gets (method, URL, headers, body) for the tests to look at, and can
//! be told to answer 500, to answer 200 without a user id, or to hang.
//!
//! Stopped when dropped; a hanging answer is let go then too.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::WAIT;

/// One request as the host system got it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The request target as sent (`/login`, `/me?x=1`).
    pub url: String,
    /// Every header, in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    /// A header's value (the name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {:?}", self.body))
    }

    /// The request line, every header and the body: all the host system
    /// saw of it.
    pub fn whole(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.url);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str(&self.body);
        s
    }
}

/// How the host system answers, whatever it is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Checks passwords and tokens: 200 with the user id, or 401.
    Normal,
    /// Answers this status (500, 403, ...) with an empty JSON object.
    Status(u16),
    /// Answers 200 with JSON that has no user id.
    NoUserId,
    /// Reads the request and answers nothing until [`Upstream::release`]
    /// or the end of the test (at most [`WAIT`]), then answers as `Normal`.
    Hang,
    /// Answers as `Normal`, one byte every this many milliseconds: each
    /// read gets something soon, the whole answer takes long.
    Trickle(u64),
}

#[derive(Default)]
struct State {
    /// Login name → (password, the user id answered).
    users: HashMap<String, (String, String)>,
    /// Token → user id.
    tokens: HashMap<String, String>,
    behaviour: Option<Behaviour>,
    seen: Vec<Seen>,
    /// Requests being held by [`Behaviour::Hang`] right now.
    hanging: usize,
    released: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every change of `state`.
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The host system. `login_url()` and `token_url()` go into `[auth.http]`.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts it on 127.0.0.1, port 0, with no users and no tokens.
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the host system");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(&s, conn));
            }
        });
        Upstream {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT/login`: where passwords are checked.
    pub fn login_url(&self) -> String {
        format!("http://{}/login", self.addr)
    }

    /// `http://127.0.0.1:PORT/me`: where tokens are checked.
    pub fn token_url(&self) -> String {
        format!("http://{}/me", self.addr)
    }

    /// A user who logs in as `name` with `password`; its id is `name`.
    pub fn user(&self, name: &str, password: &str) -> &Self {
        self.user_as(name, password, name)
    }

    /// A user who logs in as `name` with `password`, whom the host system
    /// calls `id`.
    pub fn user_as(&self, name: &str, password: &str, id: &str) -> &Self {
        self.shared
            .lock()
            .users
            .insert(name.into(), (password.into(), id.into()));
        self
    }

    /// A token of the host system's that belongs to `user`.
    pub fn token(&self, token: &str, user: &str) -> &Self {
        self.shared.lock().tokens.insert(token.into(), user.into());
        self
    }

    /// The host system revokes `token`: it answers 401 for it from now on.
    pub fn revoke(&self, token: &str) {
        self.shared.lock().tokens.remove(token);
    }

    /// How it answers from now on.
    pub fn behave(&self, b: Behaviour) {
        let mut st = self.shared.lock();
        st.behaviour = Some(b);
        st.released = false;
        self.shared.changed.notify_all();
    }

    /// Lets the held requests answer (as `Normal`), and all later ones.
    pub fn release(&self) {
        let mut st = self.shared.lock();
        st.released = true;
        self.shared.changed.notify_all();
    }

    /// Every request so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().seen.clone()
    }

    /// The requests so far to `path` (`/login`, `/me`).
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.url == path).collect()
    }

    /// Waits until `n` requests are being held by [`Behaviour::Hang`].
    pub fn wait_hanging(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        let mut st = self.shared.lock();
        while st.hanging < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} of {n} requests reached the host system",
                st.hanging
            );
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.release();
        // Wakes the acceptor, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Reads one request from `conn`, records it, answers it, closes.
fn serve(shared: &Shared, conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(WAIT));
    let _ = conn.set_write_timeout(Some(WAIT));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let Some(seen) = read_request(conn) else {
        return;
    };
    let behaviour = {
        let mut st = shared.lock();
        st.seen.push(seen.clone());
        shared.changed.notify_all();
        st.behaviour.unwrap_or(Behaviour::Normal)
    };
    let behaviour = match behaviour {
        Behaviour::Hang => {
            hang(shared);
            Behaviour::Normal
        }
        other => other,
    };
    let (status, body) = match behaviour {
        Behaviour::Status(s) => (s, json!({})),
        Behaviour::NoUserId => (200, json!({"name": "Somebody"})),
        _ => answer(&shared.lock(), &seen),
    };
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let whole = format!("{head}{body}");
    let Behaviour::Trickle(gap_ms) = behaviour else {
        // edgeim may have given up already (a timeout): nobody to answer.
        let _ = writer.write_all(whole.as_bytes());
        return;
    };
    for b in whole.as_bytes() {
        // The stimulus of a slow host system, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(gap_ms));
        if writer.write_all(&[*b]).is_err() || shared.stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Holds the calling request until released or stopped, at most [`WAIT`].
fn hang(shared: &Shared) {
    let deadline = Instant::now() + WAIT;
    let mut st = shared.lock();
    st.hanging += 1;
    shared.changed.notify_all();
    while !st.released && !shared.stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        st = shared
            .changed
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    st.hanging -= 1;
    shared.changed.notify_all();
}

/// What a working host system answers: a password at `POST /login`, a
/// token (`token:` or `Authorization: Bearer`) at `GET /me`.
fn answer(st: &State, seen: &Seen) -> (u16, Value) {
    let refused = (401, json!({"error": "unauthorized"}));
    match (seen.method.as_str(), seen.url.as_str()) {
        ("POST", "/login") => {
            let creds: Value = serde_json::from_str(&seen.body).unwrap_or_default();
            let (Some(name), Some(password)) =
                (creds["username"].as_str(), creds["password"].as_str())
            else {
                return (400, json!({"error": "username and password"}));
            };
            match st.users.get(name) {
                Some((pw, id)) if pw == password => {
                    (200, json!({"userId": id, "displayName": name}))
                }
                _ => refused,
            }
        }
        ("GET", "/me") => {
            let token = seen.header("token").or_else(|| {
                seen.header("Authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
            });
            match token.and_then(|t| st.tokens.get(t)) {
                Some(id) => (200, json!({"userId": id})),
                None => refused,
            }
        }
        _ => (404, json!({"error": "no such endpoint"})),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Other",
    }
}

/// The request line, the headers up to the blank line, and a body of
/// `Content-Length` bytes; `None` if the peer sends no whole request (the
/// wake-up connection of [`Upstream::drop`]).
fn read_request(conn: TcpStream) -> Option<Seen> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, url) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        url,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
