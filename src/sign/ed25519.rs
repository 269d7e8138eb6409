//! Standard Webhooks' asymmetric scheme, `v1a`: ed25519 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, with keys written as the spec
//! and its reference libraries write them: `whsk_<base64 of the 32-byte
//! seed>` for the sender's secret key, `whpk_<base64 of the 32-byte public
//! key>` for receivers. A receiver holding only the public key can check a
//! delivery but never make one. The curve arithmetic is `ed25519-dalek`'s;
//! this file owns the key formats, their errors (which never show a secret
//! key), generation from the OS random source and the `v1a,<base64>` form.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;

pub const SECRET_PREFIX: &str = "whsk_";
pub const PUBLIC_PREFIX: &str = "whpk_";
/// The version tag of an ed25519 signature in `webhook-signature`.
pub const VERSION: &str = "v1a";

/// An ed25519 signing key (`whsk_…`). Its `Debug` shows the public key only.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

/// An ed25519 public key (`whpk_…`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(<redacted>, {})", self.public_key().text())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.text())
    }
}

/// The 32 bytes after `prefix`, base64-decoded; the error says what is
/// wrong without ever showing the text.
fn key_bytes(text: &str, prefix: &str, what: &str) -> Result<[u8; 32], String> {
    let encoded = text.trim().strip_prefix(prefix).ok_or_else(|| {
        format!("{what} must look like {prefix}<base64 of 32 bytes> (make a pair with `spec-notify keys generate`)")
    })?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| format!("the part after {prefix} is not valid base64"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "the part after {prefix} is {} bytes; an ed25519 key is 32",
            bytes.len()
        )
    })
}

impl SigningKey {
    /// Reads `whsk_<base64 seed>`. Other key kinds get an error naming what
    /// they are and where they belong.
    pub fn parse(text: &str) -> Result<SigningKey, String> {
        let text = text.trim();
        if text.starts_with(PUBLIC_PREFIX) {
            return Err("this is a public key (whpk_…): the sender signs with the secret key (whsk_…) printed beside it by `spec-notify keys generate`".into());
        }
        if text.starts_with("whsec_") {
            return Err("this is an HMAC secret (whsec_…), which belongs in `secret_env`; a signing key is an ed25519 key, whsk_…".into());
        }
        let seed = key_bytes(text, SECRET_PREFIX, "a signing key")?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SigningKey, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("the system random source failed: {e}"))?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// `whsk_…`: for `keys generate` to hand over, and for redaction.
    pub fn secret_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(self.0.to_bytes()))
    }

    /// `v1a,<base64 ed25519 signature of "{id}.{timestamp}.{body}">`
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let signature = self.0.sign(&signed_content(id, timestamp, body));
        format!("{VERSION},{}", BASE64.encode(signature.to_bytes()))
    }
}

impl PublicKey {
    /// Reads `whpk_<base64 public key>`; a secret key is refused without
    /// being shown, with a word on why it must not be handed out.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        if text.starts_with(SECRET_PREFIX) {
            return Err("this is a secret key (whsk_…): receivers need only the public key (whpk_…); keep the secret key with the sender".into());
        }
        let bytes = key_bytes(text, PUBLIC_PREFIX, "a public key")?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| "the part after whpk_ is not a point on the ed25519 curve".into())
    }

    pub fn text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", BASE64.encode(self.0.as_bytes()))
    }

    /// Whether `signature` (`v1a,<base64>`) signs `{id}.{timestamp}.{body}`
    /// with this key. Strict verification: no malleable or small-order forms.
    pub fn verifies(&self, signature: &str, id: &str, timestamp: u64, body: &[u8]) -> bool {
        let Some(encoded) = signature
            .strip_prefix(VERSION)
            .and_then(|s| s.strip_prefix(','))
        else {
            return false;
        };
        let Ok(bytes) = BASE64.decode(encoded) else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        self.0
            .verify_strict(&signed_content(id, timestamp, body), &signature)
            .is_ok()
    }
}

/// `{id}.{timestamp}.{body}`: what both Standard Webhooks schemes sign.
fn signed_content(id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut out = Vec::with_capacity(id.len() + ts.len() + body.len() + 2);
    out.extend_from_slice(id.as_bytes());
    out.push(b'.');
    out.extend_from_slice(ts.as_bytes());
    out.push(b'.');
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks Go library's published `v1a` vector
    /// (`TestAsymmetricWebhookSign`): seed, message and signature.
    const VECTOR_SEED: &str = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: u64 = 1614265330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIG: &str = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";

    #[test]
    fn the_reference_librarys_vector_signs_and_verifies() {
        let key = SigningKey::parse(VECTOR_SEED).unwrap();
        assert_eq!(key.sign(VECTOR_ID, VECTOR_TS, VECTOR_BODY), VECTOR_SIG);
        let public = PublicKey::parse(&key.public_key().text()).unwrap();
        assert!(public.verifies(VECTOR_SIG, VECTOR_ID, VECTOR_TS, VECTOR_BODY));
        assert!(!public.verifies(VECTOR_SIG, VECTOR_ID, VECTOR_TS + 1, VECTOR_BODY));
        assert!(!public.verifies(VECTOR_SIG, "msg_other", VECTOR_TS, VECTOR_BODY));
        assert!(!public.verifies(VECTOR_SIG, VECTOR_ID, VECTOR_TS, b"{\"test\": 2432232315}"));
        assert!(!public.verifies(
            &VECTOR_SIG.replace("v1a,", "v1,"),
            VECTOR_ID,
            VECTOR_TS,
            VECTOR_BODY
        ));
        assert!(!public.verifies("v1a,AAAA", VECTOR_ID, VECTOR_TS, VECTOR_BODY));
        assert!(!public.verifies("v1a,!!", VECTOR_ID, VECTOR_TS, VECTOR_BODY));
    }

    #[test]
    fn generated_keys_round_trip_through_their_text() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::parse(&key.secret_text()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_ne!(
            SigningKey::generate().unwrap().public_key(),
            key.public_key()
        );
        let text = key.public_key().text();
        assert!(text.starts_with("whpk_") && text.len() == 5 + 44, "{text}");
        assert!(key.secret_text().starts_with("whsk_"));
        let signature = key.sign("id", 7, b"body");
        assert!(
            PublicKey::parse(&text)
                .unwrap()
                .verifies(&signature, "id", 7, b"body")
        );
        assert!(format!("{key:?}").contains("<redacted>"));
        assert!(!format!("{key:?}").contains(&key.secret_text()[5..]));
    }

    #[test]
    fn wrong_keys_say_what_they_are_and_never_show_a_secret() {
        let secret = SigningKey::generate().unwrap().secret_text();
        let public = SigningKey::parse(&secret).unwrap().public_key().text();
        let as_public = PublicKey::parse(&secret).unwrap_err();
        assert!(as_public.contains("secret key") && !as_public.contains(&secret[5..]));
        assert!(
            SigningKey::parse(&public)
                .unwrap_err()
                .contains("public key")
        );
        assert!(
            SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap_err()
                .contains("secret_env")
        );
        for (bad, needle) in [
            ("plain", "whsk_<base64"),
            ("whsk_!!!!", "not valid base64"),
            ("whsk_AAAA", "3 bytes"),
        ] {
            let e = SigningKey::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains(bad), "{bad} is shown: {e}");
        }
        assert!(
            PublicKey::parse("whpk_AAAA")
                .unwrap_err()
                .contains("3 bytes")
        );
        assert_eq!(
            SigningKey::parse(&format!(" {secret}\n"))
                .unwrap()
                .public_key(),
            SigningKey::parse(&secret).unwrap().public_key(),
            "a trailing newline from a file is forgiven"
        );
    }
}
