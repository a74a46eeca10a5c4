//! Who may log in: the users file ([`users`]) and the server's cached view
//! of it ([`directory`]), login cookies and app tokens ([`logins`]), and
//! the hashing of every secret the server hands out ([`secret`]).

pub mod directory;
pub mod logins;
pub mod secret;
pub mod users;

pub use directory::Directory;
pub use logins::{COOKIE, Logins, SavedLogin};
pub use secret::{SecretHash, hash_secret};
