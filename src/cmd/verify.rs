//! `spec-notify verify`: checks one delivery's signature for shell receivers,
//! with a secret (`--secret-env`) or Standard Webhooks ed25519 public keys
//! (`--public-key whpk_…`). Headers come as `--header 'Name: value'` flags,
//! the raw body on stdin.
//! Exit 0 and `ok` when valid, 1 and the reason when not, 2 on usage errors.

use std::io::Read;

use anyhow::{Context, Result};

use crate::cli::VerifyArgs;
use crate::clock;
use crate::exit::{ExitCode, user_error};
use crate::verifier::Verifier;

pub fn run(args: &VerifyArgs) -> Result<ExitCode> {
    let headers = parse_headers(&args.headers)?;
    let verifier = match &args.secret_env {
        Some(var) => Verifier::from_env(args.scheme.into(), var)?,
        None => Verifier::from_public_keys(&args.public_key)?,
    };
    let mut body = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut body)
        .context("failed to read the request body from stdin")?;
    let outcome = verifier.verify(
        &headers,
        &body,
        clock::now_ms() / 1000,
        args.tolerance.as_secs(),
    );
    match outcome {
        Ok(()) => {
            eprintln!("ok");
            Ok(ExitCode::Success)
        }
        Err(reason) => {
            eprintln!("invalid: {reason}");
            Ok(ExitCode::Failure)
        }
    }
}

/// `Name: value` flags as pairs; the value may be empty, the name may not.
fn parse_headers(flags: &[String]) -> Result<Vec<(String, String)>> {
    flags
        .iter()
        .map(|flag| {
            let malformed = || {
                user_error(format!(
                    "malformed --header `{flag}`: expected `Name: value`, e.g. --header 'X-SpecKit-Signature: sha256=…'"
                ))
            };
            let (name, value) = flag.split_once(':').ok_or_else(malformed)?;
            let name = name.trim();
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err(malformed());
            }
            Ok((name.to_string(), value.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_flags_parse_and_malformed_ones_are_usage_errors() {
        let parsed = parse_headers(&[
            "X-SpecKit-Signature: sha256=ab".into(),
            "webhook-signature:v1,a v1,b".into(),
            "Empty:".into(),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            [
                ("X-SpecKit-Signature".to_string(), "sha256=ab".to_string()),
                ("webhook-signature".into(), "v1,a v1,b".into()),
                ("Empty".into(), String::new()),
            ]
        );
        for bad in ["no colon", ": value", "Bad Name: v"] {
            let err = parse_headers(&[bad.into()]).unwrap_err();
            assert_eq!(crate::exit::code_for(&err), ExitCode::Usage, "{bad}");
            assert!(err.to_string().contains("Name: value"));
        }
    }
}
