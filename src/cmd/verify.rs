//! `spec-notify verify`: checks one delivery's signature for shell receivers.
//! Headers come as `--header 'Name: value'` flags, the raw body on stdin.
//! Exit 0 and `ok` when valid, 1 and the reason when not, 2 on usage errors.

use std::io::Read;

use anyhow::{Context, Result};

use crate::cli::{SchemeArg, VerifyArgs};
use crate::clock;
use crate::config::secret_from_env;
use crate::exit::{ExitCode, user_error};
use crate::sign::{self, Scheme};

pub fn run(args: &VerifyArgs) -> Result<ExitCode> {
    let headers = parse_headers(&args.headers)?;
    let scheme = scheme_of(args.scheme);
    let secret = secret_from_env(&args.secret_env).ok_or_else(|| {
        user_error(format!(
            "environment variable {} (--secret-env) is unset or empty: export the webhook secret in it",
            args.secret_env
        ))
    })?;
    sign::check_secret(scheme, &secret).map_err(|e| {
        user_error(format!(
            "the secret in {} cannot verify {}: {e}",
            args.secret_env,
            scheme.as_str()
        ))
    })?;
    let mut body = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut body)
        .context("failed to read the request body from stdin")?;
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let outcome = sign::verify(
        scheme,
        &secret,
        &lookup,
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

/// The clap value as the library's scheme (shared with `receive`).
pub(super) fn scheme_of(arg: SchemeArg) -> Scheme {
    match arg {
        SchemeArg::Speckit => Scheme::Speckit,
        SchemeArg::Github => Scheme::Github,
        SchemeArg::StandardWebhooks => Scheme::StandardWebhooks,
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
