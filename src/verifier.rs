//! Checking deliveries as a receiver does: a scheme and a secret that fits
//! it (read from the environment variable named by `--secret-env`), applied
//! to one request's headers and raw body. Shared by the `verify` and
//! `receive` commands; the signing itself is [`crate::sign`].

use anyhow::Result;

use crate::config::secret_from_env;
use crate::exit::user_error;
use crate::sign;
use crate::sign::{Scheme, Secret};

/// A scheme with a secret checked to fit it. Never shows the secret.
pub struct Verifier {
    scheme: Scheme,
    secret: Secret,
}

impl Verifier {
    /// The secret in `var`, checked for `scheme`; usage errors that name
    /// the variable and the fix, never the value.
    pub fn from_env(scheme: Scheme, var: &str) -> Result<Verifier> {
        let secret = secret_from_env(var).ok_or_else(|| {
            user_error(format!(
                "environment variable {var} (--secret-env) is unset or empty: export the webhook secret in it"
            ))
        })?;
        Verifier::new(scheme, secret).map_err(|e| {
            user_error(format!(
                "the secret in {var} cannot verify {}: {e}",
                scheme.as_str()
            ))
        })
    }

    /// A verifier, or why `secret` cannot verify `scheme`.
    pub fn new(scheme: Scheme, secret: Secret) -> Result<Verifier, String> {
        sign::check_secret(scheme, &secret)?;
        Ok(Verifier { scheme, secret })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Ok when `body` is signed as `headers` say (header names compared
    /// case-insensitively) and, where the scheme has a timestamp, it is
    /// within `tolerance_secs` of `now_secs`; otherwise why not.
    pub fn verify(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now_secs: u64,
        tolerance_secs: u64,
    ) -> Result<(), String> {
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        sign::verify(
            self.scheme,
            &self.secret,
            &lookup,
            body,
            now_secs,
            tolerance_secs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str) -> Secret {
        Secret::new(value.into())
    }

    #[test]
    fn verifies_with_any_header_case_and_says_why_not() {
        let verifier = Verifier::new(Scheme::Speckit, secret("s3cret")).unwrap();
        assert_eq!(verifier.scheme(), Scheme::Speckit);
        let body = b"{}";
        let signature = sign::speckit_signature(&secret("s3cret"), body);
        let headers = vec![("x-speckit-signature".to_string(), signature)];
        assert_eq!(verifier.verify(&headers, body, 0, 0), Ok(()));
        let reason = verifier.verify(&headers, b"{ }", 0, 0).unwrap_err();
        assert!(reason.contains("does not match"), "{reason}");
        let reason = verifier.verify(&[], body, 0, 0).unwrap_err();
        assert!(reason.contains("missing header"), "{reason}");
    }

    #[test]
    fn a_secret_unfit_for_the_scheme_is_refused_without_its_value() {
        assert!(Verifier::new(Scheme::Github, secret("plain-value")).is_ok());
        let reason = Verifier::new(Scheme::StandardWebhooks, secret("plain-value"))
            .err()
            .unwrap();
        assert!(reason.contains("whsec_"), "{reason}");
        assert!(!reason.contains("plain-value"));
    }

    #[test]
    fn an_unset_variable_is_a_usage_error_naming_it() {
        let err = Verifier::from_env(Scheme::Github, "VERIFIER_TEST_UNSET_VAR")
            .err()
            .unwrap();
        assert_eq!(crate::exit::code_for(&err), crate::exit::ExitCode::Usage);
        assert!(
            err.to_string()
                .contains("VERIFIER_TEST_UNSET_VAR (--secret-env) is unset")
        );
    }
}
