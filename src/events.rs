//! Every message that crosses a thread boundary, in one place.
//!
//! - [`Event`]: connection and HTTP threads → the router.
//! - [`Outbound`]: the router → one connection's writer (unbounded channel,
//!   bounded by the `queued` byte count so memory grows only with real use).
//! - [`Ctrl`]: the reader or the router → one connection's writer
//!   (small bounded channel; the writer drains it before `Outbound`).
//! - [`StoreOp`]: the router and the HTTP login table → the store thread
//!   (bounded); [`Dones`]: the store → the router, one message per commit.

use std::borrow::Cow;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use tungstenite::Utf8Bytes;

use crate::auth::SecretHash;
use crate::auth::users::PasswordTag;
use crate::conn::direct::Wire;
use crate::conn::queue::Queued;
use crate::store::groups::{Actor, GroupChange, GroupError, GroupView};
use crate::store::{Accepted, GroupDone, NewMessage, Page, ReceiptOutcome};
use crate::wire::ids::ClientKey;
use crate::wire::ids::{ClientName, To, UserId};
use crate::wire::{Receipt, Register, Reject, Request};

/// Identifies one WebSocket connection for its whole life.
pub type ConnId = u64;

/// What the router may tell a connection's writer to send.
pub enum Outbound {
    /// A text (2001) for the client: a delivery, or a copy of its own.
    Frame(Utf8Bytes),
    /// A receipt (9101) forwarded to a client of the text's sender.
    Receipt(Utf8Bytes),
    /// A 9001 answer: the writer may send it ahead of a backlog in
    /// progress, so a client acknowledging its backlog is not starved.
    Answer(Utf8Bytes),
    /// Redelivery after register: one queue slot for the whole backlog.
    Batch(Vec<Utf8Bytes>),
    /// A presence frame (3001) for a client that asked for them. Not
    /// ordered against texts: it goes ahead of a backlog, like an answer.
    Presence(Utf8Bytes),
}

impl Outbound {
    /// The bytes this item holds, which count against `send_queue` (a
    /// byte budget) until the writer takes them to write: every kind
    /// counts, answers and a whole backlog included, since each takes
    /// memory while it waits.
    pub fn bytes(&self) -> usize {
        match self {
            Outbound::Frame(f)
            | Outbound::Receipt(f)
            | Outbound::Answer(f)
            | Outbound::Presence(f) => f.len(),
            Outbound::Batch(fs) => fs.iter().map(|f| f.len()).sum(),
        }
    }

    /// Whether the item is an answer (9001) to what the client sent.
    pub fn is_answer(&self) -> bool {
        matches!(self, Outbound::Answer(_))
    }

    /// Whether the item is a presence frame (3001): its bytes are counted
    /// apart, so that they never close a client that keeps up with its
    /// texts ([`crate::conn::queue::Queued::texts`]).
    pub fn is_presence(&self) -> bool {
        matches!(self, Outbound::Presence(_))
    }
}

/// Orders for a writer that bypass the router's queue.
pub enum Ctrl {
    /// Bytes the reader's WebSocket wants written (pongs, close replies).
    Raw(Vec<u8>),
    /// A 9001 the reader answered on its own (checks before the router).
    Frame(Utf8Bytes),
    /// Send a Close frame, then end the connection.
    Close(u16, Cow<'static, str>),
    /// The reader is gone: flush and stop.
    Stop,
    /// From the router: a frame it wrote itself would have blocked, and
    /// its rest waits in the WebSocket's buffer; flush it (the writer
    /// flushes after every wake-up, so this carries nothing else).
    Flush,
}

/// The state a connection's threads and the router share.
pub struct ConnShared {
    pub id: ConnId,
    pub peer: SocketAddr,
    /// Bytes of the outbound items the router queued that the writer has
    /// not taken to write yet ([`Outbound::bytes`]), and of the answers
    /// among them; summed over all connections in `/metrics`.
    pub queued: Queued,
    /// When the last frame arrived, in ms since the server started.
    pub last_seen_ms: AtomicU64,
    pub registered: AtomicBool,
    /// Set once a Close was asked for: nothing more is queued.
    pub closing: AtomicBool,
    /// For shutting the socket when the writer cannot (it may be blocked).
    pub stream: Option<Arc<TcpStream>>,
    /// The writer's socket state behind the connection's lock, through
    /// which the router writes a frame itself when the writer is idle
    /// ([`crate::conn::direct`]). `None` in tests without a socket: then
    /// every frame is queued.
    pub wire: Option<Arc<Mutex<Wire>>>,
}

impl ConnShared {
    pub fn new(id: ConnId, peer: SocketAddr, stream: Option<Arc<TcpStream>>) -> ConnShared {
        ConnShared {
            id,
            peer,
            queued: Queued::new(&crate::metrics::metrics().send_queue_bytes),
            last_seen_ms: AtomicU64::new(0),
            registered: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            stream,
            wire: None,
        }
    }

    /// The same, with the writer's socket state for direct writes.
    pub fn with_wire(self, wire: Arc<Mutex<Wire>>) -> ConnShared {
        ConnShared {
            wire: Some(wire),
            ..self
        }
    }

    /// Shuts the socket, which wakes a reader blocked in `read` and a
    /// writer blocked in `write`.
    pub fn kill(&self) {
        if let Some(s) = &self.stream {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Marks the connection as closing; true only for the first caller.
    pub fn start_closing(&self) -> bool {
        !self.closing.swap(true, Ordering::AcqRel)
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }
}

/// The router's handle on one connection.
#[derive(Clone)]
pub struct ConnHandle {
    pub shared: Arc<ConnShared>,
    pub out: Sender<Outbound>,
    pub ctrl: Sender<Ctrl>,
}

/// Who is online: user → its registered client names.
pub type OnlineList = Vec<(UserId, Vec<ClientName>)>;

/// Everything the router reacts to.
pub enum Event {
    /// A WebSocket handshake completed.
    Opened(ConnHandle),
    /// A register attempt. `refused` is set when the reader's checks
    /// already failed it; the router still uses the session id up. The
    /// router answers on `reply` with the user id or the refusal.
    Register {
        conn: ConnId,
        msg: Register,
        refused: Option<Reject>,
        reply: Sender<Result<UserId, Reject>>,
    },
    /// A checked message from a registered connection.
    Request { conn: ConnId, req: Request },
    /// The connection's writer has written a whole backlog page: time for
    /// the next one, if there is one.
    Drained { conn: ConnId },
    /// The connection's reader has ended.
    Closed { conn: ConnId },
    /// `GET .../websocket/client/login/{clientName}`: a one-time session
    /// id, or `None` when they are being asked for too fast.
    IssueSession {
        user: UserId,
        client: ClientName,
        reply: Sender<Option<String>>,
    },
    /// `POST /api/system/message`: the id of the accepted message.
    SystemMessage {
        to: To,
        body: String,
        reply: Sender<Result<String, Reject>>,
    },
    /// `GET /api/websocket/online` and `/api/users`.
    Online { reply: Sender<OnlineList> },
    /// A change to a group (`/api/groups`, `edgeim group`): the store
    /// decides and writes it, the router delivers its announcement.
    Group {
        actor: Actor,
        change: GroupChange,
        reply: GroupReply,
    },
    /// SIGHUP reread the config and the users file.
    Reload(Reload),
    /// Stop: close every connection with 1001.
    Shutdown,
}

/// What a reload (SIGHUP) changes for the router. It answers on `reply`
/// with the number of connections it closed.
pub struct Reload {
    /// `limits.session_ids_per_s`, from now on.
    pub session_ids_per_s: f64,
    /// `limits.max_clients_per_user`, for registers from now on (clients
    /// already registered stay).
    pub max_clients_per_user: usize,
    /// Every user in the users file: the connections and pending session
    /// ids of anyone else are ended.
    pub users: Vec<UserId>,
    pub reply: Sender<usize>,
}

/// The answer to a group change: the group as it is now (`None` once
/// deleted), or why not.
pub type GroupReply = Sender<Result<Option<GroupView>, GroupError>>;

/// The answer to an HTTP system message: its id, or why not.
pub type SystemReply = Sender<Result<String, Reject>>;

/// Who gets the answer to an accepted message: the connection that sent
/// it, or the HTTP worker of `POST /api/system/message`.
pub enum ReplyTo {
    /// A 9001 to this connection.
    Conn(ConnId),
    /// The message's id, or why not.
    Api(SystemReply),
}

/// Work for the store thread. The `conn`, `reply_to` and `register_id`
/// fields are the router's: the store carries them back in the [`Done`]
/// untouched.
pub enum StoreOp {
    /// Store a text for every recipient, or refuse it for all.
    Accept {
        /// The sending client, which counts as having acknowledged it.
        sender: Option<ClientKey>,
        msg: NewMessage,
        reply_to: ReplyTo,
    },
    /// A client acknowledged a text.
    Receipt {
        conn: ConnId,
        key: ClientKey,
        receipt: Receipt,
    },
    /// A client registered: its backlog, and it counts as connected.
    Attach {
        conn: ConnId,
        key: ClientKey,
        register_id: String,
    },
    /// The next page of a registered client's backlog, after `after`.
    Page {
        conn: ConnId,
        key: ClientKey,
        after: i64,
    },
    /// A client's connection ended.
    Detach { key: ClientKey },
    /// A change to a group, with its announcement.
    Group {
        actor: Actor,
        change: GroupChange,
        reply: GroupReply,
    },
    /// Write what is held in memory (store/recent.rs) to the tables, so
    /// that a read on another connection (history, conversations) sees
    /// every receipt so far; answered once committed.
    Settle { reply: Sender<bool> },
    /// Keep a new login; answered once it is on disk.
    SaveLogin {
        hash: SecretHash,
        user: UserId,
        tag: PasswordTag,
        expires_ms: u64,
        reply: Sender<bool>,
    },
    /// Answered once the revocation is on disk.
    RevokeLogin {
        hash: SecretHash,
        reply: Sender<bool>,
    },
    /// Forget every login of a removed user.
    RevokeUser { user: UserId },
    /// A host system vouched for a user for the first time: keep it.
    RememberUser { user: UserId },
    /// The router checks that the store works (the watchdog): answered
    /// with [`Done::Pong`] after the next commit.
    Ping,
    /// Finish what came before, then stop the thread.
    Stop,
}

/// The answers to one committed batch, in the order of its ops. One
/// channel message per commit: the router wakes once for all of them.
pub type Dones = Vec<Done>;

/// The store's answer to one op, after its commit.
pub enum Done {
    /// The answer to [`StoreOp::Accept`].
    Accepted {
        sender: Option<ClientKey>,
        id: String,
        result: Result<Accepted, Reject>,
        reply_to: ReplyTo,
    },
    /// The answer to [`StoreOp::Receipt`].
    Receipt {
        conn: ConnId,
        key: ClientKey,
        receipt: Receipt,
        result: Result<ReceiptOutcome, Reject>,
    },
    /// The answer to [`StoreOp::Attach`]: the first page of the client's
    /// backlog.
    Attached {
        conn: ConnId,
        key: ClientKey,
        register_id: String,
        result: Result<Page, Reject>,
    },
    /// The answer to [`StoreOp::Page`].
    Paged {
        conn: ConnId,
        key: ClientKey,
        result: Result<Page, Reject>,
    },
    /// The answer to [`StoreOp::Group`].
    Group {
        result: Result<GroupDone, GroupError>,
        reply: GroupReply,
    },
    /// The answer to [`StoreOp::Ping`].
    Pong,
}

/// The store's word to its checkpoint thread
/// (`store/checkpoint.rs`), on a `bounded(1)` channel that
/// the store never waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOp {
    /// Enough was committed since the last one: copy the WAL into the
    /// database file.
    Due,
}
