//! Durable message state on SQLite (PROTOCOL.md section 7).
//!
//! One store thread owns the database. The router sends it [`StoreOp`]s; it
//! drains its channel into one transaction per batch (group commit: one
//! fsync for many messages), commits, and only then answers each op with a
//! [`Done`], all of a batch in one message on the router's completion
//! channel. So 9001 SUCCESS and delivery both happen after the message is
//! on disk.

pub mod backup;
mod checkpoint;
mod clock;
pub mod groups;
mod groups_db;
mod history;
mod logins;
mod messages;
mod open;
mod purge;
pub(crate) mod recent;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select, tick, unbounded};

use crate::auth::SavedLogin;
use crate::clock::now_ms;
use crate::events::{Done, Dones, StoreOp};
use crate::supervisor::{Watch, fault};
use crate::wire::ids::{GroupName, Origin, To, UserId};
use crate::wire::{Reject, Status};
use checkpoint::{Checkpointer, Nudge};
use clock::{AgeClock, Stamps};
use groups::{GroupError, GroupLimits};
pub use groups_db::{GroupDone, read_groups};
use messages::Db;

#[cfg(test)]
pub(crate) use checkpoint::{BACKSTOP_PAGES, CHECKPOINT_EVERY_OPS};
pub use history::{Before, HistoryItem, With, conversations, history, is_member};
#[cfg(test)]
pub use messages::{PAGE_BYTES, PAGE_FRAMES};
pub use messages::{Page, StoredMessage};
pub use open::open_reader;

/// The database file inside `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("edgeim.db")
}

/// The store's limits, from `[limits]`.
#[derive(Clone, Debug)]
pub struct StoreLimits {
    pub offline_per_user: usize,
    pub retention_ms: u64,
    pub forget_client_ms: u64,
    /// How long a batch with a text waits for more ops before it commits
    /// (`[store] commit_window_ms`); zero commits at once.
    pub commit_window: Duration,
    /// `max_group_members` and `max_groups_per_user`.
    pub groups: GroupLimits,
    /// Who the users file knows: a group member removed from it stays
    /// listed but receives nothing (PROTOCOL.md section 10).
    pub known: Known,
}

/// Whether a user exists, as the users file says now.
#[derive(Clone)]
pub struct Known(Option<Arc<UserExists>>);

/// Whether the users file (or delegated login) knows this user. Asked for
/// every member of a group on each group text, on the store thread: it
/// must not allocate or look at the file.
pub type UserExists = dyn Fn(&UserId) -> bool + Send + Sync;

impl Known {
    /// Everyone exists (tests).
    #[cfg(test)]
    pub fn everyone() -> Known {
        Known(None)
    }
    pub fn by(f: impl Fn(&UserId) -> bool + Send + Sync + 'static) -> Known {
        Known(Some(Arc::new(f)))
    }
    pub fn has(&self, user: &UserId) -> bool {
        self.0.as_ref().is_none_or(|f| f(user))
    }
}

impl fmt::Debug for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Known")
    }
}

/// A text the router has checked and wants accepted.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub origin: Origin,
    pub id: String,
    pub to: To,
    pub body: String,
}

/// A user the accepted message goes to. `copy` marks the sender's own user
/// when it is not among the recipients: its other clients get a copy.
#[derive(Debug, Clone)]
pub struct Target {
    pub user: UserId,
    pub copy: bool,
}

#[derive(Debug)]
pub enum Accepted {
    /// New: deliver `message` to the targets' connected clients.
    New {
        message: StoredMessage,
        targets: Vec<Target>,
    },
    /// A resend of an accepted (from, id): answer SUCCESS, deliver nothing.
    Duplicate,
}

/// Why a message was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// These recipients have `offline_per_user` unacknowledged messages.
    Full(Vec<UserId>),
    /// A text to a group that does not exist.
    UnknownGroup(GroupName),
    /// A text to a group from a user who is not in it.
    NotMember(GroupName),
    /// A text to a group with an empty body: checked here, after `to`,
    /// since only the store knows the group.
    EmptyBody,
}

impl Refused {
    /// The 9001 a client gets (407 or 406).
    pub fn reject(&self) -> Reject {
        match self {
            Refused::Full(users) => {
                let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
                Reject::new(
                    Status::ReceiveError,
                    format!("offline queue full: {}", names.join(",")),
                )
            }
            Refused::UnknownGroup(g) => Reject::new(Status::ToError, format!("unknown group #{g}")),
            Refused::NotMember(g) => Reject::new(Status::ToError, format!("not a member of #{g}")),
            Refused::EmptyBody => Reject::new(Status::BodyError, "body is empty"),
        }
    }
}

/// What a 9101 leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The first receipt from this user: forward it to the sender's clients.
    Forward(UserId),
    /// Recorded only (a repeat, a copy, or a system message).
    Recorded,
}

/// The store could not be opened: one line for the operator.
#[derive(Debug)]
pub struct OpenError {
    /// The database file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: String,
    /// Starting again cannot help (not a database, a newer schema, not
    /// writable): the operator must act.
    pub permanent: bool,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database {}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for OpenError {}

/// Most ops in one transaction.
pub(crate) const MAX_BATCH: usize = 4096;
/// How often the clean-up runs, and how much it does per transaction, so
/// that it never holds up messages for long.
pub(crate) const PURGE_EVERY: Duration = Duration::from_secs(600);
pub(crate) const PURGE_STEP: usize = 500;
/// Ops waiting for the store; a full queue slows the router down.
pub(crate) const OP_QUEUE: usize = 16 * 1024;

/// The running store thread.
pub struct Store {
    ops: Sender<StoreOp>,
    thread: JoinHandle<()>,
}

/// What a freshly opened store hands back besides its thread.
pub struct Opened {
    pub store: Store,
    pub done: Receiver<Dones>,
    pub logins: Vec<SavedLogin>,
    /// The users delegated login vouched for so far.
    pub delegated: Vec<UserId>,
}

impl Store {
    /// Opens (creating or migrating) the database and starts the store thread.
    #[cfg(test)]
    pub fn open(path: &Path, limits: StoreLimits) -> Result<Opened, OpenError> {
        Store::open_watched(path, limits, None)
    }

    /// [`Store::open`], with the store thread under `watch`, which reports
    /// its end (a failure: only [`Store::close`] should end it).
    pub fn open_watched(
        path: &Path,
        limits: StoreLimits,
        watch: Option<Watch>,
    ) -> Result<Opened, OpenError> {
        let what = |e: &dyn fmt::Display| OpenError {
            path: path.to_path_buf(),
            why: e.to_string(),
            permanent: false,
        };
        let conn = open::open_connection(path).map_err(|f| OpenError {
            path: path.to_path_buf(),
            why: f.why,
            permanent: f.permanent,
        })?;
        let window = limits.commit_window;
        let db = Db::new(conn, limits).map_err(|e| what(&e))?;
        let checkpointer = Checkpointer::start(path).map_err(|e| what(&e))?;
        let logins = db.logins(now_ms()).map_err(|e| what(&e))?;
        let delegated = db.delegated_users().map_err(|e| what(&e))?;
        let stamps = Stamps::after(db.last_ts().map_err(|e| what(&e))?);
        let last_tick = db.last_tick().map_err(|e| what(&e))?;
        let age = AgeClock::resume(last_tick, now_ms(), Instant::now());
        let (ops_tx, ops_rx) = bounded(OP_QUEUE);
        let (done_tx, done_rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                // Locals drop in reverse: the watch reports this thread's
                // end before the router sees the answer channel close, so
                // the report names the store, not the router.
                let _keep_open = done_tx.clone();
                let _watch = watch;
                run(db, stamps, age, window, checkpointer, ops_rx, done_tx);
            })
            .map_err(|e| what(&e))?;
        Ok(Opened {
            store: Store {
                ops: ops_tx,
                thread,
            },
            done: done_rx,
            logins,
            delegated,
        })
    }

    /// A handle for sending ops.
    pub fn sender(&self) -> Sender<StoreOp> {
        self.ops.clone()
    }

    /// Commits what the store was given before, then stops its thread.
    pub fn close(self) {
        let _ = self.ops.send(StoreOp::Stop);
        let _ = self.thread.join();
    }
}

/// The store thread: block for one op, take what else is waiting, do it all
/// in one transaction, commit, answer.
fn run(
    mut db: Db,
    mut stamps: Stamps,
    age: AgeClock,
    window: Duration,
    checkpointer: Checkpointer,
    ops: Receiver<StoreOp>,
    done: Sender<Dones>,
) {
    let purge = tick(PURGE_EVERY);
    let mut nudge = Nudge::default();
    let mut purging = start_purge(&mut db, &age);
    loop {
        let first = if purging {
            // Clean-up in small steps, between batches of real work.
            match ops.try_recv() {
                Ok(op) => Some(op),
                Err(crossbeam_channel::TryRecvError::Empty) => None,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    write_all_behind(&mut db);
                    return;
                }
            }
        } else {
            select! {
                recv(ops) -> op => match op {
                    Ok(op) => Some(op),
                    Err(_) => {
                        write_all_behind(&mut db);
                        return;
                    }
                },
                recv(purge) -> _ => { purging = start_purge(&mut db, &age); None }
            }
        };
        let Some(first) = first else {
            if purging {
                purging = purge_step(&mut db, &age);
            }
            continue;
        };
        if fault("store") {
            panic!("EDGEIM_FAULT=store");
        }
        let received = Instant::now();
        let mut batch = vec![first];
        batch.extend(ops.try_iter().take(MAX_BATCH - 1));
        if batch.iter().any(needs_flush) {
            gather(&mut batch, &ops, received + window);
        }
        let stop = batch.iter().position(|op| matches!(op, StoreOp::Stop));
        if let Some(at) = stop {
            batch.truncate(at);
        }
        let ops_done = batch.len();
        let answers = apply_batch(&mut db, batch, stamps.next(now_ms()));
        if nudge.committed(ops_done) {
            checkpointer.nudge();
        }
        if !answers.is_empty() {
            let _ = done.send(answers);
        }
        if stop.is_some() {
            write_all_behind(&mut db);
            return;
        }
    }
}

/// The commit window: a batch that will be flushed takes in what else
/// arrives until `until` (or until it is full, or a Stop comes), so that
/// one fsync covers the texts and receipts of a few milliseconds instead
/// of one each. Each commit writes every b-tree page it touched again, so
/// fewer commits are fewer bytes on the disk per text as well as fewer
/// flushes, for at most `until` more latency on a text's 9001.
///
/// The thread sleeps through the window and then takes what came, rather
/// than waiting on the channel: a wait wakes the thread for every op that
/// arrives (and crossbeam spins and yields before each wait), which at a
/// steady 2,000 texts/s was 1.5 wake-ups per text on this thread alone
/// (BENCHMARKS.md, "Cutting the per-text cost, second round"). A batch that
/// is full, or holds a Stop, does not wait; a Stop that comes during the
/// window is taken at its end (shutdown waits at most one window).
fn gather(batch: &mut Vec<StoreOp>, ops: &Receiver<StoreOp>, until: Instant) {
    if take_waiting(batch, ops) {
        return;
    }
    let now = Instant::now();
    if until > now {
        std::thread::sleep(until - now);
    }
    take_waiting(batch, ops);
}

/// Moves what is waiting into `batch`, up to [`MAX_BATCH`] and up to a
/// Stop. True when the batch is full or ends with a Stop.
fn take_waiting(batch: &mut Vec<StoreOp>, ops: &Receiver<StoreOp>) -> bool {
    let ended = |b: &Vec<StoreOp>| b.len() >= MAX_BATCH || matches!(b.last(), Some(StoreOp::Stop));
    while !ended(batch) {
        match ops.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => return false,
        }
    }
    true
}

/// At a clean stop: the recent texts' inbox and pending rows go to the
/// database now, so that a restart redelivers nothing that was
/// acknowledged (after a crash, [`Db::begin`] derives them again).
fn write_all_behind(db: &mut Db) {
    let step = db
        .begin()
        .and_then(|()| db.write_behind(true))
        .and_then(|()| db.commit());
    if let Err(e) = step {
        log::error!("writing the recent texts' delivery rows at stop failed: {e}");
        db.rollback();
    }
}

/// A clean-up begins: record the newest seq at the store's age now, in a
/// transaction of its own. False (no clean-up now) if that fails.
fn start_purge(db: &mut Db, age: &AgeClock) -> bool {
    let step = db
        .begin()
        .and_then(|()| db.tick(age.age_ms(Instant::now()), now_ms()))
        .and_then(|()| db.commit());
    match step {
        Ok(()) => true,
        Err(e) => {
            log::error!("store clean-up failed: {e}");
            db.rollback();
            false
        }
    }
}

fn purge_step(db: &mut Db, age: &AgeClock) -> bool {
    let step = db
        .begin()
        .and_then(|()| db.purge_step(now_ms(), age.age_ms(Instant::now()), PURGE_STEP))
        .and_then(|more| db.commit().map(|()| more));
    match step {
        Ok(more) => more,
        Err(e) => {
            log::error!("store clean-up failed: {e}");
            db.rollback();
            false
        }
    }
}

/// Applies a batch in one transaction, every text of it stamped `now`. If
/// anything fails on the database side, nothing of the batch is kept and
/// every op is answered 400.
fn apply_batch(db: &mut Db, batch: Vec<StoreOp>, now: u64) -> Vec<Done> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let started = Instant::now();
    let flush = batch.iter().any(needs_flush);
    // The recent texts' rows that are due go into this transaction too.
    let mut failure = db
        .flush_commits(flush)
        .and_then(|()| db.begin())
        .and_then(|()| db.write_behind(false))
        .err();
    for op in &batch {
        if failure.is_some() {
            break;
        }
        match execute(db, op, now) {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => failure = Some(e),
        }
    }
    // The COMMIT is timed on its own too: in WAL mode with synchronous=FULL
    // it is where the batch's pages go to the WAL and the WAL is fsynced
    // (and, now and then, an automatic checkpoint runs), so its time is the
    // durable part of the commit, as close as SQLite lets us measure it.
    let (failure, sync) = match failure {
        Some(e) => (Some(e), None),
        None => {
            let syncing = Instant::now();
            let failure = db.commit().err();
            (failure, Some(syncing.elapsed()))
        }
    };
    if let (None, Some(sync)) = (&failure, sync) {
        crate::metrics::metrics().commit(started.elapsed(), sync);
    }
    if let Some(e) = &failure {
        log::error!(
            "storage failure, batch of {} ops not stored: {e}",
            batch.len()
        );
        db.rollback();
    }
    let mut outcomes = outcomes.into_iter();
    batch
        .into_iter()
        .filter_map(|op| {
            let outcome = match failure {
                None => outcomes.next().unwrap_or(Outcome::Nothing),
                Some(_) => Outcome::Failed,
            };
            answer(op, outcome)
        })
        .collect()
}

/// Whether an op's answer may go out only once its batch is flushed to
/// disk. A text's 9001 SUCCESS promises that a power cut loses nothing, and
/// a revoked login must not come back after one; a saved login is flushed
/// so that a restart after a power cut keeps people logged in. A receipt, a
/// register or a detach records only what a power cut may undo at the cost
/// of a redelivery, which at-least-once delivery allows (PROTOCOL.md
/// section 7): a batch of only those is committed without an fsync, and
/// the next flushed batch makes it durable too. Fewer fsyncs is fewer
/// 4 KiB writes per text on an SD card, and less time waiting for them.
fn needs_flush(op: &StoreOp) -> bool {
    match op {
        StoreOp::Accept { .. }
        | StoreOp::Group { .. }
        | StoreOp::SaveLogin { .. }
        | StoreOp::RevokeLogin { .. }
        | StoreOp::RevokeUser { .. } => true,
        StoreOp::Receipt { .. }
        | StoreOp::Settle { .. }
        | StoreOp::RememberUser { .. }
        | StoreOp::Attach { .. }
        | StoreOp::Page { .. }
        | StoreOp::Detach { .. }
        | StoreOp::Ping
        | StoreOp::Stop => false,
    }
}

/// What one op came to, inside the transaction.
enum Outcome {
    Accepted(Result<Accepted, Reject>),
    Receipt(Result<ReceiptOutcome, Reject>),
    Attached(Page),
    Paged(Page),
    Group(Result<GroupDone, GroupError>),
    Nothing,
    /// The batch was not committed.
    Failed,
}

/// Does one op inside the open transaction.
fn execute(db: &mut Db, op: &StoreOp, now: u64) -> Result<Outcome, messages::DbError> {
    Ok(match op {
        StoreOp::Accept { msg, sender, .. } => {
            let result = db
                .accept(msg, sender.as_ref(), now)?
                .map_err(|r| r.reject());
            Outcome::Accepted(result)
        }
        StoreOp::Receipt { key, receipt, .. } => {
            let found = db.receipt(key, &receipt.to, &receipt.id)?;
            Outcome::Receipt(found.ok_or_else(|| {
                Reject::new(
                    Status::MessageError,
                    "receipt for a message this user never received",
                )
            }))
        }
        StoreOp::Attach { key, .. } => Outcome::Attached(db.attach(key, now)?),
        StoreOp::Page { key, after, .. } => Outcome::Paged(db.page(key, *after)?),
        StoreOp::Detach { key } => {
            db.detach(key, now)?;
            Outcome::Nothing
        }
        StoreOp::SaveLogin {
            hash,
            user,
            tag,
            expires_ms,
            ..
        } => {
            db.save_login(hash, user, *tag, *expires_ms)?;
            Outcome::Nothing
        }
        StoreOp::RevokeLogin { hash, .. } => {
            db.revoke_login(hash)?;
            Outcome::Nothing
        }
        StoreOp::RevokeUser { user } => {
            db.revoke_user(user)?;
            Outcome::Nothing
        }
        StoreOp::RememberUser { user } => {
            db.remember_user(user, now)?;
            Outcome::Nothing
        }
        StoreOp::Group { actor, change, .. } => {
            Outcome::Group(db.change_group(actor, change, now)?)
        }
        StoreOp::Settle { .. } => {
            db.write_behind(true)?;
            Outcome::Nothing
        }
        StoreOp::Ping | StoreOp::Stop => Outcome::Nothing,
    })
}

/// The answer to one op, once its batch is committed (or not).
fn answer(op: StoreOp, outcome: Outcome) -> Option<Done> {
    let failed = matches!(outcome, Outcome::Failed);
    let storage = || Reject::new(Status::Failed, "storage failure: not stored; retry");
    Some(match op {
        StoreOp::Accept {
            sender,
            msg,
            reply_to,
        } => Done::Accepted {
            sender,
            id: msg.id,
            result: match outcome {
                Outcome::Accepted(result) => result,
                _ => Err(storage()),
            },
            reply_to,
        },
        StoreOp::Receipt { conn, key, receipt } => Done::Receipt {
            conn,
            key,
            receipt,
            result: match outcome {
                Outcome::Receipt(result) => result,
                _ => Err(storage()),
            },
        },
        StoreOp::Attach {
            conn,
            key,
            register_id,
        } => Done::Attached {
            conn,
            key,
            register_id,
            result: match outcome {
                Outcome::Attached(backlog) => Ok(backlog),
                _ => Err(storage()),
            },
        },
        StoreOp::Page { conn, key, .. } => Done::Paged {
            conn,
            key,
            result: match outcome {
                Outcome::Paged(page) => Ok(page),
                _ => Err(storage()),
            },
        },
        StoreOp::SaveLogin { reply, .. }
        | StoreOp::RevokeLogin { reply, .. }
        | StoreOp::Settle { reply } => {
            let _ = reply.send(!failed);
            return None;
        }
        StoreOp::Group { reply, .. } => Done::Group {
            result: match outcome {
                Outcome::Group(result) => result,
                _ => Err(GroupError::Storage),
            },
            reply,
        },
        StoreOp::Ping => Done::Pong,
        StoreOp::Detach { .. }
        | StoreOp::RevokeUser { .. }
        | StoreOp::RememberUser { .. }
        | StoreOp::Stop => return None,
    })
}
