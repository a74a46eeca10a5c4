//! Groups in the database: loading them at start, writing a change and its
//! announcement in the batch's transaction, deleting a group with its
//! texts, and who a group text is for. The decisions are in `groups.rs`.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::groups::{Actor, Group, GroupChange, GroupError, GroupView, Groups, Member, Plan};
use super::messages::{Db, DbError, Limit};
use super::{Accepted, NewMessage, Refused};
use crate::wire::ids::{GroupName, Origin, To, UserId};

/// What a committed group change hands the router: the group as it is now
/// (`None` once deleted) and the announcement to deliver.
#[derive(Debug)]
pub struct GroupDone {
    pub group: Option<GroupView>,
    pub announcement: Option<Accepted>,
}

/// Every group in the database: for the store at start, and for the HTTP
/// workers' reads (`GET /api/groups`) on their own connections.
pub fn read_groups(conn: &Connection) -> Result<Groups, DbError> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut q = conn.prepare_cached("SELECT name, title, created FROM groups")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (name, title, created) = row?;
        if let Some(n) = GroupName::parse(&name) {
            let g = Group {
                name: n,
                title,
                created_at: created.max(0) as u64,
                members: BTreeMap::new(),
            };
            groups.insert(name, g);
        }
    }
    let mut q = conn.prepare_cached("SELECT grp, user, owner, since FROM members")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (grp, user, owner, since) = row?;
        if let (Some(g), Some(u)) = (groups.get_mut(&grp), UserId::parse(&user)) {
            let m = Member {
                owner: owner != 0,
                since: since.max(0) as u64,
            };
            g.members.insert(u, m);
        }
    }
    let mut all = Groups::default();
    for g in groups.into_values() {
        all.insert(g);
    }
    Ok(all)
}

impl Db {
    /// Reads every group into memory (at start, after a rollback).
    pub(super) fn load_groups(&mut self) -> Result<(), DbError> {
        self.groups = read_groups(&self.conn)?;
        Ok(())
    }

    /// Decides and writes a group change, with its announcement, inside
    /// the open transaction.
    pub fn change_group(
        &mut self,
        actor: &Actor,
        change: &GroupChange,
        now_ms: u64,
    ) -> Result<Result<GroupDone, GroupError>, DbError> {
        let plan = match self.groups.plan(actor, change, self.limits.groups, now_ms) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        match &plan {
            Plan::Delete { name } => {
                self.delete_group(name)?;
                self.groups.apply(&plan);
                Ok(Ok(GroupDone {
                    group: None,
                    announcement: None,
                }))
            }
            Plan::Save {
                group,
                removed,
                announcement,
            } => {
                self.save_group(group, removed)?;
                self.groups.apply(&plan);
                let msg = NewMessage {
                    origin: Origin::System,
                    id: crate::wire::server_id(),
                    to: To::Group(group.name.clone()),
                    body: announcement.clone(),
                };
                // The members who were removed hear of it too.
                let mut to = self.group_members(&group.name, &Origin::System);
                to.extend(removed.iter().filter(|u| self.limits.known.has(u)).cloned());
                // Past `offline_per_user` too: every change is announced.
                let accepted = self.accept_to(&msg, &to, None, Limit::None, now_ms)?.ok();
                // Its rows are written now, not behind: after a crash they
                // would be derived from the members then, and the members
                // it removed would not hear of it.
                self.write_behind(true)?;
                Ok(Ok(GroupDone {
                    group: Some(group.view()),
                    announcement: accepted,
                }))
            }
        }
    }

    fn save_group(&mut self, g: &Group, removed: &[UserId]) -> Result<(), DbError> {
        let name = g.name.as_str();
        self.conn
            .prepare_cached(
                "INSERT INTO groups (name, title, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET title = excluded.title",
            )?
            .execute(params![name, g.title, g.created_at as i64])?;
        self.conn
            .prepare_cached("DELETE FROM members WHERE grp = ?1")?
            .execute(params![name])?;
        for (u, m) in &g.members {
            self.conn
                .prepare_cached(
                    "INSERT INTO members (grp, user, owner, since) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![name, u.as_str(), m.owner as i64, m.since as i64])?;
        }
        for u in removed {
            self.conn
                .prepare_cached("INSERT OR IGNORE INTO former (grp, user) VALUES (?1, ?2)")?
                .execute(params![name, u.as_str()])?;
        }
        Ok(())
    }

    /// The group goes, and its texts with their delivery rows: a group
    /// made later under the same name must not show them to its members.
    fn delete_group(&mut self, name: &GroupName) -> Result<(), DbError> {
        self.write_behind(true)?;
        let name = name.as_str();
        for sql in [
            "DELETE FROM inbox WHERE seq IN (SELECT seq FROM messages WHERE grp = ?1)",
            "DELETE FROM pending WHERE seq IN (SELECT seq FROM messages WHERE grp = ?1)",
            "DELETE FROM messages WHERE grp = ?1",
            "DELETE FROM members WHERE grp = ?1",
            "DELETE FROM former WHERE grp = ?1",
            "DELETE FROM groups WHERE name = ?1",
        ] {
            self.conn.prepare_cached(sql)?.execute(params![name])?;
        }
        // The unacknowledged counts lost those texts.
        self.load_caches()
    }

    /// Who a text to the group from `origin` is for: every member the
    /// users file still knows, but the sender (its own user gets the text
    /// as a copy, as for any text).
    pub(super) fn group_members(&self, name: &GroupName, origin: &Origin) -> Vec<UserId> {
        let Some(g) = self.groups.get(name) else {
            return Vec::new();
        };
        g.members
            .keys()
            .filter(|u| !matches!(origin, Origin::User(me) if me == *u))
            .filter(|u| self.limits.known.has(u))
            .cloned()
            .collect()
    }

    /// The recipients of a text to a group, or why it is refused (406).
    pub(super) fn group_recipients(
        &self,
        name: &GroupName,
        origin: &Origin,
    ) -> Result<Vec<UserId>, Refused> {
        let Some(g) = self.groups.get(name) else {
            return Err(Refused::UnknownGroup(name.clone()));
        };
        if let Origin::User(me) = origin
            && !g.is_member(me)
        {
            return Err(Refused::NotMember(name.clone()));
        }
        Ok(self.group_members(name, origin))
    }

    /// Everyone who is or was in the group: the users whose inbox rows
    /// the group's texts may have (the clean-up deletes them).
    pub(super) fn ever_members(&self, name: &str) -> Result<Vec<UserId>, DbError> {
        let mut q = self.conn.prepare_cached(
            "SELECT user FROM members WHERE grp = ?1 UNION SELECT user FROM former WHERE grp = ?1",
        )?;
        let rows = q.query_map(params![name], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(u) = UserId::parse(&r?) {
                out.push(u);
            }
        }
        Ok(out)
    }
}
