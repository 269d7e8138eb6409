use serde_json::{Value, json};

use super::text::units;
use super::*;

fn style(format: Format) -> Style {
    Style {
        format,
        text: None,
        evidence_base_url: Some("https://git.example/repo/blob/main".into()),
    }
}

/// An envelope with everything at its worst: a 10 kB non-ASCII title,
/// markup and mentions, control characters, 500 evidence paths.
fn heavy() -> Vec<u8> {
    let title = format!(
        "<!channel> @everyone & *bold* `code` Prüfung 日本語 🚀\n{}",
        "Ü".repeat(10_000)
    );
    let paths: Vec<String> = (0..500)
        .map(|i| format!("docs/evidence/{i}/<x>|y (z).log"))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": "1.0",
        "event": {"type": "spec-kit.task.completed", "status": "failure", "stage": "Implement", "idempotency_key": "k"},
        "spec": {"id": "SPEC-KIT-065", "branch": "feat/ü"},
        "pipeline": {"attempt": 2, "maxAttempts": 3},
        "consensus": {"status": "conflict"},
        "task": {"id": "T61", "title": title, "status": "Done"},
        "evidence": {"paths": paths},
        "sequence": 42,
        "emittedAt": "2026-11-23T18:50:01.123Z"
    }))
    .unwrap()
}

fn rendered(format: Format, envelope: &[u8]) -> Value {
    serde_json::from_slice(&render(&style(format), envelope)).unwrap()
}

fn str_units(v: &Value) -> usize {
    units(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
}

#[test]
fn json_is_the_envelope_unchanged() {
    let envelope = heavy();
    assert_eq!(&*render(&style(Format::Json), &envelope), &envelope[..]);
}

#[test]
fn slack_stays_within_block_kit_limits_and_escapes_markup() {
    let m = rendered(Format::Slack, &heavy());
    assert!(str_units(&m["text"]) <= slack::SECTION_MAX);
    let blocks = m["blocks"].as_array().unwrap();
    assert!(blocks.len() <= slack::BLOCKS_MAX);
    for block in blocks {
        if let Some(text) = block.get("text") {
            assert!(str_units(&text["text"]) <= slack::SECTION_MAX, "{block}");
        }
        if let Some(fields) = block.get("fields") {
            assert!(fields.as_array().unwrap().len() <= slack::FIELDS_MAX);
            for f in fields.as_array().unwrap() {
                assert!(str_units(&f["text"]) <= slack::FIELD_MAX);
            }
        }
    }
    let all = m.to_string();
    assert!(!all.contains("<!channel>"), "mention escaped");
    assert!(all.contains("&lt;!channel&gt;"), "{all}");
    assert!(
        all.contains("… and "),
        "evidence list says what did not fit"
    );
    assert!(all.contains("<https://git.example/repo/blob/main/docs/evidence/0/%3Cx%3E%7Cy%20%28z%29.log|docs/evidence/0/&lt;x&gt;|y (z).log>"), "{all}");
    assert!(all.contains("T61 — &lt;!channel&gt;"), "task shown: {all}");
}

#[test]
fn mattermost_is_one_markdown_text() {
    let m = rendered(Format::Mattermost, &heavy());
    assert_eq!(m.as_object().unwrap().len(), 1);
    assert!(str_units(&m["text"]) <= slack::MATTERMOST_MAX);
    assert!(m["text"].as_str().unwrap().starts_with(
        "#### ❌ SPEC-KIT-065\\: task T61 completed at Implement — FAILURE \\(attempt 2\\)"
    ));
    assert!(!m["text"].as_str().unwrap().contains("@everyone"));
}

#[test]
fn mattermost_values_mention_nobody_and_load_no_image() {
    let envelope = serde_json::to_vec(&json!({
        "event": {"type": "spec-kit.task.completed", "stage": "@here"},
        "spec": {"id": "S-1"},
        "task": {"id": "T1", "title": "@channel @all @here ![x](http://evil.example/p.png) [y](http://evil.example) \\[z](http://evil.example)"},
        "evidence": {"paths": ["@all/a.log"]},
        "emittedAt": "@all"
    }))
    .unwrap();
    let m = rendered(Format::Mattermost, &envelope);
    let text = m["text"].as_str().unwrap();
    // A link's target is not shown, so a mention there pings nobody.
    let shown = text.replace("(https://git.example/repo/blob/main/@all/a.log)", "");
    for mention in ["@channel", "@all", "@here"] {
        assert!(!shown.contains(mention), "{mention} pings: {text}");
    }
    assert!(text.contains("@\u{200B}channel"), "{text}");
    assert!(!text.contains("!["), "image syntax escaped: {text}");
    assert!(
        text.contains(
            r"\!\[x\]\(http\://evil\.example/p\.png\) \[y\]\(http\://evil\.example\) \\\[z\]"
        ),
        "{text}"
    );
    // The evidence link itself keeps its `@`; only its text is broken.
    assert!(
        text.contains("• [@\u{200B}all/a\\.log](https://git.example/repo/blob/main/@all/a.log)"),
        "{text}"
    );
}

/// An envelope whose every value is an attack on some chat platform's parser.
fn hostile() -> Vec<u8> {
    let attack = "<!channel> <!here> <!all> see <https://evil.example|runbook> \
                  [click](https://evil.example) ![img](https://evil.example/p.png) \
                  <https://evil.example/auto> @channel @here @all @everyone <@U123> <#C1> \
                  <:e:123> ~town-square #tag evil\u{202E}txt.exe \u{2066}x\u{2069} \
                  zero\u{200B}width\u{2060}joined\u{FEFF}";
    serde_json::to_vec(&json!({
        "event": {"type": "spec-kit.task.completed", "stage": attack, "status": attack},
        "spec": {"id": attack, "branch": attack},
        "consensus": {"status": attack},
        "task": {"id": attack, "title": attack, "status": attack},
        "evidence": {"paths": [attack, "docs/plan.log"]},
        "emittedAt": attack
    }))
    .unwrap()
}

#[test]
fn no_format_carries_invisible_or_reordering_characters() {
    for format in [
        Format::Slack,
        Format::Mattermost,
        Format::Discord,
        Format::Teams,
    ] {
        let all = rendered(format, &hostile()).to_string();
        let json_escapes = ["\\u202e", "\\u2066", "\\u2069", "\\u2060", "\\ufeff"];
        for c in ['\u{202E}', '\u{2066}', '\u{2069}', '\u{2060}', '\u{FEFF}'] {
            assert!(!all.contains(c), "{format:?} carries {c:?}: {all}");
        }
        for e in json_escapes {
            assert!(!all.to_lowercase().contains(e), "{format:?}: {all}");
        }
        // The only zero-width space is Mattermost's own, after an `@`.
        let zw = all.matches('\u{200B}').count();
        let after_at = all.matches("@\u{200B}").count();
        assert_eq!(
            zw,
            if format == Format::Mattermost {
                after_at
            } else {
                0
            },
            "{format:?}"
        );
        assert!(
            all.contains("eviltxt.exe") || all.contains(r"eviltxt\\.exe"),
            "{format:?}: {all}"
        );
    }
}

#[test]
fn slack_values_cannot_build_links_or_mentions() {
    let all = rendered(Format::Slack, &hostile()).to_string();
    // In mrkdwn only `<…>` makes links and special mentions.
    let opened: Vec<&str> = all.match_indices('<').map(|(i, _)| &all[i..]).collect();
    for o in opened {
        assert!(o.starts_with("<https://git.example/repo/blob/main/"), "{o}");
    }
    assert!(all.contains("&lt;!channel&gt;"), "{all}");
}

#[test]
fn teams_puts_values_only_in_plain_text_runs() {
    let m = rendered(Format::Teams, &hostile());
    let body = m["attachments"][0]["content"]["body"].as_array().unwrap();
    for element in body {
        if element["type"] == "TextBlock" {
            assert_eq!(
                element["text"], "**Evidence:**",
                "only our words are Markdown"
            );
        } else {
            assert_eq!(element["type"], "RichTextBlock", "{element}");
            for run in element["inlines"].as_array().unwrap() {
                assert_eq!(run["type"], "TextRun");
                if let Some(action) = run.get("selectAction") {
                    assert!(
                        action["url"]
                            .as_str()
                            .unwrap()
                            .starts_with("https://git.example/repo/blob/main/"),
                        "{action}"
                    );
                }
            }
        }
    }
}

#[test]
fn discord_stays_within_embed_limits_and_pings_nobody() {
    let m = rendered(Format::Discord, &heavy());
    assert!(str_units(&m["content"]) <= discord::CONTENT_MAX);
    assert_eq!(m["allowed_mentions"], json!({"parse": []}));
    let embed = &m["embeds"][0];
    let mut total = str_units(&embed["title"])
        + str_units(&embed["description"])
        + str_units(&embed["footer"]["text"]);
    assert!(str_units(&embed["title"]) <= discord::TITLE_MAX);
    assert!(str_units(&embed["description"]) <= discord::DESCRIPTION_MAX);
    for field in embed["fields"].as_array().unwrap() {
        assert!(str_units(&field["name"]) <= discord::FIELD_NAME_MAX);
        assert!((1..=discord::FIELD_VALUE_MAX).contains(&str_units(&field["value"])));
        total += str_units(&field["name"]) + str_units(&field["value"]);
    }
    assert!(total <= discord::EMBED_TOTAL_MAX, "{total}");
    assert_eq!(embed["color"], 0xE01E5A);
    assert_eq!(embed["timestamp"], "2026-11-23T18:50:01.123Z");
}

#[test]
fn teams_is_an_adaptive_card_message_under_28_kb() {
    let envelope = heavy();
    let bytes = render(&style(Format::Teams), &envelope);
    assert!(bytes.len() < 28 * 1024, "{}", bytes.len());
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(m["type"], "message");
    let attachment = &m["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(attachment["content"]["type"], "AdaptiveCard");
    assert_eq!(
        attachment["content"]["body"][0]["inlines"][0]["color"],
        "Attention"
    );
}

#[test]
fn a_template_replaces_the_summary_line() {
    let mut s = style(Format::Slack);
    s.text = Some(Template::parse("{{event.icon}} {{spec.id}} finished {{task.id}}").unwrap());
    let m: Value = serde_json::from_slice(&render(&s, &heavy())).unwrap();
    assert_eq!(m["text"], "❌ SPEC-KIT-065 finished T61");
}

#[test]
fn a_template_that_renders_blank_falls_back_to_the_default_line() {
    let mut s = style(Format::Slack);
    s.text = Some(Template::parse(" {{task.title}} ").unwrap());
    let stage = br#"{"event": {"type": "spec-auto.stage.completed", "stage": "Plan", "status": "success"}, "spec": {"id": "S-1"}}"#;
    let m: Value = serde_json::from_slice(&render(&s, stage)).unwrap();
    assert_eq!(m["text"], "✅ S-1: Plan stage completed — success");
}

#[test]
fn anything_renders_even_a_body_that_is_not_an_envelope() {
    for format in [
        Format::Slack,
        Format::Mattermost,
        Format::Discord,
        Format::Teams,
    ] {
        for body in [&b""[..], b"null", b"[1]", b"{\"event\": 3}"] {
            let m = rendered(format, body);
            assert!(m.is_object(), "{format:?}");
        }
    }
}

#[test]
fn names_round_trip() {
    for name in Format::NAMES {
        assert_eq!(Format::parse(name).unwrap().as_str(), *name);
    }
    assert_eq!(Format::parse("Slack"), None);
    assert_eq!(Format::for_platform("Discord"), Some(Format::Discord));
}

/// An alert whose values carry markup, mentions and a huge hint: what a
/// failing endpoint's answer or a hostile subscription of another team
/// could put there.
fn hostile_alert() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": "1.0",
        "event": {"type": "spec-notify.alert.firing", "idempotency_key": "k"},
        "spec": {"id": "spec-notify.alerts"},
        "alert": {
            "status": "firing", "rule": "oncall", "condition": "circuit-open",
            "subscription": "hook", "count": 12,
            "specs": [{"spec": "SPEC-KIT-065", "count": 12}],
            "summary": "circuit open on hook (<!channel> @everyone [x](http://evil.example) ![i](http://evil.example/p.png))",
            "hint": format!("latest: <!here> @here {}", "Ü".repeat(10_000)),
            "command": "spec-notify resume hook",
            "since": "2026-11-23T18:50:01.123Z", "repeat": 0
        },
        "sequence": 1,
        "emittedAt": "2026-11-23T18:50:02.000Z"
    }))
    .unwrap()
}

#[test]
fn alerts_render_readably_and_inertly_on_every_platform() {
    let envelope = hostile_alert();
    for format in [
        Format::Slack,
        Format::Mattermost,
        Format::Discord,
        Format::Teams,
    ] {
        let m = rendered(format, &envelope);
        let all = m.to_string();
        for needle in [
            "FIRING",
            "circuit-open",
            "oncall",
            "SPEC-KIT-065",
            "resume hook",
        ] {
            assert!(all.contains(needle), "{format:?} lacks {needle}: {all}");
        }
        // Teams shows values as plain TextRuns: nothing there is parsed.
        if format != Format::Teams {
            assert!(
                !all.contains("<!channel>") && !all.contains("<!here>"),
                "{format:?}: {all}"
            );
        }
        // Slack's mrkdwn and Teams' TextRuns parse no Markdown links.
        if matches!(format, Format::Mattermost | Format::Discord) {
            assert!(
                !all.contains("](http://evil"),
                "{format:?} made a link: {all}"
            );
        }
    }
    let slack = rendered(Format::Slack, &envelope);
    assert!(str_units(&slack["text"]) <= slack::SECTION_MAX);
    for block in slack["blocks"].as_array().unwrap() {
        if let Some(text) = block.get("text") {
            assert!(str_units(&text["text"]) <= slack::SECTION_MAX, "{block}");
        }
    }
    let text = slack.to_string();
    assert!(text.contains("*Fix*\\nspec-notify resume hook"), "{text}");
    assert!(text.contains("*Hint*\\nlatest: &lt;!here&gt;"), "{text}");
    let mattermost = rendered(Format::Mattermost, &envelope);
    assert!(!mattermost["text"].as_str().unwrap().contains("@everyone"));
    let discord = rendered(Format::Discord, &envelope);
    assert_eq!(discord["allowed_mentions"]["parse"], json!([]));
    assert!(str_units(&discord["embeds"][0]["description"]) <= 3000);
    let resolved = String::from_utf8(envelope)
        .unwrap()
        .replace("\"firing\"", "\"resolved\"")
        .replace("alert.firing", "alert.resolved");
    let teams = rendered(Format::Teams, resolved.as_bytes());
    assert!(
        teams
            .to_string()
            .contains("✅ RESOLVED: circuit-open on hook (rule oncall)")
    );
}

#[test]
fn a_text_template_does_not_apply_to_alerts() {
    let style = Style {
        format: Format::Slack,
        text: Some(Template::parse("{{spec.id}} did {{event.type}}").unwrap()),
        evidence_base_url: None,
    };
    let m: Value = serde_json::from_slice(&render(&style, &hostile_alert())).unwrap();
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .starts_with("⚠️ FIRING: circuit-open on hook"),
        "{m}"
    );
}
