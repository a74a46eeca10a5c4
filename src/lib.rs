//! edgeim: a single-binary instant-messaging server.
//!
//! The folders are the architecture (docs/ARCHITECTURE.md):
//!
//! - `wire`: the protocol's frames, names and checks, free of I/O;
//! - `conn`: the WebSocket listener and each connection's reader and
//!   writer threads;
//! - `router`: the one thread that owns the session table and decides who
//!   gets what;
//! - `store`: the thread that owns the SQLite database;
//! - `http`: the HTTP API and the chat page;
//! - `auth`: the users file, logins, and the hashing of secrets;
//! - `events`: every message that crosses a thread boundary;
//! - [`server`]: wiring them together; [`reload`]: applying a changed
//!   config on SIGHUP; [`config`] and [`cli`]: what the operator says; [`client`] and [`chat`]: the one client, and the
//!   terminal chat built on it.
//!
//! Only what the binaries and the tests use is public.

#![deny(missing_docs)]

pub mod chat;
pub mod cli;
pub mod client;
pub mod config;
#[cfg(unix)]
pub mod control;
pub mod logger;
pub mod modes;
pub mod notify;
pub mod reload;
pub mod server;
pub mod supervisor;

mod auth;
mod clock;
mod conn;
mod events;
mod http;
mod metrics;
mod router;
mod stack;
mod store;
mod wire;

#[cfg(test)]
mod doc_constants;

/// The users file: `edgeim user add|passwd|remove|list`.
pub mod users {
    pub use crate::auth::Directory;
    pub use crate::auth::users::{
        UsersError, add, hash_password, list, path_in, remove, set_password,
    };
}

/// `edgeim backup`: a consistent copy of the database.
pub mod backup {
    pub use crate::store::backup::{BackupError, backup, path_in};
}
