//! `edgeim chat`: a small terminal client, so two terminals can chat against
//! the demo server with nothing else installed. It logs in, asks for a
//! session id and registers through [`crate::client`], then turns typed
//! lines into texts and incoming frames into one line each on stdout.

use std::collections::HashSet;
use std::io::BufRead;
use std::time::Duration;

use crossbeam_channel::{Receiver, TryRecvError};
use serde_json::Value;
use tungstenite::Message;

use crate::client::frames::{self, StatusBody};
use crate::client::ws::{self as cws, Ws as Socket};
use crate::client::{self, ClientError, HttpServer, WAIT};
use crate::wire::ids::{SYSTEM, UserId};
use crate::wire::{TYPE_RECEIVE_STATUS, TYPE_SEND_STATUS, TYPE_TEXT};

/// The HTTP API `edgeim chat` talks to unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// The WebSocket it registers on unless told otherwise.
pub const DEFAULT_WS: &str = "ws://127.0.0.1:8081/websocket";
/// Its clientName unless told otherwise.
pub const DEFAULT_CLIENT: &str = "terminal";

/// How long one `ws.read()` waits before the loop looks at stdin again.
const POLL: Duration = Duration::from_millis(100);

/// `edgeim chat USER [--server URL] [--ws URL] [--client NAME]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Who to log in as.
    pub user: String,
    /// The HTTP API's URL.
    pub server: String,
    /// The WebSocket's URL.
    pub ws: String,
    /// The clientName to register as.
    pub client: String,
}

/// Chat until `/quit` or the end of `input`. The error is one line for the user.
pub fn run(
    opts: &Options,
    password: &str,
    input: impl BufRead + Send + 'static,
) -> Result<(), ClientError> {
    // Refuses https://, wss:// and other schemes before anything is sent.
    let server = HttpServer::parse(&opts.server)?;
    cws::ws_host(&opts.ws)?;
    let token = client::app_login(&server, &opts.user, password)?;
    let result = chat(opts, &server, &token, input);
    // Best effort: the token would otherwise stay valid until it expires.
    let _ = client::app_logout(&server, &token);
    result
}

fn chat(
    opts: &Options,
    server: &HttpServer,
    token: &str,
    input: impl BufRead + Send + 'static,
) -> Result<(), ClientError> {
    let session_id = client::session_id(server, token, &opts.client)?;
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
                Ok(line) if line.trim() == "/who" => who(server, token),
                Ok(line) => chat.send_line(&mut ws, &line)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return close(&mut ws),
            }
        }
        // A client tool may poll: the socket's 100 ms read timeout lets one
        // thread own the WebSocket and still notice typed lines promptly.
        match ws.read() {
            Ok(Message::Text(t)) => chat.show_frame(&mut ws, &t)?,
            Ok(Message::Close(frame)) => {
                return Err(ClientError::Closed(cws::closed_by_server(frame)));
            }
            Ok(_) => {}
            Err(e) if cws::is_timeout(&e) => {}
            Err(e) => return Err(lost(e)),
        }
        ws.flush().map_err(lost)?;
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
    fn send_line(&mut self, ws: &mut Socket, line: &str) -> Result<(), ClientError> {
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
        let msg = frames::text(&id, &self.user, &to, text);
        self.pending.insert(id);
        cws::send(ws, &msg)
    }

    /// Prints one incoming frame and acknowledges texts.
    fn show_frame(&mut self, ws: &mut Socket, text: &str) -> Result<(), ClientError> {
        let Ok(m) = serde_json::from_str::<Value>(text) else {
            return Ok(());
        };
        // What peers wrote is shown with control characters escaped: a
        // body must not move the cursor, recolour or retitle the terminal.
        let field = |k: &str| shown(m[k].as_str().unwrap_or_default());
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
                cws::send(ws, &frames::ack(&id, &self.user, &from))?;
            }
            Some(TYPE_SEND_STATUS) => match (StatusBody::of_frame(&m), self.pending.remove(&id)) {
                (s, true) if s.code == 200 => println!("✓ {id}"),
                (s, false) if s.code == 200 => {} // the answer to one of our receipts
                (s, _) => println!("✗ {id} {}", shown(&s.to_string())),
            },
            Some(TYPE_RECEIVE_STATUS) => println!("✓✓ {id} read by {from}"),
            _ => {}
        }
        Ok(())
    }
}

/// Text from the network as it may reach a terminal: control characters
/// (C0, DEL, C1: ESC starts the escape sequences) and the bidirectional
/// overrides (which reorder what follows) are written as Rust escapes,
/// `\u{1b}`, `\n`; everything else, non-ASCII included, as it is.
fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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

fn lost(e: tungstenite::Error) -> ClientError {
    ClientError::WebSocket("connection lost".into(), e)
}

/// Sends Close 1000 and waits (bounded) for the server's answer.
fn close(ws: &mut Socket) -> Result<(), ClientError> {
    cws::close(ws, None, WAIT);
    Ok(())
}

/// Typed lines arrive on the channel; it disconnects at end of input.
fn read_lines_in_background(
    input: impl BufRead + Send + 'static,
) -> Result<Receiver<String>, ClientError> {
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
        .map_err(|e| ClientError::Io("cannot start the input thread".into(), e))?;
    Ok(rx)
}

/// `/who`: every user and whether it is online.
fn who(server: &HttpServer, token: &str) {
    match server.get("/api/users").token(Some(token)).send() {
        Ok(answer) if answer.status == 200 => {
            for u in answer.json()["users"].as_array().into_iter().flatten() {
                let state = if u["online"] == true {
                    "online"
                } else {
                    "offline"
                };
                println!("[who] {} {state}", u["userId"].as_str().unwrap_or_default());
            }
        }
        Ok(answer) => eprintln!("edgeim: chat: /who: {}", answer.why()),
        Err(e) => eprintln!("edgeim: chat: /who: {e}"),
    }
}

/// Connects and registers; reads then time out after [`POLL`], so the
/// loop notices typed lines.
fn register(opts: &Options, session_id: &str) -> Result<Socket, ClientError> {
    let mut ws = cws::open(&opts.ws)?;
    cws::register(&mut ws, &opts.user, session_id)?;
    cws::set_read_timeout(&ws, POLL);
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_peers_are_shown_escaped() {
        assert_eq!(shown("hi \u{1b}[2J\u{7}there"), "hi \\u{1b}[2J\\u{7}there");
        assert_eq!(shown("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(shown("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(shown("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(shown("grüße 名前 🙂"), "grüße 名前 🙂");
    }

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
