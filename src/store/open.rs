//! Opening the database: create or migrate it, refuse what the server
//! cannot write, and set the durability it promises.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::messages::DbError;
use super::schema;

/// Why the database could not be opened. `permanent`: starting again
/// cannot help (not a database, a newer schema, not writable), so the
/// service manager should not retry.
#[derive(Debug)]
pub struct OpenFailure {
    /// One line for the operator.
    pub why: String,
    /// Whether a restart cannot help.
    pub permanent: bool,
}

impl From<String> for OpenFailure {
    fn from(why: String) -> OpenFailure {
        OpenFailure {
            why,
            permanent: false,
        }
    }
}

impl From<rusqlite::Error> for OpenFailure {
    fn from(e: rusqlite::Error) -> OpenFailure {
        OpenFailure {
            permanent: e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase),
            why: e.to_string(),
        }
    }
}

fn permanent(why: String) -> OpenFailure {
    OpenFailure {
        why,
        permanent: true,
    }
}

/// The page size of a new database, in bytes.
pub const PAGE_SIZE: u32 = 1024;

/// Opens (creating if needed) and migrates the database; the error is one
/// line for the operator.
pub fn open_connection(path: &Path) -> Result<Connection, OpenFailure> {
    let existed = path.exists();
    let mut conn = Connection::open(path)?;
    // SQLite quietly opens a file it may not write read-only; then every
    // message would fail. Refuse to start instead.
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(permanent(
            "the file is not writable by this user (check its owner and mode)".into(),
        ));
    }
    if !existed {
        log::info!("created a new database {}", path.display());
    }
    if !existed {
        // Before the first table (and before WAL, which fixes the page size):
        // each commit writes every page it touched, and a text touches a few
        // b-tree leaves with small rows, so small pages write fewer bytes per
        // text (about half of 4 KiB pages' at 2,000 texts/s, BENCHMARKS.md).
        // A database made by an older edgeim keeps its page size.
        conn.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE}"))?;
    }
    // WAL: readers (history) never block the writer; FULL: a commit is on
    // disk when COMMIT returns, so 9001 SUCCESS can follow it.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("cannot use WAL journal mode (got {mode})").into());
    }
    // An 8 MiB page cache holds the hot ends of the tables; SQLite's 2 MiB
    // default made the store re-read pages under load.
    // Checkpoints are the checkpoint thread's job (checkpoint.rs); this
    // connection checkpoints in its own commits only as a backstop.
    conn.execute_batch(&format!(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-8192; \
         PRAGMA wal_autocheckpoint={};",
        super::checkpoint::BACKSTOP_PAGES
    ))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > schema::VERSION {
        return Err(permanent(format!(
            "schema version {found} is newer than this edgeim understands ({}); use a newer edgeim",
            schema::VERSION
        )));
    }
    schema::migrate(&mut conn, schema::VERSION)?;
    // Every statement of the message path stays prepared (the default
    // cache holds 16, fewer than the store uses).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A read-only connection for queries outside the store thread.
pub fn open_reader(path: &Path) -> Result<Connection, DbError> {
    open_beside(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// A connection beside the store's own (history readers, the checkpoint
/// thread), used by one thread, waiting up to 5 s for a lock.
pub(super) fn open_beside(path: &Path, mode: OpenFlags) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}
