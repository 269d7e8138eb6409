//! Microsoft Teams bodies for Workflows (Power Automate) webhooks: a
//! `message` whose one attachment is an Adaptive Card
//! (`application/vnd.microsoft.card.adaptive`, schema 1.4): the summary in
//! a coloured TextBlock, a FactSet of details, the task and the evidence.
//! Each part is capped so the whole message stays well under Teams' 28 KB.

use serde_json::{Value, json};

use super::facts::{Facts, Tone};
use super::parts::{details, footer, markdown_item};
use super::text::{cut, lines_within};

pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
pub const CARD_VERSION: &str = "1.4";
const SUMMARY_MAX: usize = 1000;
const FACT_MAX: usize = 300;
const BLOCK_MAX: usize = 2000;

fn color(tone: Tone) -> &'static str {
    match tone {
        Tone::Success => "Good",
        Tone::Failure => "Attention",
        Tone::Halt | Tone::Alert => "Warning",
        Tone::Info | Tone::Test => "Accent",
    }
}

fn text_block(text: String) -> Value {
    json!({"type": "TextBlock", "text": text, "wrap": true})
}

pub fn teams(f: &Facts, summary: &str) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": cut(summary, SUMMARY_MAX),
        "wrap": true,
        "weight": "Bolder",
        "size": "Medium",
        "color": color(f.tone()),
    })];
    let facts: Vec<Value> = details(f)
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": cut(&value, FACT_MAX)}))
        .collect();
    body.push(json!({"type": "FactSet", "facts": facts}));
    if let Some(task) = f.task_text() {
        body.push(text_block(format!("**Task:** {}", cut(&task, BLOCK_MAX))));
    }
    if !f.evidence.is_empty() {
        let lines: Vec<String> = f
            .evidence
            .iter()
            .map(|e| markdown_item(e, 300).replacen('•', "-", 1))
            .collect();
        body.push(text_block(format!(
            "**Evidence:**\n\n{}",
            lines_within(&lines, BLOCK_MAX)
        )));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": footer(f),
        "wrap": true,
        "isSubtle": true,
        "size": "Small",
    }));
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
