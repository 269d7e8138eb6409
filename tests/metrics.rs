//! metrics: the Prometheus exposition of a real spool passes `promtool
//! check metrics`, is read by a real node_exporter textfile collector on
//! 127.0.0.1 (scraped over HTTP), and `drain --watch --metrics FILE` keeps
//! the file current while it delivers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;

use crate::report::fixture;
use crate::support::receiver::Receiver;
use crate::support::tools::tool;
use crate::support::*;

/// `promtool check metrics` on `text`: its exit code and what it said.
pub fn promtool_check(promtool: &Path, text: &str) -> Run {
    let mut cmd = command(promtool);
    cmd.args(["check", "metrics"]);
    run_command(cmd, text.as_bytes())
}

#[test]
fn the_exposition_passes_promtool_and_its_lint() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let env = fixture();
    let run = env.run(&["metrics"]).expect(0);
    let text = &run.stdout;
    let checked = promtool_check(&promtool, text);
    assert_eq!(
        (
            checked.code,
            checked.stdout.as_str(),
            checked.stderr.as_str()
        ),
        (0, "", ""),
        "promtool check metrics:\n{text}"
    );
    let has = |line: &str| text.lines().any(|l| l == line);
    for line in [
        r#"spec_notify_attempts_total{subscription="ok",outcome="delivered"} 3"#,
        r#"spec_notify_attempts_total{subscription="flaky",outcome="retry"} 2"#,
        r#"spec_notify_attempts_total{subscription="down",outcome="dead"} 3"#,
        r#"spec_notify_attempts_total{subscription="bad",outcome="retry"} 1"#,
        r#"spec_notify_attempt_duration_seconds_count{subscription="down"} 6"#,
        r#"spec_notify_jobs{subscription="held",state="pending"} 3"#,
        r#"spec_notify_jobs{subscription="bad",state="dead"} 3"#,
        r#"spec_notify_circuit_state{subscription="held",state="paused"} 1"#,
        r#"spec_notify_circuit_state{subscription="ok",state="closed"} 1"#,
        r#"spec_notify_health{subscription="bad",health="failing"} 1"#,
        r#"spec_notify_health{subscription="flaky",health="degraded"} 1"#,
        "spec_notify_delivered_total 6",
        "spec_notify_dead_lettered_total 6",
        "spec_notify_dead_letters 6",
        "spec_notify_quarantined_files 1",
    ] {
        assert!(has(line), "no `{line}` in:\n{text}");
    }
    assert!(
        text.contains(r#"spec_notify_oldest_pending_age_seconds{subscription="held"} "#),
        "{text}"
    );
}

/// promtool must be able to say no, or the check above proves nothing.
#[test]
fn promtool_refuses_a_broken_exposition() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let lint = promtool_check(
        &promtool,
        "# HELP spec_notify_attempts Attempts.\n# TYPE spec_notify_attempts counter\nspec_notify_attempts 1\n",
    );
    assert_ne!(lint.code, 0, "a counter without _total passes:\n{lint:?}");
    let broken = promtool_check(&promtool, "spec_notify_x{a=\"1} 2\n");
    assert_ne!(broken.code, 0, "a broken line passes");
}

/// A sample line with its labels in name order (values here hold no comma).
fn sorted_labels(line: &str) -> String {
    let Some((name, rest)) = line.split_once('{') else {
        return line.to_string();
    };
    let Some((labels, value)) = rest.split_once('}') else {
        return line.to_string();
    };
    let mut labels: Vec<&str> = labels.split(',').collect();
    labels.sort_unstable();
    format!("{name}{{{}}}{value}", labels.join(","))
}

/// A port nobody listens on right now (the kernel's pick, then let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET path` on 127.0.0.1:port, if it answered 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(CEILING)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

#[test]
fn node_exporter_textfile_collector_serves_the_series() {
    let Some(exporter) = tool("prometheus-node-exporter") else {
        return;
    };
    let env = fixture();
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("spec_notify.prom");
    env.run(&["metrics", "--output", prom.to_str().unwrap()])
        .expect(0);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["spec_notify.prom"], "no temporary file left");

    let port = free_port();
    let mut node = Spawned::new(
        command(exporter)
            .args([
                "--collector.disable-defaults",
                "--collector.textfile",
                &format!("--collector.textfile.directory={}", dir.path().display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut scraped = None;
    wait_until(CEILING, "node_exporter to answer /metrics", || {
        if let Ok(Some(status)) = node.child_mut().try_wait() {
            panic!("node_exporter exited early ({status}); port {port} taken?");
        }
        scraped = get(port, "/metrics");
        scraped.is_some()
    });
    let body = scraped.unwrap();
    // Label order is the exporter's business: compare sample sets.
    let samples: Vec<String> = body.lines().map(sorted_labels).collect();
    for line in [
        r#"spec_notify_attempts_total{outcome="delivered",subscription="ok"} 3"#,
        r#"spec_notify_jobs{state="pending",subscription="held"} 3"#,
        r#"spec_notify_circuit_state{state="paused",subscription="held"} 1"#,
        r#"spec_notify_attempt_duration_seconds_bucket{le="+Inf",subscription="down"} 6"#,
        "spec_notify_dead_letters 6",
        "node_textfile_scrape_error 0",
    ] {
        assert!(
            samples.iter().any(|l| *l == sorted_labels(line)),
            "no `{line}` in node_exporter's answer:\n{body}"
        );
    }
    node.signal("TERM");
    node.wait_output(CEILING, "node_exporter");
}

#[test]
fn drain_watch_keeps_the_metrics_file_current() {
    let rx = Receiver::start();
    let env = Env::new(&config_with(&subscription("hook", &rx.url("/hook"), "")))
        .env("SECRET_HOOK", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("spec_notify.prom");
    let mut cmd = env.cmd(&[
        "drain",
        "--watch",
        "--metrics",
        prom.to_str().unwrap(),
        "--metrics-interval",
        "100ms",
    ]);
    let drain = Spawned::new(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let read = || std::fs::read_to_string(&prom).unwrap_or_default();
    let delivered = |n: u32| {
        format!(r#"spec_notify_attempts_total{{subscription="hook",outcome="delivered"}} {n}"#)
    };
    wait_until(CEILING, "the first metrics file", || {
        read().lines().any(|l| l == delivered(0))
    });
    env.run(&[
        "emit",
        "--spec",
        "SPEC-M",
        "--event",
        "spec-auto.stage.completed",
    ])
    .expect(0);
    wait_until(CEILING, "the delivery to show in the metrics file", || {
        read().lines().any(|l| l == delivered(1))
    });
    drain.signal("TERM");
    let run = drain.wait_output(CEILING, "drain --watch");
    assert_eq!(run.code, 143, "{}", run.stderr);
    assert!(read().lines().any(|l| l == delivered(1)));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn metrics_flags_are_checked() {
    let env = crate::list::ops_env("");
    let run = env.run(&["drain", "--metrics-interval", "1s"]).expect(2);
    assert!(run.stderr.contains("--metrics"), "{}", run.stderr);
    let run = env
        .run(&["metrics", "--output", "/nonexistent-dir/x.prom"])
        .expect(1);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
}
