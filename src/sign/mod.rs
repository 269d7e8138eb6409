//! Signatures: the schemes ([`Scheme`]: `speckit`, `github`,
//! `standard-webhooks`), the headers each sends ([`Signer`]) and their
//! verification on the receiving side. HMAC-SHA256 here; Standard Webhooks'
//! ed25519 `v1a` keys and signatures in [`ed25519`]. Pure functions over
//! bytes; secrets come in as [`Secret`] or [`SigningKey`], whose `Debug`
//! hides the value, and never go out.

pub mod ed25519;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use ed25519::{PublicKey, SigningKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Speckit,
    Github,
    StandardWebhooks,
}

impl Scheme {
    pub const NAMES: &[&str] = &["speckit", "github", "standard-webhooks"];

    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "speckit" => Some(Scheme::Speckit),
            "github" => Some(Scheme::Github),
            "standard-webhooks" => Some(Scheme::StandardWebhooks),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Speckit => "speckit",
            Scheme::Github => "github",
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }
}

/// A signing secret. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

pub const SPECKIT_SIGNATURE: &str = "X-SpecKit-Signature";
pub const GITHUB_SIGNATURE: &str = "X-Hub-Signature-256";
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
const WHSEC_PREFIX: &str = "whsec_";
/// How far a standard-webhooks timestamp may be from now (the spec's advice).
pub const DEFAULT_TOLERANCE_SECS: u64 = 5 * 60;

/// HMAC-SHA256 keyed with `key` over `parts`, ready to finalize or verify.
fn keyed_mac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    keyed_mac(key, parts).finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lowercase hex as [`hex`] writes it; `None` for anything else.
fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`: the PRD's signature,
/// which is also GitHub's `X-Hub-Signature-256`.
pub fn speckit_signature(secret: &Secret, body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret.expose(), &[body])))
}

/// The HMAC key inside a Standard Webhooks secret `whsec_<base64>`.
pub fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(WHSEC_PREFIX)
        .ok_or("a standard-webhooks secret must look like whsec_<base64 key>")?;
    let key = BASE64
        .decode(encoded)
        .map_err(|_| "the part after whsec_ is not valid base64".to_string())?;
    if key.len() < 16 {
        return Err(format!(
            "the key is {} bytes; use at least 16 (24–64 recommended)",
            key.len()
        ));
    }
    Ok(key)
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
pub fn standard_webhooks_signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(mac))
}

/// What one subscription signs with: the HMAC secret and the ed25519
/// signing key, each with its predecessor during a rotation. A subscription
/// has at least one of them (`config` sees to it); only
/// `standard-webhooks` uses a signing key.
#[derive(Debug, Clone)]
pub struct Signer {
    pub scheme: Scheme,
    pub secret: Option<Secret>,
    pub previous: Option<Secret>,
    pub key: Option<SigningKey>,
    pub previous_key: Option<SigningKey>,
}

impl Signer {
    /// An HMAC-only signer (what every scheme but `v1a` needs).
    pub fn hmac(scheme: Scheme, secret: Secret, previous: Option<Secret>) -> Signer {
        Signer {
            scheme,
            secret: Some(secret),
            previous,
            key: None,
            previous_key: None,
        }
    }

    /// The signature headers for one attempt. `X-SpecKit-Signature` (and
    /// GitHub's copy) is the HMAC of the current secret, sent when there is
    /// one. Standard Webhooks' `webhook-signature` lists every signature:
    /// `v1` for each secret and `v1a` for each key, current first, so a
    /// receiver holding any one of them accepts the delivery during a
    /// rotation or a move from HMAC to ed25519.
    pub fn headers(
        &self,
        delivery_id: &str,
        timestamp: u64,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, String> {
        let mut headers = Vec::with_capacity(4);
        if let Some(secret) = &self.secret {
            let speckit = speckit_signature(secret, body);
            if self.scheme == Scheme::Github {
                headers.push((GITHUB_SIGNATURE, speckit.clone()));
            }
            headers.insert(0, (SPECKIT_SIGNATURE, speckit));
        }
        if self.scheme != Scheme::StandardWebhooks {
            return Ok(headers);
        }
        let mut signatures = Vec::with_capacity(2);
        let secrets = [("", &self.secret), ("previous secret: ", &self.previous)];
        for (which, secret) in secrets {
            if let Some(secret) = secret {
                let key =
                    standard_webhooks_key(secret.as_str()).map_err(|e| format!("{which}{e}"))?;
                signatures.push(standard_webhooks_signature(
                    &key,
                    delivery_id,
                    timestamp,
                    body,
                ));
            }
        }
        for key in [&self.key, &self.previous_key].into_iter().flatten() {
            signatures.push(key.sign(delivery_id, timestamp, body));
        }
        if signatures.is_empty() {
            return Err("standard-webhooks needs a secret (secret_env) or a signing key (signing_key_env) to sign with".into());
        }
        headers.push((WEBHOOK_ID, delivery_id.to_string()));
        headers.push((WEBHOOK_TIMESTAMP, timestamp.to_string()));
        headers.push((WEBHOOK_SIGNATURE, signatures.join(" ")));
        Ok(headers)
    }

    /// Every credential this signer holds, as text a receiver could echo:
    /// for [`crate::redact`] (a `whsec_` secret also without its prefix).
    pub fn credentials(&self) -> Vec<String> {
        let mut out = Vec::new();
        for secret in [&self.secret, &self.previous].into_iter().flatten() {
            let value = secret.as_str();
            out.push(value.to_string());
            out.push(
                value
                    .strip_prefix(WHSEC_PREFIX)
                    .unwrap_or(value)
                    .to_string(),
            );
        }
        for key in [&self.key, &self.previous_key].into_iter().flatten() {
            let text = key.secret_text();
            out.push(text[ed25519::SECRET_PREFIX.len()..].to_string());
            out.push(text);
        }
        out
    }
}

/// Checks that a secret can be used with `scheme` (standard-webhooks needs
/// `whsec_<base64 key>`), so a receiver can refuse to start instead of
/// rejecting every delivery.
pub fn check_secret(scheme: Scheme, secret: &Secret) -> Result<(), String> {
    match scheme {
        Scheme::Speckit | Scheme::Github => Ok(()),
        Scheme::StandardWebhooks => standard_webhooks_key(secret.as_str()).map(|_| ()),
    }
}

/// Verifies a received request. `header` looks a header up case-insensitively.
pub fn verify(
    scheme: Scheme,
    secret: &Secret,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), String> {
    match scheme {
        Scheme::Speckit => verify_hex(secret, header, SPECKIT_SIGNATURE, body),
        Scheme::Github => verify_hex(secret, header, GITHUB_SIGNATURE, body),
        Scheme::StandardWebhooks => {
            let key = standard_webhooks_key(secret.as_str())?;
            let (id, ts, offered) = standard_webhooks_headers(header, now_secs, tolerance_secs)?;
            let ts = ts.to_string();
            let mac = keyed_mac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
            // hmac's `verify_slice` compares in constant time.
            let matches = |signature: &str| {
                signature
                    .strip_prefix("v1,")
                    .and_then(|tag| BASE64.decode(tag).ok())
                    .is_some_and(|tag| mac.clone().verify_slice(&tag).is_ok())
            };
            if offered.split_whitespace().any(matches) {
                Ok(())
            } else {
                Err("webhook-signature does not match: wrong secret or modified body".into())
            }
        }
    }
}

/// Verifies a Standard Webhooks request's `v1a` signatures: valid when one
/// of them is made by one of `keys` (a receiver's trust list) over this
/// body, id and a timestamp within the tolerance.
pub fn verify_public(
    keys: &[PublicKey],
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), String> {
    let (id, ts, offered) = standard_webhooks_headers(header, now_secs, tolerance_secs)?;
    let signed = |signature: &str| keys.iter().any(|k| k.verifies(signature, &id, ts, body));
    if offered.split_whitespace().any(signed) {
        return Ok(());
    }
    let v1a = format!("{},", ed25519::VERSION);
    if !offered.split_whitespace().any(|s| s.starts_with(&v1a)) {
        return Err("webhook-signature has no v1a (ed25519) signature: the sender signs with an HMAC secret only; set signing_key_env on its subscription".into());
    }
    Err("webhook-signature does not match: signed by another key, or the body was modified".into())
}

/// `webhook-id`, `webhook-timestamp` (checked against the tolerance) and
/// `webhook-signature`, or what is missing or stale.
fn standard_webhooks_headers(
    header: &dyn Fn(&str) -> Option<String>,
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(String, u64, String), String> {
    let id = header(WEBHOOK_ID).ok_or("missing header webhook-id")?;
    let ts_text = header(WEBHOOK_TIMESTAMP).ok_or("missing header webhook-timestamp")?;
    let ts: u64 = ts_text
        .trim()
        .parse()
        .map_err(|_| format!("webhook-timestamp `{ts_text}` is not a number"))?;
    if now_secs.abs_diff(ts) > tolerance_secs {
        return Err(format!(
            "webhook-timestamp {ts} is {}s away from now (tolerance {tolerance_secs}s): stale or replayed",
            now_secs.abs_diff(ts)
        ));
    }
    let offered = header(WEBHOOK_SIGNATURE).ok_or("missing header webhook-signature")?;
    Ok((id, ts, offered))
}

fn verify_hex(
    secret: &Secret,
    header: &dyn Fn(&str) -> Option<String>,
    name: &str,
    body: &[u8],
) -> Result<(), String> {
    let offered = header(name).ok_or_else(|| format!("missing header {name}"))?;
    let tag = offered.trim().strip_prefix("sha256=").and_then(unhex);
    // hmac's `verify_slice` compares in constant time.
    if tag.is_some_and(|tag| {
        keyed_mac(secret.expose(), &[body])
            .verify_slice(&tag)
            .is_ok()
    }) {
        Ok(())
    } else {
        Err(format!(
            "{name} does not match: wrong secret or modified body"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.into())
    }

    fn signature_headers(
        scheme: Scheme,
        secret: &Secret,
        previous: Option<&Secret>,
        id: &str,
        ts: u64,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, String> {
        Signer::hmac(scheme, secret.clone(), previous.cloned()).headers(id, ts, body)
    }

    fn lookup_in<'a>(
        headers: &'a [(&'static str, String)],
    ) -> impl Fn(&str) -> Option<String> + 'a {
        |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }
    }

    fn ed25519_signer(
        secret: Option<&str>,
        key: &SigningKey,
        previous_key: Option<&SigningKey>,
    ) -> Signer {
        Signer {
            scheme: Scheme::StandardWebhooks,
            secret: secret.map(|s| Secret::new(s.into())),
            previous: None,
            key: Some(key.clone()),
            previous_key: previous_key.cloned(),
        }
    }

    #[test]
    fn v1a_alone_sends_no_hmac_header_and_verifies_with_the_public_key_only() {
        let key = SigningKey::generate().unwrap();
        let headers = ed25519_signer(None, &key, None)
            .headers("msg_1", 1000, b"body")
            .unwrap();
        let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE]);
        let lookup = lookup_in(&headers);
        let public = [key.public_key()];
        assert_eq!(verify_public(&public, &lookup, b"body", 1000, 300), Ok(()));
        let tampered = verify_public(&public, &lookup, b"bodx", 1000, 300).unwrap_err();
        assert!(tampered.contains("does not match"), "{tampered}");
        let other = [SigningKey::generate().unwrap().public_key()];
        assert!(verify_public(&other, &lookup, b"body", 1000, 300).is_err());
        let stale = verify_public(&public, &lookup, b"body", 2000, 300).unwrap_err();
        assert!(stale.contains("stale"), "{stale}");
    }

    #[test]
    fn during_a_key_rotation_either_public_key_verifies_and_hmac_rides_along() {
        let (new, old) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let headers = ed25519_signer(Some(whsec), &new, Some(&old))
            .headers("m", 1000, b"b")
            .unwrap();
        let lookup = lookup_in(&headers);
        let listed: Vec<String> = lookup(WEBHOOK_SIGNATURE)
            .unwrap()
            .split(' ')
            .map(|s| s.split(',').next().unwrap().to_string())
            .collect();
        assert_eq!(
            listed,
            ["v1", "v1a", "v1a"],
            "HMAC first, then new and old keys"
        );
        for key in [&new, &old] {
            assert_eq!(
                verify_public(&[key.public_key()], &lookup, b"b", 1000, 300),
                Ok(())
            );
        }
        let hmac = verify(
            Scheme::StandardWebhooks,
            &secret(whsec),
            &lookup,
            b"b",
            1000,
            300,
        );
        assert_eq!(hmac, Ok(()), "a v1 receiver skips the v1a entries");
        assert_eq!(
            verify(Scheme::Speckit, &secret(whsec), &lookup, b"b", 0, 0),
            Ok(())
        );
    }

    #[test]
    fn an_hmac_only_delivery_tells_a_public_key_receiver_why_it_fails() {
        let headers = signature_headers(
            Scheme::StandardWebhooks,
            &secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            None,
            "m",
            1000,
            b"b",
        )
        .unwrap();
        let public = [SigningKey::generate().unwrap().public_key()];
        let why = verify_public(&public, &lookup_in(&headers), b"b", 1000, 300).unwrap_err();
        assert!(why.contains("no v1a"), "{why}");
    }

    #[test]
    fn a_signer_lists_its_credentials_for_redaction() {
        let key = SigningKey::generate().unwrap();
        let signer = ed25519_signer(Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), &key, None);
        let listed = signer.credentials();
        assert!(listed.contains(&"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()));
        assert!(listed.contains(&key.secret_text()));
        assert!(format!("{signer:?}").contains("<redacted>"));
        assert!(!format!("{signer:?}").contains(&key.secret_text()[5..]));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        assert_eq!(format!("{:?}", secret("hunter2")), "Secret(<redacted>)");
    }

    #[test]
    fn scheme_names_round_trip() {
        for name in Scheme::NAMES {
            assert_eq!(Scheme::parse(name).map(Scheme::as_str), Some(*name));
        }
        assert_eq!(Scheme::parse("Speckit"), None);
    }

    #[test]
    fn github_published_vector() {
        assert_eq!(
            speckit_signature(&secret("It's a Secret to Everybody"), b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn standard_webhooks_published_vector() {
        let key = standard_webhooks_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            standard_webhooks_signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn standard_webhooks_secret_must_be_whsec() {
        assert!(
            standard_webhooks_key("plain-secret")
                .unwrap_err()
                .contains("whsec_")
        );
        assert!(
            standard_webhooks_key("whsec_!!!")
                .unwrap_err()
                .contains("base64")
        );
    }

    #[test]
    fn signatures_are_compared_exactly_as_written() {
        let s = secret("It's a Secret to Everybody");
        let good = speckit_signature(&s, b"Hello, World!");
        let verify_with = |offered: &str| {
            let lookup = |_: &str| Some(offered.to_string());
            verify(Scheme::Speckit, &s, &lookup, b"Hello, World!", 0, 0)
        };
        assert_eq!(verify_with(&good), Ok(()));
        assert_eq!(verify_with(&format!(" {good}\n")), Ok(()), "trimmed");
        for bad in [
            good.to_uppercase(),
            good.replace("sha256=", "sha1="),
            good.trim_start_matches("sha256=").to_string(),
            good[..good.len() - 2].to_string(),
            format!("{good}00"),
            format!("{}0", &good[..good.len() - 1]),
            String::new(),
        ] {
            assert!(verify_with(&bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("0g"), None);
    }

    #[test]
    fn standard_webhooks_accepts_any_listed_signature_but_only_v1() {
        let s = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let key = standard_webhooks_key(s.as_str()).unwrap();
        let good = standard_webhooks_signature(&key, "m", 1000, b"b");
        let verify_with = |offered: String| {
            let lookup = |name: &str| match name {
                WEBHOOK_ID => Some("m".to_string()),
                WEBHOOK_TIMESTAMP => Some("1000".to_string()),
                _ => Some(offered.clone()),
            };
            verify(Scheme::StandardWebhooks, &s, &lookup, b"b", 1000, 300)
        };
        assert_eq!(verify_with(good.clone()), Ok(()));
        assert_eq!(verify_with(format!("v1,AAAA {good}")), Ok(()));
        assert!(verify_with(good.replace("v1,", "v2,")).is_err());
        assert!(verify_with(good.trim_end_matches('=').to_string()).is_err());
        assert!(verify_with("v1,!!!".into()).is_err());
    }

    #[test]
    fn check_secret_only_constrains_standard_webhooks() {
        let plain = secret("not-whsec");
        assert_eq!(check_secret(Scheme::Speckit, &plain), Ok(()));
        assert_eq!(check_secret(Scheme::Github, &plain), Ok(()));
        assert!(check_secret(Scheme::StandardWebhooks, &plain).is_err());
        assert_eq!(
            check_secret(
                Scheme::StandardWebhooks,
                &secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            ),
            Ok(())
        );
    }

    #[test]
    fn headers_per_scheme_and_rotation() {
        let s = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let prev = secret("whsec_c2Vjb25kLXNlY3JldC1rZXktMTIzNDU2");
        let h = signature_headers(Scheme::Github, &s, None, "id", 1, b"{}").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].1, h[1].1);
        let h =
            signature_headers(Scheme::StandardWebhooks, &s, Some(&prev), "id", 1, b"{}").unwrap();
        let sig = &h.iter().find(|(n, _)| *n == WEBHOOK_SIGNATURE).unwrap().1;
        assert_eq!(sig.split(' ').count(), 2);
        let h = signature_headers(Scheme::Speckit, &s, Some(&prev), "id", 1, b"{}").unwrap();
        assert_eq!(h.len(), 1, "speckit signs with the new secret only");
    }

    #[test]
    fn verify_accepts_good_and_rejects_tampered_or_stale() {
        let s = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        for scheme in [Scheme::Speckit, Scheme::Github, Scheme::StandardWebhooks] {
            let headers = signature_headers(scheme, &s, None, "msg_1", 1000, b"body").unwrap();
            let lookup = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(verify(scheme, &s, &lookup, b"body", 1000, 300), Ok(()));
            assert!(verify(scheme, &s, &lookup, b"bodx", 1000, 300).is_err());
            assert!(
                verify(
                    scheme,
                    &secret("whsec_b3RoZXItc2VjcmV0LWtleS0xMjM0"),
                    &lookup,
                    b"body",
                    1000,
                    300
                )
                .is_err()
            );
        }
        let headers =
            signature_headers(Scheme::StandardWebhooks, &s, None, "m", 1000, b"b").unwrap();
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert!(
            verify(Scheme::StandardWebhooks, &s, &lookup, b"b", 2000, 300)
                .unwrap_err()
                .contains("stale")
        );
    }
}
