//! Write-behind for the rows a text adds besides its own: who it is for
//! (`inbox`) and which clients still owe a receipt (`pending`).
//!
//! A text's `messages` row is the durable record: it holds the origin and
//! the recipients, so everything else can be derived from it again. The
//! store commits that row before the 9001 SUCCESS, and keeps the rest here,
//! in memory, for about [`WRITE_BEHIND`]. Most texts to online clients are
//! acknowledged well within that, so their `pending` rows are never
//! written, and their `inbox` rows are written once with their final state,
//! a second's worth of one user's rows to the same b-tree page. Before,
//! each text wrote about seven 1 KiB pages (its row, its dedup index entry,
//! two inbox rows, a pending row, and for its receipt the inbox row again
//! and the pending row's deletion), each on a different page because the
//! texts of one commit belong to different users.
//!
//! The mark (`recent_mark.h`) is the newest seq whose rows are all in the
//! tables; it moves in the same transaction as the rows. After a crash the
//! store derives the rows of every text past the mark from `messages` again
//! (`Db::recover_recent`), as if no client had acknowledged them: what was
//! acknowledged in the last second is delivered again, which at-least-once
//! delivery allows (PROTOCOL.md section 7), and nothing is lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::wire::ids::{ClientName, UserId};

/// How long a text's inbox and pending rows may stay in memory only.
pub const WRITE_BEHIND: Duration = Duration::from_secs(1);

/// When the oldest text has waited [`WRITE_BEHIND`], the rows of all texts
/// older than this are written with it (most receipts come well within
/// it; the rest are written as pending rows).
pub const SETTLE: Duration = Duration::from_millis(100);

/// Most texts written in one commit, so that writing them never holds up
/// the texts of that commit for long (at 2,000 texts/s, one commit of all
/// the settled texts once a second was a 10 ms stall in every second).
pub const MAX_WRITE: usize = 512;

/// Most texts held at once; past it the oldest are written at the next
/// commit whatever their age (a flood must not grow memory without bound).
pub const MAX_RECENT: usize = 8 * 1024;

/// The state of one user's inbox row, as `inbox.state` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    /// No client of the user acknowledged it yet.
    Unacked,
    /// A client of the user acknowledged it.
    Acked,
    /// The sender's own copy (the sender is not a recipient).
    Copy,
}

/// What a text adds besides its `messages` row.
#[derive(Debug, Clone)]
pub struct RecentText {
    /// When it was accepted, for [`Recent::due`].
    pub at: Instant,
    /// Its inbox rows: each user it concerns, and the row's state.
    pub inbox: Vec<(UserId, RowState)>,
    /// The clients that have not acknowledged it yet.
    pub pending: Vec<(UserId, ClientName)>,
}

/// What a receipt did to a recent text.
#[derive(Debug, PartialEq, Eq)]
pub enum Ack {
    /// The user's first receipt for it: the row went from unacknowledged
    /// to acknowledged.
    First,
    /// A repeat, another client of the same user, or the sender's copy.
    Again,
}

impl RecentText {
    /// A receipt from `client` of `user`. `None`: the text does not concern
    /// this user.
    pub fn receipt(&mut self, user: &UserId, client: &ClientName) -> Option<Ack> {
        let row = self.inbox.iter_mut().find(|(u, _)| u == user)?;
        self.pending.retain(|(u, c)| !(u == user && c == client));
        Some(if row.1 == RowState::Unacked {
            row.1 = RowState::Acked;
            Ack::First
        } else {
            Ack::Again
        })
    }
}

/// The texts whose inbox and pending rows are not written yet, by seq.
#[derive(Debug, Default)]
pub struct Recent {
    texts: BTreeMap<i64, RecentText>,
}

impl Recent {
    pub fn add(&mut self, seq: i64, text: RecentText) {
        self.texts.insert(seq, text);
    }

    pub fn get_mut(&mut self, seq: i64) -> Option<&mut RecentText> {
        self.texts.get_mut(&seq)
    }

    /// The newest seq to write now. Nothing until the oldest text has
    /// waited `age`; then the texts older than `settle`, at most
    /// [`MAX_WRITE`] per commit, so that a user's rows of many texts share
    /// their b-tree pages and most texts have had their receipts. Beyond
    /// [`MAX_RECENT`] the oldest are due whatever their age. Texts are
    /// written in seq order, so the mark can say "all up to here".
    pub fn due(&self, now: Instant, age: Duration, settle: Duration) -> Option<i64> {
        let over = self.texts.len().saturating_sub(MAX_RECENT);
        let oldest = self.texts.values().next()?;
        let waited = |t: &RecentText| now.saturating_duration_since(t.at);
        let settle = if waited(oldest) >= age {
            settle
        } else {
            Duration::MAX
        };
        let mut last = None;
        for (i, (seq, text)) in self.texts.iter().enumerate() {
            if i >= over.max(MAX_WRITE) || (i >= over && waited(text) < settle) {
                break;
            }
            last = Some(*seq);
        }
        last
    }

    /// Takes the texts up to `upto`, in seq order.
    pub fn take_upto(&mut self, upto: i64) -> BTreeMap<i64, RecentText> {
        let rest = self.texts.split_off(&upto.saturating_add(1));
        std::mem::replace(&mut self.texts, rest)
    }

    /// The newest seq held.
    pub fn last_seq(&self) -> Option<i64> {
        self.texts.keys().next_back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }
    fn c(s: &str) -> ClientName {
        ClientName::parse(s).unwrap()
    }
    fn text(at: Instant) -> RecentText {
        RecentText {
            at,
            inbox: vec![(u("bob"), RowState::Unacked), (u("alice"), RowState::Copy)],
            pending: vec![(u("bob"), c("phone")), (u("bob"), c("laptop"))],
        }
    }

    #[test]
    fn the_first_receipt_of_a_user_acknowledges_its_row_and_each_client_clears_its_own() {
        let mut t = text(Instant::now());
        assert_eq!(t.receipt(&u("bob"), &c("phone")), Some(Ack::First));
        assert_eq!(t.inbox[0].1, RowState::Acked);
        assert_eq!(t.pending, vec![(u("bob"), c("laptop"))]);
        assert_eq!(t.receipt(&u("bob"), &c("phone")), Some(Ack::Again));
        assert_eq!(t.receipt(&u("bob"), &c("laptop")), Some(Ack::Again));
        assert!(t.pending.is_empty());
        // The sender's copy is recorded, never "first".
        assert_eq!(t.receipt(&u("alice"), &c("tab")), Some(Ack::Again));
        assert_eq!(t.inbox[1].1, RowState::Copy);
        // A user the text is not for.
        assert_eq!(t.receipt(&u("carol"), &c("phone")), None);
    }

    #[test]
    fn nothing_is_due_until_the_oldest_waited_then_all_that_settled_in_one_go() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Recent::default();
        r.add(1, text(start));
        r.add(2, text(start + ms(500)));
        r.add(3, text(start + ms(950)));
        let (age, settle) = (Duration::from_secs(1), ms(100));
        assert_eq!(r.due(start + ms(999), age, settle), None);
        // Seq 3 has waited only 50 ms: it stays for its receipts.
        assert_eq!(r.due(start + ms(1000), age, settle), Some(2));
        assert_eq!(r.due(start + ms(1050), age, settle), Some(3));
        let taken = r.take_upto(2);
        assert_eq!(taken.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(r.last_seq(), Some(3));
        // Seq 3 is now the oldest: nothing until it has waited a second.
        assert_eq!(r.due(start + ms(1900), age, settle), None);
        assert_eq!(r.take_upto(i64::MAX).len(), 1);
        assert_eq!(r.last_seq(), None);
        assert_eq!(r.due(start, age, settle), None);
    }

    #[test]
    fn one_commit_writes_at_most_so_many_the_next_ones_go_on() {
        let start = Instant::now();
        let mut r = Recent::default();
        for seq in 1..=(MAX_WRITE as i64 * 2 + 10) {
            r.add(seq, text(start));
        }
        let later = start + Duration::from_secs(2);
        let age = Duration::from_secs(1);
        assert_eq!(r.due(later, age, SETTLE), Some(MAX_WRITE as i64));
        r.take_upto(MAX_WRITE as i64);
        assert_eq!(r.due(later, age, SETTLE), Some(MAX_WRITE as i64 * 2));
        r.take_upto(MAX_WRITE as i64 * 2);
        assert_eq!(r.due(later, age, SETTLE), Some(MAX_WRITE as i64 * 2 + 10));
    }

    #[test]
    fn protocol_md_quotes_the_write_behind_as_the_code_has_it() {
        let doc = crate::doc_constants::one_line(include_str!("../../docs/PROTOCOL.md"));
        let phrase = format!(
            "once the oldest has waited {} s, the texts older than {} ms, up to {} per commit",
            WRITE_BEHIND.as_secs(),
            SETTLE.as_millis(),
            MAX_WRITE
        );
        assert!(doc.contains(&phrase), "PROTOCOL.md lacks: {phrase}");
    }

    #[test]
    fn past_the_cap_the_oldest_are_due_whatever_their_age() {
        let now = Instant::now();
        let mut r = Recent::default();
        for seq in 1..=(MAX_RECENT as i64 + 3) {
            r.add(seq, text(now));
        }
        assert_eq!(r.due(now, Duration::from_secs(1), SETTLE), Some(3));
    }
}
