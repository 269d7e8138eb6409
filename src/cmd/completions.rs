//! `spec-notify completions SHELL`: shell completion scripts from the clap
//! definition, so every subcommand's flags and their values (`--state
//! dead`, `--source nats`, `--format csv`) complete. The PRD's flag forms
//! (`--test`, `--list`, `--replay`, rewritten by `cli::rewrite_flag_forms`
//! before clap parses) complete like the subcommands they stand for.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::ExitCode;

const BIN: &str = "spec-notify";

pub fn run(args: &CompletionsArgs) -> Result<ExitCode> {
    let script = script(args.shell);
    std::io::stdout()
        .lock()
        .write_all(script.as_bytes())
        .context("failed to write the completion script to stdout")?;
    Ok(ExitCode::Success)
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), BIN, &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => fix_bash_states(&script),
        _ => script,
    }
}

/// The CLI as completions see it: each PRD flag form is an alias of its
/// subcommand (only here: clap itself never sees them, main rewrites them).
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for (name, flag) in [
        ("test", "--test"),
        ("list", "--list"),
        ("replay", "--replay"),
    ] {
        cmd = cmd.mut_subcommand(name, |sub| sub.visible_alias(flag));
    }
    cmd
}

/// clap_complete 4.6's bash script names a subcommand's state two ways when
/// the binary's name has a hyphen: the loop that reads the words sets
/// `spec__notify__subcmd__list`, the `case` that offers its flags waits for
/// `spec__subcmd__notify__subcmd__list`, so no subcommand's flags ever
/// completed (clap-rs/clap#6421). The case labels take the loop's spelling.
fn fix_bash_states(script: &str) -> String {
    let wrong = BIN.replace('-', "__subcmd__");
    let right = BIN.replace('-', "__");
    script.replace(&format!("{wrong}__subcmd__"), &format!("{right}__subcmd__"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_case_labels_match_the_states_the_loop_sets() {
        let script = script(Shell::Bash);
        assert!(!script.contains("spec__subcmd__notify"), "labels fixed");
        assert!(script.contains("cmd=\"spec__notify__subcmd__list\""));
        assert!(script.contains("\n        spec__notify__subcmd__list)"));
        assert!(script.contains("spec__notify,--list)"), "the PRD form");
    }

    #[test]
    fn every_shell_gets_a_script() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            assert!(script(shell).contains("state"), "{shell:?}");
        }
    }
}
