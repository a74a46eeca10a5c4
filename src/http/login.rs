//! `POST /api/login`, `/app/login` and their logouts, and who a cookie or
//! token logs in.

use serde_json::{Value, json};

use super::HttpEnv;
use super::request::{HttpRequest, form_decode};
use super::response::{Reply, busy};
use crate::auth::directory::DELEGATED;
use crate::auth::throttle::RetryAfter;
use crate::auth::upstream::Verdict;
use crate::auth::users::PasswordTag;
use crate::auth::{COOKIE, hash_secret};
use crate::clock::mono_ms;
use crate::config::AuthMode;
use crate::events::StoreOp;
use crate::metrics::metrics;
use crate::wire::ids::UserId;
use std::sync::atomic::Ordering::Relaxed;

/// `POST /api/login` (a cookie) or `/app/login` (a token).
pub fn login(env: &HttpEnv, req: &HttpRequest, app: bool, now: u64) -> Reply {
    // Behind a single-sign-on proxy the proxy has checked the user.
    if let Some(user) = header_user(env, req) {
        return issue(env, user, DELEGATED, app, now);
    }
    let Some((username, password)) = credentials(req) else {
        return Reply::error(
            400,
            "body must be {\"username\": \"...\", \"password\": \"...\"}",
        );
    };
    // Throttled before the password is checked: a refused guess costs no
    // argon2 time and never reaches the host system. The name is keyed as
    // sent (at most 64 characters).
    let name: String = username.chars().take(64).collect();
    let client = req
        .peer
        .map(|p| env.throttle.client(p, req.forwarded_for.as_deref()));
    // Counted as a failure at once (so concurrent guesses cannot all pass
    // the check); a success takes it back. Backoffs run on the monotonic
    // clock: NTP stepping a Pi's clock back at boot must not lock people out.
    if let Some(addr) = client
        && let Err(RetryAfter(s)) = env.throttle.begin(addr, &name, mono_ms())
    {
        log::info!("login for {:?} from {addr} throttled", printable(&name));
        metrics().logins_throttled.fetch_add(1, Relaxed);
        return Reply::error(429, format!("too many failed logins; retry in {s} s"))
            .header("Retry-After", s.to_string());
    }
    let (user, tag) = match check_password(env, &username, &password) {
        Ok(found) => found,
        Err(Failure::Wrong) => {
            log::info!("login failed for {:?}", printable(&username));
            metrics().logins_failed.fetch_add(1, Relaxed);
            return Reply::error(401, "wrong username or password");
        }
        Err(Failure::Unavailable(why)) => {
            // Not the user's fault: the failure is taken back.
            if let Some(addr) = client {
                env.throttle.succeeded(addr, &name);
            }
            log::warn!("login for {:?}: {why}", printable(&username));
            return host_unavailable();
        }
    };
    if let Some(addr) = client {
        env.throttle.succeeded(addr, &name);
    }
    issue(env, user, tag, app, now)
}

/// A cookie (browser) or a token (app) for a user whose login was checked.
fn issue(env: &HttpEnv, user: UserId, tag: PasswordTag, app: bool, now: u64) -> Reply {
    metrics().logins_ok.fetch_add(1, Relaxed);
    let Some((secret, expires_ms)) = env.logins.create(user.clone(), tag, now) else {
        return busy("storage failure: could not save the login");
    };
    log::info!(
        "{} logged in ({})",
        user,
        if app { "app" } else { "browser" }
    );
    if app {
        return Reply::ok(
            json!({"userId": user.as_str(), "token": secret, "expiresAt": expires_ms}),
        );
    }
    let max_age = env.logins.ttl_ms() / 1000;
    let cookie = format!("{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    Reply::ok(json!({"userId": user.as_str()})).header("Set-Cookie", cookie)
}

/// Why a password login failed.
enum Failure {
    /// Wrong credentials (401).
    Wrong,
    /// The host system did not answer usefully (503); why, for the log.
    Unavailable(String),
}

/// Checks a password as `auth.mode` says: the users file, the host system,
/// or the users file first and then the host system.
fn check_password(
    env: &HttpEnv,
    username: &str,
    password: &str,
) -> Result<(UserId, PasswordTag), Failure> {
    if env.auth.mode.asks_users_file()
        && let Some(found) = env.users.verify(username, password)
    {
        return Ok(found);
    }
    let Some(upstream) = env
        .auth
        .upstream
        .as_ref()
        .filter(|_| env.auth.mode.asks_upstream())
    else {
        return Err(Failure::Wrong);
    };
    match upstream.login(username, password) {
        Verdict::User(user) => {
            remember(env, &user);
            Ok((user, DELEGATED))
        }
        Verdict::Refused => Err(Failure::Wrong),
        Verdict::Unavailable(why) => Err(Failure::Unavailable(why)),
    }
}

/// 503 for a host system that did not answer usefully.
fn host_unavailable() -> Reply {
    busy("the login service is not answering; retry shortly")
}

/// A user the host system or the proxy vouched for exists from now on; the
/// first time, the database remembers it (for `/api/users` and restarts).
fn remember(env: &HttpEnv, user: &UserId) {
    if env.users.remember(user) {
        log::info!("{user} logged in through delegation for the first time");
        let _ = env
            .store
            .try_send(StoreOp::RememberUser { user: user.clone() });
    }
}

/// The user a trusted single-sign-on proxy names in `auth.header.user`
/// (mode `header` only; the header is ignored from any other peer).
pub(super) fn header_user(env: &HttpEnv, req: &HttpRequest) -> Option<UserId> {
    if env.auth.mode != AuthMode::Header {
        return None;
    }
    let peer = req.peer?;
    if !env.throttle.is_trusted(peer) {
        return None;
    }
    let user = UserId::parse(req.remote_user.as_deref()?)?;
    remember(env, &user);
    Some(user)
}

fn printable(s: &str) -> String {
    s.chars().take(64).filter(|c| !c.is_control()).collect()
}

/// `{"username","password"}` from a JSON or form body. A body that starts
/// with `{` is JSON whatever its Content-Type (`curl -d` says "form").
fn credentials(req: &HttpRequest) -> Option<(String, String)> {
    let looks_json = req.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if req.form && !looks_json {
        let text = std::str::from_utf8(&req.body).ok()?;
        let mut user = None;
        let mut pass = None;
        for pair in text.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match form_decode(k)?.as_str() {
                "username" => user = Some(form_decode(v)?),
                "password" => pass = Some(form_decode(v)?),
                _ => {}
            }
        }
        return Some((user?, pass?));
    }
    let v: Value = serde_json::from_slice(&req.body).ok()?;
    Some((
        v.get("username")?.as_str()?.to_string(),
        v.get("password")?.as_str()?.to_string(),
    ))
}

/// `POST /api/logout`: ends the cookie's login and clears the cookie.
pub fn api_logout(env: &HttpEnv, req: &HttpRequest) -> Reply {
    let cleared = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    match req.cookie.as_deref().filter(|c| env.logins.revoke(c)) {
        Some(_) => Reply::ok(json!({})).header("Set-Cookie", cleared),
        None => Reply::error(401, "not logged in").header("Set-Cookie", cleared),
    }
}

/// `POST /app/logout`: ends the token's login.
pub fn app_logout(env: &HttpEnv, req: &HttpRequest) -> Reply {
    match req.token.as_deref().filter(|t| env.logins.revoke(t)) {
        Some(_) => Reply::ok(json!({})),
        None => Reply::error(401, "no valid token"),
    }
}

/// Which credentials an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creds {
    /// The browser cookie (`/api/websocket/client/login/...`).
    Cookie,
    /// The app token (`/app/websocket/client/login/...`).
    Token,
    /// Either ("logged in" endpoints).
    Either,
}

/// Who is calling an endpoint that takes `creds`: a trusted proxy's header
/// (mode `header`), an edgeim cookie or token, or a host system's token
/// (token pass-through, PROTOCOL.md section 13). The error is the answer:
/// 401, 429 for a client that keeps trying bad tokens, or 503 when the host
/// system does not answer.
pub fn who(env: &HttpEnv, req: &HttpRequest, creds: Creds, now: u64) -> Result<UserId, Reply> {
    if let Some(user) = header_user(env, req) {
        return Ok(user);
    }
    let cookie = req.cookie.as_deref().filter(|_| creds != Creds::Token);
    let token = req.token.as_deref().filter(|_| creds != Creds::Cookie);
    if let Some(user) = cookie
        .into_iter()
        .chain(token)
        .find_map(|s| logged_in(env, s, now))
    {
        return Ok(user);
    }
    if let Some(token) = token
        && let Some(found) = pass_through(env, req, token)
    {
        return found;
    }
    Err(Reply::error(
        401,
        if creds == Creds::Token {
            "no valid token"
        } else {
            "not logged in"
        },
    ))
}

/// The name the throttle counts bad pass-through tokens under, per client
/// address: no user id has a space. One name for all of a client's
/// tokens: five bad ones and its address waits (a name per token would
/// allow twenty, the per-address allowance); a good token clears the name's
/// record, but never the address's count of the bad ones.
const TOKEN_NAME: &str = "(host token)";

/// A token that is not edgeim's, checked by the host system when
/// `auth.http.token_url` is set; `None` when it is not.
fn pass_through(env: &HttpEnv, req: &HttpRequest, token: &str) -> Option<Result<UserId, Reply>> {
    // The integration API key logs nobody in, and never leaves edgeim.
    if env.api_key.is_some() && Some(hash_secret(token)) == env.api_key {
        return None;
    }
    let upstream = env
        .auth
        .upstream
        .as_ref()
        .filter(|u| env.auth.mode.asks_upstream() && u.has_token_url())?;
    let client = req
        .peer
        .map(|p| env.throttle.client(p, req.forwarded_for.as_deref()));
    if let Some(addr) = client
        && let Err(RetryAfter(s)) = env.throttle.begin(addr, TOKEN_NAME, mono_ms())
    {
        metrics().logins_throttled.fetch_add(1, Relaxed);
        return Some(Err(Reply::error(
            429,
            format!("too many bad tokens; retry in {s} s"),
        )
        .header("Retry-After", s.to_string())));
    }
    let taken_back = || {
        if let Some(addr) = client {
            env.throttle.succeeded(addr, TOKEN_NAME);
        }
    };
    Some(
        match upstream.token(token, req.token_is_bearer, mono_ms()) {
            Verdict::User(user) => {
                taken_back();
                remember(env, &user);
                Ok(user)
            }
            Verdict::Refused => Err(Reply::error(401, "no valid token")),
            Verdict::Unavailable(why) => {
                taken_back();
                log::warn!("a host system token: {why}");
                Err(host_unavailable())
            }
        },
    )
}

/// Who is calling an endpoint that is "logged in"; `None` is a 401 (see
/// [`who`] for the answers that are not).
pub fn caller(env: &HttpEnv, req: &HttpRequest, now: u64) -> Result<UserId, Reply> {
    who(env, req, Creds::Either, now)
}

/// The user a cookie or token logs in, if it is valid and the user still exists.
pub fn logged_in(env: &HttpEnv, secret: &str, now: u64) -> Option<UserId> {
    let (user, tag) = env.logins.check(secret, now)?;
    env.users.refresh();
    match env.users.login_stands(&user, tag) {
        Some(true) => Some(user),
        // The password changed since this login: it ends here.
        Some(false) => {
            log::info!("a login of {user} ended: the password changed");
            env.logins.revoke(secret);
            None
        }
        None => {
            env.logins.revoke_user(&user);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::Method;
    use super::*;

    #[test]
    fn form_login_bodies_decode() {
        let req = HttpRequest {
            method: Method::Post,
            path: "/api/login".into(),
            query: String::new(),
            cookie: None,
            token: None,
            host: None,
            if_none_match: None,
            bearer: None,
            form: true,
            body: b"username=alice&password=p%26ss+word".to_vec(),
            peer: None,
            origin: None,
            sec_fetch_site: None,
            forwarded_for: None,
            remote_user: None,
            token_is_bearer: false,
        };
        assert_eq!(
            credentials(&req),
            Some(("alice".into(), "p&ss word".into()))
        )
    }
}
