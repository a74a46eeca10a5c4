//! The control socket: how `edgeim group ...` changes groups in a running
//! server, so that a change takes effect at once and is announced to the
//! members who are online. The socket is `control.sock` in `data_dir`,
//! which is private to the server's user (0700): whoever may read the
//! database may ask, and nobody else can reach it. One request per
//! connection, one JSON line each way ([`Request`], [`Answer`]).
//!
//! Without a running server, `edgeim group` opens the store itself and
//! makes the same change ([`client`]); reading groups never needs the
//! server (the database is read beside it, as history is).

pub mod client;
pub mod listener;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::groups::{GroupChange, users_named};
use crate::wire::ids::GroupName;

/// The socket inside `data_dir`.
pub fn socket_in(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Largest request line: a member list of thousands of ids fits.
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// A change `edgeim group` asks for, as names the server checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `edgeim group add`.
    Create {
        /// The group's name, without `#`.
        name: String,
        /// Its title.
        title: Option<String>,
        /// Its members.
        members: Vec<String>,
        /// Its owners.
        owners: Vec<String>,
    },
    /// `edgeim group members`.
    Members {
        /// The group's name.
        name: String,
        /// Users to add.
        add: Vec<String>,
        /// Users to remove.
        remove: Vec<String>,
        /// Users to make owners.
        owners: Vec<String>,
    },
    /// `edgeim group remove`.
    Delete {
        /// The group's name.
        name: String,
    },
}

/// The server's answer: an HTTP-like status, why, and the group as the API
/// shows it (none after a delete or an error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// 200, or the status `/api/groups` would answer.
    pub status: u16,
    /// Why not, or "done".
    pub msg: String,
    /// The group as `/api/groups` shows it.
    pub group: Option<Value>,
}

impl Answer {
    /// A refusal.
    pub fn error(status: u16, msg: impl Into<String>) -> Answer {
        Answer {
            status,
            msg: msg.into(),
            group: None,
        }
    }
}

/// The change a request names, checked: a well-formed group name, and
/// members the users file knows (`exists`), except those being removed (a
/// user deleted from the file must still be removable). The error is a
/// 400's message.
pub fn change_of(req: &Request, exists: &dyn Fn(&str) -> bool) -> Result<GroupChange, String> {
    let group = |n: &str| {
        GroupName::parse(n)
            .ok_or_else(|| format!("bad group name {n:?}: use 1-63 of a-z 0-9 . _ -"))
    };
    let known = |l: &[String]| users_named(l.iter().map(String::as_str), Some(exists));
    let any = |l: &[String]| users_named(l.iter().map(String::as_str), None);
    Ok(match req {
        Request::Create {
            name,
            title,
            members,
            owners,
        } => GroupChange::Create {
            name: group(name)?,
            title: title.clone(),
            members: known(members)?,
            owners: known(owners)?,
        },
        Request::Members {
            name,
            add,
            remove,
            owners,
        } => GroupChange::Members {
            name: group(name)?,
            add: known(add)?,
            remove: any(remove)?,
            owners: known(owners)?,
        },
        Request::Delete { name } => GroupChange::Delete { name: group(name)? },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_json_line_and_names_are_checked() {
        let req = Request::Members {
            name: "ops".into(),
            add: vec!["bob".into()],
            remove: vec!["gone".into()],
            owners: vec![],
        };
        let line = serde_json::to_string(&req).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), req);
        let exists = |u: &str| u != "gone" && u != "ghost";
        assert!(
            change_of(&req, &exists).is_ok(),
            "removing an unknown user is fine"
        );
        let bad = Request::Create {
            name: "ops".into(),
            title: None,
            members: vec!["ghost".into()],
            owners: vec![],
        };
        assert_eq!(change_of(&bad, &exists).unwrap_err(), "unknown user: ghost");
        let bad = Request::Delete { name: "Ops".into() };
        assert!(
            change_of(&bad, &exists)
                .unwrap_err()
                .contains("bad group name")
        );
    }
}
