//! The wire format (PROTOCOL.md sections 3–5), free of I/O: validated
//! names ([`ids`]), parsing a frame into a typed message ([`parse`]), the
//! checks a connection makes before the router sees it ([`checks`], with
//! its [`ratelimit`]), the status codes ([`status`]) and the frames the
//! server writes ([`frames`]).

pub mod checks;
pub mod frames;
pub mod ids;
pub mod parse;
pub mod ratelimit;
pub mod status;

pub use frames::{Outgoing, send_status, server_id};
pub use ids::SYSTEM;
pub use parse::{Receipt, Register, Request};
pub use status::{Reject, Status};

/// Message type codes (section 4).
pub const TYPE_REGISTER: i64 = 1000;
/// A text.
pub const TYPE_TEXT: i64 = 2001;
/// The server's answer to every client message.
pub const TYPE_SEND_STATUS: i64 = 9001;
/// A recipient's receipt, forwarded to the sender.
pub const TYPE_RECEIVE_STATUS: i64 = 9101;
/// Who came online or went offline (section 11): server → the clients
/// that asked for it at register.
pub const TYPE_PRESENCE: i64 = 3001;

/// Longest message id, in characters.
pub const MAX_ID_CHARS: usize = 64;
