//! The loopback test receiver itself: recording, scripts, slow and closed
//! replies, concurrent keep-alive clients, shutdown on drop. Clients are plain
//! `TcpStream`s (to see the raw bytes) and ureq agents (like drain's).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::receiver::{Receiver, Reply};
use crate::support::{CEILING, wait_until};

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> Result<u16, ureq::Error> {
    agent
        .post(url)
        .header("X-Test", "yes")
        .send(body)
        .map(|r| r.status().as_u16())
}

/// Sends one raw HTTP/1.1 request and returns everything the server sent
/// until it closed the connection; a server that never closes it fails the
/// test (the read timeout only stops a hung test).
fn raw_exchange(receiver: &Receiver, request: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(receiver.addr()).unwrap();
    stream.set_read_timeout(Some(CEILING)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    if let Err(e) = stream.read_to_end(&mut out) {
        panic!(
            "the server did not close the connection ({e}); got {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    out
}

#[test]
fn default_reply_is_204_and_request_is_recorded_raw() {
    let receiver = Receiver::start();
    let response = raw_exchange(
        &receiver,
        "POST /hook?x=1 HTTP/1.1\r\nHost: t\r\nX-SpecKit-Id: abc\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}",
    );
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 204"), "{text}");
    let got = receiver.wait_for(1, CEILING);
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hook?x=1");
    assert_eq!(r.route(), "/hook");
    assert_eq!(r.body, br#"{"a":1}"#);
    assert_eq!(r.header("x-speckit-id"), Some("abc"));
    assert_eq!(r.header("X-SPECKIT-ID"), Some("abc"));
    assert_eq!(r.header("missing"), None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(r.received_at_ms <= now && now - r.received_at_ms < 60_000);
    assert_eq!(receiver.url("hook"), receiver.url("/hook"));
    assert!(receiver.url("/a").starts_with("http://127.0.0.1:"));
}

#[test]
fn script_is_consumed_in_order_per_path_then_default() {
    let receiver = Receiver::start();
    receiver.script(
        "/a",
        [
            Reply::Status(500),
            Reply::Headers(429, vec![("Retry-After".into(), "1".into())]),
        ],
    );
    receiver.script("/b", [Reply::Status(410)]);
    let agent = agent(CEILING);

    let response = agent.post(&receiver.url("/a")).send("1").unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let response = agent.post(&receiver.url("/a?q")).send("2").unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "1"
    );
    assert_eq!(post(&agent, &receiver.url("/b"), "3").unwrap(), 410);
    assert_eq!(post(&agent, &receiver.url("/a"), "4").unwrap(), 204);
    assert_eq!(post(&agent, &receiver.url("/b"), "5").unwrap(), 204);
    receiver.set_default(Reply::Status(503));
    assert_eq!(post(&agent, &receiver.url("/c"), "6").unwrap(), 503);

    let bodies = |path: &str| -> Vec<String> {
        receiver
            .requests_to(path)
            .iter()
            .map(|r| r.body_text())
            .collect()
    };
    assert_eq!(bodies("/a"), ["1", "2", "4"]);
    assert_eq!(bodies("b"), ["3", "5"]);
    let all: Vec<String> = receiver.requests().iter().map(|r| r.body_text()).collect();
    assert_eq!(all, ["1", "2", "3", "4", "5", "6"]);
    let with_header = receiver
        .requests()
        .iter()
        .filter(|r| r.header("x-test") == Some("yes"))
        .count();
    assert_eq!(
        with_header, 4,
        "the requests sent through `post` carry X-Test"
    );
}

#[test]
fn slow_reply_outlasts_a_client_timeout_and_is_still_recorded() {
    let receiver = Receiver::start();
    // The reply waits out the ceiling (or the receiver's drop), so only the
    // client's 300 ms timeout can end this request.
    receiver.script("/slow", [Reply::Slow(CEILING, 200)]);
    let result = post(
        &agent(Duration::from_millis(300)),
        &receiver.url("/slow"),
        "x",
    );
    assert!(
        matches!(result, Err(ureq::Error::Timeout(_))),
        "expected a timeout, got {result:?}"
    );
    assert_eq!(receiver.wait_for(1, CEILING).len(), 1);
    // The sleeping worker holds up no other connection: the next request is answered.
    assert_eq!(
        post(&agent(CEILING), &receiver.url("/slow"), "y").unwrap(),
        204
    );
}

#[test]
fn close_ends_the_connection_without_a_response() {
    let receiver = Receiver::start();
    receiver.script("/gone", [Reply::Close]);
    // raw_exchange fails unless the server closes the connection (EOF).
    let response = raw_exchange(
        &receiver,
        "POST /gone HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert!(
        response.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&response)
    );
    let got = receiver.requests_to("/gone");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"hi");

    // ureq sees it as a failed request, and the next one on a new connection works.
    receiver.script("/gone", [Reply::Close]);
    let agent = agent(CEILING);
    assert!(post(&agent, &receiver.url("/gone"), "a").is_err());
    assert_eq!(post(&agent, &receiver.url("/gone"), "b").unwrap(), 204);
}

#[test]
fn concurrent_keep_alive_clients_are_all_served() {
    let receiver = Receiver::start();
    receiver.set_default(Reply::Status(200));
    std::thread::scope(|scope| {
        for client in 0..4 {
            let receiver = &receiver;
            scope.spawn(move || {
                let agent = agent(CEILING);
                for i in 0..25 {
                    let url = receiver.url(&format!("/c{client}"));
                    assert_eq!(post(&agent, &url, &i.to_string()).unwrap(), 200);
                }
            });
        }
    });
    let got = receiver.wait_for(100, CEILING);
    assert_eq!(got.len(), 100);
    for client in 0..4 {
        let bodies: Vec<String> = receiver
            .requests_to(&format!("/c{client}"))
            .iter()
            .map(|r| r.body_text())
            .collect();
        let expected: Vec<String> = (0..25).map(|i: i32| i.to_string()).collect();
        assert_eq!(bodies, expected, "client {client} in order");
    }
}

#[test]
fn wait_for_gives_up_after_the_timeout() {
    let receiver = Receiver::start();
    let started = Instant::now();
    assert!(receiver.wait_for(1, Duration::from_millis(200)).is_empty());
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn dropping_the_receiver_stops_listening() {
    let receiver = Receiver::start();
    let addr = receiver.addr();
    assert!(TcpStream::connect(addr).is_ok());
    drop(receiver);
    wait_until(CEILING, &format!("{addr} to refuse connections"), || {
        TcpStream::connect(addr).is_err()
    });
}
