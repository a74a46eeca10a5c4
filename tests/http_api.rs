//! The HTTP API (PROTOCOL.md sections 1, 2, 8, 9) against an in-process
//! server, over real HTTP.

mod common;

use std::collections::BTreeMap;

use common::*;
use edgeim::client::HttpResponse;
use serde_json::{Value, json};

const API_KEY: &str = "0123456789abcdef-test";
/// A clientName of 65 characters (one over the limit).
const LONG_NAME: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Reads a raw response into (status, headers by lower-case name, JSON body).
fn split(resp: HttpResponse) -> (u16, BTreeMap<String, Vec<String>>, Value) {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &resp.headers {
        headers
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.clone());
    }
    (resp.status, headers, body_of(&resp))
}

fn header<'a>(headers: &'a BTreeMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.first())
        .map(String::as_str)
}

/// Asserts the error shape every /api and /app error has.
fn assert_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "status; body {body}");
    assert_eq!(body["code"].as_u64(), Some(u64::from(expected)), "{body}");
    assert!(
        body["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "msg must be a non-empty string: {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "only code and msg: {body}"
    );
}

fn login_json(user: &str, pass: &str) -> String {
    json!({"username": user, "password": pass}).to_string()
}

/// POST /api/login; returns the raw response parts.
fn browser_login(
    srv: &TestServer,
    body: &str,
    content_type: &str,
) -> (u16, BTreeMap<String, Vec<String>>, Value) {
    split(post_raw(
        &format!("{}/api/login", srv.http),
        &[("Content-Type", content_type)],
        body,
    ))
}

/// The `edgeim_session` value from a Set-Cookie header.
fn cookie_value(set_cookie: &str) -> String {
    let first = set_cookie.split(';').next().unwrap_or_default().trim();
    first
        .strip_prefix("edgeim_session=")
        .unwrap_or_else(|| panic!("not an edgeim_session cookie: {set_cookie}"))
        .to_string()
}

/// Logs `user` in as a browser; returns the cookie value.
fn cookie(srv: &TestServer, user: &str) -> String {
    let (status, headers, body) =
        browser_login(srv, &login_json(user, &password(user)), "application/json");
    assert_eq!(status, 200, "{body}");
    cookie_value(header(&headers, "set-cookie").expect("Set-Cookie"))
}

fn cookie_header(value: &str) -> String {
    format!("edgeim_session={value}")
}

/// Cookie attributes, lower-cased, without the name=value pair.
fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

fn browser_session(srv: &TestServer, cookie: &str, client: &str) -> (u16, Value) {
    get(
        &format!("{}/api/websocket/client/login/{client}", srv.http),
        &[("Cookie", &cookie_header(cookie))],
    )
}

fn app_session(srv: &TestServer, headers: &[(&str, &str)], client: &str) -> (u16, Value) {
    get(
        &format!("{}/app/websocket/client/login/{client}", srv.http),
        headers,
    )
}

fn is_uuid_v4(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4) && s.len() == 36
}

fn system_message(srv: &TestServer, key: Option<&str>, body: &str) -> (u16, Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    let (status, _, body) = split(post_raw(
        &format!("{}/api/system/message", srv.http),
        &headers,
        body,
    ));
    (status, body)
}

fn with_key() -> TestServer {
    TestServer::start_with(|c| c.api.key = Some(API_KEY.into()))
}

// ---- browser login ----

#[test]
fn browser_login_with_json_answers_the_user_id_and_a_strict_httponly_cookie() {
    let srv = TestServer::start();
    let (status, headers, body) =
        browser_login(&srv, &login_json("alice", "pw-alice"), "application/json");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"userId": "alice"}));
    let set = header(&headers, "set-cookie").expect("Set-Cookie");
    let value = cookie_value(set);
    assert!(!value.is_empty(), "{set}");
    let attrs = attributes(set);
    for want in ["httponly", "samesite=strict", "path=/"] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing in {set}");
    }
    let max_age = format!("max-age={}", srv.config.http.login_ttl_s);
    assert!(attrs.contains(&max_age), "{max_age} missing in {set}");
    assert!(
        !attrs.iter().any(|a| a == "secure"),
        "no Secure flag (TLS is the proxy's): {set}"
    );
}

#[test]
fn browser_login_with_a_form_body_works() {
    let srv = TestServer::start();
    let (status, headers, body) = browser_login(
        &srv,
        "username=alice&password=pw-alice",
        "application/x-www-form-urlencoded",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"userId": "alice"}));
    let set = header(&headers, "set-cookie").expect("Set-Cookie");
    let value = cookie_value(set);
    let (status, body) = browser_session(&srv, &value, "web");
    assert_eq!(status, 200, "the form login's cookie works: {body}");
}

#[test]
fn the_browser_cookie_gets_a_session_id() {
    let srv = TestServer::start();
    let c = cookie(&srv, "alice");
    let (status, body) = browser_session(&srv, &c, "web-1");
    assert_eq!(status, 200, "{body}");
    let sid = body["sessionId"].as_str().expect("sessionId");
    assert!(is_uuid_v4(sid), "{sid}");
}

#[test]
fn browser_logout_revokes_the_cookie_on_the_server_and_clears_it() {
    let srv = TestServer::start();
    let c = cookie(&srv, "alice");
    assert_eq!(browser_session(&srv, &c, "web").0, 200);
    let (status, headers, body) = split(post_raw(
        &format!("{}/api/logout", srv.http),
        &[("Cookie", &cookie_header(&c))],
        "",
    ));
    assert_eq!(status, 200, "{body}");
    let set = header(&headers, "set-cookie").expect("logout clears the cookie");
    assert_eq!(cookie_value(set), "", "{set}");
    assert!(attributes(set).contains(&"max-age=0".to_string()), "{set}");
    // The same cookie, replayed, no longer works anywhere.
    let (status, body) = browser_session(&srv, &c, "web");
    assert_error(status, &body, 401);
    let (status, body) = get(
        &format!("{}/api/users", srv.http),
        &[("Cookie", &cookie_header(&c))],
    );
    assert_error(status, &body, 401);
}

#[test]
fn browser_logout_without_a_valid_cookie_is_401_and_still_clears_it() {
    let srv = TestServer::start();
    let (status, headers, body) = split(post_raw(
        &format!("{}/api/logout", srv.http),
        &[("Cookie", "edgeim_session=0000")],
        "",
    ));
    assert_error(status, &body, 401);
    let set = header(&headers, "set-cookie").expect("the cookie is cleared anyway");
    assert_eq!(cookie_value(set), "", "{set}");
}

// ---- app login ----

#[test]
fn app_login_answers_a_64_hex_token_and_its_expiry_in_ms() {
    let srv = TestServer::start_with(|c| c.http.login_ttl_s = 3600);
    let before = now_ms();
    let (status, body) = post_json(
        &format!("{}/app/login", srv.http),
        &[],
        json!({"username": "bob", "password": "pw-bob"}),
    );
    let after = now_ms();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userId"], "bob");
    let token = body["token"].as_str().expect("token");
    assert_eq!(token.len(), 64, "{token}");
    assert!(
        token.chars().all(|c| c.is_ascii_hexdigit()),
        "token is hex: {token}"
    );
    let expires = body["expiresAt"].as_u64().expect("expiresAt is an integer");
    let ttl = 3600 * 1000;
    assert!(
        expires >= before + ttl - 1000 && expires <= after + ttl + 1000,
        "expiresAt {expires} is not about now + 3600 s ({before}..{after})"
    );
}

#[test]
fn the_token_header_and_authorization_bearer_both_get_session_ids() {
    let srv = TestServer::start();
    let token = srv.token("alice");
    let (status, body) = app_session(&srv, &[("token", &token)], "phone");
    assert_eq!(status, 200, "token header: {body}");
    assert!(
        is_uuid_v4(body["sessionId"].as_str().unwrap_or_default()),
        "{body}"
    );
    let bearer = format!("Bearer {token}");
    let (status, body) = app_session(&srv, &[("Authorization", &bearer)], "phone");
    assert_eq!(status, 200, "Authorization: Bearer: {body}");
    assert!(
        is_uuid_v4(body["sessionId"].as_str().unwrap_or_default()),
        "{body}"
    );
}

#[test]
fn app_logout_revokes_the_token() {
    let srv = TestServer::start();
    let token = srv.token("alice");
    let (status, body) = post_json(
        &format!("{}/app/logout", srv.http),
        &[("token", &token)],
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = app_session(&srv, &[("token", &token)], "phone");
    assert_error(status, &body, 401);
    let (status, body) = get(&format!("{}/api/users", srv.http), &[("token", &token)]);
    assert_error(status, &body, 401);
    // A second logout with the revoked token has nothing to revoke.
    let (status, body) = post_json(
        &format!("{}/app/logout", srv.http),
        &[("token", &token)],
        json!({}),
    );
    assert_error(status, &body, 401);
}

#[test]
fn app_logout_with_a_bearer_header_revokes_the_token() {
    let srv = TestServer::start();
    let token = srv.token("bob");
    let bearer = format!("Bearer {token}");
    let (status, body) = post_json(
        &format!("{}/app/logout", srv.http),
        &[("Authorization", &bearer)],
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = app_session(&srv, &[("token", &token)], "phone");
    assert_error(status, &body, 401);
}

// ---- login failures and error shape ----

#[test]
fn a_wrong_password_and_an_unknown_user_get_the_same_401() {
    let srv = TestServer::start();
    for path in ["/api/login", "/app/login"] {
        let url = format!("{}{path}", srv.http);
        let (s1, wrong) = post_json(&url, &[], json!({"username": "alice", "password": "nope"}));
        let (s2, unknown) = post_json(
            &url,
            &[],
            json!({"username": "mallory", "password": "nope"}),
        );
        assert_error(s1, &wrong, 401);
        assert_error(s2, &unknown, 401);
        assert_eq!(wrong, unknown, "{path}: the answers must not tell which");
    }
}

#[test]
fn a_login_body_without_username_and_password_is_400_json() {
    let srv = TestServer::start();
    for path in ["/api/login", "/app/login"] {
        let url = format!("{}{path}", srv.http);
        let (status, body) = post_json(&url, &[], json!({"username": "alice"}));
        assert_error(status, &body, 400);
        let (status, _, body) = split(post_raw(
            &url,
            &[("Content-Type", "application/json")],
            "{not json",
        ));
        assert_error(status, &body, 400);
    }
}

#[test]
fn missing_credentials_are_401_json() {
    let srv = TestServer::start();
    let (status, body) = browser_session(&srv, "nonsense", "web");
    assert_error(status, &body, 401);
    let (status, body) = app_session(&srv, &[], "phone");
    assert_error(status, &body, 401);
    let (status, body) = app_session(&srv, &[("token", &"0".repeat(64))], "phone");
    assert_error(status, &body, 401);
}

#[test]
fn an_unknown_path_is_404_json() {
    let srv = TestServer::start();
    for path in [
        "/api/nothing",
        "/app/nothing",
        "/nothing",
        "/api/websocket/client/login",
    ] {
        let (status, headers, body) = split(get_raw(&format!("{}{path}", srv.http), &[]));
        assert_error(status, &body, 404);
        assert!(
            header(&headers, "content-type").is_some_and(|t| t.starts_with("application/json")),
            "{path}: {headers:?}"
        );
    }
    let (status, body) = post_json(&format!("{}/app/nothing", srv.http), &[], json!({}));
    assert_error(status, &body, 404);
}

#[test]
fn a_wrong_method_is_405_json_with_allow() {
    let srv = TestServer::start();
    for (path, allow) in [
        ("/api/login", "POST"),
        ("/app/login", "POST"),
        ("/api/logout", "POST"),
        ("/api/system/message", "POST"),
    ] {
        let (status, headers, body) = split(get_raw(&format!("{}{path}", srv.http), &[]));
        assert_error(status, &body, 405);
        assert_eq!(header(&headers, "allow"), Some(allow), "{path}");
    }
    let (status, headers, body) = split(post_raw(&format!("{}/api/users", srv.http), &[], ""));
    assert_error(status, &body, 405);
    assert_eq!(header(&headers, "allow"), Some("GET"));
}

#[test]
fn a_body_over_the_limit_is_413_json() {
    let srv = TestServer::start();
    let limit = srv.config.limits.max_message_bytes.max(16 * 1024);
    let big = format!(
        "{{\"username\":\"alice\",\"password\":\"{}\"}}",
        "x".repeat(limit)
    );
    for path in ["/api/login", "/app/login"] {
        let (status, _, body) = split(post_raw(
            &format!("{}{path}", srv.http),
            &[("Content-Type", "application/json")],
            &big,
        ));
        assert_error(status, &body, 413);
    }
}

#[test]
fn a_chunked_body_over_the_limit_is_413_json() {
    use std::io::{Read, Write};
    let srv = TestServer::start();
    let limit = srv.config.limits.max_message_bytes.max(16 * 1024);
    let addr = srv.http.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let chunk = "x".repeat(limit + 100);
    let request = format!(
        "POST /app/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    // The server may answer before reading everything; a failed write is
    // fine as long as the answer arrives.
    let _ = s.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    assert!(status_line.contains(" 413"), "{status_line}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or(Value::String(body.into()));
    assert_error(413, &body, 413);
}

#[test]
fn a_body_at_the_limit_is_read() {
    let srv = TestServer::start();
    let limit = srv.config.limits.max_message_bytes.max(16 * 1024);
    let (status, _, body) = split(post_raw(
        &format!("{}/app/login", srv.http),
        &[("Content-Type", "application/json")],
        &" ".repeat(limit),
    ));
    // Read and judged as a (bad) login body, not refused as too large.
    assert_error(status, &body, 400);
}

#[test]
fn healthz_answers_200_without_login() {
    let srv = TestServer::start();
    let (status, body) = get(&format!("{}/healthz", srv.http), &[]);
    assert_eq!(status, 200, "{body}");
}

// ---- clientName ----

#[test]
fn an_invalid_client_name_with_credentials_is_400() {
    let srv = TestServer::start();
    let token = srv.token("alice");
    let c = cookie(&srv, "alice");
    // As sent on the wire: a space and ü are percent-encoded in a path.
    for name in ["bad%20name", LONG_NAME, "a@b", "%C3%BC", "a%2Fb"] {
        let (status, body) = app_session(&srv, &[("token", &token)], name);
        assert_error(status, &body, 400);
        let (status, body) = browser_session(&srv, &c, name);
        assert_error(status, &body, 400);
    }
    // 64 characters is still fine.
    let (status, body) = app_session(&srv, &[("token", &token)], &LONG_NAME[1..]);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn an_invalid_client_name_without_credentials_is_401() {
    let srv = TestServer::start();
    for name in ["bad%20name", LONG_NAME, "a@b", "%C3%BC"] {
        let (status, body) = app_session(&srv, &[], name);
        assert_error(status, &body, 401);
        let (status, body) = get(
            &format!("{}/api/websocket/client/login/{name}", srv.http),
            &[],
        );
        assert_error(status, &body, 401);
    }
}

// ---- session ids ----

#[test]
fn a_session_id_registers_only_once() {
    let srv = TestServer::start();
    let sid = srv.session_id("alice", "phone");
    let mut first = Client::open(&srv.ws, "alice");
    first.register(&sid);
    assert_eq!(first.status("reg").0, 200);
    let mut second = Client::open(&srv.ws, "alice");
    second.register(&sid);
    let (code, msg) = second.status("reg");
    assert_eq!(code, 402, "{msg}");
    assert_eq!(second.expect_close(), (1008, "SESSION_ERROR".to_string()));
}

#[test]
fn a_failed_register_uses_the_session_id_up() {
    let srv = TestServer::start();
    let sid = srv.session_id("alice", "phone");
    // Registering alice's session id as bob fails (405) ...
    let mut wrong = Client::open(&srv.ws, "bob");
    wrong.register(&sid);
    assert_eq!(wrong.status("reg").0, 405);
    // ... and the id is gone afterwards.
    let mut right = Client::open(&srv.ws, "alice");
    right.register(&sid);
    assert_eq!(right.status("reg").0, 402);
}

#[test]
fn a_session_id_is_bound_to_the_client_name_it_was_issued_for() {
    let srv = TestServer::start();
    let token = srv.token("alice");
    let (status, body) = app_session(&srv, &[("token", &token)], "tablet.7_x-y");
    assert_eq!(status, 200, "{body}");
    let sid = body["sessionId"].as_str().expect("sessionId").to_string();
    let mut c = Client::open(&srv.ws, "alice");
    c.register(&sid);
    assert_eq!(c.status("reg").0, 200);
    let (status, body) = get(
        &format!("{}/api/websocket/online", srv.http),
        &[("token", &token)],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"users": [{"userId": "alice", "clients": ["tablet.7_x-y"]}]})
    );
}

#[test]
fn session_ids_asked_too_fast_are_503_with_retry_after() {
    let srv = TestServer::start_with(|c| c.limits.session_ids_per_s = 1.0);
    let token = srv.token("alice");
    let url = format!("{}/app/websocket/client/login/phone", srv.http);
    let (status, _, body) = split(get_raw(&url, &[("token", &token)]));
    assert_eq!(status, 200, "the first one is within the burst: {body}");
    let (status, headers, body) = split(get_raw(&url, &[("token", &token)]));
    assert_error(status, &body, 503);
    let retry = header(&headers, "retry-after").expect("Retry-After");
    assert!(
        retry.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After in seconds: {retry}"
    );
}

// ---- directory and presence ----

fn users_by_id(body: &Value) -> BTreeMap<String, bool> {
    body["users"]
        .as_array()
        .unwrap_or_else(|| panic!("users array: {body}"))
        .iter()
        .map(|u| {
            (
                u["userId"].as_str().expect("userId").to_string(),
                u["online"].as_bool().expect("online"),
            )
        })
        .collect()
}

#[test]
fn users_lists_every_user_with_online_matching_who_is_registered() {
    let srv = TestServer::start();
    let _alice = srv.client("alice", "web");
    let _carol = srv.client("carol", "phone");
    let token = srv.token("bob");
    let c = cookie(&srv, "bob");
    let expected: BTreeMap<String, bool> = USERS
        .iter()
        .map(|u| (u.to_string(), *u == "alice" || *u == "carol"))
        .collect();
    for creds in [("token", token.as_str()), ("Cookie", &cookie_header(&c))] {
        let (status, body) = get(&format!("{}/api/users", srv.http), &[creds]);
        assert_eq!(status, 200, "{}: {body}", creds.0);
        assert_eq!(users_by_id(&body), expected, "{}: {body}", creds.0);
    }
}

#[test]
fn online_lists_registered_users_and_their_client_names() {
    let srv = TestServer::start();
    let _a1 = srv.client("alice", "web-1");
    let _a2 = srv.client("alice", "phone");
    let _b = srv.client("bob", "phone");
    let c = cookie(&srv, "carol");
    let (status, body) = get(
        &format!("{}/api/websocket/online", srv.http),
        &[("Cookie", &cookie_header(&c))],
    );
    assert_eq!(status, 200, "{body}");
    let mut online: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for u in body["users"].as_array().expect("users array") {
        let mut clients: Vec<String> = u["clients"]
            .as_array()
            .expect("clients array")
            .iter()
            .map(|c| c.as_str().expect("clientName").to_string())
            .collect();
        clients.sort();
        online.insert(u["userId"].as_str().expect("userId").to_string(), clients);
    }
    let expected: BTreeMap<String, Vec<String>> = [
        (
            "alice".to_string(),
            vec!["phone".to_string(), "web-1".to_string()],
        ),
        ("bob".to_string(), vec!["phone".to_string()]),
    ]
    .into();
    assert_eq!(online, expected, "{body}");
}

#[test]
fn users_and_online_are_401_without_login() {
    let srv = TestServer::start();
    for path in ["/api/users", "/api/websocket/online"] {
        let url = format!("{}{path}", srv.http);
        let (status, body) = get(&url, &[]);
        assert_error(status, &body, 401);
        let (status, body) = get(&url, &[("token", &"a".repeat(64))]);
        assert_error(status, &body, 401);
        let (status, body) = get(&url, &[("Cookie", "edgeim_session=abc")]);
        assert_error(status, &body, 401);
    }
}

// ---- system messages ----

#[test]
fn system_message_is_404_without_a_configured_api_key() {
    let srv = TestServer::start();
    let (status, body) = system_message(
        &srv,
        Some(API_KEY),
        &json!({"to": "alice", "body": "hi"}).to_string(),
    );
    assert_error(status, &body, 404);
}

#[test]
fn system_message_without_or_with_a_wrong_key_is_401() {
    let srv = with_key();
    let msg = json!({"to": "alice", "body": "hi"}).to_string();
    let (status, body) = system_message(&srv, None, &msg);
    assert_error(status, &body, 401);
    let (status, body) = system_message(&srv, Some("0123456789abcdef-tesT"), &msg);
    assert_error(status, &body, 401);
    // A user's login token is not the api key.
    let token = srv.token("alice");
    let (status, body) = system_message(&srv, Some(&token), &msg);
    assert_error(status, &body, 401);
}

#[test]
fn system_message_checks_the_key_before_the_body() {
    let srv = with_key();
    let (status, body) = system_message(&srv, None, "{not json");
    assert_error(status, &body, 401);
}

#[test]
fn system_message_with_a_bad_body_is_400() {
    let srv = TestServer::start_with(|c| {
        c.api.key = Some(API_KEY.into());
        c.limits.max_recipients = 2;
    });
    for bad in [
        json!({"to": "alice,bob,carol", "body": "too many"}).to_string(),
        json!({"to": "SYSTEM", "body": "hi"}).to_string(),
        json!({"to": "mallory", "body": "hi"}).to_string(),
        json!({"to": "alice,mallory", "body": "hi"}).to_string(),
        json!({"to": "alice", "body": ""}).to_string(),
        json!({"to": "", "body": "hi"}).to_string(),
        json!({"to": "alice,,bob", "body": "hi"}).to_string(),
        json!({"to": "alice"}).to_string(),
        json!({"to": "alice", "body": 5}).to_string(),
        "{not json".to_string(),
        String::new(),
    ] {
        let (status, body) = system_message(&srv, Some(API_KEY), &bad);
        assert_error(status, &body, 400);
    }
}

#[test]
fn system_message_is_delivered_to_a_registered_client() {
    let srv = with_key();
    let mut alice = srv.client("alice", "web");
    let (status, body) = system_message(
        &srv,
        Some(API_KEY),
        &json!({"to": "alice", "body": "maintenance at 22:00"}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    assert!(!id.is_empty());
    let m = alice.next_message();
    assert_eq!(m["type"], 2001, "{m}");
    assert_eq!(m["isSystem"], true, "{m}");
    assert_eq!(m["from"], "SYSTEM", "{m}");
    assert_eq!(m["to"], "alice", "{m}");
    assert_eq!(m["id"], id.as_str(), "{m}");
    assert_eq!(m["body"], "maintenance at 22:00", "{m}");
    assert!(m["timestamp"].as_u64().is_some(), "{m}");
}

// ---- the users file, live ----

#[test]
fn a_user_removed_from_the_users_file_can_no_longer_use_its_logins() {
    let srv = TestServer::start();
    let token = srv.token("erin");
    let c = cookie(&srv, "erin");
    assert_eq!(app_session(&srv, &[("token", &token)], "phone").0, 200);
    let path = edgeim::users::path_in(&srv.config.data_dir);
    edgeim::users::remove(&path, "erin").expect("remove erin");
    let (status, body) = app_session(&srv, &[("token", &token)], "phone");
    assert_error(status, &body, 401);
    let (status, body) = browser_session(&srv, &c, "web");
    assert_error(status, &body, 401);
    let (status, body) = get(&format!("{}/api/users", srv.http), &[("token", &token)]);
    assert_error(status, &body, 401);
    // Nor log in again, and the directory no longer lists erin.
    let (status, body) = post_json(
        &format!("{}/app/login", srv.http),
        &[],
        json!({"username": "erin", "password": "pw-erin"}),
    );
    assert_error(status, &body, 401);
    let bob = srv.token("bob");
    let (_, body) = get(&format!("{}/api/users", srv.http), &[("token", &bob)]);
    assert!(!users_by_id(&body).contains_key("erin"), "{body}");
}

#[test]
fn changing_a_password_ends_the_logins_made_with_the_old_one_even_across_a_restart() {
    let mut srv = TestServer::start();
    let old_token = srv.token("erin");
    let old_cookie = cookie(&srv, "erin");
    let kept_token = srv.token("dave");
    let path = edgeim::users::path_in(&srv.config.data_dir);
    edgeim::users::set_password(&path, "erin", "new-password").expect("passwd erin");
    let (status, body) = app_session(&srv, &[("token", &old_token)], "phone");
    assert_error(status, &body, 401);
    let (status, body) = browser_session(&srv, &old_cookie, "web");
    assert_error(status, &body, 401);
    assert_eq!(
        app_session(&srv, &[("token", &kept_token)], "phone").0,
        200,
        "other users keep theirs"
    );
    let (status, body) = post_json(
        &format!("{}/app/login", srv.http),
        &[],
        json!({"username": "erin", "password": "new-password"}),
    );
    assert_eq!(status, 200, "{body}");
    let new_token = body["token"].as_str().expect("token").to_string();
    // A token made before a change made while the server was down ends too.
    srv.stop();
    edgeim::users::set_password(&path, "erin", "newer-password").expect("passwd erin again");
    srv.restart();
    let (status, body) = app_session(&srv, &[("token", &new_token)], "phone");
    assert_error(status, &body, 401);
    assert_eq!(app_session(&srv, &[("token", &kept_token)], "phone").0, 200);
}

#[test]
fn a_user_added_to_the_users_file_can_log_in_without_a_restart() {
    let srv = TestServer::start();
    let path = edgeim::users::path_in(&srv.config.data_dir);
    edgeim::users::add(&path, "frank", "pw-frank").expect("add frank");
    let (status, body) = post_json(
        &format!("{}/app/login", srv.http),
        &[],
        json!({"username": "frank", "password": "pw-frank"}),
    );
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    let (status, body) = get(&format!("{}/api/users", srv.http), &[("token", &token)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(users_by_id(&body).get("frank"), Some(&false), "{body}");
    let mut frank = srv.client("frank", "phone");
    frank.text("f1", "alice", "hello from frank");
    assert_eq!(frank.status("f1").0, 200);
}

#[test]
fn system_message_to_a_full_offline_queue_is_409() {
    let srv = TestServer::start_with(|c| {
        c.api.key = Some(API_KEY.into());
        c.limits.offline_per_user = 1;
    });
    let msg = json!({"to": "alice", "body": "one"}).to_string();
    let (status, body) = system_message(&srv, Some(API_KEY), &msg);
    assert_eq!(status, 200, "{body}");
    let (status, body) = system_message(&srv, Some(API_KEY), &msg);
    assert_error(status, &body, 409);
    assert!(
        body["msg"].as_str().unwrap_or_default().contains("alice"),
        "msg names who: {body}"
    );
}

#[test]
fn a_system_message_reaches_a_user_added_without_a_restart() {
    let srv = with_key();
    let path = edgeim::users::path_in(&srv.config.data_dir);
    edgeim::users::add(&path, "frank", "pw-frank").expect("add frank");
    // Nobody logged in since: the endpoint itself must see the new user.
    let (status, body) = system_message(
        &srv,
        Some(API_KEY),
        &json!({"to": "frank", "body": "welcome"}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let mut frank = srv.client("frank", "phone");
    let m = frank.next_message();
    assert_eq!(
        (m["from"].as_str(), m["body"].as_str()),
        (Some("SYSTEM"), Some("welcome"))
    );
}

#[test]
fn a_system_message_to_a_removed_user_is_400() {
    let srv = with_key();
    let path = edgeim::users::path_in(&srv.config.data_dir);
    edgeim::users::remove(&path, "erin").expect("remove erin");
    let (status, body) = system_message(
        &srv,
        Some(API_KEY),
        &json!({"to": "erin", "body": "are you there"}).to_string(),
    );
    assert_error(status, &body, 400);
}

#[test]
fn the_chat_page_is_served_with_its_type_a_strict_policy_and_an_etag() {
    let srv = TestServer::start();
    let resp = get_raw(&format!("{}/", srv.http), &[]);
    assert_eq!(resp.status, 200);
    let header = |name: &str| resp.header(name).unwrap_or_default().to_string();
    assert!(header("content-type").starts_with("text/html"));
    let csp = header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let ws_origin = srv
        .ws
        .rsplit_once('/')
        .map(|(o, _)| o)
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains(&format!("connect-src 'self' {ws_origin}")),
        "{csp} / {ws_origin}"
    );
    assert_eq!(header("x-frame-options"), "DENY");
    let etag = header("etag");
    assert!(etag.starts_with('"'), "{etag}");
    let again = get_raw(&format!("{}/", srv.http), &[("If-None-Match", &etag)]);
    assert_eq!(
        again.status, 304,
        "unchanged page is revalidated, not resent"
    );
    let js = get_raw(&format!("{}/app.js", srv.http), &[]);
    let js_type = js.header("content-type").unwrap_or_default().to_string();
    assert!(js_type.starts_with("text/javascript"), "{js_type}");
    let (status, body) = get(&format!("{}/nothing.js", srv.http), &[]);
    assert_eq!(status, 404, "{body}");
}

#[test]
fn the_page_learns_the_websocket_url_from_the_server() {
    let srv = TestServer::start();
    let (status, body) = get(&format!("{}/api/websocket/url", srv.http), &[]);
    assert_eq!(status, 200);
    assert_eq!(body["url"].as_str(), Some(srv.ws.as_str()));
    let proxied = TestServer::start_with(|c| {
        c.websocket.public_url = Some("wss://chat.example/websocket".into())
    });
    let (_, body) = get(&format!("{}/api/websocket/url", proxied.http), &[]);
    assert_eq!(body["url"], "wss://chat.example/websocket");
}
