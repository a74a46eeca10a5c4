//! A core thread that ends makes the process exit with status 1, saying
//! which, so that the service manager restarts it (issue 10, "Supervise").
//! Debug builds fail the thread named by `EDGEIM_FAULT` on purpose.

mod common;

use std::time::Instant;

use common::served::{Served, write_config};
use common::{WAIT, login, password, test_config};

/// Starts the binary with `EDGEIM_FAULT=thread`, makes it reach the fault
/// with `trigger`, and asserts exit status 1 with the thread named.
fn dies_when(thread: &str, trigger: impl FnOnce(&Served), expect: &str) {
    let config = test_config("supervise");
    let file = write_config(&config);
    let mut srv = Served::start_env(&file, None, &[("EDGEIM_FAULT", thread)]);
    trigger(&srv);
    let status = srv.exit_by(Instant::now() + WAIT);
    let log = srv.whole_log();
    assert_eq!(status.code(), Some(1), "{thread}: {log}");
    assert!(
        log.contains(&format!(
            "{expect}; stopping so that the service manager restarts edgeim"
        )),
        "{thread}: {log}"
    );
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_store_that_dies_ends_the_process_with_status_1() {
    // A login is the store's first op.
    dies_when(
        "store",
        |srv| {
            let _ = common::request(
                "POST",
                &format!("{}/app/login", srv.http),
                &[("Content-Type", "application/json")],
                &serde_json::json!({"username": "alice", "password": password("alice")})
                    .to_string(),
            );
        },
        "the store thread panicked",
    );
}

#[test]
fn a_router_that_dies_ends_the_process_with_status_1() {
    // A session id is asked of the router.
    dies_when(
        "router",
        |srv| {
            let token = login(&srv.http, "alice", &password("alice"));
            let _ = common::request(
                "GET",
                &format!("{}/app/websocket/client/login/web", srv.http),
                &[("token", &token)],
                "",
            );
        },
        "the router thread panicked",
    );
}

#[test]
fn a_websocket_accept_thread_that_dies_ends_the_process_with_status_1() {
    dies_when(
        "ws-accept",
        |srv| {
            let host = srv.ws.trim_start_matches("ws://");
            let host = host.split('/').next().unwrap_or_default();
            let _ = std::net::TcpStream::connect(host);
        },
        "the websocket accept thread panicked",
    );
}

#[test]
fn an_http_accept_thread_that_dies_ends_the_process_with_status_1() {
    dies_when(
        "http-accept",
        |srv| {
            let host = srv.http.trim_start_matches("http://");
            let _ = std::net::TcpStream::connect(host);
        },
        "the HTTP listener stopped: the accept thread panicked",
    );
}

#[test]
fn a_signals_thread_that_ends_ends_the_process_with_status_1() {
    dies_when("signals", |_| {}, "the signals thread stopped");
}

#[test]
fn a_handler_that_panics_costs_its_request_a_500_not_a_worker() {
    let config = test_config("supervise");
    let file = write_config(&config);
    let srv = Served::start_env(&file, None, &[("EDGEIM_FAULT", "http-handler")]);
    // More panics than there are workers (4): each is answered.
    for _ in 0..8 {
        let r = common::request("GET", &format!("{}/healthz", srv.http), &[], "");
        assert_eq!(r.status, 500);
    }
    let r = common::request("GET", &format!("{}/api/websocket/url", srv.http), &[], "");
    assert_eq!(r.status, 200, "the workers still serve");
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_file(&file);
}

/// A closed tab (the socket dropped without a Close frame) is an ordinary
/// end, logged at info, not a protocol error.
#[test]
fn a_closed_tab_is_logged_as_gone_not_as_a_protocol_error() {
    let config = test_config("supervise");
    let file = write_config(&config);
    let mut srv = Served::start(&file, None);
    let c = common::register_on(&srv.http, &srv.ws, "alice", &password("alice"), "tab");
    drop(c);
    let why = srv.wait_for("closed: ");
    assert!(
        why.contains("the peer went away without a close"),
        "closed: {why}"
    );
    assert!(!why.contains("protocol error"), "closed: {why}");
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_file(&file);
}

/// A database a restart cannot fix exits 3, which the unit's
/// `RestartPreventExitStatus=` names, so systemd does not loop on it.
#[test]
fn a_garbage_database_exits_3_so_the_service_is_not_restarted_in_a_loop() {
    let config = test_config("supervise");
    std::fs::write(
        config.data_dir.join("edgeim.db"),
        b"this is not an SQLite database\n".repeat(200),
    )
    .expect("write garbage");
    let file = write_config(&config);
    let out = common::served::run_to_end(
        std::path::Path::new("/"),
        &["serve", "--config", file.to_str().expect("utf-8")],
        "",
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let unit = include_str!("../systemd/edgeim.service");
    assert!(
        unit.lines().any(|l| l == "RestartPreventExitStatus=2 3"),
        "the unit names exit 3"
    );
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_file(&file);
}

/// A demo that cannot bind says what to do and leaves no directory behind;
/// `--http-port`, `--ws-port` and `--listen` pick other addresses.
#[test]
fn a_demo_that_cannot_bind_suggests_other_ports_and_leaves_nothing_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let mut child = std::process::Command::new(common::served::BIN)
        .args(["demo", "--http-port", &port, "--ws-port", "0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn edgeim demo");
    let dir = std::env::temp_dir().join(format!("edgeim-demo-{}", child.id()));
    let mut err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
        let _ = tx.send(text);
    });
    // stderr closes when the demo exits; a demo that started would not.
    let Ok(stderr) = rx.recv_timeout(WAIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the demo started on a taken port");
    };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is another edgeim running?"), "{stderr}");
    assert!(!dir.exists(), "{} was left behind", dir.display());
    drop(taken);
}
