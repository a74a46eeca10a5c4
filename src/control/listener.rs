//! The server's end of the control socket: one thread that answers one
//! request per connection, in turn. Only the server's user (and root) can
//! reach the socket, so one at a time is enough; a client that sends
//! nothing is dropped after [`IO_TIMEOUT`].

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::{Answer, MAX_REQUEST_BYTES, Request, change_of};
use crate::auth::directory::Directory;
use crate::events::Event;
use crate::store::groups::Actor;

/// How long one request may take to arrive, and its answer to leave.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the router and the store may take to make a change.
const CHANGE_WAIT: Duration = Duration::from_secs(10);

/// The running control socket; dropping it removes the socket file.
pub struct Control {
    path: PathBuf,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (a socket left by a server that died is replaced) and
/// starts the thread.
pub fn start(
    path: PathBuf,
    router: Sender<Event>,
    users: Arc<Directory>,
) -> std::io::Result<Control> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => serve(s, &router, &users),
                    Err(e) => log::warn!("control socket: {e}"),
                }
            }
        })?;
    Ok(Control { path })
}

fn serve(stream: UnixStream, router: &Sender<Event>, users: &Directory) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut line = String::new();
    let read = BufReader::new((&stream).take(MAX_REQUEST_BYTES)).read_line(&mut line);
    let answer = match read {
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Ok(req) => answer(&req, router, users),
            Err(e) => Answer::error(400, format!("not a control request: {e}")),
        },
        Err(e) => Answer::error(400, format!("reading the request: {e}")),
    };
    if let Ok(mut out) = serde_json::to_string(&answer) {
        out.push('\n');
        let _ = (&stream).write_all(out.as_bytes());
    }
}

/// Checks the request and has the router and the store make the change,
/// as the API key would over HTTP.
fn answer(req: &Request, router: &Sender<Event>, users: &Directory) -> Answer {
    users.refresh();
    let change = match change_of(req, &|u| users.exists(u)) {
        Ok(c) => c,
        Err(why) => return Answer::error(400, why),
    };
    log::info!("control socket: {req:?}");
    let (reply, rx) = crossbeam_channel::bounded(1);
    let event = Event::Group {
        actor: Actor::Admin,
        change,
        reply,
    };
    if router.send(event).is_err() {
        return Answer::error(503, "the server is stopping");
    }
    match rx.recv_timeout(CHANGE_WAIT) {
        Ok(Ok(group)) => Answer {
            status: 200,
            msg: "done".into(),
            group: group.as_ref().map(|g| g.json()),
        },
        Ok(Err(e)) => Answer::error(e.status(), e.message()),
        Err(_) => Answer::error(503, "the server did not answer in time"),
    }
}
