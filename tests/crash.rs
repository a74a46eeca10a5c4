//! Crash safety (issue 3, PROTOCOL.md section 7): a power cut at any moment
//! loses nothing that the server acknowledged.
//!
//! The test runs the real binary, streams 2,000 texts from alice to bob (who
//! is offline) with up to [`WINDOW`] of them in flight, SIGKILLs the server
//! once alice has seen [`KILL_AFTER`] 9001 SUCCESS answers, restarts it on the
//! same data dir and checks what bob gets:
//!
//! 1. bob's backlog: every id that got SUCCESS, each once, in the order sent,
//!    nothing alice did not send (an id sent but not answered may be there or
//!    not); bob acknowledges each as he reads, with at most [`WINDOW`] of his
//!    acknowledgements unanswered (acknowledging faster is the subject of
//!    the other test in this file);
//! 2. bob registers again: nothing is redelivered (all acknowledged);
//! 3. alice resends every id that got no SUCCESS (as a sender does after a
//!    crash): SUCCESS for each, and bob gets exactly those he had not got,
//!    once each, in order.
//!
//! Bob knows he has everything without sleeping: alice sends a marker text
//! after the messages in question; one sender's texts arrive in the order
//! accepted, so when bob reads the marker everything before it has arrived.
//!
//! It takes well under a second in release mode. Run the file 20 times in a
//! row (issue 3's "done when"); add `every_message` after `--test crash` for
//! the crash-safety test alone:
//!
//! ```sh
//! for i in $(seq 20); do cargo test --release --test crash || break; done
//! ```

mod common;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{Client, register_on, status_answer, temp_dir};
use edgeim::users;
use serde_json::Value;
use tungstenite::Message;

use common::served::Served;
/// Texts alice means to send before the crash.
const TOTAL: usize = 2000;
/// The server is killed once alice has seen this many SUCCESS answers.
const KILL_AFTER: usize = 1000;
/// Texts sent but not yet answered, at most (well under the outbound queue
/// of 1024, so alice's answers never overflow it).
const WINDOW: usize = 200;
/// Frames one client reads in one phase, at most (a bound, never reached).
const MAX_FRAMES: usize = 40_000;

fn msg_id(i: usize) -> String {
    format!("m{i:04}")
}

fn msg_body(i: usize) -> String {
    format!("crash test message {i}")
}

/// The index of an id made by [`msg_id`].
fn index_of(id: &str) -> Option<usize> {
    let digits = id.strip_prefix('m')?;
    if digits.len() != 4 {
        return None;
    }
    digits.parse().ok()
}

/// A temp dir with a config (ports 0, high rate limits) whose data dir holds
/// alice and bob.
struct Setup {
    dir: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = temp_dir("crash");
        let data = dir.join("data");
        let config = dir.join("edgeim.toml");
        let text = format!(
            "data_dir = {}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
             [websocket]\nlisten = \"127.0.0.1:0\"\n\n\
             [limits]\nrate_per_s = 100000.0\nrate_burst = 100000.0\n\
             session_ids_per_s = 100000.0\n",
            toml_string(&data)
        );
        std::fs::write(&config, text).expect("write config");
        let file = users::path_in(&data);
        users::add(&file, "alice", "pw-alice-crash").expect("add alice");
        users::add(&file, "bob", "pw-bob-crash").expect("add bob");
        Setup { dir, config }
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

/// Logs in over HTTP and registers `user` as `client` (the harness times
/// out reads and writes on its sockets after `WAIT`).
fn connect(srv: &Served, user: &str, client: &str) -> Client {
    register_on(
        &srv.http,
        &srv.ws,
        user,
        &format!("pw-{user}-crash"),
        client,
    )
}

/// Closes the socket politely and reads until it ends (bounded).
fn close(mut c: Client) {
    let _ = c.ws.close(None);
    for _ in 0..64 {
        if c.ws.read().is_err() {
            return;
        }
    }
}

/// What alice saw of one stream of texts.
#[derive(Default)]
struct Answers {
    /// Indexes sent, in order.
    sent: Vec<usize>,
    /// Indexes answered SUCCESS.
    success: BTreeSet<usize>,
    /// Answers other than SUCCESS, or for ids never sent, or repeated.
    wrong: Vec<String>,
}

impl Answers {
    fn note(&mut self, m: &Value) {
        if m["type"] == 9101 {
            return; // a receipt from bob (phase 3): not an answer
        }
        let Some((id, code, msg)) = status_answer(m) else {
            self.wrong.push(format!("not a 9001: {m}"));
            return;
        };
        match index_of(&id) {
            Some(i) if code == 200 && self.sent.contains(&i) => {
                if !self.success.insert(i) {
                    self.wrong.push(format!("a second 9001 for {id}"));
                }
            }
            _ => self.wrong.push(format!("{id}: {code} {msg}")),
        }
    }

    fn answered(&self) -> usize {
        self.success.len() + self.wrong.len()
    }
}

/// Sends the texts `indexes` from alice to bob, keeping up to [`WINDOW`]
/// unanswered, until every one is answered or (with `stop_at`) that many
/// SUCCESS answers have been seen.
fn stream(alice: &mut Client, indexes: &[usize], stop_at: Option<usize>) -> Answers {
    let mut a = Answers::default();
    let mut next = indexes.iter();
    // Each round reads one frame; a frame answers at most one text, and bob's
    // receipts (phase 3) are at most one per text.
    for _ in 0..(2 * indexes.len() + 16) {
        if stop_at.is_some_and(|n| a.success.len() >= n) {
            return a;
        }
        while a.sent.len() - a.answered().min(a.sent.len()) < WINDOW {
            let Some(&i) = next.next() else { break };
            alice.text(&msg_id(i), "bob", &msg_body(i));
            a.sent.push(i);
        }
        if stop_at.is_none() && a.answered() >= indexes.len() {
            return a;
        }
        let m = alice.recv();
        a.note(&m);
    }
    panic!(
        "the stream did not finish: sent {}, {} SUCCESS, wrong {:?}",
        a.sent.len(),
        a.success.len(),
        a.wrong
    );
}

/// Reads what is left in alice's socket after the server died: answers the
/// server wrote before the kill count as SUCCESS seen.
fn drain_after_kill(alice: &mut Client, a: &mut Answers) {
    for _ in 0..(WINDOW + 64) {
        match alice.ws.read() {
            Ok(Message::Text(t)) => {
                let m: Value = serde_json::from_str(&t).expect("server sent JSON");
                a.note(&m);
            }
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => {}
        }
    }
    panic!("alice's socket did not end after the kill");
}

/// Sends one text and waits for its SUCCESS.
fn send_marker(alice: &mut Client, id: &str) {
    alice.text(id, "bob", &format!("marker {id}"));
    let st = alice.status(id);
    assert_eq!(st.0, 200, "marker {id}: {st:?}");
}

/// Bob reads texts until `marker`, acknowledging each (the marker too) as he
/// reads, with at most `ack_window` of his 9101s unanswered (the others wait
/// in his own queue), and waits for the SUCCESS of every acknowledgement.
/// Returns the indexes read before the marker, in arrival order (duplicates
/// kept).
fn read_until(bob: &mut Client, marker: &str, ack_window: usize) -> Vec<usize> {
    let mut got = Vec::new();
    let mut to_ack: VecDeque<String> = VecDeque::new();
    let mut acks_unanswered: HashMap<String, usize> = HashMap::new();
    let mut in_flight = 0;
    let mut seen_marker = false;
    for _ in 0..MAX_FRAMES {
        while in_flight < ack_window {
            let Some(id) = to_ack.pop_front() else { break };
            bob.ack(&id, "alice");
            *acks_unanswered.entry(id).or_default() += 1;
            in_flight += 1;
        }
        if seen_marker && in_flight == 0 && to_ack.is_empty() {
            return got;
        }
        let m = match bob.ws.read() {
            Ok(Message::Text(t)) => serde_json::from_str::<Value>(&t).expect("server sent JSON"),
            Ok(Message::Close(c)) => panic!(
                "bob was closed ({c:?}) before {marker}, after reading {} texts, with {in_flight} \
                 of his 9101s unanswered",
                got.len(),
            ),
            Ok(_) => continue,
            Err(e) => panic!("bob: read failed before {marker} (timeout?): {e}"),
        };
        if let Some((id, code, msg)) = status_answer(&m) {
            assert_eq!(code, 200, "bob's 9101 for {id}: {code} {msg}");
            let n = acks_unanswered
                .get_mut(&id)
                .unwrap_or_else(|| panic!("a 9001 for {id}, which bob did not acknowledge"));
            *n -= 1;
            if *n == 0 {
                acks_unanswered.remove(&id);
            }
            in_flight -= 1;
            continue;
        }
        assert_eq!(m["type"], 2001, "bob got {m}");
        assert_eq!(m["from"], "alice", "{m}");
        assert_eq!(m["to"], "bob", "{m}");
        assert_eq!(m["isSystem"], false, "{m}");
        let id = m["id"].as_str().expect("id").to_string();
        assert!(!seen_marker, "{id} came after the marker {marker}");
        if id == marker {
            seen_marker = true;
        } else {
            let i = index_of(&id).unwrap_or_else(|| panic!("bob got an unknown id: {m}"));
            assert_eq!(m["body"], msg_body(i), "the body of {id}");
            got.push(i);
        }
        to_ack.push_back(id);
    }
    panic!("bob did not reach {marker}: got {} texts", got.len());
}

/// Ids in a short form for failure messages.
fn some(ids: impl IntoIterator<Item = usize>) -> String {
    let all: Vec<String> = ids.into_iter().map(msg_id).collect();
    let shown = all.len().min(20);
    format!("{} ids: {:?}", all.len(), &all[..shown])
}

/// Asserts `got` has each index once, in increasing order.
fn assert_once_in_order(got: &[usize], what: &str) {
    let mut dups = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for &i in got {
        if !seen.insert(i) {
            dups.insert(i);
        }
    }
    assert!(dups.is_empty(), "{what}: delivered twice: {}", some(dups));
    let out_of_order: Vec<usize> = got
        .windows(2)
        .filter(|w| w[0] >= w[1])
        .map(|w| w[1])
        .collect();
    assert!(
        out_of_order.is_empty(),
        "{what}: out of order (each after a later id): {}",
        some(out_of_order)
    );
}

#[test]
fn every_message_acknowledged_before_a_sigkill_is_delivered_once_in_order_after_restart() {
    let started = Instant::now();
    let setup = Setup::new();

    // Phase 0: alice streams to bob, offline; the server dies midway.
    let mut srv = Served::start(&setup.config, None);
    let mut alice = connect(&srv, "alice", "phone");
    let all: Vec<usize> = (0..TOTAL).collect();
    let mut before = stream(&mut alice, &all, Some(KILL_AFTER));
    let st = srv.kill_hard();
    assert_eq!(st.signal(), Some(9), "the server died of SIGKILL: {st:?}");
    drain_after_kill(&mut alice, &mut before);
    drop(alice);
    assert!(
        before.wrong.is_empty(),
        "alice got answers other than SUCCESS before the kill: {:?}",
        before.wrong
    );
    let sent: BTreeSet<usize> = before.sent.iter().copied().collect();
    let acked = before.success.clone(); // S
    assert!(acked.len() >= KILL_AFTER);
    let unanswered: Vec<usize> = sent.difference(&acked).copied().collect();
    eprintln!(
        "crash: sent {} texts, {} SUCCESS before the kill, {} unanswered ({:?})",
        sent.len(),
        acked.len(),
        unanswered.len(),
        started.elapsed()
    );
    drop(srv);

    // Phase 1: restart on the same data dir; bob reads his backlog.
    let mut srv = Served::start(&setup.config, None);
    let mut alice = connect(&srv, "alice", "phone");
    send_marker(&mut alice, "end1");
    close(alice);
    let mut bob = connect(&srv, "bob", "laptop");
    let backlog = read_until(&mut bob, "end1", WINDOW);
    close(bob);
    let got: BTreeSet<usize> = backlog.iter().copied().collect();
    let lost: Vec<usize> = acked.difference(&got).copied().collect();
    assert!(
        lost.is_empty(),
        "acknowledged with SUCCESS before the kill but not delivered after the restart: {} \
         (bob got {} texts)\nserver log:\n{}",
        some(lost.iter().copied()),
        backlog.len(),
        srv.tail()
    );
    let unsent: Vec<usize> = got.difference(&sent).copied().collect();
    assert!(
        unsent.is_empty(),
        "delivered but never sent: {}",
        some(unsent)
    );
    assert_once_in_order(&backlog, "bob's backlog after the restart");

    // Phase 2: bob acknowledged everything: a new register gets nothing
    // before the next marker.
    let mut alice = connect(&srv, "alice", "phone");
    send_marker(&mut alice, "end2");
    let mut bob = connect(&srv, "bob", "laptop");
    let again = read_until(&mut bob, "end2", WINDOW);
    assert!(
        again.is_empty(),
        "redelivered after bob acknowledged them: {}",
        some(again)
    );

    // Phase 3: alice resends what got no SUCCESS; bob gets exactly what he
    // had not got, once each, in order.
    let resent = stream(&mut alice, &unanswered, None);
    assert!(
        resent.wrong.is_empty(),
        "answers to resends other than one SUCCESS each: {:?}",
        resent.wrong
    );
    assert_eq!(resent.success.len(), unanswered.len());
    send_marker(&mut alice, "end3");
    let late = read_until(&mut bob, "end3", WINDOW);
    let expected: Vec<usize> = unanswered
        .iter()
        .copied()
        .filter(|i| !got.contains(i))
        .collect();
    assert_once_in_order(&late, "bob's texts after alice's resends");
    let late_set: BTreeSet<usize> = late.iter().copied().collect();
    let delivered_again: Vec<usize> = late_set.intersection(&got).copied().collect();
    assert!(
        delivered_again.is_empty(),
        "a resend of a text bob already had was delivered again: {}",
        some(delivered_again)
    );
    assert_eq!(
        late,
        expected,
        "bob gets exactly the resent texts he had not got ({} expected, {} got)",
        expected.len(),
        late.len()
    );
    close(bob);
    close(alice);
    eprintln!(
        "crash: bob got {} in his backlog ({} of them unanswered before the kill), {} after \
         the resends; {:?} in all",
        backlog.len(),
        backlog.len() - acked.len(),
        late.len(),
        started.elapsed()
    );
}

/// Section 7 asks a client to acknowledge each text it receives, and a
/// client coming back to a big backlog does so as fast as it reads. Its
/// answers come back in bursts (one per group commit); the server must not
/// take such a burst for a client that does not read (1008 `slow`).
#[test]
fn a_client_acknowledging_a_big_backlog_as_fast_as_it_reads_is_not_closed_as_slow() {
    const BACKLOG: usize = 3000;
    let setup = Setup::new();
    let srv = Served::start(&setup.config, None);
    let mut alice = connect(&srv, "alice", "phone");
    let all: Vec<usize> = (0..BACKLOG).collect();
    let sent = stream(&mut alice, &all, None);
    assert!(sent.wrong.is_empty(), "{:?}", sent.wrong);
    send_marker(&mut alice, "end");
    close(alice);
    let mut bob = connect(&srv, "bob", "phone");
    let got = read_until(&mut bob, "end", usize::MAX);
    assert_eq!(got, all, "bob's backlog, in order");
    close(bob);
}
