//! The server over real loopback sockets: raw `TcpStream` clients to see the
//! bytes, ureq (drain's client) for keep-alive and closes. Waits are for
//! events (an answer, end-of-file), with a 30 s ceiling on every read.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

use super::*;

/// The most any read in these tests waits before failing.
const CEILING: Duration = Duration::from_secs(30);

/// Counts what the server handed over: requests and rejections.
#[derive(Default)]
struct Seen {
    handled: AtomicUsize,
    rejected: Mutex<Vec<(u16, String, String)>>,
}

/// Answers `/status/N` with N, `/close` by closing, anything else 200 with
/// the request body echoed; counts everything in `seen`.
struct Echo(Arc<Seen>);

impl Handler for Echo {
    fn handle(&self, request: &Request) -> Action {
        self.0.handled.fetch_add(1, Ordering::SeqCst);
        if request.path == "/close" {
            return Action::Close;
        }
        let status = request
            .path
            .strip_prefix("/status/")
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        Action::Respond(status, vec![], request.body.clone())
    }

    fn rejected(&self, request: &Request, status: u16, reason: &str) {
        let mut rejected = self.0.rejected.lock().unwrap();
        rejected.push((status, request.path.clone(), reason.to_string()));
    }
}

fn echo(limits: Limits) -> (Server, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let server = Server::start_with("127.0.0.1:0", limits, Echo(Arc::clone(&seen))).unwrap();
    (server, seen)
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(CEILING)).unwrap();
    stream
}

/// Everything the server sends until it closes; fails on the ceiling.
#[track_caller]
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = stream.read_to_end(&mut out);
    assert!(
        read.is_ok(),
        "no end-of-file within {CEILING:?}: {read:?} after {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// One response off a kept-alive connection: its head (lines) and body.
#[track_caller]
fn read_response(reader: &mut BufReader<TcpStream>) -> (Vec<String>, Vec<u8>) {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "closed mid-head");
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length = head
        .iter()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (head, body)
}

fn has_header(head: &[String], name: &str) -> bool {
    head.iter().any(|l| {
        l.to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
    })
}

#[test]
fn two_requests_on_one_connection_are_both_answered() {
    let (server, seen) = echo(Limits::default());
    let stream = connect(&server);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for (i, body) in ["first", "second"].iter().enumerate() {
        let request = format!(
            "POST /hook HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        (&stream).write_all(request.as_bytes()).unwrap();
        let (head, got) = read_response(&mut reader);
        assert_eq!(head[0], "HTTP/1.1 200 OK", "request {i}: {head:?}");
        assert!(!has_header(&head, "Connection"), "{head:?}");
        assert!(has_header(&head, "Date"), "{head:?}");
        assert_eq!(got, body.as_bytes());
    }
    // Pipelined: both requests in one write (with stray empty lines between, which
    // RFC 9112 says to ignore), answered in order.
    (&stream)
        .write_all(b"POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\na\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 1\r\nConnection: close\r\n\r\nb")
        .unwrap();
    assert_eq!(read_response(&mut reader).1, b"a");
    let (head, body) = read_response(&mut reader);
    assert_eq!(body, b"b");
    assert!(head.contains(&"Connection: close".to_string()), "{head:?}");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed after Connection: close");
    assert_eq!(seen.handled.load(Ordering::SeqCst), 4);
}

#[test]
fn no_content_length_on_204_and_304_and_an_exact_one_otherwise() {
    let (server, _) = echo(Limits::default());
    let stream = connect(&server);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for status in [204, 304] {
        let request = format!("POST /status/{status} HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody");
        (&stream).write_all(request.as_bytes()).unwrap();
        let (head, body) = read_response(&mut reader);
        assert!(
            head[0].starts_with(&format!("HTTP/1.1 {status} ")),
            "{head:?}"
        );
        assert!(!has_header(&head, "Content-Length"), "{status}: {head:?}");
        assert!(body.is_empty());
    }
    // HEAD: the length of the body that GET would get, and no body; the next
    // answer on the connection starts right after the head.
    (&stream)
        .write_all(b"HEAD /status/200 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let mut line = String::new();
    let mut head = Vec::new();
    while reader.read_line(&mut line).unwrap() > 2 {
        head.push(line.trim_end().to_string());
        line.clear();
    }
    assert!(head.contains(&"Content-Length: 3".to_string()), "{head:?}");
    let (head, body) = read_response(&mut reader);
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert!(head.contains(&"Content-Length: 2".to_string()), "{head:?}");
    assert_eq!(body, b"hi");
}

#[test]
fn a_head_over_the_cap_is_431_and_never_reaches_the_handler() {
    let limits = Limits {
        max_head_bytes: 1024,
        ..Limits::default()
    };
    let (server, seen) = echo(limits);
    let mut stream = connect(&server);
    let big = "x".repeat(2000);
    // The blank line never comes: the cap, not the end of the head, decides.
    stream
        .write_all(format!("POST / HTTP/1.1\r\nX-Big: {big}\r\n").as_bytes())
        .unwrap();
    let answer = read_to_close(&mut stream);
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with("request head over 1024 bytes\n"),
        "{answer}"
    );
    // A whole head over the cap in one write, and too many header lines.
    let mut stream = connect(&server);
    stream
        .write_all(format!("GET / HTTP/1.1\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .unwrap();
    assert!(read_to_close(&mut stream).starts_with("HTTP/1.1 431 "));
    let mut stream = connect(&server);
    let many = "a:b\r\n".repeat(150);
    stream
        .write_all(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes())
        .unwrap();
    let answer = read_to_close(&mut stream);
    assert!(answer.contains("more than 100 request headers"), "{answer}");
    assert_eq!(seen.handled.load(Ordering::SeqCst), 0);
}

#[test]
fn an_oversize_content_length_is_413_before_any_body_byte_is_sent() {
    let limits = Limits {
        max_body_bytes: 1000,
        ..Limits::default()
    };
    let (server, seen) = echo(limits);
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut stream = connect(&server);
        // Only the head: an answer at all proves the body was not awaited.
        stream
            .write_all(
                format!("POST /big HTTP/1.1\r\nContent-Length: 200000000\r\n{expect}\r\n")
                    .as_bytes(),
            )
            .unwrap();
        let answer = read_to_close(&mut stream);
        assert!(
            answer.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
            "{answer}"
        );
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert!(
            answer.ends_with("body of 200000000 bytes is over the 1000-byte limit\n"),
            "{answer}"
        );
    }
    assert_eq!(seen.handled.load(Ordering::SeqCst), 0);
    let rejected = seen.rejected.lock().unwrap().clone();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(
        rejected
            .iter()
            .all(|(status, path, _)| *status == 413 && path == "/big")
    );

    // At the cap is fine, and Expect: 100-continue is honoured.
    let stream = connect(&server);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    (&stream)
        .write_all(b"POST /ok HTTP/1.1\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut reader);
    assert_eq!(head, ["HTTP/1.1 100 Continue"]);
    (&stream).write_all(&[b'z'; 1000]).unwrap();
    let (head, body) = read_response(&mut reader);
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert_eq!(body.len(), 1000);
}

#[test]
fn chunked_bodies_and_bad_lengths_are_refused_clearly() {
    let (server, seen) = echo(Limits::default());
    let cases = [
        (
            "Transfer-Encoding: chunked\r\n",
            "HTTP/1.1 411 Length Required",
            "send Content-Length",
        ),
        (
            "Transfer-Encoding: gzip\r\n",
            "HTTP/1.1 501 Not Implemented",
            "`gzip`",
        ),
        (
            "Content-Length: 12abc\r\n",
            "HTTP/1.1 400 Bad Request",
            "invalid Content-Length",
        ),
    ];
    for (header, status, reason) in cases {
        let mut stream = connect(&server);
        stream
            .write_all(format!("POST / HTTP/1.1\r\n{header}\r\n5\r\nhello\r\n0\r\n\r\n").as_bytes())
            .unwrap();
        let answer = read_to_close(&mut stream);
        assert!(answer.starts_with(status), "{header}: {answer}");
        assert!(answer.contains(reason), "{header}: {answer}");
    }
    let mut stream = connect(&server);
    stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    assert!(read_to_close(&mut stream).starts_with("HTTP/1.1 400 "));
    assert_eq!(seen.handled.load(Ordering::SeqCst), 0);
}

#[test]
fn a_slow_request_gets_408_and_an_idle_connection_is_closed() {
    let limits = Limits {
        read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (server, seen) = echo(limits);
    // Idle: nothing sent, the server hangs up without a word.
    let mut idle = connect(&server);
    assert_eq!(read_to_close(&mut idle), "");
    // Slowloris: a head that never finishes.
    let mut slow = connect(&server);
    slow.write_all(b"POST /slow HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let answer = read_to_close(&mut slow);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    // A body that never finishes.
    let mut slow = connect(&server);
    slow.write_all(b"POST /slow-body HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let answer = read_to_close(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("the body did not arrive within 300ms"),
        "{answer}"
    );
    assert_eq!(seen.handled.load(Ordering::SeqCst), 0);
    let rejected = seen.rejected.lock().unwrap().clone();
    assert_eq!(rejected.len(), 1, "only the one with a head: {rejected:?}");
    assert_eq!((rejected[0].0, rejected[0].1.as_str()), (408, "/slow-body"));
}

#[test]
fn a_stalled_client_does_not_hold_up_another() {
    let (server, _) = echo(Limits::default());
    let mut stalled = connect(&server);
    stalled
        .write_all(b"POST /hook HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
        .unwrap();
    let mut other = connect(&server);
    other
        .write_all(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .unwrap();
    let answer = read_to_close(&mut other);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("ok"),
        "{answer}"
    );
}

#[test]
fn connections_over_the_cap_get_503() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let (server, _) = echo(limits);
    // The acceptor takes connections in order: this one is counted first.
    let held = connect(&server);
    let mut refused = connect(&server);
    let answer = read_to_close(&mut refused);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    drop(held);
}

#[test]
fn keep_alive_and_close_without_answer_through_a_real_client() {
    let (server, _) = echo(Limits::default());
    let agent = crate::deliver::agent(1);
    let url = format!("http://{}/echo", server.addr());
    for _ in 0..2 {
        let (answer, _) = crate::deliver::send(&agent, &url, &[], b"hi", CEILING);
        assert_eq!(answer.status(), Some(200));
        assert_eq!(answer.body(), b"hi");
    }
    let url = format!("http://{}/close", server.addr());
    let (answer, _) = crate::deliver::send(&agent, &url, &[], b"x", CEILING);
    assert!(answer.error().is_some(), "{answer:?}");
}

#[test]
fn stop_waits_for_the_answer_in_flight_and_ends_idle_connections() {
    let (entered, handler_entered) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let server = Server::start("127.0.0.1:0", move |request: &Request| {
        if request.path == "/slow" {
            let _ = entered.send(());
            let _ = released.lock().unwrap().recv_timeout(CEILING);
        }
        Action::Respond(200, vec![], request.path.clone().into_bytes())
    })
    .unwrap();
    let addr = server.addr();
    // An idle keep-alive connection, known to be served: it had an answer.
    let idle = connect(&server);
    let mut idle_reader = BufReader::new(idle.try_clone().unwrap());
    (&idle).write_all(b"GET /quick HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut idle_reader).1, b"/quick");
    let mut client = connect(&server);
    client
        .write_all(b"POST /slow HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    handler_entered.recv_timeout(CEILING).unwrap();
    let stopping = std::thread::spawn(move || server.stop());
    // Stopping has begun once the port refuses connections.
    let deadline = Instant::now() + CEILING;
    while TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts while stopping"
        );
        std::thread::yield_now();
    }
    release.send(()).unwrap();
    stopping.join().unwrap();
    let answer = read_to_close(&mut client);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("/slow"),
        "{answer}"
    );
    let mut rest = Vec::new();
    idle_reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "idle connections are ended without a word");
}
