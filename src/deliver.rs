//! One HTTP attempt: builds a delivery's request (the body in the
//! subscription's format, rendered from the envelope at send time and signed
//! as sent; the headers, extra ones included) and POSTs it with a shared
//! ureq agent (keep-alive, no redirects, per-request timeout covering connect
//! and the whole response). Every credential a request carries is
//! remembered by [`crate::redact`] and hidden in the answer before anyone
//! stores or shows it. Never touches the filesystem.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::Agent;
// `unversioned` may change in any ureq minor release: Cargo.toml pins 3.5.x.
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::config::Subscription;
use crate::sign::{self, Scheme, Secret};
use crate::url::redact_url_path;

pub const USER_AGENT: &str = concat!("spec-notify/", env!("CARGO_PKG_VERSION"));
/// Response bytes read per attempt; enough for the evidence excerpt.
const RESPONSE_LIMIT: u64 = 64 * 1024;

/// What came back from one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response {
        status: u16,
        retry_after: Option<String>,
        /// The receiver asked for no more deliveries (`webhook-delivery: disable`).
        disable: bool,
        body: Vec<u8>,
    },
    Failed {
        error: String,
    },
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Response { status, .. } => Some(*status),
            Answer::Failed { .. } => None,
        }
    }

    pub fn retry_after(&self) -> Option<&str> {
        match self {
            Answer::Response { retry_after, .. } => retry_after.as_deref(),
            Answer::Failed { .. } => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Answer::Failed { error } => Some(error),
            Answer::Response { .. } => None,
        }
    }

    /// The endpoint asked to stop deliveries: 410 Gone, or the Standard
    /// Webhooks `webhook-delivery: disable` header.
    pub fn disables(&self) -> bool {
        matches!(
            self,
            Answer::Response { status: 410, .. } | Answer::Response { disable: true, .. }
        )
    }

    pub fn body(&self) -> &[u8] {
        match self {
            Answer::Response { body, .. } => body,
            Answer::Failed { .. } => &[],
        }
    }

    /// A one-line description for `last_error`: `HTTP 503` or the transport error.
    pub fn describe(&self) -> String {
        match self {
            Answer::Response { status, .. } => format!("HTTP {status}"),
            Answer::Failed { error } => error.clone(),
        }
    }
}

/// Identifies one attempt of one job.
#[derive(Debug, Clone, Copy)]
pub struct AttemptId<'a> {
    pub delivery_id: &'a str,
    pub event_type: &'a str,
    pub idempotency_key: &'a str,
    pub attempt: u32,
    pub timestamp: u64,
}

/// The agent every attempt of a run shares.
pub fn agent(max_concurrency: usize) -> Agent {
    let config = Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .max_idle_connections_per_host(max_concurrency.max(1))
        .build();
    Agent::with_parts(
        config,
        DefaultConnector::default(),
        CachingResolver::default(),
    )
}

/// How long a resolved address is reused.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// ureq resolves a host on every request, on a new thread whenever a
/// timeout is set (ours always is): about 0.7 ms per delivery. Resolving
/// each host once per 30 s keeps the timeout-bounded lookup and drops the
/// per-request thread.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str())
        );
        let cache = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, addrs)) = cache()
            .get(&key)
            .filter(|(at, _)| at.elapsed() < RESOLVE_TTL)
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        cache().insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// One delivery as it goes on the wire, and as it may be shown.
#[derive(Debug, Clone)]
pub struct Request {
    /// The envelope (`json`) or the chat message rendered from it.
    pub body: Vec<u8>,
    /// Every header, extra header values included: for sending only.
    pub headers: Vec<(String, String)>,
    /// The same headers with extra header values redacted, for `--print`
    /// and evidence.
    pub shown_headers: Vec<(String, String)>,
}

/// GitHub's headers: `X-GitHub-Event`, `X-GitHub-Delivery`, `X-GitHub-Hook-ID`.
pub const GITHUB_EVENT: &str = "X-GitHub-Event";
pub const GITHUB_DELIVERY: &str = "X-GitHub-Delivery";
pub const GITHUB_HOOK_ID: &str = "X-GitHub-Hook-ID";

/// A stable number per subscription for `X-GitHub-Hook-ID` (GitHub's is the
/// numeric id of the hook): the first 31 bits of SHA-256 of the id, so it
/// fits every receiver's integer type.
pub fn hook_id(subscription: &str) -> u32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(subscription.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) >> 1;
    n.max(1)
}

/// Builds a delivery of `envelope`: the body in the subscription's format,
/// signed as sent, with every header. `secret: None` builds a dry run's
/// would-be request: unsigned, and extra header values are not read.
pub fn request(
    sub: &Subscription,
    secret: Option<(&Secret, Option<&Secret>)>,
    id: AttemptId<'_>,
    envelope: &[u8],
) -> Result<Request, String> {
    let body = crate::format::render(&sub.style, envelope).into_owned();
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".into(), "application/json".into()),
        ("User-Agent".into(), USER_AGENT.into()),
        ("X-SpecKit-Event".into(), id.event_type.into()),
        ("X-SpecKit-Id".into(), id.delivery_id.into()),
        (
            "X-SpecKit-Request-Timestamp".into(),
            id.timestamp.to_string(),
        ),
        ("X-SpecKit-Attempt".into(), id.attempt.to_string()),
        (
            "X-SpecKit-Idempotency-Key".into(),
            id.idempotency_key.into(),
        ),
    ];
    if sub.signature == Scheme::Github {
        headers.push((GITHUB_EVENT.into(), id.event_type.into()));
        headers.push((GITHUB_DELIVERY.into(), id.delivery_id.into()));
        headers.push((GITHUB_HOOK_ID.into(), hook_id(&sub.id).to_string()));
    }
    if let Some((secret, previous)) = secret {
        let signed = sign::signature_headers(
            sub.signature,
            secret,
            previous,
            id.delivery_id,
            id.timestamp,
            &body,
        )
        .map_err(|e| {
            format!(
                "subscription `{}`: secret in {}: {e}",
                sub.id,
                sub.secret_env.as_deref().unwrap_or("?")
            )
        })?;
        headers.extend(signed.into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    let mut shown_headers = headers.clone();
    for extra in &sub.headers {
        shown_headers.push((extra.name.clone(), extra.shown()));
        let value = match secret {
            Some(_) => extra.value(&sub.id)?,
            None => extra.shown(),
        };
        if secret.is_some() {
            remember_header_value(&value);
        }
        headers.push((extra.name.clone(), value));
    }
    if let Some((secret, previous)) = secret {
        for secret in std::iter::once(secret).chain(previous) {
            let value = secret.as_str();
            crate::redact::remember([value, value.strip_prefix("whsec_").unwrap_or(value)]);
        }
    }
    crate::redact::remember(crate::url::credentials(&sub.url, sub.url_env.is_some()));
    Ok(Request {
        body,
        headers,
        shown_headers,
    })
}

/// An extra header's value is a credential (`Authorization`, an API key);
/// so is its last word (the token of `Bearer <token>`).
fn remember_header_value(value: &str) {
    let token = value.rsplit(' ').next().unwrap_or(value);
    crate::redact::remember([value, token]);
}

/// The headers of a delivery as shown (extra header values redacted): what
/// a dry run logs. `secret: None` leaves them unsigned.
pub fn headers(
    sub: &Subscription,
    secret: Option<(&Secret, Option<&Secret>)>,
    id: AttemptId<'_>,
    envelope: &[u8],
) -> Result<Vec<(String, String)>, String> {
    request(sub, secret, id, envelope).map(|r| r.shown_headers)
}

/// POSTs `body` and reports the answer and the latency. Transport errors are
/// answers too (`Failed`), never `Err`: the caller decides what they mean.
pub fn send(
    agent: &Agent,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> (Answer, Duration) {
    let started = Instant::now();
    let mut request = agent
        .post(url)
        .config()
        .timeout_global(Some(timeout))
        .build();
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let answer = match request.send(body) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let disable = response
                .headers()
                .get("webhook-delivery")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("disable"));
            let mut bytes = Vec::new();
            let _ = response
                .body_mut()
                .as_reader()
                .take(RESPONSE_LIMIT)
                .read_to_end(&mut bytes);
            Answer::Response {
                status,
                retry_after,
                disable,
                body: crate::redact::hide(&bytes).into_owned(),
            }
        }
        Err(error) => Answer::Failed {
            error: crate::redact::hide_str(&describe_error(&error, url, timeout)).into_owned(),
        },
    };
    (answer, started.elapsed())
}

/// A transport error in words, with the URL redacted wherever it appears
/// (all but its first path segment: `send` cannot tell a secret path).
fn describe_error(error: &ureq::Error, url: &str, timeout: Duration) -> String {
    let text = match error {
        ureq::Error::Timeout(_) => format!("timed out after {} ms", timeout.as_millis()),
        ureq::Error::HostNotFound => "host not found (DNS)".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Io(e) => format!("connection error: {e}"),
        other => other.to_string(),
    };
    let mut text = text.replace(url, &redact_url_path(url));
    if let Some(path) = url
        .parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.path_and_query().map(|p| p.as_str().to_string()))
        .filter(|p| p.len() > 1)
    {
        text = text.replace(&path, "/<redacted>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A one-shot loopback server answering `response` to the first request.
    fn serve_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            (&stream).write_all(response.as_bytes()).unwrap();
        });
        format!("http://{addr}/hook")
    }

    #[test]
    fn redirects_are_answers_not_followed() {
        let url = serve_once(
            "HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n",
        );
        let (answer, _) = send(&agent(1), &url, &[], b"{}", Duration::from_secs(5));
        assert_eq!(answer.status(), Some(301));
    }

    #[test]
    fn retry_after_is_read() {
        let url = serve_once("HTTP/1.1 429 Slow\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\nno");
        let (answer, _) = send(&agent(1), &url, &[], b"{}", Duration::from_secs(5));
        assert_eq!(
            answer,
            Answer::Response {
                status: 429,
                retry_after: Some("7".into()),
                disable: false,
                body: b"no".to_vec()
            }
        );
    }

    #[test]
    fn refused_connection_is_a_failed_answer() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (answer, _) = send(
            &agent(1),
            &format!("http://127.0.0.1:{port}/"),
            &[],
            b"{}",
            Duration::from_secs(2),
        );
        assert!(answer.error().is_some(), "{answer:?}");
    }
}
