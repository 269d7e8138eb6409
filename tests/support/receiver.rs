//! A scriptable loopback HTTP receiver for end-to-end tests, on `tiny_http`.
//!
//! It listens on `127.0.0.1:0`, records every request (method, path, headers,
//! raw body, arrival time) and answers from a per-path script of [`Reply`]s,
//! then from the default (204). Several worker threads call `recv()`, so
//! concurrent keep-alive clients (a drain uses up to 4 connections) are
//! served at once. Dropping the [`Receiver`] stops the workers and the server.
//!
//! [`Reply::Close`] needs the request's socket, which `tiny_http` keeps to
//! itself: the worker finds it among the process's open descriptors by its
//! (local, peer) address pair and shuts it down, so the client sees EOF with
//! no response — exactly what a crashed or reset endpoint looks like.

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tiny_http::{Header, Request, Response, Server, StatusCode};

/// Enough workers for 4 keep-alive drain connections plus slow replies in flight.
const WORKERS: usize = 8;
/// How often an idle worker or a sleeping `Slow` reply checks for shutdown.
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
    workers: Vec<JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `127.0.0.1:0` and answers 204 until scripted otherwise.
    pub fn start() -> Receiver {
        let server = Server::http("127.0.0.1:0").expect("bind a loopback port for the receiver");
        let addr = server
            .server_addr()
            .to_ip()
            .expect("a TCP listener has an IP address");
        let server = Arc::new(server);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                scripts: HashMap::new(),
                default: Reply::Status(204),
                requests: Vec::new(),
            }),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let workers = (0..WORKERS)
            .map(|_| {
                let server = Arc::clone(&server);
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || work(&server, &shared, addr))
            })
            .collect();
        Receiver {
            addr,
            shared,
            workers,
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
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        // The last `Arc<Server>` went with the workers: tiny_http closes the listener.
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

fn work(server: &Server, shared: &Shared, local: SocketAddr) {
    while !shared.stop.load(Ordering::SeqCst) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => handle(request, shared, local),
            Ok(None) => {}
            Err(_) => break,
        }
    }
}

fn handle(mut request: Request, shared: &Shared, local: SocketAddr) {
    let received_at_ms = now_ms();
    let mut body = Vec::new();
    // A client that hangs up mid-body still gets its partial request recorded.
    let _ = request.as_reader().read_to_end(&mut body);
    let recorded = Recorded {
        method: request.method().as_str().to_string(),
        path: request.url().to_string(),
        headers: request
            .headers()
            .iter()
            .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
            .collect(),
        body,
        received_at_ms,
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
    answer(request, reply, shared, local);
}

fn answer(request: Request, reply: Reply, shared: &Shared, local: SocketAddr) {
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
            if let Some(peer) = request.remote_addr().copied() {
                shut_down_connection(local, peer);
            }
            // Dropping the writer unanswered keeps tiny_http from sending its 500.
            drop(request.into_writer());
            return;
        }
    };
    let mut response = Response::empty(StatusCode(status));
    for (name, value) in headers {
        match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            Ok(header) => response.add_header(header),
            Err(()) => {
                eprintln!("receiver: invalid scripted header {name:?}: {value:?}; answering 500");
                response = Response::empty(StatusCode(500));
                break;
            }
        }
    }
    // The client may have timed out and gone away; that is its business.
    let _ = request.respond(response);
}

/// Shuts down the server side of the TCP connection `local` ⇄ `peer`.
///
/// tiny_http does not expose its sockets, so this looks through
/// `/proc/self/fd`: each descriptor is duplicated first, and the duplicate is
/// checked and shut down, so a descriptor closed and reused meanwhile by
/// another thread is never touched by mistake.
fn shut_down_connection(local: SocketAddr, peer: SocketAddr) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        eprintln!("receiver: /proc/self/fd is unreadable; Reply::Close cannot close the socket");
        return false;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: dup has no memory-safety preconditions; a stale number
        // just yields -1 (EBADF).
        let copy = unsafe { libc::dup(fd) };
        if copy < 0 {
            continue;
        }
        // SAFETY: `copy` is a fresh descriptor that nothing else owns.
        let stream = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(copy) };
        if stream.local_addr().ok() == Some(local) && stream.peer_addr().ok() == Some(peer) {
            return stream.shutdown(Shutdown::Both).is_ok();
        }
    }
    false
}
