//! systemd's notify protocol, against a socket the test binds as systemd
//! would: READY once the server serves, watchdog pings that stop when the
//! router is stuck, STOPPING at shutdown (issue 11, "systemd").

#![cfg(unix)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::served::{Served, write_config};
use common::{WAIT, login, password, test_config};

/// The socket systemd would listen on, and the messages it gets.
struct Manager {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Manager {
    fn bind() -> Manager {
        let path = common::temp_dir("notify").join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Manager { socket, path }
    }

    /// The next message, if one comes within `wait`.
    fn next(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Waits for a message containing `what`; returns it.
    fn expect(&self, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        while let Some(m) = self.next(deadline.saturating_duration_since(Instant::now())) {
            if m.contains(what) {
                return m;
            }
        }
        panic!("no {what:?} from edgeim within {WAIT:?}");
    }

    /// Whether a message containing `what` comes within `wait`.
    fn any_within(&self, what: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while let Some(m) = self.next(deadline.saturating_duration_since(Instant::now())) {
            if m.contains(what) {
                return true;
            }
        }
        false
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn start(manager: &Manager, fault: Option<&str>) -> Served {
    let config = test_config("notify");
    let file = write_config(&config);
    let socket = manager.path.to_str().expect("utf-8 path").to_string();
    let mut env = vec![
        ("NOTIFY_SOCKET", socket.as_str()),
        ("WATCHDOG_USEC", "200000"),
    ];
    if let Some(f) = fault {
        env.push(("EDGEIM_FAULT", f));
    }
    Served::start_env(&file, None, &env)
}

#[test]
fn ready_once_serving_then_watchdog_pings_then_stopping() {
    let manager = Manager::bind();
    let mut srv = start(&manager, None);
    let ready = manager.expect("READY=1");
    assert!(ready.contains("STATUS=http on 127.0.0.1:"), "{ready}");
    manager.expect("WATCHDOG=1");
    manager.expect("WATCHDOG=1");
    srv.signal("TERM");
    manager.expect("STOPPING=1");
    assert_eq!(srv.exit_by(Instant::now() + WAIT).code(), Some(0));
}

#[test]
fn a_stuck_router_stops_the_watchdog_pings() {
    let manager = Manager::bind();
    let srv = start(&manager, Some("router-stall"));
    manager.expect("READY=1");
    manager.expect("WATCHDOG=1");
    // Asking for a session id makes the router stick, as a deadlock would.
    let token = login(&srv.http, "alice", &password("alice"));
    let http = srv.http.clone();
    std::thread::spawn(move || {
        let _ = common::request(
            "GET",
            &format!("{http}/app/websocket/client/login/web"),
            &[("token", &token)],
            "",
        );
    });
    // The pings come every 100 ms while it works; one in flight may still
    // arrive, then none for several periods.
    let _ = manager.any_within("WATCHDOG=1", Duration::from_millis(300));
    assert!(
        !manager.any_within("WATCHDOG=1", Duration::from_millis(1500)),
        "a stuck router must stop the watchdog pings"
    );
}
