//! Discord bodies: `content` (the summary, at most 2,000 characters) and
//! one embed (title 256, description 4,096, fields of 256/1,024, footer
//! 2,048, all embed text together 6,000), with `allowed_mentions` empty so
//! an `@everyone` in a task title pings nobody. Discord renders Markdown in
//! the content, the embed title, description and field values (masked
//! links `[text](url)` included), so every value there has the characters
//! of its syntax backslash-escaped, as Discord documents: links, images,
//! autolinks (`<…>`, and the `https:` a bare URL needs), mentions (`@`,
//! `<@id>`, `<#id>`), custom emoji and formatting show as typed. The footer
//! is plain text on Discord.

use serde_json::{Value, json};

use super::facts::{Facts, Tone};
use super::parts::{details, footer, markdown_item, sections};
use super::text::{cut, fit, lines_within, units};

pub const CONTENT_MAX: usize = 2000;
pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 4096;
pub const FIELD_NAME_MAX: usize = 256;
pub const FIELD_VALUE_MAX: usize = 1024;
pub const FOOTER_MAX: usize = 2048;
pub const EMBED_TOTAL_MAX: usize = 6000;
/// What this renderer gives each part, so the embed stays under its total
/// whatever the event holds (checked at compile time below).
const DESCRIPTION_BUDGET: usize = 3000;
const FIELD_NAME_BUDGET: usize = 16;
const FIELD_VALUE_BUDGET: usize = 300;
const FIELDS_BUDGET: usize = 6;
const FOOTER_BUDGET: usize = 200;
const _: () = assert!(
    TITLE_MAX
        + DESCRIPTION_BUDGET
        + FIELDS_BUDGET * (FIELD_NAME_BUDGET + FIELD_VALUE_BUDGET)
        + FOOTER_BUDGET
        <= EMBED_TOTAL_MAX
        && DESCRIPTION_BUDGET <= DESCRIPTION_MAX
        && FIELD_NAME_BUDGET <= FIELD_NAME_MAX
        && FIELD_VALUE_BUDGET <= FIELD_VALUE_MAX
        && FOOTER_BUDGET <= FOOTER_MAX
);

/// Discord Markdown: a backslash before each character of its syntax.
fn escape(c: char) -> Option<&'static str> {
    match c {
        '\\' => Some("\\\\"),
        '*' => Some("\\*"),
        '_' => Some("\\_"),
        '~' => Some("\\~"),
        '`' => Some("\\`"),
        '|' => Some("\\|"),
        '[' => Some("\\["),
        ']' => Some("\\]"),
        '(' => Some("\\("),
        ')' => Some("\\)"),
        '<' => Some("\\<"),
        '>' => Some("\\>"),
        '!' => Some("\\!"),
        '@' => Some("\\@"),
        ':' => Some("\\:"),
        '#' => Some("\\#"),
        _ => None,
    }
}

fn color(tone: Tone) -> u32 {
    match tone {
        Tone::Success => 0x2EB67D,
        Tone::Failure => 0xE01E5A,
        Tone::Halt | Tone::Alert => 0xECB22E,
        Tone::Info | Tone::Test => 0x36C5F0,
    }
}

pub fn discord(f: &Facts, summary: &str) -> Value {
    let mut description = Vec::new();
    let sections = sections(f);
    // 1,500 units for a task; an alert's hint and fix share them.
    let each = 1500 / sections.len().max(1);
    for (label, value) in &sections {
        description.push(format!("**{label}:** {}", fit(value, each, escape)));
    }
    if !f.evidence.is_empty() {
        let lines: Vec<String> = f
            .evidence
            .iter()
            .map(|e| markdown_item(e, 300, escape))
            .collect();
        let used: usize = description.iter().map(|d| units(d) + 1).sum();
        let head = "**Evidence:**\n";
        let room = DESCRIPTION_BUDGET.saturating_sub(used + units(head));
        description.push(format!("{head}{}", lines_within(&lines, room)));
    }
    let fields: Vec<Value> = details(f)
        .into_iter()
        .filter(|(label, _)| *label != "Event")
        .take(FIELDS_BUDGET)
        .map(|(name, value)| {
            json!({"name": cut(name, FIELD_NAME_BUDGET), "value": fit(&value, FIELD_VALUE_BUDGET, escape), "inline": true})
        })
        .collect();
    let mut embed = json!({
        "title": fit(&format!("{} · {}", f.spec, f.event_type), TITLE_MAX, escape),
        "color": color(f.tone()),
        "fields": fields,
        "footer": {"text": cut(&footer(f), FOOTER_BUDGET)},
    });
    if !description.is_empty() {
        embed["description"] = json!(cut(&description.join("\n"), DESCRIPTION_BUDGET));
    }
    if let Some(at) = f
        .emitted_at
        .as_deref()
        .filter(|at| at.parse::<jiff::Timestamp>().is_ok())
    {
        embed["timestamp"] = json!(at);
    }
    json!({
        "content": fit(summary, CONTENT_MAX, escape),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}
