//! A blackhole endpoint for end-to-end tests: a TCP listener on
//! `127.0.0.1:0` that accepts every connection, keeps it open and never
//! answers, the way a hung webhook receiver behaves. It counts the
//! connections (each one is a delivery attempt: a timed-out connection is
//! never reused) and closes them all when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct Held {
    /// Unix milliseconds of each accepted connection, in order.
    accepted_at_ms: Vec<u64>,
    /// The open connections, so that the peer sees no close either.
    streams: Vec<TcpStream>,
}

#[derive(Default)]
struct Shared {
    held: Mutex<Held>,
    accepted: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts connections and never answers; see the module doc.
pub struct Blackhole {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let mut held = accepting.lock();
                held.accepted_at_ms.push(now_ms());
                held.streams.push(stream);
                drop(held);
                accepting.accepted.notify_all();
            }
        });
        Blackhole {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().accepted_at_ms.len()
    }

    /// When each connection was accepted (unix ms), in order.
    pub fn accepted_at_ms(&self) -> Vec<u64> {
        self.shared.lock().accepted_at_ms.clone()
    }

    /// Waits until at least `n` connections arrived; panics with `what`
    /// if they do not within `ceiling`.
    #[track_caller]
    pub fn wait_for(&self, n: usize, ceiling: Duration, what: &str) {
        let deadline = Instant::now() + ceiling;
        let mut held = self.shared.lock();
        while held.accepted_at_ms.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{what}: {} of {n} connections within {ceiling:?}",
                held.accepted_at_ms.len()
            );
            held = self
                .shared
                .accepted
                .wait_timeout(held, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.lock().streams.clear();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
