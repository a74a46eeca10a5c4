//! What a typed line asks for: a command, or a text and maybe its
//! recipients.

use crate::wire::ids::{GroupName, UserId};

/// One typed line, understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed<'a> {
    /// Blank: nothing to do.
    Nothing,
    /// `/quit`.
    Quit,
    /// `/who`.
    Who,
    /// `/help`.
    Help,
    /// Another `/...`.
    UnknownCommand(&'a str),
    /// A text; `to` is `Some` when the line named its recipients (`bob,carol`
    /// or `#ops`, as `to` is written), `None` for the previous ones.
    Text {
        /// The recipients the line named.
        to: Option<String>,
        /// The text, trimmed; may be empty (`bob:` only picks bob).
        text: &'a str,
    },
    /// A line that starts like a group (`#Ops: hi`) but names none: sent to
    /// the previous recipients it would reach people it was not meant for.
    NotAGroup(&'a str),
}

/// `bob: hi`, `bob,carol: hi`, `#ops: hi`, `hi`, or a command.
pub fn parse(line: &str) -> Typed<'_> {
    let line = line.trim();
    match line {
        "" => return Typed::Nothing,
        "/quit" => return Typed::Quit,
        "/who" => return Typed::Who,
        "/help" => return Typed::Help,
        _ if line.starts_with('/') => return Typed::UnknownCommand(line),
        _ => {}
    }
    if let Some((names, text)) = line.split_once(':') {
        if let Some(to) = recipients(names) {
            return Typed::Text {
                to: Some(to),
                text: text.trim(),
            };
        }
        // `#Ops: hi` or `#my team: hi` are typos for a group, not texts
        // that start with `#`.
        if line.starts_with('#') {
            return Typed::NotAGroup(names.trim());
        }
    }
    Typed::Text {
        to: None,
        text: line,
    }
}

/// `bob , carol` → `bob,carol` and `#ops` → `#ops` when every entry is a
/// user id or a group. Whether a group may share `to` with others is the
/// server's rule (406), not repeated here.
fn recipients(names: &str) -> Option<String> {
    let names: Vec<&str> = names.split(',').map(str::trim).collect();
    // `#` is never part of a user id, so the two cannot be confused.
    let valid = |n: &&str| UserId::parse(n).is_some() || GroupName::parse_tagged(n).is_some();
    names.iter().all(valid).then(|| names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(to: Option<&str>, text: &'a str) -> Typed<'a> {
        Typed::Text {
            to: to.map(String::from),
            text,
        }
    }

    #[test]
    fn a_name_prefix_picks_the_recipients() {
        assert_eq!(parse("bob: hello"), text(Some("bob"), "hello"));
        assert_eq!(
            parse(" bob , carol: hi: there "),
            text(Some("bob,carol"), "hi: there")
        );
        assert_eq!(parse("bob:"), text(Some("bob"), ""));
    }

    #[test]
    fn a_line_without_names_goes_to_the_previous_recipients() {
        assert_eq!(parse("just text"), text(None, "just text"));
        assert_eq!(parse("two words: x"), text(None, "two words: x"));
        assert_eq!(parse("  "), Typed::Nothing);
    }

    #[test]
    fn a_hash_name_prefix_picks_a_group() {
        assert_eq!(
            parse("#ops: deploy at noon"),
            text(Some("#ops"), "deploy at noon")
        );
        assert_eq!(parse("#a.b_c-9: x"), text(Some("#a.b_c-9"), "x"));
        assert_eq!(
            parse("#ops,bob: x"),
            text(Some("#ops,bob"), "x"),
            "the server says 406"
        );
        let longest = format!("#{}", "g".repeat(63));
        assert_eq!(parse(&format!("{longest}: x")), text(Some(&longest), "x"));
    }

    #[test]
    fn a_line_that_starts_like_a_group_but_names_none_is_not_sent() {
        assert_eq!(parse("#Ops: hi"), Typed::NotAGroup("#Ops"));
        assert_eq!(parse("#my team: hi"), Typed::NotAGroup("#my team"));
        assert_eq!(parse("#: hi"), Typed::NotAGroup("#"));
        let long = format!("#{}", "g".repeat(64));
        assert_eq!(parse(&format!("{long}: x")), Typed::NotAGroup(&long));
        assert_eq!(
            parse("#ops without a colon"),
            text(None, "#ops without a colon")
        );
    }

    #[test]
    fn commands_start_with_a_slash() {
        assert_eq!(parse("/quit"), Typed::Quit);
        assert_eq!(parse(" /who "), Typed::Who);
        assert_eq!(parse("/help"), Typed::Help);
        assert_eq!(parse("/nick x"), Typed::UnknownCommand("/nick x"));
    }
}
