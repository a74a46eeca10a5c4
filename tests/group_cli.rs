//! `edgeim group`: against a running server (through its control socket:
//! changes apply at once and are announced to members online) and without
//! one (straight to the database: members get the news at register).

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::served::{Served, run_to_end, write_config};
use common::{Client, send_ok};

/// A data dir with the test users, and a config file for the binary
/// beside it (the shared harness's).
struct Setup {
    data: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let c = common::test_config(tag);
        Setup {
            config: write_config(&c),
            data: c.data_dir,
        }
    }

    /// `edgeim group ARGS --config FILE`.
    fn group(&self, args: &[&str]) -> Output {
        let mut all = vec!["group"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", self.config.to_str().expect("utf-8")]);
        run_to_end(&self.data, &all, "")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(&self.config);
    }
}

fn connect(srv: &Served, user: &str) -> Client {
    let token = common::login(&srv.http, user, &common::password(user));
    let sid = common::session_id_with(&srv.http, &token, "cli-test");
    common::registered(&srv.ws, user, "cli-test", &sid)
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "edgeim group failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The next text a client gets, acknowledged.
fn next_text(c: &mut Client) -> serde_json::Value {
    let m = c.next_message();
    assert_eq!(m["type"], 2001, "{m}");
    let from = m["from"].as_str().unwrap_or_default().to_string();
    let id = m["id"].as_str().unwrap_or_default().to_string();
    c.ack(&id, &from);
    m
}

#[test]
fn group_commands_change_a_running_server_at_once_and_are_announced() {
    let s = Setup::new("group-cli-live");
    let srv = Served::start(&s.config, None);
    let mut bob = connect(&srv, "bob");
    let out = stdout(&s.group(&[
        "add",
        "ops",
        "--title",
        "Operations",
        "--members",
        "alice,bob",
    ]));
    assert!(out.contains("#ops  Operations"), "{out}");
    let m = next_text(&mut bob);
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str()),
        (Some("SYSTEM"), Some("#ops"))
    );
    assert_eq!(m["isSystem"], true);
    assert_eq!(
        m["body"],
        "the administrator created the group Operations with alice, bob"
    );
    // The server routes by the new group at once.
    let mut alice = connect(&srv, "alice");
    send_ok(&mut alice, "g1", "#ops", "hello ops");
    assert_eq!(next_text(&mut bob)["body"], "hello ops");
    // carol joins: she is told, and so is bob.
    let out = stdout(&s.group(&["members", "ops", "--add", "carol", "--owners", "bob"]));
    assert!(
        out.contains("bob (owner)") && out.contains("carol"),
        "{out}"
    );
    assert_eq!(
        next_text(&mut bob)["body"],
        "the administrator added carol; the administrator made bob an owner"
    );
    // bob, the only owner, is removed: he hears it, and the longest-standing
    // member takes over.
    stdout(&s.group(&["members", "ops", "--remove", "bob"]));
    assert_eq!(
        next_text(&mut bob)["body"],
        "the administrator removed bob; alice is now an owner"
    );
    let list = stdout(&s.group(&["list"]));
    assert_eq!(list, "#ops  Operations  (2 members)\n");
    let show = stdout(&s.group(&["show", "ops"]));
    assert_eq!(show, "#ops  Operations\nmembers: alice (owner), carol\n");
    assert_eq!(stdout(&s.group(&["remove", "ops"])), "removed\n");
    assert_eq!(stdout(&s.group(&["list"])), "");
}

#[test]
fn without_a_server_group_commands_change_the_database_and_members_get_it_at_register() {
    let s = Setup::new("group-cli-offline");
    stdout(&s.group(&["add", "dev", "--members", "bob"]));
    assert_eq!(
        stdout(&s.group(&["show", "dev"])),
        "#dev  dev\nmembers: bob\n",
        "without --owners a group the administrator makes has none"
    );
    let srv = Served::start(&s.config, None);
    let mut bob = connect(&srv, "bob");
    assert_eq!(
        next_text(&mut bob)["body"],
        "the administrator created the group dev with bob"
    );
}

#[test]
fn a_refused_group_command_exits_1_with_one_line_saying_why() {
    let s = Setup::new("group-cli-errors");
    for (args, why) in [
        (
            &["add", "ops", "--members", "ghost"][..],
            "unknown user: ghost",
        ),
        (&["add", "Ops"][..], "bad group name"),
        (&["show", "nope"][..], "no group #nope"),
        (&["members", "nope", "--add", "bob"][..], "no such group"),
    ] {
        let out = s.group(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(why) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
