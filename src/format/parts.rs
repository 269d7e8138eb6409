//! What Slack, Mattermost, Discord and Teams messages show alike: the
//! labelled details of an event, the footer line, and an evidence path as a
//! Markdown list item. The renderers fit them to their own limits.

use super::facts::{Evidence, Facts};
use super::text::{ELLIPSIS, fit};

/// The details every chat format shows, label and value.
pub(super) fn details(f: &Facts) -> Vec<(&'static str, String)> {
    let mut out = vec![("Event", f.event_type.clone())];
    if let Some(stage) = &f.stage {
        out.push(("Stage", stage.clone()));
    }
    if let Some(status) = f.status_text() {
        out.push(("Status", status));
    }
    let spec = match &f.branch {
        Some(branch) => format!("{} ({branch})", f.spec),
        None => f.spec.clone(),
    };
    out.push(("SPEC", spec));
    if let Some(attempt) = f.attempt_text() {
        out.push(("Attempt", attempt));
    }
    if let Some(consensus) = &f.consensus {
        out.push(("Consensus", consensus.clone()));
    }
    out
}

/// The footer line: who sent it, the sequence and the time.
pub(super) fn footer(f: &Facts) -> String {
    let mut parts = vec!["spec-notify".to_string()];
    if let Some(seq) = f.sequence {
        parts.push(format!("sequence {seq}"));
    }
    if let Some(at) = &f.emitted_at {
        parts.push(at.clone());
    }
    parts.join(" · ")
}

/// `• [path](link)`, or `• path` without a link or when the path was cut;
/// the path written as `escape` says (link text is Markdown too).
pub(super) fn markdown_item(
    e: &Evidence,
    path_max: usize,
    escape: fn(char) -> Option<&'static str>,
) -> String {
    let text = fit(&e.path, path_max, escape);
    match (&e.link, text.ends_with(ELLIPSIS)) {
        (Some(link), false) => format!("• [{text}]({link})"),
        _ => format!("• {text}"),
    }
}
