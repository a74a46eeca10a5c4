//! What the server keeps about messages (PROTOCOL.md section 7): per-client
//! delivery state, receipts, dedup of resends and the per-user offline limit.
//!
//! This is the in-memory store; it forgets everything on restart. It is the
//! one module the durable SQLite store replaces: the router only calls the
//! methods below and never looks inside.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tungstenite::Utf8Bytes;

use crate::ids::{ClientKey, ClientName, Origin, UserId};
use crate::protocol::{Outgoing, TYPE_TEXT};

/// The store's limits, from `[limits]`.
#[derive(Clone, Debug)]
pub struct StoreLimits {
    pub offline_per_user: usize,
    pub retention_ms: u64,
    pub forget_client_ms: u64,
}

/// A text the router has checked and wants accepted.
pub struct NewMessage {
    pub origin: Origin,
    pub id: String,
    pub to: Vec<UserId>,
    pub body: String,
}

/// A user the accepted message goes to. `copy` marks the sender's own user
/// when it is not among the recipients: its other clients get a copy.
#[derive(Debug, Clone)]
pub struct Target {
    pub user: UserId,
    pub copy: bool,
}

pub enum Accepted {
    /// New: deliver `frame` to the targets' connected clients.
    New {
        frame: Utf8Bytes,
        targets: Vec<Target>,
    },
    /// A resend of an accepted (from, id): answer SUCCESS, deliver nothing.
    Duplicate,
}

/// Why a message was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// These recipients have `offline_per_user` unacknowledged messages.
    Full(Vec<UserId>),
}

/// What a 9101 leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The first receipt from this user: forward it to the sender's clients.
    Forward(UserId),
    /// Recorded only (a repeat, a copy, or a system message).
    Recorded,
}

/// A 9101 for a message this user never received (401).
#[derive(Debug, PartialEq, Eq)]
pub struct NotReceived;

struct Message {
    frame: Utf8Bytes,
    accepted_ms: u64,
    key: (Origin, String),
    targets: Vec<UserId>,
}

struct InboxEntry {
    /// Some client of this user acknowledged it (or sent it: copies).
    acked: bool,
    copy: bool,
}

#[derive(Default)]
struct Mailbox {
    inbox: BTreeMap<u64, InboxEntry>,
    unacked: usize,
    clients: HashMap<ClientName, ClientState>,
}

struct ClientState {
    pending: BTreeSet<u64>,
    last_seen_ms: u64,
}

pub struct Store {
    limits: StoreLimits,
    next_seq: u64,
    messages: BTreeMap<u64, Message>,
    by_key: HashMap<(Origin, String), u64>,
    users: HashMap<UserId, Mailbox>,
}

impl Store {
    pub fn new(limits: StoreLimits) -> Store {
        Store {
            limits,
            next_seq: 1,
            messages: BTreeMap::new(),
            by_key: HashMap::new(),
            users: HashMap::new(),
        }
    }

    /// Accepts a message for every recipient or for none. `sender` is the
    /// sending client, which counts as having acknowledged its own message.
    pub fn accept(
        &mut self,
        msg: NewMessage,
        sender: Option<&ClientKey>,
        now_ms: u64,
    ) -> Result<Accepted, Refused> {
        let key = (msg.origin, msg.id);
        if self.by_key.contains_key(&key) {
            return Ok(Accepted::Duplicate);
        }
        let full: Vec<UserId> = msg
            .to
            .iter()
            .filter(|u| {
                self.users
                    .get(*u)
                    .is_some_and(|m| m.unacked >= self.limits.offline_per_user)
            })
            .cloned()
            .collect();
        if !full.is_empty() {
            return Err(Refused::Full(full));
        }
        let mut targets: Vec<Target> = msg
            .to
            .iter()
            .map(|u| Target {
                user: u.clone(),
                copy: false,
            })
            .collect();
        if let Origin::User(from) = &key.0
            && !msg.to.contains(from)
        {
            targets.push(Target {
                user: from.clone(),
                copy: true,
            });
        }
        let to = msg
            .to
            .iter()
            .map(UserId::as_str)
            .collect::<Vec<_>>()
            .join(",");
        let frame = Outgoing {
            id: &key.1,
            kind: TYPE_TEXT,
            is_system: key.0 == Origin::System,
            from: key.0.as_str(),
            to: &to,
            body: &msg.body,
            timestamp: now_ms,
        }
        .frame();
        let seq = self.next_seq;
        self.next_seq += 1;
        for t in &targets {
            let mailbox = self.users.entry(t.user.clone()).or_default();
            let acked = t.copy;
            mailbox.inbox.insert(
                seq,
                InboxEntry {
                    acked,
                    copy: t.copy,
                },
            );
            if !acked {
                mailbox.unacked += 1;
            }
            for (name, state) in mailbox.clients.iter_mut() {
                let is_sender = sender.is_some_and(|s| s.user == t.user && &s.client == name);
                if !(t.copy && is_sender) {
                    state.pending.insert(seq);
                }
            }
        }
        self.by_key.insert(key.clone(), seq);
        self.messages.insert(
            seq,
            Message {
                frame: frame.clone(),
                accepted_ms: now_ms,
                key,
                targets: targets.iter().map(|t| t.user.clone()).collect(),
            },
        );
        Ok(Accepted::New { frame, targets })
    }

    /// A client registered: what it must get before anything newer, in
    /// order. A client never seen before starts with what no client of
    /// its user has acknowledged.
    pub fn attach(&mut self, key: &ClientKey, now_ms: u64) -> Vec<Utf8Bytes> {
        let mailbox = self.users.entry(key.user.clone()).or_default();
        let inbox = &mailbox.inbox;
        let state = mailbox
            .clients
            .entry(key.client.clone())
            .or_insert_with(|| ClientState {
                pending: inbox
                    .iter()
                    .filter(|(_, e)| !e.acked)
                    .map(|(s, _)| *s)
                    .collect(),
                last_seen_ms: now_ms,
            });
        state.last_seen_ms = now_ms;
        state
            .pending
            .iter()
            .filter_map(|seq| self.messages.get(seq).map(|m| m.frame.clone()))
            .collect()
    }

    /// A client's connection ended.
    pub fn detach(&mut self, key: &ClientKey, now_ms: u64) {
        if let Some(state) = self
            .users
            .get_mut(&key.user)
            .and_then(|m| m.clients.get_mut(&key.client))
        {
            state.last_seen_ms = now_ms;
        }
    }

    /// A client acknowledged the message (`origin`, `id`).
    pub fn receipt(
        &mut self,
        key: &ClientKey,
        origin: &Origin,
        id: &str,
    ) -> Result<ReceiptOutcome, NotReceived> {
        let seq = *self
            .by_key
            .get(&(origin.clone(), id.to_string()))
            .ok_or(NotReceived)?;
        let mailbox = self.users.get_mut(&key.user).ok_or(NotReceived)?;
        let entry = mailbox.inbox.get_mut(&seq).ok_or(NotReceived)?;
        if let Some(state) = mailbox.clients.get_mut(&key.client) {
            state.pending.remove(&seq);
        }
        if entry.acked {
            return Ok(ReceiptOutcome::Recorded);
        }
        entry.acked = true;
        mailbox.unacked = mailbox.unacked.saturating_sub(1);
        match origin {
            Origin::User(sender) if !entry.copy => Ok(ReceiptOutcome::Forward(sender.clone())),
            _ => Ok(ReceiptOutcome::Recorded),
        }
    }

    /// Deletes messages past retention and forgets clients not seen for
    /// `forget_client_ms` (unless `connected` says they are online).
    pub fn purge(&mut self, now_ms: u64, connected: impl Fn(&ClientKey) -> bool) {
        let cutoff = now_ms.saturating_sub(self.limits.retention_ms);
        let expired: Vec<u64> = self
            .messages
            .iter()
            .take_while(|(_, m)| m.accepted_ms < cutoff)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            let Some(m) = self.messages.remove(&seq) else {
                continue;
            };
            self.by_key.remove(&m.key);
            for user in &m.targets {
                let Some(mailbox) = self.users.get_mut(user) else {
                    continue;
                };
                if let Some(e) = mailbox.inbox.remove(&seq)
                    && !e.acked
                {
                    mailbox.unacked = mailbox.unacked.saturating_sub(1);
                }
                for state in mailbox.clients.values_mut() {
                    state.pending.remove(&seq);
                }
            }
        }
        let forget_before = now_ms.saturating_sub(self.limits.forget_client_ms);
        for (user, mailbox) in self.users.iter_mut() {
            mailbox.clients.retain(|name, state| {
                let key = ClientKey {
                    user: user.clone(),
                    client: name.clone(),
                };
                state.last_seen_ms >= forget_before || connected(&key)
            });
        }
        self.users
            .retain(|_, m| !m.inbox.is_empty() || !m.clients.is_empty());
    }

    /// Messages of `user` that no client of it acknowledged.
    pub fn unacked(&self, user: &UserId) -> usize {
        self.users.get(user).map_or(0, |m| m.unacked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }
    fn key(user: &str, client: &str) -> ClientKey {
        ClientKey {
            user: u(user),
            client: ClientName::parse(client).unwrap(),
        }
    }
    fn store(limit: usize) -> Store {
        Store::new(StoreLimits {
            offline_per_user: limit,
            retention_ms: 1000,
            forget_client_ms: 5000,
        })
    }
    fn text(from: &str, id: &str, to: &[&str]) -> NewMessage {
        NewMessage {
            origin: Origin::User(u(from)),
            id: id.into(),
            to: to.iter().map(|t| u(t)).collect(),
            body: "hi".into(),
        }
    }
    fn ids(frames: &[Utf8Bytes]) -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                serde_json::from_str::<serde_json::Value>(f).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn each_client_keeps_what_it_has_not_acknowledged() {
        let mut s = store(100);
        s.attach(&key("bob", "web"), 0);
        s.attach(&key("bob", "phone"), 0);
        s.accept(text("alice", "m1", &["bob"]), Some(&key("alice", "web")), 1)
            .ok()
            .unwrap();
        assert_eq!(
            s.receipt(&key("bob", "web"), &Origin::User(u("alice")), "m1"),
            Ok(ReceiptOutcome::Forward(u("alice")))
        );
        assert!(s.attach(&key("bob", "web"), 2).is_empty());
        assert_eq!(ids(&s.attach(&key("bob", "phone"), 2)), ["m1"]);
        // The second receipt from the same user is recorded, not forwarded.
        assert_eq!(
            s.receipt(&key("bob", "phone"), &Origin::User(u("alice")), "m1"),
            Ok(ReceiptOutcome::Recorded)
        );
        // A new client starts with what nobody of its user acknowledged.
        s.accept(text("alice", "m2", &["bob"]), None, 3)
            .ok()
            .unwrap();
        assert_eq!(ids(&s.attach(&key("bob", "tablet"), 4)), ["m2"]);
    }

    #[test]
    fn copies_go_to_the_senders_other_clients_and_are_never_receipts() {
        let mut s = store(100);
        s.attach(&key("alice", "web"), 0);
        s.attach(&key("alice", "phone"), 0);
        let Ok(Accepted::New { targets, .. }) =
            s.accept(text("alice", "m1", &["bob"]), Some(&key("alice", "web")), 1)
        else {
            panic!()
        };
        assert!(targets.iter().any(|t| t.user == u("alice") && t.copy));
        assert!(
            s.attach(&key("alice", "web"), 2).is_empty(),
            "the sender acked its own message"
        );
        assert_eq!(ids(&s.attach(&key("alice", "phone"), 2)), ["m1"]);
        assert_eq!(
            s.receipt(&key("alice", "phone"), &Origin::User(u("alice")), "m1"),
            Ok(ReceiptOutcome::Recorded)
        );
        assert_eq!(s.unacked(&u("alice")), 0);
    }

    #[test]
    fn resends_are_duplicates_and_unknown_receipts_are_refused() {
        let mut s = store(100);
        assert!(matches!(
            s.accept(text("alice", "m1", &["bob"]), None, 1),
            Ok(Accepted::New { .. })
        ));
        assert!(matches!(
            s.accept(text("alice", "m1", &["bob"]), None, 2),
            Ok(Accepted::Duplicate)
        ));
        assert!(matches!(
            s.accept(text("carol", "m1", &["bob"]), None, 2),
            Ok(Accepted::New { .. })
        ));
        assert_eq!(
            s.receipt(&key("bob", "web"), &Origin::User(u("alice")), "nope"),
            Err(NotReceived)
        );
        assert_eq!(
            s.receipt(&key("dave", "web"), &Origin::User(u("alice")), "m1"),
            Err(NotReceived)
        );
    }

    #[test]
    fn the_offline_limit_refuses_whole_messages() {
        let mut s = store(2);
        s.accept(text("alice", "1", &["bob"]), None, 1)
            .ok()
            .unwrap();
        s.accept(text("alice", "2", &["bob"]), None, 1)
            .ok()
            .unwrap();
        assert_eq!(
            s.accept(text("alice", "3", &["carol", "bob"]), None, 1)
                .err(),
            Some(Refused::Full(vec![u("bob")]))
        );
        assert_eq!(s.unacked(&u("carol")), 0, "nothing was kept for carol");
        s.receipt(&key("bob", "web"), &Origin::User(u("alice")), "1")
            .unwrap();
        assert!(s.accept(text("alice", "3", &["bob"]), None, 1).is_ok());
    }

    #[test]
    fn purge_deletes_old_messages_and_forgets_idle_clients() {
        let mut s = store(100);
        s.attach(&key("bob", "old"), 0);
        s.accept(text("alice", "m1", &["bob"]), None, 10)
            .ok()
            .unwrap();
        s.purge(2000, |_| false);
        assert_eq!(s.unacked(&u("bob")), 0);
        assert!(s.attach(&key("bob", "web"), 2000).is_empty());
        s.purge(6000, |_| false);
        // "old" was forgotten: it comes back as a new client.
        s.accept(text("alice", "m2", &["bob"]), None, 6000)
            .ok()
            .unwrap();
        s.receipt(&key("bob", "web"), &Origin::User(u("alice")), "m2")
            .unwrap();
        assert!(s.attach(&key("bob", "old"), 6001).is_empty());
    }
}
