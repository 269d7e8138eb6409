//! A scriptable loopback HTTP receiver for end-to-end tests.
//!
//! It listens on `127.0.0.1:0`, records every request (method, path, headers,
//! raw body, arrival time) and answers from a per-path script of [`Reply`]s,
//! then from the default (204). Each connection gets its own thread and is
//! kept alive, so concurrent drains (4 connections each) are served at once.
//!
//! It speaks just enough HTTP/1.1 on `std::net` (Content-Length bodies,
//! keep-alive) instead of using tiny_http: tiny_http 0.12's task pool can
//! leave a new connection's task queued behind long-lived keep-alive tasks
//! until some client hangs up, which showed up as 5-second client timeouts
//! under two concurrent drains. Owning the socket also makes
//! [`Reply::Close`] a plain shutdown: the client sees EOF with no response.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a sleeping `Slow` reply checks for shutdown.
const POLL: Duration = Duration::from_millis(50);

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An empty response with this status.
    Status(u16),
    /// An empty response with this status and these headers (e.g. `Retry-After`).
    Headers(u16, Vec<(String, String)>),
    /// Sleeps this long, then answers this status (to exceed a client timeout).
    Slow(Duration, u16),
    /// Closes the connection without any response; the request is still recorded.
    Close,
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
    acceptor: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `127.0.0.1:0` and answers 204 until scripted otherwise.
    pub fn start() -> Receiver {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for the receiver");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                scripts: HashMap::new(),
                default: Reply::Status(204),
                requests: Vec::new(),
            }),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let shared = Arc::clone(&accept_shared);
                    std::thread::spawn(move || serve(stream, &shared));
                }
            }
        });
        Receiver {
            addr,
            shared,
            acceptor: Some(acceptor),
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
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the blocking accept
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Connection threads end when their clients hang up.
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Serves one connection: requests in a keep-alive loop until the client
/// closes, a reply closes, or the client asked for `Connection: close`.
fn serve(stream: TcpStream, shared: &Shared) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    while let Some(recorded) = read_request(&mut reader) {
        let wants_close = recorded
            .header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
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
        if !answer(&stream, reply, shared) || wants_close {
            return;
        }
    }
}

/// Reads one request (head and Content-Length body); `None` at EOF or on garbage.
fn read_request(reader: &mut impl BufRead) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let received_at_ms = now_ms();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    // A client that hangs up mid-body still gets its partial request recorded.
    let read = read_up_to(reader, &mut body);
    body.truncate(read);
    Some(Recorded {
        method,
        path,
        headers,
        body,
        received_at_ms,
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

/// Writes the reply; false when the connection must not be used again.
fn answer(mut stream: &TcpStream, reply: Reply, shared: &Shared) -> bool {
    let (status, headers) = match reply {
        Reply::Status(status) => (status, Vec::new()),
        Reply::Headers(status, headers) => (status, headers),
        Reply::Slow(delay, status) => {
            let until = Instant::now() + delay;
            while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            }
            (status, Vec::new())
        }
        Reply::Close => {
            let _ = stream.shutdown(Shutdown::Both);
            return false;
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\n",
        reason(status)
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    // The client may have timed out and gone away; that is its business.
    stream.write_all(response.as_bytes()).is_ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
