//! Reading requests off one connection with the limits checked while
//! reading: the head is capped before it is parsed (by `httparse`), a body is
//! refused from its declared length before a byte of it is read, and every
//! read waits only until the request's deadline.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::Limits;

/// At most this many header lines; more is answered 431.
const MAX_HEADERS: usize = 100;
/// Bytes asked of the socket per read.
const CHUNK: usize = 16 * 1024;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent, query string included.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Unix milliseconds when the request's first byte arrived.
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

    /// Whether a comma-separated header (e.g. `Connection`) lists `token`.
    fn lists(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// What reading the next request gave.
#[derive(Debug)]
pub(super) enum Next {
    /// A whole request; `keep_alive` when the client wants the connection kept.
    Request { request: Request, keep_alive: bool },
    /// The server answers `status` itself and closes: the request broke a
    /// limit or cannot be read. `head` is the request without its body when
    /// the head was read; `linger` when unread request bytes may follow.
    Reject {
        status: u16,
        reason: String,
        head: Option<Box<Request>>,
        linger: bool,
    },
    /// Nothing more on this connection: the client closed or went quiet
    /// between requests, hung up mid-request, or the socket failed.
    Done,
}

impl Next {
    fn reject(status: u16, reason: impl Into<String>, head: Option<Request>, linger: bool) -> Next {
        Next::Reject {
            status,
            reason: reason.into(),
            head: head.map(Box::new),
            linger,
        }
    }
}

/// One client connection and the bytes read past the last request
/// (the start of a pipelined next one).
pub(super) struct Connection {
    pub(super) stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    pub(super) fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads the next request. The connection may sit idle up to
    /// `read_timeout` before it starts; from its first byte, head and body
    /// must arrive within `read_timeout` (408 otherwise).
    pub(super) fn next(&mut self, limits: &Limits) -> Next {
        if self.buf.is_empty() {
            let idle_until = Instant::now() + limits.read_timeout;
            match self.fill(idle_until) {
                Ok(0) | Err(_) => return Next::Done,
                Ok(_) => {}
            }
        }
        let received_at_ms = crate::clock::now_ms();
        let deadline = Instant::now() + limits.read_timeout;
        let (mut request, version) = match self.read_head(limits, deadline, received_at_ms) {
            Ok(head) => head,
            Err(next) => return next,
        };
        let length = match body_length(&request, limits) {
            Ok(length) => length,
            Err((status, reason)) => return Next::reject(status, reason, Some(request), true),
        };
        if length > 0 && version == 1 && request.lists("Expect", "100-continue") {
            // The client waits for this before sending the body.
            if (&self.stream)
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
            {
                return Next::Done;
            }
        }
        match self.read_body(length, deadline) {
            Ok(Some(body)) => request.body = body,
            Ok(None) => return Next::Done,
            Err(_) => {
                let reason = format!("the body did not arrive within {:?}", limits.read_timeout);
                return Next::reject(408, reason, Some(request), false);
            }
        }
        let keep_alive = if version == 1 {
            !request.lists("Connection", "close")
        } else {
            request.lists("Connection", "keep-alive")
        };
        Next::Request {
            request,
            keep_alive,
        }
    }

    /// Reads until the head is whole and parses it (the body left empty),
    /// with its HTTP minor version.
    fn read_head(
        &mut self,
        limits: &Limits,
        deadline: Instant,
        received_at_ms: u64,
    ) -> Result<(Request, u8), Next> {
        let too_large = || {
            let reason = format!("request head over {} bytes", limits.max_head_bytes);
            Next::reject(431, reason, None, true)
        };
        let mut scanned = 0;
        loop {
            // RFC 9112 §2.2: empty lines before a request line are ignored
            // (some clients end a body with an extra CRLF).
            let blank = self
                .buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            if blank > 0 {
                self.buf.drain(..blank);
                scanned = 0;
            }
            if let Some(end) = head_end(&self.buf, scanned) {
                if end > limits.max_head_bytes {
                    return Err(too_large());
                }
                let parsed = parse_head(&self.buf[..end], received_at_ms)?;
                self.buf.drain(..end);
                return Ok(parsed);
            }
            if self.buf.len() >= limits.max_head_bytes {
                return Err(too_large());
            }
            scanned = self.buf.len();
            match self.fill(deadline) {
                Ok(0) => return Err(Next::Done),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    let reason = format!(
                        "the request head did not arrive within {:?}",
                        limits.read_timeout
                    );
                    return Err(Next::reject(408, reason, None, false));
                }
                Err(_) => return Err(Next::Done),
            }
        }
    }

    /// The body: buffered bytes first, then the socket. `None` when the
    /// client hung up before sending all of it.
    fn read_body(&mut self, length: usize, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
        let buffered = length.min(self.buf.len());
        let mut body: Vec<u8> = self.buf.drain(..buffered).collect();
        // Grows as bytes arrive: a claimed length reserves no memory.
        body.reserve((length - buffered).min(CHUNK));
        let mut chunk = [0u8; CHUNK];
        while body.len() < length {
            let want = (length - body.len()).min(CHUNK);
            match read_by(&self.stream, deadline, &mut chunk[..want]) {
                Ok(0) => return Ok(None),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(e),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(body))
    }

    /// Appends what the socket has (waiting until `deadline`); 0 at EOF.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let mut chunk = [0u8; CHUNK];
        let n = read_by(&self.stream, deadline, &mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// One read that gives up at `deadline` with `TimedOut`.
pub(super) fn read_by(
    mut stream: &TcpStream,
    deadline: Instant,
    into: &mut [u8],
) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match stream.read(into) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::ErrorKind::TimedOut.into());
            }
            other => return other,
        }
    }
}

/// Where the head ends (just past its blank line), looking at bytes from
/// `from` on (less the three a split terminator may have left before it).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let window = &buf[start..];
    let crlf = window
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = window.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(start + a.min(b)),
        (a, b) => a.or(b).map(|end| start + end),
    }
}

/// The parsed head, with its HTTP minor version.
fn parse_head(head: &[u8], received_at_ms: u64) -> Result<(Request, u8), Next> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Next::reject(400, "malformed request head", None, true));
        }
        Err(httparse::Error::TooManyHeaders) => {
            let reason = format!("more than {MAX_HEADERS} request headers");
            return Err(Next::reject(431, reason, None, true));
        }
        Err(e) => {
            return Err(Next::reject(
                400,
                format!("malformed request head: {e}"),
                None,
                true,
            ));
        }
    }
    let request = Request {
        method: parsed.method.unwrap_or_default().to_string(),
        path: parsed.path.unwrap_or_default().to_string(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect(),
        body: Vec::new(),
        received_at_ms,
    };
    Ok((request, parsed.version.unwrap_or(1)))
}

/// The body's length from the head, or the status and reason to refuse it:
/// no transfer codings (411/501), one valid Content-Length (400), within
/// the cap (413).
fn body_length(request: &Request, limits: &Limits) -> Result<usize, (u16, String)> {
    if let Some(coding) = request.header("Transfer-Encoding") {
        return Err(if request.lists("Transfer-Encoding", "chunked") {
            (
                411,
                "chunked request bodies are not supported: send Content-Length".into(),
            )
        } else {
            (501, format!("transfer coding `{coding}` is not supported"))
        });
    }
    let mut lengths = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim);
    let Some(first) = lengths.next() else {
        return Ok(0);
    };
    let invalid = || (400, format!("invalid Content-Length `{first}`"));
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) || lengths.any(|l| l != first)
    {
        return Err(invalid());
    }
    // Too many digits for u64 is over any cap too.
    let length = first.parse::<u64>().unwrap_or(u64::MAX);
    if length > limits.max_body_bytes as u64 {
        return Err((
            413,
            format!(
                "body of {length} bytes is over the {}-byte limit",
                limits.max_body_bytes
            ),
        ));
    }
    Ok(length as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            received_at_ms: 0,
        }
    }

    #[test]
    fn head_end_finds_the_blank_line_even_split_across_reads() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody";
        assert_eq!(head_end(head, 0), Some(27));
        // The previous read ended inside the terminator.
        assert_eq!(head_end(head, 25), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }

    #[test]
    fn body_length_refuses_codings_bad_lengths_and_oversize_bodies() {
        let limits = Limits {
            max_body_bytes: 10,
            ..Limits::default()
        };
        let status = |headers: &[(&str, &str)]| body_length(&request(headers), &limits);
        assert_eq!(status(&[]), Ok(0));
        assert_eq!(status(&[("content-length", "10")]), Ok(10));
        assert_eq!(
            status(&[("Content-Length", "3"), ("Content-Length", "3")]),
            Ok(3)
        );
        assert_eq!(status(&[("Content-Length", "11")]).unwrap_err().0, 413);
        assert_eq!(
            status(&[("Content-Length", "99999999999999999999999")])
                .unwrap_err()
                .0,
            413
        );
        for bad in ["-1", "", "1.0", "+3", "0x10"] {
            assert_eq!(
                status(&[("Content-Length", bad)]).unwrap_err().0,
                400,
                "{bad}"
            );
        }
        assert_eq!(
            status(&[("Content-Length", "3"), ("Content-Length", "4")])
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            status(&[("Transfer-Encoding", "gzip, chunked")])
                .unwrap_err()
                .0,
            411
        );
        assert_eq!(status(&[("Transfer-Encoding", "gzip")]).unwrap_err().0, 501);
    }
}
