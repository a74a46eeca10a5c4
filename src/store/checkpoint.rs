//! WAL checkpoints on a thread of their own, less often than SQLite's
//! default.
//!
//! In WAL mode every commit appends the pages it touched to the WAL, and a
//! checkpoint copies the newest version of each page back into the database
//! file. SQLite's default runs one inside the commit that takes the WAL
//! past 1,000 pages, on the thread that commits: the store stalls for it,
//! and a page written by many commits in between is copied once per
//! checkpoint. Here the store nudges this thread every
//! [`CHECKPOINT_EVERY_OPS`] ops instead; it copies with a PASSIVE
//! checkpoint, which never blocks the store's commits, on its own
//! connection. At a steady 2,000 texts/s that wrote 25% fewer bytes per
//! text than the default (BENCHMARKS.md, "Cutting the per-text cost,
//! second round"). The store's own automatic checkpoint stays as a backstop, at
//! [`BACKSTOP_PAGES`], should this thread fall behind or fail.

use std::path::Path;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError, bounded};
use rusqlite::{Connection, OpenFlags};

use super::messages::DbError;
use crate::events::CheckpointOp;

/// Why the checkpoint thread could not start.
#[derive(Debug)]
pub enum StartError {
    /// Its connection to the database.
    Open(DbError),
    /// The thread itself.
    Spawn(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Open(e) => write!(f, "the checkpoint thread's connection: {e}"),
            StartError::Spawn(e) => write!(f, "cannot start the checkpoint thread: {e}"),
        }
    }
}

/// Store ops (texts, receipts, registers, ...) between two nudges. A text
/// and its receipt append about seven 1 KiB pages to the WAL, so this is
/// about 7 MiB of WAL at most between checkpoints.
pub const CHECKPOINT_EVERY_OPS: usize = 2048;

/// The store connection's `wal_autocheckpoint`, in pages: it checkpoints
/// itself, in its commit, only when the WAL grew past this.
pub const BACKSTOP_PAGES: i64 = 16 * 1024;

/// Counts ops since the last nudge: the decision, without the thread.
#[derive(Debug, Default)]
pub struct Nudge {
    ops: usize,
}

impl Nudge {
    /// `n` more ops were committed; true when a checkpoint is due (and the
    /// count starts again).
    pub fn committed(&mut self, n: usize) -> bool {
        self.ops = self.ops.saturating_add(n);
        if self.ops >= CHECKPOINT_EVERY_OPS {
            self.ops = 0;
            true
        } else {
            false
        }
    }
}

/// The checkpoint thread. Dropping it ends the thread and waits for it.
pub struct Checkpointer {
    nudge: Option<Sender<CheckpointOp>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens its own connection to the database at `path` and starts the
    /// thread, which sleeps until nudged (an idle server costs nothing).
    pub fn start(path: &Path) -> Result<Checkpointer, StartError> {
        let conn = open(path).map_err(StartError::Open)?;
        // One nudge waiting is enough: more would only repeat it.
        let (tx, rx) = bounded::<CheckpointOp>(1);
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                for CheckpointOp::Due in rx {
                    if let Err(e) = checkpoint(&conn) {
                        log::warn!("WAL checkpoint failed (the store will retry it itself): {e}");
                    }
                }
            })
            .map_err(StartError::Spawn)?;
        Ok(Checkpointer {
            nudge: Some(tx),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint; never blocks (one already asked for covers
    /// this one).
    pub fn nudge(&self) {
        if let Some(tx) = &self.nudge
            && let Err(TrySendError::Disconnected(_)) = tx.try_send(CheckpointOp::Due)
        {
            log::warn!("the WAL checkpoint thread has stopped");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The checkpoint thread's connection: read-write (a checkpoint writes the
/// database file), never checkpointing on its own.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let conn = super::open::open_beside(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
    Ok(conn)
}

/// Copies what it can of the WAL into the database without waiting for
/// the writer or readers. Returns the WAL's frames and how many of them are
/// now in the database file.
pub fn checkpoint(conn: &Connection) -> Result<(i64, i64), DbError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_md_quotes_the_checkpoint_interval_and_backstop() {
        let doc = crate::doc_constants::one_line(include_str!("../../docs/OPERATIONS.md"));
        // 1 KiB pages (open.rs) make the backstop's pages KiB of WAL.
        assert_eq!(super::super::open::PAGE_SIZE, 1024);
        let ops = CHECKPOINT_EVERY_OPS;
        let phrase = format!(
            "every {},{:03} messages, receipts and registers; should it fall behind, the store does so itself at {} MiB of WAL",
            ops / 1000,
            ops % 1000,
            BACKSTOP_PAGES / 1024
        );
        assert!(doc.contains(&phrase), "OPERATIONS.md lacks: {phrase}");
    }

    #[test]
    fn a_checkpoint_is_due_every_so_many_ops_and_the_count_starts_again() {
        let mut n = Nudge::default();
        assert!(!n.committed(CHECKPOINT_EVERY_OPS - 1));
        assert!(n.committed(1));
        assert!(!n.committed(CHECKPOINT_EVERY_OPS - 1));
        // A batch bigger than the interval is one nudge, not several.
        assert!(n.committed(CHECKPOINT_EVERY_OPS * 3));
        assert!(!n.committed(1));
    }
}
