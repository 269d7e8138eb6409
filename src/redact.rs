//! Credentials a receiver could echo back: URL userinfo and query values,
//! extra header values (`Authorization`, `env:` values), signing secrets.
//! Every request remembers the ones it carries ([`remember`], called by
//! `deliver::request`), and [`hide`] replaces each of them with
//! `<redacted>` in text from outside: a response body, before anything
//! stores, parses or prints it. The list is process-wide, like a CI
//! runner's secret masks, so whatever builds a request (a configured
//! subscription, a one-off URL) and whatever shows an answer (the evidence,
//! `test`, a dead-letter hint) need no plumbing between them.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a hidden credential becomes.
pub const REDACTED: &str = "<redacted>";

/// Shorter values are not hidden: replacing every `ok` or `1` would garble
/// an answer and protect nothing (so short a credential is guessed anyway).
pub const MIN_LEN: usize = 3;

/// A set of values to hide, longest first (so a value is hidden whole
/// before a shorter one inside it is looked for).
#[derive(Debug, Default)]
pub struct Masks {
    values: RwLock<Vec<String>>,
    /// Sources whose values were worked out already ([`Masks::remember_from`]).
    sources: RwLock<Vec<String>>,
}

static KNOWN: Masks = Masks::new();

/// Remembers credentials for [`hide`] for the rest of the process.
pub fn remember<S: AsRef<str>>(values: impl IntoIterator<Item = S>) {
    KNOWN.remember(values);
}

/// [`remember`] for the credentials worked out from `source` (a URL's):
/// `values` runs the first time `source` is seen only, so parsing a URL
/// is not the price of every delivery.
pub fn remember_from<I, S>(source: &str, values: impl FnOnce() -> I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    KNOWN.remember_from(source, values);
}

/// `bytes` with every remembered credential replaced by `<redacted>`.
pub fn hide(bytes: &[u8]) -> Cow<'_, [u8]> {
    KNOWN.hide(bytes)
}

/// [`hide`] for text.
pub fn hide_str(text: &str) -> Cow<'_, str> {
    match KNOWN.hide(text.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        // Whole UTF-8 values replaced by ASCII: still UTF-8.
        Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

impl Masks {
    pub const fn new() -> Masks {
        Masks {
            values: RwLock::new(Vec::new()),
            sources: RwLock::new(Vec::new()),
        }
    }

    /// [`remember_from`]: a source already seen costs one look.
    pub fn remember_from<I, S>(&self, source: &str, values: impl FnOnce() -> I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let seen = |sources: &Vec<String>| sources.iter().any(|s| s == source);
        if seen(&self.sources.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        // Remembered before the source is marked: a concurrent caller that
        // sees the mark finds the values known.
        self.remember(values());
        let mut sources = self.sources.write().unwrap_or_else(|e| e.into_inner());
        if !seen(&sources) {
            sources.push(source.to_string());
        }
    }

    /// Adds values (and the forms a JSON echo gives them) not known yet.
    /// Cheap for known values: every request calls it.
    pub fn remember<S: AsRef<str>>(&self, values: impl IntoIterator<Item = S>) {
        let mut new: Vec<String> = Vec::new();
        {
            let known = self.values.read().unwrap_or_else(|e| e.into_inner());
            for value in values {
                let value = value.as_ref();
                // A value is remembered with all its forms at once.
                if value.chars().count() < MIN_LEN || known.iter().any(|k| k == value) {
                    continue;
                }
                for form in echoed_forms(value) {
                    if form.chars().count() >= MIN_LEN
                        && !known.contains(&form)
                        && !new.contains(&form)
                    {
                        new.push(form);
                    }
                }
            }
        }
        if new.is_empty() {
            return;
        }
        let mut known = self.values.write().unwrap_or_else(|e| e.into_inner());
        for value in new {
            if !known.contains(&value) {
                known.push(value);
            }
        }
        known.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// `bytes` with every value replaced by [`REDACTED`]; borrowed when
    /// none occurs.
    pub fn hide<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let known = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut text = Cow::Borrowed(bytes);
        for value in known.iter() {
            if let Some(replaced) = replace_all(&text, value.as_bytes(), REDACTED.as_bytes()) {
                text = Cow::Owned(replaced);
            }
        }
        text
    }
}

/// A value as written, and as a JSON encoder writes it inside a string
/// (quotes and backslashes escaped; PHP also escapes `/`).
fn echoed_forms(value: &str) -> Vec<String> {
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(value)
        .to_string();
    let php = json.replace('/', "\\/");
    let mut forms = vec![value.to_string(), json, php];
    forms.dedup();
    forms
}

/// `haystack` with each `needle` replaced, or `None` when there is none.
fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let (mut at, mut copied) = (0, 0);
    while at + needle.len() <= haystack.len() {
        if haystack[at..].starts_with(needle) {
            let out = out.get_or_insert_with(|| Vec::with_capacity(haystack.len()));
            out.extend_from_slice(&haystack[copied..at]);
            out.extend_from_slice(with);
            at += needle.len();
            copied = at;
        } else {
            at += 1;
        }
    }
    out.map(|mut out| {
        out.extend_from_slice(&haystack[copied..]);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_values_are_hidden_in_every_echoed_form() {
        let masks = Masks::new();
        masks.remember(["pa/ss\"word", "tok-123", "ok"]);
        let echo = br#"{"auth":"pa\/ss\"word","raw":"pa/ss"word","q":"tok-123tok-123","s":"ok"}"#;
        assert_eq!(
            masks.hide(echo).as_ref(),
            br#"{"auth":"<redacted>","raw":"<redacted>","q":"<redacted><redacted>","s":"ok"}"#,
            "short values stay: {}",
            String::from_utf8_lossy(&masks.hide(echo))
        );
        assert!(matches!(masks.hide(b"nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_sources_values_are_worked_out_once_and_hidden() {
        let masks = Masks::new();
        let mut runs = 0;
        for _ in 0..3 {
            masks.remember_from("https://u:pw-123@x/", || {
                runs += 1;
                ["pw-123"]
            });
        }
        assert_eq!(runs, 1);
        masks.remember_from("https://other/", || {
            runs += 1;
            ["tok-456"]
        });
        assert_eq!(runs, 2);
        assert_eq!(
            masks.hide(b"pw-123 tok-456").as_ref(),
            b"<redacted> <redacted>"
        );
    }

    #[test]
    fn a_value_is_hidden_whole_before_a_shorter_one_inside_it() {
        let masks = Masks::new();
        masks.remember(["abc", "xxabcxx"]);
        assert_eq!(
            masks.hide(b"1 xxabcxx 2 abc").as_ref(),
            b"1 <redacted> 2 <redacted>"
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_still_searched() {
        let masks = Masks::new();
        masks.remember(["s3cr3t"]);
        assert_eq!(
            masks.hide(b"\xff\xfes3cr3t\xff").as_ref(),
            b"\xff\xfe<redacted>\xff"
        );
    }
}
