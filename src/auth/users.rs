//! The users file: one `userId:argon2id-PHC-string` line per user, never a
//! password in clear. The server rereads it when it changes, so
//! `edgeim user add` takes effect without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString, rand_core::OsRng};

use crate::wire::ids::UserId;

/// The users file inside `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("users")
}

/// What went wrong with the users file or a change to it.
#[derive(Debug)]
pub enum UsersError {
    /// Reading or writing the file failed.
    Io(PathBuf, io::Error),
    /// This line is not `userId:$argon2id$...`.
    Syntax(PathBuf, usize),
    /// Not a valid user id.
    BadName(String),
    /// `user add` of a user that exists.
    Exists(String),
    /// `passwd` or `remove` of a user that does not.
    Missing(String),
    /// An empty password.
    EmptyPassword,
    /// A password shorter than [`MIN_PASSWORD_CHARS`].
    ShortPassword,
}

/// The shortest password `edgeim user add` and `passwd` accept. Existing
/// users files are not re-checked.
pub const MIN_PASSWORD_CHARS: usize = 8;

fn check_password(password: &str) -> Result<(), UsersError> {
    match password.chars().count() {
        0 => Err(UsersError::EmptyPassword),
        n if n < MIN_PASSWORD_CHARS => Err(UsersError::ShortPassword),
        _ => Ok(()),
    }
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsersError::Io(p, e) => write!(f, "users file {}: {e}", p.display()),
            UsersError::Syntax(p, line) => write!(
                f,
                "users file {} line {line}: expected `userId:$argon2id$...`",
                p.display()
            ),
            UsersError::BadName(n) => write!(
                f,
                "invalid user id {n:?}: use 1 to 64 of A-Z a-z 0-9 . _ @ -, not SYSTEM"
            ),
            UsersError::Exists(n) => {
                write!(f, "user {n} already exists (use `edgeim user passwd {n}`)")
            }
            UsersError::Missing(n) => write!(f, "no user {n}"),
            UsersError::EmptyPassword => write!(f, "the password is empty"),
            UsersError::ShortPassword => write!(
                f,
                "the password is too short: use at least {MIN_PASSWORD_CHARS} characters"
            ),
        }
    }
}

impl std::error::Error for UsersError {}

pub(super) type Entries = BTreeMap<UserId, String>;

/// Identifies one password of a user (a digest of its hash), so that a
/// login made with an old password stops working when it changes.
pub type PasswordTag = u64;

pub fn password_tag(phc: &str) -> PasswordTag {
    use blake2::{Blake2s256, Digest};
    let d = Blake2s256::digest(phc.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first)
}

pub(super) fn read(path: &Path) -> Result<Entries, UsersError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Entries::new()),
        Err(e) => return Err(UsersError::Io(path.to_path_buf(), e)),
    };
    let mut out = Entries::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(':').and_then(|(name, phc)| {
            Some((
                UserId::parse(name)?,
                PasswordHash::new(phc).ok().map(|_| phc)?,
            ))
        });
        let (name, phc) = parsed.ok_or_else(|| UsersError::Syntax(path.to_path_buf(), n + 1))?;
        out.insert(name, phc.to_string());
    }
    Ok(out)
}

fn write(path: &Path, entries: &Entries) -> Result<(), UsersError> {
    let io_err = |e| UsersError::Io(path.to_path_buf(), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let mut text = String::from("# edgeim users: userId:argon2id hash. Edit with `edgeim user`.\n");
    for (name, phc) in entries {
        text.push_str(&format!("{name}:{phc}\n"));
    }
    // Write beside and rename, so a running server never reads half a file.
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io_err)?;
        f.write_all(text.as_bytes()).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
    }
    keep_owner_of_dir(&tmp, path.parent());
    std::fs::rename(&tmp, path).map_err(io_err)
}

/// `sudo edgeim user add` must not leave a root-owned file that the
/// service's own user cannot read: give it the data directory's owner.
#[cfg(unix)]
fn keep_owner_of_dir(file: &Path, dir: Option<&Path>) {
    use std::os::unix::fs::MetadataExt;
    let Some(meta) = dir.and_then(|d| std::fs::metadata(d).ok()) else {
        return;
    };
    // Only root may give files away; for anyone else this is a no-op.
    let _ = std::os::unix::fs::chown(file, Some(meta.uid()), Some(meta.gid()));
}

#[cfg(not(unix))]
fn keep_owner_of_dir(_file: &Path, _dir: Option<&Path>) {}

/// Hashes a password as an argon2id PHC string (m=19456 KiB, t=2, p=1).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    // Hashing with default parameters and a fresh salt only fails on
    // impossible sizes; an empty string then fails every verify.
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

fn parse_name(name: &str) -> Result<UserId, UsersError> {
    UserId::parse(name).ok_or_else(|| UsersError::BadName(name.to_string()))
}

/// `edgeim user add`.
pub fn add(path: &Path, name: &str, password: &str) -> Result<(), UsersError> {
    let name = parse_name(name)?;
    check_password(password)?;
    let mut entries = read(path)?;
    if entries.contains_key(&name) {
        return Err(UsersError::Exists(name.to_string()));
    }
    entries.insert(name, hash_password(password));
    write(path, &entries)
}

/// `edgeim user passwd`.
pub fn set_password(path: &Path, name: &str, password: &str) -> Result<(), UsersError> {
    let name = parse_name(name)?;
    let mut entries = read(path)?;
    let Some(slot) = entries.get_mut(&name) else {
        return Err(UsersError::Missing(name.to_string()));
    };
    check_password(password)?;
    *slot = hash_password(password);
    write(path, &entries)
}

/// `edgeim user remove`.
pub fn remove(path: &Path, name: &str) -> Result<(), UsersError> {
    let name = parse_name(name)?;
    let mut entries = read(path)?;
    if entries.remove(&name).is_none() {
        return Err(UsersError::Missing(name.to_string()));
    }
    write(path, &entries)
}

/// `edgeim user list`.
pub fn list(path: &Path) -> Result<Vec<UserId>, UsersError> {
    Ok(read(path)?.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::directory::Directory;

    fn temp_file(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgeim-users-{tag}-{}", uuid::Uuid::new_v4()));
        path_in(&dir)
    }

    #[test]
    fn add_verify_passwd_remove_round_trip() {
        let path = temp_file("rt");
        add(&path, "alice", "s3cret pass").unwrap();
        assert!(matches!(
            add(&path, "alice", "x long enough"),
            Err(UsersError::Exists(_))
        ));
        assert!(matches!(
            add(&path, "SYSTEM", "x"),
            Err(UsersError::BadName(_))
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("alice:$argon2id$") && !text.contains("s3cret"),
            "{text}"
        );
        let dir = Directory::open(path.clone()).unwrap();
        assert_eq!(
            dir.verify("alice", "s3cret pass")
                .map(|(u, _)| u.to_string()),
            Some("alice".into())
        );
        assert_eq!(dir.verify("alice", "wrong"), None);
        assert_eq!(dir.verify("nobody", "s3cret pass"), None);
        assert!(matches!(
            set_password(&path, "alice", "short"),
            Err(UsersError::ShortPassword)
        ));
        assert!(matches!(
            add(&path, "bob", "1234567"),
            Err(UsersError::ShortPassword)
        ));
        // The demo's passwords are long enough.
        assert!(check_password("bob-demo").is_ok() && check_password("alice-demo").is_ok());
        // Same length as before: the change is seen all the same.
        set_password(&path, "alice", "s3cret Pass").unwrap();
        assert_eq!(
            dir.verify("alice", "s3cret Pass")
                .map(|(u, _)| u.to_string()),
            Some("alice".into())
        );
        remove(&path, "alice").unwrap();
        dir.refresh();
        assert!(!dir.exists("alice"));
        assert!(list(&path).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_same_length_passwd_is_seen_even_with_the_same_mtime() {
        let path = temp_file("mtime");
        add(&path, "alice", "password-1").unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let dir = Directory::open(path.clone()).unwrap();
        set_password(&path, "alice", "password-2").unwrap();
        // A coarse-clock file system: the new file has the old mtime.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(dir.verify("alice", "password-2").is_some());
        assert!(dir.verify("alice", "password-1").is_none());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_reload_rereads_at_once_and_keeps_the_users_when_the_file_is_gone() {
        let path = temp_file("reload");
        add(&path, "alice", "password-1").unwrap();
        let dir = Directory::open(path.clone()).unwrap();
        add(&path, "bob", "password-2").unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert!(!dir.contains(&bob), "contains does not look at the file");
        assert_eq!(dir.reload().unwrap(), 2);
        assert!(dir.contains(&bob));
        std::fs::remove_file(&path).unwrap();
        let e = dir.reload().unwrap_err().to_string();
        assert!(
            e.starts_with("users file ") && e.contains("No such file"),
            "{e}"
        );
        assert!(dir.contains(&bob), "the users stay");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_garbled_line_is_an_error_naming_it() {
        let path = temp_file("bad");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "# c\nalice:plaintext\n").unwrap();
        let e = Directory::open(path.clone()).err().unwrap().to_string();
        assert!(e.contains("line 2"), "{e}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
