//! A scriptable loopback HTTP receiver for end-to-end tests.
//!
//! It listens on `127.0.0.1:0`, records every request (method, path, headers,
//! raw body, arrival time) and answers from a per-path script of [`Reply`]s,
//! then from the default (204). Each connection gets its own thread and is
//! kept alive, so concurrent drains (4 connections each) are served at once.
//!
//! The HTTP side is `spec_notify::http_server` (std::net, thread per connection).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use spec_notify::http_server::{Action, Request, Server};

/// How often a sleeping `Slow` reply checks for shutdown.
const POLL: Duration = Duration::from_millis(50);

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An empty response with this status.
    Status(u16),
    /// An empty response with this status and these headers (e.g. `Retry-After`).
    Headers(u16, Vec<(String, String)>),
    /// This status with this body (a receiver that says why it refused).
    Body(u16, String),
    /// Sleeps this long, then answers this status (to exceed a client timeout).
    Slow(Duration, u16),
    /// Closes the connection without any response; the request is still recorded.
    Close,
    /// This status with the request echoed as the body, like httpbin: the
    /// request line (query included), every header, a blank line, the body.
    Echo(u16),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent, query string included.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Unix milliseconds when the request head was received.
    pub received_at_ms: u64,
}

impl Recorded {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 (lossy), for assertions and messages.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The path without its query string.
    pub fn route(&self) -> &str {
        route(&self.path)
    }
}

struct Inner {
    scripts: HashMap<String, VecDeque<Reply>>,
    default: Reply,
    requests: Vec<Recorded>,
}

struct Shared {
    inner: Mutex<Inner>,
    arrived: Condvar,
    stop: AtomicBool,
}

impl Shared {
    /// The state, even if a worker panicked while holding the lock: the
    /// records are plain data and stay meaningful.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A loopback HTTP server that records requests and answers from a script.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Server,
}

impl Receiver {
    /// Listens on `127.0.0.1:0` and answers 204 until scripted otherwise.
    pub fn start() -> Receiver {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                scripts: HashMap::new(),
                default: Reply::Status(204),
                requests: Vec::new(),
            }),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let handler_shared = Arc::clone(&shared);
        let server = Server::start("127.0.0.1:0", move |request: &Request| {
            handle(request, &handler_shared)
        })
        .expect("bind a loopback port for the receiver");
        Receiver {
            addr: server.addr(),
            shared,
            _server: server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/path` (a leading `/` is added when missing).
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{slash}{path}", self.addr)
    }

    /// Replies for `path` (without query), used in order before the default.
    /// Appends to whatever is still scripted for that path.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.shared
            .lock()
            .scripts
            .entry(normalise(path))
            .or_default()
            .extend(replies);
    }

    /// The reply for requests with nothing scripted.
    pub fn set_default(&self, reply: Reply) {
        self.shared.lock().default = reply;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The requests to `path` (query string ignored), in arrival order.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        let path = normalise(path);
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.route() == path)
            .cloned()
            .collect()
    }

    /// Waits until at least `n` requests arrived or `timeout` passed; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.lock();
        while inner.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inner = self
                .shared
                .arrived
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        inner.requests.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst); // ends Slow replies early
    }
}

fn route(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

fn normalise(path: &str) -> String {
    let path = route(path);
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// Records the request and picks its reply: the path's script first, then the default.
fn handle(request: &Request, shared: &Shared) -> Action {
    let recorded = Recorded {
        method: request.method.clone(),
        path: request.path.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
        received_at_ms: request.received_at_ms,
    };
    let reply = {
        let mut inner = shared.lock();
        let scripted = inner
            .scripts
            .get_mut(recorded.route())
            .and_then(VecDeque::pop_front);
        let reply = scripted.unwrap_or_else(|| inner.default.clone());
        inner.requests.push(recorded);
        reply
    };
    shared.arrived.notify_all();
    match reply {
        Reply::Status(status) => Action::Respond(status, Vec::new(), Vec::new()),
        Reply::Headers(status, headers) => Action::Respond(status, headers, Vec::new()),
        Reply::Body(status, body) => Action::Respond(
            status,
            vec![("Content-Type".into(), "text/plain".into())],
            body.into_bytes(),
        ),
        Reply::Slow(delay, status) => {
            let until = Instant::now() + delay;
            while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            }
            Action::Respond(status, Vec::new(), Vec::new())
        }
        Reply::Close => Action::Close,
        Reply::Echo(status) => {
            let mut echo = format!("{} {}\n", request.method, request.path);
            for (name, value) in &request.headers {
                echo.push_str(&format!("{name}: {value}\n"));
            }
            echo.push('\n');
            let mut body = echo.into_bytes();
            body.extend_from_slice(&request.body);
            Action::Respond(
                status,
                vec![("Content-Type".into(), "text/plain".into())],
                body,
            )
        }
    }
}
