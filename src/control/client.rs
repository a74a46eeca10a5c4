//! `edgeim group ...`: reads groups from the database directly, and makes
//! changes through the running server's control socket, or, when no server
//! runs, through a store opened for the purpose (the change is then
//! announced to the members when they next register).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use super::listener::IO_TIMEOUT;
use super::{Answer, Request, change_of, socket_in};
use crate::auth::directory::Directory;
use crate::auth::users;
use crate::cli::GroupAction;
use crate::config::Config;
use crate::events::{Done, StoreOp};
use crate::server::store_limits;
use crate::store::groups::{Actor, GroupView};
use crate::store::{self, Known, Store, open_reader, read_groups};

/// Runs one `edgeim group` command; the `Ok` text goes to standard output,
/// the error is one line for the user.
pub fn run(action: &GroupAction, config: &Config) -> Result<String, String> {
    let req = match action {
        GroupAction::List => return list(config, None),
        GroupAction::Show(name) => return list(config, Some(name.as_str())),
        GroupAction::Add {
            name,
            title,
            members,
            owners,
        } => Request::Create {
            name: name.clone(),
            title: title.clone(),
            members: members.clone(),
            owners: owners.clone(),
        },
        GroupAction::Members {
            name,
            add,
            remove,
            owners,
        } => {
            if add.is_empty() && remove.is_empty() && owners.is_empty() {
                return list(config, Some(name.as_str()));
            }
            Request::Members {
                name: name.clone(),
                add: add.clone(),
                remove: remove.clone(),
                owners: owners.clone(),
            }
        }
        GroupAction::Remove(name) => Request::Delete { name: name.clone() },
    };
    let answer = match UnixStream::connect(socket_in(&config.data_dir)) {
        Ok(stream) => ask(stream, &req)?,
        // No server runs (or it died and left its socket): change the
        // database here.
        Err(_) => offline(config, &req)?,
    };
    if answer.status >= 300 {
        return Err(answer.msg);
    }
    Ok(match answer.group {
        Some(g) => describe(&g),
        None => "removed\n".into(),
    })
}

/// Sends the request over the control socket and reads the answer.
fn ask(stream: UnixStream, req: &Request) -> Result<Answer, String> {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT * 3));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .map_err(|e| format!("the server's control socket: {e}"))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| format!("the server's control socket: {e}"))?;
    serde_json::from_str(&answer).map_err(|e| format!("the server answered oddly: {e}"))
}

/// Makes the change in a store opened here, as the server would.
fn offline(config: &Config, req: &Request) -> Result<Answer, String> {
    let dir = Directory::open(users::path_in(&config.data_dir)).map_err(|e| e.to_string())?;
    let change = match change_of(req, &|u| dir.exists(u)) {
        Ok(c) => c,
        Err(why) => return Ok(Answer::error(400, why)),
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| e.to_string())?;
    let dir = Arc::new(dir);
    let known = Known::by(move |u| dir.knows(u));
    let opened = Store::open_watched(
        &store::path_in(&config.data_dir),
        store_limits(config, known),
        None,
    )
    .map_err(|e| e.to_string())?;
    let (reply, _unused) = crossbeam_channel::bounded(1);
    let op = StoreOp::Group {
        actor: Actor::Admin,
        change,
        reply,
    };
    let sent = opened.store.sender().send(op).is_ok();
    let answer = sent
        .then(|| opened.done.recv_timeout(IO_TIMEOUT * 3).ok())
        .flatten()
        .into_iter()
        .flatten()
        .find_map(|d| match d {
            Done::Group { result, .. } => Some(match result {
                Ok(done) => Answer {
                    status: 200,
                    msg: "done".into(),
                    group: done.group.as_ref().map(GroupView::json),
                },
                Err(e) => Answer::error(e.status(), e.message()),
            }),
            _ => None,
        });
    opened.store.close();
    answer.ok_or_else(|| "the database did not answer".into())
}

/// `group list` (every group, one line each) and `group show NAME`.
fn list(config: &Config, name: Option<&str>) -> Result<String, String> {
    let path = store::path_in(&config.data_dir);
    if !path.exists() {
        return match name {
            None => Ok(String::new()),
            Some(n) => Err(format!("no group #{n}")),
        };
    }
    let groups = open_reader(&path)
        .and_then(|c| read_groups(&c))
        .map_err(|e| format!("database {}: {e}", path.display()))?;
    let all = groups.list(None);
    match name {
        None => Ok(all
            .iter()
            .map(|g| {
                format!(
                    "#{}  {}  ({} members)\n",
                    g.name,
                    g.title.escape_debug(),
                    g.members.len()
                )
            })
            .collect()),
        Some(n) => all
            .iter()
            .find(|g| g.name.as_str() == n)
            .map(GroupView::lines)
            .ok_or_else(|| format!("no group #{n}")),
    }
}

/// A group the server answered with, as `group show` prints it.
fn describe(g: &serde_json::Value) -> String {
    GroupView::from_json(g).map_or_else(|| format!("{g}\n"), |g| g.lines())
}
