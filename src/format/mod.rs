//! Message formats: what a delivery's body is. `json` sends the envelope as
//! spooled; `slack`, `mattermost`, `discord` and `teams` render a short
//! human summary of it at send time (the job keeps the envelope, so replay
//! and a changed `format` just work), within each platform's documented
//! limits: long fields are cut with an ellipsis, never rejected. Event
//! values are inert on each platform: invisible formatting characters
//! (bidirectional controls, zero-width characters) are dropped, and each
//! renderer escapes what its platform's parser would turn into a link, an
//! image or a mention (or puts values where nothing is parsed); the only
//! links are the evidence links built under `evidence_base_url`. Alert
//! events (`spec-notify.alert.*`) render as alerts: what fires or
//! resolved, where, the SPECs, the hint and the fix (a `text` template does
//! not apply to them). Pure functions of the envelope bytes and the
//! subscription's settings.

mod discord;
mod facts;
mod parts;
mod slack;
mod teams;
mod template;
mod text;

use std::borrow::Cow;

pub use facts::Facts;
pub use template::{Template, placeholders};

/// A subscription's body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Slack,
    Mattermost,
    Discord,
    Teams,
}

impl Format {
    pub const NAMES: &[&str] = &["json", "slack", "mattermost", "discord", "teams"];
    const ALL: [Format; 5] = [
        Format::Json,
        Format::Slack,
        Format::Mattermost,
        Format::Discord,
        Format::Teams,
    ];

    pub fn parse(s: &str) -> Option<Format> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// A chat platform's message rather than the envelope.
    pub fn is_chat(self) -> bool {
        self != Format::Json
    }

    /// The platform's name, for messages; `None` for `json`.
    pub fn platform(self) -> Option<&'static str> {
        match self {
            Format::Json => None,
            Format::Slack => Some("Slack"),
            Format::Mattermost => Some("Mattermost"),
            Format::Discord => Some("Discord"),
            Format::Teams => Some("Teams"),
        }
    }

    /// The format a chat platform (as [`crate::url::chat_platform`] names
    /// it) takes.
    pub fn for_platform(platform: &str) -> Option<Format> {
        Self::ALL
            .into_iter()
            .find(|f| f.platform() == Some(platform))
    }
}

/// How a subscription's messages look.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Style {
    pub format: Format,
    /// The summary line's template; the default summary without one.
    pub text: Option<Template>,
    /// Evidence paths become links under this URL.
    pub evidence_base_url: Option<String>,
}

/// The body to send for an envelope: the envelope itself for `json`, else
/// the platform's message as compact JSON.
pub fn render<'a>(style: &Style, envelope: &'a [u8]) -> Cow<'a, [u8]> {
    let message: fn(&Facts, &str) -> serde_json::Value = match style.format {
        Format::Json => return Cow::Borrowed(envelope),
        Format::Slack => slack::slack,
        Format::Mattermost => slack::mattermost,
        Format::Discord => discord::discord,
        Format::Teams => teams::teams,
    };
    let facts = Facts::read(envelope, style.evidence_base_url.as_deref());
    // A template that renders blank for this event (`{{task.title}}` on a
    // stage event) falls back to the default line: platforms refuse empty
    // text. An alert always says its own line: templates are written for
    // pipeline events.
    let summary = style
        .text
        .as_ref()
        .filter(|_| facts.alert.is_none())
        .map(|template| template.render(&facts))
        .map(|line| text::visible(&line))
        .filter(|line| !line.trim().is_empty())
        .unwrap_or_else(|| facts.summary());
    Cow::Owned(
        serde_json::to_vec(&message(&facts, &summary)).expect("a JSON value always serialises"),
    )
}

#[cfg(test)]
mod tests;
