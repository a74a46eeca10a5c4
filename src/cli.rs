//! Command-line parsing into a typed [`Command`].

use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
edgeim: a small instant-messaging server

USAGE:
    edgeim [serve] [--config FILE]     run the server
    edgeim demo [--dir DIR]            run a demo server with users alice and bob
    edgeim user add NAME [--config FILE]
    edgeim user passwd NAME [--config FILE]
    edgeim user remove NAME [--config FILE]
    edgeim user list [--config FILE]

Passwords are read from standard input (one line) when it is not a
terminal, and asked for without echo when it is.

OPTIONS:
    -c, --config FILE   the TOML config (see docs/CONFIG.md); without it,
                        the built-in defaults are used
    -h, --help          this text
    -V, --version       the version
";

#[derive(Debug, PartialEq, Eq)]
pub enum UserAction {
    Add(String),
    Passwd(String),
    Remove(String),
    List,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve {
        config: Option<PathBuf>,
    },
    Demo {
        dir: Option<PathBuf>,
    },
    User {
        action: UserAction,
        config: Option<PathBuf>,
    },
    Help,
    Version,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut words: Vec<String> = Vec::new();
    let mut config = None;
    let mut dir = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('c') | Long("config") => {
                config = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?))
            }
            Long("dir") => dir = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?)),
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(v) => words.push(
                v.into_string()
                    .map_err(|v| format!("argument {v:?} is not UTF-8"))?,
            ),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if dir.is_some() && words.first().map(String::as_str) != Some("demo") {
        return Err("--dir is for `edgeim demo` only".into());
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let cmd = match words.as_slice() {
        [] | ["serve"] => Command::Serve { config },
        ["demo"] => Command::Demo { dir },
        ["user", "add", name] => Command::User {
            action: UserAction::Add(name.to_string()),
            config,
        },
        ["user", "passwd", name] => Command::User {
            action: UserAction::Passwd(name.to_string()),
            config,
        },
        ["user", "remove", name] => Command::User {
            action: UserAction::Remove(name.to_string()),
            config,
        },
        ["user", "list"] => Command::User {
            action: UserAction::List,
            config,
        },
        ["user", ..] => {
            return Err("usage: edgeim user add|passwd|remove NAME, or edgeim user list".into());
        }
        [other, ..] => return Err(format!("unknown command {other:?}")),
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
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
                action: UserAction::Add("bob".into()),
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
        assert_eq!(p(&["demo"]), Ok(Command::Demo { dir: None }));
        assert!(p(&["user"]).is_err());
        assert!(p(&["frobnicate"]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["serve", "--dir", "x"]).is_err());
    }
}
