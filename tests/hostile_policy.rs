//! Issue 10, "the edges hold": the HTTP policy against a hostile network.
//! Login throttling, the fair share of session ids, the Origin check of
//! cookie endpoints, the Host header, the per-user cap on logins, and the
//! smaller gaps (password length, config bounds, the users file's change
//! check). All traffic is 127.0.0.1: different client addresses are
//! simulated with `trusted_proxies` and `X-Forwarded-For`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::{TestServer, WAIT, body_of, get, password, post_json, post_raw, request};
use serde_json::json;

fn proxied() -> TestServer {
    TestServer::start_with(|c| c.http.trusted_proxies = vec!["127.0.0.1/32".into()])
}

/// `POST /app/login` as `user` from client address `from` (through the
/// trusted proxy); the status and the Retry-After header.
fn app_login(srv: &TestServer, from: &str, user: &str, pass: &str) -> (u16, Option<String>) {
    let resp = post_raw(
        &format!("{}/app/login", srv.http),
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", from),
        ],
        &json!({"username": user, "password": pass}).to_string(),
    );
    (resp.status, resp.header("Retry-After").map(str::to_string))
}

#[test]
fn wrong_passwords_from_one_address_get_429_with_retry_after_and_no_one_else_is_slowed() {
    let srv = proxied();
    let attacker = "10.0.0.66";
    let mut throttled = None;
    for i in 0..20 {
        let (status, retry) = app_login(&srv, attacker, "alice", "guess");
        match status {
            401 => {}
            429 => {
                throttled = Some((i, retry));
                break;
            }
            other => panic!("guess {i}: {other}"),
        }
    }
    let (at, retry) = throttled.expect("20 wrong passwords from one address were never throttled");
    assert!(at <= 6, "throttled only after {at} guesses");
    let secs: u64 = retry
        .expect("a 429 carries Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=300).contains(&secs), "Retry-After {secs}");
    // Throttled before the password is checked: even the right one waits.
    let (status, retry) = app_login(&srv, attacker, "alice", &password("alice"));
    assert_eq!(status, 429);
    assert!(retry.is_some());
    // Throttled answers cost no argon2 time: many of them are quick.
    let t0 = Instant::now();
    for _ in 0..20 {
        assert_eq!(app_login(&srv, attacker, "alice", "guess").0, 429);
    }
    assert!(t0.elapsed() < WAIT, "{:?}", t0.elapsed());
    // The real alice, from her own address, and bob are not slowed.
    assert_eq!(
        app_login(&srv, "192.168.1.20", "alice", &password("alice")).0,
        200
    );
    assert_eq!(
        app_login(&srv, "192.168.1.21", "bob", &password("bob")).0,
        200
    );
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // No trusted proxy: the header is the client's own claim and is ignored,
    // so changing it does not escape the throttle.
    let srv = TestServer::start();
    let mut got_429 = false;
    for i in 0..10 {
        let (status, _) = app_login(&srv, &format!("10.9.0.{i}"), "carol", "guess");
        if status == 429 {
            got_429 = true;
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(got_429, "a forged X-Forwarded-For escaped the throttle");
}

#[test]
fn one_user_cannot_take_the_whole_session_id_budget() {
    let srv = TestServer::start_with(|c| c.limits.session_ids_per_s = 80.0);
    let hog = srv.token("alice");
    let stop = Arc::new(AtomicBool::new(false));
    let (refused_tx, refused) = crossbeam_channel::bounded::<()>(1);
    let url = format!("{}/app/websocket/client/login/phone", srv.http);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (stop, hog, url, refused_tx) =
                (stop.clone(), hog.clone(), url.clone(), refused_tx.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if get(&url, &[("token", &hog)]).0 == 503 {
                        let _ = refused_tx.try_send(());
                    }
                }
            })
        })
        .collect();
    // Wait until the hog is over its share, then the others ask.
    refused
        .recv_timeout(WAIT)
        .expect("the hog was never refused");
    let mut got = 0;
    let mut asked = 0;
    for user in ["bob", "carol", "dave", "erin"] {
        let token = srv.token(user);
        for n in 0..4 {
            let (status, _) = get(
                &format!("{}/app/websocket/client/login/c{n}", srv.http),
                &[("token", &token)],
            );
            asked += 1;
            got += usize::from(status == 200);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("hog thread");
    }
    assert_eq!(got, asked, "other users got {got} of {asked} session ids");
}

#[test]
fn cookie_endpoints_refuse_cross_site_requests() {
    let srv = TestServer::start();
    let host = srv.http.trim_start_matches("http://").to_string();
    let login = format!("{}/api/login", srv.http);
    let form = format!("username=alice&password={}", password("alice"));
    let form_type = ("Content-Type", "application/x-www-form-urlencoded");
    // A cross-site form: login CSRF.
    let resp = post_raw(
        &login,
        &[form_type, ("Origin", "http://evil.example")],
        &form,
    );
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert!(resp.header("Set-Cookie").is_none());
    assert!(
        body_of(&resp)["msg"]
            .as_str()
            .unwrap()
            .contains("cross-site")
    );
    // text/plain JSON from another site.
    let resp = post_raw(
        &login,
        &[
            ("Content-Type", "text/plain"),
            ("Origin", "http://evil.example"),
        ],
        &json!({"username": "alice", "password": password("alice")}).to_string(),
    );
    assert_eq!(resp.status, 403);
    // Fetch metadata says so, whatever the Origin.
    let resp = post_raw(
        &login,
        &[form_type, ("Sec-Fetch-Site", "cross-site")],
        &form,
    );
    assert_eq!(resp.status, 403);
    // Same origin, and no headers at all (curl), are fine.
    let origin = format!("http://{host}");
    let resp = post_raw(&login, &[form_type, ("Origin", &origin)], &form);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = post_raw(&login, &[form_type], &form);
    assert_eq!(resp.status, 200);
    let cookie = resp
        .header("Set-Cookie")
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string();
    // A cross-site logout is refused and the login lives on.
    let logout = format!("{}/api/logout", srv.http);
    let resp = post_raw(
        &logout,
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        "",
    );
    assert_eq!(resp.status, 403);
    let session = format!("{}/api/websocket/client/login/web", srv.http);
    assert_eq!(get(&session, &[("Cookie", &cookie)]).0, 200);
    let resp = post_raw(&logout, &[("Cookie", &cookie), ("Origin", &origin)], "");
    assert_eq!(resp.status, 200);
    // App endpoints are not cookie endpoints.
    let (status, _) = post_json(
        &format!("{}/app/login", srv.http),
        &[("Origin", "http://evil.example")],
        json!({"username": "bob", "password": password("bob")}),
    );
    assert_eq!(status, 200);
}

/// A raw request with any Host header; the status line and headers.
fn raw_get(srv: &TestServer, path: &str, host: &str) -> String {
    let addr = srv.http.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn a_bad_host_header_is_400_and_never_reaches_the_page() {
    let srv = TestServer::start();
    for path in ["/", "/api/websocket/url"] {
        let answer = raw_get(&srv, path, "x; script-src *");
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(!answer.contains("script-src *"), "{answer}");
    }
    let answer = raw_get(&srv, "/", "chat.lan:8080");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let csp = answer
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("content-security-policy")
        })
        .expect("CSP");
    assert!(csp.contains("connect-src 'self' ws://chat.lan:"), "{csp}");
}

#[test]
fn logins_are_capped_per_user_and_the_evicted_stay_revoked_across_a_restart() {
    let mut srv = TestServer::start();
    let cap = 64;
    let first = srv.token("dave");
    let tokens: Vec<String> = (0..cap).map(|_| srv.token("dave")).collect();
    let other = srv.token("erin");
    let session = |srv: &TestServer, token: &str| {
        get(
            &format!("{}/app/websocket/client/login/phone", srv.http),
            &[("token", token)],
        )
        .0
    };
    assert_eq!(
        session(&srv, &first),
        401,
        "the oldest login was not evicted"
    );
    assert_eq!(session(&srv, &tokens[0]), 200);
    assert_eq!(session(&srv, tokens.last().unwrap()), 200);
    assert_eq!(session(&srv, &other), 200);
    srv.restart();
    assert_eq!(session(&srv, &first), 401, "the evicted login came back");
    assert_eq!(session(&srv, &tokens[1]), 200);
}

#[test]
fn a_one_character_password_is_refused_with_a_clear_message() {
    let dir = common::temp_dir("shortpw");
    let path = edgeim::users::path_in(&dir);
    let e = edgeim::users::add(&path, "zoe", "x").expect_err("a 1-character password");
    assert!(e.to_string().contains("at least 8 characters"), "{e}");
    edgeim::users::add(&path, "zoe", "alice-demo").expect("10 characters");
    let e = edgeim::users::set_password(&path, "zoe", "1234567").expect_err("7 characters");
    assert!(e.to_string().contains("at least 8 characters"), "{e}");
    edgeim::users::set_password(&path, "zoe", "bob-demo").expect("8 characters");
}

#[test]
fn huge_durations_and_counts_are_config_errors_naming_the_key() {
    for (text, key) in [
        (
            "[websocket]\nping_interval_s = 9223372036854775807\n",
            "websocket.ping_interval_s",
        ),
        (
            "[limits]\nregister_timeout_s = 9223372036854775807\n",
            "limits.register_timeout_s",
        ),
        ("[http]\nworkers = 100000\n", "http.workers"),
    ] {
        let e = edgeim::config::Config::parse(text).expect_err(key);
        assert!(e.starts_with(key) && !e.contains('\n'), "{e}");
    }
}

#[test]
fn a_password_change_of_the_same_length_and_mtime_is_seen() {
    let srv = TestServer::start();
    let path = edgeim::users::path_in(&srv.config.data_dir);
    // Written once by `edgeim user` (its own layout), and seen by a login.
    edgeim::users::set_password(&path, "carol", "pw-carol-2").expect("passwd");
    let before = std::fs::metadata(&path).expect("users file");
    let (status, _) = post_json(
        &format!("{}/app/login", srv.http),
        &[],
        json!({"username": "carol", "password": "pw-carol-2"}),
    );
    assert_eq!(status, 200);
    edgeim::users::set_password(&path, "carol", "pw-carol-3").expect("passwd");
    assert_eq!(
        std::fs::metadata(&path).expect("users file").len(),
        before.len()
    );
    // A coarse-clock file system: same mtime as before the change. (The
    // hashes all have the same length, so the length is the same too.)
    std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open")
        .set_modified(before.modified().expect("mtime"))
        .expect("set mtime");
    let (status, body) = post_json(
        &format!("{}/app/login", srv.http),
        &[],
        json!({"username": "carol", "password": "pw-carol-3"}),
    );
    assert_eq!(status, 200, "the new password was not seen: {body}");
    let resp = request(
        "POST",
        &format!("{}/app/login", srv.http),
        &[("Content-Type", "application/json")],
        &json!({"username": "carol", "password": "pw-carol-2"}).to_string(),
    );
    assert_eq!(resp.status, 401, "the old password still works");
}
