//! Chat formats end to end: the real drain delivers every standard event
//! type, a 10 kB non-ASCII task title among them, to loopback stand-ins for
//! Slack, Mattermost, Discord and Teams that enforce each platform's
//! documented body rules; the platforms' error answers get hints that name
//! the fix; `text` templates; `check`'s warning for a chat webhook sent the
//! envelope; `test --print` shows the rendered body.

use serde_json::Value;
use spec_notify::sign::{Secret, speckit_signature};

use crate::support::chat::{ChatReceiver, Delivery, Platform};
use crate::support::*;

const SECRET: &str = "chat-format-secret-5521";
pub const SPEC: &str = "SPEC-CHAT";
const BASE: &str = "https://git.example/org/repo/blob/main";

/// A task title of 10 kB and more, with non-ASCII text, markup and mentions.
fn long_title() -> String {
    format!(
        "Überprüfung der Ausgabe — 日本語のタスク 🚀 <!channel> @everyone *bold* & `code` {}",
        "ß€".repeat(2000)
    )
}

/// A workspace whose subscription `chat` posts to `url` in `format`: one
/// attempt unless `extra` says otherwise, a long timeout (a busy machine
/// must not fake one), 100 messages a second unless `extra` says otherwise.
pub fn chat_env(url: &str, format: &str, extra: &str) -> Env {
    let mut keys = format!("format = \"{format}\"\nper_request_timeout_ms = 30000\n{extra}\n");
    for (key, default) in [("max_attempts", "1"), ("rate_limit", "\"100/s\"")] {
        if !extra.contains(key) {
            keys.push_str(&format!("{key} = {default}\n"));
        }
    }
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nevidence_base_url = \"{BASE}\"\n\n{}",
        subscription("chat", url, &keys)
    );
    Env::new(&config).env("SECRET_CHAT", SECRET)
}

/// Drains until nothing is due within a minute (rate-limited jobs are due
/// within milliseconds; `--once` would leave them for the next run).
pub fn drain(env: &Env) -> Run {
    env.run(&["drain", "--max-time", "60s"]).expect(0)
}

/// Emits one event of every standard type (JSON Lines on stdin); returns how many.
pub fn emit_standard_events(env: &Env) -> usize {
    let events = [
        serde_json::json!({"event": {"type": "spec-auto.stage.completed", "stage": "Plan", "status": "success"},
            "spec": {"id": SPEC, "branch": "feat/überall"},
            "evidence": {"paths": ["docs/evidence/plan (1).log", "docs/évidence/plan.json"]}}),
        serde_json::json!({"event": {"type": "spec-auto.pipeline.completed", "status": "failure"},
            "spec": {"id": SPEC}, "pipeline": {"attempt": 2, "maxAttempts": 3}}),
        serde_json::json!({"event": {"type": "spec-kit.task.completed"}, "spec": {"id": SPEC},
            "task": {"id": "T61", "title": long_title()}}),
        serde_json::json!({"event": {"type": "spec-auto.consensus.conflict", "stage": "Audit"},
            "spec": {"id": SPEC}, "consensus": {"status": "conflict"}}),
        serde_json::json!({"event": {"type": "spec-auto.cost.threshold"}, "spec": {"id": SPEC},
            "anomalies": [{"kind": "cost", "usd": 12.5}]}),
        serde_json::json!({"event": {"type": "spec-auto.agent.stalled", "stage": "Implement", "status": "halt"},
            "spec": {"id": SPEC}}),
    ];
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();
    let stdin = lines.join("\n") + "\n";
    env.run_with_stdin(&["emit", "--input", "-"], stdin.as_bytes())
        .expect(0);
    events.len()
}

/// The texts of a rendered chat message, joined: what a person would read.
fn words(delivery: &Delivery) -> String {
    let body: Value = serde_json::from_slice(&delivery.request.body).unwrap();
    let mut out = Vec::new();
    collect_strings(&body, &mut out);
    out.join("\n")
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

#[test]
fn every_standard_event_reaches_each_chat_platform_within_its_rules() {
    for platform in Platform::ALL {
        let rx = ChatReceiver::start(platform);
        let env = chat_env(rx.url(), platform.format(), "");
        let events = emit_standard_events(&env);
        let run = drain(&env);
        let got = rx.deliveries();
        assert_eq!(got.len(), events, "{platform:?}: {}", run.stderr);
        for d in &got {
            assert!(
                d.problems.is_empty(),
                "{platform:?} refused a delivery: {:?}\n{}",
                d.problems,
                d.request.body_text()
            );
            // The signature headers stay, and sign the bytes actually sent.
            assert_eq!(
                d.request.header("X-SpecKit-Signature").unwrap(),
                speckit_signature(&Secret::new(SECRET.into()), &d.request.body),
                "{platform:?}"
            );
            assert!(d.request.header("X-SpecKit-Id").is_some());
        }
        assert_eq!(
            env.jobs(SPEC, "delivered").len(),
            events,
            "{platform:?}: every job delivered"
        );
        let text: Vec<String> = got.iter().map(words).collect();
        let find = |needle: &str| {
            text.iter().find(|t| t.contains(needle)).unwrap_or_else(|| {
                panic!("{platform:?}: no message mentions {needle:?}:\n{text:#?}")
            })
        };
        let stage = find("Plan stage completed");
        assert!(stage.contains("✅") && stage.contains(SPEC), "{stage}");
        assert!(
            stage.contains(&format!("{BASE}/docs/evidence/plan%20%281%29.log")),
            "evidence linked: {stage}"
        );
        assert!(find("pipeline completed").contains("❌"));
        assert!(
            find("pipeline completed").contains("2 of 3"),
            "attempt shown"
        );
        let task = find("Überprüfung der Ausgabe — 日本語のタスク 🚀");
        assert!(task.contains('…'), "the 10 kB title is cut: {}", task.len());
        assert!(find("consensus conflict").contains("⚠️"));
        find("cost threshold");
        assert!(find("agent stalled").contains("⛔"));
    }
}

#[test]
fn chat_formats_send_at_most_one_message_a_second_by_default() {
    let rx = ChatReceiver::start(Platform::Mattermost);
    let no_rate_limit = "format = \"mattermost\"\nmax_attempts = 1\nper_request_timeout_ms = 30000";
    let env = Env::new(&config_with(&subscription("chat", rx.url(), no_rate_limit)))
        .env("SECRET_CHAT", SECRET);
    for _ in 0..3 {
        emit_one(&env);
    }
    drain(&env);
    let got = rx.deliveries();
    assert_eq!(got.len(), 3);
    // Sends start 1 s apart; arrivals can drift by how late each request
    // left on a busy machine, so half a second is the bound (unlimited
    // sends arrive milliseconds apart).
    for pair in got.windows(2) {
        let gap = pair[1].request.received_at_ms - pair[0].request.received_at_ms;
        assert!(gap >= 500, "messages {gap} ms apart: the default is 1/s");
    }
}

#[test]
fn mentions_in_event_text_ping_nobody_on_discord_slack_or_mattermost() {
    let rx = ChatReceiver::start(Platform::Discord);
    let env = chat_env(rx.url(), "discord", "");
    emit_standard_events(&env);
    drain(&env);
    for d in rx.deliveries() {
        let body: Value = serde_json::from_slice(&d.request.body).unwrap();
        assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
    }
    let rx = ChatReceiver::start(Platform::Slack);
    let env = chat_env(rx.url(), "slack", "");
    emit_standard_events(&env);
    drain(&env);
    let all: String = rx
        .deliveries()
        .iter()
        .map(|d| d.request.body_text())
        .collect();
    assert!(!all.contains("<!channel>"), "Slack mention escaped");
    assert!(all.contains("&lt;!channel&gt;"));
    let rx = ChatReceiver::start(Platform::Mattermost);
    let env = chat_env(rx.url(), "mattermost", "");
    emit_standard_events(&env);
    drain(&env);
    let texts: Vec<String> = rx
        .deliveries()
        .iter()
        .map(|d| {
            let body: Value = serde_json::from_slice(&d.request.body).unwrap();
            body["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(!texts.iter().any(|t| t.contains("@everyone")), "{texts:#?}");
    assert!(
        texts.iter().any(|t| t.contains("@\u{200B}everyone")),
        "the mention is shown, broken: {texts:#?}"
    );
}

/// The hint of the one dead job of the workspace.
fn dead_hint(env: &Env) -> String {
    let dead = env.jobs(SPEC, "dead");
    assert_eq!(dead.len(), 1, "one dead job");
    dead[0].0["hint"].as_str().unwrap().to_string()
}

fn emit_one(env: &Env) {
    emit_plan(env, SPEC).expect(0);
}

#[test]
fn the_envelope_sent_to_a_chat_webhook_is_refused_and_the_hint_names_the_format() {
    for platform in Platform::ALL {
        let rx = ChatReceiver::start(platform);
        let env = chat_env(rx.url(), "json", "max_attempts = 5");
        emit_one(&env);
        drain(&env);
        let got = rx.deliveries();
        assert_eq!(got.len(), 1, "{platform:?}: 400 is terminal, no retry");
        assert!(
            !got[0].problems.is_empty(),
            "{platform:?} refuses the envelope"
        );
        let hint = dead_hint(&env);
        if platform != Platform::Teams {
            let want = format!("set `format = \"{}\"`", platform.format());
            assert!(hint.contains(&want), "{platform:?}: {hint}");
        }
    }
}

#[test]
fn a_deleted_webhook_is_dead_at_once_and_a_revoked_one_names_no_secret() {
    let rx = ChatReceiver::start(Platform::Slack);
    rx.force(404, &[], "no_service");
    let env = chat_env(rx.url(), "slack", "max_attempts = 5");
    emit_one(&env);
    drain(&env);
    assert_eq!(rx.deliveries().len(), 1);
    let hint = dead_hint(&env);
    assert!(
        hint.starts_with("Slack answered 404 `no_service`: the webhook was deleted"),
        "{hint}"
    );

    let rx = ChatReceiver::start(Platform::Slack);
    rx.force(403, &[], "action_prohibited");
    let env = chat_env(rx.url(), "slack", "max_attempts = 5");
    emit_one(&env);
    drain(&env);
    let hint = dead_hint(&env);
    assert!(hint.contains("the webhook was revoked"), "{hint}");
    assert!(!hint.contains("secret_env"), "{hint}");
}

#[test]
fn slack_429_retry_after_is_honoured() {
    let rx = ChatReceiver::start(Platform::Slack);
    rx.force(429, &[("Retry-After", "120")], "rate_limited");
    let env = chat_env(
        rx.url(),
        "slack",
        "max_attempts = 5\ninitial_backoff_ms = 10\njitter_ms = 0",
    );
    emit_one(&env);
    drain(&env);
    assert_eq!(rx.deliveries().len(), 1, "no retry before Retry-After");
    let pending = env.jobs(SPEC, "pending");
    assert_eq!(pending.len(), 1, "429 is retried, not dead");
    let meta = &pending[0].0;
    let wait =
        meta["next_attempt_at_ms"].as_u64().unwrap() - meta["last_attempt_at_ms"].as_u64().unwrap();
    assert!(wait >= 120_000, "waits as long as Slack asked: {wait} ms");
}

#[test]
fn text_templates_render_and_an_unknown_placeholder_fails_check() {
    let rx = ChatReceiver::start(Platform::Slack);
    let template = "{{event.icon}} {{spec.id}}: {{event.stage}} is {{event.status}} ({{event.type}}) [{{evidence.paths}}]";
    let env = chat_env(rx.url(), "slack", &format!("text = \"{template}\""));
    env.run_with_stdin(
        &["emit", "--input", "-"],
        br#"{"event": {"type": "spec-auto.stage.completed", "stage": "Plan", "status": "success"}, "spec": {"id": "SPEC-CHAT"}, "evidence": {"paths": ["a.log", "b.log"]}}"#,
    )
    .expect(0);
    env.run(&["check"]).expect(0);
    drain(&env);
    let got = rx.deliveries();
    assert!(got[0].problems.is_empty(), "{:?}", got[0].problems);
    let body: Value = serde_json::from_slice(&got[0].request.body).unwrap();
    assert_eq!(
        body["text"],
        "✅ SPEC-CHAT: Plan is success (spec-auto.stage.completed) [a.log, b.log]"
    );

    let env = chat_env(rx.url(), "slack", "text = \"{{spec.id}} {{task.name}}\"");
    let run = env.run(&["check"]).expect(2);
    assert!(
        run.stderr.contains(
            "key `text`: unknown placeholder `{{task.name}}`; known: summary, event.type"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn check_warns_when_a_chat_webhook_gets_the_envelope_and_shows_no_webhook_key() {
    let url = "https://hooks.slack.com/services/T000/B000/SLACKKEY42";
    let env = Env::new(&config_with(&subscription("chat", url, "dry_run = true")));
    let run = env.run(&["check"]).expect(0);
    assert!(
        run.stderr.contains("subscription `chat` sends the JSON envelope to a Slack webhook, which will reject it: set `format = \"slack\"`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("https://hooks.slack.com/services/<redacted>"),
        "{}",
        run.stdout
    );
    let run_json = env.run(&["check", "--json"]).expect(0);
    for out in [&run.stdout, &run.stderr, &run_json.stdout, &run_json.stderr] {
        assert!(!out.contains("SLACKKEY42"), "webhook key shown: {out}");
    }
    let env = Env::new(&config_with(&subscription(
        "chat",
        url,
        "dry_run = true\nformat = \"slack\"",
    )));
    let run = env.run(&["check"]).expect(0);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[test]
fn test_print_shows_the_rendered_message_and_sends_nothing() {
    let rx = ChatReceiver::start(Platform::Teams);
    let env = chat_env(rx.url(), "teams", "");
    let run = env
        .run(&["test", SPEC, "--subscription", "chat", "--print"])
        .expect(0);
    assert!(
        run.stdout.starts_with("POST http://127.0.0.1:"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("/workflows/<redacted>\n"),
        "chat URL path hidden: {}",
        run.stdout
    );
    let body = run.stdout.split("\n\n").nth(1).unwrap();
    let card: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(body.contains("test delivery from spec-notify"), "{body}");
    assert!(rx.deliveries().is_empty(), "--print sends nothing");
    env.run(&["test", SPEC, "--subscription", "chat"]).expect(0);
    let got = rx.deliveries();
    assert_eq!(got.len(), 1);
    assert!(got[0].problems.is_empty(), "{:?}", got[0].problems);
}

#[test]
fn the_example_config_checks_clean() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let env = Env::new(&std::fs::read_to_string(example).unwrap())
        .env("SPECKIT_WEBHOOK_SECRET_SLACK", SECRET)
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/EXAMPLEKEY",
        );
    let run = env.run(&["check"]).expect(0);
    assert!(run.stderr.is_empty(), "no warnings: {}", run.stderr);
    let row = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("chatops-slack"))
        .unwrap();
    let columns: Vec<&str> = row.split_whitespace().take(3).collect();
    assert_eq!(columns, ["chatops-slack", "active", "slack"]);
    assert!(!run.stdout.contains("EXAMPLEKEY"), "{}", run.stdout);
}

#[test]
fn a_dead_chat_delivery_replays_with_the_same_id_once_the_webhook_is_back() {
    let rx = ChatReceiver::start(Platform::Discord);
    rx.force(404, &[], r#"{"message": "Unknown Webhook", "code": 10015}"#);
    let env = chat_env(rx.url(), "discord", "");
    emit_one(&env);
    drain(&env);
    let hint = dead_hint(&env);
    assert!(
        hint.starts_with("Discord answered 404 `code 10015`: the webhook was deleted"),
        "{hint}"
    );
    let id = env.jobs(SPEC, "dead")[0].0["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    rx.unforce();
    env.run(&["replay", SPEC, "--delivery-id", &id]).expect(0);
    let got = rx.deliveries();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].request.header("X-SpecKit-Id"), Some(id.as_str()));
    assert!(got[1].problems.is_empty(), "{:?}", got[1].problems);
    assert_eq!(got[0].request.body, got[1].request.body, "the same message");
}

#[test]
fn an_unset_url_env_or_header_variable_holds_jobs_and_names_the_variable() {
    let rx = ChatReceiver::start(Platform::Slack);
    let tables = format!(
        "[[spec_ops.webhooks.subscriptions]]\nid = \"chat\"\nurl_env = \"CHAT_URL\"\nformat = \"slack\"\nsecret_env = \"SECRET_CHAT\"\nmax_attempts = 1\n\n{}",
        subscription(
            "api",
            rx.url(),
            "format = \"slack\"\nheaders = { Authorization = \"env:API_TOKEN\" }\nmax_attempts = 1"
        )
    );
    let env = Env::new(&config_with(&tables))
        .env("SECRET_CHAT", SECRET)
        .env("SECRET_API", SECRET);
    emit_one(&env);
    let run = env.run(&["drain", "--once"]).expect(2);
    assert!(
        run.stderr
            .contains("set the environment variable CHAT_URL (url_env)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("set the environment variable API_TOKEN"),
        "{}",
        run.stderr
    );
    assert!(rx.deliveries().is_empty());
    assert_eq!(env.jobs(SPEC, "pending").len(), 2, "held, not dead");
    let run = env.run(&["check"]).expect(2);
    assert!(run.stderr.contains("subscription `chat`: key `url_env`: the environment variable CHAT_URL is unset or empty"), "{}", run.stderr);
    assert!(run.stderr.contains("subscription `api`: key `headers`: `Authorization`: the environment variable API_TOKEN is unset or empty"), "{}", run.stderr);

    let env = env.env("CHAT_URL", rx.url()).env("API_TOKEN", "t0ken");
    env.run(&["check"]).expect(0);
    drain(&env);
    assert_eq!(env.jobs(SPEC, "delivered").len(), 2);
    let got = rx.deliveries();
    assert!(
        got.iter()
            .any(|d| d.request.header("Authorization") == Some("t0ken"))
    );
}

/// A task title, branch and evidence path that attack every chat parser:
/// Slack/Mattermost `<!channel>` and `<url|text>`, Markdown links, images
/// and autolinks, `@` and `<@id>` mentions, channel links, custom emoji,
/// hashtags, right-to-left overrides and zero-width characters.
const ATTACK: &str = "<!channel> <!here> <!all> see <https://evil.example|runbook> \
    [click](https://evil.example) ![img](https://evil.example/p.png) <https://evil.example/auto> \
    https://evil.example/bare www.evil.example @channel @here @all @everyone <@U123> <#C1> \
    <:e:123> ~town-square #tag (evil.example/x) evil\u{202E}txt.exe \u{2066}x\u{2069} \
    zero\u{200B}width\u{2060}joined\u{FEFF}";

/// What `tests/verifiers/chat_render.mjs` (each platform's own parser) makes
/// of each delivered body: links, images, mentions and text.
fn rendered_by_the_platform(platform: Platform, deliveries: &[Delivery]) -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifiers");
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = command("node");
    cmd.arg(dir.join("chat_render.mjs"))
        .arg(platform.format())
        .current_dir(&dir);
    for (i, d) in deliveries.iter().enumerate() {
        let path = tmp.path().join(format!("body-{i}.json"));
        std::fs::write(&path, &d.request.body).unwrap();
        cmd.arg(path);
    }
    let output = run_command(cmd, b"");
    assert!(
        output.code == 0,
        "chat_render.mjs failed (run tests/verifiers/install.sh, which installs \
         @mattermost/commonmark, discord-markdown and markdown-it): {}",
        output.stderr
    );
    output
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn event_values_build_no_link_image_or_mention_in_any_platforms_parser() {
    for platform in [Platform::Mattermost, Platform::Discord, Platform::Teams] {
        let rx = ChatReceiver::start(platform);
        let env = chat_env(rx.url(), platform.format(), "");
        let event = serde_json::json!({
            "event": {"type": "spec-kit.task.completed"},
            "spec": {"id": SPEC, "branch": ATTACK},
            "task": {"id": "T1", "title": ATTACK, "status": ATTACK},
            "consensus": {"status": ATTACK},
            "evidence": {"paths": [ATTACK, "docs/plan (1).log"]}
        });
        env.run_with_stdin(&["emit", "--input", "-"], event.to_string().as_bytes())
            .expect(0);
        // The issue's own example, through the flags.
        env.run(&[
            "emit",
            "--spec",
            SPEC,
            "--event",
            "spec-kit.task.completed",
            "--task-id",
            "T2",
            "--task-title",
            "<!channel> see <https://evil.example|runbook>",
        ])
        .expect(0);
        drain(&env);
        let got = rx.deliveries();
        assert_eq!(got.len(), 2, "{platform:?}");
        for (seen, d) in rendered_by_the_platform(platform, &got).iter().zip(&got) {
            let body = d.request.body_text();
            for link in seen["links"].as_array().unwrap() {
                assert!(
                    link.as_str().unwrap().starts_with(&format!("{BASE}/")),
                    "{platform:?} renders a link spec-notify did not build: {link}\n{body}"
                );
            }
            assert_eq!(
                seen["images"],
                serde_json::json!([]),
                "{platform:?}: {body}"
            );
            assert_eq!(
                seen["mentions"],
                serde_json::json!([]),
                "{platform:?}: {body}"
            );
            let text = seen["text"].as_str().unwrap();
            for c in ['\u{202E}', '\u{2066}', '\u{2069}', '\u{2060}', '\u{FEFF}'] {
                assert!(
                    !text.contains(c) && !body.contains(c),
                    "{platform:?}: {c:?}"
                );
            }
            // What the attack said is still there for a reader, as text.
            assert!(
                text.contains("see <https://evil.example|runbook>"),
                "{platform:?}: {text}"
            );
        }
        let first = &rendered_by_the_platform(platform, &got[..1])[0];
        assert!(
            first["text"]
                .as_str()
                .unwrap()
                .contains("[click](https://evil.example)"),
            "{platform:?}: {first}"
        );
        assert_eq!(
            first["links"],
            serde_json::json!([format!("{BASE}/docs/plan%20%281%29.log")]),
            "{platform:?}: the evidence link spec-notify built is the only link"
        );
    }
}
