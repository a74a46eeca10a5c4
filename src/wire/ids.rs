//! Validated names: user ids and client names are checked once, at the edge,
//! and are cheap to clone afterwards (they are copied into many tables).

use std::fmt;
use std::sync::Arc;

/// The id reserved for messages the server originates. Nobody's user id.
pub const SYSTEM: &str = "SYSTEM";

/// Longest user id or client name, in bytes (all allowed characters are ASCII).
pub const MAX_NAME_LEN: usize = 64;

/// A user id: `[A-Za-z0-9._@-]{1,64}`, never `SYSTEM`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

/// A client name: `[A-Za-z0-9._-]{1,64}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientName(Arc<str>);

/// A group's name: `[a-z0-9._-]{1,63}` (PROTOCOL.md section 10). Written
/// `#name` wherever a recipient is named; `#` is never part of a user id,
/// so the two cannot be confused.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(Arc<str>);

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 63;

/// Who a text is for: users, or every member of one group.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum To {
    Users(Vec<UserId>),
    Group(GroupName),
}

impl To {
    /// `to` as recipients see it and as it is stored: `bob,carol` or `#ops`.
    pub fn joined(&self) -> String {
        match self {
            To::Users(us) => us.iter().map(UserId::as_str).collect::<Vec<_>>().join(","),
            To::Group(g) => g.tagged(),
        }
    }
}

/// Who a message comes from: a user, or the server itself.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Origin {
    User(UserId),
    System,
}

/// One client of one user: the unit that delivery is tracked for.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ClientKey {
    pub user: UserId,
    pub client: ClientName,
}

fn valid(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

impl UserId {
    /// Parses a user id; `None` when it breaks the syntax or is `SYSTEM`.
    pub fn parse(s: &str) -> Option<UserId> {
        (valid(s, b"._@-") && s != SYSTEM).then(|| UserId(Arc::from(s)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ClientName {
    /// Parses a client name; `None` when it breaks the syntax.
    pub fn parse(s: &str) -> Option<ClientName> {
        valid(s, b"._-").then(|| ClientName(Arc::from(s)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl GroupName {
    /// Parses a bare group name (as in URL paths); `None` when it breaks
    /// the syntax.
    pub fn parse(s: &str) -> Option<GroupName> {
        (!s.is_empty()
            && s.len() <= MAX_GROUP_NAME_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)))
        .then(|| GroupName(Arc::from(s)))
    }
    /// Parses `#name`; `None` without the `#` or with a bad name.
    pub fn parse_tagged(s: &str) -> Option<GroupName> {
        s.strip_prefix('#').and_then(GroupName::parse)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `#name`.
    pub fn tagged(&self) -> String {
        format!("#{}", self.0)
    }
}

impl Origin {
    /// `SYSTEM` or a valid user id.
    pub fn parse(s: &str) -> Option<Origin> {
        if s == SYSTEM {
            Some(Origin::System)
        } else {
            UserId::parse(s).map(Origin::User)
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Origin::User(u) => u.as_str(),
            Origin::System => SYSTEM,
        }
    }
}

macro_rules! show {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.as_str())
            }
        }
    };
}
show!(UserId);
show!(ClientName);
show!(GroupName);

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.user, self.client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_protocol_syntax() {
        assert!(UserId::parse("alice").is_some());
        assert!(UserId::parse("a.b_c-d@e").is_some());
        assert!(UserId::parse(&"x".repeat(64)).is_some());
        assert!(UserId::parse(&"x".repeat(65)).is_none());
        assert!(UserId::parse("").is_none());
        assert!(UserId::parse("bob smith").is_none());
        assert!(UserId::parse("bob,carol").is_none());
        assert!(UserId::parse("SYSTEM").is_none());
        assert!(UserId::parse("élise").is_none());
    }

    #[test]
    fn client_names_follow_the_protocol_syntax() {
        assert!(ClientName::parse("web-1.tab_2").is_some());
        assert!(ClientName::parse("a@b").is_none());
        assert!(ClientName::parse("").is_none());
        assert!(ClientName::parse(&"c".repeat(65)).is_none());
    }

    #[test]
    fn group_names_follow_the_protocol_syntax() {
        assert!(GroupName::parse("ops").is_some());
        assert!(GroupName::parse("dev.team_2-x").is_some());
        assert!(GroupName::parse(&"g".repeat(63)).is_some());
        assert!(GroupName::parse(&"g".repeat(64)).is_none());
        assert!(GroupName::parse("Ops").is_none(), "lower case only");
        assert!(GroupName::parse("").is_none());
        assert!(GroupName::parse("a@b").is_none());
        assert_eq!(
            GroupName::parse_tagged("#ops").map(|g| g.tagged()),
            Some("#ops".into())
        );
        assert!(GroupName::parse_tagged("ops").is_none());
        assert!(UserId::parse("#ops").is_none(), "# is never in a user id");
    }

    #[test]
    fn origin_knows_system() {
        assert_eq!(Origin::parse("SYSTEM"), Some(Origin::System));
        assert_eq!(
            Origin::parse("bob").map(|o| o.as_str().to_owned()),
            Some("bob".into())
        );
        assert_eq!(Origin::parse("no way"), None);
    }
}
