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
    fn origin_knows_system() {
        assert_eq!(Origin::parse("SYSTEM"), Some(Origin::System));
        assert_eq!(
            Origin::parse("bob").map(|o| o.as_str().to_owned()),
            Some("bob".into())
        );
        assert_eq!(Origin::parse("no way"), None);
    }
}
