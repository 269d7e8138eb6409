//! The one HTTP/1.1 server of spec-notify: `demo`'s receiver, `receive` and
//! the end-to-end tests' receiver run on it. A [`Handler`] decides each
//! answer, including closing the connection without one (what a crashed
//! endpoint looks like to the sender); the server owns the network side and
//! its [`Limits`]:
//! - the head is capped while it is read (431), and a body whose
//!   `Content-Length` is over the cap is answered 413 before a byte of it is
//!   read; chunked bodies get 411 (webhook senders, drain included, send a
//!   length);
//! - a connection may sit idle `read_timeout` between requests, and a request
//!   has `read_timeout` from its first byte to arrive whole (408 otherwise),
//!   so a slow or silent client holds its thread for a bounded time;
//! - at most `max_connections` at once (503 beyond);
//! - keep-alive unless the client asks otherwise; `Date` and `Content-Length`
//!   on every answer except 1xx/204/304, which carry neither length nor body.
//!
//! Stopping (or dropping) the server stops accepting, ends idle connections
//! and waits for requests already handed to the handler to be answered.
//!
//! Why std threads and not a crate: tiny_http 0.12, used before, can leave a
//! new connection's task queued behind idle keep-alive ones until some client
//! hangs up (seen as 5-second client timeouts with two concurrent drains);
//! hyper and the servers on it need an async runtime, far more than a
//! receiver serving a few drain connections needs. A thread per connection
//! is the simplest thing that cannot stall that way, and costs nothing at
//! this load; the limits above bound what a hostile client can hold. The
//! part that is easy to get subtly wrong, parsing the head, is `httparse`
//! (hyper's parser, already built for ureq).

mod request;
mod response;

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use request::Request;
pub use response::reason;

use request::{Connection, Next};

/// After refusing a request the server reads and drops what the client is
/// still sending for up to this long before closing, so the client sees the
/// answer rather than a connection reset.
const LINGER: Duration = Duration::from_secs(2);

/// What a handler tells the server to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer with this status, these headers and this body. A
    /// `Connection: close` header closes the connection after the answer.
    Respond(u16, Vec<(String, String)>, Vec<u8>),
    /// Close the connection without answering.
    Close,
}

/// Decides the answers. Any `Fn(&Request) -> Action` is a handler.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request) -> Action;

    /// Told after the server answered `status` itself (413, 411, 408…) to a
    /// request whose head it read; `request` has no body. Requests too
    /// malformed to have a head are not reported.
    fn rejected(&self, request: &Request, status: u16, reason: &str) {
        let _ = (request, status, reason);
    }
}

impl<F> Handler for F
where
    F: Fn(&Request) -> Action + Send + Sync + 'static,
{
    fn handle(&self, request: &Request) -> Action {
        self(request)
    }
}

/// What one client may send and hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line and headers together.
    pub max_head_bytes: usize,
    /// One request body, checked against `Content-Length` before reading.
    pub max_body_bytes: usize,
    /// Idle time allowed between requests, and time for one request to
    /// arrive whole from its first byte. Longer than ureq's 15 s pool
    /// lifetime, so drain never reuses a connection the server is closing.
    pub read_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head_bytes: 64 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            read_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// A running server; stops when dropped (see [`Server::stop`]).
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the acceptor and every connection thread share.
struct Shared {
    limits: Limits,
    stop: AtomicBool,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
}

/// A connection being served: its socket (to end it on stop) and thread.
struct Open {
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl Shared {
    /// The open connections, even after a panic elsewhere: plain data.
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Server {
    /// Listens on `addr` (e.g. `127.0.0.1:0`) with the default [`Limits`].
    pub fn start(addr: impl ToSocketAddrs, handler: impl Handler) -> io::Result<Server> {
        Server::start_with(addr, Limits::default(), handler)
    }

    /// Listens on `addr` and runs `handler` for every request within `limits`.
    pub fn start_with(
        addr: impl ToSocketAddrs,
        limits: Limits,
        handler: impl Handler,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            limits,
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let handler: Arc<dyn Handler> = Arc::new(handler);
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept(&listener, &accept_shared, &handler))?;
        Ok(Server {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends idle connections, and waits until every
    /// request already handed to the handler has been answered. (A handler
    /// that never returns is waited for: handlers must finish.)
    pub fn stop(self) {}

    fn shut_down(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect(wake); // wakes the blocking accept
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let open: Vec<Open> = self.shared.open().drain().map(|(_, o)| o).collect();
        for connection in &open {
            // A thread waiting for a request sees end-of-file; one inside the
            // handler still writes its answer, then sees end-of-file.
            let _ = connection.stream.shutdown(Shutdown::Read);
        }
        for thread in open.into_iter().filter_map(|o| o.thread) {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>, handler: &Arc<dyn Handler>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(_) => {
                // A client gone already, or out of file descriptors: that
                // client's problem; pause so a persistent error cannot spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        {
            let mut open = shared.open();
            if open.len() >= shared.limits.max_connections {
                drop(open);
                let _ = stream.set_write_timeout(Some(shared.limits.read_timeout));
                let reason = "too many connections; try again shortly\n";
                let _ = response::write(&stream, false, 503, &text(), reason.as_bytes(), true);
                continue;
            }
            let Ok(registered) = stream.try_clone() else {
                continue;
            };
            open.insert(
                id,
                Open {
                    stream: registered,
                    thread: None,
                },
            );
        }
        let (thread_shared, handler) = (Arc::clone(shared), Arc::clone(handler));
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let _unregister = Unregister(&thread_shared, id);
                serve(
                    Connection::new(stream),
                    &thread_shared.limits,
                    handler.as_ref(),
                );
            });
        let mut open = shared.open();
        match spawned {
            // Not there when the thread has finished already.
            Ok(thread) => {
                if let Some(o) = open.get_mut(&id) {
                    o.thread = Some(thread);
                }
            }
            Err(_) => {
                open.remove(&id);
            }
        }
    }
}

/// Removes a connection from the open set when its thread ends, however.
struct Unregister<'a>(&'a Shared, u64);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.open().remove(&self.1);
    }
}

fn text() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "text/plain; charset=utf-8".into())]
}

/// Requests in a keep-alive loop until either side closes or a limit is hit.
fn serve(mut connection: Connection, limits: &Limits, handler: &dyn Handler) {
    let stream = connection.stream.try_clone();
    let Ok(stream) = stream else {
        return;
    };
    let _ = stream.set_write_timeout(Some(limits.read_timeout));
    loop {
        match connection.next(limits) {
            Next::Request {
                request,
                keep_alive,
            } => match handler.handle(&request) {
                Action::Close => {
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                Action::Respond(status, headers, body) => {
                    let close = !keep_alive || response::asks_close(&headers);
                    let head_only = request.method.eq_ignore_ascii_case("HEAD");
                    let written =
                        response::write(&stream, head_only, status, &headers, &body, close);
                    if written.is_err() || close {
                        return;
                    }
                }
            },
            Next::Reject {
                status,
                reason,
                head,
                linger,
            } => {
                let body = format!("{reason}\n");
                let written =
                    response::write(&stream, false, status, &text(), body.as_bytes(), true);
                if let Some(head) = &head {
                    handler.rejected(head, status, &reason);
                }
                if written.is_ok() && linger {
                    drain_then_close(&stream);
                }
                return;
            }
            Next::Done => return,
        }
    }
}

/// Closes our side, then drops what the client still sends until it closes
/// too or [`LINGER`] passes: closing with unread bytes would reset the
/// connection and could destroy the answer before the client reads it.
fn drain_then_close(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 16 * 1024];
    while let Ok(n) = request::read_by(stream, until, &mut sink) {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests;
