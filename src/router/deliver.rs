//! What the router does once the store has committed an op: answer the
//! sender, deliver to the recipients' attached connections, send a
//! registered client its backlog. Every frame is built here, from the data
//! the store returns, and serialised once for all its recipients.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{SendError, Sender};
use tungstenite::Utf8Bytes;

use super::{Router, close};
use crate::conn::direct::{self, Direct};
use crate::conn::queue::Released;
use crate::events::{ConnHandle, ConnId, ConnShared, Ctrl, Done, Outbound, ReplyTo, StoreOp};
use crate::metrics::metrics;
use crate::store::{Accepted, Page, ReceiptOutcome, StoredMessage, Target};
use crate::wire::ids::{ClientKey, UserId};
use crate::wire::{self, Outgoing, Receipt, Reject, Status, TYPE_RECEIVE_STATUS};

/// A stored text as its recipients get it.
fn text_frame(m: &StoredMessage) -> Utf8Bytes {
    wire::frames::text(&m.origin, &m.id, &m.recipients, &m.body, m.ts)
}

impl Router {
    /// A committed op: answer and deliver.
    pub fn done(&mut self, d: Done, now: u64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match d {
            Done::Accepted {
                sender,
                id,
                result,
                reply_to,
            } => self.accepted(sender, &id, result, reply_to, now),
            Done::Receipt {
                conn,
                key,
                receipt,
                result,
            } => self.receipt_done(conn, &key, &receipt, result, now),
            Done::Attached {
                conn,
                key,
                register_id,
                result,
            } => self.attached(conn, key, &register_id, result, now),
            Done::Paged { conn, key, result } => self.paged(conn, key, result, now),
            Done::Group { result, reply } => {
                let answer = result.map(|done| {
                    if let Some(Accepted::New { message, targets }) = &done.announcement {
                        self.deliver(message, targets, None);
                    }
                    done.group
                });
                let _ = reply.send(answer);
            }
            Done::Pong => {
                self.pinging = false;
                crate::notify::watchdog();
            }
        }
    }

    fn accepted(
        &mut self,
        sender: Option<ClientKey>,
        id: &str,
        result: Result<Accepted, Reject>,
        reply_to: ReplyTo,
        now: u64,
    ) {
        let from_conn = match &reply_to {
            ReplyTo::Conn(c) => Some(*c),
            ReplyTo::Api(_) => None,
        };
        let answer = match result {
            Ok(Accepted::New { message, targets }) => {
                metrics().texts_accepted.fetch_add(1, Ordering::Relaxed);
                self.deliver(&message, &targets, from_conn);
                Ok(())
            }
            Ok(Accepted::Duplicate) => Ok(()),
            Err(r) => Err(r),
        };
        match reply_to {
            ReplyTo::Api(reply) => {
                let _ = reply.send(answer.map(|()| id.to_string()));
            }
            ReplyTo::Conn(conn) => {
                let to = sender.as_ref().map_or("", |k| k.user.as_str());
                match answer {
                    Ok(()) => self.answer(conn, id, to, Status::Success, "accepted", now),
                    Err(r) => self.answer(conn, id, to, r.status, &r.msg, now),
                }
            }
        }
    }

    /// A new text to every attached connection of its targets; the sending
    /// connection gets no copy of its own text (it gets its 9001), but it
    /// does get a note to self.
    fn deliver(&mut self, message: &StoredMessage, targets: &[Target], from_conn: Option<ConnId>) {
        // Serialised once, whatever the number of recipients: every
        // connection gets a clone of the same bytes.
        let frame = &text_frame(message);
        metrics().text_frames_built.fetch_add(1, Ordering::Relaxed);
        let mut to: Vec<ConnId> = Vec::new();
        for t in targets {
            let skip = if t.copy { from_conn } else { None };
            to.extend(self.table.attached_of(&t.user, skip));
        }
        for c in to {
            self.push(c, Outbound::Frame(frame.clone()));
        }
    }

    fn receipt_done(
        &mut self,
        conn: ConnId,
        key: &ClientKey,
        receipt: &Receipt,
        result: Result<ReceiptOutcome, Reject>,
        now: u64,
    ) {
        let me = key.user.as_str();
        let outcome = match result {
            Err(r) => return self.answer(conn, &receipt.id, me, r.status, &r.msg, now),
            Ok(outcome) => outcome,
        };
        self.answer(conn, &receipt.id, me, Status::Success, "recorded", now);
        metrics().receipts.fetch_add(1, Ordering::Relaxed);
        if let ReceiptOutcome::Forward(sender) = outcome {
            self.forward_receipt(me, &sender, receipt, now);
        }
    }

    /// The first receipt of a user goes to every client of the sender.
    fn forward_receipt(&mut self, me: &str, sender: &UserId, receipt: &Receipt, now: u64) {
        let frame = Outgoing {
            id: &receipt.id,
            kind: TYPE_RECEIVE_STATUS,
            is_system: false,
            from: me,
            to: sender.as_str(),
            body: &receipt.body,
            timestamp: now,
        }
        .frame();
        for c in self.table.attached_of(sender, None) {
            self.push(c, Outbound::Receipt(frame.clone()));
        }
    }

    fn attached(
        &mut self,
        conn: ConnId,
        key: ClientKey,
        register_id: &str,
        result: Result<Page, Reject>,
        now: u64,
    ) {
        // The connection may have gone or been replaced meanwhile.
        if !self.table.is_bound_to(conn, &key) {
            return;
        }
        let user = key.user.as_str();
        match result {
            Ok(page) => {
                log::info!("conn {conn} registered as {key}");
                let ok = wire::send_status(register_id, user, Status::Success, "registered", now);
                self.push(conn, Outbound::Answer(ok));
                // Section 11: right after the 9001, ahead of the backlog.
                self.start_presence(conn, &key.user, now);
                self.backlog_page(conn, &key, page);
            }
            Err(r) => self.refuse_backlog(conn, key, Some(register_id), &r, now),
        }
    }

    /// The next page of a backlog arrived.
    pub(super) fn paged(
        &mut self,
        conn: ConnId,
        key: ClientKey,
        result: Result<Page, Reject>,
        now: u64,
    ) {
        if !self.table.is_bound_to(conn, &key) {
            return;
        }
        match result {
            Ok(page) => self.backlog_page(conn, &key, page),
            Err(r) => self.refuse_backlog(conn, key, None, &r, now),
        }
    }

    /// Queues one page of a backlog. Until its last page is queued the
    /// connection is not attached: what is committed for it meanwhile is
    /// in a later page (the store reads them in op order), not live.
    fn backlog_page(&mut self, conn: ConnId, key: &ClientKey, page: Page) {
        if !page.messages.is_empty() {
            let frames = page.messages.iter().map(text_frame).collect();
            self.push(conn, Outbound::Batch(frames));
        }
        if page.more {
            // The writer says when it has written this page (Drained).
            self.table.page_after(conn, key, page.last_seq);
        } else {
            self.table.attach(conn, key);
        }
    }

    /// The writer wrote a page: ask the store for the next, if any.
    pub(super) fn drained(&mut self, conn: ConnId) {
        if let Some((key, after)) = self.table.take_page(conn) {
            self.send_to_store(StoreOp::Page { conn, key, after });
        }
    }

    /// The store could not read a backlog: the 9001 if this was the
    /// register's answer, then Close 1008; the client registers again and
    /// gets it all.
    fn refuse_backlog(
        &mut self,
        conn: ConnId,
        key: ClientKey,
        register_id: Option<&str>,
        r: &Reject,
        now: u64,
    ) {
        let answer =
            register_id.map(|id| wire::send_status(id, key.user.as_str(), r.status, &r.msg, now));
        self.table.unbind(conn);
        if let Some(handle) = self.table.handle(conn) {
            // The answer goes on the control queue too: the writer takes
            // that first, and writes nothing after the close.
            let sent = answer.is_none_or(|a| handle.ctrl.try_send(Ctrl::Frame(a)).is_ok());
            if sent {
                close(handle, 1008, r.status.name());
            } else {
                handle.shared.kill();
            }
        }
        self.send_to_store(StoreOp::Detach { key });
    }

    pub(super) fn answer(
        &mut self,
        conn: ConnId,
        id: &str,
        to: &str,
        status: Status,
        msg: &str,
        now: u64,
    ) {
        let frame = wire::send_status(id, to, status, msg, now);
        self.push(conn, Outbound::Answer(frame));
    }

    /// Queues for one connection without ever blocking (or writes it
    /// itself when its writer is idle, [`crate::conn::direct`]). A connection that
    /// already has `send_queue` bytes waiting is closed as `slow` instead
    /// (an answer: that has [`ANSWER_ALLOWANCE`] bytes of answers waiting);
    /// what it missed stays in the store for its next register.
    pub(super) fn push(&mut self, conn: ConnId, item: Outbound) {
        let Some(handle) = self.table.handle(conn) else {
            return;
        };
        let shared = &handle.shared;
        if shared.is_closing() {
            return;
        }
        // An answer is measured against the answers waiting (they answer
        // what the client sent); anything else against all bytes waiting
        // but presence frames' (section 11: a 3001 never closes a client).
        let (queued, budget) = if item.is_answer() {
            (shared.queued.answers(), ANSWER_ALLOWANCE)
        } else {
            (shared.queued.texts(), self.send_queue_budget())
        };
        if queued >= budget {
            log::warn!(
                "conn {conn} ({}) is not reading ({queued} bytes waiting): closing as slow",
                shared.peer
            );
            close(handle, 1008, "slow");
            metrics().slow_closes.fetch_add(1, Ordering::Relaxed);
            if let Some(key) = self.table.unbind(conn) {
                self.send_to_store(StoreOp::Detach { key });
            }
            return;
        }
        write_or_queue(handle, item, &mut self.unflushed);
    }

    /// The byte budget of one connection's queue (`send_queue`).
    pub(super) fn send_queue_budget(&self) -> usize {
        self.config.send_queue.max(MIN_SEND_QUEUE)
    }
}

/// Writes `item` from the router's thread when the connection is idle, or
/// queues it for its writer and counts its bytes; never blocks.
pub(super) fn write_or_queue(
    handle: &ConnHandle,
    item: Outbound,
    unflushed: &mut Vec<(Arc<ConnShared>, Sender<Ctrl>)>,
) {
    let shared = &handle.shared;
    // An idle connection's writer is not woken: the frame is written
    // from here, without blocking, when nothing waits before it.
    let item = match direct::try_write(shared, &handle.ctrl, item) {
        // Flushed once the router's batch is done ([`Router::flush_direct`]).
        Ok(Direct::Buffered) => {
            unflushed.push((shared.clone(), handle.ctrl.clone()));
            return;
        }
        Ok(_) => return,
        Err(item) => item,
    };
    if item.is_presence() {
        shared.queued.add_presence(item.bytes());
    } else {
        shared.queued.add(item.bytes(), item.is_answer());
    }
    if let Err(SendError(item)) = handle.out.send(item) {
        shared.queued.release(Released::of(&item));
    }
}

/// The smallest byte budget the router takes `send_queue` as
/// ([`crate::config::MIN_SEND_QUEUE`], which the config also enforces): a
/// smaller one would close clients that read at full speed, since one group
/// commit can queue that much for one connection before its writer runs
/// (sixteen texts of 64 KiB to one user).
pub use crate::config::MIN_SEND_QUEUE;

/// How many bytes of answers (9001) may wait for a connection before it is
/// closed as slow (they count in `send_queue` too, but an answer is never
/// refused for the other bytes waiting: a client reading a big backlog and
/// acknowledging it as it reads must not be closed). Answers come in bursts, one
/// per group commit: a commit holds at most `store::MAX_BATCH` (4096) ops,
/// and a 9001 is about 150 bytes (at most about 400 with a 64-character id
/// and a long `msg`), so 2 MiB holds a whole commit of answers for one
/// connection even when its queue is full of messages. A client that
/// keeps up with its own answers is therefore never closed for them; one
/// that sends and does not read is, once that much is waiting.
pub const ANSWER_ALLOWANCE: usize = 2 * 1024 * 1024;
