//! Who may log in: the users file ([`users`]) and the server's cached view
//! of it ([`directory`]), login cookies and app tokens ([`logins`]), and
//! the hashing of every secret the server hands out ([`secret`]), login
//! throttling ([`throttle`]) and the Host and Origin checks ([`origin`]).

pub mod directory;
pub mod logins;
pub mod origin;
pub mod secret;
pub mod throttle;
pub mod users;

pub use directory::Directory;
pub use logins::{COOKIE, Logins, SavedLogin};
pub use secret::{SecretHash, hash_secret};
