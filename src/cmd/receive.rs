//! `spec-notify receive`: a small local webhook receiver for operators (like
//! `stripe listen`). It verifies signatures when given a secret (401 when bad
//! or missing), prints one line per request on stdout, and answers 204, a
//! chosen `--status`, or 503 for a `--fail-rate` share to rehearse failures.
//! Requests are handled one at a time, so the output never interleaves.

use std::io::Read;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tiny_http::{Header, Request, Response, Server, StatusCode};

use super::verify::scheme_of;
use crate::cli::ReceiveArgs;
use crate::clock;
use crate::config::{Scheme, Secret, secret_from_env};
use crate::exit::{ExitCode, user_error};
use crate::sign;

/// Larger bodies are answered 413 unread: no event comes near this.
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Validated `receive` flags.
struct Settings {
    listen: SocketAddr,
    verifier: Option<(Scheme, Secret)>,
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
    let server = Server::http(settings.listen).map_err(|e| {
        anyhow::anyhow!(
            "failed to listen on {}: {e} (is another receiver using that port?)",
            settings.listen
        )
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .context("the receiver's listener has no IP address")?;
    eprintln!(
        "spec-notify: listening on http://{bound}/ ({})",
        describe(&settings)
    );
    let mut handled = 0u64;
    while settings.count.is_none_or(|n| handled < n) {
        let request = server
            .recv()
            .with_context(|| format!("failed to accept a request on {bound}"))?;
        let seen = handle(request, &settings);
        print(&seen, settings.json)?;
        handled += 1;
    }
    Ok(ExitCode::Success)
}

fn settings(args: &ReceiveArgs) -> Result<Settings> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        user_error(format!(
            "invalid --listen address `{}`: expected IP:PORT, e.g. 127.0.0.1:8787",
            args.listen
        ))
    })?;
    let scheme = scheme_of(args.scheme);
    let verifier = match &args.secret_env {
        None => None,
        Some(var) => {
            let secret = secret_from_env(var).ok_or_else(|| {
                user_error(format!(
                    "environment variable {var} (--secret-env) is unset or empty: export the webhook secret in it"
                ))
            })?;
            sign::check_secret(scheme, &secret).map_err(|e| {
                user_error(format!(
                    "the secret in {var} cannot verify {}: {e}",
                    scheme.as_str()
                ))
            })?;
            Some((scheme, secret))
        }
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
        Some((scheme, _)) => format!("verifying {} signatures", scheme.as_str()),
        None => "not verifying signatures: pass --secret-env VAR to check them".into(),
    };
    let mut answers = format!("answering {}", settings.status);
    if settings.fail_rate > 0.0 {
        answers.push_str(&format!(", 503 for {:.0}%", settings.fail_rate * 100.0));
    }
    format!("{verifying}; {answers}")
}

fn handle(mut request: Request, settings: &Settings) -> Seen {
    let received_ms = clock::now_ms();
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body);
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    };
    let signature = match (&read, body.len() as u64 > MAX_BODY) {
        (Err(e), _) => Signature::Bad(format!("could not read the body: {e}")),
        (_, true) => Signature::Bad(format!("body larger than {MAX_BODY} bytes")),
        _ => match &settings.verifier {
            None => Signature::Unchecked,
            Some((scheme, secret)) => match sign::verify(
                *scheme,
                secret,
                &header,
                &body,
                received_ms / 1000,
                sign::DEFAULT_TOLERANCE_SECS,
            ) {
                Ok(()) => Signature::Ok,
                Err(reason) => Signature::Bad(reason),
            },
        },
    };
    let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |section: &str, key: &str| {
        envelope
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let answered = match &signature {
        Signature::Bad(_) if body.len() as u64 > MAX_BODY => 413,
        Signature::Bad(_) => 401,
        _ if settings.fail_rate > 0.0 && fastrand::f64() < settings.fail_rate => 503,
        _ => settings.status,
    };
    let seen = Seen {
        received_ms,
        method: request.method().as_str().to_string(),
        path: request.url().to_string(),
        delivery_id: header("X-SpecKit-Id"),
        attempt: header("X-SpecKit-Attempt"),
        event_type: field("event", "type").or_else(|| header("X-SpecKit-Event")),
        spec: field("spec", "id"),
        stage: field("event", "stage"),
        status: field("event", "status"),
        signature,
        body_bytes: body.len(),
        answered,
    };
    respond(request, &seen);
    seen
}

fn respond(request: Request, seen: &Seen) {
    let response = match &seen.signature {
        Signature::Bad(reason) => {
            let mut response = Response::from_string(format!("{reason}\n"))
                .with_status_code(StatusCode(seen.answered));
            if let Ok(h) = Header::from_bytes("Content-Type", "text/plain; charset=utf-8") {
                response.add_header(h);
            }
            response
        }
        _ => Response::from_string(String::new()).with_status_code(StatusCode(seen.answered)),
    };
    // A sender that hung up before the answer is not the receiver's problem.
    if let Err(e) = request.respond(response) {
        eprintln!("spec-notify: could not answer the request: {e}");
    }
}

/// Drops control characters, so request data cannot drive the terminal.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
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

fn human_line(seen: &Seen) -> String {
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
            spec: Some("SPEC-1\u{1b}[31m".into()),
            stage: Some("Plan".into()),
            status: None,
            signature,
            body_bytes: 10,
            answered: 204,
        }
    }

    #[test]
    fn human_line_names_every_field_and_strips_control_characters() {
        assert_eq!(
            human_line(&seen(Signature::Ok)),
            "1970-01-01T00:00:01.000Z 204 POST /hook id=d-1 event=spec-auto.stage.completed \
             spec=SPEC-1[31m stage=Plan status=- attempt=2 signature=ok"
        );
        assert!(
            human_line(&seen(Signature::Bad("missing header X".into())))
                .ends_with("signature=bad reason=\"missing header X\"")
        );
    }
}
