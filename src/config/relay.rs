//! `[spec_ops.webhooks.relay]`: where `relay` and `drain --source nats` find
//! NATS JetStream. Reads and checks the table in one place (the keys, their
//! types and their values), so the rest of the config never changes for it.

use toml::Value;

use super::problems::Problems;

/// What a build without the `nats` cargo feature says when asked to relay
/// or to read NATS.
pub const WITHOUT_NATS: &str = "this spec-notify was built without scale-out on NATS JetStream: build it with the `nats` feature (`cargo install --path . --features nats`; see docs/scale-out.md)";

/// Where the table lives, as messages name it.
const AT: &str = "[spec_ops.webhooks.relay]";
const KEYS: &[&str] = &[
    "url",
    "credentials_env",
    "stream",
    "replicas",
    "ack_wait_ms",
];
/// How long a job a worker holds stays its own without news, by default.
pub const DEFAULT_ACK_WAIT_MS: u64 = 30_000;
/// The stream prefix when `stream` is not set.
pub const DEFAULT_STREAM: &str = "SPEC_NOTIFY";

/// A checked relay table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// `nats://host:port` URLs: one server, or several of a cluster.
    pub urls: Vec<String>,
    /// The environment variable holding a token or a `.creds` file's text.
    pub credentials_env: Option<String>,
    /// Prefix of the streams, the consumer and the KV bucket.
    pub stream: String,
    /// How many servers keep each stream (1, 3 or 5 in a cluster).
    pub replicas: usize,
    /// How long a job a worker holds stays its own without news (acks or
    /// in-progress acks): after a worker dies, its jobs go to others then.
    pub ack_wait_ms: u64,
}

impl Relay {
    /// The server URLs as messages and `check` show them: no userinfo (a
    /// `nats://user:password@host` keeps its password to itself).
    pub fn shown_urls(&self) -> Vec<String> {
        self.urls.iter().map(|u| shown(u)).collect()
    }

    /// The credentials, read from the environment now (never stored).
    pub fn credentials(&self) -> Result<Option<String>, String> {
        let Some(var) = &self.credentials_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(value)),
            _ => Err(format!(
                "{AT}: key `credentials_env`: the environment variable {var} is unset or empty: export the token or the .creds file's text"
            )),
        }
    }
}

/// Reads and checks the table; `None` when absent or invalid (each problem
/// recorded).
pub(super) fn read(value: Option<&Value>, problems: &Problems) -> Option<Relay> {
    let table = match value? {
        Value::Table(t) => t,
        _ => {
            problems.push(AT, "must be a table");
            return None;
        }
    };
    problems.place(AT);
    let before = problems.lines().len();
    for key in table.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        problems.push(
            AT,
            format!("unknown key `{key}`; known keys: {}", KEYS.join(", ")),
        );
    }
    let urls: Vec<String> = match table.get("url") {
        None => {
            problems.key(
                AT,
                "url",
                "missing: write the NATS server, like \"nats://127.0.0.1:4222\" (a list for a cluster)",
            );
            Vec::new()
        }
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    // Not the value: it may hold a password.
                    let found = v.type_str();
                    problems.key(AT, "url", format!("expected a string, found {found}"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            problems.key(
                AT,
                "url",
                format!(
                    "expected a string or a list of strings, found {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    };
    if table.contains_key("url") && urls.is_empty() {
        problems.key(AT, "url", "the list is empty: name at least one server");
    }
    for url in &urls {
        if let Err(e) = check_url(url) {
            problems.key(AT, "url", e);
        }
    }
    let credentials_env = match table.get("credentials_env") {
        None => None,
        Some(Value::String(s)) if is_env_name(s) => Some(s.clone()),
        Some(other) => {
            problems.key(
                AT,
                "credentials_env",
                format!("`{other}` is not an environment variable name (letters, digits, `_`)"),
            );
            None
        }
    };
    let stream = match table.get("stream") {
        None => DEFAULT_STREAM.to_string(),
        Some(Value::String(s)) if is_stream_prefix(s) => s.clone(),
        Some(other) => {
            problems.key(
                AT,
                "stream",
                format!(
                    "`{other}` is not a stream prefix: use 1 to 32 letters, digits, `-` or `_`"
                ),
            );
            String::new()
        }
    };
    let replicas = match table.get("replicas") {
        None => 1,
        Some(Value::Integer(n)) if (1..=5).contains(n) => *n as usize,
        Some(other) => {
            problems.key(
                AT,
                "replicas",
                format!("`{other}` is out of range: 1 to 5 (3 for a 3-node cluster)"),
            );
            1
        }
    };
    let ack_wait_ms = match table.get("ack_wait_ms") {
        None => DEFAULT_ACK_WAIT_MS,
        Some(Value::Integer(n)) if (1000..=3_600_000).contains(n) => *n as u64,
        Some(other) => {
            problems.key(
                AT,
                "ack_wait_ms",
                format!("`{other}` is out of range: 1000 to 3600000 (milliseconds)"),
            );
            DEFAULT_ACK_WAIT_MS
        }
    };
    if problems.lines().len() > before {
        return None;
    }
    Some(Relay {
        urls,
        credentials_env,
        stream,
        replicas,
        ack_wait_ms,
    })
}

/// A URL without its userinfo (and without the `/` a bare address gains
/// on the way through the URL parser).
fn shown(url: &str) -> String {
    let shown = crate::url::redact_url(url);
    match url.ends_with('/') {
        true => shown,
        false => shown.trim_end_matches('/').to_string(),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"))
        .ok_or_else(|| format!("`{}` must start with nats:// or tls://", shown(url)))?;
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    let ok = host_port
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok && !host_port.contains('/') {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a NATS server address: write it like nats://127.0.0.1:4222",
            shown(url)
        ))
    }
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_stream_prefix(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(text: &str) -> (Option<Relay>, Vec<String>) {
        let problems = Problems::default();
        let value: toml::Table = text.parse().unwrap();
        let relay = read(value.get("relay"), &problems);
        (relay, problems.lines())
    }

    #[test]
    fn reads_a_cluster_with_defaults() {
        let (r, p) = relay(
            "[relay]\nurl = [\"nats://127.0.0.1:4222\", \"nats://10.0.0.2:4222\"]\nreplicas = 3\n",
        );
        assert!(p.is_empty(), "{p:?}");
        let r = r.unwrap();
        assert_eq!(r.urls.len(), 2);
        assert_eq!(r.stream, DEFAULT_STREAM);
        assert_eq!(r.replicas, 3);
        assert_eq!(r.credentials_env, None);
        assert_eq!(r.ack_wait_ms, DEFAULT_ACK_WAIT_MS);
    }

    #[test]
    fn names_every_bad_value() {
        let (r, p) = relay(
            "[relay]\nurl = \"http://x:1\"\nstream = \"a.b\"\nreplicas = 7\ncredentials_env = \"1X\"\nurls = 1\nack_wait_ms = 5\n",
        );
        assert!(r.is_none());
        let text = p.join("\n");
        for needle in [
            "unknown key `urls`",
            "must start with nats://",
            "not a stream prefix",
            "1 to 5",
            "not an environment variable name",
            "1000 to 3600000",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        let (r, p) = relay("[relay]\nurl = \"nats://alice:hunter2@10.0.0.1:4222\"\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(r.unwrap().shown_urls(), ["nats://10.0.0.1:4222"]);
        let (_, p) = relay("[relay]\nurl = \"nats://alice:hunter2@10.0.0.1\"\n");
        let text = p.join("\n");
        assert!(text.contains("not a NATS server address"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn a_missing_url_is_a_problem() {
        let (r, p) = relay("[relay]\nreplicas = 1\n");
        assert!(r.is_none());
        assert!(p[0].contains("key `url`: missing"), "{p:?}");
    }
}
