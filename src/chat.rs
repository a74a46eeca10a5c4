//! `edgeim chat`: a small terminal client, so two terminals can chat against
//! the demo server with nothing else installed. It logs in over HTTP (written
//! by hand: plain http:// only), asks for a session id, registers over the
//! WebSocket, then turns typed lines into texts and incoming frames into
//! one line each on stdout.

use std::collections::HashSet;
use std::io::BufRead;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use serde_json::{Value, json};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::httpc;
use crate::ids::{SYSTEM, UserId};
use crate::protocol::{TYPE_RECEIVE_STATUS, TYPE_REGISTER, TYPE_SEND_STATUS, TYPE_TEXT};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
pub const DEFAULT_WS: &str = "ws://127.0.0.1:8081/websocket";
pub const DEFAULT_CLIENT: &str = "terminal";

/// How long an HTTP request, the register answer or the close handshake may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long one `ws.read()` waits before the loop looks at stdin again.
const POLL: Duration = Duration::from_millis(100);
const ACK_BODY: &str = r#"{"code":200,"status":"SUCCESS","msg":"received"}"#;

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub user: String,
    pub server: String,
    pub ws: String,
    pub client: String,
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Chat until `/quit` or the end of `input`. The error is one line for the user.
pub fn run(
    opts: &Options,
    password: &str,
    input: impl BufRead + Send + 'static,
) -> Result<(), String> {
    check_urls(opts)?;
    let token = log_in(opts, password)?;
    let result = chat(opts, &token, input);
    // Best effort: the token would otherwise stay valid until it expires.
    let _ = http(&opts.server, "POST", "/app/logout", Some(&token), Some(""));
    result
}

/// Refuses https://, wss:// and other schemes before anything is sent.
fn check_urls(opts: &Options) -> Result<(), String> {
    httpc::split_http_url(&opts.server)?;
    if opts.ws.starts_with("wss://") {
        return Err(format!(
            "bad --ws URL {:?}: use ws://; put TLS in a reverse proxy",
            opts.ws
        ));
    }
    if !opts.ws.starts_with("ws://") {
        return Err(format!(
            "bad --ws URL {:?}: it must start with ws://",
            opts.ws
        ));
    }
    Ok(())
}

fn chat(opts: &Options, token: &str, input: impl BufRead + Send + 'static) -> Result<(), String> {
    let session_id = session_id(opts, token)?;
    let mut ws = register(opts, &session_id)?;
    println!("connected as {} ({})", opts.user, opts.client);
    let lines = read_lines_in_background(input)?;
    let mut chat = Chat {
        user: opts.user.clone(),
        to: None,
        pending: HashSet::new(),
    };
    loop {
        loop {
            match lines.try_recv() {
                Ok(line) if line.trim() == "/quit" => return close(&mut ws),
                Ok(line) if line.trim() == "/who" => who(opts, token),
                Ok(line) => chat.send_line(&mut ws, &line)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return close(&mut ws),
            }
        }
        // A client tool may poll: the socket's 100 ms read timeout lets one
        // thread own the WebSocket and still notice typed lines promptly.
        match ws.read() {
            Ok(Message::Text(t)) => chat.show_frame(&mut ws, &t)?,
            Ok(Message::Close(frame)) => return Err(closed_by_server(frame)),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
            Err(e) => return Err(format!("connection lost: {e}")),
        }
        ws.flush().map_err(|e| format!("connection lost: {e}"))?;
    }
}

struct Chat {
    user: String,
    /// The recipients of the previous line.
    to: Option<String>,
    /// Ids of our texts still waiting for their 9001.
    pending: HashSet<String>,
}

impl Chat {
    /// `bob: hi`, `bob,carol: hi`, or `hi` to the previous recipients.
    fn send_line(&mut self, ws: &mut Socket, line: &str) -> Result<(), String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(());
        }
        if line.starts_with('/') {
            eprintln!("edgeim: chat: commands are /who and /quit");
            return Ok(());
        }
        let text = match split_recipients(line) {
            Some((to, text)) => {
                self.to = Some(to);
                text
            }
            None => line,
        };
        let Some(to) = self.to.clone() else {
            eprintln!("edgeim: chat: say who to first, like `bob: hello`");
            return Ok(());
        };
        if text.is_empty() {
            return Ok(());
        }
        let id = uuid::Uuid::new_v4().to_string();
        let msg = json!({"id": id, "type": TYPE_TEXT, "isSystem": false, "from": self.user, "to": to, "body": text});
        self.pending.insert(id);
        send(ws, &msg)
    }

    /// Prints one incoming frame and acknowledges texts.
    fn show_frame(&mut self, ws: &mut Socket, text: &str) -> Result<(), String> {
        let Ok(m) = serde_json::from_str::<Value>(text) else {
            return Ok(());
        };
        let field = |k: &str| m[k].as_str().unwrap_or_default().to_string();
        let (id, from, to, body) = (field("id"), field("from"), field("to"), field("body"));
        match m["type"].as_i64() {
            Some(TYPE_TEXT) => {
                if from == SYSTEM {
                    println!("[system] {body}");
                } else if from == self.user {
                    println!("you → {to}: {body}");
                } else {
                    println!("{from}: {body}");
                }
                let ack = json!({"id": id, "type": TYPE_RECEIVE_STATUS, "isSystem": false, "from": self.user, "to": from, "body": ACK_BODY});
                send(ws, &ack)?;
            }
            Some(TYPE_SEND_STATUS) => match (status_of(&m), self.pending.remove(&id)) {
                ((200, ..), true) => println!("✓ {id}"),
                ((200, ..), false) => {} // the answer to one of our receipts
                ((code, name, msg), _) => println!("✗ {id} {code} {name}: {msg}"),
            },
            Some(TYPE_RECEIVE_STATUS) => println!("✓✓ {id} read by {from}"),
            _ => {}
        }
        Ok(())
    }
}

/// `bob,carol: hi` → ("bob,carol", "hi") when every name is a valid user id.
fn split_recipients(line: &str) -> Option<(String, &str)> {
    let (names, text) = line.split_once(':')?;
    let names: Vec<&str> = names.split(',').map(str::trim).collect();
    if !names.iter().all(|n| UserId::parse(n).is_some()) {
        return None;
    }
    Some((names.join(","), text.trim()))
}

/// (code, status, msg) of a 9001's StatusBody, which is a JSON string.
fn status_of(m: &Value) -> (i64, String, String) {
    let s: Value = serde_json::from_str(m["body"].as_str().unwrap_or_default()).unwrap_or_default();
    let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
    (
        s["code"].as_i64().unwrap_or_default(),
        text("status"),
        text("msg"),
    )
}

fn send(ws: &mut Socket, msg: &Value) -> Result<(), String> {
    ws.send(Message::text(msg.to_string()))
        .map_err(|e| format!("connection lost: {e}"))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn closed_by_server(frame: Option<CloseFrame>) -> String {
    match frame {
        Some(f) => format!(
            "the server closed the connection: {} {}",
            u16::from(f.code),
            f.reason
        ),
        None => "the server closed the connection".into(),
    }
}

/// Sends Close 1000 and waits (bounded) for the server's answer.
fn close(ws: &mut Socket) -> Result<(), String> {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if ws.close(Some(frame)).is_err() {
        return Ok(());
    }
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// Typed lines arrive on the channel; it disconnects at end of input.
fn read_lines_in_background(
    input: impl BufRead + Send + 'static,
) -> Result<Receiver<String>, String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in input.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("cannot start the input thread: {e}"))?;
    Ok(rx)
}

fn log_in(opts: &Options, password: &str) -> Result<String, String> {
    let body = json!({"username": opts.user, "password": password}).to_string();
    let (status, answer) = http(&opts.server, "POST", "/app/login", None, Some(&body))?;
    match answer["token"].as_str() {
        Some(t) if status == 200 => Ok(t.to_string()),
        _ => Err(format!("login failed: {}", why(status, &answer))),
    }
}

fn session_id(opts: &Options, token: &str) -> Result<String, String> {
    let path = format!("/app/websocket/client/login/{}", opts.client);
    let (status, answer) = http(&opts.server, "GET", &path, Some(token), None)?;
    match answer["sessionId"].as_str() {
        Some(s) if status == 200 => Ok(s.to_string()),
        _ => Err(format!("no session id: {}", why(status, &answer))),
    }
}

/// `/who`: every user and whether it is online.
fn who(opts: &Options, token: &str) {
    match http(&opts.server, "GET", "/api/users", Some(token), None) {
        Ok((200, answer)) => {
            for u in answer["users"].as_array().into_iter().flatten() {
                let state = if u["online"] == true {
                    "online"
                } else {
                    "offline"
                };
                println!("[who] {} {state}", u["userId"].as_str().unwrap_or_default());
            }
        }
        Ok((status, answer)) => eprintln!("edgeim: chat: /who: {}", why(status, &answer)),
        Err(e) => eprintln!("edgeim: chat: /who: {e}"),
    }
}

/// The `msg` of an error answer, or the HTTP status.
fn why(status: u16, answer: &Value) -> String {
    match answer["msg"].as_str() {
        Some(m) => m.to_string(),
        None => format!("HTTP {status}"),
    }
}

fn register(opts: &Options, session_id: &str) -> Result<Socket, String> {
    let (mut ws, _) = tungstenite::connect(opts.ws.as_str())
        .map_err(|e| format!("cannot connect to {}: {e}", opts.ws))?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    }
    let reg = json!({"id": "register", "type": TYPE_REGISTER, "isSystem": false, "from": opts.user,
        "to": SYSTEM, "body": json!({"sessionId": session_id}).to_string()});
    send(&mut ws, &reg)?;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let m: Value = serde_json::from_str(&t).unwrap_or_default();
                if m["type"] == TYPE_SEND_STATUS && m["id"] == "register" {
                    match status_of(&m) {
                        (200, ..) => break,
                        (code, name, msg) => {
                            return Err(format!("register failed: {code} {name}: {msg}"));
                        }
                    }
                }
            }
            Ok(Message::Close(frame)) => return Err(closed_by_server(frame)),
            Ok(_) => {}
            Err(e) => return Err(format!("no answer to register: {e}")),
        }
    }
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(POLL)).map_err(|e| e.to_string())?;
    }
    Ok(ws)
}

/// One HTTP/1.1 request over a fresh connection: (status, JSON body or Null).
fn http(
    server: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, Value), String> {
    let (host, prefix) = httpc::split_http_url(server)?;
    httpc::request(&host, &format!("{prefix}{path}"), method, token, body, WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_prefix_picks_the_recipients() {
        assert_eq!(
            split_recipients("bob: hello"),
            Some(("bob".into(), "hello"))
        );
        assert_eq!(
            split_recipients("bob , carol: hi: there"),
            Some(("bob,carol".into(), "hi: there"))
        );
        assert_eq!(split_recipients("just text"), None);
        assert_eq!(split_recipients("two words: x"), None);
    }
}
