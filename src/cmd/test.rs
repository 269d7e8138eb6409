//! `spec-notify test SPEC [--subscription ID]`: send one signed sample event
//! (type `spec-notify.test`) to a subscription right now, without the spool,
//! in the subscription's format and report status, latency and the
//! response; `--print` shows the exact request instead (the rendered body,
//! extra header values redacted). The attempt is logged in the SPEC's
//! evidence. With one subscription in the config `--subscription` may be
//! left out.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::cli::TestArgs;
use crate::clock;
use crate::config::{Config, Subscription};
use crate::deliver::{self, AttemptId};
use crate::envelope;
use crate::evidence::{Outcome, Record, excerpt};
use crate::exit::{ExitCode, user_error};
use crate::output;

pub fn run(ctx: &Ctx, args: &TestArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let sub = find_subscription(&config, args.subscription.as_deref())?;
    let signer = sub.signer().map_err(user_error)?;
    let now = clock::now_ms();
    let event = envelope::test_event(&args.spec);
    let body = event.render(0, &clock::rfc3339(now));
    let delivery_id = uuid::Uuid::new_v4().to_string();
    let id = AttemptId {
        delivery_id: &delivery_id,
        event_type: &event.event_type,
        idempotency_key: &event.idempotency_key,
        attempt: 1,
        timestamp: now / 1000,
        trace: None,
    };
    let request = deliver::request(sub, Some(&signer), id, &body).map_err(user_error)?;
    if args.print {
        print_request(sub, &request)?;
        return Ok(ExitCode::Success);
    }
    let timeout = Duration::from_millis(sub.retry.per_request_timeout_ms);
    let (answer, latency) = deliver::send(
        &deliver::agent_for(sub, 1),
        &sub.url,
        &request.headers,
        &request.body,
        timeout,
    );
    let ok = answer.status().is_some_and(|s| (200..300).contains(&s));
    let record = Record {
        ts: clock::rfc3339(now),
        ts_ms: now,
        delivery_id: delivery_id.clone(),
        spec: args.spec.clone(),
        subscription: sub.id.clone(),
        event_type: event.event_type.clone(),
        attempt: 1,
        url: sub.shown_url(),
        status: answer.status(),
        error: answer.error().map(String::from),
        latency_ms: Some(latency.as_millis() as u64),
        outcome: Outcome::Test,
        response_body: Some(excerpt(answer.body())).filter(|b| !b.is_empty()),
        next_attempt_at: None,
        request: None,
        trace_id: None,
        span_id: None,
    };
    super::evidence(&config, &args.spec).append(std::slice::from_ref(&record))?;
    if args.json {
        output::print_json(
            &json!({"ok": ok, "delivery_id": delivery_id, "url": record.url, "status": record.status,
            "error": record.error, "latency_ms": record.latency_ms, "response": record.response_body}),
        )?;
    } else {
        let result = match (&record.status, &record.error) {
            (Some(status), _) => format!("HTTP {status}"),
            (None, Some(error)) => output::one_line(error),
            (None, None) => "no answer".into(),
        };
        let verdict = if ok {
            output::paint("ok", "32")
        } else {
            output::paint("FAILED", "31")
        };
        println!(
            "{verdict}: {} answered {result} in {} ms (delivery id {delivery_id})",
            record.url,
            latency.as_millis()
        );
        if let Some(body) = &record.response_body {
            println!("response: {}", output::sanitize(body.trim_end()));
        }
    }
    Ok(if ok {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// The subscription `id` names; without one, the config's only one.
fn find_subscription<'a>(config: &'a Config, id: Option<&str>) -> Result<&'a Subscription> {
    let known: Vec<&str> = config.subscriptions.iter().map(|s| s.id.as_str()).collect();
    let Some(id) = id else {
        return match config.subscriptions.as_slice() {
            [only] => Ok(only),
            [] => Err(user_error(format!(
                "`{}` has no subscription to test; add one (`spec-notify subscriptions add`)",
                config.path.display()
            ))),
            _ => Err(user_error(format!(
                "`{}` has {} subscriptions: name one with --subscription ({})",
                config.path.display(),
                known.len(),
                known.join(", ")
            ))),
        };
    };
    config.subscription(id).ok_or_else(|| {
        user_error(format!(
            "no subscription `{id}` in `{}`; known: {}",
            config.path.display(),
            known.join(", ")
        ))
    })
}

/// The request as it would go on the wire (URL and extra header values
/// redacted, secrets never shown), with the body as rendered.
fn print_request(sub: &Subscription, request: &deliver::Request) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "POST {}", sub.shown_url())?;
    for (name, value) in &request.shown_headers() {
        writeln!(out, "{name}: {value}")?;
    }
    writeln!(out)?;
    out.write_all(&request.body)?;
    writeln!(out)?;
    Ok(())
}
