//! Issue 14, delegated login (PROTOCOL.md section 13), against a host
//! system that is real: `common::upstream`, an HTTP server in a thread of
//! this test binary that checks passwords (`POST /login`) and tokens
//! (`GET /me`) and records what edgeim sent it. One test per rule. Nothing
//! sleeps to wait for a condition: the host system says when a request
//! reached it, and the one expiry is polled for with a deadline.

mod common;

use std::time::{Duration, Instant};

use common::served::{Served, write_config};
use common::upstream::{Behaviour, Upstream};
use common::{
    TestServer, WAIT, body_of, expect_text, get, get_raw, password, post_json, post_raw, send_ok,
};
use edgeim::client::HttpResponse;
use edgeim::config::{AuthMode, Config};
use serde_json::json;

/// A user only the host system knows (not in the test users file).
const FRANK: &str = "frank";
const FRANK_PW: &str = "frank-at-the-host-7731";

/// Failures one address may have for one user name before it must wait:
/// `PAIR_FREE_FAILS` in src/auth/throttle.rs. The attempt after them is
/// still let through (it starts the wait), the next is refused.
const FREE_FAILS: usize = 5;

const API_KEY: &str = "0123456789abcdef-delegated";

/// A host system that knows frank.
fn host_system() -> Upstream {
    let up = Upstream::start();
    up.user(FRANK, FRANK_PW);
    up
}

/// A server whose `[auth]` is `mode`, with `up` as its host system for
/// passwords and tokens; `adjust` changes the rest of the config.
fn server(up: &Upstream, mode: AuthMode, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.auth.mode = mode;
        c.auth.http.login_url = Some(up.login_url());
        c.auth.http.token_url = Some(up.token_url());
        adjust(c);
    })
}

/// `POST /app/login` (`/api/login` when `browser`) with JSON credentials
/// and extra `headers`.
fn login_as(
    srv: &TestServer,
    browser: bool,
    user: &str,
    pass: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let path = if browser { "/api/login" } else { "/app/login" };
    let mut all = headers.to_vec();
    all.push(("Content-Type", "application/json"));
    post_raw(
        &format!("{}{path}", srv.http),
        &all,
        &json!({"username": user, "password": pass}).to_string(),
    )
}

/// `POST /app/login`: the answer.
fn app_login(srv: &TestServer, user: &str, pass: &str) -> HttpResponse {
    login_as(srv, false, user, pass, &[])
}

/// `POST /app/login` that must succeed as `user`: its token.
fn app_token(srv: &TestServer, user: &str, pass: &str) -> String {
    app_token_of(srv, user, pass, user)
}

/// `POST /app/login` as `name` that must succeed with the user id `id`:
/// its token.
fn app_token_of(srv: &TestServer, name: &str, pass: &str, id: &str) -> String {
    let resp = app_login(srv, name, pass);
    let body = body_of(&resp);
    assert_eq!(resp.status, 200, "{name}: {body}");
    assert_eq!(body["userId"], id, "{body}");
    body["token"].as_str().expect("token").to_string()
}

/// `GET /app/websocket/client/login/{client}` with `headers`.
fn app_session(srv: &TestServer, headers: &[(&str, &str)], client: &str) -> HttpResponse {
    get_raw(
        &format!("{}/app/websocket/client/login/{client}", srv.http),
        headers,
    )
}

/// A session id asked for with `headers`; panics unless 200 with one.
fn session_id(srv: &TestServer, headers: &[(&str, &str)], client: &str) -> String {
    let resp = app_session(srv, headers, client);
    let body = body_of(&resp);
    assert_eq!(resp.status, 200, "{headers:?}: {body}");
    body["sessionId"].as_str().expect("sessionId").to_string()
}

/// A 503 that carries `Retry-After` in seconds, as JSON.
fn assert_503_retry_after(resp: &HttpResponse, what: &str) {
    let body = body_of(resp);
    assert_eq!(resp.status, 503, "{what}: {body}");
    assert_eq!(body["code"], 503, "{what}: {body}");
    let secs: u64 = resp
        .header("Retry-After")
        .unwrap_or_else(|| panic!("{what}: a 503 without Retry-After"))
        .parse()
        .expect("Retry-After in seconds");
    assert!(secs >= 1, "{what}: Retry-After {secs}");
}

/// The `edgeim_session=...` pair of a login's `Set-Cookie`, ready for a
/// `Cookie` header.
fn cookie_of(resp: &HttpResponse) -> String {
    let set = resp.header("Set-Cookie").expect("Set-Cookie");
    let pair = set.split(';').next().expect("name=value").to_string();
    assert!(pair.starts_with("edgeim_session="), "{set}");
    pair
}

/// The user ids of `GET /api/users`, asked with `headers`.
fn user_ids(srv: &TestServer, headers: &[(&str, &str)]) -> Vec<String> {
    let (status, body) = get(&format!("{}/api/users", srv.http), headers);
    assert_eq!(status, 200, "{body}");
    body["users"]
        .as_array()
        .unwrap_or_else(|| panic!("users: {body}"))
        .iter()
        .map(|u| u["userId"].as_str().expect("userId").to_string())
        .collect()
}

// ---- passwords ----

#[test]
fn a_password_the_host_system_accepts_logs_in_with_a_token_and_a_cookie_that_chat() {
    let up = host_system();
    let srv = server(&up, AuthMode::LocalHttp, |_| {});
    // The app: a token, a session id, a registration, texts both ways
    // with a user of the users file.
    let token = app_token(&srv, FRANK, FRANK_PW);
    let mut frank = srv.client_with(&token, FRANK, "phone");
    let mut alice = srv.client("alice", "web");
    frank.text("f1", "alice", "hello from the host system's user");
    assert_eq!(frank.status("f1").0, 200);
    assert_eq!(expect_text(&mut alice, "f1")["from"], FRANK);
    // The browser: a cookie, a session id for it, a registration.
    let resp = login_as(&srv, true, FRANK, FRANK_PW, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(body_of(&resp)["userId"], FRANK);
    let cookie = cookie_of(&resp);
    let (status, body) = get(
        &format!("{}/api/websocket/client/login/tab", srv.http),
        &[("Cookie", &cookie)],
    );
    assert_eq!(status, 200, "{body}");
    let mut tab = common::registered(
        &srv.ws,
        FRANK,
        "tab",
        body["sessionId"].as_str().expect("sessionId"),
    );
    send_ok(&mut alice, "a1", FRANK, "hello back");
    for c in [&mut frank, &mut tab] {
        let m = expect_text(c, "a1");
        assert_eq!(m["from"], "alice");
    }
    // Each login asked the host system once; no token was asked about.
    assert_eq!(up.seen_at("/login").len(), 2);
    assert!(up.seen_at("/me").is_empty());
}

#[test]
fn the_user_id_is_the_one_the_host_system_answers_not_the_login_name() {
    let up = Upstream::start();
    up.user_as("Frank.Smith", "smith-pw-1", FRANK);
    let srv = server(&up, AuthMode::LocalHttp, |_| {});
    let token = app_token_of(&srv, "Frank.Smith", "smith-pw-1", FRANK);
    let mut frank = srv.client_with(&token, FRANK, "phone");
    let mut alice = srv.client("alice", "web");
    common::round_trip(&mut frank, &mut alice, "i1");
}

#[test]
fn a_wrong_password_at_the_host_system_is_401() {
    let up = host_system();
    let srv = server(&up, AuthMode::Http, |_| {});
    for browser in [false, true] {
        let resp = login_as(&srv, browser, FRANK, "not-franks-password", &[]);
        let body = body_of(&resp);
        assert_eq!(resp.status, 401, "{body}");
        assert_eq!(
            body,
            json!({"code": 401, "msg": "wrong username or password"})
        );
        assert!(
            resp.header("Set-Cookie").is_none(),
            "a cookie for a refusal"
        );
    }
    // A 403 of the host system is a refusal too.
    up.behave(Behaviour::Status(403));
    assert_eq!(app_login(&srv, FRANK, FRANK_PW).status, 401);
    assert_eq!(up.seen_at("/login").len(), 3);
}

#[test]
fn a_user_the_host_system_does_not_know_gets_the_same_401_as_a_wrong_password() {
    let up = host_system();
    let srv = server(&up, AuthMode::Http, |_| {});
    let unknown = app_login(&srv, "mallory", "mallory-pw");
    let wrong = app_login(&srv, FRANK, "not-franks-password");
    assert_eq!(unknown.status, 401);
    assert_eq!(body_of(&unknown), body_of(&wrong));
    assert_eq!(up.seen_at("/login").len(), 2, "both were asked");
}

#[test]
fn in_local_http_a_local_user_logs_in_without_asking_the_host_system_and_a_host_user_logs_in() {
    let up = host_system();
    let srv = server(&up, AuthMode::LocalHttp, |_| {});
    for user in ["alice", "bob"] {
        let token = app_token(&srv, user, &password(user));
        session_id(&srv, &[("token", &token)], "phone");
    }
    assert!(
        up.seen().is_empty(),
        "the host system was asked about local users: {:?}",
        up.seen()
    );
    app_token(&srv, FRANK, FRANK_PW);
    assert_eq!(up.seen_at("/login").len(), 1);
    // A wrong local password is asked of the host system (which refuses).
    assert_eq!(app_login(&srv, "alice", "not-alices").status, 401);
    assert_eq!(up.seen_at("/login").len(), 2);
}

#[test]
fn in_mode_http_the_users_file_is_not_asked() {
    let up = host_system();
    let srv = server(&up, AuthMode::Http, |_| {});
    assert_eq!(app_login(&srv, "alice", &password("alice")).status, 401);
    let seen = up.seen_at("/login");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].json()["username"], "alice");
}

#[test]
fn the_password_is_never_in_a_url_only_in_the_json_body_of_a_post() {
    let up = Upstream::start();
    // Characters a careless client would put in a query string.
    let pw = "p@ss word&user=x?y=%41#frag";
    up.user(FRANK, pw);
    up.token("host-token-url-check", FRANK);
    let srv = server(&up, AuthMode::Http, |_| {});
    app_token(&srv, FRANK, pw);
    assert_eq!(login_as(&srv, true, FRANK, pw, &[]).status, 200);
    assert_eq!(app_login(&srv, FRANK, "wrong words & more").status, 401);
    session_id(&srv, &[("token", "host-token-url-check")], "phone");
    let seen = up.seen();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    for s in &seen {
        for secret in [pw, "p@ss", "wrong words", "host-token-url-check"] {
            assert!(!s.url.contains(secret), "{secret:?} in the URL {}", s.url);
        }
        assert!(!s.url.contains('?'), "a query string: {}", s.url);
    }
    let logins = up.seen_at("/login");
    assert_eq!(logins.len(), 3);
    for (s, expected) in logins.iter().zip([pw, pw, "wrong words & more"]) {
        assert_eq!(s.method, "POST");
        let ctype = s.header("Content-Type").expect("Content-Type");
        assert!(ctype.starts_with("application/json"), "{ctype}");
        assert_eq!(s.json(), json!({"username": FRANK, "password": expected}));
        // In the body, and nowhere else.
        for (k, v) in &s.headers {
            assert!(!v.contains(expected), "the password in the header {k}");
        }
    }
}

// ---- tokens of the host system ----

#[test]
fn a_host_token_gets_a_session_id_with_the_token_header_and_with_authorization_bearer() {
    let up = host_system();
    up.token("host-token-one", FRANK)
        .token("host-token-two", FRANK);
    let srv = server(&up, AuthMode::Http, |_| {});
    let sid = session_id(&srv, &[("token", "host-token-one")], "phone");
    let mut phone = common::registered(&srv.ws, FRANK, "phone", &sid);
    let sid = session_id(
        &srv,
        &[("Authorization", "Bearer host-token-two")],
        "tablet",
    );
    let mut tablet = common::registered(&srv.ws, FRANK, "tablet", &sid);
    send_ok(&mut phone, "n1", FRANK, "note to self");
    assert_eq!(expect_text(&mut tablet, "n1")["from"], FRANK);
    // The host system was asked with the header the client used.
    let seen = up.seen_at("/me");
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].header("token"), Some("host-token-one"));
    assert_eq!(seen[0].header("Authorization"), None);
    assert_eq!(seen[1].method, "GET");
    assert_eq!(
        seen[1].header("Authorization"),
        Some("Bearer host-token-two")
    );
    assert_eq!(seen[1].header("token"), None);
    // Every endpoint that takes the app token takes the host's token, and
    // the answer is kept: no third question.
    let ids = user_ids(&srv, &[("token", "host-token-one")]);
    assert!(ids.contains(&FRANK.to_string()), "{ids:?}");
    assert_eq!(up.seen_at("/me").len(), 2);
}

#[test]
fn a_host_token_revoked_there_works_until_the_cache_expires_then_is_401() {
    let up = host_system();
    up.token("host-token-revoked", FRANK);
    let srv = server(&up, AuthMode::Http, |c| c.auth.http.cache_s = 1);
    let header = [("token", "host-token-revoked")];
    // Before the question: its answer is kept from when it was asked.
    let asked_at = Instant::now();
    session_id(&srv, &header, "phone");
    up.revoke("host-token-revoked");
    // Kept: the host system is not asked again within cache_s.
    session_id(&srv, &header, "phone");
    assert_eq!(up.seen_at("/me").len(), 1);
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = app_session(&srv, &header, "phone");
        match resp.status {
            200 => {}
            401 => break,
            other => panic!("{other}: {}", resp.text()),
        }
        assert!(Instant::now() < deadline, "still 200 after {WAIT:?}");
        // Between two polls, so as not to spin on a shared machine.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        asked_at.elapsed() >= Duration::from_millis(990),
        "401 after {:?}: the cache_s of 1 s was not kept",
        asked_at.elapsed()
    );
    assert_eq!(up.seen_at("/me").len(), 2, "asked once more, on expiry");
}

#[test]
fn an_unknown_host_token_is_401_and_the_refusal_is_kept_a_while() {
    let up = host_system();
    let srv = server(&up, AuthMode::Http, |_| {});
    for _ in 0..2 {
        let resp = app_session(&srv, &[("token", "no-such-host-token")], "phone");
        let body = body_of(&resp);
        assert_eq!(resp.status, 401, "{body}");
        assert_eq!(body["code"], 401);
    }
    // The refusal is kept (at most 5 s): the second try did not ask.
    assert_eq!(up.seen_at("/me").len(), 1);
    let (status, _) = get(
        &format!("{}/api/users", srv.http),
        &[("Authorization", "Bearer another-unknown-token")],
    );
    assert_eq!(status, 401);
}

#[test]
fn a_host_token_is_not_asked_about_without_a_token_url() {
    let up = host_system();
    up.token("host-token-one", FRANK);
    let srv = server(&up, AuthMode::Http, |c| c.auth.http.token_url = None);
    assert_eq!(
        app_session(&srv, &[("token", "host-token-one")], "phone").status,
        401
    );
    assert!(up.seen().is_empty(), "{:?}", up.seen());
}

#[test]
fn the_api_key_is_never_sent_to_the_host_system() {
    let up = host_system();
    let srv = server(&up, AuthMode::Http, |c| c.api.key = Some(API_KEY.into()));
    let key = format!("Bearer {API_KEY}");
    let (status, body) = get(
        &format!("{}/api/groups", srv.http),
        &[("Authorization", &key)],
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_json(
        &format!("{}/api/system/message", srv.http),
        &[("Authorization", &key)],
        json!({"to": "alice", "body": "from the host system"}),
    );
    assert_eq!(status, 200, "{body}");
    // Where the key is no credential, it is still not passed on.
    for path in [
        "/api/users",
        "/api/websocket/online",
        "/api/conversations",
        "/app/websocket/client/login/phone",
    ] {
        let (status, body) = get(&format!("{}{path}", srv.http), &[("Authorization", &key)]);
        assert_eq!(status, 401, "{path}: {body}");
    }
    let leaked: Vec<String> = up
        .seen()
        .iter()
        .filter(|s| s.whole().contains(API_KEY))
        .map(|s| format!("{} {}", s.method, s.url))
        .collect();
    assert!(
        leaked.is_empty(),
        "the host system got the API key: {leaked:?}"
    );
}

// ---- a host system that does not answer ----

#[test]
fn a_host_system_that_does_not_answer_in_timeout_s_is_503_with_retry_after_and_local_users_go_on() {
    let up = host_system();
    up.token("host-token-slow", FRANK);
    let srv = server(&up, AuthMode::LocalHttp, |c| c.auth.http.timeout_s = 1);
    up.behave(Behaviour::Hang);
    let waiting = {
        let http = srv.http.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let resp = post_raw(
                &format!("{http}/app/login"),
                &[("Content-Type", "application/json")],
                &json!({"username": FRANK, "password": FRANK_PW}).to_string(),
            );
            (resp, t0.elapsed())
        })
    };
    up.wait_hanging(1);
    // Meanwhile, local users log in, get session ids and chat.
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "phone");
    common::round_trip(&mut alice, &mut bob, "m1");
    let (resp, took) = waiting.join().expect("the login thread");
    assert_503_retry_after(&resp, "a password the host system sat on");
    assert!(took < WAIT, "answered after {took:?}");
    // A token it sits on is 503 too, and that answer is not kept: once
    // the host system answers again, the same token works.
    let resp = app_session(&srv, &[("token", "host-token-slow")], "phone");
    assert_503_retry_after(&resp, "a token the host system sat on");
    up.behave(Behaviour::Normal);
    session_id(&srv, &[("token", "host-token-slow")], "phone");
}

#[test]
fn an_answer_that_takes_longer_than_timeout_s_in_all_is_503() {
    // Each byte comes well within timeout_s; the whole answer does not.
    let up = host_system();
    let srv = server(&up, AuthMode::LocalHttp, |c| c.auth.http.timeout_s = 1);
    up.behave(Behaviour::Trickle(50));
    let t0 = Instant::now();
    let resp = app_login(&srv, FRANK, FRANK_PW);
    let took = t0.elapsed();
    assert_503_retry_after(&resp, &format!("an answer that took {took:?}"));
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
}

#[test]
fn a_host_system_answering_500_or_200_without_a_user_id_is_503_with_retry_after() {
    let up = host_system();
    up.token("host-token-500", FRANK);
    let srv = server(&up, AuthMode::LocalHttp, |_| {});
    for b in [Behaviour::Status(500), Behaviour::NoUserId] {
        up.behave(b);
        // More than the throttle lets fail: a 503 is not the client's fault.
        for i in 0..FREE_FAILS + 3 {
            let resp = app_login(&srv, FRANK, FRANK_PW);
            assert_503_retry_after(&resp, &format!("{b:?}, login {i}"));
            let resp = app_session(&srv, &[("token", "host-token-500")], "phone");
            assert_503_retry_after(&resp, &format!("{b:?}, token {i}"));
        }
        // Local users are not asked about.
        app_token(&srv, "alice", &password("alice"));
    }
    // Neither the answers nor the throttle held it against anyone.
    up.behave(Behaviour::Normal);
    app_token(&srv, FRANK, FRANK_PW);
    session_id(&srv, &[("token", "host-token-500")], "phone");
}

#[test]
fn a_hanging_host_system_holds_at_most_half_the_http_workers() {
    let up = host_system();
    let srv = server(&up, AuthMode::LocalHttp, |c| {
        c.http.workers = 4;
        c.auth.http.timeout_s = 30;
    });
    up.behave(Behaviour::Hang);
    let logins: Vec<_> = (0..2)
        .map(|_| {
            let http = srv.http.clone();
            std::thread::spawn(move || {
                post_raw(
                    &format!("{http}/app/login"),
                    &[("Content-Type", "application/json")],
                    &json!({"username": FRANK, "password": FRANK_PW}).to_string(),
                )
            })
        })
        .collect();
    up.wait_hanging(2);
    // Two of four workers wait on the host system: a third check is
    // answered at once, without asking it.
    let t0 = Instant::now();
    assert_503_retry_after(&app_login(&srv, FRANK, FRANK_PW), "a third check");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(up.seen_at("/login").len(), 2);
    // The other workers serve the local users.
    let mut alice = srv.client("alice", "web");
    let mut bob = srv.client("bob", "phone");
    common::round_trip(&mut alice, &mut bob, "m1");
    up.release();
    for l in logins {
        let resp = l.join().expect("a login thread");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
}

// ---- header login behind a single-sign-on proxy ----

/// A server in mode `header` trusting `trusted`.
fn behind_proxy(trusted: &str, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Header;
        c.http.trusted_proxies = vec![trusted.into()];
        adjust(c);
    })
}

#[test]
fn behind_a_trusted_proxy_the_websocket_url_answer_names_the_user_for_the_page() {
    let srv = behind_proxy("127.0.0.1/32", |_| {});
    let url = format!("{}/api/websocket/url", srv.http);
    let (status, body) = get(&url, &[("X-Remote-User", FRANK)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], FRANK, "the page skips its login form");
    let (_, body) = get(&url, &[]);
    assert!(body.get("user").is_none(), "no header, no user: {body}");
    // From an untrusted peer the header names nobody.
    let elsewhere = behind_proxy("10.9.9.9/32", |_| {});
    let (_, body) = get(
        &format!("{}/api/websocket/url", elsewhere.http),
        &[("X-Remote-User", FRANK)],
    );
    assert!(body.get("user").is_none(), "{body}");
}

#[test]
fn header_login_from_a_trusted_proxy_logs_in_as_the_named_user() {
    // The test connects from 127.0.0.1: the proxy.
    let srv = behind_proxy("127.0.0.1/32", |_| {});
    let as_frank = [("X-Remote-User", FRANK)];
    let ids = user_ids(&srv, &as_frank);
    assert!(ids.contains(&FRANK.to_string()), "{ids:?}");
    // A session id with no cookie, only the proxy's header.
    let (status, body) = get(
        &format!("{}/api/websocket/client/login/tab", srv.http),
        &as_frank,
    );
    assert_eq!(status, 200, "{body}");
    let mut frank = common::registered(
        &srv.ws,
        FRANK,
        "tab",
        body["sessionId"].as_str().expect("sessionId"),
    );
    let mut alice = srv.client("alice", "web");
    common::round_trip(&mut frank, &mut alice, "h1");
    // POST /api/login from the proxy gives frank a cookie, no password.
    let resp = post_raw(&format!("{}/api/login", srv.http), &as_frank, "");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(body_of(&resp)["userId"], FRANK);
    let cookie = cookie_of(&resp);
    let (status, _) = get(
        &format!("{}/api/websocket/client/login/tab2", srv.http),
        &[("Cookie", &cookie)],
    );
    assert_eq!(status, 200);
    // Passwords are still the users file's.
    app_token(&srv, "bob", &password("bob"));
    // A name that is no user id logs nobody in.
    for bad in ["SYSTEM", "two words", "#ops"] {
        let (status, _) = get(
            &format!("{}/api/users", srv.http),
            &[("X-Remote-User", bad)],
        );
        assert_eq!(status, 401, "{bad:?}");
    }
}

#[test]
fn the_header_is_the_one_auth_header_user_names() {
    let srv = behind_proxy("127.0.0.1/32", |c| {
        c.auth.header.user = "X-Auth-Request-User".into();
    });
    let (status, _) = get(
        &format!("{}/api/users", srv.http),
        &[("X-Remote-User", FRANK)],
    );
    assert_eq!(status, 401, "another header than the configured one");
    let ids = user_ids(&srv, &[("X-Auth-Request-User", FRANK)]);
    assert!(ids.contains(&FRANK.to_string()), "{ids:?}");
}

#[test]
fn the_user_header_is_ignored_outside_header_mode() {
    let up = host_system();
    for mode in [AuthMode::Local, AuthMode::Http, AuthMode::LocalHttp] {
        let srv = server(&up, mode, |c| {
            c.http.trusted_proxies = vec!["127.0.0.1/32".into()];
        });
        let (status, _) = get(
            &format!("{}/api/users", srv.http),
            &[("X-Remote-User", FRANK)],
        );
        assert_eq!(status, 401, "{mode:?}");
    }
}

#[test]
fn the_user_header_from_an_untrusted_peer_is_ignored() {
    // 127.0.0.1 is not in the trusted network.
    let srv = behind_proxy("10.99.0.0/16", |_| {});
    let as_frank = [("X-Remote-User", FRANK)];
    for path in [
        "/api/users",
        "/api/websocket/online",
        "/api/websocket/client/login/tab",
        "/app/websocket/client/login/phone",
    ] {
        let (status, body) = get(&format!("{}{path}", srv.http), &as_frank);
        assert_eq!(status, 401, "{path}: {body}");
    }
    // Nor does it log in with a password it does not have, or as someone
    // else than the password's owner.
    let resp = login_as(&srv, true, FRANK, "anything", &as_frank);
    assert_eq!(resp.status, 401, "{}", resp.text());
    let resp = login_as(
        &srv,
        false,
        "bob",
        &password("bob"),
        &[("X-Remote-User", "alice")],
    );
    assert_eq!(body_of(&resp)["userId"], "bob");
    // frank was never vouched for: he is nobody.
    let token = app_token(&srv, "alice", &password("alice"));
    let ids = user_ids(&srv, &[("token", &token)]);
    assert!(!ids.contains(&FRANK.to_string()), "{ids:?}");
}

// ---- the login throttle ----

/// Wrong passwords for frank until a 429 (with a Retry-After); returns
/// how many were answered 401 first. Try `i` sends the extra `headers(i)`.
fn guess_until_429(srv: &TestServer, headers: impl Fn(usize) -> Vec<(String, String)>) -> usize {
    for i in 0..30 {
        let h = headers(i);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let resp = login_as(srv, false, FRANK, &format!("guess-{i}"), &h);
        match resp.status {
            401 => {}
            429 => {
                let secs: u64 = resp
                    .header("Retry-After")
                    .expect("a 429 carries Retry-After")
                    .parse()
                    .expect("Retry-After in seconds");
                assert!((1..=300).contains(&secs), "Retry-After {secs}");
                return i;
            }
            other => panic!("guess {i}: {other} {}", resp.text()),
        }
    }
    panic!("30 wrong passwords were never throttled");
}

#[test]
fn the_throttle_applies_to_delegated_logins_and_spares_the_host_system() {
    let up = host_system();
    let srv = server(&up, AuthMode::Http, |_| {});
    let failed = guess_until_429(&srv, |_| Vec::new());
    assert!(failed <= FREE_FAILS + 1, "throttled only after {failed}");
    let asked = up.seen_at("/login").len();
    assert_eq!(asked, failed, "every refused try was asked, no more");
    // Throttled before the host system is asked: even the right password
    // waits, and the host system hears nothing of it.
    assert_eq!(app_login(&srv, FRANK, FRANK_PW).status, 429);
    assert_eq!(up.seen_at("/login").len(), asked);
}

#[test]
fn bad_host_tokens_are_throttled_by_client_address() {
    let up = host_system();
    up.token("host-token-good", FRANK);
    let srv = server(&up, AuthMode::Http, |_| {});
    let mut refused_at = None;
    for i in 0..30 {
        let token = format!("made-up-token-{i}");
        let resp = app_session(&srv, &[("token", &token)], "phone");
        match resp.status {
            401 => {}
            429 => {
                assert!(resp.header("Retry-After").is_some());
                refused_at = Some(i);
                break;
            }
            other => panic!("token {i}: {other} {}", resp.text()),
        }
    }
    let at = refused_at.expect("30 made-up tokens were never throttled");
    assert!(at <= FREE_FAILS + 1, "throttled only after {at}");
    assert_eq!(
        up.seen_at("/me").len(),
        at,
        "a throttled token is not asked"
    );
}

#[test]
fn forwarded_for_from_a_trusted_proxy_is_the_client_address_of_the_throttle() {
    let up = host_system();
    let srv = server(&up, AuthMode::Http, |c| {
        c.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    });
    let attacker = || vec![("X-Forwarded-For".to_string(), "10.0.0.66".to_string())];
    let failed = guess_until_429(&srv, |_| attacker());
    assert!(failed <= FREE_FAILS + 1, "throttled only after {failed}");
    // frank at his own address is not slowed by the attacker's guesses.
    let resp = login_as(
        &srv,
        false,
        FRANK,
        FRANK_PW,
        &[("X-Forwarded-For", "192.168.1.20")],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The right-most untrusted entry counts: a forged one in front of the
    // attacker's address does not help it.
    let resp = login_as(
        &srv,
        false,
        FRANK,
        FRANK_PW,
        &[("X-Forwarded-For", "192.168.1.20, 10.0.0.66")],
    );
    assert_eq!(resp.status, 429, "{}", resp.text());
}

#[test]
fn forwarded_for_from_an_untrusted_peer_does_not_escape_the_throttle() {
    let up = host_system();
    let srv = server(&up, AuthMode::Http, |c| {
        c.http.trusted_proxies = vec!["10.99.0.0/16".into()];
    });
    // A new address in every try: ignored, all are 127.0.0.1.
    let failed = guess_until_429(&srv, |i| {
        vec![("X-Forwarded-For".to_string(), format!("10.9.0.{i}"))]
    });
    assert!(failed <= FREE_FAILS + 1, "throttled only after {failed}");
    assert_eq!(up.seen_at("/login").len(), failed);
}

// ---- delegated users are users ----

#[test]
fn a_delegated_user_is_in_api_users_from_its_first_login_and_after_a_restart() {
    let up = host_system();
    let mut srv = server(&up, AuthMode::LocalHttp, |_| {});
    let alice = app_token(&srv, "alice", &password("alice"));
    let ids = user_ids(&srv, &[("token", &alice)]);
    assert!(!ids.contains(&FRANK.to_string()), "before: {ids:?}");
    let frank = app_token(&srv, FRANK, FRANK_PW);
    let ids = user_ids(&srv, &[("token", &alice)]);
    assert!(ids.contains(&FRANK.to_string()), "after: {ids:?}");

    srv.restart();
    let alice = app_token(&srv, "alice", &password("alice"));
    let ids = user_ids(&srv, &[("token", &alice)]);
    assert!(ids.contains(&FRANK.to_string()), "after a restart: {ids:?}");
    // A text to frank, offline, is taken and kept for him.
    let mut a = srv.client_with(&alice, "alice", "web");
    send_ok(&mut a, "k1", FRANK, "while you were away");
    // His login from before the restart still stands, without asking the
    // host system again.
    let asked = up.seen().len();
    let mut f = srv.client_with(&frank, FRANK, "phone");
    assert_eq!(expect_text(&mut f, "k1")["from"], "alice");
    assert_eq!(up.seen().len(), asked);
}

#[test]
fn delegated_users_are_users_only_while_the_mode_is_not_local() {
    let up = host_system();
    let mut srv = server(&up, AuthMode::LocalHttp, |_| {});
    let frank = app_token(&srv, FRANK, FRANK_PW);
    srv.config.auth.mode = AuthMode::Local;
    srv.restart();
    let alice = app_token(&srv, "alice", &password("alice"));
    let ids = user_ids(&srv, &[("token", &alice)]);
    assert!(!ids.contains(&FRANK.to_string()), "in mode local: {ids:?}");
    assert_eq!(app_session(&srv, &[("token", &frank)], "phone").status, 401);
    // Back to local+http: the database still knows him.
    srv.config.auth.mode = AuthMode::LocalHttp;
    srv.restart();
    let alice = app_token(&srv, "alice", &password("alice"));
    let ids = user_ids(&srv, &[("token", &alice)]);
    assert!(ids.contains(&FRANK.to_string()), "{ids:?}");
}

#[test]
fn a_delegated_user_can_be_in_a_group_and_gets_its_texts() {
    let up = host_system();
    let srv = server(&up, AuthMode::LocalHttp, |c| {
        c.api.key = Some(API_KEY.into())
    });
    let key = format!("Bearer {API_KEY}");
    let groups = format!("{}/api/groups", srv.http);
    let new_group = json!({"name": "ops", "title": "Operations", "members": ["alice", FRANK]});
    // Unknown until the first login.
    let (status, body) = post_json(&groups, &[("Authorization", &key)], new_group.clone());
    assert_eq!(status, 400, "{body}");
    assert!(
        body["msg"].as_str().unwrap_or_default().contains(FRANK),
        "{body}"
    );
    let token = app_token(&srv, FRANK, FRANK_PW);
    // The API key manages the group of a department.
    let (status, body) = post_json(&groups, &[("Authorization", &key)], new_group);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["members"], json!(["alice", FRANK]));
    let mut frank = srv.client_with(&token, FRANK, "phone");
    let mut alice = srv.client("alice", "web");
    // Both were told of the new group first (section 10).
    for c in [&mut frank, &mut alice] {
        let m = c.next_message();
        assert_eq!(
            (&m["isSystem"], &m["to"]),
            (&json!(true), &json!("#ops")),
            "{m}"
        );
    }
    send_ok(&mut alice, "g1", "#ops", "to the department");
    let m = expect_text(&mut frank, "g1");
    assert_eq!(
        (m["from"].clone(), m["to"].clone()),
        (json!("alice"), json!("#ops"))
    );
    // frank writes to the group, and sees it among his groups.
    send_ok(&mut frank, "g2", "#ops", "thanks");
    assert_eq!(expect_text(&mut alice, "g2")["from"], FRANK);
    let (status, body) = get(&groups, &[("token", &token)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["groups"][0]["name"], "ops", "{body}");
}

// ---- config and log ----

#[test]
fn an_https_host_system_is_refused_when_the_config_is_read() {
    let text =
        "[auth]\nmode = \"http\"\n[auth.http]\nlogin_url = \"https://127.0.0.1:9000/login\"\n";
    let err = Config::parse(text).expect_err("https:// is refused");
    assert!(err.contains("http://"), "{err}");
    let err = Config::parse("[auth]\nmode = \"http\"\n").expect_err("no login_url");
    assert!(err.contains("login_url"), "{err}");
}

/// A config file for the binary in mode `local+http` with `up` as the
/// host system, and the config it was written from (its data dir).
fn served_config(up: &Upstream, tag: &str) -> (Config, std::path::PathBuf) {
    let config = common::test_config(tag);
    let file = write_config(&config);
    let mut text = std::fs::read_to_string(&file).expect("read config");
    text.push_str(&format!(
        "\n[auth]\nmode = \"local+http\"\n\n[auth.http]\nlogin_url = {:?}\ntoken_url = {:?}\n",
        up.login_url(),
        up.token_url()
    ));
    std::fs::write(&file, text).expect("write config");
    (config, file)
}

#[test]
fn a_delegated_user_survives_a_power_cut_right_after_its_first_login() {
    let up = host_system();
    let (config, file) = served_config(&up, "delegated-crash");
    let mut srv = Served::start(&file, None);
    let frank = common::login(&srv.http, FRANK, FRANK_PW);
    srv.kill_hard();
    let srv = Served::start(&file, None);
    let asked = up.seen().len();
    let alice = common::login(&srv.http, "alice", &password("alice"));
    let (status, body) = get(&format!("{}/api/users", srv.http), &[("token", &alice)]);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["users"]
            .as_array()
            .expect("users")
            .iter()
            .any(|u| u["userId"] == FRANK),
        "frank was forgotten: {body}"
    );
    // His answered login stands, and the host system is not asked again.
    common::session_id_with(&srv.http, &frank, "phone");
    assert_eq!(up.seen().len(), asked);
    drop(srv);
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn the_log_holds_no_password_and_no_token_of_a_delegated_login() {
    let up = host_system();
    up.token("host-token-in-log-check-1", FRANK);
    let (config, file) = served_config(&up, "delegated-log");
    let mut srv = Served::start(&file, Some("debug"));
    let http = srv.http.clone();
    let post = |path: &str, user: &str, pass: &str| {
        post_raw(
            &format!("{http}{path}"),
            &[("Content-Type", "application/json")],
            &json!({"username": user, "password": pass}).to_string(),
        )
    };
    let resp = post("/app/login", FRANK, FRANK_PW);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let token = body_of(&resp)["token"].as_str().expect("token").to_string();
    let sid = common::session_id_with(&http, &token, "phone");
    let mut frank = common::registered(&srv.ws, FRANK, "phone", &sid);
    let resp = post("/api/login", FRANK, FRANK_PW);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let cookie = cookie_of(&resp);
    assert_eq!(
        post("/app/login", FRANK, "wrong-host-guess-5521").status,
        401
    );
    assert_eq!(
        post("/app/login", "mallory", "mallory-host-pass-0815").status,
        401
    );
    let host_sid = get(
        &format!("{http}/app/websocket/client/login/tablet"),
        &[("token", "host-token-in-log-check-1")],
    );
    assert_eq!(host_sid.0, 200, "{}", host_sid.1);
    let unknown = get(
        &format!("{http}/app/websocket/client/login/tablet"),
        &[("Authorization", "Bearer host-token-unknown-2")],
    );
    assert_eq!(unknown.0, 401);
    up.behave(Behaviour::Status(500));
    assert_eq!(post("/app/login", FRANK, FRANK_PW).status, 503);

    srv.signal("TERM");
    assert_eq!(frank.expect_close().0, 1001);
    assert_eq!(srv.exit_by(Instant::now() + WAIT).code(), Some(0));
    let log = srv.whole_log();
    assert!(
        log.contains("DEBUG") && log.contains("delegation"),
        "the log was captured: {log}"
    );
    let secrets: Vec<(&str, String)> = vec![
        ("frank's password", FRANK_PW.into()),
        ("a wrong password", "wrong-host-guess-5521".into()),
        (
            "an unknown user's password",
            "mallory-host-pass-0815".into(),
        ),
        ("a host token", "host-token-in-log-check-1".into()),
        ("an unknown host token", "host-token-unknown-2".into()),
        ("frank's edgeim token", token),
        (
            "the cookie",
            cookie.trim_start_matches("edgeim_session=").to_string(),
        ),
        ("a session id", sid),
        (
            "a host token's session id",
            host_sid.1["sessionId"].as_str().unwrap_or("-").to_string(),
        ),
    ];
    let found: Vec<&str> = secrets
        .iter()
        .filter(|(_, s)| log.contains(s.as_str()))
        .map(|(what, _)| *what)
        .collect();
    assert!(found.is_empty(), "the log contains {found:?}:\n{log}");
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_file(&file);
}
