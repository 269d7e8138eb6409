//! A minimal HTTP/1.1 server for loopback receivers (the demo and the
//! end-to-end tests): one thread per connection, keep-alive, Content-Length
//! bodies. A handler decides each answer, including closing the connection
//! without one (what a crashed endpoint looks like to the sender).
//!
//! Why not tiny_http here: tiny_http 0.12's task pool can leave a new
//! connection's task queued behind long-lived keep-alive tasks until some
//! client hangs up, which showed up as 5-second client timeouts with two
//! concurrent drains.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent, query string included.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Unix milliseconds when the request line arrived.
    pub received_at_ms: u64,
}

impl Request {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler tells the server to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer with this status, these headers and this body.
    Respond(u16, Vec<(String, String)>, Vec<u8>),
    /// Close the connection without answering.
    Close,
}

/// A running server; stops accepting when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` (e.g. `127.0.0.1:0`) and runs `handler` for every request.
    pub fn start<H>(addr: &str, handler: H) -> std::io::Result<Server>
    where
        H: Fn(&Request) -> Action + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let accept_stop = Arc::clone(&stop);
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let handler = Arc::clone(&handler);
                    std::thread::spawn(move || serve(stream, handler.as_ref()));
                }
            }
        });
        Ok(Server {
            addr,
            stop,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the blocking accept
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Requests in a keep-alive loop until the client closes, the handler closes,
/// or the client asked for `Connection: close`.
fn serve(stream: TcpStream, handler: &(dyn Fn(&Request) -> Action + Send + Sync)) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    while let Some(request) = read_request(&mut reader) {
        let wants_close = request
            .header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let keep = match handler(&request) {
            Action::Close => {
                let _ = stream.shutdown(Shutdown::Both);
                false
            }
            Action::Respond(status, headers, body) => {
                write_response(&stream, status, &headers, &body)
            }
        };
        if !keep || wants_close {
            return;
        }
    }
}

/// Reads one request; `None` at EOF or on a malformed head. A client that
/// hangs up mid-body still yields its partial request.
pub fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let received_at_ms = crate::clock::now_ms();
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
    let mut body = Vec::with_capacity(length.min(1 << 20));
    let _ = reader.take(length as u64).read_to_end(&mut body);
    Some(Request {
        method,
        path,
        headers,
        body,
        received_at_ms,
    })
}

/// Writes a response; false when the connection is gone.
fn write_response(
    mut stream: &TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> bool {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .is_ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_alive_requests_and_closes_on_demand() {
        let server = Server::start("127.0.0.1:0", |r| {
            if r.path == "/close" {
                Action::Close
            } else {
                Action::Respond(201, vec![], r.body.clone())
            }
        })
        .unwrap();
        let agent = crate::deliver::agent(1);
        let url = format!("http://{}/echo", server.addr());
        for _ in 0..2 {
            let (answer, _) =
                crate::deliver::send(&agent, &url, &[], b"hi", std::time::Duration::from_secs(2));
            assert_eq!(answer.status(), Some(201));
            assert_eq!(answer.body(), b"hi");
        }
        let url = format!("http://{}/close", server.addr());
        let (answer, _) =
            crate::deliver::send(&agent, &url, &[], b"x", std::time::Duration::from_secs(2));
        assert!(answer.error().is_some(), "{answer:?}");
    }
}
