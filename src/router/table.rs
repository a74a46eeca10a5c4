//! The session table: every open connection, and which client of which
//! user each registered one is.
//!
//! One rule holds at all times: **a connection's client is set if and only
//! if the connection is listed under that client's user.** Only the
//! methods here change the two maps, each keeping the rule, so no caller
//! can break it. A connection is `attached` once the store has sent its
//! backlog: only then may live messages flow to it, since until then they
//! are in the backlog and delivering them live would duplicate them.

use std::collections::HashMap;

use crate::events::{ConnHandle, ConnId, OnlineList};
use crate::wire::ids::{ClientKey, ClientName, UserId};

struct Conn {
    handle: ConnHandle,
    client: Option<ClientKey>,
    attached: bool,
    /// A backlog is being sent page by page: the next page starts after
    /// this seq, asked for once the writer has written the current one.
    page_after: Option<i64>,
}

/// Why a connection could not take a client's place.
#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    /// The connection is not in the table (it closed meanwhile).
    Gone,
    /// The user already has this many other clients.
    TooMany(usize),
}

/// What changed since the last [`SessionTable::take_changes`]: presence
/// (router/presence.rs) learns of it here, after each wake-up, rather
/// than at each of the places that bind or unbind a client.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// A user came online (its first client) or went offline (its last).
    pub users: bool,
    /// Connections that stopped being a client: closed, replaced, closed
    /// as slow, refused at attach, removed by a reload.
    pub unbound: Vec<ConnId>,
}

/// Open connections and registered clients (owned by the router thread).
#[derive(Default)]
pub struct SessionTable {
    conns: HashMap<ConnId, Conn>,
    /// Registered clients per user, attached or not yet.
    clients: HashMap<UserId, Vec<(ClientName, ConnId)>>,
    changes: Changes,
}

impl SessionTable {
    /// A connection whose handshake completed; no client yet.
    pub fn open(&mut self, handle: ConnHandle) {
        let conn = Conn {
            handle,
            client: None,
            attached: false,
            page_after: None,
        };
        if let Some(old) = self.conns.insert(conn.handle.shared.id, conn) {
            // Ids are never reused; should one be, its listing goes too.
            if let Some(key) = old.client {
                self.unlist(&key, old.handle.shared.id);
            }
        }
    }

    /// Forgets a connection; returns the client it was, if any.
    pub fn remove(&mut self, conn: ConnId) -> Option<ClientKey> {
        let key = self.conns.remove(&conn)?.client?;
        self.unlist(&key, conn);
        Some(key)
    }

    /// Makes `conn` the connection of `key`. Another connection of the same
    /// client loses its place and is returned, to be closed; a user with
    /// `max` other clients gets no new one.
    pub fn bind(
        &mut self,
        conn: ConnId,
        key: ClientKey,
        max: usize,
    ) -> Result<Option<ConnHandle>, BindError> {
        if !self.conns.contains_key(&conn) {
            return Err(BindError::Gone);
        }
        // A connection is one client at most.
        self.unbind(conn);
        let listed = self.clients.get(&key.user);
        let same = listed
            .and_then(|l| l.iter().find(|(name, _)| *name == key.client))
            .map(|(_, c)| *c);
        if same.is_none() && listed.is_some_and(|l| l.len() >= max) {
            return Err(BindError::TooMany(max));
        }
        let replaced = same.and_then(|old| {
            self.unbind(old);
            self.conns.get(&old).map(|c| c.handle.clone())
        });
        let mine = self.clients.entry(key.user.clone()).or_default();
        self.changes.users |= mine.is_empty();
        mine.push((key.client.clone(), conn));
        if let Some(c) = self.conns.get_mut(&conn) {
            c.client = Some(key);
        }
        Ok(replaced)
    }

    /// Takes `conn`'s client away (closed as slow, failed attach); returns
    /// the client it was.
    pub fn unbind(&mut self, conn: ConnId) -> Option<ClientKey> {
        let c = self.conns.get_mut(&conn)?;
        c.attached = false;
        c.page_after = None;
        let key = c.client.take()?;
        self.unlist(&key, conn);
        Some(key)
    }

    /// The store has sent `key`'s backlog to `conn`: live messages may flow.
    /// False, and nothing changes, when `conn` is no longer that client
    /// (closed or replaced meanwhile).
    pub fn attach(&mut self, conn: ConnId, key: &ClientKey) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if c.client.as_ref() == Some(key) => {
                c.attached = true;
                c.page_after = None;
                true
            }
            _ => false,
        }
    }

    /// `key`'s backlog continues after `seq` once its writer has written
    /// what it has; nothing changes unless `conn` is still that client.
    pub fn page_after(&mut self, conn: ConnId, key: &ClientKey, seq: i64) {
        if let Some(c) = self.conns.get_mut(&conn)
            && c.client.as_ref() == Some(key)
        {
            c.page_after = Some(seq);
        }
    }

    /// The client and seq the next backlog page of `conn` starts after,
    /// once: a second call gives nothing until [`Self::page_after`] again.
    pub fn take_page(&mut self, conn: ConnId) -> Option<(ClientKey, i64)> {
        let c = self.conns.get_mut(&conn)?;
        let after = c.page_after.take()?;
        Some((c.client.clone()?, after))
    }

    /// Whether `conn` is still the connection of `key`.
    pub fn is_bound_to(&self, conn: ConnId, key: &ClientKey) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.client.as_ref() == Some(key))
    }

    /// The client `conn` is, if it is registered.
    pub fn client_of(&self, conn: ConnId) -> Option<&ClientKey> {
        self.conns.get(&conn).and_then(|c| c.client.as_ref())
    }

    /// The handle of an open connection.
    pub fn handle(&self, conn: ConnId) -> Option<&ConnHandle> {
        self.conns.get(&conn).map(|c| &c.handle)
    }

    /// The attached connections of `user`, but `skip`.
    pub fn attached_of(&self, user: &UserId, skip: Option<ConnId>) -> Vec<ConnId> {
        self.clients
            .get(user)
            .into_iter()
            .flatten()
            .map(|(_, c)| *c)
            .filter(|c| Some(*c) != skip)
            .filter(|c| self.conns.get(c).is_some_and(|c| c.attached))
            .collect()
    }

    /// The registered connections of users for whom `keep` is false.
    pub fn conns_of_users_but(&self, keep: impl Fn(&UserId) -> bool) -> Vec<ConnId> {
        self.clients
            .iter()
            .filter(|(user, _)| !keep(user))
            .flat_map(|(_, cs)| cs.iter().map(|(_, c)| *c))
            .collect()
    }

    /// Every open connection.
    pub fn handles(&self) -> impl Iterator<Item = &ConnHandle> {
        self.conns.values().map(|c| &c.handle)
    }

    /// Who is online: users in order, each with its client names in order.
    pub fn online(&self) -> OnlineList {
        let mut list: OnlineList = self
            .clients
            .iter()
            .map(|(u, cs)| {
                let mut names: Vec<ClientName> = cs.iter().map(|(n, _)| n.clone()).collect();
                names.sort();
                (u.clone(), names)
            })
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// The users online: those with a registered client, attached or not
    /// yet (as [`Self::online`] lists them).
    pub fn online_users(&self) -> impl Iterator<Item = &UserId> {
        self.clients.keys()
    }

    /// What changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    fn unlist(&mut self, key: &ClientKey, conn: ConnId) {
        self.changes.unbound.push(conn);
        if let Some(mine) = self.clients.get_mut(&key.user) {
            mine.retain(|(_, c)| *c != conn);
            if mine.is_empty() {
                self.clients.remove(&key.user);
                self.changes.users = true;
            }
        }
    }

    /// Panics unless the table's rule holds (tests only).
    #[cfg(test)]
    pub fn check_rule(&self) {
        for (id, c) in &self.conns {
            if let Some(key) = &c.client {
                let listed = self.clients.get(&key.user).map_or(0, |l| {
                    l.iter()
                        .filter(|(n, cid)| *n == key.client && cid == id)
                        .count()
                });
                assert_eq!(listed, 1, "conn {id} is {key} but not listed once");
            } else {
                assert!(!c.attached, "conn {id} is attached without a client");
                assert!(c.page_after.is_none(), "conn {id} pages without a client");
            }
            assert!(
                !(c.attached && c.page_after.is_some()),
                "conn {id} is attached while its backlog is paged"
            );
        }
        for (user, list) in &self.clients {
            assert!(!list.is_empty(), "{user} is listed with no clients");
            for (name, id) in list {
                let key = ClientKey {
                    user: user.clone(),
                    client: name.clone(),
                };
                assert!(
                    self.conns.get(id).and_then(|c| c.client.as_ref()) == Some(&key),
                    "{key} is listed under conn {id}, which is not it"
                );
            }
            let mut names: Vec<&ClientName> = list.iter().map(|(n, _)| n).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), list.len(), "{user} lists a client twice");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ConnShared;
    use crossbeam_channel::{bounded, unbounded};
    use std::sync::Arc;

    fn handle(id: ConnId) -> ConnHandle {
        let (out, _) = unbounded();
        let (ctrl, _) = bounded(1);
        ConnHandle {
            shared: Arc::new(ConnShared::new(id, "127.0.0.1:1".parse().unwrap(), None)),
            out,
            ctrl,
        }
    }

    fn key(user: &str, client: &str) -> ClientKey {
        ClientKey {
            user: UserId::parse(user).unwrap(),
            client: ClientName::parse(client).unwrap(),
        }
    }

    fn ids(r: Result<Option<ConnHandle>, BindError>) -> Result<Option<ConnId>, BindError> {
        r.map(|h| h.map(|h| h.shared.id))
    }

    fn table(ids: &[ConnId]) -> SessionTable {
        let mut t = SessionTable::default();
        for id in ids {
            t.open(handle(*id));
        }
        t
    }

    #[test]
    fn a_bound_connection_is_listed_under_its_user() {
        let mut t = table(&[1]);
        assert_eq!(ids(t.bind(1, key("alice", "web"), 2)), Ok(None));
        t.check_rule();
        assert_eq!(t.client_of(1), Some(&key("alice", "web")));
        assert_eq!(t.online()[0].0.as_str(), "alice");
    }

    #[test]
    fn the_same_client_replaces_its_old_connection() {
        let mut t = table(&[1, 2]);
        t.bind(1, key("alice", "web"), 2).unwrap();
        t.attach(1, &key("alice", "web"));
        let replaced = t.bind(2, key("alice", "web"), 2).unwrap();
        assert_eq!(replaced.map(|h| h.shared.id), Some(1));
        t.check_rule();
        assert_eq!(t.client_of(1), None, "the old connection is no client");
        assert!(t.attached_of(&key("alice", "web").user, None).is_empty());
        assert_eq!(t.online()[0].1.len(), 1);
    }

    #[test]
    fn a_user_gets_at_most_max_clients() {
        let mut t = table(&[1, 2, 3]);
        t.bind(1, key("alice", "web"), 2).unwrap();
        t.bind(2, key("alice", "phone"), 2).unwrap();
        assert_eq!(
            ids(t.bind(3, key("alice", "tablet"), 2)),
            Err(BindError::TooMany(2))
        );
        t.check_rule();
        assert_eq!(t.client_of(3), None);
    }

    #[test]
    fn a_connection_that_is_gone_cannot_bind() {
        let mut t = table(&[]);
        assert_eq!(ids(t.bind(9, key("alice", "web"), 2)), Err(BindError::Gone));
        t.check_rule();
        assert!(t.online().is_empty());
    }

    #[test]
    fn a_connection_is_one_client_at_most() {
        let mut t = table(&[1]);
        t.bind(1, key("alice", "web"), 2).unwrap();
        t.bind(1, key("alice", "phone"), 2).unwrap();
        t.check_rule();
        assert_eq!(t.online()[0].1.len(), 1);
    }

    #[test]
    fn removing_or_unbinding_unlists_the_client() {
        let mut t = table(&[1, 2]);
        t.bind(1, key("alice", "web"), 2).unwrap();
        t.bind(2, key("bob", "web"), 2).unwrap();
        t.attach(2, &key("bob", "web"));
        assert_eq!(t.remove(1), Some(key("alice", "web")));
        assert_eq!(t.unbind(2), Some(key("bob", "web")));
        t.check_rule();
        assert!(t.online().is_empty());
        assert!(t.handle(2).is_some(), "an unbound connection stays open");
        assert_eq!(t.unbind(2), None);
        assert_eq!(t.remove(1), None);
    }

    #[test]
    fn only_the_current_connection_of_a_client_attaches() {
        let mut t = table(&[1, 2]);
        t.bind(1, key("alice", "web"), 2).unwrap();
        t.bind(2, key("alice", "web"), 2).unwrap();
        assert!(!t.attach(1, &key("alice", "web")), "replaced meanwhile");
        assert!(t.attach(2, &key("alice", "web")));
        t.remove(2);
        assert!(!t.attach(2, &key("alice", "web")), "closed meanwhile");
        t.check_rule();
    }

    #[test]
    fn live_messages_go_to_attached_connections_only() {
        let mut t = table(&[1, 2, 3]);
        t.bind(1, key("alice", "web"), 3).unwrap();
        t.bind(2, key("alice", "phone"), 3).unwrap();
        t.bind(3, key("alice", "tablet"), 3).unwrap();
        t.attach(1, &key("alice", "web"));
        t.attach(2, &key("alice", "phone"));
        let alice = key("alice", "web").user;
        let mut all = t.attached_of(&alice, None);
        all.sort();
        assert_eq!(all, [1, 2]);
        assert_eq!(t.attached_of(&alice, Some(1)), [2]);
    }

    #[test]
    fn changes_tell_users_coming_and_going_and_connections_unbound() {
        let mut t = table(&[1, 2, 3]);
        assert_eq!(t.take_changes(), Changes::default());
        t.bind(1, key("alice", "web"), 3).unwrap();
        assert!(t.take_changes().users, "alice came online");
        t.bind(2, key("alice", "phone"), 3).unwrap();
        assert_eq!(t.take_changes(), Changes::default(), "alice was online");
        t.bind(3, key("alice", "web"), 3).unwrap();
        let c = t.take_changes();
        assert_eq!((c.users, c.unbound), (false, vec![1]), "1 was replaced");
        t.remove(2);
        t.unbind(3);
        let c = t.take_changes();
        assert_eq!((c.users, c.unbound), (true, vec![2, 3]), "alice left");
        t.remove(1);
        assert_eq!(t.take_changes(), Changes::default(), "1 was no client");
    }

    #[test]
    fn a_backlog_page_is_asked_for_once_and_only_for_the_current_client() {
        let mut t = table(&[1, 2]);
        let web = key("alice", "web");
        t.bind(1, web.clone(), 2).unwrap();
        t.page_after(1, &web, 7);
        assert_eq!(t.take_page(1), Some((web.clone(), 7)));
        assert_eq!(t.take_page(1), None, "once per page");
        t.page_after(1, &web, 9);
        t.bind(2, web.clone(), 2).unwrap();
        assert_eq!(t.take_page(1), None, "replaced: its paging ends");
        t.page_after(1, &web, 11);
        assert_eq!(t.take_page(1), None, "nor does a stale page restart it");
        t.page_after(2, &web, 3);
        t.attach(2, &web);
        assert_eq!(t.take_page(2), None, "attached: the backlog is through");
        t.check_rule();
    }
}
