//! The texts this user sent that this session knows of, by id: a 9001 or a
//! 9101 carries only the id, and a person recognises a text, not a UUID.

use std::collections::{HashMap, HashSet, VecDeque};

/// How many sent texts are remembered. A receipt can come hours later (the
/// recipient was offline); one for a text forgotten by then is still shown,
/// without the text. 1,000 short texts are well under a megabyte.
pub const REMEMBERED: usize = 1000;

/// One text sent from this terminal, or a copy of one sent from another
/// client of the same user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentText {
    /// Its `to`, as the server will show it to recipients.
    pub to: String,
    /// What it said.
    pub text: String,
}

/// The remembered texts, the oldest forgotten first.
#[derive(Debug, Default)]
pub struct Sent {
    texts: HashMap<String, SentText>,
    order: VecDeque<String>,
    /// Ids of this terminal's texts still waiting for their 9001.
    awaiting: HashSet<String>,
}

impl Sent {
    /// A text this terminal sends now; its 9001 is awaited.
    pub fn sending(&mut self, id: &str, to: &str, text: &str) {
        self.remember(id, to, text);
        self.awaiting.insert(id.to_string());
    }

    /// A text sent from another client of this user (its copy arrived).
    pub fn remember(&mut self, id: &str, to: &str, text: &str) {
        let text = SentText {
            to: to.to_string(),
            text: text.to_string(),
        };
        if self.texts.insert(id.to_string(), text).is_none() {
            self.order.push_back(id.to_string());
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.texts.remove(&old);
                self.awaiting.remove(&old);
            }
        }
    }

    /// The 9001 for `id` arrived: the text, if it was this terminal's and
    /// awaited its answer. A second 9001 with the same id answers our
    /// 9101 for that text (a note to self reaches its sender too), and
    /// gets `None`.
    pub fn answered(&mut self, id: &str) -> Option<&SentText> {
        if !self.awaiting.remove(id) {
            return None;
        }
        self.texts.get(id)
    }

    /// The text `id`, if remembered.
    pub fn get(&self, id: &str) -> Option<&SentText> {
        self.texts.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_text_is_answered_once() {
        let mut s = Sent::default();
        s.sending("t1", "bob", "hi");
        let hi = SentText {
            to: "bob".into(),
            text: "hi".into(),
        };
        assert_eq!(s.answered("t1"), Some(&hi));
        assert_eq!(s.answered("t1"), None, "the answer to our own receipt");
        assert_eq!(s.get("t1"), Some(&hi), "kept for its receipts");
        assert_eq!(s.answered("other"), None);
    }

    #[test]
    fn a_copy_from_another_device_awaits_no_answer() {
        let mut s = Sent::default();
        s.remember("p1", "bob", "from the phone");
        assert_eq!(s.answered("p1"), None);
        assert_eq!(s.get("p1").map(|t| t.text.as_str()), Some("from the phone"));
    }

    #[test]
    fn the_oldest_texts_are_forgotten_first() {
        let mut s = Sent::default();
        for i in 0..=REMEMBERED {
            s.sending(&i.to_string(), "bob", "x");
        }
        assert_eq!(s.get("0"), None);
        assert_eq!(s.answered("0"), None);
        assert!(s.get("1").is_some());
        assert!(s.answered(&REMEMBERED.to_string()).is_some());
        assert_eq!(s.texts.len(), REMEMBERED);
        assert_eq!(s.order.len(), REMEMBERED);
    }

    #[test]
    fn a_resent_id_is_remembered_once() {
        let mut s = Sent::default();
        s.sending("t1", "bob", "hi");
        s.sending("t1", "bob", "hi");
        assert_eq!(s.order.len(), 1);
    }
}
