//! Microsoft Teams bodies for Workflows (Power Automate) webhooks: a
//! `message` whose one attachment is an Adaptive Card
//! (`application/vnd.microsoft.card.adaptive`, schema 1.4): the summary in
//! a coloured line, the labelled details, the task and the evidence.
//! Each part is capped so the whole message stays well under Teams' 28 KB.
//!
//! Teams renders Markdown in a TextBlock and a FactSet, and its clients
//! disagree on backslash escapes; a `TextRun` of a `RichTextBlock` is never
//! Markdown. So every text that holds event values is a TextRun, and the
//! only links are the evidence links spec-notify builds, as the TextRun's
//! `Action.OpenUrl`. TextBlocks hold only spec-notify's own words.

use serde_json::{Value, json};

use super::facts::{Facts, Tone};
use super::parts::{details, footer, sections};
use super::text::{ELLIPSIS, cut, lines_within};

pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
pub const CARD_VERSION: &str = "1.4";
const SUMMARY_MAX: usize = 1000;
const FACT_MAX: usize = 300;
const BLOCK_MAX: usize = 2000;
const PATH_MAX: usize = 300;
/// The evidence paths shown, all together (each line is an element of its own).
const EVIDENCE_MAX: usize = 1000;

fn color(tone: Tone) -> &'static str {
    match tone {
        Tone::Success => "Good",
        Tone::Failure => "Attention",
        Tone::Halt | Tone::Alert => "Warning",
        Tone::Info | Tone::Test => "Accent",
    }
}

/// A plain-text run (never Markdown).
fn run(text: &str) -> Value {
    json!({"type": "TextRun", "text": text})
}

fn bold(text: &str) -> Value {
    json!({"type": "TextRun", "text": text, "weight": "Bolder"})
}

fn rich(inlines: Vec<Value>) -> Value {
    json!({"type": "RichTextBlock", "inlines": inlines})
}

/// `Label: value` on a line of its own, the label bold.
fn labelled(label: &str, value: &str) -> Value {
    rich(vec![bold(&format!("{label}: ")), run(value)])
}

/// One evidence line: the path, a link under `evidence_base_url` when it
/// has one and was not cut.
fn evidence_line(path: &str, link: Option<&str>) -> Value {
    let text = cut(path, PATH_MAX);
    let mut line = run(&format!("• {text}"));
    if let (Some(link), false) = (link, text.ends_with(ELLIPSIS)) {
        line["selectAction"] = json!({"type": "Action.OpenUrl", "url": link});
    }
    rich(vec![line])
}

pub fn teams(f: &Facts, summary: &str) -> Value {
    let mut heading = run(&cut(summary, SUMMARY_MAX));
    heading["weight"] = json!("Bolder");
    heading["size"] = json!("Medium");
    heading["color"] = json!(color(f.tone()));
    let mut body = vec![rich(vec![heading])];
    for (label, value) in details(f) {
        body.push(labelled(label, &cut(&value, FACT_MAX)));
    }
    for (label, value) in sections(f) {
        body.push(labelled(label, &cut(&value, BLOCK_MAX)));
    }
    if !f.evidence.is_empty() {
        body.push(json!({"type": "TextBlock", "text": "**Evidence:**", "wrap": true}));
        // As many paths as fit in EVIDENCE_MAX characters; the last line says
        // how many did not.
        let paths: Vec<String> = f.evidence.iter().map(|e| cut(&e.path, PATH_MAX)).collect();
        let shown = lines_within(&paths, EVIDENCE_MAX);
        for (i, line) in shown.lines().enumerate() {
            match f.evidence.get(i).filter(|_| line == paths[i]) {
                Some(e) => body.push(evidence_line(&e.path, e.link.as_deref())),
                None => body.push(rich(vec![run(line)])),
            }
        }
    }
    let mut foot = run(&footer(f));
    foot["isSubtle"] = json!(true);
    foot["size"] = json!("Small");
    body.push(rich(vec![foot]));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": CARD_CONTENT_TYPE,
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": CARD_VERSION,
                "body": body,
                "msteams": {"width": "Full"},
            },
        }],
    })
}
