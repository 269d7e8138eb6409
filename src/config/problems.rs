//! Problems found while reading the config, gathered so every one is
//! reported at once, grouped by place (a table or a subscription) in the
//! order of the file ([`Problems`]); and [`Check`], which holds one table's
//! values to their ranges and names, recording a problem for each value
//! that cannot be used.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;

use anyhow::Result;

use crate::exit::user_error;
use crate::sign::Scheme;

/// Problems found while reading the config, reported together and grouped
/// by place (a table or a subscription), places in the order of the file.
#[derive(Default)]
pub(super) struct Problems {
    /// Every place in the order it was read or first had a problem.
    places: RefCell<Vec<String>>,
    /// Each problem with its place; `None`: a line that says where itself.
    found: RefCell<Vec<(Option<String>, String)>>,
}

impl Problems {
    /// Notes a place where problems may come up, so they sort by it.
    pub(super) fn place(&self, at: &str) {
        let mut places = self.places.borrow_mut();
        if !places.iter().any(|p| p == at) {
            places.push(at.to_string());
        }
    }

    pub(super) fn push(&self, at: &str, message: impl fmt::Display) {
        self.place(at);
        self.found
            .borrow_mut()
            .push((Some(at.to_string()), message.to_string()));
    }

    /// A problem with the value of `key`.
    pub(super) fn key(&self, at: &str, key: &str, message: impl fmt::Display) {
        self.push(at, format!("key `{key}`: {message}"));
    }

    /// A line that already says where; such lines come last.
    pub(super) fn push_line(&self, line: String) {
        self.found.borrow_mut().push((None, line));
    }

    /// Whether any problem was found at `at`.
    pub(super) fn has(&self, at: &str) -> bool {
        self.found
            .borrow()
            .iter()
            .any(|(place, _)| place.as_deref() == Some(at))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.found.borrow().is_empty()
    }

    /// Takes over the problems another list found, with their places.
    pub(super) fn absorb(&self, other: Problems) {
        for place in other.places.into_inner() {
            self.place(&place);
        }
        self.found.borrow_mut().extend(other.found.into_inner());
    }

    pub(super) fn lines(&self) -> Vec<String> {
        let places = self.places.borrow();
        let order = |at: &Option<String>| {
            at.as_ref()
                .and_then(|at| places.iter().position(|p| p == at))
                .unwrap_or(usize::MAX)
        };
        let mut problems = self.found.borrow().clone();
        problems.sort_by_key(|(at, _)| order(at));
        problems
            .into_iter()
            .map(|(at, message)| match at {
                Some(at) => format!("{at}: {message}"),
                None => message,
            })
            .collect()
    }

    pub(super) fn into_result(self, path: &Path) -> Result<()> {
        let problems = self.lines();
        if problems.is_empty() {
            return Ok(());
        }
        let count = match problems.len() {
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        };
        let mut text = format!("invalid config `{}` ({count}):", path.display());
        for p in &problems {
            text.push_str("\n  - ");
            text.push_str(p);
        }
        Err(user_error(text))
    }
}

/// Checks what one table says against what its values may be, recording a
/// problem for each value that cannot be used (the default stands in).
pub(super) struct Check<'a> {
    pub(super) at: &'a str,
    pub(super) problems: &'a Problems,
}

impl Check<'_> {
    pub(super) fn problem(&self, key: &str, message: impl fmt::Display) {
        self.problems.key(self.at, key, message);
    }

    /// A duration written like `72h`, `30s`, `10m`.
    pub(super) fn duration_ms(&self, key: &str, text: Option<String>) -> Option<u64> {
        let text = text?;
        match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => Some(d.as_millis().min(u64::MAX as u128) as u64),
            Ok(_) => {
                self.problem(key, "must be longer than 0");
                None
            }
            Err(e) => {
                self.problem(
                    key,
                    format!("`{text}` is not a duration ({e}); write it like \"72h\", \"30s\" or \"10m\""),
                );
                None
            }
        }
    }

    pub(super) fn int(&self, key: &str, value: Option<i64>, min: i64, max: i64) -> Option<i64> {
        let value = value?;
        if (min..=max).contains(&value) {
            return Some(value);
        }
        self.problem(
            key,
            format!("{value} is out of range: use a whole number from {min} to {max}"),
        );
        None
    }

    pub(super) fn float(&self, key: &str, value: Option<f64>, min: f64, max: f64) -> Option<f64> {
        let value = value?;
        if value.is_finite() && (min..=max).contains(&value) {
            return Some(value);
        }
        self.problem(
            key,
            format!("{value} is out of range: use a number from {min} to {max}"),
        );
        None
    }

    pub(super) fn scheme(&self, name: Option<String>) -> Scheme {
        let Some(name) = name else {
            return Scheme::Speckit;
        };
        Scheme::parse(&name).unwrap_or_else(|| {
            self.problem(
                "signature",
                format!(
                    "unknown scheme `{name}`: use one of {}",
                    Scheme::NAMES.join(", ")
                ),
            );
            Scheme::Speckit
        })
    }

    /// `ordering` and `fifo_on_dead`; `fifo_on_dead` asks for FIFO.
    pub(super) fn ordering(
        &self,
        ordering: Option<String>,
        on_dead: Option<String>,
    ) -> crate::config::Ordering {
        use crate::config::{OnDead, Ordering};
        let on_dead = match on_dead.as_deref() {
            None | Some("continue") => OnDead::Continue,
            Some("hold") => OnDead::Hold,
            Some(other) => {
                self.problem(
                    "fifo_on_dead",
                    format!(
                        "unknown value `{other}`: use one of {}",
                        OnDead::NAMES.join(", ")
                    ),
                );
                OnDead::Continue
            }
        };
        match ordering.as_deref() {
            None | Some("none") => {
                if on_dead == OnDead::Hold {
                    self.problem(
                        "fifo_on_dead",
                        "only a FIFO subscription holds: add `ordering = \"fifo\"`, or remove fifo_on_dead",
                    );
                }
                Ordering::None
            }
            Some("fifo") => Ordering::Fifo { on_dead },
            Some(other) => {
                self.problem(
                    "ordering",
                    format!(
                        "unknown value `{other}`: use one of {}",
                        Ordering::NAMES.join(", ")
                    ),
                );
                Ordering::None
            }
        }
    }

    /// The values that pass `check`.
    pub(super) fn valid(
        &self,
        key: &str,
        values: Vec<String>,
        check: fn(&str) -> std::result::Result<(), String>,
    ) -> Vec<String> {
        values
            .into_iter()
            .filter(|value| match check(value) {
                Ok(()) => true,
                Err(e) => {
                    self.problem(key, e);
                    false
                }
            })
            .collect()
    }

    /// Each value as one of `names`.
    pub(super) fn names<T>(
        &self,
        key: &str,
        values: &[String],
        parse: fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Vec<T> {
        values
            .iter()
            .filter_map(|s| {
                let parsed = parse(s);
                if parsed.is_none() {
                    self.problem(
                        key,
                        format!("unknown value `{s}`: use one of {}", names.join(", ")),
                    );
                }
                parsed
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    fn errors(text: &str) -> String {
        format!(
            "{:#}",
            crate::config::parse(text, std::path::Path::new("/x/config.toml")).unwrap_err()
        )
    }

    #[test]
    fn problems_are_grouped_by_subscription() {
        let text = r#"
[spec_ops.webhooks]
[[spec_ops.webhooks.subscriptions]]
id = "a"
url = "https://a.example/h"
dry_run = true
max_attempts = 0
[[spec_ops.webhooks.subscriptions]]
id = "b"
url = "https://b.example/h"
dry_run = "yes"
[[spec_ops.webhooks.subscriptions]]
id = "a"
url = "https://c.example/h"
dry_run = true
jitter_ms = "x"
"#;
        let e = errors(text);
        let lines: Vec<&str> = e.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "  - subscription `a`: key `jitter_ms`: expected a whole number, found string `\"x\"`",
                "  - subscription `a`: key `max_attempts`: 0 is out of range: use a whole number from 1 to 1000",
                "  - subscription `a`: duplicate `id`: every subscription needs its own id",
                "  - subscription `b`: key `dry_run`: expected true or false, found string `\"yes\"`",
                "  - subscription `b`: key `secret_env`: missing: name the environment variable that holds this subscription's secret",
            ],
            "{e}"
        );
    }

    #[test]
    fn one_problem_is_not_plural() {
        let e = errors("[spec_ops.webhooks]\nenabled = 3\n");
        assert!(e.contains("(1 problem):"), "{e}");
    }
}
