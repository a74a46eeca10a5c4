//! The database schema and its migrations, versioned with
//! `PRAGMA user_version`. Indexes are few on purpose: every index multiplies
//! the bytes written per message (SD cards wear out).

use rusqlite::Connection;

/// Each step takes the schema from version `i` to `i + 1`. Never edit a
/// step that has shipped; add one.
pub const MIGRATIONS: &[&str] = &[
    // 1: messages, per-user inbox, per-client pending deliveries.
    "
    CREATE TABLE messages (
        seq        INTEGER PRIMARY KEY,  -- order of acceptance
        origin     TEXT NOT NULL,        -- sender's user id, or SYSTEM
        id         TEXT NOT NULL,        -- the sender's message id
        recipients TEXT NOT NULL,        -- normalised `to`: a,b,c
        body       TEXT NOT NULL,
        ts         INTEGER NOT NULL      -- server time of acceptance, ms
    );
    -- Dedup of resends and lookup of receipts by (from, id).
    CREATE UNIQUE INDEX messages_by_origin_id ON messages (origin, id);
    -- One row per user a message concerns: each recipient, and the sender
    -- (a copy) when it is not a recipient. state: 0 no client of the user
    -- acknowledged it, 1 acknowledged, 2 the sender's own copy.
    CREATE TABLE inbox (
        user  TEXT NOT NULL,
        seq   INTEGER NOT NULL,
        state INTEGER NOT NULL,
        PRIMARY KEY (user, seq)
    ) WITHOUT ROWID;
    -- Clients ever registered, for per-client delivery.
    CREATE TABLE clients (
        user      TEXT NOT NULL,
        client    TEXT NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (user, client)
    ) WITHOUT ROWID;
    -- What each client has not acknowledged yet.
    CREATE TABLE pending (
        user   TEXT NOT NULL,
        client TEXT NOT NULL,
        seq    INTEGER NOT NULL,
        PRIMARY KEY (user, client, seq)
    ) WITHOUT ROWID;
    ",
    // 2: browser and app logins survive a restart (hashes only).
    "
    CREATE TABLE logins (
        hash    BLOB PRIMARY KEY,
        user    TEXT NOT NULL,
        expires INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 3: a login remembers the password it was made with, so changing the
    // password ends it. Logins from before have tag 0 and end at once.
    "
    ALTER TABLE logins ADD COLUMN tag INTEGER NOT NULL DEFAULT 0;
    ",
    // 4: retention by the store's age, not by timestamps (a clock step must
    // not delete messages): each clean-up records the newest seq and the
    // store's age then (store/clock.rs). Messages from before expire
    // `retention_days` after the upgrade.
    "
    CREATE TABLE clock (
        seq     INTEGER NOT NULL,  -- the newest message seq at this tick
        age_ms  INTEGER NOT NULL,  -- the store's age then
        wall_ms INTEGER NOT NULL   -- the wall clock then
    );
    ",
    // 5: a text's inbox and pending rows are written up to a second after
    // its messages row (store/recent.rs). The mark is the newest seq whose
    // rows are all written; the rows of texts past it are derived from
    // `messages` again after a crash, and `client`, the sending client,
    // keeps its own text from coming back to it then. Everything before
    // this version has its rows.
    "
    ALTER TABLE messages ADD COLUMN client TEXT;
    CREATE TABLE recent_mark (h INTEGER NOT NULL);
    INSERT INTO recent_mark (h) SELECT COALESCE(MAX(seq), 0) FROM messages;
    ",
    // 6: groups (PROTOCOL.md section 10). A group text's `recipients` is
    // `#name` and its `grp` the name; the partial index holds group texts
    // only, so a direct text pays nothing for it. `former` lists who left
    // a group: the inbox rows of its older texts are theirs too, and the
    // clean-up must find them.
    "
    CREATE TABLE groups (
        name    TEXT PRIMARY KEY,
        title   TEXT NOT NULL,
        created INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE members (
        grp   TEXT NOT NULL,
        user  TEXT NOT NULL,
        owner INTEGER NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (grp, user)
    ) WITHOUT ROWID;
    CREATE TABLE former (
        grp  TEXT NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (grp, user)
    ) WITHOUT ROWID;
    ALTER TABLE messages ADD COLUMN grp TEXT;
    CREATE INDEX messages_of_groups ON messages (grp, seq) WHERE grp IS NOT NULL;
    ",
    // 7: users a host system vouched for (delegated login, PROTOCOL.md
    // section 13): users from their first login on.
    "
    CREATE TABLE delegated (
        user  TEXT PRIMARY KEY,
        since INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
];

/// The version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings a database to [`VERSION`], each step in its own transaction.
pub fn migrate(conn: &mut Connection, upto: i64) -> Result<i64, String> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if found > VERSION {
        return Err(format!(
            "schema version {found} is newer than this edgeim understands ({VERSION}); use a newer edgeim"
        ));
    }
    for (i, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(found as usize)
        .take((upto - found).max(0) as usize)
    {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(step)
            .map_err(|e| format!("migration to version {}: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        if found > 0 {
            log::info!("database migrated to schema version {}", i + 1);
        }
    }
    Ok(found)
}
