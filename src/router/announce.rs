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
        let online = self.online_set();
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
