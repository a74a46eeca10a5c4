//! The store's decisions against a real SQLite file.

use std::path::{Path, PathBuf};

use super::history::{Before, With, history};
use super::messages::{Db, StoredMessage};
use super::open::open_connection;
use super::*;
use crate::wire::ids::{ClientKey, ClientName, GroupName, Origin, To, UserId};
use rusqlite::Connection;

struct TempDb {
    db: Db,
    dir: PathBuf,
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeim-db-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open(dir: &Path, limit: usize) -> Db {
    let conn = open_connection(&dir.join("edgeim.db")).unwrap();
    let limits = StoreLimits {
        offline_per_user: limit,
        retention_ms: 1000,
        forget_client_ms: 5000,
        commit_window: std::time::Duration::ZERO,
        groups: crate::store::groups::GroupLimits {
            max_members: 500,
            max_groups_per_user: 100,
        },
        known: crate::store::Known::everyone(),
    };
    Db::new(conn, limits).unwrap()
}

fn store(limit: usize) -> TempDb {
    let dir = temp_dir();
    TempDb {
        db: open(&dir, limit),
        dir,
    }
}

fn u(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}
fn key(user: &str, client: &str) -> ClientKey {
    ClientKey {
        user: u(user),
        client: ClientName::parse(client).unwrap(),
    }
}
fn text(from: &str, id: &str, to: &[&str]) -> NewMessage {
    NewMessage {
        origin: Origin::User(u(from)),
        id: id.into(),
        to: To::Users(to.iter().map(|t| u(t)).collect()),
        body: "hi".into(),
    }
}
fn ids(messages: &[StoredMessage]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

impl TempDb {
    /// Each call in its own committed transaction, like one batch.
    fn accept(
        &mut self,
        m: NewMessage,
        sender: Option<&ClientKey>,
        now: u64,
    ) -> Result<Accepted, Refused> {
        self.db.begin().unwrap();
        let r = self.db.accept(&m, sender, now).unwrap();
        self.db.commit().unwrap();
        r
    }
    fn attach(&mut self, k: &ClientKey, now: u64) -> Vec<String> {
        self.db.begin().unwrap();
        let r = self.db.attach(k, now).unwrap();
        self.db.commit().unwrap();
        ids(&r.messages)
    }
    fn receipt(&mut self, k: &ClientKey, from: &str, id: &str) -> Option<ReceiptOutcome> {
        self.db.begin().unwrap();
        let r = self
            .db
            .receipt(k, &Origin::parse(from).unwrap(), id)
            .unwrap();
        self.db.commit().unwrap();
        r
    }
    /// A clean-up at wall time and store age `now`: its tick first, as
    /// the store thread does, then every step.
    fn purge(&mut self, now: u64) {
        self.purge_at(now, now);
    }
    fn purge_at(&mut self, wall: u64, age: u64) {
        self.db.begin().unwrap();
        self.db.tick(age, wall).unwrap();
        while self.db.purge_step(wall, age, 2).unwrap() {}
        self.db.commit().unwrap();
    }
    /// Writes the rows of the recent texts up to `seq` now, whatever their
    /// age, in a batch of its own.
    fn write_behind_upto(&mut self, seq: i64) {
        self.db.begin().unwrap();
        if seq == i64::MAX {
            self.db.write_behind(true).unwrap();
        } else {
            self.db.write_behind_upto(seq).unwrap();
        }
        self.db.commit().unwrap();
    }
    fn mark(&self) -> i64 {
        self.db
            .conn
            .query_row("SELECT h FROM recent_mark", [], |r| r.get(0))
            .unwrap()
    }
    fn count(&self, table: &str) -> i64 {
        self.db
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }
}

#[test]
fn each_client_keeps_what_it_has_not_acknowledged() {
    let mut s = store(100);
    s.attach(&key("bob", "web"), 0);
    s.attach(&key("bob", "phone"), 0);
    s.accept(text("alice", "m1", &["bob"]), Some(&key("alice", "web")), 1)
        .unwrap();
    assert_eq!(
        s.receipt(&key("bob", "web"), "alice", "m1"),
        Some(ReceiptOutcome::Forward(u("alice")))
    );
    assert!(s.attach(&key("bob", "web"), 2).is_empty());
    assert_eq!(s.attach(&key("bob", "phone"), 2), ["m1"]);
    assert_eq!(
        s.receipt(&key("bob", "phone"), "alice", "m1"),
        Some(ReceiptOutcome::Recorded)
    );
    s.accept(text("alice", "m2", &["bob"]), None, 3).unwrap();
    assert_eq!(
        s.attach(&key("bob", "tablet"), 4),
        ["m2"],
        "a new client starts with what nobody acknowledged"
    );
}

#[test]
fn copies_go_to_the_senders_other_clients_and_are_never_receipts() {
    let mut s = store(100);
    s.attach(&key("alice", "web"), 0);
    s.attach(&key("alice", "phone"), 0);
    let Ok(Accepted::New { targets, .. }) =
        s.accept(text("alice", "m1", &["bob"]), Some(&key("alice", "web")), 1)
    else {
        panic!()
    };
    assert!(targets.iter().any(|t| t.user == u("alice") && t.copy));
    assert!(
        s.attach(&key("alice", "web"), 2).is_empty(),
        "the sender acked its own message"
    );
    assert_eq!(s.attach(&key("alice", "phone"), 2), ["m1"]);
    assert_eq!(
        s.receipt(&key("alice", "phone"), "alice", "m1"),
        Some(ReceiptOutcome::Recorded)
    );
    assert_eq!(s.db.unacked(&u("alice")), 0);
}

#[test]
fn resends_are_duplicates_and_unknown_receipts_are_refused() {
    let mut s = store(100);
    assert!(matches!(
        s.accept(text("alice", "m1", &["bob"]), None, 1),
        Ok(Accepted::New { .. })
    ));
    assert!(matches!(
        s.accept(text("alice", "m1", &["bob"]), None, 2),
        Ok(Accepted::Duplicate)
    ));
    assert!(matches!(
        s.accept(text("carol", "m1", &["bob"]), None, 2),
        Ok(Accepted::New { .. })
    ));
    assert_eq!(s.receipt(&key("bob", "web"), "alice", "nope"), None);
    assert_eq!(
        s.receipt(&key("dave", "web"), "alice", "m1"),
        None,
        "dave never received it"
    );
}

#[test]
fn the_offline_limit_refuses_whole_messages() {
    let mut s = store(2);
    s.accept(text("alice", "1", &["bob"]), None, 1).unwrap();
    s.accept(text("alice", "2", &["bob"]), None, 1).unwrap();
    assert_eq!(
        s.accept(text("alice", "3", &["carol", "bob"]), None, 1)
            .err(),
        Some(Refused::Full(vec![u("bob")]))
    );
    assert_eq!(s.db.unacked(&u("carol")), 0, "nothing was kept for carol");
    s.receipt(&key("bob", "web"), "alice", "1");
    assert!(s.accept(text("alice", "3", &["bob"]), None, 1).is_ok());
}

#[test]
fn state_survives_reopening_the_file() {
    let dir = temp_dir();
    {
        let mut s = TempDb {
            db: open(&dir, 2),
            dir: PathBuf::new(),
        };
        s.attach(&key("bob", "web"), 0);
        s.accept(text("alice", "m1", &["bob"]), None, 1).unwrap();
        s.accept(text("alice", "m2", &["bob"]), None, 1).unwrap();
    }
    let mut s = TempDb {
        db: open(&dir, 2),
        dir,
    };
    assert_eq!(
        s.db.unacked(&u("bob")),
        2,
        "counts are rebuilt from the file"
    );
    assert!(s.accept(text("alice", "m3", &["bob"]), None, 2).is_err());
    assert!(matches!(
        s.accept(text("alice", "m1", &["bob"]), None, 2),
        Ok(Accepted::Duplicate)
    ));
    assert_eq!(s.attach(&key("bob", "web"), 3), ["m1", "m2"]);
}

#[test]
fn purge_deletes_old_messages_and_forgets_idle_clients() {
    let mut s = store(100);
    s.attach(&key("bob", "old"), 0);
    for i in 0..5 {
        s.accept(text("alice", &format!("m{i}"), &["bob"]), None, 10)
            .unwrap();
    }
    // The clean-up that first sees them, then one a retention later.
    s.purge(10);
    s.purge(2000);
    assert_eq!(s.db.unacked(&u("bob")), 0);
    assert!(s.attach(&key("bob", "web"), 2000).is_empty());
    assert!(
        matches!(
            s.accept(text("alice", "m1", &["bob"]), None, 2000),
            Ok(Accepted::New { .. })
        ),
        "ids are forgotten with their messages"
    );
    s.receipt(&key("bob", "web"), "alice", "m1");
    s.purge(6000);
    // "old" was forgotten: it comes back as a new client, and gets only
    // what nobody acknowledged (nothing).
    assert!(s.attach(&key("bob", "old"), 6001).is_empty());
    let left: i64 =
        s.db.conn
            .query_row("SELECT COUNT(*) FROM pending", [], |r| r.get(0))
            .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn history_pages_newest_first_between_two_users() {
    let mut s = store(1000);
    // Accepted at t = 100, 101, ...: a0 b0 a1 b1 ... a4 b4 c g.
    let mut t = 100;
    for i in 0..5 {
        s.accept(text("alice", &format!("a{i}"), &["bob"]), None, t)
            .unwrap();
        s.accept(text("bob", &format!("b{i}"), &["alice"]), None, t + 1)
            .unwrap();
        t += 2;
    }
    s.accept(text("alice", "c", &["carol"]), None, t).unwrap();
    s.accept(text("alice", "g", &["bob", "carol"]), None, t + 1)
        .unwrap();
    let page = |s: &TempDb, before: u64, limit| {
        let with = With::parse("bob").unwrap();
        let before = Before {
            ms: before,
            seq: i64::MAX,
        };
        let h = history(&s.db.conn, &u("alice"), &with, before, limit).unwrap();
        h.into_iter().map(|m| m.message.id).collect::<Vec<_>>()
    };
    assert_eq!(page(&s, u64::MAX, 3), ["g", "b4", "a4"]);
    assert_eq!(page(&s, 103, 3), ["a1", "b0", "a0"], "before is exclusive");
    assert_eq!(page(&s, 100, 3), Vec::<String>::new());
    // The same pages once the texts' inbox rows are written (above, they
    // were found in `messages` past the mark), and with half of them.
    s.write_behind_upto(4);
    assert_eq!(page(&s, u64::MAX, 3), ["g", "b4", "a4"]);
    assert_eq!(page(&s, 104, 4), ["b1", "a1", "b0", "a0"]);
    s.write_behind_upto(i64::MAX);
    assert_eq!(page(&s, u64::MAX, 3), ["g", "b4", "a4"]);
    assert_eq!(page(&s, 103, 3), ["a1", "b0", "a0"]);
    s.accept(text("alice", "note", &["alice"]), None, 400)
        .unwrap();
    let all = Before {
        ms: u64::MAX,
        seq: i64::MAX,
    };
    let me = history(
        &s.db.conn,
        &u("alice"),
        &With::parse("alice").unwrap(),
        all,
        50,
    )
    .unwrap();
    let ids: Vec<String> = me.into_iter().map(|m| m.message.id).collect();
    assert_eq!(
        ids,
        ["note"],
        "with=me is notes to self, not everything sent"
    );
    let bob_view = history(
        &s.db.conn,
        &u("bob"),
        &With::parse("alice").unwrap(),
        all,
        100,
    )
    .unwrap();
    assert_eq!(bob_view.len(), 11, "both directions and the text to two");
    assert!(
        bob_view
            .iter()
            .all(|m| m.received_by.is_none() == (m.message.origin == "alice")),
        "receivedBy is on the caller's own texts only"
    );
}

#[test]
fn history_pages_are_exact_across_a_shared_millisecond_and_page_by_seq() {
    let mut s = store(10_000);
    for i in 0..1000 {
        // Ten texts per millisecond, as one commit stamps them.
        s.accept(
            text("bob", &format!("m{i}"), &["alice"]),
            None,
            1000 + i / 10,
        )
        .unwrap();
    }
    let with = With::parse("bob").unwrap();
    let mut before = Before {
        ms: u64::MAX,
        seq: i64::MAX,
    };
    let mut seen = Vec::new();
    loop {
        let page = history(&s.db.conn, &u("alice"), &with, before, 7).unwrap();
        assert_eq!(page.len(), 7.min(1000 - seen.len()), "an exact page");
        let Some(last) = page.last() else { break };
        before.seq = last.message.seq;
        seen.extend(page.into_iter().map(|m| m.message.id));
    }
    let expected: Vec<String> = (0..1000).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected, "every text once, newest first");
}

#[test]
fn a_version_1_file_is_migrated_with_its_data() {
    let dir = temp_dir();
    let path = dir.join("edgeim.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate(&mut conn, 1).unwrap();
        conn.execute("INSERT INTO messages (origin, id, recipients, body, ts) VALUES ('alice', 'm1', 'bob', 'hi', 5)", [])
                .unwrap();
        conn.execute(
            "INSERT INTO inbox (user, seq, state) VALUES ('bob', 1, 0)",
            [],
        )
        .unwrap();
    }
    let mut s = TempDb {
        db: open(&dir, 100),
        dir,
    };
    let v: i64 =
        s.db.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
    assert_eq!(v, schema::VERSION);
    assert_eq!(s.attach(&key("bob", "web"), 10), ["m1"]);
    s.db.save_login(&[7; 32], &u("bob"), 5, 99).unwrap();
    assert_eq!(s.db.logins(50).unwrap().len(), 1);
    assert!(
        s.db.logins(99).unwrap().is_empty(),
        "expired logins are not loaded"
    );
}

#[test]
fn an_empty_file_becomes_a_database() {
    let dir = temp_dir();
    std::fs::write(dir.join("edgeim.db"), b"").unwrap();
    let mut s = TempDb {
        db: open(&dir, 100),
        dir,
    };
    assert!(s.attach(&key("bob", "web"), 1).is_empty());
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_not_a_reset() {
    let dir = temp_dir();
    let path = dir.join("edgeim.db");
    let junk = vec![0x5a_u8; 8192];
    std::fs::write(&path, &junk).unwrap();
    let e = open_connection(&path).expect_err("refused");
    assert!(e.why.contains("not a database"), "{}", e.why);
    assert!(e.permanent, "a restart cannot help");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        junk,
        "the file was left alone"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = temp_dir();
    let path = dir.join("edgeim.db");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let e = open_connection(&path).expect_err("refused");
    assert!(e.why.contains("newer"), "{}", e.why);
    assert!(e.permanent, "a restart cannot help");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn messages_expire_a_retention_of_store_age_after_a_clean_up_saw_them() {
    let mut s = store(100);
    s.accept(text("alice", "m1", &["bob"]), None, 10).unwrap();
    s.purge(10);
    s.purge(1009);
    assert_eq!(s.count("messages"), 1, "not yet a retention (1000) old");
    s.purge(1010);
    assert_eq!(s.count("messages"), 0);
    s.purge(2100);
    assert_eq!(s.count("clock"), 2, "ticks older than the one used go");
}

#[test]
fn a_clock_stepped_forward_expires_nothing() {
    let mut s = store(100);
    s.accept(text("alice", "m1", &["bob"]), None, 10).unwrap();
    s.purge_at(10, 10);
    // NTP steps the wall clock fifty years ahead; the store's age moved on
    // by 500 ms.
    let fifty_years = 50 * 365 * 24 * 3600 * 1000;
    s.purge_at(fifty_years, 510);
    assert_eq!(s.count("messages"), 1, "unacknowledged and kept");
    assert_eq!(s.db.unacked(&u("bob")), 1);
}

fn synchronous(db: &Db) -> i64 {
    db.conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap()
}

fn accept_op(id: &str) -> StoreOp {
    StoreOp::Accept {
        sender: Some(key("alice", "web")),
        msg: text("alice", id, &["bob"]),
        reply_to: crate::events::ReplyTo::Conn(1),
    }
}

#[test]
fn only_batches_that_promise_durability_are_flushed() {
    assert!(needs_flush(&accept_op("m1")));
    assert!(needs_flush(&StoreOp::RevokeUser { user: u("bob") }));
    assert!(!needs_flush(&StoreOp::Detach {
        key: key("bob", "phone")
    }));
    assert!(!needs_flush(&StoreOp::Ping));
    // A batch of only a detach commits with synchronous=NORMAL (1), one
    // with a text with FULL (2); NORMAL again after it.
    let mut t = store(100);
    let detach = || StoreOp::Detach {
        key: key("bob", "phone"),
    };
    apply_batch(&mut t.db, vec![detach()], 1);
    assert_eq!(synchronous(&t.db), 1);
    let answers = apply_batch(&mut t.db, vec![detach(), accept_op("m1")], 2);
    assert_eq!(synchronous(&t.db), 2);
    assert!(matches!(
        answers.as_slice(),
        [Done::Accepted { result: Ok(_), .. }]
    ));
    apply_batch(&mut t.db, vec![StoreOp::Ping], 3);
    assert_eq!(synchronous(&t.db), 1);
    // Unflushed or not, every commit is in the file for the next reader.
    assert_eq!(t.count("messages"), 1);
}

#[test]
fn the_commit_window_takes_what_arrives_and_stops_at_a_stop_or_its_end() {
    let (tx, rx) = crossbeam_channel::unbounded();
    for op in [StoreOp::Ping, StoreOp::Stop, StoreOp::Ping] {
        tx.send(op).unwrap();
    }
    let mut batch = vec![accept_op("m1")];
    let far = Instant::now() + Duration::from_secs(60);
    gather(&mut batch, &rx, far);
    // It stopped at the Stop, not at the far deadline.
    assert_eq!(batch.len(), 3);
    assert!(matches!(batch.last(), Some(StoreOp::Stop)));
    assert!(Instant::now() < far);
    // Nothing arrives: it returns at the end of the window.
    let mut batch = vec![accept_op("m2")];
    rx.recv().unwrap();
    let until = Instant::now() + Duration::from_millis(20);
    gather(&mut batch, &rx, until);
    assert_eq!(batch.len(), 1);
    assert!(Instant::now() >= until);
    // What arrives during the window joins the batch at its end, without
    // cutting the window short (the thread sleeps through it).
    let mut batch = vec![accept_op("m3")];
    let until = Instant::now() + Duration::from_millis(200);
    let sender = std::thread::spawn(move || tx.send(StoreOp::Ping).unwrap());
    gather(&mut batch, &rx, until);
    sender.join().unwrap();
    assert_eq!(batch.len(), 2);
    assert!(Instant::now() >= until);
}

#[test]
fn a_new_database_has_small_pages() {
    let t = store(100);
    let size: u32 =
        t.db.conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
    assert_eq!(size, super::open::PAGE_SIZE);
}

#[test]
fn the_checkpoint_thread_copies_the_wal_into_the_database_while_the_store_holds_it_open() {
    let mut t = store(100);
    // The store's connection is open and has written: its commits are in
    // the WAL only, below the backstop.
    let auto: i64 =
        t.db.conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
    assert_eq!(auto, checkpoint::BACKSTOP_PAGES);
    for i in 0..20 {
        t.db.begin().unwrap();
        t.db.conn
            .execute(
                "INSERT INTO clock (seq, age_ms, wall_ms) VALUES (?1, 0, 0)",
                [i],
            )
            .unwrap();
        t.db.commit().unwrap();
    }
    let conn = checkpoint::open(&t.dir.join("edgeim.db")).unwrap();
    let (frames, copied) = checkpoint::checkpoint(&conn).unwrap();
    assert!(frames >= 20, "{frames} WAL frames");
    assert_eq!(copied, frames);
    // The store goes on writing after it, and a fresh reader sees all.
    t.db.begin().unwrap();
    t.db.conn
        .execute(
            "INSERT INTO clock (seq, age_ms, wall_ms) VALUES (99, 0, 0)",
            [],
        )
        .unwrap();
    t.db.commit().unwrap();
    assert_eq!(t.count("clock"), 21);
}

#[test]
fn after_a_crash_the_rows_of_recent_texts_are_derived_again_and_nothing_is_lost() {
    let mut s = store(100);
    s.attach(&key("bob", "web"), 0);
    s.attach(&key("bob", "phone"), 0);
    s.attach(&key("alice", "web"), 0);
    s.attach(&key("alice", "tab"), 0);
    let before = s.mark();
    s.accept(text("alice", "m1", &["bob"]), Some(&key("alice", "web")), 1)
        .unwrap();
    s.accept(text("alice", "m2", &["bob"]), Some(&key("alice", "web")), 2)
        .unwrap();
    assert_eq!(
        s.receipt(&key("bob", "web"), "alice", "m1"),
        Some(ReceiptOutcome::Forward(u("alice")))
    );
    assert_eq!(
        s.receipt(&key("bob", "web"), "alice", "m1"),
        Some(ReceiptOutcome::Recorded)
    );
    // Committed: the texts; not written yet: their inbox and pending rows.
    assert_eq!(s.count("messages"), 2);
    assert_eq!(s.count("inbox"), 0);
    assert_eq!(s.count("pending"), 0);
    assert_eq!(s.mark(), before);
    // The process dies here: the store is opened again on the same file.
    let dir = s.dir.clone();
    drop(std::mem::replace(&mut s.db, open(&dir, 100)));
    assert_eq!(s.count("inbox"), 4, "bob's rows and alice's copies");
    assert!(s.mark() > before);
    assert_eq!(s.db.unacked(&u("bob")), 2, "m1's receipt was not kept");
    // Every client of both users gets both again (at least once, never
    // lost), but the one that sent them.
    assert_eq!(s.attach(&key("bob", "web"), 3), ["m1", "m2"]);
    assert_eq!(s.attach(&key("bob", "phone"), 3), ["m1", "m2"]);
    assert_eq!(s.attach(&key("alice", "tab"), 3), ["m1", "m2"]);
    assert!(s.attach(&key("alice", "web"), 3).is_empty());
}

#[test]
fn recent_texts_are_written_with_their_final_state_and_only_the_pending_that_is_left() {
    let mut s = store(100);
    s.attach(&key("bob", "web"), 0);
    s.attach(&key("bob", "phone"), 0);
    s.accept(text("alice", "m1", &["bob"]), None, 1).unwrap();
    s.accept(text("alice", "m2", &["bob"]), None, 2).unwrap();
    s.receipt(&key("bob", "web"), "alice", "m1");
    s.receipt(&key("bob", "phone"), "alice", "m1");
    s.receipt(&key("bob", "web"), "alice", "m2");
    s.write_behind_upto(i64::MAX);
    let states: Vec<i64> = {
        let mut q =
            s.db.conn
                .prepare("SELECT state FROM inbox WHERE user = 'bob' ORDER BY seq")
                .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(states, [1, 1], "both acknowledged by a client of bob");
    assert_eq!(s.count("pending"), 1, "only m2 for bob's phone");
    assert_eq!(s.attach(&key("bob", "phone"), 3), ["m2"]);
    assert_eq!(s.db.unacked(&u("bob")), 0);
}

// ---------------------------------------------------------------- groups

use super::groups::{Actor, GroupChange};

impl TempDb {
    fn group(&mut self, by: Actor, change: GroupChange) -> Result<GroupDone, GroupError> {
        self.db.begin().unwrap();
        let r = self.db.change_group(&by, &change, 50).unwrap();
        self.db.commit().unwrap();
        r
    }
    fn make_ops(&mut self, members: &[&str]) {
        let change = GroupChange::Create {
            name: gname("ops"),
            title: Some("Operations".into()),
            members: members.iter().map(|m| u(m)).collect(),
            owners: Vec::new(),
        };
        self.group(Actor::User(u("alice")), change).unwrap();
    }
}

fn gname(s: &str) -> GroupName {
    GroupName::parse(s).unwrap()
}

fn to_group(from: &str, id: &str, g: &str) -> NewMessage {
    NewMessage {
        origin: Origin::User(u(from)),
        id: id.into(),
        to: To::Group(gname(g)),
        body: "hi all".into(),
    }
}

fn target_users(a: &Accepted) -> Vec<(String, bool)> {
    let Accepted::New { targets, .. } = a else {
        panic!("not new")
    };
    let mut t: Vec<(String, bool)> = targets
        .iter()
        .map(|t| (t.user.as_str().to_string(), t.copy))
        .collect();
    t.sort();
    t
}

#[test]
fn a_group_text_is_for_every_member_and_a_copy_for_the_sender() {
    let mut s = store(100);
    s.make_ops(&["bob", "carol"]);
    let a = s.accept(to_group("bob", "g1", "ops"), None, 60).unwrap();
    assert_eq!(
        target_users(&a),
        [
            ("alice".into(), false),
            ("bob".into(), true),
            ("carol".into(), false)
        ]
    );
    let Accepted::New { message, .. } = &a else {
        panic!()
    };
    assert_eq!(message.recipients, "#ops", "recipients see to: #ops");
    // Offline members get it (after the announcement) at their register.
    assert_eq!(s.attach(&key("carol", "phone"), 70).len(), 2);
}

#[test]
fn only_members_send_to_a_group_and_an_unknown_group_is_refused() {
    let mut s = store(100);
    s.make_ops(&["bob"]);
    let e = s
        .accept(to_group("dave", "x", "ops"), None, 60)
        .unwrap_err();
    assert_eq!(e.reject().status, Status::ToError);
    assert_eq!(e.reject().msg, "not a member of #ops");
    let e = s
        .accept(to_group("bob", "y", "nope"), None, 60)
        .unwrap_err();
    assert_eq!(e.reject().msg, "unknown group #nope");
}

#[test]
fn a_removed_member_hears_of_its_removal_and_then_nothing() {
    let mut s = store(100);
    s.make_ops(&["bob", "carol"]);
    let done = s
        .group(
            Actor::User(u("alice")),
            GroupChange::Members {
                name: gname("ops"),
                add: vec![],
                remove: vec![u("carol")],
                owners: vec![],
            },
        )
        .unwrap();
    let Some(a) = &done.announcement else {
        panic!("announced")
    };
    assert!(target_users(a).contains(&("carol".into(), false)));
    let a = s.accept(to_group("bob", "after", "ops"), None, 60).unwrap();
    assert!(!target_users(&a).iter().any(|(u, _)| u == "carol"));
    // carol gets the creation and her removal, not what came after.
    let got = s.attach(&key("carol", "phone"), 70);
    assert_eq!(got.len(), 2);
    assert!(!got.contains(&"after".to_string()));
}

#[test]
fn groups_survive_reopening_and_recovery_derives_group_rows_from_members() {
    let mut s = store(100);
    s.make_ops(&["bob"]);
    s.attach(&key("bob", "phone"), 55);
    s.accept(to_group("alice", "g1", "ops"), None, 60).unwrap();
    // The process dies here, nothing written behind: opened again.
    let dir = s.dir.clone();
    drop(std::mem::replace(&mut s.db, open(&dir, 100)));
    assert!(
        s.db.groups.get(&gname("ops")).is_some(),
        "the group is back"
    );
    // bob's phone gets the announcement and the text again.
    assert_eq!(s.attach(&key("bob", "phone"), 70).len(), 2);
}

#[test]
fn history_of_a_group_shows_receipts_of_members_and_deleting_it_deletes_its_texts() {
    let mut s = store(100);
    s.make_ops(&["bob", "carol"]);
    s.attach(&key("bob", "phone"), 55);
    s.accept(to_group("alice", "g1", "ops"), None, 60).unwrap();
    assert_eq!(
        s.receipt(&key("bob", "phone"), "alice", "g1"),
        Some(ReceiptOutcome::Forward(u("alice")))
    );
    s.write_behind_upto(i64::MAX);
    let all = Before {
        ms: u64::MAX,
        seq: i64::MAX,
    };
    let h = history(
        &s.db.conn,
        &u("alice"),
        &With::parse("#ops").unwrap(),
        all,
        10,
    )
    .unwrap();
    assert_eq!(h.len(), 2, "the text and the creation");
    assert_eq!(h[0].received_by.as_deref(), Some(&["bob".to_string()][..]));
    assert_eq!(h[1].received_by, None, "a system text is nobody's own");
    let convs = super::history::conversations(&s.db.conn, &u("carol")).unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!((convs[0].with.as_str(), convs[0].unread), ("#ops", 2));
    s.group(
        Actor::User(u("alice")),
        GroupChange::Delete { name: gname("ops") },
    )
    .unwrap();
    assert_eq!(s.count("messages"), 0);
    assert_eq!(s.count("inbox"), 0);
    assert_eq!(s.db.unacked(&u("carol")), 0);
    assert!(
        super::history::conversations(&s.db.conn, &u("carol"))
            .unwrap()
            .is_empty()
    );
}
