//! The router: one thread that owns the session table ([`table`]) and the
//! pending session ids ([`sessions`]), and decides who gets what; presence
//! frames (3001) are decided in [`presence`] and sent by [`announce`].
//! Connections and HTTP handlers talk to it through [`Event`]s; the store
//! answers its ops with [`Done`]s after they are committed, and only then
//! does the router answer 9001 and deliver ([`deliver`]). Its decisions are
//! methods on [`Router`], driven by unit tests through plain channels.

mod announce;
pub(crate) mod deliver;
pub mod presence;
#[cfg(test)]
mod races;
pub mod sessions;
pub mod table;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, never, select, tick};

use crate::clock::{Now, mono_ms, now_ms};
use crate::events::{ConnHandle, ConnId, ConnShared, Ctrl, Dones, Event, ReplyTo, StoreOp};
use crate::store::NewMessage;
use crate::supervisor::fault;
use crate::wire::ids::{ClientKey, Origin, UserId};
use crate::wire::{self, Register, Reject, Request, Status};
use presence::Presence;
use sessions::{PendingSessions, SessionRate};
use table::{BindError, SessionTable};

/// The router's settings, from the config.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// How long a session id is good for.
    pub session_ttl_ms: u64,
    /// Session ids issued per second, server-wide.
    pub session_ids_per_s: f64,
    /// Clients one user may have registered at once.
    pub max_clients_per_user: usize,
    /// Bytes that may wait for one connection before it is closed as slow
    /// (`websocket.send_queue`, a byte budget).
    pub send_queue: usize,
    /// How often the service manager wants a watchdog ping, if it does.
    pub watchdog: Option<Duration>,
}

/// Most events handled per wake-up before the store's answers get a look in.
pub(crate) const BATCH: usize = 512;

/// The router's state. Only the router thread has one.
pub struct Router {
    config: RouterConfig,
    table: SessionTable,
    sessions: PendingSessions,
    session_rate: SessionRate,
    /// Who watches presence, and what each watcher last got.
    presence: Presence,
    store: Sender<StoreOp>,
    /// Ops sent to the store and not answered yet.
    in_flight: usize,
    /// A watchdog ping op is with the store, not answered yet.
    pinging: bool,
    /// Connections the router wrote frames to itself in this wake-up, to
    /// flush once it is done ([`Router::flush_direct`]).
    unflushed: Vec<(Arc<ConnShared>, Sender<Ctrl>)>,
}

/// Whether the router loop goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Wait for the next event.
    Continue,
    /// Shut down.
    Stop,
}

impl Router {
    /// A router with an empty table that sends its ops to `store`.
    pub fn new(config: RouterConfig, store: Sender<StoreOp>) -> Router {
        let rate = config.session_ids_per_s;
        Router {
            sessions: PendingSessions::new(config.session_ttl_ms),
            session_rate: SessionRate::new(rate, config.max_clients_per_user, Instant::now()),
            table: SessionTable::default(),
            presence: Presence::default(),
            store,
            in_flight: 0,
            pinging: false,
            unflushed: Vec::new(),
            config,
        }
    }

    /// Runs until [`Event::Shutdown`] or until every sender is gone.
    pub fn run(mut self, events: Receiver<Event>, done: Receiver<Dones>) {
        // Twice per watchdog period: the store must answer each ping op
        // before the router pings the service manager.
        let watchdog = match self.config.watchdog {
            Some(period) => tick(period / 2),
            None => never(),
        };
        loop {
            // A timer only while a presence flush is due: an idle server
            // does not wake.
            let presence = match self.presence_due() {
                Some(due) => after(Duration::from_millis(due.saturating_sub(mono_ms()))),
                None => never(),
            };
            select! {
                recv(presence) -> _ => self.flush_presence(Now::read()),
                recv(watchdog) -> _ => {
                    if !self.pinging {
                        self.pinging = true;
                        self.send_to_store(StoreOp::Ping);
                    }
                },
                recv(done) -> d => match d {
                    Ok(d) => {
                        let now = now_ms();
                        for d in d {
                            self.done(d, now);
                        }
                    }
                    // Without the store nothing can be answered again; the
                    // watch on this thread reports it.
                    Err(_) => {
                        log::error!("the store has stopped");
                        return;
                    }
                },
                recv(events) -> ev => {
                    let Ok(ev) = ev else { return };
                    if self.handle(ev, Now::read()) == Flow::Stop {
                        return;
                    }
                    // Drain a burst in one wake-up.
                    for ev in events.try_iter().take(BATCH) {
                        if self.handle(ev, Now::read()) == Flow::Stop {
                            return;
                        }
                    }
                }
            }
            self.presence_changes(mono_ms());
            self.flush_direct();
        }
    }

    /// Flushes what this wake-up wrote to connections itself: one `send`
    /// per connection for all the frames one commit gave it.
    fn flush_direct(&mut self) {
        for (shared, ctrl) in self.unflushed.drain(..) {
            crate::conn::direct::flush(&shared, &ctrl);
        }
    }

    /// Ops the store has not answered yet.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Reacts to one event at `now`: the wall clock stamps frames, the
    /// monotonic one times session ids.
    pub fn handle(&mut self, ev: Event, now: impl Into<Now>) -> Flow {
        let Now {
            wall_ms: now,
            mono_ms: mono,
        } = now.into();
        match ev {
            Event::Opened(handle) => self.table.open(handle),
            Event::Register {
                conn,
                msg,
                refused,
                reply,
            } => {
                let result = self.register(conn, msg, refused, mono);
                let _ = reply.send(result);
            }
            Event::Request { conn, req } => self.request(conn, req, now),
            Event::Drained { conn } => self.drained(conn),
            Event::Closed { conn } => {
                if let Some(key) = self.table.remove(conn) {
                    self.send_to_store(StoreOp::Detach { key });
                }
            }
            Event::IssueSession {
                user,
                client,
                reply,
            } => {
                if fault("router") {
                    panic!("EDGEIM_FAULT=router");
                }
                if fault("router-stall") {
                    // Stuck for good, as a deadlock would be: the watchdog
                    // pings must stop.
                    loop {
                        std::thread::park();
                    }
                }
                let id = self
                    .session_rate
                    .take(&user, Instant::now())
                    .then(|| self.sessions.issue(ClientKey { user, client }, mono));
                let _ = reply.send(id);
            }
            Event::SystemMessage { to, body, reply } => {
                let msg = NewMessage {
                    origin: Origin::System,
                    id: wire::server_id(),
                    to,
                    body,
                };
                self.send_to_store(StoreOp::Accept {
                    sender: None,
                    msg,
                    reply_to: ReplyTo::Api(reply),
                });
            }
            Event::Group {
                actor,
                change,
                reply,
            } => self.send_to_store(StoreOp::Group {
                actor,
                change,
                reply,
            }),
            Event::Online { reply } => {
                let _ = reply.send(self.table.online());
            }
            Event::Reload(reload) => {
                let closed = self.reload(
                    reload.session_ids_per_s,
                    reload.max_clients_per_user,
                    &reload.users,
                );
                let _ = reload.reply.send(closed);
            }
            Event::Shutdown => {
                for handle in self.table.handles() {
                    close(handle, 1001, "server shutting down");
                }
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// New limits, and who exists: the connections and pending session ids
    /// of users no longer in the users file end (close 1008 `user
    /// removed`). Returns how many connections were closed.
    fn reload(
        &mut self,
        session_ids_per_s: f64,
        max_clients_per_user: usize,
        users: &[UserId],
    ) -> usize {
        self.config.session_ids_per_s = session_ids_per_s;
        self.config.max_clients_per_user = max_clients_per_user;
        self.session_rate
            .retune(session_ids_per_s, max_clients_per_user, Instant::now());
        let users: HashSet<&UserId> = users.iter().collect();
        let known = |u: &UserId| users.contains(u);
        self.sessions.retain_users(known);
        let removed = self.table.conns_of_users_but(known);
        for conn in &removed {
            if let Some(handle) = self.table.handle(*conn) {
                log::info!("conn {conn}: its user was removed from the users file: closing");
                close(handle, 1008, "user removed");
            }
            // Out of the table at once, as for a slow client: nothing more
            // is delivered to it, and its reader's `Closed` finds no client.
            if let Some(key) = self.table.unbind(*conn) {
                self.send_to_store(StoreOp::Detach { key });
            }
        }
        removed.len()
    }

    /// A checked text or receipt from a connection: to the store, unless the
    /// connection is no longer registered (replaced, or closed as slow,
    /// after its reader checked the frame).
    fn request(&mut self, conn: ConnId, req: Request, now: u64) {
        let Some(key) = self.table.client_of(conn).cloned() else {
            let id = match &req {
                Request::Text(t) => &t.id,
                Request::Receipt(r) => &r.id,
            };
            let why = "this connection is no longer registered";
            self.answer(conn, id, "", Status::SessionError, why, now);
            return;
        };
        let op = match req {
            Request::Text(t) => StoreOp::Accept {
                msg: NewMessage {
                    origin: Origin::User(key.user.clone()),
                    id: t.id,
                    to: t.to,
                    body: t.body,
                },
                sender: Some(key),
                reply_to: ReplyTo::Conn(conn),
            },
            Request::Receipt(receipt) => StoreOp::Receipt { conn, key, receipt },
        };
        self.send_to_store(op);
    }

    fn send_to_store(&mut self, op: StoreOp) {
        let answered = matches!(
            op,
            StoreOp::Accept { .. }
                | StoreOp::Receipt { .. }
                | StoreOp::Attach { .. }
                | StoreOp::Page { .. }
                | StoreOp::Group { .. }
                | StoreOp::Ping
        );
        if self.store.send(op).is_err() {
            log::error!("the store has stopped");
        } else if answered {
            self.in_flight += 1;
        }
    }

    /// Checks the session id and takes the client's place in the table;
    /// the 9001 SUCCESS follows when the store has the client's backlog.
    fn register(
        &mut self,
        conn: ConnId,
        msg: Register,
        refused: Option<Reject>,
        mono: u64,
    ) -> Result<UserId, Reject> {
        let key = self.sessions.take(&msg.session_id, mono);
        if let Some(r) = refused {
            return Err(r);
        }
        let Some(key) = key else {
            return Err(Reject::new(
                Status::SessionError,
                "unknown, expired or used session id",
            ));
        };
        if msg.from != key.user.as_str() {
            return Err(Reject::new(
                Status::FromError,
                "from is not the session's user",
            ));
        }
        let max = self.config.max_clients_per_user;
        match self.table.bind(conn, key.clone(), max) {
            Err(BindError::Gone) => {
                return Err(Reject::new(Status::Failed, "connection is closing"));
            }
            Err(BindError::TooMany(max)) => {
                return Err(Reject::new(
                    Status::Failed,
                    format!("user already has {max} clients connected"),
                ));
            }
            Ok(Some(old)) => {
                log::info!("conn {} {key} replaced by conn {conn}", old.shared.id);
                close(&old, 4000, "replaced");
            }
            Ok(None) => {}
        }
        if let Some(handle) = self.table.handle(conn) {
            handle.shared.registered.store(true, Ordering::Release);
        }
        if msg.presence {
            self.presence.ask(conn);
        }
        let user = key.user.clone();
        self.send_to_store(StoreOp::Attach {
            conn,
            key,
            register_id: msg.id,
        });
        Ok(user)
    }
}

/// Asks a writer to close, once; if its control queue is full, the writer
/// is stuck, so the socket is shut instead.
fn close(handle: &ConnHandle, code: u16, reason: &'static str) {
    if !handle.shared.start_closing() {
        return;
    }
    if handle
        .ctrl
        .try_send(Ctrl::Close(code, reason.into()))
        .is_err()
    {
        handle.shared.kill();
    }
}

/// The frames an outbound item carries.
#[cfg(test)]
pub fn frames_of(item: crate::events::Outbound) -> Vec<tungstenite::Utf8Bytes> {
    use crate::events::Outbound;
    match item {
        Outbound::Frame(f) | Outbound::Receipt(f) | Outbound::Answer(f) | Outbound::Presence(f) => {
            vec![f]
        }
        Outbound::Batch(fs) => fs,
    }
}
