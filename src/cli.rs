//! Command-line parsing into a typed [`Command`].

use std::ffi::OsString;
use std::path::PathBuf;

use crate::wire::ids::UserId;

use crate::chat;
use crate::wire::ids::ClientName;

/// `edgeim --help`.
pub const USAGE: &str = "\
edgeim: a small instant-messaging server

USAGE:
    edgeim [serve] [--config FILE]     run the server
    edgeim demo [--dir DIR] [--http-port N] [--ws-port N] [--listen ADDR]
                                       run a demo server with users alice and bob
                                       (ports 8080 and 8081 on 127.0.0.1 unless
                                       told; --listen 0.0.0.0 tries it on the LAN)
    edgeim user add NAME [--config FILE]
    edgeim user passwd NAME [--config FILE]
    edgeim user remove NAME [--config FILE]
    edgeim user list [--config FILE]
    edgeim group add NAME [--title T] [--members a,b] [--owners a] [--config FILE]
    edgeim group members NAME [--add a,b] [--remove c] [--owners d] [--config FILE]
    edgeim group list|show NAME|remove NAME [--config FILE]
                                       manage groups (#NAME), also while the
                                       server runs: changes apply at once
    edgeim backup FILE [--config FILE] a consistent copy of the database,
                                       also while the server runs
    edgeim chat USER [--server URL] [--ws URL] [--client NAME]
                                       chat from a terminal as USER

Passwords are read from standard input (one line) when it is not a
terminal, and asked for without echo when it is.

In chat, `bob: hello` sends to bob, `bob,carol: hi` to both, `#ops: hi`
to the group ops, and a line without a name goes to the previous
recipients; /who lists the users, /help a hint, /quit (or the end of
input) leaves. Received texts start with the time and the sender
(`12:00 <bob> hi`; those missed while away with the date too); what
became of yours with a mark: `✓` accepted, `✓✓ bob received`, `✗` refused.

OPTIONS:
    -c, --config FILE   the TOML config (see docs/CONFIG.md); without it,
                        the built-in defaults are used
    --server URL        chat: the HTTP address (default http://127.0.0.1:8080)
    --ws URL            chat: the WebSocket address
                        (default ws://127.0.0.1:8081/websocket)
    --client NAME       chat: this client's name (default terminal)
    -h, --help          this text
    -V, --version       the version
";

/// `edgeim user ...`.
#[derive(Debug, PartialEq, Eq)]
pub enum UserAction {
    /// `user add NAME`.
    Add(UserId),
    /// `user passwd NAME`.
    Passwd(UserId),
    /// `user remove NAME`.
    Remove(UserId),
    /// `user list`.
    List,
}

/// `edgeim group ...`. Names are checked by the server (or the store),
/// which says what is wrong with them.
#[derive(Debug, PartialEq, Eq)]
pub enum GroupAction {
    /// `group add NAME [--title T] [--members a,b] [--owners a]`.
    Add {
        /// The group's name, without `#`.
        name: String,
        /// Its title (the name without it).
        title: Option<String>,
        /// Its members.
        members: Vec<String>,
        /// Its owners (members too); none: only an administrator manages it.
        owners: Vec<String>,
    },
    /// `group list`.
    List,
    /// `group show NAME`.
    Show(String),
    /// `group members NAME [--add a,b] [--remove c] [--owners d]`.
    Members {
        /// The group's name.
        name: String,
        /// Users to add.
        add: Vec<String>,
        /// Users to remove.
        remove: Vec<String>,
        /// Users to make owners (and members).
        owners: Vec<String>,
    },
    /// `group remove NAME`.
    Remove(String),
}

/// `edgeim demo [--dir DIR] [--http-port N] [--ws-port N] [--listen ADDR]`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DemoOptions {
    /// `--dir DIR`; a new temporary directory without it.
    pub dir: Option<PathBuf>,
    /// `--http-port N` (8080).
    pub http_port: Option<u16>,
    /// `--ws-port N` (8081).
    pub ws_port: Option<u16>,
    /// `--listen ADDR` (127.0.0.1; 0.0.0.0 to try it on the LAN).
    pub listen: Option<std::net::IpAddr>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `edgeim [serve]`: run the server.
    Serve {
        /// `--config FILE`; the built-in defaults without it.
        config: Option<PathBuf>,
    },
    /// `edgeim demo`: a server with the two demo accounts.
    Demo(DemoOptions),
    /// `edgeim user ...`.
    User {
        /// Which.
        action: UserAction,
        /// `--config FILE`: where the users file is.
        config: Option<PathBuf>,
    },
    /// `edgeim group ...`.
    Group {
        /// Which.
        action: GroupAction,
        /// `--config FILE`: where the database is.
        config: Option<PathBuf>,
    },
    /// `edgeim chat USER`.
    Chat(chat::Options),
    /// `edgeim backup FILE`.
    Backup {
        /// The new file.
        to: PathBuf,
        /// `--config FILE`: where the database is.
        config: Option<PathBuf>,
    },
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// `edgeim group` without the right words.
const GROUP_USAGE: &str = "usage: edgeim group add NAME [--title T] [--members a,b] [--owners a] | list | show NAME \
     | members NAME [--add a,b] [--remove c] [--owners d] | remove NAME";

/// Checks a user name at the edge, before any password is read.
fn user_id(name: &str) -> Result<UserId, String> {
    UserId::parse(name).ok_or_else(|| {
        format!("invalid user id {name:?}: use 1 to 64 of A-Z a-z 0-9 . _ @ -, not SYSTEM")
    })
}

/// Parses the arguments after the program name; the error is one line.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut words: Vec<String> = Vec::new();
    let mut config = None;
    let mut demo = DemoOptions::default();
    let mut demo_only = false;
    let (mut server, mut ws, mut client) = (None, None, None);
    // `edgeim group`'s options: (--title, --members, --add, --remove, --owners).
    let mut title = None;
    let mut lists: [Vec<String>; 4] = Default::default();
    let mut group_only = false;
    let list = |v: Result<OsString, lexopt::Error>| -> Result<Vec<String>, String> {
        Ok(string(v)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('c') | Long("config") => {
                config = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?))
            }
            Long("dir") => {
                demo.dir = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?));
                demo_only = true;
            }
            Long("http-port") => {
                demo.http_port = Some(number(p.value(), "--http-port")?);
                demo_only = true;
            }
            Long("ws-port") => {
                demo.ws_port = Some(number(p.value(), "--ws-port")?);
                demo_only = true;
            }
            Long("listen") => {
                let v = string(p.value())?;
                demo.listen = Some(v.parse().map_err(|_| {
                    format!("--listen {v:?}: an IP address, such as 0.0.0.0 or 127.0.0.1")
                })?);
                demo_only = true;
            }
            Long("title") => {
                title = Some(string(p.value())?);
                group_only = true;
            }
            Long(l @ ("members" | "add" | "remove" | "owners")) => {
                let i = ["members", "add", "remove", "owners"]
                    .iter()
                    .position(|x| *x == l)
                    .unwrap_or(0);
                let values = list(p.value())?;
                if let Some(slot) = lists.get_mut(i) {
                    slot.extend(values);
                }
                group_only = true;
            }
            Long("server") => server = Some(string(p.value())?),
            Long("ws") => ws = Some(string(p.value())?),
            Long("client") => client = Some(string(p.value())?),
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(v) => words.push(
                v.into_string()
                    .map_err(|v| format!("argument {v:?} is not UTF-8"))?,
            ),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let demoing = words.first().map(String::as_str) == Some("demo");
    if demo_only && !demoing {
        return Err("--dir, --http-port, --ws-port and --listen are for `edgeim demo` only".into());
    }
    if demoing && config.is_some() {
        return Err("`edgeim demo` takes no --config: it makes its own \
             (use --dir, --http-port, --ws-port, --listen)"
            .into());
    }
    let grouping = words.first().map(String::as_str) == Some("group");
    if group_only && !grouping {
        return Err(
            "--title, --members, --add, --remove and --owners are for `edgeim group` only".into(),
        );
    }
    let chatting = words.first().map(String::as_str) == Some("chat");
    if !chatting && (server.is_some() || ws.is_some() || client.is_some()) {
        return Err("--server, --ws and --client are for `edgeim chat` only".into());
    }
    if chatting && config.is_some() {
        return Err("`edgeim chat` takes no --config".into());
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let cmd = match words.as_slice() {
        [] | ["serve"] => Command::Serve { config },
        ["demo"] => Command::Demo(demo),
        ["backup", to] => Command::Backup {
            to: PathBuf::from(to),
            config,
        },
        ["backup", ..] => return Err("usage: edgeim backup FILE [--config FILE]".into()),
        ["user", "add", name] => Command::User {
            action: UserAction::Add(user_id(name)?),
            config,
        },
        ["user", "passwd", name] => Command::User {
            action: UserAction::Passwd(user_id(name)?),
            config,
        },
        ["user", "remove", name] => Command::User {
            action: UserAction::Remove(user_id(name)?),
            config,
        },
        ["user", "list"] => Command::User {
            action: UserAction::List,
            config,
        },
        ["user", ..] => {
            return Err("usage: edgeim user add|passwd|remove NAME, or edgeim user list".into());
        }
        ["group", "list"] => Command::Group {
            action: GroupAction::List,
            config,
        },
        ["group", "show", name] => Command::Group {
            action: GroupAction::Show(name.to_string()),
            config,
        },
        ["group", "add", name] => {
            let [members, _, _, owners] = lists;
            Command::Group {
                action: GroupAction::Add {
                    name: name.to_string(),
                    title,
                    members,
                    owners,
                },
                config,
            }
        }
        ["group", "members", name] => {
            let [_, add, remove, owners] = lists;
            Command::Group {
                action: GroupAction::Members {
                    name: name.to_string(),
                    add,
                    remove,
                    owners,
                },
                config,
            }
        }
        ["group", "remove", name] => Command::Group {
            action: GroupAction::Remove(name.to_string()),
            config,
        },
        ["group", ..] => return Err(GROUP_USAGE.into()),
        ["chat", user] => {
            let client = client.unwrap_or_else(|| chat::DEFAULT_CLIENT.into());
            if ClientName::parse(&client).is_none() {
                return Err("--client must be 1 to 64 of A-Z a-z 0-9 . _ -".into());
            }
            Command::Chat(chat::Options {
                user: user.to_string(),
                server: server.unwrap_or_else(|| chat::DEFAULT_SERVER.into()),
                ws: ws.unwrap_or_else(|| chat::DEFAULT_WS.into()),
                client,
            })
        }
        ["chat", ..] => {
            return Err("usage: edgeim chat USER [--server URL] [--ws URL] [--client NAME]".into());
        }
        [other, ..] => return Err(format!("unknown command {other:?}")),
    };
    Ok(cmd)
}

/// A port number option's value.
fn number(v: Result<OsString, lexopt::Error>, what: &str) -> Result<u16, String> {
    let v = string(v)?;
    v.parse()
        .map_err(|_| format!("{what} {v:?}: a port number, 0 to 65535"))
}

fn string(v: Result<OsString, lexopt::Error>) -> Result<String, String> {
    v.map_err(|e| e.to_string())?
        .into_string()
        .map_err(|v| format!("argument {v:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn group_commands_parse_with_their_options_only() {
        assert_eq!(
            p(&[
                "group",
                "add",
                "ops",
                "--title",
                "Ops",
                "--members",
                "bob, carol",
                "--members",
                "dave"
            ]),
            Ok(Command::Group {
                action: GroupAction::Add {
                    name: "ops".into(),
                    title: Some("Ops".into()),
                    members: vec!["bob".into(), "carol".into(), "dave".into()],
                    owners: vec![],
                },
                config: None,
            })
        );
        assert_eq!(
            p(&["group", "members", "ops", "--remove", "bob", "-c", "x.toml"]),
            Ok(Command::Group {
                action: GroupAction::Members {
                    name: "ops".into(),
                    add: vec![],
                    remove: vec!["bob".into()],
                    owners: vec![],
                },
                config: Some("x.toml".into()),
            })
        );
        assert!(
            p(&["group"])
                .unwrap_err()
                .starts_with("usage: edgeim group")
        );
        assert!(p(&["user", "list", "--add", "x"]).is_err());
    }

    #[test]
    fn commands_parse() {
        assert_eq!(p(&[]), Ok(Command::Serve { config: None }));
        assert_eq!(
            p(&["--config", "a.toml"]),
            Ok(Command::Serve {
                config: Some("a.toml".into())
            })
        );
        assert_eq!(
            p(&["serve", "-c", "a.toml"]),
            Ok(Command::Serve {
                config: Some("a.toml".into())
            })
        );
        assert_eq!(
            p(&["user", "add", "bob", "--config", "x"]),
            Ok(Command::User {
                action: UserAction::Add(UserId::parse("bob").unwrap()),
                config: Some("x".into())
            })
        );
        assert_eq!(
            p(&["user", "list"]),
            Ok(Command::User {
                action: UserAction::List,
                config: None
            })
        );
        assert_eq!(p(&["demo"]), Ok(Command::Demo(DemoOptions::default())));
        assert_eq!(
            p(&[
                "demo",
                "--http-port",
                "9080",
                "--ws-port",
                "9081",
                "--listen",
                "0.0.0.0"
            ]),
            Ok(Command::Demo(DemoOptions {
                dir: None,
                http_port: Some(9080),
                ws_port: Some(9081),
                listen: Some("0.0.0.0".parse().unwrap()),
            }))
        );
        assert!(
            p(&["demo", "--config", "x"])
                .unwrap_err()
                .contains("no --config")
        );
        assert!(
            p(&["serve", "--http-port", "1"])
                .unwrap_err()
                .contains("demo")
        );
        assert!(p(&["demo", "--http-port", "70000"]).is_err());
        assert!(
            p(&["demo", "--listen", "here"])
                .unwrap_err()
                .contains("IP address")
        );
        assert_eq!(
            p(&["backup", "b.db", "-c", "x"]),
            Ok(Command::Backup {
                to: "b.db".into(),
                config: Some("x".into())
            })
        );
        assert!(p(&["backup"]).is_err());
        assert!(p(&["user"]).is_err());
        assert!(
            p(&["user", "add", "SYSTEM"]).is_err(),
            "names are checked before a password is asked for"
        );
        assert!(p(&["frobnicate"]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["serve", "--dir", "x"]).is_err());
    }

    #[test]
    fn chat_parses_with_defaults_and_options() {
        let opts = |user: &str, server: &str, ws: &str, client: &str| {
            Ok(Command::Chat(chat::Options {
                user: user.into(),
                server: server.into(),
                ws: ws.into(),
                client: client.into(),
            }))
        };
        assert_eq!(
            p(&["chat", "alice"]),
            opts(
                "alice",
                "http://127.0.0.1:8080",
                "ws://127.0.0.1:8081/websocket",
                "terminal"
            )
        );
        assert_eq!(
            p(&[
                "chat",
                "bob",
                "--server",
                "http://h:1",
                "--ws",
                "ws://h:2/im",
                "--client",
                "t2"
            ]),
            opts("bob", "http://h:1", "ws://h:2/im", "t2")
        );
        assert!(p(&["chat"]).is_err());
        assert!(p(&["chat", "alice", "bob"]).is_err());
        assert!(p(&["chat", "alice", "--client", "a b"]).is_err());
        assert!(p(&["chat", "alice", "--config", "x"]).is_err());
        assert!(p(&["serve", "--server", "http://h:1"]).is_err());
    }
}
