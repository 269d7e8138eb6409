//! Writing responses: the server owns the framing (status line, `Date`,
//! `Content-Length` except where RFC 9110 forbids it, `Connection: close`);
//! handlers give the status, their own headers and the body.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::SystemTime;

/// Headers only the server sets; a handler's copies are dropped.
const FRAMING: &[&str] = &["content-length", "transfer-encoding", "connection", "date"];

/// One response, written in a single `write_all` (no Nagle stall between
/// head and body). No body is sent for HEAD requests, and none, nor a
/// `Content-Length`, on 1xx, 204 and 304 answers.
pub(super) fn write(
    mut stream: &TcpStream,
    head_only: bool,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let bodiless = matches!(status, 100..=199 | 204 | 304);
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    out.push_str(&format!(
        "Date: {}\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    ));
    if !bodiless {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        let injected = |s: &str| s.contains(['\r', '\n']);
        if FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)) || injected(name) || injected(value)
        {
            continue;
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !bodiless && !head_only {
        bytes.extend_from_slice(body);
    }
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Whether a handler's headers ask to close the connection after the answer.
pub(super) fn asks_close(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("connection")
            && value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
    })
}

/// The reason phrase for a status (RFC 9110 §15).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
