//! `spec-notify receive`: a small local webhook receiver for operators (like
//! `stripe listen`). It verifies signatures when given a secret (401 when bad
//! or missing), prints one line per request on stdout, and answers 204, a
//! chosen `--status`, or 503 for a `--fail-rate` share to rehearse failures.
//!
//! Each connection has its own thread (keep-alive, as drain uses), reading
//! requests with [`crate::loopback::read_request`]; the decision and the
//! printed line are made under one lock, so lines never interleave and
//! `--count N` answers exactly N requests before the process exits. Not
//! tiny_http: its task pool can queue a new connection behind idle keep-alive
//! ones (see `crate::loopback`), which looks like a slow endpoint.

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::verify::scheme_of;
use crate::cli::ReceiveArgs;
use crate::clock;
use crate::config::secret_from_env;
use crate::exit::{ExitCode, user_error};
use crate::loopback::{self, Request};
use crate::sign::{self, Scheme, Secret};

/// Larger bodies are answered 413: no event comes near this.
const MAX_BODY: usize = 16 * 1024 * 1024;

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
    let listener = TcpListener::bind(settings.listen).with_context(|| {
        format!(
            "failed to listen on {} (is another receiver using that port?)",
            settings.listen
        )
    })?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("failed to read the address bound for {}", settings.listen))?;
    eprintln!(
        "spec-notify: listening on http://{bound}/ ({})",
        describe(&settings)
    );
    let (done, finished) = mpsc::channel();
    let shared = Arc::new(Shared {
        settings,
        handled: Mutex::new(0),
        done,
    });
    let acceptor = Arc::clone(&shared);
    std::thread::spawn(move || {
        // A failed accept (a client gone already, too many open files)
        // concerns that client only: skip it.
        for stream in listener.incoming().flatten() {
            let shared = Arc::clone(&acceptor);
            std::thread::spawn(move || serve(&stream, &shared));
        }
    });
    // Without --count nothing is ever sent: receive runs until interrupted.
    let _ = finished.recv();
    Ok(ExitCode::Success)
}

/// What every connection thread shares.
struct Shared {
    settings: Settings,
    /// Requests answered so far; the lock also keeps printed lines whole.
    handled: Mutex<u64>,
    /// Told once the `--count`th answer has been written.
    done: Sender<()>,
}

/// Answers requests on one connection until it closes, the client asks to
/// close, or `--count` is reached.
fn serve(stream: &TcpStream, shared: &Shared) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    while let Some(request) = loopback::read_request(&mut reader) {
        let (seen, last) = {
            let mut handled = shared.handled.lock().unwrap_or_else(|e| e.into_inner());
            if shared.settings.count.is_some_and(|n| *handled >= n) {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            let seen = inspect(&request, &shared.settings);
            if let Err(e) = print(&seen, shared.settings.json) {
                eprintln!("spec-notify: {e:#}");
            }
            *handled += 1;
            (seen, shared.settings.count == Some(*handled))
        };
        let written = respond(stream, &seen);
        if last {
            let _ = shared.done.send(());
            return;
        }
        let wants_close = request
            .header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if !written || wants_close {
            return;
        }
    }
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

/// Verifies and describes one request, and picks the answer.
fn inspect(request: &Request, settings: &Settings) -> Seen {
    let received_ms = request.received_at_ms;
    let body = &request.body;
    let header = |name: &str| request.header(name).map(String::from);
    let too_large = body.len() > MAX_BODY;
    let signature = match &settings.verifier {
        _ if too_large => Signature::Bad(format!("body larger than {MAX_BODY} bytes")),
        None => Signature::Unchecked,
        Some((scheme, secret)) => match sign::verify(
            *scheme,
            secret,
            &header,
            body,
            clock::now_ms() / 1000,
            sign::DEFAULT_TOLERANCE_SECS,
        ) {
            Ok(()) => Signature::Ok,
            Err(reason) => Signature::Bad(reason),
        },
    };
    let envelope: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |section: &str, key: &str| {
        envelope
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let answered = match &signature {
        _ if too_large => 413,
        Signature::Bad(_) => 401,
        _ if settings.fail_rate > 0.0 && fastrand::f64() < settings.fail_rate => 503,
        _ => settings.status,
    };
    Seen {
        received_ms,
        method: request.method.clone(),
        path: request.path.clone(),
        delivery_id: header("X-SpecKit-Id"),
        attempt: header("X-SpecKit-Attempt"),
        event_type: field("event", "type").or_else(|| header("X-SpecKit-Event")),
        spec: field("spec", "id"),
        stage: field("event", "stage"),
        status: field("event", "status"),
        signature,
        body_bytes: body.len(),
        answered,
    }
}

/// Writes the answer (the reason as text for a 401); false when the
/// connection is gone. A sender that hung up is not the receiver's problem.
fn respond(mut stream: &TcpStream, seen: &Seen) -> bool {
    let body = match &seen.signature {
        Signature::Bad(reason) => format!("{reason}\n"),
        _ => String::new(),
    };
    let status = seen.answered;
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    // RFC 9110: no Content-Length on 204; every other answer states its length.
    if status != 204 {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .and_then(|()| stream.flush())
        .is_ok()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
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
