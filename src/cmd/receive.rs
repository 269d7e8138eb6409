//! `spec-notify receive`: a small local webhook receiver for operators (like
//! `stripe listen`). It verifies signatures when given a secret (401 when bad
//! or missing), prints one line per request on stdout, and answers 204, a
//! chosen `--status`, or 503 for a `--fail-rate` share to rehearse failures.
//!
//! The network side is [`crate::http_server`] (bodies over 16 MiB answered
//! 413 before they are read, read timeouts, keep-alive); this file is its
//! handler. The decision and the printed line are made under one lock, so
//! lines never interleave and `--count N` answers exactly N requests (those
//! the server refuses itself count too) before the process exits.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::mpsc::{self, Sender};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::cli::ReceiveArgs;
use crate::clock;
use crate::exit::{ExitCode, user_error};
use crate::http_server::{Action, Handler, Limits, Request, Server};
use crate::sign;
use crate::verifier::Verifier;

/// Larger bodies are answered 413 unread: no event comes near this.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Validated `receive` flags.
struct Settings {
    listen: SocketAddr,
    verifier: Option<Verifier>,
    status: u16,
    fail_rate: f64,
    count: Option<u64>,
    json: bool,
}

/// The outcome of checking one request's signature.
#[derive(Debug, PartialEq, Eq)]
enum Signature {
    Ok,
    Bad(String),
    Unchecked,
}

impl Signature {
    fn as_str(&self) -> &'static str {
        match self {
            Signature::Ok => "ok",
            Signature::Bad(_) => "bad",
            Signature::Unchecked => "unchecked",
        }
    }
}

/// What gets printed about one request.
struct Seen {
    received_ms: u64,
    method: String,
    path: String,
    delivery_id: Option<String>,
    attempt: Option<String>,
    event_type: Option<String>,
    spec: Option<String>,
    stage: Option<String>,
    status: Option<String>,
    signature: Signature,
    body_bytes: usize,
    answered: u16,
}

pub fn run(args: &ReceiveArgs) -> Result<ExitCode> {
    let settings = settings(args)?;
    let (listen, note) = (settings.listen, describe(&settings));
    let (done, finished) = mpsc::channel();
    let receiver = Receiver {
        settings,
        handled: Mutex::new(0),
        done,
    };
    let limits = Limits {
        max_body_bytes: MAX_BODY,
        ..Limits::default()
    };
    let server = Server::start_with(listen, limits, receiver).with_context(|| {
        format!("failed to listen on {listen} (is another receiver using that port?)")
    })?;
    eprintln!(
        "spec-notify: listening on http://{}/ ({note})",
        server.addr()
    );
    // Without --count nothing is ever sent: receive runs until interrupted.
    let _ = finished.recv();
    // Returns once the last answer is written.
    server.stop();
    Ok(ExitCode::Success)
}

/// The handler: decides, prints and counts each request.
struct Receiver {
    settings: Settings,
    /// Requests answered so far; the lock also keeps printed lines whole.
    handled: Mutex<u64>,
    /// Told once the `--count`th request has been decided.
    done: Sender<()>,
}

impl Handler for Receiver {
    fn handle(&self, request: &Request) -> Action {
        let Some(seen) = self.record(|settings| inspect(request, settings)) else {
            return Action::Close;
        };
        let (headers, body) = match &seen.signature {
            Signature::Bad(reason) => (
                vec![(
                    "Content-Type".to_string(),
                    "text/plain; charset=utf-8".to_string(),
                )],
                format!("{reason}\n").into_bytes(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        Action::Respond(seen.answered, headers, body)
    }

    /// A request the server answered itself (e.g. 413) is printed and
    /// counted like the others.
    fn rejected(&self, request: &Request, status: u16, reason: &str) {
        self.record(|_| seen(request, Signature::Bad(reason.to_string()), status));
    }
}

impl Receiver {
    /// Prints and counts what `look` makes of a request; `None` once
    /// `--count` requests were recorded already.
    fn record(&self, look: impl FnOnce(&Settings) -> Seen) -> Option<Seen> {
        let mut handled = self.handled.lock().unwrap_or_else(|e| e.into_inner());
        if self.settings.count.is_some_and(|n| *handled >= n) {
            return None;
        }
        let seen = look(&self.settings);
        if let Err(e) = print(&seen, self.settings.json) {
            eprintln!("spec-notify: {e:#}");
        }
        *handled += 1;
        if self.settings.count == Some(*handled) {
            // `run` then stops the server, which first writes this answer.
            let _ = self.done.send(());
        }
        Some(seen)
    }
}

fn settings(args: &ReceiveArgs) -> Result<Settings> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        user_error(format!(
            "invalid --listen address `{}`: expected IP:PORT, e.g. 127.0.0.1:8787",
            args.listen
        ))
    })?;
    let verifier = match &args.secret_env {
        None => None,
        Some(var) => Some(Verifier::from_env(args.scheme.into(), var)?),
    };
    let status = args.status.unwrap_or(204);
    if !(200..=599).contains(&status) {
        return Err(user_error(format!(
            "--status {status} is not an HTTP status a receiver can answer (200–599)"
        )));
    }
    if !(0.0..=1.0).contains(&args.fail_rate) {
        return Err(user_error(format!(
            "--fail-rate {} is outside 0.0–1.0 (it is the share of requests answered 503)",
            args.fail_rate
        )));
    }
    if args.count == Some(0) {
        return Err(user_error("--count must be at least 1"));
    }
    Ok(Settings {
        listen,
        verifier,
        status,
        fail_rate: args.fail_rate,
        count: args.count,
        json: args.json,
    })
}

/// The start-up note: what is verified and answered. Never the secret.
fn describe(settings: &Settings) -> String {
    let verifying = match &settings.verifier {
        Some(verifier) => format!("verifying {} signatures", verifier.scheme().as_str()),
        None => "not verifying signatures: pass --secret-env VAR to check them".into(),
    };
    let mut answers = format!("answering {}", settings.status);
    if settings.fail_rate > 0.0 {
        answers.push_str(&format!(", 503 for {:.0}%", settings.fail_rate * 100.0));
    }
    format!("{verifying}; {answers}")
}

/// Verifies one request and picks the answer.
fn inspect(request: &Request, settings: &Settings) -> Seen {
    let signature = match &settings.verifier {
        None => Signature::Unchecked,
        Some(verifier) => match verifier.verify(
            &request.headers,
            &request.body,
            clock::now_ms() / 1000,
            sign::DEFAULT_TOLERANCE_SECS,
        ) {
            Ok(()) => Signature::Ok,
            Err(reason) => Signature::Bad(reason),
        },
    };
    let answered = match &signature {
        Signature::Bad(_) => 401,
        _ if settings.fail_rate > 0.0 && fastrand::f64() < settings.fail_rate => 503,
        _ => settings.status,
    };
    seen(request, signature, answered)
}

/// What gets printed about a request: its headers and envelope fields.
fn seen(request: &Request, signature: Signature, answered: u16) -> Seen {
    let header = |name: &str| request.header(name).map(String::from);
    let envelope: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let field = |section: &str, key: &str| {
        envelope
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .map(String::from)
    };
    Seen {
        received_ms: request.received_at_ms,
        method: request.method.clone(),
        path: request.path.clone(),
        delivery_id: header("X-SpecKit-Id"),
        attempt: header("X-SpecKit-Attempt"),
        event_type: field("event", "type").or_else(|| header("X-SpecKit-Event")),
        spec: field("spec", "id"),
        stage: field("event", "stage"),
        status: field("event", "status"),
        signature,
        body_bytes: request.body.len(),
        answered,
    }
}

fn print(seen: &Seen, json: bool) -> Result<()> {
    let line = if json {
        let reason = match &seen.signature {
            Signature::Bad(reason) => Some(reason.as_str()),
            _ => None,
        };
        json!({
            "received_at": clock::rfc3339(seen.received_ms),
            "method": seen.method,
            "path": seen.path,
            "delivery_id": seen.delivery_id,
            "attempt": seen.attempt.as_deref().and_then(|a| a.trim().parse::<u64>().ok()),
            "event_type": seen.event_type,
            "spec": seen.spec,
            "stage": seen.stage,
            "status": seen.status,
            "signature": seen.signature.as_str(),
            "reason": reason,
            "body_bytes": seen.body_bytes,
            "response_status": seen.answered,
        })
        .to_string()
    } else {
        human_line(seen)
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("failed to write to stdout")
}

/// The line for people; request data is shown with its control characters
/// escaped, so it cannot drive the terminal.
fn human_line(seen: &Seen) -> String {
    let clean = |text: &str| crate::output::one_line(text);
    let show = |v: &Option<String>| clean(v.as_deref().unwrap_or("-"));
    let mut line = format!(
        "{} {} {} {} id={} event={} spec={} stage={} status={} attempt={} signature={}",
        clock::rfc3339(seen.received_ms),
        seen.answered,
        clean(&seen.method),
        clean(&seen.path),
        show(&seen.delivery_id),
        show(&seen.event_type),
        show(&seen.spec),
        show(&seen.stage),
        show(&seen.status),
        show(&seen.attempt),
        seen.signature.as_str(),
    );
    if let Signature::Bad(reason) = &seen.signature {
        line.push_str(&format!(" reason=\"{}\"", clean(reason)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(signature: Signature) -> Seen {
        Seen {
            received_ms: 1_000,
            method: "POST".into(),
            path: "/hook".into(),
            delivery_id: Some("d-1".into()),
            attempt: Some("2".into()),
            event_type: Some("spec-auto.stage.completed".into()),
            spec: Some("SPEC-1\u{1b}]0;title\u{7}\u{9b}2J".into()),
            stage: Some("Plan".into()),
            status: None,
            signature,
            body_bytes: 10,
            answered: 204,
        }
    }

    #[test]
    fn human_line_names_every_field_and_escapes_control_characters() {
        assert_eq!(
            human_line(&seen(Signature::Ok)),
            "1970-01-01T00:00:01.000Z 204 POST /hook id=d-1 event=spec-auto.stage.completed \
             spec=SPEC-1\\u{1b}]0;title\\u{7}\\u{9b}2J stage=Plan status=- attempt=2 signature=ok"
        );
        assert!(
            human_line(&seen(Signature::Bad("missing header X".into())))
                .ends_with("signature=bad reason=\"missing header X\"")
        );
    }
}
