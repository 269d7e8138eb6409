//! report: the HTML health report of a real spool (delivered, retried,
//! dead, paused, quarantined; hostile strings in task titles, a SPEC id,
//! event names and the receiver's answers), opened in real headless
//! Chromium: the DOM holds the expected numbers, the hostile strings are
//! text and never markup, the page logs no console error, and a screenshot
//! is taken (kept under the target folder to look at). Also holds the
//! fixture the metrics tests share.

use std::path::{Path, PathBuf};

use serde_json::Value;
use spec_notify::evidence::Outcome;

use crate::list::{attempt, write_log};
use crate::support::receiver::{Receiver, Reply};
use crate::support::tools::{Chromium, console_lines};
use crate::support::*;

pub const SPEC: &str = "SPEC-KIT-065";
/// A second SPEC, with every punctuation mark a SPEC id may hold (markup
/// cannot be one: `check_spec_id` refuses it).
pub const HOSTILE_SPEC: &str = "SPEC-2:x+y@z.v_1";
pub const HOSTILE_TITLE: &str = "<script>alert('title')</script> Ship it";
pub const HOSTILE_ANSWER: &str = "<script>alert('answer')</script> bad signature";
pub const HOSTILE_EVENT: &str = "<script>alert('event')</script>.x.y";
pub const HOSTILE_LOGGED_ANSWER: &str = "</pre><img src=x onerror=alert(2)>";

/// A spool after a real drain against a loopback receiver, every
/// subscription in a different state. Per subscription, over 3 events (2 for
/// SPEC, 1 for HOSTILE_SPEC):
/// - `ok`: 3 delivered in 3 attempts;
/// - `flaky`: 503 twice, then 2xx: 3 delivered in 5 attempts;
/// - `bad`: 401 with HOSTILE_ANSWER: 3 dead in 3 attempts, plus one
///   hand-written retry record with HOSTILE_EVENT and HOSTILE_LOGGED_ANSWER;
/// - `down`: 500 always, 2 attempts each: 3 dead in 6 attempts;
/// - `held`: paused by an operator: 3 pending, no attempt.
///
/// Plus one quarantined file in SPEC.
pub fn fixture() -> Env {
    let rx = Receiver::start();
    rx.script("/flaky", [Reply::Status(503), Reply::Status(503)]);
    rx.script(
        "/bad",
        std::iter::repeat_n(Reply::Body(401, HOSTILE_ANSWER.into()), 10),
    );
    rx.script("/down", std::iter::repeat_n(Reply::Status(500), 20));
    let fast = "initial_backoff_ms = 10\njitter_ms = 0\n";
    let config = config_with(
        &[
            subscription("ok", &rx.url("/ok"), ""),
            subscription("flaky", &rx.url("/flaky"), fast),
            subscription("bad", &rx.url("/bad"), fast),
            subscription(
                "down",
                &rx.url("/down"),
                &format!("{fast}max_attempts = 2\ncircuit_failures = 10\n"),
            ),
            subscription("held", &rx.url("/held"), ""),
        ]
        .concat(),
    );
    let mut env = Env::new(&config);
    for id in ["OK", "FLAKY", "BAD", "DOWN", "HELD"] {
        env = env.env(&format!("SECRET_{id}"), "s3cret");
    }
    env.run(&["pause", "held", "--reason", "maintenance <b>window</b>"])
        .expect(0);
    let events = [(SPEC, "T1"), (SPEC, "T2"), (HOSTILE_SPEC, "T3")];
    for (spec, task) in events {
        env.run(&[
            "emit",
            "--spec",
            spec,
            "--event",
            "spec-kit.task.completed",
            "--status",
            "success",
            "--task-id",
            task,
            "--task-title",
            HOSTILE_TITLE,
        ])
        .expect(0);
    }
    std::fs::write(
        env.spool_root()
            .join(SPEC)
            .join("pending")
            .join("000000000777-junk.job"),
        "not a job\n",
    )
    .unwrap();
    env.run(&["drain", "--max-time", "60s"]).expect(0);
    assert_eq!(env.job_files(SPEC, "dead").len(), 4, "bad and down, twice");
    assert_eq!(env.job_files(HOSTILE_SPEC, "delivered").len(), 2);
    let mut hostile = attempt(
        SPEC,
        "bad",
        spec_notify::clock::now_ms() - 1_000,
        Outcome::Retry,
        Some(400),
        Some(12),
    );
    hostile.event_type = HOSTILE_EVENT.into();
    hostile.response_body = Some(HOSTILE_LOGGED_ANSWER.into());
    write_log(&env, SPEC, "attempts.jsonl", &[hostile]);
    env
}

/// Where screenshots are kept to look at after the tests.
fn keep_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of the first element after `marker` up to `end`.
#[track_caller]
pub fn section<'a>(dom: &'a str, marker: &str, end: &str) -> &'a str {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in the DOM"));
    let rest = &dom[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[test]
fn the_report_opens_in_chromium_with_the_numbers_escaped_and_no_console_error() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let env = fixture();
    let page = env.path().join("health.html");
    let run = env
        .run(&["report", "--output", page.to_str().unwrap()])
        .expect(0);
    assert!(
        run.stderr.contains("wrote the health report to"),
        "{}",
        run.stderr
    );
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing to load, nothing to run.
    for needle in [
        "<script", "<img", "<b>", " src=\"", "href=\"", "@import", "url(http",
    ] {
        assert!(!html.contains(needle), "the file holds {needle:?}");
    }

    let opened = chromium.dump_dom(&page);
    let dom = &opened.stdout;
    assert!(
        console_lines(&opened.stderr).is_empty(),
        "console errors:\n{}",
        opened.stderr
    );
    // The hostile strings are text: no element came of them.
    assert!(
        !dom.contains("<script") && !dom.contains("<img") && !dom.contains("<b>"),
        "{dom}"
    );
    assert!(dom.contains("&lt;script&gt;alert('title')&lt;/script&gt; Ship it"));
    assert!(dom.contains("&lt;script&gt;alert('answer')&lt;/script&gt; bad signature"));
    assert!(dom.contains("&lt;script&gt;alert('event')&lt;/script&gt;.x.y"));
    assert!(dom.contains("&lt;/pre&gt;&lt;img src=x onerror=alert(2)&gt;"));
    assert!(dom.contains(HOSTILE_SPEC));
    assert!(dom.contains("maintenance &lt;b&gt;window&lt;/b&gt;"));

    // Tiles: 6 delivered of 18 attempts (ok 3, flaky 5, bad 4, down 6).
    let tile = |name: &str| section(dom, &format!("data-tile=\"{name}\""), "</li>").to_string();
    assert!(tile("Delivered").contains(">6<"), "{}", tile("Delivered"));
    assert!(tile("Pending").contains(">3<"), "{}", tile("Pending"));
    assert!(
        tile("Dead-letters").contains(">6<"),
        "{}",
        tile("Dead-letters")
    );
    assert!(tile("Paused or open").contains(">1<") && tile("Paused or open").contains("held"));
    assert!(
        tile("Success rate").contains(">33.3%<"),
        "{}",
        tile("Success rate")
    );
    assert!(tile("Success rate").contains("6 of 18 attempts"));
    assert!(tile("Quarantined").contains(">1<"));

    // Per subscription: health, rate, attempts, pending, dead.
    let row = |id: &str| section(dom, &format!("data-subscription=\"{id}\""), "</tr>").to_string();
    let cell = |id: &str, field: &str, want: &str| {
        let r = row(id);
        assert!(
            r.contains(&format!("data-field=\"{field}\">{want}</td>")),
            "{id} {field} should be {want}: {r}"
        );
    };
    assert!(row("ok").contains("data-health=\"ok\""));
    cell("ok", "success", "100%");
    cell("ok", "attempts", "3");
    assert!(
        row("flaky").contains("data-health=\"degraded\""),
        "{}",
        row("flaky")
    );
    cell("flaky", "success", "60.0%");
    cell("flaky", "attempts", "5");
    assert!(row("bad").contains("data-health=\"failing\""));
    cell("bad", "attempts", "4");
    cell("bad", "dead", "3");
    assert!(row("down").contains("data-health=\"failing\""));
    cell("down", "success", "0.0%");
    cell("down", "attempts", "6");
    cell("down", "dead", "3");
    assert!(row("held").contains("data-health=\"paused\""));
    cell("held", "pending", "3");
    cell("held", "success", "-");

    // Dead-letters: every one with its hint and a shell-quoted replay command.
    let dead = section(dom, "id=\"dead\"", "</table>");
    assert_eq!(dead.matches("<tr data-delivery-id=").count(), 6);
    assert!(
        dead.contains("check the signing secret in SECRET_BAD"),
        "{dead}"
    );
    assert!(dead.contains(&format!("spec-notify replay {SPEC} --delivery-id ")));
    assert!(dead.contains(&format!("spec-notify replay {HOSTILE_SPEC} --delivery-id ")));
    let failures = section(dom, "id=\"failures\"", "</table>");
    assert!(failures.contains("HTTP 503") && failures.contains("delivered later"));
    assert!(failures.contains("dead-lettered (exhausted)"));
    let quarantine = section(dom, "id=\"quarantine\"", "</table>");
    assert!(quarantine.contains("000000000777-junk.job"));

    // Desktop and phone widths; kept for people to look at.
    let keep = keep_dir();
    std::fs::copy(&page, keep.join("report.html")).unwrap();
    for (name, width, height) in [("desktop", 1280, 2600), ("phone", 390, 3000)] {
        let shot = chromium.screenshot(&page, &keep.join(format!("{name}.png")), width, height);
        assert!(
            console_lines(&shot.stderr).is_empty(),
            "console errors at {name} width:\n{}",
            shot.stderr
        );
    }
}

/// What the page looks like `width` CSS pixels wide, measured in Chromium
/// by a script added to a copy of it (the report itself runs none, and its
/// CSP forbids one): the document's scroll width, the axis labels drawn
/// outside their chart (so clipped), how a subscriptions row is displayed,
/// and (to explain a failure) the elements that stick out on the right.
/// The copy is the `srcdoc` of an iframe that wide: headless Chromium makes
/// no window narrower than 500 px.
fn layout(chromium: &Chromium, page: &Path, width: u32) -> Value {
    let html = std::fs::read_to_string(page).unwrap();
    let csp = html
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .unwrap();
    let csp_end = csp + html[csp..].find('>').unwrap() + 1;
    let probe = r##"<script>
(() => {
  const out = { width: innerWidth, scrollWidth: document.documentElement.scrollWidth, clipped: [], wide: [] };
  for (const t of document.querySelectorAll("svg text")) {
    const r = t.getBoundingClientRect(), s = t.closest("svg").getBoundingClientRect();
    if (r.left < s.left - 0.5 || r.right > s.right + 0.5 || r.top < s.top - 0.5 || r.bottom > s.bottom + 0.5)
      out.clipped.push(t.textContent);
  }
  for (const e of document.querySelectorAll("body *:not(thead, thead *)")) {
    if (e.getBoundingClientRect().right > innerWidth + 0.5) out.wide.push(e.tagName + (e.id ? "#" + e.id : ""));
  }
  out.row = getComputedStyle(document.querySelector("#subscriptions tbody tr")).display;
  parent.document.body.setAttribute("data-layout", JSON.stringify(out));
})();
</script></body>"##;
    let probed = format!("{}{}", &html[..csp], &html[csp_end..]).replace("</body>", probe);
    let attribute = probed.replace('&', "&amp;").replace('"', "&quot;");
    let frame = format!(
        "<!DOCTYPE html><html><body style=\"margin:0\"><iframe style=\"width:{width}px;height:3000px;border:0\" srcdoc=\"{attribute}\"></iframe></body></html>"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("probed.html");
    std::fs::write(&copy, frame).unwrap();
    let window = format!("--window-size={},3100", width.max(500) + 40);
    let run = chromium.run(&copy, &["--dump-dom", &window]).expect(0);
    let marker = "data-layout=\"";
    let at = run.stdout.find(marker).expect("the probe ran") + marker.len();
    let raw = &run.stdout[at..at + run.stdout[at..].find('"').unwrap()];
    serde_json::from_str(&raw.replace("&quot;", "\"").replace("&amp;", "&")).unwrap()
}

#[test]
fn on_a_phone_subscriptions_are_cards_nothing_overflows_and_axis_labels_are_whole() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let env = fixture();
    // p95 up to 900 ms: the latency axis is labelled `0ms`, `500ms`, `1.0s`.
    let now = spec_notify::clock::now_ms();
    let slow: Vec<_> = [200, 400, 700, 900, 850, 600]
        .into_iter()
        .enumerate()
        .map(|(i, ms)| {
            let at = now - 60_000 * (6 - i as u64);
            attempt(SPEC, "flaky", at, Outcome::Delivered, Some(200), Some(ms))
        })
        .collect();
    write_log(&env, SPEC, "attempts.jsonl", &slow);
    let page = env.path().join("health.html");
    env.run(&["report", "--output", page.to_str().unwrap()])
        .expect(0);
    let keep = keep_dir();
    for (name, width, cards) in [
        ("phone-390", 390, "block"),
        ("desktop-1280", 1280, "table-row"),
    ] {
        let seen = layout(&chromium, &page, width);
        assert_eq!(seen["width"], width, "{seen}");
        assert!(
            seen["scrollWidth"].as_u64().unwrap() <= u64::from(width),
            "{name}: the page scrolls sideways: {seen}"
        );
        assert_eq!(
            seen["clipped"],
            serde_json::json!([]),
            "{name}: clipped axis labels: {seen}"
        );
        assert_eq!(
            seen["row"], cards,
            "{name}: subscriptions as cards under 600 px: {seen}"
        );
        chromium.screenshot(&page, &keep.join(format!("{name}.png")), width, 3000);
    }
}

/// The console check above must be able to fail: a page that logs an
/// error and throws is caught by the same helper.
#[test]
fn the_console_check_sees_errors_and_uncaught_exceptions() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><p>x</p><script>console.error('marker-7');undefinedFunction()</script>",
    )
    .unwrap();
    let run = chromium.dump_dom(&page);
    let lines = console_lines(&run.stderr);
    assert!(
        lines.iter().any(|l| l.contains("marker-7")),
        "console.error not seen:\n{}",
        run.stderr
    );
    assert!(
        lines.iter().any(|l| l.contains("Uncaught")),
        "uncaught exception not seen:\n{}",
        run.stderr
    );
}

#[test]
fn default_output_is_in_the_evidence_folder_and_specs_narrow_it() {
    let env = crate::list::ops_env("");
    crate::list::emit_tasks(&env, SPEC, 1);
    let run = env.run(&["report"]).expect(0);
    let default = env
        .path()
        .join("docs/SPEC-OPS-004-integrated-coder-hooks/evidence/commands/webhooks-report.html");
    assert!(
        run.stderr.contains(&default.display().to_string()),
        "{}",
        run.stderr
    );
    let html = std::fs::read_to_string(&default).unwrap();
    assert!(html.contains("Covers every SPEC (1)"), "one SPEC");
    assert!(html.contains("data-tile=\"Pending\""));

    let out = env.path().join("one.html");
    let run = env
        .run(&[
            "report",
            "SPEC-NONE",
            "--since",
            "1h",
            "-o",
            out.to_str().unwrap(),
        ])
        .expect(0);
    assert!(
        run.stderr
            .contains("SPEC `SPEC-NONE` has no spool folder yet")
            && run.stderr.contains(&format!("known SPECs: {SPEC}")),
        "{}",
        run.stderr
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("Covers SPEC-NONE"), "only the SPEC asked for");
    assert!(html.contains("No dead-lettered job"));

    let run = env
        .run(&["report", "--output", "/nonexistent-dir/x.html"])
        .expect(1);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
}
