//! Who may log in: the users file ([`users`]) and the server's cached view
//! of it ([`directory`]), login cookies and app tokens ([`logins`]), and
//! the hashing of every secret the server hands out ([`secret`]), login
//! throttling ([`throttle`]) and the Host and Origin checks ([`origin`]).

pub mod directory;
pub mod logins;
pub mod origin;
pub mod secret;
pub mod throttle;
pub mod upstream;
pub mod users;

pub use directory::Directory;
pub use logins::{COOKIE, Logins, SavedLogin};
pub use secret::{SecretHash, hash_secret};

/// A lock whose holder panicked is still usable: the tables behind these
/// mutexes are whole after every statement, and an HTTP handler that
/// panics (answered 500) must not leave logins or the throttle broken for
/// good.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
