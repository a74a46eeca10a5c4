//! `/api/groups`: create, list, show, change members, rename and delete
//! groups (PROTOCOL.md section 10), for a logged-in user or for a host
//! system holding the API key. Reads go to the database directly; changes
//! go through the router to the store, which decides them
//! (`store/groups.rs`) and writes them with their announcement.

use serde_json::{Map, Value, json};

use super::request::{HttpRequest, Method};
use super::response::{Reply, ReplyBody, busy};
use super::{HttpEnv, ask_router};
use crate::auth::hash_secret;
use crate::events::Event;
use crate::store::groups::{Actor, GroupChange, GroupView, users_named};
use crate::store::{open_reader, read_groups};
use crate::wire::ids::{GroupName, UserId};

/// Which group request this is, from the path under `/api/groups`.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// `/api/groups`
    All,
    /// `/api/groups/{name}`
    One(&'a str),
    /// `/api/groups/{name}/members`
    Members(&'a str),
}

fn target(rest: &str) -> Option<Target<'_>> {
    match rest {
        "" | "/" => Some(Target::All),
        _ => {
            let rest = rest.strip_prefix('/')?;
            match rest.split_once('/') {
                None => Some(Target::One(rest)),
                Some((name, "members")) => Some(Target::Members(name)),
                Some(_) => None,
            }
        }
    }
}

/// Who asks: whoever holds the API key (checked first: the key is never
/// passed on to a host system as if it were a token), or a logged-in user.
fn actor(env: &HttpEnv, req: &HttpRequest, now: u64) -> Result<Actor, Reply> {
    if env.api_key.is_some() && req.bearer.as_deref().map(hash_secret) == env.api_key {
        return Ok(Actor::Admin);
    }
    super::login::caller(env, req, now)
        .map(Actor::User)
        .map_err(|r| {
            if r.status == 401 {
                Reply::error(401, "not logged in (or wrong api key)")
            } else {
                r
            }
        })
}

/// Answers a request whose path starts with `/api/groups`.
pub fn handle(env: &HttpEnv, req: &HttpRequest, rest: &str, now: u64) -> Reply {
    let Some(target) = target(rest) else {
        return Reply::error(404, "no such endpoint");
    };
    let allow = match target {
        Target::All => "GET, POST",
        Target::One(_) => "GET, PATCH, DELETE",
        Target::Members(_) => "POST",
    };
    let allowed = matches!(
        (&target, req.method),
        (Target::All, Method::Get | Method::Post)
            | (Target::One(_), Method::Get | Method::Patch | Method::Delete)
            | (Target::Members(_), Method::Post)
    );
    if !allowed {
        return Reply::error(405, "method not allowed").header("Allow", allow.into());
    }
    let actor = match actor(env, req, now) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    let name = match target {
        Target::All => None,
        Target::One(n) | Target::Members(n) => match GroupName::parse(n) {
            Some(n) => Some(n),
            // A name that cannot exist names no group.
            None => return Reply::error(404, "no such group"),
        },
    };
    let body = || -> Result<Map<String, Value>, Reply> {
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(Value::Object(o)) => Ok(o),
            _ => Err(Reply::error(400, "body must be a JSON object")),
        }
    };
    let change = match (target, req.method, name) {
        (Target::All, Method::Get, _) => return list(env, &actor, None),
        (Target::One(_), Method::Get, Some(n)) => return list(env, &actor, Some(&n)),
        (Target::All, _, _) => body().and_then(|b| create(env, &actor, &b)),
        (Target::Members(_), _, Some(name)) => body().and_then(|b| members(env, name, &b)),
        (Target::One(_), Method::Patch, Some(name)) => {
            body().and_then(|b| match b.get("title").and_then(Value::as_str) {
                Some(t) => Ok(GroupChange::Title {
                    name,
                    title: t.to_string(),
                }),
                None => Err(Reply::error(400, "body must be {\"title\": \"...\"}")),
            })
        }
        (_, _, Some(name)) => Ok(GroupChange::Delete { name }),
        (_, _, None) => Err(Reply::error(404, "no such group")),
    };
    let change = match change {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let created = matches!(change, GroupChange::Create { .. });
    match ask_router(env, |reply| Event::Group {
        actor,
        change,
        reply,
    }) {
        Ok(Ok(Some(g))) => {
            let mut reply = Reply::ok(g.json());
            if created {
                reply.status = 201;
            }
            reply
        }
        Ok(Ok(None)) => Reply {
            status: 204,
            body: ReplyBody::Empty,
            headers: Vec::new(),
        },
        Ok(Err(e)) => {
            let reply = Reply::error(e.status(), e.message());
            if e.status() == 503 {
                reply.header("Retry-After", "1".into())
            } else {
                reply
            }
        }
        Err(reply) => reply,
    }
}

/// `GET /api/groups` (the caller's, or all with the key) and
/// `GET /api/groups/{name}` (404 unless the caller is a member).
fn list(env: &HttpEnv, actor: &Actor, name: Option<&GroupName>) -> Reply {
    let groups = match open_reader(&env.db_path).and_then(|c| read_groups(&c)) {
        Ok(g) => g,
        Err(e) => {
            log::error!("groups: {e}");
            return busy("storage failure");
        }
    };
    let user = match actor {
        Actor::User(u) => Some(u),
        Actor::Admin => None,
    };
    match name {
        None => {
            let all: Vec<Value> = groups.list(user).iter().map(GroupView::json).collect();
            Reply::ok(json!({ "groups": all }))
        }
        Some(n) => match groups.get(n) {
            Some(g) if user.is_none_or(|u| g.is_member(u)) => Reply::ok(g.view().json()),
            _ => Reply::error(404, "no such group"),
        },
    }
}

/// A list of user ids at `key` (absent: empty). `known` users only, unless
/// they are being removed (a user deleted from the users file must still be
/// removable); the 400 names the rest.
fn users_at(
    env: &HttpEnv,
    body: &Map<String, Value>,
    key: &str,
    known: bool,
) -> Result<Vec<UserId>, Reply> {
    let Some(v) = body.get(key) else {
        return Ok(Vec::new());
    };
    let list: Option<Vec<&str>> = v
        .as_array()
        .and_then(|l| l.iter().map(Value::as_str).collect());
    let Some(list) = list else {
        return Err(Reply::error(
            400,
            format!("{key} must be a list of user ids"),
        ));
    };
    let exists = |u: &str| env.users.exists(u);
    let exists: Option<&dyn Fn(&str) -> bool> = if known { Some(&exists) } else { None };
    users_named(list.into_iter(), exists).map_err(|e| Reply::error(400, e))
}

fn create(env: &HttpEnv, actor: &Actor, body: &Map<String, Value>) -> Result<GroupChange, Reply> {
    env.users.refresh();
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .and_then(GroupName::parse)
        .ok_or_else(|| Reply::error(400, "name must be 1-63 of a-z 0-9 . _ -"))?;
    let title = match body.get("title") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(Reply::error(400, "title must be a string")),
    };
    let members = users_at(env, body, "members", true)?;
    // Only the key names owners at creation: a user is the owner of
    // what it creates, and may make others owners afterwards.
    let owners = match actor {
        Actor::Admin => users_at(env, body, "owners", true)?,
        Actor::User(_) => Vec::new(),
    };
    Ok(GroupChange::Create {
        name,
        title,
        members,
        owners,
    })
}

fn members(
    env: &HttpEnv,
    name: GroupName,
    body: &Map<String, Value>,
) -> Result<GroupChange, Reply> {
    env.users.refresh();
    Ok(GroupChange::Members {
        name,
        add: users_at(env, body, "add", true)?,
        remove: users_at(env, body, "remove", false)?,
        owners: users_at(env, body, "owners", true)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_paths_are_typed() {
        assert_eq!(target(""), Some(Target::All));
        assert_eq!(target("/ops"), Some(Target::One("ops")));
        assert_eq!(target("/ops/members"), Some(Target::Members("ops")));
        assert_eq!(target("/ops/other"), None);
        assert_eq!(target("x"), None);
    }
}
