//! Text that must fit a platform's limit: lengths counted in UTF-16 code
//! units (never fewer than characters, so a limit in either holds), cuts
//! that end in an ellipsis, single-line values without invisible
//! formatting characters, and lists that say how many items did not fit.

/// The ellipsis a cut text ends with.
pub const ELLIPSIS: char = '…';

/// Length in UTF-16 code units: what JavaScript-based platforms count, and
/// never less than the number of characters.
pub fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// `s` cut to at most `max` units, ending in `…` when anything was cut.
pub fn cut(s: &str, max: usize) -> String {
    fit(s, max, |_| None)
}

/// `s` with each character written as `escape` says (or as itself), cut to
/// at most `max` units of the escaped text without splitting an escape,
/// ending in `…` when anything was cut.
pub fn fit(s: &str, max: usize, escape: fn(char) -> Option<&'static str>) -> String {
    let width = |c: char| escape(c).map_or(c.len_utf16(), units);
    let push = |out: &mut String, c: char| match escape(c) {
        Some(e) => out.push_str(e),
        None => out.push(c),
    };
    let mut out = String::new();
    if s.chars().map(width).sum::<usize>() <= max {
        s.chars().for_each(|c| push(&mut out, c));
        return out;
    }
    let room = max.saturating_sub(ELLIPSIS.len_utf16());
    let mut used = 0;
    for c in s.chars() {
        if used + width(c) > room {
            break;
        }
        used += width(c);
        push(&mut out, c);
    }
    if max >= ELLIPSIS.len_utf16() {
        out.push(ELLIPSIS);
    }
    out
}

/// Control characters (newlines, tabs, escapes) become spaces, runs of
/// whitespace one space, invisible formatting characters go
/// ([`is_invisible`]), ends trimmed: a value that fits on one line and
/// shows what it says.
pub fn one_line(s: &str) -> String {
    let spaced: String = s
        .chars()
        .filter(|&c| !is_invisible(c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` without invisible formatting characters ([`is_invisible`]).
pub fn visible(s: &str) -> String {
    s.chars().filter(|&c| !is_invisible(c)).collect()
}

/// A character that changes what a reader sees without being seen: the
/// bidirectional controls (embeddings, overrides, isolates and marks, which
/// reorder text: `evil\u{202e}txt.exe` shows as `evilexe.txt`), zero-width
/// spaces, joiners and word joiners (which split a word a filter or a
/// mention parser looks for), the byte order mark, the soft hyphen, the
/// invisible operators, fillers and tag characters. Variation selectors
/// stay: emoji need them.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

/// Lines joined with newlines, as many as fit in `max` units; the rest are
/// counted in a last line (`… and 3 more`). A line too long on its own is
/// cut by the caller before it gets here.
pub fn lines_within(lines: &[String], max: usize) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let left_after = lines.len() - i - 1;
        let sep = usize::from(!out.is_empty());
        let trailer = if left_after > 0 {
            units(&more(left_after)) + 1
        } else {
            0
        };
        if units(&out) + sep + units(line) + trailer > max {
            let rest = more(lines.len() - i);
            if units(&out) + sep + units(&rest) <= max {
                if sep == 1 {
                    out.push('\n');
                }
                out.push_str(&rest);
            }
            return out;
        }
        if sep == 1 {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

fn more(n: usize) -> String {
    format!("{ELLIPSIS} and {n} more")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_end_in_an_ellipsis_and_fit() {
        assert_eq!(cut("hello", 5), "hello");
        assert_eq!(cut("hello!", 5), "hell…");
        assert_eq!(cut("", 0), "");
        // 🚀 is two UTF-16 units: it does not fit in the one left.
        assert_eq!(cut("ab🚀cd", 4), "ab…");
        assert_eq!(units(&cut(&"é".repeat(10_000), 3000)), 3000);
        assert_eq!(units(&cut(&"日本".repeat(5000), 2000)), 2000);
    }

    #[test]
    fn escapes_are_never_split() {
        let esc = |c: char| (c == '&').then_some("&amp;");
        assert_eq!(fit("a&b", 10, esc), "a&amp;b");
        assert_eq!(fit("a&&&&", 8, esc), "a&amp;…");
        assert!(units(&fit(&"&".repeat(5000), 3000, esc)) <= 3000);
    }

    #[test]
    fn one_line_values() {
        assert_eq!(one_line("  a\n\tb\r\n c \u{1b}"), "a b c");
    }

    #[test]
    fn invisible_formatting_goes() {
        let hostile = "evil\u{202E}txt.exe \u{2066}x\u{2069} @\u{200B}chan\u{2060}nel \u{FEFF}\u{200E}\u{061C}ok\u{00AD}";
        assert_eq!(one_line(hostile), "eviltxt.exe x @channel ok");
        assert_eq!(visible("a\u{202D}b\nc"), "ab\nc");
        // Emoji keep their variation selectors.
        assert_eq!(one_line("⚠️ ℹ️"), "⚠️ ℹ️");
    }

    #[test]
    fn lists_count_what_did_not_fit() {
        let lines: Vec<String> = (0..100).map(|i| format!("line {i:02}")).collect();
        let out = lines_within(&lines, 40);
        assert!(units(&out) <= 40, "{out}");
        assert!(out.starts_with("line 00\nline 01\n"), "{out}");
        assert!(out.ends_with("… and 97 more"), "{out}");
        assert_eq!(lines_within(&lines[..2], 100), "line 00\nline 01");
    }
}
