//! `edgeim chat`: the real binary against an in-process server, typed into
//! through a pipe, its stdout read line by line. The terminal runs with
//! `TZ=UTC`, so the times it prints are the server's timestamps in UTC.

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
            .env("TZ", "UTC")
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
        self.expect_where(&format!("starting with {prefix:?}"), |l| {
            l.starts_with(prefix)
        })
    }

    /// The next stdout line that contains `part`; others are skipped.
    fn expect_containing(&self, part: &str) -> String {
        self.expect_where(&format!("containing {part:?}"), |l| l.contains(part))
    }

    /// The next stdout line for which `wanted` holds; others are skipped.
    fn expect_where(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        for _ in 0..MAX_LINES {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no line {what}: {e}"),
            }
        }
        panic!("no line {what} in {MAX_LINES} lines");
    }

    /// The very next stdout line.
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no next line: {e}"))
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

/// A live text's line without its leading `HH:MM `; panics if it has none.
fn after_time(line: &str) -> &str {
    let (time, rest) = line.split_at_checked(6).unwrap_or(("", line));
    assert!(is_time(time), "{line:?} starts with HH:MM and a space");
    rest
}

/// A missed text's line without its leading `YYYY-MM-DD HH:MM `; panics
/// if it has none.
fn after_date_and_time(line: &str) -> (&str, &str) {
    let (stamp, rest) = line.split_at_checked(17).unwrap_or(("", line));
    let date_shape = stamp.len() == 17
        && stamp[..10].chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        })
        && &stamp[10..11] == " "
        && is_time(&stamp[11..]);
    assert!(
        date_shape,
        "{line:?} starts with YYYY-MM-DD HH:MM and a space"
    );
    (&stamp[..16], rest)
}

/// `HH:MM ` (with the space).
fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 6
        && b[2] == b':'
        && b[5] == b' '
        && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
}

/// `YYYY-MM-DD HH:MM` in UTC, counted day by day from 1970: a second way
/// to the date the chat computes, for the test to compare with.
fn utc_date_time(ms: i64) -> String {
    let (mut days, secs) = (ms / 86_400_000, ms / 1000 % 86_400);
    let mut year = 1970;
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let mut lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if leap(year) {
        lengths[1] = 29;
    }
    let mut month = 0;
    while days >= lengths[month] {
        days -= lengths[month];
        month += 1;
    }
    format!(
        "{year:04}-{:02}-{:02} {:02}:{:02}",
        month + 1,
        days + 1,
        secs / 3600,
        secs % 3600 / 60
    )
}

/// The server's timestamp of `user`'s newest text with `with`, from the
/// history API.
fn newest_timestamp(srv: &TestServer, user: &str, with: &str) -> i64 {
    let token = srv.token(user);
    let (status, body) = get(
        &format!("{}/api/message/history?with={with}&limit=1", srv.http),
        &[("token", &token)],
    );
    assert_eq!(status, 200, "{body}");
    body["messages"][0]["timestamp"]
        .as_i64()
        .unwrap_or_else(|| panic!("a timestamp in {body}"))
}

#[test]
fn chat_prints_connected_as_the_user_and_client() {
    let srv = TestServer::start();
    let t = Terminal::start(&srv, "pw-alice");
    assert_eq!(t.expect("connected"), "connected as alice (term)");
}

#[test]
fn a_typed_line_reaches_the_named_user_and_its_check_shows_the_text() {
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
    assert_eq!(t.expect("✓ "), "✓ to bob: hello from the terminal");
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
fn an_incoming_text_starts_with_its_time_and_sender_and_is_acknowledged() {
    let srv = TestServer::start();
    let mut t = Terminal::connected(&srv);
    let mut bob = srv.client("bob", "phone");
    bob.text("b1", "alice", "hi alice");
    assert_eq!(bob.status("b1").0, 200);
    assert_eq!(after_time(&t.expect_containing("<bob>")), "<bob> hi alice");
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
fn a_receipt_prints_two_checks_saying_who_received_which_text() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    let mut t = Terminal::connected(&srv);
    t.type_line("bob: did you get this?");
    let m = bob.next_message();
    let id = m["id"].as_str().expect("id");
    bob.ack(id, "alice");
    assert_eq!(bob.status(id).0, 200);
    assert_eq!(t.expect("✓✓"), "✓✓ bob received: did you get this?");
}

#[test]
fn a_refused_text_prints_a_cross_with_the_text_and_the_status() {
    let srv = TestServer::start();
    let mut t = Terminal::connected(&srv);
    t.type_line("ghost: anyone?");
    assert_eq!(
        t.expect("✗ "),
        "✗ to ghost: anyone? — 406 TO_ERROR: unknown user: ghost"
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
    assert_eq!(
        after_time(&t.expect_containing(" you ")),
        "you → bob: sent from my phone"
    );
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
    assert_eq!(
        after_time(&t.expect_containing("[system]")),
        "[system] maintenance at noon"
    );
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
fn chat_prints_a_usage_hint_after_it_connects() {
    let srv = TestServer::start();
    let t = Terminal::start(&srv, "pw-alice");
    t.expect("connected as alice");
    let mut hint = Vec::new();
    loop {
        let line = t.next_line();
        assert!(line.starts_with("[help] "), "{line:?}");
        let last = line.contains("/quit");
        hint.push(line);
        if last {
            break;
        }
    }
    let hint = hint.join("\n");
    for how in ["bob: hi", "bob,carol: hi", "#ops: hi", "/who", "/quit"] {
        assert!(hint.contains(how), "the hint shows {how:?}:\n{hint}");
    }
}

#[test]
fn help_shows_the_hint_again() {
    let srv = TestServer::start();
    let mut t = Terminal::connected(&srv);
    t.expect("[help] /who");
    t.type_line("/help");
    t.expect("[help] bob: hi");
}

#[test]
fn the_check_of_a_long_text_shows_its_start() {
    let srv = TestServer::start();
    let _bob = srv.client("bob", "phone");
    let mut t = Terminal::connected(&srv);
    t.type_line("bob: a text that is much longer than forty characters, truly");
    assert_eq!(
        t.expect("✓ "),
        "✓ to bob: a text that is much longer than forty ch…"
    );
}

#[test]
fn typed_lines_and_their_checks_are_marked_apart_from_received_texts() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    let mut t = Terminal::connected(&srv);
    t.type_line("bob: hi bob");
    let m = bob.next_message();
    // What alice typed read `bob: ...`; what became of it starts with a
    // check, and what she got reads `HH:MM <bob> ...`.
    assert_eq!(t.expect("✓ "), "✓ to bob: hi bob");
    bob.ack(m["id"].as_str().expect("id"), "alice");
    assert_eq!(t.expect("✓✓ "), "✓✓ bob received: hi bob");
    send_ok(&mut bob, "b1", "alice", "hi alice");
    let received = t.expect_containing("hi alice");
    assert_eq!(after_time(&received), "<bob> hi alice");
    assert!(!received.starts_with("bob:"), "{received}");
}

#[test]
fn a_text_to_several_users_names_them_all() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    let t = Terminal::connected(&srv);
    send_ok(&mut bob, "b1", "alice,carol", "hi both");
    assert_eq!(
        after_time(&t.expect_containing("hi both")),
        "<bob → alice,carol> hi both"
    );
}

#[test]
fn control_characters_in_a_peers_text_are_shown_escaped() {
    let srv = TestServer::start();
    let t = Terminal::connected(&srv);
    let mut bob = srv.client("bob", "phone");
    send_ok(
        &mut bob,
        "b1",
        "alice",
        "\u{1b}]0;pwned\u{7}\u{1b}[2Jclear\roverwrite\u{9b}31m\nsecond line\r\n12:00 <carol> fake",
    );
    let line = t.expect_containing("<bob>");
    assert_eq!(
        after_time(&line),
        "<bob> \\u{1b}]0;pwned\\u{7}\\u{1b}[2Jclear\\roverwrite\\u{9b}31m"
    );
    // A newline is shown as one: on an indented line, which no line the
    // client prints begins with.
    assert_eq!(t.next_line(), "    second line");
    assert_eq!(t.next_line(), "    12:00 <carol> fake");
}

#[test]
fn texts_missed_while_away_show_the_date_and_time_the_server_took_them() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    send_ok(&mut bob, "b1", "alice", "sent while you were away");
    let sent_at = newest_timestamp(&srv, "bob", "alice");
    let t = Terminal::connected(&srv);
    let missed = t.expect_containing("while you were away");
    assert_eq!(
        after_date_and_time(&missed),
        (
            utc_date_time(sent_at).as_str(),
            "<bob> sent while you were away"
        )
    );
    send_ok(&mut bob, "b2", "alice", "sent now");
    let live = t.expect_containing("sent now");
    assert_eq!(
        after_time(&live),
        "<bob> sent now",
        "a live text: the time only"
    );
}

#[test]
fn a_line_naming_no_group_after_a_hash_is_not_sent() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    let mut t = Terminal::connected(&srv);
    t.type_line("bob: first");
    t.type_line("#Ops: not for bob");
    t.type_line("second");
    t.expect("✓ to bob: first");
    t.expect("✓ to bob: second");
    assert_eq!(bob.next_message()["body"], "first");
    assert_eq!(bob.next_message()["body"], "second");
    t.type_line("/quit");
    let (code, stderr) = t.exit();
    assert_eq!(code, Some(0));
    assert_eq!(
        stderr,
        "edgeim: chat: #Ops is not a group (names are a-z, 0-9, '.', '_', '-'); not sent\n"
    );
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

/// The next text (2001) that `c` gets which is not a system announcement.
fn next_user_text(c: &mut Client) -> serde_json::Value {
    loop {
        let m = c.next_message();
        if m["type"] == 2001 && m["isSystem"] == false {
            return m;
        }
    }
}

#[test]
fn a_hash_name_line_sends_to_the_group_and_the_group_shows_on_its_lines() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    let mut carol = srv.client("carol", "phone");
    let mut t = Terminal::connected(&srv);
    let token = srv.token("alice");
    let (status, body) = post_json(
        &format!("{}/api/groups", srv.http),
        &[("token", &token)],
        json!({"name": "ops", "title": "Operations", "members": ["bob", "carol"]}),
    );
    assert_eq!(status, 201, "{body}");
    // The group's announcement: from SYSTEM to #ops.
    let created = t.expect_containing("[#ops]");
    assert!(
        after_time(&created).starts_with("[#ops] alice created"),
        "{created}"
    );
    t.type_line("#ops: hi all");
    t.type_line("and a second line");
    for c in [&mut bob, &mut carol] {
        for body in ["hi all", "and a second line"] {
            let m = next_user_text(c);
            assert_eq!(
                (m["from"].as_str(), m["to"].as_str(), m["body"].as_str()),
                (Some("alice"), Some("#ops"), Some(body))
            );
        }
    }
    assert_eq!(t.expect("✓ "), "✓ to #ops: hi all");
    assert_eq!(t.expect("✓ "), "✓ to #ops: and a second line");
    send_ok(&mut bob, "b1", "#ops", "hi from bob");
    assert_eq!(
        after_time(&t.expect_containing("hi from bob")),
        "<bob → #ops> hi from bob"
    );
}

#[test]
fn a_group_texts_receipts_say_which_member_received_it() {
    let srv = TestServer::start();
    let mut bob = srv.client("bob", "phone");
    let mut t = Terminal::connected(&srv);
    let token = srv.token("alice");
    let (status, body) = post_json(
        &format!("{}/api/groups", srv.http),
        &[("token", &token)],
        json!({"name": "ops", "members": ["bob"]}),
    );
    assert_eq!(status, 201, "{body}");
    t.type_line("#ops: did everyone get this?");
    let m = next_user_text(&mut bob);
    bob.ack(m["id"].as_str().expect("id"), "alice");
    assert_eq!(t.expect("✓✓ "), "✓✓ bob received: did everyone get this?");
}

#[test]
fn a_text_to_a_group_it_is_not_in_prints_the_servers_refusal() {
    let srv = TestServer::start();
    let bob_token = srv.token("bob");
    let (status, body) = post_json(
        &format!("{}/api/groups", srv.http),
        &[("token", &bob_token)],
        json!({"name": "dev", "members": ["carol"]}),
    );
    assert_eq!(status, 201, "{body}");
    let mut t = Terminal::connected(&srv);
    t.type_line("#nope: anyone?");
    assert_eq!(
        t.expect("✗ "),
        "✗ to #nope: anyone? — 406 TO_ERROR: unknown group #nope"
    );
    t.type_line("#dev: let me in");
    assert_eq!(
        t.expect("✗ "),
        "✗ to #dev: let me in — 406 TO_ERROR: not a member of #dev"
    );
}

#[test]
fn group_texts_missed_while_away_show_their_date_and_time() {
    let srv = TestServer::start();
    let bob_token = srv.token("bob");
    let (status, body) = post_json(
        &format!("{}/api/groups", srv.http),
        &[("token", &bob_token)],
        json!({"name": "ops", "members": ["alice"]}),
    );
    assert_eq!(status, 201, "{body}");
    let mut bob = srv.client("bob", "phone");
    send_ok(&mut bob, "b1", "#ops", "while you were away");
    let sent_at = newest_timestamp(&srv, "bob", "%23ops");
    let t = Terminal::connected(&srv);
    let announcement = t.expect_containing("[#ops]");
    let (_, announced) = after_date_and_time(&announcement);
    assert!(announced.starts_with("[#ops] bob created"), "{announced}");
    let missed = t.expect_containing("while you were away");
    assert_eq!(
        after_date_and_time(&missed),
        (
            utc_date_time(sent_at).as_str(),
            "<bob → #ops> while you were away"
        )
    );
}
