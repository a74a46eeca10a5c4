//! `edgeim backup`: a consistent copy of the database with SQLite's online
//! backup, also while the server runs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::open::open_reader;

pub use super::path_in;

/// Why a backup was not made.
#[derive(Debug)]
pub enum BackupError {
    /// There is no database to copy.
    NoDatabase(PathBuf),
    /// The target exists: a backup never overwrites.
    TargetExists(PathBuf),
    /// The database cannot be opened for reading.
    Open(PathBuf, rusqlite::Error),
    /// The target cannot be created.
    Create(PathBuf, rusqlite::Error),
    /// Copying failed; the partial copy is removed.
    Copy(PathBuf, String),
}

impl fmt::Display for BackupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupError::NoDatabase(p) => write!(f, "no database at {}", p.display()),
            BackupError::TargetExists(p) => {
                write!(f, "{} exists; choose a new file", p.display())
            }
            BackupError::Open(p, e) => write!(f, "database {}: {e}", p.display()),
            BackupError::Create(p, e) => write!(f, "{}: {e}", p.display()),
            BackupError::Copy(p, why) => write!(f, "backup to {}: {why}", p.display()),
        }
    }
}

impl std::error::Error for BackupError {}

/// `edgeim backup`: a consistent copy of the database at `to`, made with
/// SQLite's online backup while the server may be running. Refuses to
/// overwrite a file.
pub fn backup(db: &Path, to: &Path) -> Result<(), BackupError> {
    if !db.exists() {
        return Err(BackupError::NoDatabase(db.to_path_buf()));
    }
    if to.exists() {
        return Err(BackupError::TargetExists(to.to_path_buf()));
    }
    let src = open_reader(db).map_err(|e| BackupError::Open(db.to_path_buf(), e))?;
    let mut dst =
        rusqlite::Connection::open(to).map_err(|e| BackupError::Create(to.to_path_buf(), e))?;
    let copy = rusqlite::backup::Backup::new(&src, &mut dst)
        .map_err(|e| BackupError::Copy(to.to_path_buf(), e.to_string()))?;
    // One step: it reads one snapshot (WAL lets the server keep writing
    // meanwhile). Copying in many steps restarts whenever the server
    // commits between them, and a busy server never lets it finish.
    let result = copy_all(&copy);
    drop(copy);
    drop(dst);
    result.map_err(|e| {
        let _ = std::fs::remove_file(to);
        BackupError::Copy(to.to_path_buf(), e)
    })
}

/// Runs a backup in one step, retrying a bounded number of times while the
/// database is briefly locked.
fn copy_all(copy: &rusqlite::backup::Backup) -> Result<(), String> {
    use rusqlite::backup::StepResult;
    for _ in 0..1000 {
        match copy.step(-1).map_err(|e| e.to_string())? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            // Locked for a moment by the server's checkpoint: try again soon.
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    Err("the database stayed locked".into())
}
