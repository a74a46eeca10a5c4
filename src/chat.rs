//! `edgeim chat`: a small terminal client, so two terminals can chat against
//! the demo server with nothing else installed. It logs in, asks for a
//! session id and registers through [`crate::client`], then turns typed
//! lines into texts (`chat/line.rs`) and incoming frames into lines on stdout
//! (`chat/show.rs`). This file is the I/O around those plain functions.

mod escape;
mod line;
mod sent;
mod show;
mod stamp;

use std::io::BufRead;
use std::time::Duration;

use crossbeam_channel::{Receiver, TryRecvError};
use tungstenite::Message;

use crate::client::frames;
use crate::client::ws::{self as cws, Ws as Socket};
use crate::client::{self, ClientError, HttpServer, WAIT};
use crate::clock;
use line::Typed;
use sent::Sent;
use show::Incoming;

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
    let (mut ws, registered_at) = register(opts, &session_id)?;
    println!("connected as {} ({})", opts.user, opts.client);
    print_hint();
    let lines = read_lines_in_background(input)?;
    let mut chat = Chat {
        user: opts.user.clone(),
        to: None,
        sent: Sent::default(),
        // Without the server's clock (a server that stamps no 9001), the
        // local one: only which texts show their date depends on it.
        registered_at: registered_at.unwrap_or_else(clock::now_ms),
    };
    loop {
        loop {
            match lines.try_recv() {
                Ok(line) => match line::parse(&line) {
                    Typed::Quit => return close(&mut ws),
                    Typed::Who => who(server, token),
                    Typed::Help => print_hint(),
                    typed => chat.send_line(&mut ws, typed)?,
                },
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
    /// What this user sent, for the ✓ and ✓✓ lines.
    sent: Sent,
    /// The server's clock when it answered the register: texts stamped
    /// before it were missed while away.
    registered_at: u64,
}

impl Chat {
    /// A typed text (commands are the loop's): to the recipients it names,
    /// or to the previous ones.
    fn send_line(&mut self, ws: &mut Socket, typed: Typed<'_>) -> Result<(), ClientError> {
        let text = match typed {
            Typed::Text { to, text } => {
                if to.is_some() {
                    self.to = to;
                }
                text
            }
            Typed::NotAGroup(name) => {
                eprintln!(
                    "edgeim: chat: {} is not a group (names are a-z, 0-9, '.', '_', '-'); not sent",
                    escape::shown(name)
                );
                return Ok(());
            }
            Typed::UnknownCommand(_) => {
                eprintln!("edgeim: chat: commands are /help, /who and /quit");
                return Ok(());
            }
            Typed::Nothing | Typed::Quit | Typed::Who | Typed::Help => return Ok(()),
        };
        let Some(to) = self.to.as_deref() else {
            eprintln!("edgeim: chat: say who to first, like `bob: hello` or `#ops: hello`");
            return Ok(());
        };
        if text.is_empty() {
            return Ok(());
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.sent.sending(&id, to, text);
        cws::send(ws, &frames::text(&id, &self.user, to, text))
    }

    /// Prints one incoming frame and acknowledges texts.
    fn show_frame(&mut self, ws: &mut Socket, frame: &str) -> Result<(), ClientError> {
        match Incoming::read(frame) {
            Incoming::Text {
                id,
                from,
                to,
                body,
                timestamp,
            } => {
                let at = timestamp.unwrap_or_else(clock::now_ms);
                let missed = stamp::is_missed(at, self.registered_at);
                let when = stamp::stamp(at, missed, stamp::local_offset_s(at));
                println!("{}", show::text_line(&self.user, &from, &to, &body, &when));
                if from == self.user {
                    // A copy of what another client of this user sent: its
                    // receipts come here too.
                    self.sent.remember(&id, &to, &body);
                }
                cws::send(ws, &frames::ack(&id, &self.user, &from))?;
            }
            Incoming::Status { id, status } if status.code == 200 => {
                // One not awaited answers one of our receipts.
                if let Some(sent) = self.sent.answered(&id) {
                    println!("{}", show::accepted_line(sent));
                }
            }
            Incoming::Status { id, status } => {
                let sent = self.sent.answered(&id);
                println!("{}", show::refused_line(sent, &status));
            }
            Incoming::Receipt { id, by } => {
                println!("{}", show::receipt_line(&by, self.sent.get(&id)));
            }
            Incoming::Other => {}
        }
        Ok(())
    }
}

/// The usage hint, after connecting and on `/help`.
fn print_hint() {
    for line in show::HINT {
        println!("{line}");
    }
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
                let user = escape::shown(u["userId"].as_str().unwrap_or_default());
                println!("[who] {user} {state}");
            }
        }
        Ok(answer) => eprintln!("edgeim: chat: /who: {}", answer.why()),
        Err(e) => eprintln!("edgeim: chat: /who: {e}"),
    }
}

/// Connects and registers; reads then time out after [`POLL`], so the
/// loop notices typed lines.
fn register(opts: &Options, session_id: &str) -> Result<(Socket, Option<u64>), ClientError> {
    let mut ws = cws::open(&opts.ws)?;
    let registered_at = cws::register(&mut ws, &opts.user, session_id)?;
    cws::set_read_timeout(&ws, POLL);
    Ok((ws, registered_at))
}
