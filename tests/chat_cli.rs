//! `edgeim chat`: the real binary against an in-process server, typed into
//! through a pipe, its stdout read line by line.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::json;

/// How many unrelated lines `expect` skips before giving up.
const MAX_LINES: usize = 100;

/// The `edgeim chat` process.
struct Terminal {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Terminal {
    /// Starts `edgeim chat alice ... --client term` and types the password.
    fn start(srv: &TestServer, password: &str) -> Terminal {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgeim"))
            .args(["chat", "alice", "--server", &srv.http, "--ws", &srv.ws])
            .args(["--client", "term"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn edgeim chat");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut t = Terminal {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
        };
        t.type_line(password);
        t
    }

    /// Starts alice's terminal and waits until it is registered.
    fn connected(srv: &TestServer) -> Terminal {
        let t = Terminal::start(srv, "pw-alice");
        t.expect("connected as alice");
        t
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("type a line");
        stdin.flush().expect("flush stdin");
    }

    /// The next stdout line that starts with `prefix`; others are skipped.
    fn expect(&self, prefix: &str) -> String {
        for _ in 0..MAX_LINES {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
        panic!("no line starting with {prefix:?} in {MAX_LINES} lines");
    }

    /// Waits for the process to end: (exit code, stderr).
    fn exit(mut self) -> (Option<i32>, String) {
        self.stdin = None;
        for _ in 0..MAX_LINES {
            match self.lines.recv_timeout(WAIT) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("edgeim chat did not exit"),
            }
        }
        let status = self.child.wait().expect("wait for edgeim chat");
        let stderr = self.stderr.take().map(|h| h.join().expect("stderr thread"));
        (status.code(), stderr.unwrap_or_default())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn chat_prints_connected_as_the_user_and_client() {
    let srv = TestServer::start();
    let t = Terminal::start(&srv, "pw-alice");
    assert_eq!(t.expect("connected"), "connected as alice (term)");
}

#[test]
fn a_typed_line_reaches_the_named_user_and_prints_a_check() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    let mut t = Terminal::connected(&srv);
    t.type_line("bob: hello from the terminal");
    let m = bob.next_message();
    assert_eq!(
        (m["type"].as_i64(), m["from"].as_str(), m["to"].as_str()),
        (Some(2001), Some("alice"), Some("bob"))
    );
    assert_eq!(m["body"], "hello from the terminal");
    let id = m["id"].as_str().expect("id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id {id} is a UUID");
    assert_eq!(t.expect("✓ "), format!("✓ {id}"));
}

#[test]
fn a_line_without_a_name_goes_to_the_previous_recipients() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    let mut carol = srv.client("carol", "phone");
    let mut t = Terminal::connected(&srv);
    t.type_line("bob,carol: first");
    t.type_line("second");
    for c in [&mut bob, &mut carol] {
        for body in ["first", "second"] {
            let m = c.next_message();
            assert_eq!(
                (m["to"].as_str(), m["body"].as_str()),
                (Some("bob,carol"), Some(body))
            );
        }
    }
}

#[test]
fn an_incoming_text_is_printed_and_acknowledged_to_its_sender() {
    let srv = TestServer::start();
    let mut t = Terminal::connected(&srv);
    let mut bob = srv.client("bob", "phone");
    bob.text("b1", "alice", "hi alice");
    assert_eq!(bob.status("b1").0, 200);
    assert_eq!(t.expect("bob: "), "bob: hi alice");
    let r = bob.next_message();
    assert_eq!(
        (
            r["type"].as_i64(),
            r["id"].as_str(),
            r["from"].as_str(),
            r["to"].as_str()
        ),
        (Some(9101), Some("b1"), Some("alice"), Some("bob"))
    );
    t.type_line("/quit");
}

#[test]
fn a_receipt_from_the_recipient_prints_two_checks() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    let mut t = Terminal::connected(&srv);
    t.type_line("bob: did you get this?");
    let m = bob.next_message();
    let id = m["id"].as_str().expect("id");
    bob.ack(id, "alice");
    assert_eq!(bob.status(id).0, 200);
    assert_eq!(t.expect("✓✓"), format!("✓✓ {id} read by bob"));
}

#[test]
fn a_refused_message_prints_a_cross_with_the_status() {
    let srv = TestServer::start();
    let mut t = Terminal::connected(&srv);
    t.type_line("ghost: anyone?");
    let line = t.expect("✗ ");
    assert!(
        line.ends_with(" 406 TO_ERROR: unknown user: ghost"),
        "{line}"
    );
}

#[test]
fn a_copy_from_another_device_of_the_user_prints_as_you() {
    let srv = TestServer::start();
    let _bob = srv.client("bob", "phone");
    let t = Terminal::connected(&srv);
    let mut phone = srv.client("alice", "phone");
    phone.text("p1", "bob", "sent from my phone");
    assert_eq!(phone.status("p1").0, 200);
    assert_eq!(t.expect("you "), "you → bob: sent from my phone");
}

#[test]
fn a_system_message_prints_as_system() {
    let key = "a-test-api-key-of-enough-length";
    let srv = TestServer::start_with(|c| c.api.key = Some(key.into()));
    let t = Terminal::connected(&srv);
    let auth = format!("Bearer {key}");
    let (status, body) = post_json(
        &format!("{}/api/system/message", srv.http),
        &[("Authorization", &auth)],
        json!({"to": "alice", "body": "maintenance at noon"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.expect("[system]"), "[system] maintenance at noon");
}

#[test]
fn who_lists_every_user_with_its_online_status() {
    let srv = TestServer::start();
    let _bob = srv.client("bob", "phone");
    let mut t = Terminal::connected(&srv);
    t.type_line("/who");
    assert_eq!(t.expect("[who] alice"), "[who] alice online");
    assert_eq!(t.expect("[who] bob"), "[who] bob online");
    assert_eq!(t.expect("[who] carol"), "[who] carol offline");
}

#[test]
fn a_wrong_password_exits_1_with_one_line_on_stderr() {
    let srv = TestServer::start();
    let t = Terminal::start(&srv, "not-the-password");
    let (code, stderr) = t.exit();
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "edgeim: chat: login failed: wrong username or password\n"
    );
}

#[test]
fn quit_closes_the_connection_and_exits_0() {
    let srv = TestServer::start();
    let mut t = Terminal::connected(&srv);
    t.type_line("/quit");
    let (code, stderr) = t.exit();
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
}

#[test]
fn the_end_of_input_exits_0() {
    let srv = TestServer::start();
    let t = Terminal::connected(&srv);
    let (code, stderr) = t.exit();
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
}
