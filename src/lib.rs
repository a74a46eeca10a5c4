//! edgeim: a single-binary instant-messaging server.
//!
//! Data flow: HTTP ([`http`]) logs users in and issues one-time session ids
//! through the [`router`]; the WebSocket [`websocket`] listener gives each
//! connection a reader and a writer thread ([`connection`]), which check
//! frames ([`inbound`], [`protocol`]) and pass them to the router, which
//! owns the session table and the [`store`] and queues frames back to the
//! writers. [`events`] names every message between threads.

pub mod auth;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connection;
pub mod events;
pub mod http;
pub mod httpc;
pub mod ids;
pub mod inbound;
pub mod protocol;
pub mod ratelimit;
pub mod router;
pub mod server;
pub mod sessions;
pub mod stack;
pub mod store;
pub mod users;
pub mod web;
pub mod websocket;
