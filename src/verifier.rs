//! Checking deliveries as a receiver does: a scheme and a secret that fits
//! it (read from the environment variable named by `--secret-env`), or
//! Standard Webhooks ed25519 public keys (`--public-key whpk_…`, which can
//! verify but never sign), applied to one request's headers and raw body.
//! Shared by the `verify` and `receive` commands; the signing itself is
//! [`crate::sign`].

use anyhow::Result;

use crate::config::secret_from_env;
use crate::exit::user_error;
use crate::sign;
use crate::sign::{PublicKey, Scheme, Secret};

/// A scheme with a secret checked to fit it, or a list of trusted public
/// keys. Never shows the secret.
pub struct Verifier {
    scheme: Scheme,
    with: With,
}

enum With {
    Secret(Secret),
    PublicKeys(Vec<PublicKey>),
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
        Ok(Verifier {
            scheme,
            with: With::Secret(secret),
        })
    }

    /// A Standard Webhooks `v1a` verifier trusting these public keys
    /// (`whpk_…`); a usage error names the one that is not a public key.
    pub fn from_public_keys(keys: &[String]) -> Result<Verifier> {
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, text)| {
                PublicKey::parse(text).map_err(|e| {
                    let which = match keys.len() {
                        1 => String::new(),
                        _ => format!(" #{}", i + 1),
                    };
                    user_error(format!("--public-key{which} is not usable: {e}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Verifier {
            scheme: Scheme::StandardWebhooks,
            with: With::PublicKeys(keys),
        })
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
        match &self.with {
            With::Secret(secret) => {
                sign::verify(self.scheme, secret, &lookup, body, now_secs, tolerance_secs)
            }
            With::PublicKeys(keys) => {
                sign::verify_public(keys, &lookup, body, now_secs, tolerance_secs)
            }
        }
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
    fn public_keys_verify_v1a_and_a_secret_key_is_refused_unshown() {
        let key = sign::SigningKey::generate().unwrap();
        let signer = sign::Signer {
            scheme: Scheme::StandardWebhooks,
            secret: None,
            previous: None,
            key: Some(key.clone()),
            previous_key: None,
        };
        let headers: Vec<(String, String)> = signer
            .headers("msg_1", 100, b"{}")
            .unwrap()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        let other = sign::SigningKey::generate().unwrap().public_key().text();
        let trusted = [other.clone(), key.public_key().text()];
        let verifier = Verifier::from_public_keys(&trusted).unwrap();
        assert_eq!(verifier.scheme(), Scheme::StandardWebhooks);
        assert_eq!(verifier.verify(&headers, b"{}", 100, 300), Ok(()));
        assert!(verifier.verify(&headers, b"{ }", 100, 300).is_err());
        let only_other = Verifier::from_public_keys(&[other]).unwrap();
        assert!(only_other.verify(&headers, b"{}", 100, 300).is_err());
        let err = Verifier::from_public_keys(&[key.secret_text()])
            .err()
            .unwrap();
        assert_eq!(crate::exit::code_for(&err), crate::exit::ExitCode::Usage);
        assert!(err.to_string().contains("secret key"), "{err}");
        assert!(!err.to_string().contains(&key.secret_text()[5..]));
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
