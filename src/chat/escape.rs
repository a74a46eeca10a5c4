//! Text from the network as it may reach a terminal. A peer's text, a user
//! id or a status message is printed only through these functions, so that
//! nothing a peer writes can move the cursor, recolour or retitle the
//! terminal, or start a line that looks like one the client printed.

/// Where a continuation line of a text starts. Indented, so that no line of
/// a peer's text can begin at column 0 and pass for one the client printed
/// (`12:00 <carol> ...`).
pub const CONTINUATION: &str = "    ";

/// How many characters of a text a ✓, ✓✓ or ✗ line shows.
pub const EXCERPT_CHARS: usize = 40;

/// One line of text with control characters (C0, DEL, C1: ESC starts the
/// escape sequences, CR returns to the line's start) and the bidirectional
/// overrides (which reorder what follows) written as Rust escapes, `\u{1b}`,
/// `\r`, `\n`; everything else, non-ASCII included, as it is.
pub fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A text that may span lines, as [`shown`] shows each line: a newline (or
/// CRLF) in it starts a continuation line indented by [`CONTINUATION`];
/// trailing newlines are dropped. People write multi-line texts on purpose,
/// so they read as lines, not as `\n`.
pub fn shown_lines(s: &str) -> String {
    let s = s.trim_end_matches(['\n', '\r']);
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(CONTINUATION);
        }
        out.push_str(&shown(line.strip_suffix('\r').unwrap_or(line)));
    }
    out
}

/// The start of a text for a one-line status (✓, ✓✓, ✗): its first line,
/// at most [`EXCERPT_CHARS`] characters, `…` where it was cut, escaped.
pub fn excerpt(s: &str) -> String {
    // Blank lines around a text would make an empty excerpt.
    let s = s.trim();
    let first = s.lines().next().unwrap_or_default();
    let mut cut: String = first.chars().take(EXCERPT_CHARS).collect();
    if cut.len() < s.len() {
        // A multi-line text ends its first line with … too: more follows.
        cut = cut.trim_end().to_string();
        cut.push('…');
    }
    shown(&cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_peers_are_shown_escaped() {
        assert_eq!(shown("hi \u{1b}[2J\u{7}there"), "hi \\u{1b}[2J\\u{7}there");
        assert_eq!(shown("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(shown("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(shown("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(shown("grüße 名前 🙂"), "grüße 名前 🙂");
    }

    #[test]
    fn a_multi_line_text_continues_on_indented_lines() {
        assert_eq!(shown_lines("one\ntwo"), "one\n    two");
        assert_eq!(shown_lines("one\r\ntwo\r\n"), "one\n    two", "CRLF");
        assert_eq!(shown_lines("a\n\nb"), "a\n    \n    b");
        assert_eq!(
            shown_lines("ok\n12:00 <carol> \u{1b}[31mfake"),
            "ok\n    12:00 <carol> \\u{1b}[31mfake",
            "no line of a text starts at column 0"
        );
        assert_eq!(shown_lines("over\rwrite"), "over\\rwrite", "a lone CR");
    }

    #[test]
    fn an_excerpt_is_the_start_of_the_first_line() {
        assert_eq!(excerpt("short"), "short");
        let long = "a text that is much longer than forty characters in all";
        assert_eq!(excerpt(long), "a text that is much longer than forty ch…");
        assert_eq!(excerpt("first line\nsecond"), "first line…");
        assert_eq!(excerpt("bell\u{7}"), "bell\\u{7}");
        assert_eq!(excerpt(&"é".repeat(41)), format!("{}…", "é".repeat(40)));
        assert_eq!(excerpt(""), "");
        assert_eq!(excerpt("\n\n  hi \n"), "hi");
    }
}
