//! Exit codes and the error kinds that map onto them. `Err` values carry a
//! [`UserError`] marker when a person must fix their input or config (exit 2);
//! anything else is a runtime failure (exit 1).

use std::fmt;

/// The process exit codes this tool documents (README, `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Interrupted = 130,
    Terminated = 143,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// Marks an error as the user's to fix: bad flags, bad config, bad input.
#[derive(Debug)]
pub struct UserError(pub String);

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Builds an exit-2 error.
pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(message.into()))
}

/// The exit code for an error: 2 if any cause in its chain is a [`UserError`].
pub fn code_for(error: &anyhow::Error) -> ExitCode {
    if error.chain().any(|cause| cause.is::<UserError>()) {
        ExitCode::Usage
    } else {
        ExitCode::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn user_errors_exit_2_even_under_context() {
        let err = Err::<(), _>(user_error("bad key"))
            .context("loading config")
            .unwrap_err();
        assert_eq!(code_for(&err), ExitCode::Usage);
        assert_eq!(format!("{err:#}"), "loading config: bad key");
    }

    #[test]
    fn other_errors_exit_1() {
        let err = anyhow::anyhow!("disk full");
        assert_eq!(code_for(&err), ExitCode::Failure);
        assert_eq!(
            std::process::ExitCode::from(ExitCode::Terminated),
            std::process::ExitCode::from(143)
        );
    }
}
