//! File modes: everything edgeim writes holds message texts, password
//! hashes or login hashes, so it is readable by the server's user only.
//! The process umask is 077 from the start (the database, its WAL, backups,
//! the demo directory and the users file are created 0600/0700), and at
//! start a data directory or database that an older edgeim or an operator
//! left readable to others is made private again.

use std::path::Path;

/// Makes every file and directory this process creates private to its
/// user (umask 077). Called first thing in `main`.
pub fn private_by_default() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot
    // fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// Takes group and other permissions off `data_dir` and the database
/// files in it, when they have any; says what it changed.
pub fn tighten(data_dir: &Path, files: &[&Path]) {
    restrict(data_dir, 0o700);
    for f in files {
        restrict(f, 0o600);
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        Ok(()) => log::warn!(
            "{} was readable by others (mode {current:o}): now {mode:o}",
            path.display()
        ),
        Err(e) => log::warn!(
            "{} is readable by others (mode {current:o}) and cannot be changed: {e}",
            path.display()
        ),
    }
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn loose_modes_are_tightened_and_private_ones_left_alone() {
        let dir = std::env::temp_dir().join(format!("edgeim-modes-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("edgeim.db");
        let kept = dir.join("other");
        std::fs::write(&db, "x").unwrap();
        std::fs::write(&kept, "x").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o400)).unwrap();
        tighten(&dir, &[&db, &kept, &dir.join("missing")]);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&kept), 0o400, "a private file keeps its mode");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
