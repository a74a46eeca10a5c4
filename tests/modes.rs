//! Everything edgeim writes is private to its user: the data directory
//! 0700, the database, its backups and the users file 0600, the demo's
//! directory 0700 (issue 10, "Modes").

#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::served::{BIN, Served, run_to_end, write_config};
use common::{WAIT, test_config};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_data_dir_the_database_and_a_backup_are_private() {
    let config = test_config("modes");
    let dir = &config.data_dir;
    // As an older edgeim or a careless operator left it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let users = dir.join("users");
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = write_config(&config);
    let mut srv = Served::start(&file, None);
    assert_eq!(mode(dir), 0o700, "data_dir");
    assert_eq!(mode(&dir.join("edgeim.db")), 0o600, "the database");
    assert_eq!(mode(&users), 0o600, "the users file");
    let backup = dir.with_extension("backup.db");
    let out = run_to_end(
        Path::new("/"),
        &[
            "backup",
            backup.to_str().unwrap(),
            "--config",
            file.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&backup), 0o600, "a backup");
    srv.signal("TERM");
    srv.exit_by(Instant::now() + WAIT);
    for f in ["edgeim.db", "edgeim.db-wal", "edgeim.db-shm"] {
        let p = dir.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    let _ = std::fs::remove_file(&backup);
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_demo_directory_is_private() {
    let dir = common::temp_dir("demo-modes").join("demo");
    let mut child = Command::new(BIN)
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgeim demo");
    // The accounts are written before the server starts; the first log
    // line (or the exit, should port 8080 be taken here) comes after.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = BufReader::new(stderr).lines().next();
        let _ = tx.send(first.is_some());
    });
    let _ = rx.recv_timeout(WAIT);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode(&dir), 0o700, "the demo directory");
    assert_eq!(mode(&dir.join("users")), 0o600, "the demo's users file");
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}
