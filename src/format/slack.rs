//! Slack and Mattermost bodies. Slack: `text` (the notification line) plus
//! Block Kit `blocks` in mrkdwn, within Slack's limits (at most 50 blocks,
//! section text 3,000 characters, at most 10 fields of 2,000, context text
//! 3,000), with `&`, `<` and `>` escaped so no value can become a link or a
//! `<!channel>` mention. Mattermost takes Slack's shape but not Block Kit:
//! one Markdown `text` of at most 16,383 characters. Its server first turns
//! `<!channel>`, `<!here>` and `<!all>` into mentions and `<url|text>` into
//! a Markdown link, then the client renders Markdown, `@name` mentions and
//! `~channel` links; so in every value `&`, `<` and `>` become entities
//! (the server sees no `<…>`, the client shows the characters), a zero-width
//! space follows every `@` (so `@channel`, `@all`, `@here` ping nobody) and
//! the characters of link, image, autolink, emphasis, emoji and channel
//! syntax are backslash-escaped (`[`, `]`, `(`, `)`, `!`, `~`, `#`, and
//! `:` and `.`, which a bare `https://…`, `www.…` or `host.tld/…` needs to
//! be autolinked): the only links are the evidence links spec-notify builds.

use serde_json::{Value, json};

use super::facts::Facts;
use super::parts::{details, footer, markdown_item, sections};
use super::text::{cut, fit, lines_within};

pub const SECTION_MAX: usize = 3000;
pub const FIELD_MAX: usize = 2000;
pub const FIELDS_MAX: usize = 10;
pub const BLOCKS_MAX: usize = 50;
pub const MATTERMOST_MAX: usize = 16_383;
/// One evidence path in a list; a longer one is cut and not linked.
const PATH_MAX: usize = 300;

fn escape(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}

/// Mattermost: what the server's Slack conversion and the client's
/// Markdown would act on, made inert (see the module doc).
fn md_escape(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '@' => Some("@\u{200B}"),
        '\\' => Some("\\\\"),
        '[' => Some("\\["),
        ']' => Some("\\]"),
        '(' => Some("\\("),
        ')' => Some("\\)"),
        '!' => Some("\\!"),
        ':' => Some("\\:"),
        '~' => Some("\\~"),
        '*' => Some("\\*"),
        '_' => Some("\\_"),
        '`' => Some("\\`"),
        '#' => Some("\\#"),
        '|' => Some("\\|"),
        '$' => Some("\\$"),
        '.' => Some("\\."),
        _ => None,
    }
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

/// `*Label*\nvalue`, the value escaped and cut so the whole fits `max`.
fn labelled(label: &str, value: &str, max: usize) -> String {
    let head = format!("*{label}*\n");
    let room = max.saturating_sub(super::text::units(&head));
    format!("{head}{}", fit(value, room, escape))
}

pub fn slack(f: &Facts, summary: &str) -> Value {
    let mut blocks =
        vec![json!({"type": "section", "text": mrkdwn(fit(summary, SECTION_MAX, escape))})];
    let fields: Vec<Value> = details(f)
        .into_iter()
        .take(FIELDS_MAX)
        .map(|(label, value)| mrkdwn(labelled(label, &value, FIELD_MAX)))
        .collect();
    blocks.push(json!({"type": "section", "fields": fields}));
    for (label, value) in sections(f) {
        blocks
            .push(json!({"type": "section", "text": mrkdwn(labelled(label, &value, SECTION_MAX))}));
    }
    if !f.evidence.is_empty() {
        let lines: Vec<String> = f
            .evidence
            .iter()
            .map(|e| {
                let path = fit(&e.path, PATH_MAX, escape);
                match (&e.link, path.ends_with(super::text::ELLIPSIS)) {
                    (Some(link), false) => format!("• <{link}|{path}>"),
                    _ => format!("• {path}"),
                }
            })
            .collect();
        let head = "*Evidence*\n";
        let list = lines_within(&lines, SECTION_MAX - super::text::units(head));
        blocks.push(json!({"type": "section", "text": mrkdwn(format!("{head}{list}"))}));
    }
    blocks.push(
        json!({"type": "context", "elements": [mrkdwn(fit(&footer(f), SECTION_MAX, escape))]}),
    );
    blocks.truncate(BLOCKS_MAX);
    json!({"text": fit(summary, SECTION_MAX, escape), "blocks": blocks})
}

pub fn mattermost(f: &Facts, summary: &str) -> Value {
    let mut text = format!("#### {}\n", fit(summary, 1000, md_escape));
    let details: Vec<String> = details(f)
        .into_iter()
        .map(|(label, value)| format!("**{label}:** {}", fit(&value, 300, md_escape)))
        .collect();
    text.push_str(&details.join(" · "));
    for (label, value) in sections(f) {
        text.push_str(&format!(
            "\n**{label}:** {}",
            fit(&value, SECTION_MAX, md_escape)
        ));
    }
    if !f.evidence.is_empty() {
        let lines: Vec<String> = f
            .evidence
            .iter()
            .map(|e| markdown_item(e, PATH_MAX, md_escape))
            .collect();
        text.push_str(&format!(
            "\n**Evidence:**\n{}",
            lines_within(&lines, SECTION_MAX)
        ));
    }
    text.push_str(&format!("\n_{}_", fit(&footer(f), SECTION_MAX, md_escape)));
    json!({"text": cut(&text, MATTERMOST_MAX)})
}
