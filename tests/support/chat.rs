//! Loopback stand-ins for chat platforms' incoming webhooks (Slack,
//! Mattermost, Discord, Teams Workflows) that enforce each platform's
//! documented body rules — content type, required fields, sizes and counts
//! — and answer the way the platform does: its success status, or its
//! error status and body (`no_text`, Discord's `50006`/`50035`, ...).
//! Every request is recorded with the rules it broke.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use spec_notify::http_server::{Action, Request, Server};

use super::receiver::Recorded;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Slack,
    Mattermost,
    Discord,
    Teams,
}

impl Platform {
    pub const ALL: [Platform; 4] = [
        Platform::Slack,
        Platform::Mattermost,
        Platform::Discord,
        Platform::Teams,
    ];

    /// The `format` value for this platform.
    pub fn format(self) -> &'static str {
        match self {
            Platform::Slack => "slack",
            Platform::Mattermost => "mattermost",
            Platform::Discord => "discord",
            Platform::Teams => "teams",
        }
    }

    /// A webhook path shaped like the platform's (the last part is the key).
    fn path(self) -> &'static str {
        match self {
            Platform::Slack => "/services/T0001/B0001/slackkey123",
            Platform::Mattermost => "/hooks/mattermostkey123",
            Platform::Discord => "/api/webhooks/1234/discordtoken123",
            Platform::Teams => "/workflows/abc/triggers/manual/paths/invoke",
        }
    }
}

/// One request and the rules it broke (empty: accepted).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub request: Recorded,
    pub problems: Vec<String>,
}

/// A scripted answer: status, headers, body.
type Forced = (u16, Vec<(String, String)>, String);

/// A platform's webhook on 127.0.0.1.
pub struct ChatReceiver {
    platform: Platform,
    url: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    /// An answer to give instead of the platform's (e.g. Slack's 404 `no_service`).
    forced: Arc<Mutex<Option<Forced>>>,
    _server: Server,
}

impl ChatReceiver {
    pub fn start(platform: Platform) -> ChatReceiver {
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let forced: Arc<Mutex<Option<Forced>>> = Arc::new(Mutex::new(None));
        let (log, force) = (Arc::clone(&deliveries), Arc::clone(&forced));
        let server = Server::start("127.0.0.1:0", move |request: &Request| {
            let problems = match request.path == platform.path() {
                true => check(platform, request),
                false => vec![format!("unknown webhook path {}", request.path)],
            };
            let forced = force.lock().unwrap().clone();
            log.lock().unwrap().push(Delivery {
                request: Recorded {
                    method: request.method.clone(),
                    path: request.path.clone(),
                    headers: request.headers.clone(),
                    body: request.body.clone(),
                    received_at_ms: request.received_at_ms,
                },
                problems: problems.clone(),
            });
            match forced {
                Some((status, headers, body)) => {
                    Action::Respond(status, headers, body.into_bytes())
                }
                None => answer(platform, &problems),
            }
        })
        .expect("bind a loopback port for the chat receiver");
        ChatReceiver {
            platform,
            url: format!("http://{}{}", server.addr(), platform.path()),
            deliveries,
            forced,
            _server: server,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// Answers every request with this status, headers and body from now on
    /// (the requests are still checked and recorded).
    pub fn force(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        *self.forced.lock().unwrap() = Some((status, headers, body.to_string()));
    }

    /// Back to the platform's own answers.
    pub fn unforce(&self) {
        *self.forced.lock().unwrap() = None;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }
}

/// The platform's answer: its success, or its error for the first problem.
fn answer(platform: Platform, problems: &[String]) -> Action {
    let Some(problem) = problems.first() else {
        return match platform {
            Platform::Slack | Platform::Mattermost => {
                Action::Respond(200, Vec::new(), b"ok".to_vec())
            }
            Platform::Discord => Action::Respond(204, Vec::new(), Vec::new()),
            Platform::Teams => Action::Respond(202, Vec::new(), Vec::new()),
        };
    };
    let json = vec![("Content-Type".to_string(), "application/json".to_string())];
    let body = match platform {
        Platform::Slack => {
            let token = if problem.contains("no text") {
                "no_text"
            } else {
                "invalid_blocks"
            };
            return Action::Respond(400, Vec::new(), token.as_bytes().to_vec());
        }
        Platform::Mattermost => serde_json::json!({
            "id": "web.incoming_webhook.text.app_error",
            "message": problem,
            "status_code": 400,
        }),
        Platform::Discord => {
            let code = if problem.contains("empty message") {
                50006
            } else {
                50035
            };
            serde_json::json!({"message": problem, "code": code})
        }
        Platform::Teams => {
            serde_json::json!({"error": {"code": "InvalidRequestContent", "message": problem}})
        }
    };
    Action::Respond(400, json, body.to_string().into_bytes())
}

/// Characters as the strictest platform counts them (UTF-16 units are
/// never fewer than code points).
fn len(s: &str) -> usize {
    s.encode_utf16().count().max(s.chars().count())
}

/// Every documented rule `request` breaks.
fn check(platform: Platform, request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method != "POST" {
        problems.push(format!("method {} (webhooks take POST)", request.method));
    }
    let content_type = request.header("content-type").unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        problems.push(format!(
            "content type `{content_type}` is not application/json"
        ));
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(_) => return vec!["invalid_payload: the body is not a JSON object".into()],
        Err(e) => return vec![format!("invalid_payload: the body is not JSON ({e})")],
    };
    match platform {
        Platform::Slack => slack(&body, &mut problems),
        Platform::Mattermost => mattermost(&body, &mut problems),
        Platform::Discord => discord(&body, &mut problems),
        Platform::Teams => teams(&body, request.body.len(), &mut problems),
    }
    problems
}

fn text_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// A Block Kit text object: `mrkdwn` or `plain_text`, 1..=max characters.
fn text_object(v: &Value, max: usize, at: &str, problems: &mut Vec<String>) {
    match (v["type"].as_str(), v["text"].as_str()) {
        (Some("mrkdwn" | "plain_text"), Some(t)) if (1..=max).contains(&len(t)) => {}
        (Some("mrkdwn" | "plain_text"), Some(t)) => {
            problems.push(format!("{at}: text is {} characters (1 to {max})", len(t)))
        }
        _ => problems.push(format!("{at}: not a text object: {v}")),
    }
}

/// Slack incoming webhooks and Block Kit (api.slack.com/reference/block-kit).
fn slack(body: &Value, problems: &mut Vec<String>) {
    let text = body.get("text").and_then(text_of).unwrap_or_default();
    let blocks = body.get("blocks").and_then(Value::as_array);
    if text.trim().is_empty()
        && blocks.is_none_or(Vec::is_empty)
        && body.get("attachments").is_none()
    {
        problems.push("no text: a message needs `text`, `blocks` or `attachments`".into());
    }
    if len(text) > 40_000 {
        problems.push(format!("text is {} characters (at most 40,000)", len(text)));
    }
    let Some(blocks) = blocks else { return };
    if blocks.len() > 50 {
        problems.push(format!("{} blocks (at most 50)", blocks.len()));
    }
    for (i, block) in blocks.iter().enumerate() {
        let at = format!("blocks[{i}]");
        if block
            .get("block_id")
            .and_then(Value::as_str)
            .is_some_and(|id| len(id) > 255)
        {
            problems.push(format!("{at}: block_id over 255 characters"));
        }
        match block["type"].as_str() {
            Some("section") => {
                let fields = block.get("fields").and_then(Value::as_array);
                if block.get("text").is_none() && fields.is_none() {
                    problems.push(format!("{at}: a section needs `text` or `fields`"));
                }
                if let Some(text) = block.get("text") {
                    text_object(text, 3000, &at, problems);
                }
                if let Some(fields) = fields {
                    if fields.is_empty() || fields.len() > 10 {
                        problems.push(format!("{at}: {} fields (1 to 10)", fields.len()));
                    }
                    for (j, f) in fields.iter().enumerate() {
                        text_object(f, 2000, &format!("{at}.fields[{j}]"), problems);
                    }
                }
            }
            Some("context") => {
                let elements = block["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 10 {
                    problems.push(format!(
                        "{at}: {} context elements (1 to 10)",
                        elements.len()
                    ));
                }
                for (j, e) in elements.iter().enumerate() {
                    text_object(e, 3000, &format!("{at}.elements[{j}]"), problems);
                }
            }
            Some("header") => match block["text"]["type"].as_str() {
                Some("plain_text") => text_object(&block["text"], 150, &at, problems),
                _ => problems.push(format!("{at}: a header's text must be plain_text")),
            },
            Some("divider") => {}
            other => problems.push(format!("{at}: unknown block type {other:?}")),
        }
    }
}

/// Mattermost incoming webhooks: `text` (or `attachments`), at most 16,383 characters.
fn mattermost(body: &Value, problems: &mut Vec<String>) {
    let text = body.get("text").and_then(text_of).unwrap_or_default();
    if text.trim().is_empty() && body.get("attachments").is_none() {
        problems.push("no text: `text` or `attachments` is required".into());
    }
    if len(text) > 16_383 {
        problems.push(format!("text is {} characters (at most 16,383)", len(text)));
    }
}

/// Discord Execute Webhook and the embed limits.
fn discord(body: &Value, problems: &mut Vec<String>) {
    let content = body.get("content").and_then(text_of).unwrap_or_default();
    let embeds = body
        .get("embeds")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if content.trim().is_empty() && embeds.is_empty() {
        problems.push("Cannot send an empty message".into());
    }
    if len(content) > 2000 {
        problems.push(format!(
            "content is {} characters (at most 2,000)",
            len(content)
        ));
    }
    if embeds.len() > 10 {
        problems.push(format!("{} embeds (at most 10)", embeds.len()));
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        let at = format!("embeds[{i}]");
        let mut limit =
            |name: &str, value: Option<&str>, max: usize, problems: &mut Vec<String>| {
                if let Some(v) = value {
                    total += len(v);
                    if len(v) > max {
                        problems.push(format!(
                            "{at}.{name} is {} characters (at most {max})",
                            len(v)
                        ));
                    }
                }
            };
        limit("title", embed["title"].as_str(), 256, problems);
        limit("description", embed["description"].as_str(), 4096, problems);
        limit(
            "footer.text",
            embed["footer"]["text"].as_str(),
            2048,
            problems,
        );
        limit(
            "author.name",
            embed["author"]["name"].as_str(),
            256,
            problems,
        );
        let fields = embed["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            problems.push(format!("{at}: {} fields (at most 25)", fields.len()));
        }
        for (j, f) in fields.iter().enumerate() {
            let (name, value) = (f["name"].as_str(), f["value"].as_str());
            if name.is_none_or(|n| n.trim().is_empty()) || value.is_none_or(|v| v.trim().is_empty())
            {
                problems.push(format!("{at}.fields[{j}]: name and value are required"));
            }
            limit(&format!("fields[{j}].name"), name, 256, problems);
            limit(&format!("fields[{j}].value"), value, 1024, problems);
        }
        if let Some(color) = embed.get("color")
            && color.as_u64().is_none_or(|c| c > 0xFF_FFFF)
        {
            problems.push(format!("{at}.color {color} is not an RGB integer"));
        }
        if let Some(ts) = embed.get("timestamp") {
            let iso = ts.as_str().is_some_and(|s| {
                let b = s.as_bytes();
                b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':'
            });
            if !iso {
                problems.push(format!("{at}.timestamp {ts} is not ISO 8601"));
            }
        }
    }
    if total > 6000 {
        problems.push(format!(
            "embeds hold {total} characters together (at most 6,000)"
        ));
    }
    if let Some(mentions) = body.get("allowed_mentions") {
        let ok = mentions["parse"].as_array().is_some_and(|p| {
            p.iter()
                .all(|v| matches!(v.as_str(), Some("roles" | "users" | "everyone")))
        });
        if !ok {
            problems.push(format!("allowed_mentions {mentions} is malformed"));
        }
    }
}

/// Teams Workflows "Post to a channel when a webhook request is received":
/// a message whose attachments are Adaptive Cards, at most 28 KB.
fn teams(body: &Value, bytes: usize, problems: &mut Vec<String>) {
    if bytes > 28 * 1024 {
        problems.push(format!("the message is {bytes} bytes (at most 28 KB)"));
    }
    if body["type"] != "message" {
        problems.push(format!("`type` is {} (must be \"message\")", body["type"]));
    }
    let attachments = body["attachments"].as_array().cloned().unwrap_or_default();
    if attachments.is_empty() {
        problems.push("`attachments` must hold the card".into());
    }
    for (i, a) in attachments.iter().enumerate() {
        if a["contentType"] != "application/vnd.microsoft.card.adaptive" {
            problems.push(format!(
                "attachments[{i}].contentType is {}",
                a["contentType"]
            ));
        }
        let card = &a["content"];
        if card["type"] != "AdaptiveCard"
            || !card["version"].is_string()
            || !card["body"].is_array()
        {
            problems.push(format!(
                "attachments[{i}].content is not an Adaptive Card: {card}"
            ));
        }
    }
}
