//! The `edgeim` binary: user management, config errors, exit codes, and a
//! real server process stopped by signals.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::served::{Served, run_to_end};
use common::{Client, get, post_json, temp_dir};
use edgeim::users;
use serde_json::json;

/// How long the server may take to exit after SIGTERM/SIGINT.
const EXIT_WITHIN: Duration = Duration::from_secs(2);

/// A temp dir with a config whose data dir is `DIR/data`, on port 0.
struct Setup {
    dir: PathBuf,
    config: PathBuf,
    data: PathBuf,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let dir = temp_dir(tag);
        let data = dir.join("data");
        let config = dir.join("edgeim.toml");
        let text = format!(
            "data_dir = {}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[websocket]\nlisten = \"127.0.0.1:0\"\n",
            toml_string(&data)
        );
        std::fs::write(&config, text).expect("write config");
        Setup { dir, config, data }
    }

    fn users_file(&self) -> PathBuf {
        users::path_in(&self.data)
    }

    fn config_arg(&self) -> &str {
        self.config.to_str().expect("utf-8 temp path")
    }

    /// Runs `edgeim user ARGS --config FILE` with `stdin`.
    fn user(&self, args: &[&str], stdin: &str) -> Output {
        let mut all = vec!["user"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", self.config_arg()]);
        run(&self.dir, &all, stdin)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TOML basic string for a path (temp paths are plain ASCII).
fn toml_string(p: &Path) -> String {
    let s = p.to_str().expect("utf-8 temp path");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the binary to completion in `cwd`, `stdin` piped in; bounded by WAIT.
fn run(cwd: &Path, args: &[&str], stdin: &str) -> Output {
    run_to_end(cwd, args, stdin)
}

/// Asserts a failed run: exit `code` and exactly one line on stderr; returns it.
fn one_line_failure(out: &Output, code: i32) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got: {err:?}");
    lines[0].to_string()
}

// ---- user management ----

#[test]
fn user_add_reads_the_password_from_stdin_and_stores_only_an_argon2id_hash() {
    let s = Setup::new("cli-add");
    let out = s.user(&["add", "zoe"], "Zoe's s3cret pass\n");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let file = std::fs::read_to_string(s.users_file()).expect("users file");
    assert!(file.contains("zoe:$argon2id$"), "{file}");
    assert!(
        !file.contains("s3cret"),
        "the password is in the file: {file}"
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!said.contains("s3cret"), "the password was echoed: {said}");
    let dir = users::Directory::open(s.users_file()).expect("open users");
    assert_eq!(
        dir.verify("zoe", "Zoe's s3cret pass")
            .map(|(u, _)| u.to_string()),
        Some("zoe".into()),
        "the password is the line without its line ending"
    );
}

#[cfg(unix)]
#[test]
fn the_users_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new("cli-mode");
    assert!(s.user(&["add", "zoe"], "pw-zoe-long\n").status.success());
    let mode = std::fs::metadata(s.users_file())
        .expect("users file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn user_list_prints_every_user() {
    let s = Setup::new("cli-list");
    assert!(s.user(&["add", "zoe"], "pw-zoe-long\n").status.success());
    assert!(s.user(&["add", "yann"], "pw-yann-long\n").status.success());
    let out = s.user(&["list"], "");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let mut listed: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    listed.sort();
    assert_eq!(listed, vec!["yann".to_string(), "zoe".to_string()]);
}

#[test]
fn user_passwd_changes_the_password() {
    let s = Setup::new("cli-passwd");
    assert!(s.user(&["add", "zoe"], "old-pass\n").status.success());
    let out = s.user(&["passwd", "zoe"], "new pass\r\n");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let file = std::fs::read_to_string(s.users_file()).expect("users file");
    assert!(!file.contains("new pass"), "{file}");
    let dir = users::Directory::open(s.users_file()).expect("open users");
    assert_eq!(
        dir.verify("zoe", "new pass").map(|(u, _)| u.to_string()),
        Some("zoe".into())
    );
    assert_eq!(
        dir.verify("zoe", "old-pass"),
        None,
        "the old password still works"
    );
}

#[test]
fn user_remove_removes_the_user() {
    let s = Setup::new("cli-remove");
    assert!(s.user(&["add", "zoe"], "pw-zoe-long\n").status.success());
    assert!(s.user(&["add", "yann"], "pw-yann-long\n").status.success());
    let out = s.user(&["remove", "zoe"], "");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let file = std::fs::read_to_string(s.users_file()).expect("users file");
    assert!(!file.contains("zoe"), "{file}");
    assert!(file.contains("yann:$argon2id$"), "{file}");
    assert_eq!(text(&s.user(&["list"], "").stdout).trim(), "yann");
}

#[test]
fn adding_an_existing_user_fails_with_exit_1_and_a_clear_message() {
    let s = Setup::new("cli-exists");
    assert!(s.user(&["add", "zoe"], "first-pass\n").status.success());
    let before = std::fs::read_to_string(s.users_file()).expect("users file");
    let out = s.user(&["add", "zoe"], "second-pass\n");
    let line = one_line_failure(&out, 1);
    assert!(
        line.starts_with("edgeim: ") && line.contains("zoe") && line.contains("already exists"),
        "{line}"
    );
    let after = std::fs::read_to_string(s.users_file()).expect("users file");
    assert_eq!(before, after, "the failed add changed the file");
}

#[test]
fn an_invalid_user_name_fails_and_adds_nothing() {
    let s = Setup::new("cli-badname");
    for name in ["bad name", "SYSTEM", "a:b", "ü", ""] {
        let out = s.user(&["add", name], "pw\n");
        assert!(!out.status.success(), "{name:?} was accepted");
        let err = text(&out.stderr);
        assert!(err.starts_with("edgeim: "), "{name:?}: {err}");
        assert!(err.contains("invalid user id"), "{name:?}: {err}");
    }
    assert!(users::list(&s.users_file()).expect("list").is_empty());
}

#[test]
fn an_empty_password_is_refused() {
    let s = Setup::new("cli-emptypw");
    let out = s.user(&["add", "zoe"], "\n");
    let line = one_line_failure(&out, 1);
    assert!(line.contains("password is empty"), "{line}");
    assert!(users::list(&s.users_file()).expect("list").is_empty());
}

#[test]
fn removing_or_repassing_a_missing_user_fails_with_exit_1() {
    let s = Setup::new("cli-missing");
    let line = one_line_failure(&s.user(&["remove", "zoe"], ""), 1);
    assert!(line.contains("no user zoe"), "{line}");
    let line = one_line_failure(&s.user(&["passwd", "zoe"], "pw\n"), 1);
    assert!(line.contains("no user zoe"), "{line}");
}

// ---- command line and config errors ----

#[test]
fn a_missing_config_file_is_exit_2_with_one_line_naming_it() {
    let dir = temp_dir("cli-nocfg");
    let missing = dir.join("nowhere.toml");
    let m = missing.to_str().expect("utf-8");
    for args in [vec!["--config", m], vec!["user", "list", "--config", m]] {
        let out = run(&dir, &args, "");
        let line = one_line_failure(&out, 2);
        assert_eq!(
            line,
            format!("edgeim: config {m}: no such file or directory (os error 2)"),
            "{args:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_config_key_is_exit_2_with_one_line_naming_file_key_and_line() {
    let s = Setup::new("cli-unknownkey");
    std::fs::write(
        &s.config,
        "log_level = \"info\"\n\n[limits]\nmax_recipient = 5\n",
    )
    .expect("write config");
    let line = one_line_failure(&run(&s.dir, &["--config", s.config_arg()], ""), 2);
    assert!(
        line.starts_with(&format!("edgeim: config {}: ", s.config_arg())),
        "{line}"
    );
    assert!(
        line.contains("line 4") && line.contains("max_recipient"),
        "{line}"
    );
}

#[test]
fn a_wrong_type_in_the_config_is_exit_2_with_one_line_naming_file_and_line() {
    let s = Setup::new("cli-wrongtype");
    std::fs::write(&s.config, "[limits]\n\nmax_recipients = \"many\"\n").expect("write config");
    let line = one_line_failure(&run(&s.dir, &["--config", s.config_arg()], ""), 2);
    assert!(
        line.starts_with(&format!("edgeim: config {}: ", s.config_arg())),
        "{line}"
    );
    assert!(line.contains("line 3"), "{line}");
}

#[test]
fn an_invalid_config_value_is_exit_2_with_one_line_naming_the_key() {
    let s = Setup::new("cli-badvalue");
    std::fs::write(&s.config, "[api]\nkey = \"short\"\n").expect("write config");
    let line = one_line_failure(&run(&s.dir, &["--config", s.config_arg()], ""), 2);
    assert!(
        line.starts_with(&format!("edgeim: config {}: ", s.config_arg()))
            && line.contains("api.key"),
        "{line}"
    );
}

#[test]
fn help_prints_the_usage_and_exits_0() {
    let dir = temp_dir("cli-help");
    for flag in ["--help", "-h"] {
        let out = run(&dir, &[flag], "");
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let usage = text(&out.stdout);
        assert!(
            usage.contains("USAGE") && usage.contains("edgeim user add NAME"),
            "{flag}: {usage}"
        );
    }
    let out = run(&dir, &["--version"], "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("edgeim {}", env!("CARGO_PKG_VERSION"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_command_or_option_is_exit_2() {
    let dir = temp_dir("cli-unknown");
    for args in [
        vec!["frobnicate"],
        vec!["--bogus"],
        vec!["user"],
        vec!["user", "add"],
    ] {
        let out = run(&dir, &args, "");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).starts_with("edgeim: "), "{args:?}");
    }
    assert!(text(&run(&dir, &["frobnicate"], "").stderr).contains("frobnicate"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- the binary serving ----

/// Logs in over HTTP and registers a WebSocket client; returns it with
/// the token and session id used.
fn connect(srv: &Served, user: &str, pass: &str, client: &str) -> (Client, String, String) {
    let token = common::login(&srv.http, user, pass);
    let sid = common::session_id_with(&srv.http, &token, client);
    let c = common::registered(&srv.ws, user, client, &sid);
    (c, token, sid)
}

/// Reads until the socket ends, so tungstenite sends its close reply.
fn finish_close(c: &mut Client) {
    for _ in 0..16 {
        if c.ws.read().is_err() {
            return;
        }
    }
}

fn served_setup(tag: &str) -> Setup {
    let s = Setup::new(tag);
    users::add(&s.users_file(), "alice", "pw-alice-cli").expect("add alice");
    users::add(&s.users_file(), "bob", "pw-bob-cli").expect("add bob");
    s
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_0_within_2_s() {
    let s = served_setup("cli-term");
    let mut srv = Served::start(&s.config, None);
    let (mut alice, _, _) = connect(&srv, "alice", "pw-alice-cli", "phone");
    let (mut bob, _, _) = connect(&srv, "bob", "pw-bob-cli", "web");
    alice.text("m1", "bob", "hello over the binary");
    assert_eq!(alice.status("m1").0, 200);
    assert_eq!(bob.next_message()["body"], "hello over the binary");

    srv.signal("TERM");
    let deadline = Instant::now() + EXIT_WITHIN;
    for c in [&mut alice, &mut bob] {
        let (code, reason) = c.expect_close();
        assert_eq!(code, 1001, "{}: reason {reason:?}", c.user);
        assert_eq!(reason, "server shutting down");
        finish_close(c);
    }
    let st = srv.exit_by(deadline);
    assert_eq!(st.code(), Some(0), "{st:?}; log: {:#?}", srv.log);
}

#[test]
fn sigint_closes_clients_with_1001_and_exits_0_within_2_s() {
    let s = served_setup("cli-int");
    let mut srv = Served::start(&s.config, None);
    let (mut alice, _, _) = connect(&srv, "alice", "pw-alice-cli", "phone");
    srv.signal("INT");
    let deadline = Instant::now() + EXIT_WITHIN;
    assert_eq!(alice.expect_close().0, 1001);
    finish_close(&mut alice);
    let st = srv.exit_by(deadline);
    assert_eq!(st.code(), Some(0), "{st:?}; log: {:#?}", srv.log);
}

#[test]
fn sigterm_without_clients_exits_0_within_2_s() {
    let s = served_setup("cli-term-idle");
    let mut srv = Served::start(&s.config, None);
    srv.signal("TERM");
    let st = srv.exit_by(Instant::now() + EXIT_WITHIN);
    assert_eq!(st.code(), Some(0), "{st:?}; log: {:#?}", srv.log);
}

/// Runs a server at `level` through logins (good, wrong, unknown, browser),
/// registers, a replayed session id, a text and a logout, stops it, and
/// returns its whole log with the secrets it must not contain.
fn log_of_a_busy_server(level: &str) -> (String, Vec<(&'static str, String)>) {
    let s = served_setup(&format!("cli-log-{level}"));
    let mut srv = Served::start(&s.config, Some(level));
    let (mut alice, token, sid) = connect(&srv, "alice", "pw-alice-cli", "phone");
    let (mut bob, bob_token, bob_sid) = connect(&srv, "bob", "pw-bob-cli", "web");
    let resp = common::post_raw(
        &format!("{}/api/login", srv.http),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "username=alice&password=pw-alice-cli",
    );
    assert_eq!(resp.status, 200);
    let set_cookie = resp.header("set-cookie").expect("Set-Cookie").to_string();
    let cookie = set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("edgeim_session="))
        .expect("edgeim_session")
        .to_string();
    let (status, body) = get(
        &format!("{}/api/websocket/client/login/tab", srv.http),
        &[("Cookie", &format!("edgeim_session={cookie}"))],
    );
    assert_eq!(status, 200);
    let tab_sid = body["sessionId"].as_str().expect("sessionId").to_string();
    for (user, pass) in [
        ("alice", "wrong-guess-4711"),
        ("mallory", "mallory-pass-0815"),
    ] {
        let (status, _) = post_json(
            &format!("{}/app/login", srv.http),
            &[],
            json!({"username": user, "password": pass}),
        );
        assert_eq!(status, 401);
    }
    let mut replay = Client::open(&srv.ws, "alice");
    replay.register(&sid);
    assert_eq!(replay.status("reg").0, 402);
    assert_eq!(replay.expect_close().0, 1008);
    finish_close(&mut replay);
    alice.text("m1", "bob", "private words 9931");
    assert_eq!(alice.status("m1").0, 200);
    assert_eq!(bob.next_message()["id"], "m1");
    let (status, _) = post_json(
        &format!("{}/app/logout", srv.http),
        &[("token", &bob_token)],
        json!({}),
    );
    assert_eq!(status, 200);

    srv.signal("TERM");
    let deadline = Instant::now() + EXIT_WITHIN;
    for c in [&mut alice, &mut bob] {
        assert_eq!(c.expect_close().0, 1001);
        finish_close(c);
    }
    assert_eq!(srv.exit_by(deadline).code(), Some(0));
    let log = srv.whole_log();
    assert!(
        log.contains("registered") && log.contains("logged in"),
        "the log was captured: {log}"
    );
    let secrets = vec![
        ("alice's password", "pw-alice-cli".to_string()),
        ("bob's password", "pw-bob-cli".to_string()),
        ("a wrong password", "wrong-guess-4711".to_string()),
        (
            "an unknown user's password",
            "mallory-pass-0815".to_string(),
        ),
        ("alice's token", token),
        ("bob's token", bob_token),
        ("the cookie", cookie),
        ("alice's session id", sid),
        ("bob's session id", bob_sid),
        ("the browser's session id", tab_sid),
        ("a message text", "private words 9931".to_string()),
    ];
    (log, secrets)
}

fn assert_no_secrets(log: &str, secrets: &[(&str, String)]) {
    let found: Vec<&str> = secrets
        .iter()
        .filter(|(_, secret)| log.contains(secret.as_str()))
        .map(|(what, _)| *what)
        .collect();
    assert!(found.is_empty(), "the log contains {found:?}:\n{log}");
}

#[test]
fn the_log_never_contains_a_password_a_token_a_cookie_a_session_id_or_a_text() {
    let (log, secrets) = log_of_a_busy_server("debug");
    assert!(log.contains("DEBUG"), "EDGEIM_LOG=debug was obeyed: {log}");
    assert_no_secrets(&log, &secrets);
}

#[test]
fn even_the_trace_log_never_contains_a_session_id_or_a_text() {
    // tungstenite traces every frame; its log is capped at debug.
    let (log, secrets) = log_of_a_busy_server("trace");
    assert!(log.contains("DEBUG"), "EDGEIM_LOG=trace was obeyed: {log}");
    assert_no_secrets(&log, &secrets);
}

#[test]
fn a_normal_start_with_an_empty_data_dir_creates_no_users() {
    let s = Setup::new("cli-empty");
    let mut srv = Served::start(&s.config, None);
    for (user, pass) in [
        ("alice", "alice-demo"),
        ("bob", "bob-demo"),
        ("admin", "admin"),
    ] {
        let (status, body) = post_json(
            &format!("{}/app/login", srv.http),
            &[],
            json!({"username": user, "password": pass}),
        );
        assert_eq!(status, 401, "{user} logged in: {body}");
    }
    srv.signal("TERM");
    assert_eq!(srv.exit_by(Instant::now() + EXIT_WITHIN).code(), Some(0));
    let users = users::list(&s.users_file()).expect("users file readable or absent");
    assert!(users.is_empty(), "a normal start created {users:?}");
}
