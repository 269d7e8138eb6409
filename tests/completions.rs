//! Shell completions driven in real shells: the script `spec-notify
//! completions SHELL` prints is loaded into bash (always), fish and zsh
//! (installed from Debian by `tests/completions/install.sh`), and asked
//! what a TAB after a partial word would offer, as the shell itself does.
//! Bash: `complete -p` names the function, which runs with `COMP_WORDS`
//! and `COMP_CWORD` set and leaves its answer in `COMPREPLY`. Fish:
//! `complete -C LINE`. Zsh has no non-interactive equivalent: the test
//! checks that the script loads under `compinit` and registers itself.

use std::process::Stdio;

use crate::support::{BIN, CEILING, Run, Spawned, command, run_command};

/// The script for `shell`, written to a temp file.
fn script(shell: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("spec-notify.{shell}"));
    let mut cmd = command(BIN);
    cmd.args(["completions", shell]);
    let out = run_command(cmd, b"").expect(0);
    std::fs::write(&path, out.stdout).unwrap();
    (dir, path)
}

/// Runs `program args…` with a ceiling; its output.
#[track_caller]
fn run(program: &str, args: &[&str]) -> Run {
    let child = command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): bash tests/completions/install.sh")
        });
    Spawned::new(child).wait_output(CEILING, program)
}

/// What bash offers for TAB at the end of `line` (the last word partial).
fn bash_completes(line: &str) -> Vec<String> {
    let (_dir, path) = script("bash");
    // The function `complete -p` names, called the way readline calls it:
    // $1 the command, $2 the word being completed, $3 the word before it.
    let program = r#"
        source "$1"
        spec=$(complete -p spec-notify) || exit 3
        func=$(sed -E 's/.* -F ([^ ]+) .*/\1/' <<<"$spec")
        read -ra COMP_WORDS <<<"$2"
        [[ "$2" == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
        COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        "$func" spec-notify "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let run = run(
        "bash",
        &["-c", program, "bash", path.to_str().unwrap(), line],
    )
    .expect(0);
    run.stdout.lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_each_subcommands_flags_and_their_values() {
    let cases: &[(&str, &[&str])] = &[
        ("spec-notify list --st", &["--state"]),
        ("spec-notify list --state d", &["delivered", "dead"]),
        ("spec-notify list --source n", &["nats"]),
        ("spec-notify history --format c", &["csv"]),
        (
            "spec-notify history --s",
            &["--subscription", "--since", "--source"],
        ),
        ("spec-notify completions z", &["zsh"]),
        ("spec-notify li", &["list"]),
        // The PRD's flag forms complete, and so do their flags.
        ("spec-notify --li", &["--list"]),
        ("spec-notify --list --st", &["--state"]),
        ("spec-notify --replay SPEC-1 --all", &["--all-dead"]),
    ];
    for (line, want) in cases {
        let got = bash_completes(line);
        for w in *want {
            assert!(
                got.iter().any(|g| g == w),
                "{line:?}<TAB> offers {got:?}, not {w:?}"
            );
        }
    }
    assert_eq!(bash_completes("spec-notify list --state dea"), ["dead"]);
}

#[test]
fn fish_completes_flags_and_values() {
    let (_dir, path) = script("fish");
    let complete = |line: &str| -> Vec<String> {
        let program = format!("source {}; complete -C '{line}'", path.display());
        let run = run("fish", &["--no-config", "-c", &program]).expect(0);
        run.stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect()
    };
    let got = complete("spec-notify list --st");
    assert!(got.iter().any(|g| g == "--state"), "{got:?}");
    let got = complete("spec-notify list --state d");
    assert!(
        got.iter().any(|g| g == "dead") && got.iter().any(|g| g == "delivered"),
        "{got:?}"
    );
    let got = complete("spec-notify history --format ");
    assert!(got.iter().any(|g| g == "csv"), "{got:?}");
}

#[test]
fn zsh_loads_the_script_under_compinit() {
    let (dir, path) = script("zsh");
    // The dump goes in the test's own folder: compinit replaces its dump
    // file by a rename, which as root would turn `-d /dev/null` into a
    // regular file for every process on the machine.
    let program = format!(
        "autoload -U compinit && compinit -u -d {} && source {} && print -r -- \"$_comps[spec-notify]\" && whence -w _spec-notify",
        dir.path().join("zcompdump").display(),
        path.display()
    );
    let run = run("zsh", &["-f", "-c", &program]).expect(0);
    assert!(
        run.stdout.contains("_spec-notify"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("_spec-notify: function"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}
