//! The server's view of the users file: who exists, and password checks,
//! reloaded by itself when `edgeim user` changes the file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};
use std::time::SystemTime;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use crossbeam_channel::{Receiver, Sender, bounded};

use super::users::{Entries, PasswordTag, UsersError, hash_password, password_tag, read};
use crate::wire::ids::UserId;

/// The server's view of the users file, reloaded when the file changes.
pub struct Directory {
    path: PathBuf,
    state: RwLock<Loaded>,
    /// Users a host system vouched for (delegated login, PROTOCOL.md
    /// section 13), remembered in the database from their first login:
    /// they exist as users-file users do.
    delegated: RwLock<BTreeSet<UserId>>,
    /// argon2 takes 19 MiB and tens of ms per verify: two at a time.
    permits: (Sender<()>, Receiver<()>),
}

struct Loaded {
    entries: Entries,
    version: Option<Version>,
}

/// What tells a changed users file: its modification time and length, and
/// (on Unix) its inode and change time. `edgeim user` writes a new file and
/// renames it over the old one, so each change gets a new inode, even when
/// the length is the same (`passwd`) and the file system's clock is coarse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    modified: SystemTime,
    len: u64,
    inode: u64,
    changed_ns: i128,
}

fn version(path: &Path) -> Option<Version> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (inode, changed_ns) = {
        use std::os::unix::fs::MetadataExt;
        (
            m.ino(),
            i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        )
    };
    #[cfg(not(unix))]
    let (inode, changed_ns) = (0, 0);
    Some(Version {
        modified: m.modified().ok()?,
        len: m.len(),
        inode,
        changed_ns,
    })
}

impl Directory {
    /// Loads the users file; a missing file is an empty directory.
    pub fn open(path: PathBuf) -> Result<Directory, UsersError> {
        let version = version(&path);
        let entries = read(&path)?;
        let permits = bounded(2);
        for _ in 0..2 {
            let _ = permits.0.send(());
        }
        Ok(Directory {
            path,
            state: RwLock::new(Loaded { entries, version }),
            delegated: RwLock::new(BTreeSet::new()),
            permits,
        })
    }

    /// Rereads the file if it changed since the last look. Called on login
    /// and directory requests, never on the message path.
    pub fn refresh(&self) {
        let now = version(&self.path);
        let stale = self.state.read().map(|s| s.version != now).unwrap_or(true);
        if !stale {
            return;
        }
        match read(&self.path) {
            Ok(entries) => {
                if let Ok(mut s) = self.state.write() {
                    log::info!("users file changed: {} users", entries.len());
                    *s = Loaded {
                        entries,
                        version: now,
                    };
                }
            }
            Err(e) => log::error!("{e}; keeping the previous users"),
        }
    }

    /// Rereads the file whether or not it looks changed (SIGHUP); the
    /// number of users. On an error the users stay as they were. A missing
    /// file is an error here, not "no users" as at start: a reload ends
    /// the logins and connections of every user it no longer finds, and a
    /// file moved away for a moment must not do that to everyone.
    pub fn reload(&self) -> Result<usize, UsersError> {
        if let Err(e) = std::fs::metadata(&self.path) {
            return Err(UsersError::Io(self.path.clone(), e));
        }
        let now = version(&self.path);
        let entries = read(&self.path)?;
        let n = entries.len();
        let mut s = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *s = Loaded {
            entries,
            version: now,
        };
        Ok(n)
    }

    /// Whether a user is in the users file as last read, without looking
    /// at the file.
    pub fn contains(&self, user: &UserId) -> bool {
        self.state
            .read()
            .map(|s| s.entries.contains_key(user))
            .unwrap_or(false)
    }

    /// Whether a user is in the users file as last read, or delegated login
    /// vouched for it: no parse, no look at the file (the store asks this
    /// for every member of a group on each group text). A user added to the
    /// file a moment ago is known once anything has refreshed the file
    /// (a login, a logged-in request, a recipient check).
    pub fn knows(&self, user: &UserId) -> bool {
        self.contains(user) || self.is_delegated(user)
    }

    /// The users delegated login remembered (at start, from the database).
    pub fn set_delegated(&self, users: impl IntoIterator<Item = UserId>) {
        if let Ok(mut d) = self.delegated.write() {
            d.extend(users);
        }
    }

    /// A host system vouched for `user`: it exists from now on. True the
    /// first time (the caller has the database remember it).
    pub fn remember(&self, user: &UserId) -> bool {
        let known = self.delegated.read().is_ok_and(|d| d.contains(user));
        !known
            && self
                .delegated
                .write()
                .is_ok_and(|mut d| d.insert(user.clone()))
    }

    fn is_delegated(&self, user: &UserId) -> bool {
        self.delegated.read().is_ok_and(|d| d.contains(user))
    }

    /// Whether a login made with `tag` still stands: `None` when the user
    /// is gone, `Some(false)` when its password changed since. A login a
    /// host system vouched for ([`DELEGATED`]) stands while the user is
    /// remembered.
    pub fn login_stands(&self, user: &UserId, tag: PasswordTag) -> Option<bool> {
        if tag == DELEGATED && self.is_delegated(user) {
            return Some(true);
        }
        self.tag(user).map(|current| current == tag)
    }

    /// Whether a user exists. A miss rereads a changed users file first,
    /// so a user added a moment ago can be written to at once; a hit costs
    /// no system call (this is on the message path).
    pub fn exists(&self, user: &str) -> bool {
        let Some(id) = UserId::parse(user) else {
            return false;
        };
        let known = |d: &Self| {
            d.state
                .read()
                .map(|s| s.entries.contains_key(&id))
                .unwrap_or(false)
        };
        known(self) || self.is_delegated(&id) || {
            self.refresh();
            known(self)
        }
    }

    /// Every user id, in order: the users file's and the delegated ones.
    pub fn all(&self) -> Vec<UserId> {
        let mut all: BTreeSet<UserId> = self
            .state
            .read()
            .map(|s| s.entries.keys().cloned().collect())
            .unwrap_or_default();
        if let Ok(d) = self.delegated.read() {
            all.extend(d.iter().cloned());
        }
        all.into_iter().collect()
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.state.read().map(|s| s.entries.len()).unwrap_or(0)
    }

    /// Whether there are no users at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tag of a user's current password; `None` if the user is gone.
    pub fn tag(&self, user: &UserId) -> Option<PasswordTag> {
        let s = self.state.read().ok()?;
        s.entries.get(user).map(|phc| password_tag(phc))
    }

    /// Checks a password. An unknown user costs the same as a wrong
    /// password, so timing does not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Option<(UserId, PasswordTag)> {
        self.refresh();
        let found = UserId::parse(name).and_then(|id| {
            let s = self.state.read().ok()?;
            s.entries.get(&id).map(|phc| (id, phc.clone()))
        });
        let phc = match &found {
            Some((_, phc)) => phc.as_str(),
            None => dummy_hash(),
        };
        let ok = {
            let _permit = self.permits.1.recv();
            let ok = PasswordHash::new(phc)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false);
            let _ = self.permits.0.send(());
            ok
        };
        found
            .filter(|_| ok)
            .map(|(id, phc)| (id, password_tag(&phc)))
    }
}

/// The tag of a login a host system vouched for: no password hash gives it
/// (a tag is the first 8 bytes of a BLAKE2 hash; this one is reserved).
pub const DELEGATED: PasswordTag = u64::MAX;

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no user has this password"))
}
