//! The HTML health report: one self-contained static page (inline CSS and
//! SVG, no script, no external asset, a Content-Security-Policy that forbids
//! loading anything) built from a health [`Snapshot`] and the attempt
//! records of the period ([`Collector`]), rendered by askama from
//! `report.html` beside this file. Askama escapes every value, so event
//! names, task titles, SPEC ids and response bodies cannot become markup.
//! [`chart`] owns the charts' geometry. Reads job bodies only for the task
//! titles of the rows it shows; writes nothing.

pub mod chart;

use std::collections::{HashMap, VecDeque};

use askama::Template;
use serde_json::Value;

use crate::clock;
use crate::evidence::{Outcome, Record};
use crate::health::{Health, Snapshot, Source, percentile};
use crate::output::latency_text;
use crate::spool::{Entry, State};
use chart::{BarChart, Buckets, LineChart, Point};

/// The latest failed attempts shown.
pub const MAX_FAILURES: usize = 50;
/// Dead-letters listed (newest first); `spec-notify list` has them all.
pub const MAX_DEAD: usize = 200;
/// Longest task summary and response excerpt shown inline.
const SUMMARY_CHARS: usize = 120;

/// What the report needs from the attempt records of the period, fed one
/// at a time (see `health::gather`'s visitor): the chart points and the
/// latest failures.
#[derive(Debug, Default)]
pub struct Collector {
    points: Vec<Point>,
    failures: VecDeque<Record>,
    failures_seen: usize,
}

impl Collector {
    pub fn add(&mut self, record: &Record) {
        if !record.outcome.is_attempt() {
            return;
        }
        self.points.push(Point {
            ts_ms: record.ts_ms,
            outcome: record.outcome,
            latency_ms: record.latency_ms,
        });
        if record.outcome != Outcome::Delivered {
            self.failures_seen += 1;
            if self.failures.len() == MAX_FAILURES {
                self.failures.pop_front();
            }
            self.failures.push_back(record.clone());
        }
    }
}

/// A number at the top of the page.
#[derive(Debug, Clone)]
pub struct Tile {
    pub label: &'static str,
    pub value: String,
    pub detail: String,
    /// `good`, `warn`, `bad` or `plain`: a colour that repeats what the text says.
    pub tone: &'static str,
}

/// One subscription's row.
#[derive(Debug, Clone)]
pub struct SubRow {
    pub id: String,
    pub configured: bool,
    /// CSS name of the health (`circuit-open`) and its words (`circuit open`).
    pub health: &'static str,
    pub health_label: &'static str,
    pub health_explain: String,
    pub success: String,
    pub attempts: usize,
    pub p50: String,
    pub p95: String,
    pub pending: usize,
    pub dead: usize,
    pub last_success: String,
    pub last_failure: String,
    pub last_failure_reason: String,
}

#[derive(Debug, Clone)]
pub struct SpecRow {
    pub spec: String,
    pub pending: usize,
    pub delivered: usize,
    pub dead: usize,
    pub quarantined: usize,
    pub success: String,
}

/// A failed attempt of the period and where its job is now.
#[derive(Debug, Clone)]
pub struct FailureRow {
    pub at: String,
    pub spec: String,
    pub subscription: String,
    pub event: String,
    pub summary: String,
    pub delivery_id: String,
    pub attempt: u32,
    pub outcome: &'static str,
    /// `HTTP 401` or the transport error.
    pub what: String,
    /// The receiver's answer, cut to [`crate::evidence::BODY_EXCERPT`].
    pub answer: Option<String>,
    /// Where the job is now and what to do.
    pub now: String,
    pub hint: Option<String>,
    pub replay: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeadRow {
    pub at: String,
    pub spec: String,
    pub subscription: String,
    pub event: String,
    pub summary: String,
    pub delivery_id: String,
    pub attempts: u32,
    pub reason: String,
    pub last_error: String,
    pub hint: String,
    pub replay: String,
}

#[derive(Debug, Clone)]
pub struct QuarantineRow {
    pub spec: String,
    pub file: String,
    pub reason: String,
}

/// The whole page, ready to render.
#[derive(Template)]
#[template(path = "report.html")]
pub struct Page {
    pub version: &'static str,
    pub generated_at: String,
    pub since: String,
    pub scope: String,
    pub tiles: Vec<Tile>,
    pub subscriptions: Vec<SubRow>,
    pub specs: Vec<SpecRow>,
    pub attempts: BarChart,
    pub latency: LineChart,
    pub bucket: String,
    pub failures: Vec<FailureRow>,
    pub failures_total: usize,
    pub dead: Vec<DeadRow>,
    pub dead_total: usize,
    pub quarantined: Vec<QuarantineRow>,
    // Chart frame (see `chart`), for the axes.
    pub width: u32,
    pub height: u32,
    pub plot_left: f64,
    pub plot_right: f64,
    pub plot_top: f64,
    pub plot_bottom: f64,
    pub label_y: f64,
}

impl Page {
    /// The HTML text.
    pub fn render_html(&self) -> anyhow::Result<String> {
        Ok(self.render()?)
    }
}

/// What the report covers, for its header.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The SPECs asked for; empty means every SPEC.
    pub specs: Vec<String>,
    pub since_ms: u64,
    /// Where the numbers come from when not this host's spool
    /// (`NATS JetStream …`).
    pub from: Option<String>,
}

/// Builds the page from a snapshot gathered with `scope.since_ms` and the
/// collector that saw its records.
pub fn build(
    snapshot: &Snapshot,
    collected: Collector,
    source: &dyn Source,
    scope: &Scope,
) -> Page {
    let now = snapshot.now_ms;
    let jobs: HashMap<&str, &Entry> = snapshot
        .specs
        .iter()
        .flat_map(|s| &s.jobs)
        .map(|e| (e.meta.delivery_id.as_str(), e))
        .collect();
    let buckets = Buckets::of(&collected.points, scope.since_ms, now);
    let dead_total = jobs.values().filter(|e| e.state == State::Dead).count();
    Page {
        version: env!("CARGO_PKG_VERSION"),
        generated_at: clock::rfc3339(now),
        since: when(scope.since_ms, now),
        scope: {
            let specs = match scope.specs.as_slice() {
                [] => format!("every SPEC ({})", snapshot.specs.len()),
                specs => specs.join(", "),
            };
            match &scope.from {
                Some(from) => format!("{specs} in {from}"),
                None => specs,
            }
        },
        tiles: tiles(snapshot, &collected),
        subscriptions: snapshot
            .subscriptions
            .iter()
            .map(|s| sub_row(s, now))
            .collect(),
        specs: snapshot.specs.iter().map(spec_row).collect(),
        attempts: chart::bar_chart(&buckets),
        latency: chart::line_chart(&buckets),
        bucket: humantime::format_duration(std::time::Duration::from_millis(buckets.width_ms))
            .to_string(),
        failures_total: collected.failures_seen,
        failures: collected
            .failures
            .iter()
            .rev()
            .map(|r| failure_row(r, jobs.get(r.delivery_id.as_str()).copied(), source, now))
            .collect(),
        dead: dead_rows(&jobs, source, now),
        dead_total,
        quarantined: snapshot
            .specs
            .iter()
            .flat_map(|s| {
                s.quarantined.iter().map(|(file, reason)| QuarantineRow {
                    spec: s.spec.clone(),
                    file: file.clone(),
                    reason: reason.clone(),
                })
            })
            .collect(),
        width: chart::WIDTH,
        height: chart::HEIGHT,
        plot_left: chart::LEFT,
        plot_right: f64::from(chart::WIDTH) - chart::RIGHT,
        plot_top: chart::TOP,
        plot_bottom: f64::from(chart::HEIGHT) - chart::BOTTOM,
        label_y: f64::from(chart::HEIGHT) - 12.0,
    }
}

fn tiles(snapshot: &Snapshot, collected: &Collector) -> Vec<Tile> {
    let subs = &snapshot.subscriptions;
    let sum =
        |f: fn(&crate::health::SubscriptionHealth) -> usize| subs.iter().map(f).sum::<usize>();
    let delivered = collected
        .points
        .iter()
        .filter(|p| p.outcome == Outcome::Delivered)
        .count();
    let attempts = collected.points.len();
    let pending = sum(|s| s.counts.pending + s.counts.active);
    let dead = sum(|s| s.counts.dead);
    let held: Vec<&str> = subs
        .iter()
        .filter(|s| matches!(s.health, Health::Paused | Health::CircuitOpen))
        .map(|s| s.subscription.as_str())
        .collect();
    let oldest = subs.iter().filter_map(|s| s.oldest_pending_ms).min();
    let mut latencies: Vec<u64> = collected
        .points
        .iter()
        .filter_map(|p| p.latency_ms)
        .collect();
    latencies.sort_unstable();
    let quarantined: usize = snapshot.specs.iter().map(|s| s.quarantined.len()).sum();
    let mut tiles = vec![
        Tile {
            label: "Delivered",
            value: delivered.to_string(),
            detail: "attempts answered 2xx in this period".into(),
            tone: "plain",
        },
        Tile {
            label: "Pending",
            value: pending.to_string(),
            detail: match oldest {
                Some(t) => format!("oldest waiting {}", clock::age(snapshot.now_ms, t)),
                None => "nothing waits".into(),
            },
            tone: if pending == 0 { "good" } else { "plain" },
        },
        Tile {
            label: "Dead-letters",
            value: dead.to_string(),
            detail: if dead == 0 {
                "none to replay".into()
            } else {
                "listed below with their replay commands".into()
            },
            tone: if dead == 0 { "good" } else { "bad" },
        },
        Tile {
            label: "Paused or open",
            value: held.len().to_string(),
            detail: if held.is_empty() {
                "every subscription is sending".into()
            } else {
                held.join(", ")
            },
            tone: if held.is_empty() { "good" } else { "warn" },
        },
        Tile {
            label: "Success rate",
            value: rate(delivered, attempts),
            detail: format!("{delivered} of {attempts} attempts"),
            tone: match (attempts, delivered * 100 / attempts.max(1)) {
                (0, _) => "plain",
                (_, 95..) => "good",
                (_, 80..) => "warn",
                _ => "bad",
            },
        },
        Tile {
            label: "Latency p50 / p95",
            value: format!(
                "{} / {}",
                latency_text(percentile(&latencies, 50.0)),
                latency_text(percentile(&latencies, 95.0))
            ),
            detail: format!("over {} answered attempts", latencies.len()),
            tone: "plain",
        },
    ];
    if quarantined > 0 {
        tiles.push(Tile {
            label: "Quarantined",
            value: quarantined.to_string(),
            detail: "spool files that are not jobs; see below".into(),
            tone: "warn",
        });
    }
    tiles
}

/// `97.5%`, `100%`, `-` before the first attempt.
fn rate(successes: usize, attempts: usize) -> String {
    if attempts == 0 {
        return "-".into();
    }
    let pct = successes as f64 * 100.0 / attempts as f64;
    if successes == attempts {
        "100%".into()
    } else {
        // Never rounds a failure away: 99.96% shows as 99.9%.
        format!("{:.1}%", (pct * 10.0).floor() / 10.0)
    }
}

/// `2026-11-23 18:50 UTC (5m ago)`.
fn when(ms: u64, now: u64) -> String {
    let at = clock::rfc3339(ms);
    format!(
        "{} UTC ({} ago)",
        at[..16].replace('T', " "),
        clock::age(now, ms)
    )
}

fn sub_row(s: &crate::health::SubscriptionHealth, now: u64) -> SubRow {
    let st = &s.stats;
    let mut explain = s.health.explain().to_string();
    if matches!(s.health, Health::Paused | Health::CircuitOpen) {
        explain = format!("{}: {explain}", s.circuit.describe(clock::rfc3339));
    }
    SubRow {
        id: s.subscription.clone(),
        configured: s.configured,
        health: s.health.name(),
        health_label: s.health.label(),
        health_explain: explain,
        success: rate(st.successes, st.attempts),
        attempts: st.attempts,
        p50: latency_text(st.p50_ms()),
        p95: latency_text(st.p95_ms()),
        pending: s.counts.pending + s.counts.active,
        dead: s.counts.dead,
        last_success: st.last_success_ms.map_or("-".into(), |t| when(t, now)),
        last_failure: st.last_failure_ms.map_or("-".into(), |t| when(t, now)),
        last_failure_reason: st.last_failure.clone().unwrap_or_default(),
    }
}

fn spec_row(s: &crate::health::SpecHealth) -> SpecRow {
    let (mut pending, mut delivered, mut dead, mut ok, mut attempts) = (0, 0, 0, 0, 0);
    for sub in &s.subscriptions {
        pending += sub.counts.pending + sub.counts.active;
        delivered += sub.counts.delivered;
        dead += sub.counts.dead;
        ok += sub.stats.successes;
        attempts += sub.stats.attempts;
    }
    SpecRow {
        spec: s.spec.clone(),
        pending,
        delivered,
        dead,
        quarantined: s.quarantined.len(),
        success: rate(ok, attempts),
    }
}

/// The exact command that requeues a dead (or delivered) job, quoted for a
/// POSIX shell (a SPEC id may hold spaces or `<`).
pub fn replay_command(spec: &str, delivery_id: &str) -> String {
    let quote = |s: &str| {
        shlex::try_quote(s)
            .map(|q| q.into_owned())
            .unwrap_or_else(|_| format!("'{}'", s.replace('\0', "")))
    };
    format!(
        "spec-notify replay {} --delivery-id {}",
        quote(spec),
        quote(delivery_id)
    )
}

/// `T61 Add the webhook spool` or `Plan success`: what the event was about,
/// from its envelope. `None` if the body says nothing of the kind.
pub fn summary_of(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let text = |section: &str, key: &str| {
        v.get(section)
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let parts: Vec<&str> = match (text("task", "id"), text("task", "title")) {
        (None, None) => [text("event", "stage"), text("event", "status")]
            .into_iter()
            .flatten()
            .collect(),
        (id, title) => [id, title].into_iter().flatten().collect(),
    };
    (!parts.is_empty()).then(|| cut(&parts.join(" "), SUMMARY_CHARS))
}

/// At most `max` characters, `…` marking a cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn summary_of_entry(entry: &Entry, source: &dyn Source) -> String {
    source
        .body(entry)
        .and_then(|body| summary_of(&body))
        .unwrap_or_default()
}

fn failure_row(r: &Record, job: Option<&Entry>, source: &dyn Source, now: u64) -> FailureRow {
    let (state_now, hint, replay) = match job {
        None => (source.gone().to_string(), None, None),
        Some(e) => {
            let m = &e.meta;
            match e.state {
                State::Dead => (
                    format!(
                        "dead-lettered ({})",
                        m.dead_reason.as_deref().unwrap_or("dead")
                    ),
                    m.hint.clone(),
                    Some(replay_command(&m.spec, &m.delivery_id) + source.flag()),
                ),
                State::Delivered => (
                    format!("delivered later (attempt {})", m.attempts),
                    None,
                    None,
                ),
                State::Active => ("being sent right now".to_string(), None, None),
                _ => (
                    format!("waiting; next attempt {}", due(m.next_attempt_at_ms, now)),
                    m.hint.clone(),
                    None,
                ),
            }
        }
    };
    FailureRow {
        at: when(r.ts_ms, now),
        spec: r.spec.clone(),
        subscription: r.subscription.clone(),
        event: r.event_type.clone(),
        summary: job.map(|e| summary_of_entry(e, source)).unwrap_or_default(),
        delivery_id: r.delivery_id.clone(),
        attempt: r.attempt,
        outcome: r.outcome.name(),
        what: crate::health::failure_text(r),
        answer: r.response_body.clone().filter(|b| !b.trim().is_empty()),
        now: state_now,
        hint,
        replay,
    }
}

fn due(at_ms: u64, now: u64) -> String {
    if at_ms <= now {
        "due now".into()
    } else {
        format!("in {}", clock::age(at_ms, now))
    }
}

fn dead_rows(jobs: &HashMap<&str, &Entry>, source: &dyn Source, now: u64) -> Vec<DeadRow> {
    let mut dead: Vec<&Entry> = jobs
        .values()
        .copied()
        .filter(|e| e.state == State::Dead)
        .collect();
    let at = |e: &Entry| e.meta.finished_at_ms.unwrap_or(e.meta.created_at_ms);
    dead.sort_by(|a, b| {
        at(b)
            .cmp(&at(a))
            .then_with(|| a.meta.delivery_id.cmp(&b.meta.delivery_id))
    });
    dead.into_iter()
        .take(MAX_DEAD)
        .map(|e| {
            let m = &e.meta;
            let last_error = match (m.last_status, m.last_error.as_deref()) {
                (Some(s), Some(err)) if !err.starts_with("HTTP") => format!("HTTP {s}: {err}"),
                (_, Some(err)) => err.to_string(),
                (Some(s), None) => format!("HTTP {s}"),
                (None, None) => String::new(),
            };
            DeadRow {
                at: when(at(e), now),
                spec: m.spec.clone(),
                subscription: m.subscription.clone(),
                event: m.event_type.clone(),
                summary: summary_of_entry(e, source),
                delivery_id: m.delivery_id.clone(),
                attempts: m.attempts,
                reason: m.dead_reason.clone().unwrap_or_else(|| "dead".into()),
                last_error,
                hint: m.hint.clone().unwrap_or_default(),
                replay: replay_command(&m.spec, &m.delivery_id) + source.flag(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_commands_are_quoted_for_a_shell() {
        assert_eq!(
            replay_command("SPEC-KIT-065", "0b6f-1"),
            "spec-notify replay SPEC-KIT-065 --delivery-id 0b6f-1"
        );
        assert_eq!(
            replay_command("SPEC <img src=x>; rm -rf ~", "id"),
            "spec-notify replay 'SPEC <img src=x>; rm -rf ~' --delivery-id id"
        );
        assert_eq!(
            replay_command("it's", "id"),
            r#"spec-notify replay "it's" --delivery-id id"#
        );
    }

    #[test]
    fn summaries_come_from_the_task_or_the_stage() {
        let task = br#"{"event":{"type":"spec-kit.task.completed"},"task":{"id":"T61","title":"Add <b>it</b>"}}"#;
        assert_eq!(summary_of(task).as_deref(), Some("T61 Add <b>it</b>"));
        let stage = br#"{"event":{"type":"spec-auto.stage.completed","stage":"Plan","status":"success"},"task":{}}"#;
        assert_eq!(summary_of(stage).as_deref(), Some("Plan success"));
        assert_eq!(summary_of(b"{}"), None);
        assert_eq!(summary_of(b"not json"), None);
        let long = format!(r#"{{"task":{{"title":"{}"}}}}"#, "x".repeat(500));
        assert_eq!(
            summary_of(long.as_bytes()).unwrap().chars().count(),
            SUMMARY_CHARS
        );
    }

    #[test]
    fn rates_never_round_a_failure_away() {
        assert_eq!(rate(0, 0), "-");
        assert_eq!(rate(3, 3), "100%");
        assert_eq!(rate(9_999, 10_000), "99.9%");
        assert_eq!(rate(1, 3), "33.3%");
    }

    #[test]
    fn the_collector_keeps_points_and_the_latest_failures() {
        let mut c = Collector::default();
        let mut r = Record::for_job(
            &crate::spool::Meta::new("S", "hook", "a.b.c", "k", 1, 0),
            String::new(),
            1,
            0,
            Outcome::Retry,
        );
        for ts in 0..(MAX_FAILURES as u64 + 5) {
            r.ts_ms = ts;
            c.add(&r);
        }
        r.outcome = Outcome::Requeued;
        c.add(&r);
        r.outcome = Outcome::Delivered;
        c.add(&r);
        assert_eq!(c.points.len(), MAX_FAILURES + 6);
        assert_eq!(c.failures.len(), MAX_FAILURES);
        assert_eq!(c.failures_seen, MAX_FAILURES + 5);
        assert_eq!(
            c.failures.front().unwrap().ts_ms,
            5,
            "the oldest went first"
        );
    }
}
