//! demo and completions: what a newcomer runs first.

use crate::support::{BIN, Run, command, run_command};

/// `spec-notify ARGS`, as a newcomer types it.
fn run(args: &[&str]) -> Run {
    let mut cmd = command(BIN);
    cmd.args(args).env("NO_COLOR", "1");
    run_command(cmd, b"")
}

#[test]
fn demo_runs_the_whole_product_and_cleans_up() {
    let out = run(&["demo"]).expect(0);
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(
        stderr.contains("delivered 9, retrying 2, dead 0"),
        "{stderr}"
    );
    assert!(
        stdout.contains("signature ok") && !stdout.contains("signature BAD"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--task-title 'Webhook notifications'"),
        "a command line a reader can paste: {stdout}"
    );
    assert!(
        stdout.contains("-- 9 jobs: 9 delivered"),
        "list ran: {stdout}"
    );
    assert!(
        stdout.contains("tracker") && stdout.contains("50% (2/4)"),
        "status ran: {stdout}"
    );
    let workspace = stdout
        .lines()
        .find_map(|l| l.strip_prefix("config:   "))
        .unwrap()
        .trim();
    assert!(
        !std::path::Path::new(workspace).exists(),
        "the temp workspace is removed"
    );
}

#[test]
fn demo_keep_leaves_the_workspace() {
    let out = run(&["demo", "--keep"]).expect(0);
    let kept = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("workspace kept: "))
        .unwrap()
        .trim()
        .to_string();
    assert!(std::path::Path::new(&kept).join("config.toml").exists());
    std::fs::remove_dir_all(kept).unwrap();
}

#[test]
fn completions_for_each_shell() {
    for (shell, needle) in [
        ("bash", "complete -F _spec__notify"),
        ("zsh", "#compdef spec-notify"),
        ("fish", "complete -c spec-notify"),
    ] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        let text = &out.stdout;
        assert!(
            text.contains(needle) && text.contains("replay"),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
    }
}
