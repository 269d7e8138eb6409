//! What Slack, Mattermost, Discord and Teams messages show alike: the
//! labelled details of an event (an alert's own), the longer sections
//! (task; an alert's hint and fix), the footer line, and an evidence path
//! as a Markdown list item. The renderers fit them to their own limits.

use super::facts::{AlertFacts, Evidence, Facts, Tone};
use super::text::{ELLIPSIS, fit};

/// The details every chat format shows, label and value.
pub(super) fn details(f: &Facts) -> Vec<(&'static str, String)> {
    if let Some(alert) = &f.alert {
        return alert_details(f, alert);
    }
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

/// An alert's details: what, where, how many, which SPECs, the rule, since when.
fn alert_details(f: &Facts, a: &AlertFacts) -> Vec<(&'static str, String)> {
    let status = match (f.test, a.resolved()) {
        (true, _) => "🧪 TEST".to_string(),
        (false, true) => format!("{} RESOLVED", Tone::Success.icon()),
        (false, false) => format!("{} FIRING", Tone::Alert.icon()),
    };
    let mut out = vec![
        ("Event", f.event_type.clone()),
        ("Alert", status),
        ("Condition", a.condition.clone()),
        ("Subscription", a.about().to_string()),
    ];
    if let Some(count) = a.count {
        out.push(("Count", count.to_string()));
    }
    if let Some(specs) = a.specs_text() {
        out.push(("SPECs", specs));
    }
    out.push(("Rule", a.rule.clone()));
    if let Some(since) = &a.since {
        out.push(("Since", since.clone()));
    }
    out
}

/// The longer texts a message shows under its details, label and value:
/// the task of a task event; an alert's hint and the command that fixes it.
pub(super) fn sections(f: &Facts) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(task) = f.task_text() {
        out.push(("Task", task));
    }
    if let Some(alert) = &f.alert {
        if let Some(hint) = &alert.hint {
            out.push(("Hint", hint.clone()));
        }
        if let Some(command) = &alert.command {
            out.push(("Fix", command.clone()));
        }
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
