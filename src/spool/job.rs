//! The job file format: one line of metadata ([`Meta`]) then the envelope,
//! byte for byte what is signed and sent; and the job file name
//! `<sequence:012>-<delivery-id>.job`. This module is the only place that
//! encodes, decodes or parses either.

use serde::{Deserialize, Serialize};

pub const JOB_EXT: &str = "job";
const META_VERSION: u32 = 1;
/// `max_attempts` is at most 1000; replays reset the count.
const MAX_ATTEMPTS_ON_DISK: u32 = 1_000_000;
/// 9999-12-31T23:59:59.999Z
const MAX_TIME_MS: u64 = 253_402_300_799_999;
/// A metadata line longer than this is not ours: a reader stops there
/// instead of growing a buffer without end (a symlink to /dev/zero).
pub const MAX_META_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Active,
    Delivered,
    Dead,
    Quarantine,
}

impl State {
    pub const JOBS: [State; 4] = [State::Pending, State::Active, State::Delivered, State::Dead];

    pub fn dir_name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::Delivered => "delivered",
            State::Dead => "dead",
            State::Quarantine => "quarantine",
        }
    }
}

/// A job's metadata: the first line of its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub v: u32,
    pub delivery_id: String,
    pub spec: String,
    pub subscription: String,
    pub event_type: String,
    pub idempotency_key: String,
    pub sequence: u64,
    pub created_at_ms: u64,
    /// Where the job belongs (pending, delivered or dead).
    pub state: State,
    pub attempts: u32,
    pub next_attempt_at_ms: u64,
    #[serde(default)]
    pub last_attempt_at_ms: Option<u64>,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// `exhausted`, `rejected`, `expired`, `spool-overflow`, `subscription-removed`.
    #[serde(default)]
    pub dead_reason: Option<String>,
    /// What an operator should do about a dead job.
    #[serde(default)]
    pub hint: Option<String>,
    /// When the job was delivered or dead-lettered.
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
    #[serde(default)]
    pub replays: u32,
    /// When the job last entered the queue: emit, or the last replay. Its
    /// age against `max_age` counts from here (absent in older jobs: emit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at_ms: Option<u64>,
    /// When a drain first saw the job waiting, written only for a job that
    /// was never attempted and looked older than `max_age` (its emitter's
    /// clock was behind): its age counts from the later of this and
    /// `queued_at_ms`, so it is attempted before it can expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at_ms: Option<u64>,
    /// The caller's correlation id (`emit --correlation-id`), also in the
    /// envelope's `event` section; here so `list` can filter on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// A per-call target (`emit --url`): what the drain needs to send this
    /// job, since no config table describes it. Absent for subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// A per-call target as the job carries it: the URL (stored here because a
/// retry or replay needs it, in a 0600 file inside 0700 folders, like the
/// payload; never printed unredacted), and the names of the secret's
/// variable, the signature scheme and the format. Never a secret's value.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default)]
    pub allow_private_networks: bool,
}

/// The URL may be a credential: debug output shows it redacted.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &crate::url::redact_url_path(&self.url))
            .field("secret_env", &self.secret_env)
            .field("signature", &self.signature)
            .field("format", &self.format)
            .field("allow_private_networks", &self.allow_private_networks)
            .finish()
    }
}

impl Meta {
    pub fn new(
        spec: &str,
        subscription: &str,
        event_type: &str,
        idempotency_key: &str,
        sequence: u64,
        now_ms: u64,
    ) -> Meta {
        Meta {
            v: META_VERSION,
            delivery_id: uuid::Uuid::new_v4().to_string(),
            spec: spec.into(),
            subscription: subscription.into(),
            event_type: event_type.into(),
            idempotency_key: idempotency_key.into(),
            sequence,
            created_at_ms: now_ms,
            state: State::Pending,
            attempts: 0,
            next_attempt_at_ms: now_ms,
            last_attempt_at_ms: None,
            last_status: None,
            last_error: None,
            dead_reason: None,
            hint: None,
            finished_at_ms: None,
            replays: 0,
            queued_at_ms: None,
            seen_at_ms: None,
            correlation_id: None,
            target: None,
        }
    }

    /// When the job entered the queue (emit or replay).
    pub fn queued_at(&self) -> u64 {
        self.queued_at_ms.unwrap_or(self.created_at_ms)
    }

    /// Where its age against `max_age` starts: when it was queued, or when
    /// a drain first saw it waiting if that is later (see `seen_at_ms`).
    pub fn age_from(&self) -> u64 {
        self.queued_at().max(self.seen_at_ms.unwrap_or(0))
    }

    /// How long the job meant to wait before its next attempt, counted from
    /// its last attempt (or from when it was queued): what a clock step may
    /// add to its wait at most.
    pub fn own_wait(&self) -> u64 {
        let from = self.last_attempt_at_ms.unwrap_or_else(|| self.queued_at());
        self.next_attempt_at_ms.saturating_sub(from)
    }

    pub fn file_name(&self) -> String {
        file_name(self.sequence, &self.delivery_id)
    }
}

/// A whole job: metadata and the exact envelope bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub meta: Meta,
    pub body: Vec<u8>,
}

impl Job {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(&self.meta).expect("metadata always serialises");
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Job, String> {
        let newline = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("no metadata line")?;
        let meta = decode_meta(&bytes[..newline])?;
        let body = bytes[newline + 1..].to_vec();
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return Err("envelope is not valid JSON".into());
        }
        Ok(Job { meta, body })
    }

    /// Decodes a job read from the file `name`: the name and the metadata
    /// must agree, or the file is not what it claims to be.
    pub fn decode_named(name: &str, bytes: &[u8]) -> Result<Job, String> {
        let job = Job::decode(bytes)?;
        check_named(name, &job.meta)?;
        Ok(job)
    }
}

/// Parses a metadata line and checks what the rest of the program trusts
/// it for: the version, and a delivery id that is a UUID (it becomes a
/// file name and an HTTP header).
pub fn decode_meta(line: &[u8]) -> Result<Meta, String> {
    let meta: Meta = serde_json::from_slice(line).map_err(|e| format!("metadata: {e}"))?;
    if meta.v != META_VERSION {
        return Err(format!("metadata version {} is not supported", meta.v));
    }
    // Values no program of ours writes: a wrapped attempt counter or a time
    // past year 9999 would mislead every drain (attempt 0, waiting forever).
    if meta.attempts > MAX_ATTEMPTS_ON_DISK {
        return Err(format!(
            "metadata attempts {} is not believable",
            meta.attempts
        ));
    }
    if [meta.next_attempt_at_ms, meta.created_at_ms]
        .into_iter()
        .chain(meta.last_attempt_at_ms)
        .chain(meta.seen_at_ms)
        .chain(meta.queued_at_ms)
        .chain(meta.finished_at_ms)
        .any(|t| t > MAX_TIME_MS)
    {
        return Err("metadata holds a time past the year 9999".into());
    }
    if !is_delivery_id(&meta.delivery_id) {
        return Err(format!(
            "metadata delivery_id {:?} is not a UUID",
            meta.delivery_id
        ));
    }
    Ok(meta)
}

/// The metadata of the file `name` must name that same file.
pub fn check_named(name: &str, meta: &Meta) -> Result<(), String> {
    if meta.file_name() == name {
        Ok(())
    } else {
        Err(format!(
            "file name does not match its metadata (sequence {}, delivery id {})",
            meta.sequence, meta.delivery_id
        ))
    }
}

/// `<sequence:012>-<delivery-id>.job`
pub fn file_name(sequence: u64, delivery_id: &str) -> String {
    format!("{sequence:012}-{delivery_id}.{JOB_EXT}")
}

/// What a job file name says: (sequence, delivery id). `None` for any other name.
pub fn parse_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".job")?;
    let (seq, id) = stem.split_once('-')?;
    if seq.len() != 12 || !seq.bytes().all(|b| b.is_ascii_digit()) || id.is_empty() {
        return None;
    }
    Some((seq.parse().ok()?, id))
}

/// Whether `name` is a job file name.
pub fn is_job_name(name: &str) -> bool {
    parse_name(name).is_some()
}

/// The delivery id in a job file name.
pub fn delivery_id_of(name: &str) -> Option<&str> {
    parse_name(name).map(|(_, id)| id)
}

/// A delivery id is a hyphenated UUID; nothing else may reach a path or a header.
pub fn is_delivery_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seq: u64) -> Job {
        Job {
            meta: Meta::new("S", "sub", "a.b.c", "k", seq, 1000),
            body: br#"{"x":1}"#.to_vec(),
        }
    }

    #[test]
    fn encode_decode_round_trip_keeps_exact_body() {
        let j = job(3);
        assert_eq!(Job::decode(&j.encode()).unwrap(), j);
        assert!(Job::decode(b"{}\n{}").unwrap_err().contains("metadata"));
        assert!(Job::decode(b"no newline").is_err());
    }

    #[test]
    fn names_parse_and_strangers_do_not() {
        assert_eq!(
            parse_name("000000000042-0b6f-11.job"),
            Some((42, "0b6f-11"))
        );
        assert_eq!(parse_name("42-x.job"), None);
        assert_eq!(parse_name("000000000042-.job"), None);
        assert_eq!(parse_name("00000000004x-abc.job"), None);
        assert_eq!(parse_name("000000000042-abc.txt"), None);
        let j = job(7);
        assert_eq!(
            parse_name(&j.meta.file_name()),
            Some((7, j.meta.delivery_id.as_str()))
        );
    }

    #[test]
    fn a_delivery_id_that_is_not_a_uuid_is_refused() {
        let mut j = job(1);
        j.meta.delivery_id = "x/../../victim".into();
        let err = Job::decode(&j.encode()).unwrap_err();
        assert!(err.contains("not a UUID"), "{err}");
    }

    #[test]
    fn a_file_whose_name_and_metadata_disagree_is_refused() {
        let j = job(5);
        let bytes = j.encode();
        assert!(Job::decode_named(&j.meta.file_name(), &bytes).is_ok());
        let renamed = file_name(1, "00000000-0000-0000-0000-000000000000");
        let err = Job::decode_named(&renamed, &bytes).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn unbelievable_counters_and_times_are_corrupt() {
        let mut j = job(1);
        j.meta.attempts = u32::MAX;
        assert!(Job::decode(&j.encode()).unwrap_err().contains("attempts"));
        let mut j = job(1);
        j.meta.next_attempt_at_ms = u64::MAX;
        assert!(Job::decode(&j.encode()).unwrap_err().contains("9999"));
    }
}
