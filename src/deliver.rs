//! One HTTP attempt: builds a delivery's request (the body in the
//! subscription's format, rendered from the envelope at send time and signed
//! as sent; the headers, the attempt's `traceparent` and extra ones
//! included) and POSTs it with a shared
//! ureq agent (keep-alive, no redirects, per-request timeout covering connect
//! and the whole response). Every credential a request carries is
//! remembered by [`crate::redact`] and hidden in the answer before anyone
//! stores or shows it. A subscription without `allow_private_networks`
//! gets an agent whose resolver refuses every private address a host
//! resolves to, at connect time (Svix's approach against SSRF and DNS
//! rebinding). `probe` checks reachability with one bodiless HEAD. Never
//! touches the filesystem.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::Agent;
// `unversioned` may change in any ureq minor release: Cargo.toml pins 3.5.x.
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::config::Subscription;
use crate::sign::{Scheme, Signer};
use crate::trace::{self, Span};
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
    /// This attempt as a span of the emitting pipeline's trace, if any.
    pub trace: Option<&'a Span>,
}

/// The agent every attempt of a run shares; it may reach any address.
pub fn agent(max_concurrency: usize) -> Agent {
    build_agent(max_concurrency, false)
}

/// An agent that refuses to connect to private addresses (see
/// [`crate::address`]), whatever name resolved to them.
pub fn guarded_agent(max_concurrency: usize) -> Agent {
    build_agent(max_concurrency, true)
}

/// The agent a subscription's deliveries must use.
pub fn agent_for(sub: &Subscription, max_concurrency: usize) -> Agent {
    build_agent(max_concurrency, !sub.allow_private_networks)
}

fn build_agent(max_concurrency: usize, guard: bool) -> Agent {
    let config = Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        // Idle connections are descriptors a drain plans for: one per
        // worker per agent, however many endpoints (drain/fds.rs).
        .max_idle_connections(max_concurrency.max(1))
        .max_idle_connections_per_host(max_concurrency.max(1))
        .build();
    Agent::with_parts(
        config,
        DefaultConnector::default(),
        CachingResolver {
            guard,
            ..CachingResolver::default()
        },
    )
}

/// A run's two agents: each subscription uses the one its
/// `allow_private_networks` calls for (they share no connections). The
/// guarded one is made when first needed.
#[derive(Debug)]
pub struct Agents {
    max_concurrency: usize,
    open: Agent,
    guarded: std::sync::OnceLock<Agent>,
}

impl Agents {
    pub fn new(max_concurrency: usize) -> Agents {
        Agents {
            max_concurrency,
            open: agent(max_concurrency),
            guarded: std::sync::OnceLock::new(),
        }
    }

    pub fn for_subscription(&self, sub: &Subscription) -> &Agent {
        match sub.allow_private_networks {
            true => &self.open,
            false => self
                .guarded
                .get_or_init(|| guarded_agent(self.max_concurrency)),
        }
    }
}

/// Why a guarded agent would not connect: the host resolved to a private
/// address. Says which address and which key lets it through.
#[derive(Debug)]
pub struct PrivateAddress {
    host: String,
    ip: std::net::IpAddr,
    kind: &'static str,
}

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = match self.host.parse::<std::net::IpAddr>() {
            Ok(_) => String::new(),
            Err(_) => format!("{} resolved to ", self.host),
        };
        write!(
            f,
            "refused to connect: {host}{}, {}, and this subscription may not reach private networks; if that endpoint is meant to be private, set `allow_private_networks = true` on the subscription (for `emit --url`: pass --allow-private-networks)",
            self.ip, self.kind
        )
    }
}

impl std::error::Error for PrivateAddress {}

/// How long a resolved address is reused.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// ureq resolves a host on every request, on a new thread whenever a
/// timeout is set (ours always is): about 0.7 ms per delivery. Resolving
/// each host once per 30 s keeps the timeout-bounded lookup and drops the
/// per-request thread.
///
/// With `guard`, every address a host resolves to must be public, checked
/// on each request (cached or not), so a name cannot point at the metadata
/// service or the LAN, nor switch to it later (DNS rebinding). A configured
/// HTTP proxy (`HTTPS_PROXY`) is exempt: it resolves the target itself.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
    guard: bool,
}

impl CachingResolver {
    fn check(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        addrs: ResolvedSocketAddrs,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let is_proxy = config
            .proxy()
            .is_some_and(|p| p.host().eq_ignore_ascii_case(host));
        if !self.guard || is_proxy {
            return Ok(addrs);
        }
        for addr in addrs.iter() {
            if let Some(kind) = crate::address::private_kind(addr.ip()) {
                return Err(ureq::Error::Other(Box::new(PrivateAddress {
                    host: host.trim_start_matches('[').trim_end_matches(']').into(),
                    ip: addr.ip(),
                    kind,
                })));
            }
        }
        Ok(addrs)
    }
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
        let cached = cache()
            .get(&key)
            .filter(|(at, _)| at.elapsed() < RESOLVE_TTL)
            .map(|(_, addrs)| addrs.clone());
        if let Some(addrs) = cached {
            return self.check(uri, config, addrs);
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        cache().insert(key, (Instant::now(), addrs.clone()));
        self.check(uri, config, addrs)
    }
}

/// One delivery as it goes on the wire, and as it may be shown.
#[derive(Debug, Clone)]
pub struct Request {
    /// The envelope (`json`) or the chat message rendered from it.
    pub body: Vec<u8>,
    /// Every header, extra header values included: for sending only.
    pub headers: Vec<(String, String)>,
    /// The extra headers (the last ones of `headers`) with their values
    /// redacted; see [`Request::shown_headers`].
    shown_extras: Vec<(String, String)>,
}

impl Request {
    /// Every header with extra header values redacted, for `--print` and a
    /// dry run's evidence (made on demand: a delivery never needs them).
    pub fn shown_headers(&self) -> Vec<(String, String)> {
        let own = self.headers.len() - self.shown_extras.len();
        self.headers[..own]
            .iter()
            .chain(&self.shown_extras)
            .cloned()
            .collect()
    }
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
/// signed as sent, with every header. `signer: None` builds an unsigned
/// per-call target's request, or else a dry run's would-be request
/// (unsigned, and extra header values are not read).
pub fn request(
    sub: &Subscription,
    signer: Option<&Signer>,
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
    if let Some(span) = id.trace {
        headers.push((trace::TRACEPARENT.into(), span.traceparent.clone()));
        if let Some(state) = &span.tracestate {
            headers.push((trace::TRACESTATE.into(), state.clone()));
        }
    }
    if sub.signature == Scheme::Github {
        headers.push((GITHUB_EVENT.into(), id.event_type.into()));
        headers.push((GITHUB_DELIVERY.into(), id.delivery_id.into()));
        headers.push((GITHUB_HOOK_ID.into(), hook_id(&sub.id).to_string()));
    }
    if let Some(signer) = signer {
        let signed = signer
            .headers(id.delivery_id, id.timestamp, &body)
            .map_err(|e| {
                format!(
                    "subscription `{}`: secret in {}: {e}",
                    sub.id,
                    sub.secret_env.as_deref().unwrap_or("?")
                )
            })?;
        headers.extend(signed.into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    let mut shown_extras = Vec::with_capacity(sub.headers.len());
    for extra in &sub.headers {
        shown_extras.push((extra.name.clone(), extra.shown()));
        let value = match signer {
            Some(_) => extra.value(&sub.id)?,
            None if sub.unsigned() => extra.value(&sub.id)?,
            None => extra.shown(),
        };
        if signer.is_some() || sub.unsigned() {
            remember_header_value(&value);
        }
        headers.push((extra.name.clone(), value));
    }
    if let Some(signer) = signer {
        crate::redact::remember(signer.credentials());
    }
    // The path is a credential where it is shown hidden (see
    // `Subscription::shown_url`); the same URL may be both, so the memo is
    // per URL and kind.
    let path_is_secret = sub.url_env.is_some() || sub.per_call || sub.style.format.is_chat();
    let source = if path_is_secret { "path " } else { "" };
    crate::redact::remember_from(&format!("{source}{}", sub.url), || {
        crate::url::credentials(&sub.url, path_is_secret)
    });
    Ok(Request {
        body,
        headers,
        shown_extras,
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
    signer: Option<&Signer>,
    id: AttemptId<'_>,
    envelope: &[u8],
) -> Result<Vec<(String, String)>, String> {
    request(sub, signer, id, envelope).map(|r| r.shown_headers())
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

/// Reaches `url` once with a HEAD request (no body, no signature, no extra
/// headers) to see whether something answers there: any HTTP status is an
/// answer. `Failed` says why nothing did.
pub fn probe(agent: &Agent, url: &str, timeout: Duration) -> (Answer, Duration) {
    let started = Instant::now();
    let request = agent
        .head(url)
        .config()
        .timeout_global(Some(timeout))
        .build();
    let answer = match request.call() {
        Ok(response) => Answer::Response {
            status: response.status().as_u16(),
            retry_after: None,
            disable: false,
            body: Vec::new(),
        },
        Err(error) => Answer::Failed {
            error: describe_error(&error, url, timeout),
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
        ureq::Error::Other(e) if e.is::<PrivateAddress>() => e.to_string(),
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
    fn a_url_seen_first_as_plain_then_as_per_call_has_its_path_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let url = "https://h.example/hooks/PATH-KEY-MEMO-77";
        let text = format!(
            "[spec_ops.webhooks]\nspool_dir = \"{0}/s\"\nevidence_dir = \"{0}/e\"\n[[spec_ops.webhooks.subscriptions]]\nid = \"plain\"\nurl = \"{url}\"\nsecret_env = \"UNSET_MEMO_SECRET\"\n",
            dir.path().display()
        );
        let config = crate::config::parse(&text, &dir.path().join("config.toml")).unwrap();
        let id = AttemptId {
            delivery_id: "d",
            event_type: "a.b.c",
            idempotency_key: "k",
            attempt: 1,
            timestamp: 1,
            trace: None,
        };
        let plain = config.subscription("plain").unwrap();
        request(plain, None, id, b"{}").unwrap();
        assert_eq!(
            crate::redact::hide_str("PATH-KEY-MEMO-77"),
            "PATH-KEY-MEMO-77"
        );
        let target = crate::spool::Target {
            url: url.into(),
            secret_env: None,
            signature: None,
            format: None,
            allow_private_networks: false,
        };
        let per_call = config.per_call(&target).unwrap();
        request(&per_call, None, id, b"{}").unwrap();
        assert_eq!(
            crate::redact::hide_str("echo PATH-KEY-MEMO-77"),
            "echo <redacted>"
        );
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
    fn a_guarded_agent_refuses_a_name_that_resolves_to_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("http://localhost:{port}/hook"),
            format!("http://127.0.0.1:{port}/hook"),
        ] {
            let (answer, _) = send(&guarded_agent(1), &url, &[], b"{}", Duration::from_secs(5));
            let error = answer
                .error()
                .unwrap_or_else(|| panic!("{url}: {answer:?}"));
            assert!(error.contains("refused to connect"), "{error}");
            assert!(
                error.contains("127.0.0.1") || error.contains("::1"),
                "{error}"
            );
            assert!(error.contains("allow_private_networks = true"), "{error}");
            let (answer, _) = probe(&guarded_agent(1), &url, Duration::from_secs(5));
            assert!(
                answer
                    .error()
                    .is_some_and(|e| e.contains("refused to connect"))
            );
        }
        assert!(
            listener.accept().is_err(),
            "nothing may connect to a private address"
        );
        let url = serve_once("HTTP/1.1 204 No Content\r\n\r\n");
        let (answer, _) = send(&agent(1), &url, &[], b"{}", Duration::from_secs(5));
        assert_eq!(answer.status(), Some(204), "the open agent connects");
    }

    #[test]
    fn a_probe_is_a_bodiless_head() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook?token=x", listener.local_addr().unwrap());
        let seen = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                head.push_str(&line);
                line.clear();
            }
            (&stream)
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            head
        });
        let (answer, _) = probe(&agent(1), &url, Duration::from_secs(5));
        assert_eq!(answer.status(), Some(405), "any status is an answer");
        let head = seen.join().unwrap();
        assert!(head.starts_with("HEAD /hook?token=x HTTP/1.1"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("content-length"),
            "{head}"
        );
        assert!(!head.contains("X-SpecKit"), "{head}");
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
