//! The router's side of presence (PROTOCOL.md section 11): it tells
//! [`Presence`](super::presence::Presence) what the session table says
//! changed, and sends the 3001 frames it decides on. A 3001 is never
//! stored and never closes a connection: one that finds its connection's
//! queue over budget is not sent, and the watcher gets the difference from
//! what it last had at a later flush.

use super::Router;
use super::deliver::write_or_queue;
use super::presence::{Delta, Online};
use crate::clock::{Now, mono_ms};
use crate::events::{ConnId, Outbound};
use crate::wire::frames;
use crate::wire::ids::UserId;

/// What became of a 3001.
enum Sent {
    /// Written or queued.
    Yes,
    /// Not sent: the connection's queue is over its byte budget.
    Full,
    /// The connection is closing, or gone.
    Gone,
}

impl Router {
    /// After each wake-up: the connections that are no client any more
    /// stop watching, and a change of who is online makes a flush due.
    pub(super) fn presence_changes(&mut self, mono: u64) {
        let changes = self.table.take_changes();
        for conn in changes.unbound {
            // Ids are never reused, but the check costs nothing.
            if self.table.client_of(conn).is_none() {
                self.presence.forget(conn);
            }
        }
        if changes.users {
            self.presence.changed(mono);
        }
    }

    /// When the next flush is due, in monotonic ms, if one is.
    pub(super) fn presence_due(&self) -> Option<u64> {
        self.presence.due()
    }

    /// A flush is due: each watcher gets what changed since its last 3001.
    pub(super) fn flush_presence(&mut self, now: Now) {
        let online = self.online_set();
        for delta in self.presence.flush(online) {
            self.send_presence(delta, now);
        }
    }

    /// `conn` was answered its register's SUCCESS: its snapshot, if it
    /// asked for presence.
    pub(super) fn start_presence(&mut self, conn: ConnId, user: &UserId, now: u64) {
        let table = &self.table;
        let online = || table.online_users().cloned().collect();
        if let Some(delta) = self.presence.start(conn, user, online) {
            let now = Now {
                wall_ms: now,
                mono_ms: mono_ms(),
            };
            self.send_presence(delta, now);
        }
    }

    fn online_set(&self) -> Online {
        self.table.online_users().cloned().collect()
    }

    fn send_presence(&mut self, delta: Delta, now: Now) {
        let frame = frames::presence(delta.to.as_str(), &delta.body, now.wall_ms);
        match self.push_presence(delta.conn, Outbound::Presence(frame)) {
            Sent::Yes => {}
            Sent::Full => self.presence.missed(delta, now.mono_ms),
            Sent::Gone => self.presence.forget(delta.conn),
        }
    }

    /// Writes or queues a 3001 unless the connection already has its
    /// whole `send_queue` budget waiting (all bytes, 3001s included, so
    /// that what a watcher that does not read holds stays bounded). Unlike
    /// [`Router::push`], never closes: a client that keeps up with its
    /// texts may still be behind with everything at one moment.
    fn push_presence(&mut self, conn: ConnId, item: Outbound) -> Sent {
        let Some(handle) = self.table.handle(conn) else {
            return Sent::Gone;
        };
        if handle.shared.is_closing() {
            return Sent::Gone;
        }
        let queued = handle.shared.queued.all();
        if queued >= self.send_queue_budget() {
            log::debug!("conn {conn}: {queued} bytes waiting: its 3001 waits for a later flush");
            return Sent::Full;
        }
        // Counted in `edgeim_frames_out_total{type="3001"}` once written.
        write_or_queue(handle, item, &mut self.unflushed);
        Sent::Yes
    }
}

#[cfg(test)]
mod tests {
    //! The router's part, against a fake store: the test answers the
    //! router's Attach ops itself.

    use serde_json::{Value, json};

    use super::super::races;
    use super::super::tests::{NOW, Peer};
    use super::*;
    use crate::conn::queue::Released;
    use crate::events::{Ctrl, Event};

    /// The races' fake store, with the run loop's presence step after each
    /// event and a monotonic clock the test moves.
    struct Fake {
        inner: races::Fake,
        /// Monotonic ms, moved by the test.
        mono: u64,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                inner: races::Fake::new(),
                mono: 0,
            }
        }

        fn router(&mut self) -> &mut Router {
            &mut self.inner.router
        }

        /// One event, then what the run loop does after each wake-up.
        fn handle(&mut self, ev: Event) {
            self.inner.handle(ev);
            let mono = self.mono;
            self.router().presence_changes(mono);
        }

        /// An open connection, registered as `user` (client `web`) and
        /// answered, asking for presence or not.
        fn online(&mut self, id: ConnId, user: &str, presence: bool) -> Peer {
            let peer = self.inner.open(id);
            let attach = self.inner.register_asking(id, user, "web", presence);
            self.inner.attached(attach, Ok(Vec::new()));
            let mono = self.mono;
            self.router().presence_changes(mono);
            peer
        }

        /// The connection closed.
        fn close(&mut self, conn: ConnId) {
            self.handle(Event::Closed { conn });
        }

        /// The timer fired, if a flush is due by now.
        fn tick(&mut self, ms: u64) {
            self.mono += ms;
            if self.router().presence_due().is_some_and(|d| d <= self.mono) {
                let now = Now {
                    wall_ms: NOW,
                    mono_ms: self.mono,
                };
                self.router().flush_presence(now);
            }
        }
    }

    /// The 3001 bodies queued for `p`, as JSON; every frame must be a
    /// well-formed 3001 to `p`'s user.
    fn presence_of(p: &Peer, user: &str) -> Vec<Value> {
        p.frames()
            .into_iter()
            .filter(|f| f["type"] == 3001)
            .map(|f| {
                assert_eq!(
                    (f["from"].as_str(), f["to"].as_str()),
                    (Some("SYSTEM"), Some(user))
                );
                assert_eq!(f["isSystem"], true);
                serde_json::from_str(f["body"].as_str().unwrap()).unwrap()
            })
            .collect()
    }

    fn closed(p: &Peer) -> bool {
        p.ctrl.try_iter().any(|c| matches!(c, Ctrl::Close(..)))
    }

    #[test]
    fn a_watcher_gets_its_snapshot_after_its_9001_and_then_each_change() {
        let mut f = Fake::new();
        let alice = f.online(1, "alice", true);
        let frames = alice.frames();
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(
            (frames[0]["type"].as_i64(), frames[1]["type"].as_i64()),
            (Some(9001), Some(3001))
        );
        let body: Value = serde_json::from_str(frames[1]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, json!({"online": ["alice"], "offline": []}));
        let bob = f.online(2, "bob", false);
        f.tick(400);
        assert!(presence_of(&alice, "alice").is_empty(), "coalescing");
        f.tick(100);
        assert_eq!(
            presence_of(&alice, "alice"),
            [json!({"online": ["bob"], "offline": []})]
        );
        f.close(2);
        f.tick(500);
        assert_eq!(
            presence_of(&alice, "alice"),
            [json!({"online": [], "offline": ["bob"]})]
        );
        assert!(presence_of(&bob, "bob").is_empty(), "bob did not ask");
        assert_eq!(f.router().presence_due(), None, "nothing due: no timer");
        f.close(1);
        assert_eq!(f.router().presence.watchers(), 0);
    }

    #[test]
    fn a_watcher_over_budget_is_skipped_not_closed_and_told_later_from_what_it_had() {
        let mut f = Fake::new();
        let alice = f.online(1, "alice", true);
        alice.frames();
        // Alice's writer has a whole budget waiting (a backlog page, say).
        let budget = f.router().send_queue_budget();
        alice.shared.queued.add(budget, false);
        f.online(2, "bob", false);
        f.online(3, "carol", false);
        f.tick(500);
        assert!(alice.frames().is_empty(), "no 3001 queued over budget");
        assert!(!closed(&alice), "a 3001 never closes a connection");
        // carol leaves while alice's queue is full; then her writer
        // catches up.
        f.close(3);
        alice.shared.queued.release(Released {
            bytes: budget,
            ..Released::default()
        });
        f.tick(500);
        assert_eq!(
            presence_of(&alice, "alice"),
            [json!({"online": ["bob"], "offline": []})],
            "the difference from what alice last got"
        );
        assert_eq!(f.router().presence_due(), None);
    }

    #[test]
    fn texts_are_not_measured_against_the_3001s_waiting() {
        let mut f = Fake::new();
        let alice = f.online(1, "alice", true);
        alice.frames();
        // Texts waiting up to just under the budget, then a 3001: it goes
        // (the budget was not reached), and takes the queue past it.
        let budget = f.router().send_queue_budget();
        alice.shared.queued.add(budget - 1, false);
        f.online(2, "bob", false);
        f.tick(500);
        assert!(alice.shared.queued.all() > budget);
        // The next text is measured against the texts alone: queued.
        f.router().push(1, Outbound::Frame("{}".into()));
        assert!(!closed(&alice), "closed for a 3001's bytes");
        // One more text, and the texts are over: slow, as ever.
        f.router().push(1, Outbound::Frame("{}".into()));
        assert!(closed(&alice));
    }
}
