//! Groups (PROTOCOL.md section 10) as plain data, and the decisions on
//! them: who may change a group, what a change makes of it, and the
//! announcement that tells its members. No SQL here: the store keeps a
//! [`Groups`] in memory beside the tables (`groups_db.rs`) and applies each
//! [`Plan`] to both in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::wire::ids::{GroupName, UserId};

/// Longest group title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;

/// Who asks for a change: a logged-in user, or an administrator (the
/// integration API key, or `edgeim group` on the server's machine), who may
/// manage every group and is nobody's member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Admin,
}

impl Actor {
    /// How announcements name the actor.
    fn name(&self) -> &str {
        match self {
            Actor::User(u) => u.as_str(),
            Actor::Admin => "the administrator",
        }
    }
}

/// A change asked for through `/api/groups` or `edgeim group`. Member ids
/// are checked against the users file before (400 names unknown ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// `POST /api/groups`. A user creating a group is its first member and
    /// owner; an administrator names the owners (maybe none).
    Create {
        name: GroupName,
        title: Option<String>,
        members: Vec<UserId>,
        owners: Vec<UserId>,
    },
    /// `POST /api/groups/{name}/members`: `owners` are made owners (and
    /// members); nobody loses ownership but by leaving.
    Members {
        name: GroupName,
        add: Vec<UserId>,
        remove: Vec<UserId>,
        owners: Vec<UserId>,
    },
    /// `PATCH /api/groups/{name}`.
    Title { name: GroupName, title: String },
    /// `DELETE /api/groups/{name}`.
    Delete { name: GroupName },
}

impl GroupChange {
    pub fn name(&self) -> &GroupName {
        match self {
            GroupChange::Create { name, .. }
            | GroupChange::Members { name, .. }
            | GroupChange::Title { name, .. }
            | GroupChange::Delete { name } => name,
        }
    }
}

/// Why a change was refused; each is one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupError {
    /// 400: a bad title, or a limit.
    Invalid(String),
    /// 404: no such group, or the caller is not a member.
    NotFound,
    /// 403: the caller may not do this.
    Forbidden(String),
    /// 409: the name is taken.
    Taken,
    /// 503: the database failed; nothing changed.
    Storage,
}

impl GroupError {
    pub fn status(&self) -> u16 {
        match self {
            GroupError::Invalid(_) => 400,
            GroupError::Forbidden(_) => 403,
            GroupError::NotFound => 404,
            GroupError::Taken => 409,
            GroupError::Storage => 503,
        }
    }
    pub fn message(&self) -> String {
        match self {
            GroupError::Invalid(m) | GroupError::Forbidden(m) => m.clone(),
            GroupError::NotFound => "no such group".into(),
            GroupError::Taken => "a group of that name exists".into(),
            GroupError::Storage => "storage failure: nothing changed; retry".into(),
        }
    }
}

/// One member: whether it owns the group, and when it joined (the
/// longest-standing member takes over when the last owner leaves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub owner: bool,
    pub since: u64,
}

/// A group as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: GroupName,
    pub title: String,
    pub created_at: u64,
    pub members: BTreeMap<UserId, Member>,
}

/// A group as the API shows it: members and owners sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub name: GroupName,
    pub title: String,
    pub members: Vec<UserId>,
    pub owners: Vec<UserId>,
    pub created_at: u64,
}

impl GroupView {
    /// The group as the API shows it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name.as_str(),
            "title": self.title,
            "members": self.members.iter().map(UserId::as_str).collect::<Vec<_>>(),
            "owners": self.owners.iter().map(UserId::as_str).collect::<Vec<_>>(),
            "createdAt": self.created_at,
        })
    }

    /// The group from [`GroupView::json`].
    pub fn from_json(v: &serde_json::Value) -> Option<GroupView> {
        let users = |k: &str| -> Option<Vec<UserId>> {
            v.get(k)?
                .as_array()?
                .iter()
                .map(|u| u.as_str().and_then(UserId::parse))
                .collect()
        };
        Some(GroupView {
            name: GroupName::parse(v.get("name")?.as_str()?)?,
            title: v.get("title")?.as_str()?.to_string(),
            members: users("members")?,
            owners: users("owners")?,
            created_at: v.get("createdAt")?.as_u64()?,
        })
    }

    /// The group for a terminal: `#ops  Operations`, then its members,
    /// owners marked.
    pub fn lines(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|u| {
                if self.owners.contains(u) {
                    format!("{u} (owner)")
                } else {
                    u.to_string()
                }
            })
            .collect();
        format!(
            "#{}  {}\nmembers: {}\n",
            self.name,
            self.title.escape_debug(),
            members.join(", ")
        )
    }
}

impl Group {
    pub fn view(&self) -> GroupView {
        GroupView {
            name: self.name.clone(),
            title: self.title.clone(),
            members: self.members.keys().cloned().collect(),
            owners: self
                .members
                .iter()
                .filter(|(_, m)| m.owner)
                .map(|(u, _)| u.clone())
                .collect(),
            created_at: self.created_at,
        }
    }

    pub fn is_member(&self, user: &UserId) -> bool {
        self.members.contains_key(user)
    }

    fn is_owner(&self, user: &UserId) -> bool {
        self.members.get(user).is_some_and(|m| m.owner)
    }
}

/// What a change comes to, for the store to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The group as it is after the change, the users it lost, and the
    /// announcement (also for those users).
    Save {
        group: Group,
        removed: Vec<UserId>,
        announcement: String,
    },
    /// The group and its messages go.
    Delete { name: GroupName },
}

/// The limits a change must keep (`limits.max_group_members`,
/// `limits.max_groups_per_user`).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub max_members: usize,
    pub max_groups_per_user: usize,
}

/// Every group, in memory: the store reads membership on every group text.
#[derive(Debug, Default)]
pub struct Groups {
    by_name: HashMap<GroupName, Group>,
    /// How many groups each user is in, for the per-user limit.
    per_user: HashMap<UserId, usize>,
}

impl Groups {
    pub fn insert(&mut self, g: Group) {
        self.remove(&g.name);
        for u in g.members.keys() {
            *self.per_user.entry(u.clone()).or_default() += 1;
        }
        self.by_name.insert(g.name.clone(), g);
    }

    pub fn remove(&mut self, name: &GroupName) {
        if let Some(old) = self.by_name.remove(name) {
            for u in old.members.keys() {
                if let Some(n) = self.per_user.get_mut(u) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    pub fn get(&self, name: &GroupName) -> Option<&Group> {
        self.by_name.get(name)
    }

    fn count_of(&self, user: &UserId) -> usize {
        self.per_user.get(user).copied().unwrap_or(0)
    }

    /// Decides a change at `now`. Nothing changes here: the store applies
    /// the plan to the tables and then to `self` ([`Groups::apply`]).
    pub fn plan(
        &self,
        actor: &Actor,
        change: &GroupChange,
        limits: GroupLimits,
        now: u64,
    ) -> Result<Plan, GroupError> {
        let who = actor.name();
        let existing = self.get(change.name());
        // A user sees only its own groups: another group is "not found".
        let visible = |g: &Group| match actor {
            Actor::Admin => true,
            Actor::User(u) => g.is_member(u),
        };
        let may_manage = |g: &Group| match actor {
            Actor::Admin => true,
            Actor::User(u) => g.is_owner(u),
        };
        let group = match (change, existing) {
            (GroupChange::Create { .. }, Some(_)) => return Err(GroupError::Taken),
            (GroupChange::Create { .. }, None) => None,
            (_, Some(g)) if visible(g) => Some(g),
            (_, _) => return Err(GroupError::NotFound),
        };
        match (change, group) {
            (
                GroupChange::Create {
                    name,
                    title,
                    members,
                    owners,
                },
                None,
            ) => {
                let title = match title {
                    Some(t) => check_title(t)?,
                    None => name.as_str().to_string(),
                };
                let mut g = Group {
                    name: name.clone(),
                    title,
                    created_at: now,
                    members: BTreeMap::new(),
                };
                let mut owned: BTreeSet<&UserId> = owners.iter().collect();
                if let Actor::User(me) = actor {
                    owned.insert(me);
                    g.members.insert(
                        me.clone(),
                        Member {
                            owner: true,
                            since: now,
                        },
                    );
                }
                for u in members.iter().chain(owners) {
                    g.members.entry(u.clone()).or_insert(Member {
                        owner: owned.contains(u),
                        since: now,
                    });
                }
                self.check_limits(&g, None, limits)?;
                let others: Vec<&str> = g
                    .members
                    .keys()
                    .filter(|u| !matches!(actor, Actor::User(me) if me == *u))
                    .map(UserId::as_str)
                    .collect();
                let mut announcement = format!("{who} created the group {}", g.title);
                if !others.is_empty() {
                    announcement.push_str(&format!(" with {}", others.join(", ")));
                }
                Ok(Plan::Save {
                    group: g,
                    removed: Vec::new(),
                    announcement,
                })
            }
            (
                GroupChange::Members {
                    add,
                    remove,
                    owners,
                    ..
                },
                Some(old),
            ) => {
                let leaving_only = matches!(actor, Actor::User(me)
                    if add.is_empty() && owners.is_empty() && remove.iter().all(|u| u == me));
                if !may_manage(old) && !leaving_only {
                    return Err(GroupError::Forbidden(
                        "only an owner may change the members (a member may remove only itself)"
                            .into(),
                    ));
                }
                let mut g = old.clone();
                let mut parts: Vec<String> = Vec::new();
                let mut added: Vec<&str> = Vec::new();
                for u in add.iter().chain(owners) {
                    if !g.members.contains_key(u) {
                        g.members.insert(
                            u.clone(),
                            Member {
                                owner: false,
                                since: now,
                            },
                        );
                        added.push(u.as_str());
                    }
                }
                if !added.is_empty() {
                    parts.push(format!("{who} added {}", added.join(", ")));
                }
                let mut made: Vec<&str> = Vec::new();
                for u in owners {
                    if let Some(m) = g.members.get_mut(u)
                        && !m.owner
                    {
                        m.owner = true;
                        made.push(u.as_str());
                    }
                }
                if !made.is_empty() {
                    parts.push(format!("{who} made {} an owner", made.join(", ")));
                }
                let mut removed: Vec<UserId> = Vec::new();
                for u in remove {
                    if g.members.remove(u).is_some() && !removed.contains(u) {
                        removed.push(u.clone());
                    }
                }
                for u in &removed {
                    if matches!(actor, Actor::User(me) if me == u) {
                        parts.push(format!("{u} left"));
                    } else {
                        parts.push(format!("{who} removed {u}"));
                    }
                }
                if g.members.is_empty() {
                    return Ok(Plan::Delete { name: g.name });
                }
                // The last owner left: the longest-standing member takes
                // over, so that someone can still manage the group. A
                // group the API key made without owners stays without.
                let had_owners = old.members.values().any(|m| m.owner);
                if had_owners && !g.members.values().any(|m| m.owner) {
                    let heir = g
                        .members
                        .iter_mut()
                        .min_by(|a, b| a.1.since.cmp(&b.1.since).then(a.0.cmp(b.0)));
                    if let Some((u, m)) = heir {
                        m.owner = true;
                        parts.push(format!("{u} is now an owner"));
                    }
                }
                if parts.is_empty() {
                    return Err(GroupError::Invalid(
                        "nothing to change: name members to add, remove or make owners".into(),
                    ));
                }
                self.check_limits(&g, Some(old), limits)?;
                Ok(Plan::Save {
                    group: g,
                    removed,
                    announcement: parts.join("; "),
                })
            }
            (GroupChange::Title { title, .. }, Some(old)) => {
                if !may_manage(old) {
                    return Err(GroupError::Forbidden(
                        "only an owner may rename the group".into(),
                    ));
                }
                let title = check_title(title)?;
                let mut g = old.clone();
                g.title = title;
                let announcement = format!("{who} renamed the group to {}", g.title);
                Ok(Plan::Save {
                    group: g,
                    removed: Vec::new(),
                    announcement,
                })
            }
            (GroupChange::Delete { name }, Some(old)) => {
                if !may_manage(old) {
                    return Err(GroupError::Forbidden(
                        "only an owner may delete the group".into(),
                    ));
                }
                Ok(Plan::Delete { name: name.clone() })
            }
            // A create always finds no group, and every other change one.
            _ => Err(GroupError::NotFound),
        }
    }

    /// `max_members` for the group, and `max_groups_per_user` for each
    /// user it gains (the message names who is over).
    fn check_limits(
        &self,
        g: &Group,
        old: Option<&Group>,
        limits: GroupLimits,
    ) -> Result<(), GroupError> {
        if g.members.len() > limits.max_members {
            return Err(GroupError::Invalid(format!(
                "a group has at most {} members",
                limits.max_members
            )));
        }
        let over: Vec<&str> = g
            .members
            .keys()
            .filter(|u| !old.is_some_and(|o| o.is_member(u)))
            .filter(|u| self.count_of(u) >= limits.max_groups_per_user)
            .map(UserId::as_str)
            .collect();
        if !over.is_empty() {
            return Err(GroupError::Invalid(format!(
                "already in {} groups: {}",
                limits.max_groups_per_user,
                over.join(",")
            )));
        }
        Ok(())
    }

    /// Makes a committed plan true in memory.
    pub fn apply(&mut self, plan: &Plan) {
        match plan {
            Plan::Save { group, .. } => self.insert(group.clone()),
            Plan::Delete { name } => self.remove(name),
        }
    }

    /// The groups `user` is in (every group for `None`), sorted by name.
    pub fn list(&self, user: Option<&UserId>) -> Vec<GroupView> {
        let mut out: Vec<GroupView> = self
            .by_name
            .values()
            .filter(|g| user.is_none_or(|u| g.is_member(u)))
            .map(Group::view)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// User ids named at the edge (`/api/groups`, `edgeim group`), checked: each
/// well-formed and, given `exists`, known to the users file. Duplicates
/// count once. The error names every bad one, for a 400.
pub fn users_named<'a>(
    names: impl Iterator<Item = &'a str>,
    exists: Option<&dyn Fn(&str) -> bool>,
) -> Result<Vec<UserId>, String> {
    let mut out: Vec<UserId> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for name in names {
        match UserId::parse(name) {
            Some(u) if exists.is_none_or(|f| f(u.as_str())) => {
                if !out.contains(&u) {
                    out.push(u);
                }
            }
            _ => unknown.push(
                name.chars()
                    .take(64)
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect(),
            ),
        }
    }
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(format!("unknown user: {}", unknown.join(",")))
    }
}

/// A title is 1–[`MAX_TITLE_CHARS`] characters, not only spaces, with no
/// control characters (it is shown in page headers and terminal lines).
fn check_title(t: &str) -> Result<String, GroupError> {
    let n = t.chars().count();
    if t.trim().is_empty() || n > MAX_TITLE_CHARS || t.chars().any(char::is_control) {
        return Err(GroupError::Invalid(format!(
            "title must be 1-{MAX_TITLE_CHARS} characters, without control characters"
        )));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }
    fn g(s: &str) -> GroupName {
        GroupName::parse(s).unwrap()
    }
    const LIMITS: GroupLimits = GroupLimits {
        max_members: 4,
        max_groups_per_user: 2,
    };

    fn create(groups: &mut Groups, by: Actor, name: &str, members: &[&str]) -> Plan {
        let change = GroupChange::Create {
            name: g(name),
            title: Some(name.to_uppercase()),
            members: members.iter().map(|m| u(m)).collect(),
            owners: Vec::new(),
        };
        let plan = groups.plan(&by, &change, LIMITS, 1).unwrap();
        groups.apply(&plan);
        plan
    }

    fn members(by: &str, add: &[&str], remove: &[&str], owners: &[&str]) -> (Actor, GroupChange) {
        let list = |l: &[&str]| l.iter().map(|m| u(m)).collect();
        (
            Actor::User(u(by)),
            GroupChange::Members {
                name: g("ops"),
                add: list(add),
                remove: list(remove),
                owners: list(owners),
            },
        )
    }

    #[test]
    fn the_creator_is_the_first_owner_and_the_creation_is_announced() {
        let mut gs = Groups::default();
        let Plan::Save {
            group,
            announcement,
            ..
        } = create(&mut gs, Actor::User(u("alice")), "ops", &["bob", "carol"])
        else {
            panic!()
        };
        let v = group.view();
        assert_eq!(v.members, [u("alice"), u("bob"), u("carol")]);
        assert_eq!(v.owners, [u("alice")]);
        assert_eq!(announcement, "alice created the group OPS with bob, carol");
        let again = GroupChange::Create {
            name: g("ops"),
            title: None,
            members: vec![],
            owners: vec![],
        };
        assert_eq!(
            gs.plan(&Actor::User(u("dave")), &again, LIMITS, 2),
            Err(GroupError::Taken)
        );
    }

    #[test]
    fn the_api_key_makes_groups_without_owners_and_manages_every_group() {
        let mut gs = Groups::default();
        create(&mut gs, Actor::Admin, "ops", &["bob"]);
        let v = gs.get(&g("ops")).unwrap().view();
        assert_eq!((v.members, v.owners), (vec![u("bob")], vec![]));
        let (_, change) = members("x", &["carol"], &[], &[]);
        let plan = gs.plan(&Actor::Admin, &change, LIMITS, 2).unwrap();
        let Plan::Save { announcement, .. } = &plan else {
            panic!()
        };
        assert_eq!(announcement, "the administrator added carol");
        gs.apply(&plan);
        // bob alone leaving a group without owners makes nobody owner.
        let (by, change) = members("bob", &[], &["bob"], &[]);
        let Plan::Save { group, .. } = gs.plan(&by, &change, LIMITS, 3).unwrap() else {
            panic!()
        };
        assert!(group.view().owners.is_empty());
    }

    #[test]
    fn only_owners_change_members_and_a_member_may_remove_only_itself() {
        let mut gs = Groups::default();
        create(&mut gs, Actor::User(u("alice")), "ops", &["bob", "carol"]);
        for (by, add, remove) in [("bob", &["dave"][..], &[][..]), ("bob", &[], &["carol"])] {
            let (a, c) = members(by, add, remove, &[]);
            assert_eq!(gs.plan(&a, &c, LIMITS, 2).unwrap_err().status(), 403);
        }
        let (a, c) = members("bob", &[], &["bob"], &[]);
        let Plan::Save {
            removed,
            announcement,
            ..
        } = gs.plan(&a, &c, LIMITS, 2).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (removed, announcement.as_str()),
            (vec![u("bob")], "bob left")
        );
        let (a, c) = members("dave", &[], &["dave"], &[]);
        assert_eq!(gs.plan(&a, &c, LIMITS, 2), Err(GroupError::NotFound));
    }

    #[test]
    fn when_the_last_owner_leaves_the_longest_standing_member_takes_over() {
        let mut gs = Groups::default();
        create(&mut gs, Actor::User(u("alice")), "ops", &["carol"]);
        let (a, c) = members("alice", &["bob"], &[], &[]);
        let plan = gs.plan(&a, &c, LIMITS, 5).unwrap();
        gs.apply(&plan);
        let (a, c) = members("alice", &[], &["alice"], &[]);
        let Plan::Save {
            group,
            announcement,
            ..
        } = gs.plan(&a, &c, LIMITS, 6).unwrap()
        else {
            panic!()
        };
        // carol joined at 1, bob at 5.
        assert_eq!(group.view().owners, [u("carol")]);
        assert_eq!(announcement, "alice left; carol is now an owner");
    }

    #[test]
    fn a_group_with_no_members_is_deleted() {
        let mut gs = Groups::default();
        create(&mut gs, Actor::User(u("alice")), "ops", &[]);
        let (a, c) = members("alice", &[], &["alice"], &[]);
        assert_eq!(
            gs.plan(&a, &c, LIMITS, 2),
            Ok(Plan::Delete { name: g("ops") })
        );
    }

    #[test]
    fn limits_name_who_is_over() {
        let mut gs = Groups::default();
        create(&mut gs, Actor::User(u("alice")), "ops", &["bob"]);
        create(&mut gs, Actor::User(u("alice")), "dev", &[]);
        let change = GroupChange::Create {
            name: g("qa"),
            title: None,
            members: vec![u("bob"), u("carol")],
            owners: vec![],
        };
        let e = gs.plan(&Actor::User(u("alice")), &change, LIMITS, 3);
        assert_eq!(
            e,
            Err(GroupError::Invalid("already in 2 groups: alice".into()))
        );
        let (a, c) = members("alice", &["c", "d", "e"], &[], &[]);
        let e = gs.plan(&a, &c, LIMITS, 3).unwrap_err();
        assert_eq!(e.message(), "a group has at most 4 members");
    }

    #[test]
    fn titles_are_checked_and_renames_announced() {
        let mut gs = Groups::default();
        create(&mut gs, Actor::User(u("alice")), "ops", &["bob"]);
        for bad in ["", "  ", "a\u{1b}[2J", &"t".repeat(101)] {
            let c = GroupChange::Title {
                name: g("ops"),
                title: bad.into(),
            };
            assert_eq!(
                gs.plan(&Actor::User(u("alice")), &c, LIMITS, 2)
                    .unwrap_err()
                    .status(),
                400
            );
        }
        let c = GroupChange::Title {
            name: g("ops"),
            title: "Ops team".into(),
        };
        assert_eq!(
            gs.plan(&Actor::User(u("bob")), &c, LIMITS, 2)
                .unwrap_err()
                .status(),
            403
        );
        let Plan::Save { announcement, .. } =
            gs.plan(&Actor::User(u("alice")), &c, LIMITS, 2).unwrap()
        else {
            panic!()
        };
        assert_eq!(announcement, "alice renamed the group to Ops team");
    }

    #[test]
    fn owners_are_added_as_members_and_listed_sorted() {
        let mut gs = Groups::default();
        create(&mut gs, Actor::User(u("bob")), "ops", &[]);
        let (a, c) = members("bob", &[], &[], &["alice"]);
        let plan = gs.plan(&a, &c, LIMITS, 2).unwrap();
        let Plan::Save {
            ref group,
            ref announcement,
            ..
        } = plan
        else {
            panic!()
        };
        assert_eq!(group.view().owners, [u("alice"), u("bob")]);
        assert_eq!(announcement, "bob added alice; bob made alice an owner");
        gs.apply(&plan);
        assert_eq!(gs.list(Some(&u("alice"))).len(), 1);
        assert_eq!(gs.list(Some(&u("carol"))).len(), 0);
        assert_eq!(gs.list(None).len(), 1);
    }

    #[test]
    fn protocol_md_quotes_the_group_limits_as_the_code_has_them() {
        use crate::config::{DEFAULT_MAX_GROUP_MEMBERS, DEFAULT_MAX_GROUPS_PER_USER};
        use crate::wire::ids::MAX_GROUP_NAME_LEN;
        let doc = crate::doc_constants::one_line(include_str!("../../docs/PROTOCOL.md"));
        for phrase in [
            format!("`limits.max_group_members` ({DEFAULT_MAX_GROUP_MEMBERS}) members"),
            format!("`limits.max_groups_per_user` ({DEFAULT_MAX_GROUPS_PER_USER}) groups"),
            format!("a title, 1–{MAX_TITLE_CHARS} characters"),
            format!("1–{MAX_GROUP_NAME_LEN} of `a-z 0-9 . _ -`"),
        ] {
            assert!(doc.contains(&phrase), "PROTOCOL.md lacks: {phrase}");
        }
    }
}
