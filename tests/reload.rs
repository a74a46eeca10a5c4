//! `systemctl reload edgeim`: SIGHUP rereads the config file and the users
//! file (issue 11; docs/CONFIG.md, "Reloading"). Each test runs the real
//! binary, changes its files, sends SIGHUP and waits for the log line that
//! says the reload is over before it looks at what changed.

#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::served::{Served, run_to_end};
use common::{Client, WAIT, login, password, post_json, register_on, session_id_with};
use serde_json::json;

/// A data dir with the test users, and the config file the server reads.
struct Setup {
    data: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let data = common::test_config(tag).data_dir;
        let config = data.with_extension("toml");
        let s = Setup { data, config };
        s.write("", "");
        s
    }

    /// Writes the config: loopback port 0, `top` among the top-level keys
    /// and `limits` in `[limits]`, with generous rates unless it sets them.
    fn write(&self, top: &str, limits: &str) {
        self.write_raw(&self.text(top, limits));
    }

    fn text(&self, top: &str, limits: &str) -> String {
        let mut l = limits.to_string();
        for (key, value) in [
            ("rate_per_s", "100000.0"),
            ("rate_burst", "100000.0"),
            ("session_ids_per_s", "100000.0"),
        ] {
            if !limits.contains(key) {
                l.push_str(&format!("{key} = {value}\n"));
            }
        }
        format!(
            "data_dir = {:?}\n{top}\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
             [websocket]\nlisten = \"127.0.0.1:0\"\n\n[limits]\n{l}",
            self.data.to_str().expect("utf-8 temp path")
        )
    }

    fn write_raw(&self, text: &str) {
        // Through a rename, as an editor or a config manager would.
        let tmp = self.config.with_extension("toml.new");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    fn start(&self) -> Served {
        Served::start(&self.config, None)
    }

    /// `edgeim user ARGS NAME --config FILE`, the password on stdin.
    fn user(&self, action: &str, name: &str, stdin: &str) {
        let config = self.config.to_str().expect("utf-8 temp path");
        let out = run_to_end(
            &self.data,
            &["user", action, name, "--config", config],
            stdin,
        );
        assert!(
            out.status.success(),
            "user {action} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(&self.config);
    }
}

/// SIGHUP, then the rest of the log line that says the reload is done.
fn reload(s: &mut Served) -> String {
    s.signal("HUP");
    s.wait_for("reloaded config ")
}

/// The status of `POST /app/login`.
fn login_status(http: &str, user: &str, pass: &str) -> u16 {
    let body = json!({"username": user, "password": pass});
    post_json(&format!("{http}/app/login"), &[], body).0
}

/// Registers `user` as `client` on the served server and returns the
/// register's answer (code, msg), whatever it is.
fn try_register(s: &Served, user: &str, client: &str) -> (Client, (i64, String)) {
    let token = login(&s.http, user, &password(user));
    let sid = session_id_with(&s.http, &token, client);
    let mut c = Client::registering(&s.ws, user, &sid);
    let answer = c.status(edgeim::client::frames::REGISTER_ID);
    (c, answer)
}

#[test]
fn a_user_added_logs_in_and_a_removed_one_is_logged_out_and_disconnected() {
    let setup = Setup::new("reload-users");
    let mut s = setup.start();
    let mut alice = register_on(&s.http, &s.ws, "alice", &password("alice"), "web");
    let alice_token = login(&s.http, "alice", &password("alice"));
    let mut bob = register_on(&s.http, &s.ws, "bob", &password("bob"), "web");

    setup.user("add", "frank", "pw-frank-1\n");
    setup.user("remove", "alice", "");
    let done = reload(&mut s);
    // The five test users, less alice, plus frank.
    assert!(done.contains("; 5 users;"), "{done}");
    assert!(
        done.contains("1 logged out, 1 connections closed"),
        "{done}"
    );

    login(&s.http, "frank", "pw-frank-1");
    assert_eq!(login_status(&s.http, "alice", &password("alice")), 401);
    assert_eq!(alice.expect_close(), (1008, "user removed".to_string()));
    // Her token ended with her: no session id for it.
    let (status, _) = common::get(
        &format!("{}/app/websocket/client/login/web", s.http),
        &[("Authorization", &format!("Bearer {alice_token}"))],
    );
    assert_eq!(status, 401);
    // Nobody else was touched.
    common::expect_nothing_before(&mut bob, "still-here");
}

#[test]
fn a_changed_password_takes_effect_for_the_next_login() {
    let setup = Setup::new("reload-passwd");
    let mut s = setup.start();
    let mut bob = register_on(&s.http, &s.ws, "bob", &password("bob"), "web");
    setup.user("passwd", "bob", "a-new-password\n");
    let done = reload(&mut s);
    assert!(
        done.contains("0 logged out, 0 connections closed"),
        "{done}"
    );
    assert_eq!(login_status(&s.http, "bob", &password("bob")), 401);
    login(&s.http, "bob", "a-new-password");
    // The connection made with the old password stays open.
    common::expect_nothing_before(&mut bob, "still-here");
}

#[test]
fn new_limits_apply_to_the_connections_and_registers_after_the_reload() {
    let setup = Setup::new("reload-limits");
    setup.write("", "max_clients_per_user = 1\nrate_per_s = 0.001\n");
    let mut s = setup.start();
    let (mut web, answer) = try_register(&s, "alice", "web");
    assert_eq!(answer.0, 200, "{answer:?}");
    let (_, refused) = try_register(&s, "alice", "phone");
    assert_eq!(refused.0, 400, "one client only: {refused:?}");

    setup.write(
        "",
        "max_clients_per_user = 2\nrate_per_s = 0.001\nrate_burst = 3.0\n",
    );
    let done = reload(&mut s);
    assert!(
        done.contains("applied limits.max_clients_per_user, limits.rate_burst"),
        "{done}"
    );
    let (mut phone, answer) = try_register(&s, "alice", "phone");
    assert_eq!(answer.0, 200, "two clients now: {answer:?}");
    // The new connection has a bucket of 3 (at 0.001/s), and its register
    // took one: the third text is refused.
    for id in ["m1", "m2"] {
        common::send_ok(&mut phone, id, "bob", "hi");
    }
    phone.text("m3", "bob", "hi");
    let (code, msg) = phone.status("m3");
    assert!(
        code == 400 && msg.starts_with("rate limit:"),
        "{code} {msg}"
    );
    // The connection opened before keeps the burst it started with.
    for i in 0..5 {
        common::send_ok(&mut web, &format!("w{i}"), "bob", "hi");
    }
}

#[test]
fn keys_that_need_a_restart_are_named_and_keep_their_running_value() {
    let setup = Setup::new("reload-restart");
    let mut s = setup.start();
    let elsewhere = setup.data.with_extension("elsewhere");
    let text = setup
        .text("", "")
        .replacen(
            &format!("{:?}", setup.data.to_str().expect("utf-8")),
            &format!("{:?}", elsewhere.to_str().expect("utf-8")),
            1,
        )
        .replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1);
    setup.write_raw(&text);
    s.signal("HUP");
    let warning = s.wait_for("reload: ");
    assert_eq!(
        warning,
        "data_dir, http.listen changed; they take effect at the next restart"
    );
    let done = s.wait_for("reloaded config ");
    assert!(done.contains("no reloadable key changed"), "{done}");
    // Still on the old port and the old data: bob logs in there.
    login(&s.http, "bob", &password("bob"));
    assert!(!elsewhere.exists(), "the new data_dir is not made");
    // Named again at the next reload: the server still runs the old value.
    s.signal("HUP");
    assert_eq!(s.wait_for("reload: "), warning);
    s.wait_for("reloaded config ");
}

#[test]
fn a_wrong_config_is_refused_whole_and_the_server_runs_on_as_it_was() {
    let setup = Setup::new("reload-wrong");
    setup.write("", "max_clients_per_user = 1\n");
    let mut s = setup.start();
    let (_web, answer) = try_register(&s, "alice", "web");
    assert_eq!(answer.0, 200, "{answer:?}");

    // A change that would apply, next to a value that is refused.
    setup.write("", "max_clients_per_user = 2\nrate_burst = 0.5\n");
    s.signal("HUP");
    let why = s.wait_for("reload: config ");
    assert!(
        why.contains("limits.rate_burst must be a number at least 1")
            && why.ends_with("keeping the running config"),
        "{why}"
    );
    let (_, refused) = try_register(&s, "alice", "phone");
    assert_eq!(refused.0, 400, "still one client only: {refused:?}");

    // A users file with a bad line is refused the same way, config and all.
    setup.write("", "max_clients_per_user = 2\n");
    let users = edgeim::users::path_in(&setup.data);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&users)
        .expect("open users");
    file.write_all(b"not a user line\n").expect("append");
    drop(file);
    s.signal("HUP");
    let why = s.wait_for("reload: users file ");
    assert!(
        why.contains("keeping the running config and users"),
        "{why}"
    );
    let (_, refused) = try_register(&s, "alice", "phone");
    assert_eq!(refused.0, 400, "still one client only: {refused:?}");
}

/// Makes the WebSocket listener refuse a handshake, and waits until it
/// has answered (and so logged it, at debug).
fn failed_handshake(s: &Served) {
    let addr =
        s.ws.strip_prefix("ws://")
            .and_then(|a| a.split('/').next())
            .expect("ws://host:port/...");
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    tcp.write_all(
        b"GET /not-the-context HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("write");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(!answer.is_empty(), "the handshake is answered");
}

#[test]
fn log_level_changes_on_reload() {
    let setup = Setup::new("reload-log");
    let mut s = setup.start();
    // At info, a refused handshake is not logged: the login after it is
    // the next line.
    failed_handshake(&s);
    login(&s.http, "bob", &password("bob"));
    s.wait_for("bob logged in");
    assert!(
        !s.log.iter().any(|l| l.contains("handshake failed")),
        "{:#?}",
        s.log
    );

    setup.write("log_level = \"debug\"", "");
    assert!(reload(&mut s).contains("applied log_level"));
    failed_handshake(&s);
    s.wait_for("handshake failed");

    // At warn, info lines stop: the login between two reloads is not
    // logged, and the warnings of both are (a key that waits for a
    // restart makes one).
    let text = setup.text("log_level = \"warn\"", "").replacen(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:1\"",
        1,
    );
    setup.write_raw(&text);
    s.signal("HUP");
    s.wait_for("reload: http.listen changed");
    let from = s.log.len();
    login(&s.http, "carol", &password("carol"));
    s.signal("HUP");
    s.wait_for("reload: http.listen changed");
    let between = &s.log[from..];
    assert!(
        !between.iter().any(|l| l.contains("logged in")),
        "{between:#?}"
    );
}

/// The socket systemd would listen on for the notify protocol.
fn notify_socket(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    (socket, path)
}

/// The next notify message containing `what`.
fn expect_notify(socket: &UnixDatagram, what: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let n = socket.recv(&mut buf).expect("a notify message in time");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.contains(what) {
            return m;
        }
    }
    panic!("no {what:?} from edgeim within {WAIT:?}");
}

#[test]
fn systemd_hears_reloading_then_ready() {
    let setup = Setup::new("reload-notify");
    let (socket, path) = notify_socket(&setup.data);
    let sock = path.to_str().expect("utf-8 temp path");
    let mut s = Served::start_env(&setup.config, None, &[("NOTIFY_SOCKET", sock)]);
    expect_notify(&socket, "READY=1");
    s.signal("HUP");
    expect_notify(&socket, "RELOADING=1");
    let ready = expect_notify(&socket, "READY=1");
    assert!(ready.contains("STATUS=http on 127.0.0.1:"), "{ready}");
    s.wait_for("reloaded config ");
    // A refused reload ends in READY too: the server runs on.
    setup.write_raw("log_level = \"loud\"\n");
    s.signal("HUP");
    expect_notify(&socket, "RELOADING=1");
    expect_notify(&socket, "READY=1");
    s.wait_for("reload: config ");
}
