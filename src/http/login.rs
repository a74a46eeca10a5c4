//! `POST /api/login`, `/app/login` and their logouts, and who a cookie or
//! token logs in.

use serde_json::{Value, json};

use super::HttpEnv;
use super::request::{HttpRequest, form_decode};
use super::response::{Reply, busy};
use crate::auth::COOKIE;
use crate::auth::throttle::RetryAfter;
use crate::clock::mono_ms;
use crate::metrics::metrics;
use crate::wire::ids::UserId;
use std::sync::atomic::Ordering::Relaxed;

/// `POST /api/login` (a cookie) or `/app/login` (a token).
pub fn login(env: &HttpEnv, req: &HttpRequest, app: bool, now: u64) -> Reply {
    let Some((username, password)) = credentials(req) else {
        return Reply::error(
            400,
            "body must be {\"username\": \"...\", \"password\": \"...\"}",
        );
    };
    // Throttled before the password is checked: a refused guess costs no
    // argon2 time. The name is keyed as sent (at most 64 characters).
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
    let Some((user, tag)) = env.users.verify(&username, &password) else {
        log::info!("login failed for {:?}", printable(&username));
        metrics().logins_failed.fetch_add(1, Relaxed);
        return Reply::error(401, "wrong username or password");
    };
    metrics().logins_ok.fetch_add(1, Relaxed);
    if let Some(addr) = client {
        env.throttle.succeeded(addr, &name);
    }
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

/// Who is calling an endpoint that is "logged in": the browser cookie or
/// the app token.
pub fn caller(env: &HttpEnv, req: &HttpRequest, now: u64) -> Option<UserId> {
    let secrets = req
        .cookie
        .as_deref()
        .into_iter()
        .chain(req.token.as_deref());
    secrets.into_iter().find_map(|s| logged_in(env, s, now))
}

/// The user a cookie or token logs in, if it is valid and the user still exists.
pub fn logged_in(env: &HttpEnv, secret: &str, now: u64) -> Option<UserId> {
    let (user, tag) = env.logins.check(secret, now)?;
    env.users.refresh();
    match env.users.tag(&user) {
        Some(current) if current == tag => Some(user),
        // The password changed since this login: it ends here.
        Some(_) => {
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
        };
        assert_eq!(
            credentials(&req),
            Some(("alice".into(), "p&ss word".into()))
        )
    }
}
