//! Presence (PROTOCOL.md section 11) as decisions free of I/O: which
//! connections watch, what each one last got, and the 3001 bodies a
//! flush sends. The router feeds it ([`super::announce`]) and carries
//! its answers out; unit tests drive it with plain sets of users.
//!
//! - A client asks with `"presence": true` in its register
//!   ([`Presence::ask`]); it becomes a watcher when its register is
//!   answered 9001 SUCCESS, and gets a snapshot then: everyone online, itself
//!   included ([`Presence::start`]).
//! - When who is online changes, a flush is due [`PRESENCE_WINDOW`] after
//!   the first change ([`Presence::changed`]), and every change until then
//!   goes into that one flush. Each watcher gets the difference between
//!   what it last got and who is online at the flush ([`Presence::flush`]),
//!   or nothing when they are the same: a user who went offline and came
//!   back within the window is in neither list.
//! - What a watcher last got is an `Arc` of the online set: after a flush
//!   every watcher that got its frame shares the same one, so memory is
//!   one set per version still held (normally one), and each difference
//!   is computed and serialised once per version, not once per watcher.
//! - A frame that could not be queued (its connection's queue is over its
//!   byte budget) is not sent at all; its watcher keeps what it had
//!   ([`Presence::missed`]), and another flush is due a window later, which
//!   sends it the difference from there: a watcher never misses a change
//!   for good, and a 3001 never closes a connection.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::events::ConnId;
use crate::wire::frames::presence_body;
use crate::wire::ids::UserId;

/// How long the changes after a flush are gathered before the next one:
/// a user who logs in shows online at his watchers within this (plus the
/// register's commit), well inside the 2 s a page needs, and a burst of
/// logins, or a user's page reloading, is one frame per watcher, not one
/// per change. PROTOCOL.md allows up to 1 s.
pub const PRESENCE_WINDOW: Duration = Duration::from_millis(500);

/// The window in the monotonic milliseconds the router counts in.
const WINDOW_MS: u64 = PRESENCE_WINDOW.as_millis() as u64;

/// Users online (with at least one registered client), in order.
pub type Online = BTreeSet<UserId>;

struct Watcher {
    /// The watcher's user: the `to` of its frames.
    user: UserId,
    /// The online set as the watcher's last frame told it (all of its
    /// frames so far, added up).
    last: Arc<Online>,
}

/// Who watches, and what each watcher knows (owned by the router thread).
#[derive(Default)]
pub struct Presence {
    /// Connections whose client asked for presence, not answered yet.
    asked: HashSet<ConnId>,
    watchers: HashMap<ConnId, Watcher>,
    /// The online set of the last flush or snapshot: a snapshot that finds
    /// it unchanged shares it, so that watchers who registered between two
    /// changes hold one set between them, not one each.
    latest: Arc<Online>,
    /// When the next flush is due, in monotonic ms; `None` while nothing
    /// is to be sent (then the router sets no timer at all).
    due: Option<u64>,
}

/// One 3001 to send.
#[derive(Debug)]
pub struct Delta {
    pub conn: ConnId,
    /// The watcher's user.
    pub to: UserId,
    /// `{"online":[...],"offline":[...]}`, shared by the watchers that get
    /// the same difference.
    pub body: Arc<str>,
    /// What the watcher had before this frame: it keeps it should the
    /// frame not be sent ([`Presence::missed`]).
    was: Arc<Online>,
}

impl Presence {
    /// The client registering on `conn` asked for presence: it becomes a
    /// watcher once its register is answered ([`Presence::start`]).
    pub fn ask(&mut self, conn: ConnId) {
        self.asked.insert(conn);
    }

    /// `conn`'s register was answered SUCCESS, `online` giving everyone
    /// online now (its own user too): its first frame, if its client asked.
    /// `online` is called only then: most clients do not ask, and the set
    /// costs a copy of every online user's id.
    pub fn start(
        &mut self,
        conn: ConnId,
        user: &UserId,
        online: impl FnOnce() -> Online,
    ) -> Option<Delta> {
        if !self.asked.remove(&conn) {
            return None;
        }
        let online = online();
        if *self.latest != online {
            self.latest = Arc::new(online);
        }
        let body = presence_body(self.latest.iter().map(UserId::as_str), []);
        self.watchers.insert(
            conn,
            Watcher {
                user: user.clone(),
                last: self.latest.clone(),
            },
        );
        Some(Delta {
            conn,
            to: user.clone(),
            body: body.into(),
            // Should the snapshot not be sent, the next flush sends the
            // watcher everyone online, which is the snapshot again.
            was: Arc::default(),
        })
    }

    /// `conn` is no client any more (closed, replaced, closed as slow):
    /// nothing more is sent to it.
    pub fn forget(&mut self, conn: ConnId) {
        self.asked.remove(&conn);
        self.watchers.remove(&conn);
        if self.watchers.is_empty() {
            self.due = None;
        }
    }

    /// Who is online may have changed at `now` (monotonic ms): a flush is
    /// due a window after the first change since the last one. Later
    /// changes do not put it off, so a steady churn cannot starve it.
    pub fn changed(&mut self, now: u64) {
        if !self.watchers.is_empty() && self.due.is_none() {
            self.due = Some(now.saturating_add(WINDOW_MS));
        }
    }

    /// When the next flush is due (monotonic ms), if one is.
    pub fn due(&self) -> Option<u64> {
        self.due
    }

    /// The frames of a flush, `online` being everyone online now: one for
    /// each watcher whose last frame told it otherwise. Each such watcher
    /// counts as told, unless the router gives its frame back
    /// ([`Presence::missed`]).
    pub fn flush(&mut self, online: Online) -> Vec<Delta> {
        self.due = None;
        let now = if *self.latest == online {
            self.latest.clone()
        } else {
            Arc::new(online)
        };
        self.latest = now.clone();
        // One difference per version the watchers hold, keyed by the
        // version's address; the map holds each version, so no address is
        // freed and reused while it is in use as a key.
        let mut bodies: HashMap<*const Online, (Arc<Online>, Option<Arc<str>>)> = HashMap::new();
        let mut out = Vec::new();
        for (conn, w) in &mut self.watchers {
            if Arc::ptr_eq(&w.last, &now) {
                continue;
            }
            let (_, body) = bodies
                .entry(Arc::as_ptr(&w.last))
                .or_insert_with(|| (w.last.clone(), difference(&w.last, &now)));
            let was = std::mem::replace(&mut w.last, now.clone());
            if let Some(body) = body {
                out.push(Delta {
                    conn: *conn,
                    to: w.user.clone(),
                    body: body.clone(),
                    was,
                });
            }
        }
        out
    }

    /// `delta` was not sent at `now` (its connection's queue is over its
    /// budget): its watcher keeps what it had before, and a flush is due
    /// within a window to send it the difference from there.
    pub fn missed(&mut self, delta: Delta, now: u64) {
        let Some(w) = self.watchers.get_mut(&delta.conn) else {
            return;
        };
        w.last = delta.was;
        let retry = now.saturating_add(WINDOW_MS);
        self.due = Some(self.due.map_or(retry, |d| d.min(retry)));
    }

    /// How many connections watch (tests).
    #[cfg(test)]
    pub fn watchers(&self) -> usize {
        self.watchers.len()
    }
}

/// The body that takes a watcher from `was` to `now`: who came online and
/// who went offline, each in order; `None` when nothing did.
fn difference(was: &Online, now: &Online) -> Option<Arc<str>> {
    let mut online = now.difference(was).peekable();
    let mut offline = was.difference(now).peekable();
    if online.peek().is_none() && offline.peek().is_none() {
        return None;
    }
    let body = presence_body(online.map(UserId::as_str), offline.map(UserId::as_str));
    Some(body.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn set(users: &[&str]) -> Online {
        users.iter().map(|u| UserId::parse(u).unwrap()).collect()
    }

    fn user(u: &str) -> UserId {
        UserId::parse(u).unwrap()
    }

    fn body(d: &Delta) -> Value {
        serde_json::from_str(&d.body).unwrap()
    }

    /// A presence with `conn` watching as `who`, its snapshot taken.
    fn watching(p: &mut Presence, conn: ConnId, who: &str, online: &[&str]) -> Delta {
        p.ask(conn);
        p.start(conn, &user(who), || set(online)).expect("asked")
    }

    /// The flush's frames by connection, as JSON bodies.
    fn flushed(p: &mut Presence, online: &[&str]) -> HashMap<ConnId, Value> {
        p.flush(set(online))
            .iter()
            .map(|d| (d.conn, body(d)))
            .collect()
    }

    #[test]
    fn the_first_frame_lists_everyone_online_and_the_watcher_itself() {
        let mut p = Presence::default();
        let d = watching(&mut p, 1, "bob", &["carol", "alice", "bob"]);
        assert_eq!((d.conn, d.to.as_str()), (1, "bob"));
        assert_eq!(
            body(&d),
            json!({"online": ["alice", "bob", "carol"], "offline": []})
        );
    }

    #[test]
    fn only_a_client_that_asked_becomes_a_watcher() {
        let mut p = Presence::default();
        assert!(p.start(1, &user("alice"), || set(&["alice"])).is_none());
        p.changed(0);
        assert_eq!(p.due(), None, "no watcher: no flush, no timer");
        assert!(p.flush(set(&["alice", "bob"])).is_empty());
        assert_eq!(p.watchers(), 0);
    }

    #[test]
    fn later_frames_list_only_the_users_whose_state_changed() {
        let mut p = Presence::default();
        watching(&mut p, 1, "alice", &["alice", "bob"]);
        p.changed(100);
        let got = flushed(&mut p, &["alice", "carol"]);
        assert_eq!(got[&1], json!({"online": ["carol"], "offline": ["bob"]}));
        assert!(flushed(&mut p, &["alice", "carol"]).is_empty(), "told");
    }

    #[test]
    fn a_flush_is_due_one_window_after_the_first_change_only() {
        let mut p = Presence::default();
        watching(&mut p, 1, "alice", &["alice"]);
        assert_eq!(p.due(), None, "an idle server sets no timer");
        p.changed(1000);
        p.changed(1400);
        assert_eq!(p.due(), Some(1000 + WINDOW_MS), "later changes join it");
        p.flush(set(&["alice", "bob"]));
        assert_eq!(p.due(), None);
    }

    #[test]
    fn a_user_who_left_and_came_back_within_the_window_is_in_neither_list() {
        let mut p = Presence::default();
        watching(&mut p, 1, "alice", &["alice", "bob"]);
        p.changed(0);
        // bob reloaded his page: offline, then online again, then carol
        // came: one frame, with carol only.
        let got = flushed(&mut p, &["alice", "bob", "carol"]);
        assert_eq!(got[&1], json!({"online": ["carol"], "offline": []}));
        p.changed(600);
        assert!(flushed(&mut p, &["alice", "bob", "carol"]).is_empty());
    }

    #[test]
    fn watchers_told_the_same_share_one_body() {
        let mut p = Presence::default();
        watching(&mut p, 1, "alice", &["alice", "bob"]);
        watching(&mut p, 2, "bob", &["alice", "bob"]);
        let ds = p.flush(set(&["alice", "bob", "carol"]));
        assert_eq!(ds.len(), 2);
        assert!(Arc::ptr_eq(&ds[0].body, &ds[1].body), "serialised once");
        let mut to: Vec<&str> = ds.iter().map(|d| d.to.as_str()).collect();
        to.sort();
        assert_eq!(to, ["alice", "bob"], "each frame to its own watcher");
    }

    #[test]
    fn a_watcher_that_came_later_gets_the_difference_from_its_own_snapshot() {
        let mut p = Presence::default();
        watching(&mut p, 1, "alice", &["alice"]);
        p.changed(0);
        // bob came, registered with presence before the flush.
        watching(&mut p, 2, "bob", &["alice", "bob"]);
        let got = flushed(&mut p, &["alice", "bob"]);
        assert_eq!(got.len(), 1, "bob's snapshot already said it: {got:?}");
        assert_eq!(got[&1], json!({"online": ["bob"], "offline": []}));
    }

    #[test]
    fn a_missed_frame_is_made_good_from_what_the_watcher_last_got() {
        let mut p = Presence::default();
        watching(&mut p, 1, "alice", &["alice", "bob"]);
        watching(&mut p, 2, "carol", &["alice", "bob", "carol"]);
        p.changed(0);
        let ds = p.flush(set(&["alice", "carol", "dave"]));
        assert_eq!(ds.len(), 2);
        for d in ds {
            if d.conn == 1 {
                p.missed(d, 500);
            }
        }
        assert_eq!(p.due(), Some(500 + WINDOW_MS), "a retry is due");
        // Meanwhile dave left again: alice's watcher never heard of him.
        let got = flushed(&mut p, &["alice", "carol"]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[&1], json!({"online": ["carol"], "offline": ["bob"]}));
        assert_eq!(got[&2], json!({"online": [], "offline": ["dave"]}));
    }

    #[test]
    fn a_missed_snapshot_is_made_good_by_the_next_flush() {
        let mut p = Presence::default();
        let d = watching(&mut p, 1, "alice", &["alice", "bob"]);
        p.missed(d, 0);
        let got = flushed(&mut p, &["alice", "bob"]);
        assert_eq!(got[&1], json!({"online": ["alice", "bob"], "offline": []}));
    }

    #[test]
    fn a_forgotten_connection_gets_nothing_and_leaves_no_timer() {
        let mut p = Presence::default();
        watching(&mut p, 1, "alice", &["alice"]);
        p.ask(2);
        p.changed(0);
        p.forget(1);
        p.forget(2);
        assert_eq!(p.due(), None);
        assert!(p.start(2, &user("bob"), || set(&["bob"])).is_none());
        assert!(p.flush(set(&["bob"])).is_empty());
        assert_eq!(p.watchers(), 0);
    }

    #[test]
    fn protocol_md_quotes_the_window_as_the_code_has_it() {
        let doc = crate::doc_constants::one_line(include_str!("../../docs/PROTOCOL.md"));
        let phrase = format!(
            "Changes are coalesced over a window of {WINDOW_MS} ms: the first change after a 3001 was sent makes the next one due {WINDOW_MS} ms later"
        );
        assert!(doc.contains(&phrase), "PROTOCOL.md lacks: {phrase}");
        // And within what section 11 allows.
        assert!(PRESENCE_WINDOW <= Duration::from_secs(1));
    }

    #[test]
    fn snapshots_between_two_changes_share_one_set() {
        let mut p = Presence::default();
        watching(&mut p, 1, "alice", &["alice", "bob"]);
        watching(&mut p, 2, "alice", &["alice", "bob"]);
        let a = &p.watchers[&1].last;
        let b = &p.watchers[&2].last;
        assert!(Arc::ptr_eq(a, b));
    }
}
