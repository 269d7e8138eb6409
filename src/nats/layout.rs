//! What spec-notify keeps on the server, by name, and how it is set up.
//!
//! For a prefix `P` (`stream` in `[spec_ops.webhooks.relay]`):
//!
//! | name | kind | subjects | holds |
//! |---|---|---|---|
//! | `P_JOBS` | stream, work queue, message schedules | `P.jobs.<sub>.<spec>` | jobs due now, one subject per lane (subscription × SPEC) |
//! | | | `P.retry.<sub>.<spec>.<id>` | a retry waiting for its backoff: a schedule that puts the job back on its lane subject when due |
//! | | | `P.fifo.<sub>.<spec>` | a FIFO lane's jobs (`ordering = "fifo"`), in sequence order; no consumer: read by direct get, deleted when settled |
//! | | | `P.fifo.<sub>.<spec>.r` | a FIFO lane's replayed jobs, each back at its own place by sequence |
//! | `P_w_<sub>` | durable pull consumer on `P_JOBS` | `P.jobs.<sub>.>` | one per subscription: one endpoint's jobs never queue behind another's |
//! | `P_DEAD` | stream | `P.dead.<sub>.<spec>` | dead-lettered jobs |
//! | `P_EVIDENCE` | stream, 30 days | `P.evidence.<spec>` | one attempt record per message |
//! | `P_CIRCUITS` | KV bucket | key `<sub>` | the fleet's breaker and pause per subscription; a key also announces a lane (the relay creates it) |
//! | `P_LANES` | KV bucket | key `<sub>.<spec>` | a FIFO lane's lease (owner, beat), head attempt state, idle flag and the dead job holding it |
//!
//! FIFO lanes are a lease in KV over subjects no consumer covers, rather
//! than a consumer per lane: a consumer hands out the next message as
//! soon as the last one is acked or given back, so a retrying head would
//! let its successor out (or need a redelivery that puts it after them),
//! and thousands of lanes would be thousands of consumers. Reading the
//! head by direct get and deleting it when settled keeps a retrying head in
//! place, ahead of every later job, while its attempt state lives in the
//! lane's key; the lease (compare-and-swap, swapped again before each send)
//! is what makes one worker the lane's only sender. See `super::fifo`.
//!
//! `<sub>` and `<spec>` are subject tokens ([`token`]). Setting up is safe
//! to run from many workers at once (creating what exists is success) and
//! checks what it finds: settings that may change are brought to the
//! configured ones (replicas, windows, subjects), others are refused with
//! the fix. A `P_JOBS` of the first layout (one subject `P.jobs`, one
//! shared consumer `P_workers`) is moved to this one: its jobs are
//! republished to their lanes, none lost.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use super::client::{Nats, Outgoing};

/// Relay publishes of the same delivery id within this window are stored once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
/// Evidence records older than this leave the evidence stream.
const EVIDENCE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most jobs a subscription's consumer hands out before acks come back
/// (every worker's share together, and the jobs given back with a delay).
pub const MAX_ACK_PENDING: i64 = 20_000;

/// A subject token for an id: the id itself when it is letters, digits,
/// `-` and `_`; else `~` and the hex of its bytes (ids never hold `~`, so
/// no two ids share a token).
pub fn token(id: &str) -> String {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return id.to_string();
    }
    let mut out = String::with_capacity(1 + id.len() * 2);
    out.push('~');
    for b in id.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The id a [`token`] stands for.
pub fn untoken(token: &str) -> Option<String> {
    let Some(hex) = token.strip_prefix('~') else {
        return (!token.is_empty()).then(|| token.to_string());
    };
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The names of everything on the server, from the prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
    pub jobs: String,
    pub dead: String,
    pub evidence: String,
    pub circuits: String,
    pub lanes: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_string(),
            jobs: format!("{prefix}_JOBS"),
            dead: format!("{prefix}_DEAD"),
            evidence: format!("{prefix}_EVIDENCE"),
            circuits: format!("{prefix}_CIRCUITS"),
            lanes: format!("{prefix}_LANES"),
        }
    }

    /// The subject of a FIFO lane's jobs, in the order the relay stored them.
    pub fn fifo(&self, subscription: &str, spec: &str) -> String {
        format!(
            "{}.fifo.{}.{}",
            self.prefix,
            token(subscription),
            token(spec)
        )
    }

    /// Where replayed jobs of a FIFO lane wait: each goes back to its own
    /// place in the lane by its sequence.
    pub fn fifo_replays(&self, subscription: &str, spec: &str) -> String {
        format!("{}.r", self.fifo(subscription, spec))
    }

    /// Every FIFO lane of one subscription.
    pub fn fifo_of(&self, subscription: &str) -> String {
        format!("{}.fifo.{}.>", self.prefix, token(subscription))
    }

    /// Every FIFO lane.
    pub fn all_fifo(&self) -> String {
        format!("{}.fifo.>", self.prefix)
    }

    /// A FIFO lane's key in the lanes bucket: `<sub>.<spec>` as tokens,
    /// `~` written `=` (a key allows no `~`).
    pub fn lane_key(&self, subscription: &str, spec: &str) -> String {
        format!(
            "{}.{}",
            token(subscription).replace('~', "="),
            token(spec).replace('~', "=")
        )
    }

    /// (subscription, SPEC) of a lanes bucket key.
    pub fn of_lane_key(key: &str) -> Option<(String, String)> {
        let (sub, spec) = key.split_once('.')?;
        Some((
            untoken(&sub.replace('=', "~"))?,
            untoken(&spec.replace('=', "~"))?,
        ))
    }

    /// The lane subject of a job due now.
    pub fn lane(&self, subscription: &str, spec: &str) -> String {
        format!(
            "{}.jobs.{}.{}",
            self.prefix,
            token(subscription),
            token(spec)
        )
    }

    /// Every lane of one subscription (its consumer's filter).
    pub fn lanes_of(&self, subscription: &str) -> String {
        format!("{}.jobs.{}.>", self.prefix, token(subscription))
    }

    /// Every lane.
    pub fn all_lanes(&self) -> String {
        format!("{}.jobs.>", self.prefix)
    }

    /// Where a retry waits for its time (one schedule per delivery).
    pub fn retry(&self, subscription: &str, spec: &str, delivery_id: &str) -> String {
        format!(
            "{}.retry.{}.{}.{}",
            self.prefix,
            token(subscription),
            token(spec),
            token(delivery_id)
        )
    }

    /// The retries of one subscription.
    pub fn retries_of(&self, subscription: &str) -> String {
        format!("{}.retry.{}.>", self.prefix, token(subscription))
    }

    /// Every retry waiting.
    pub fn all_retries(&self) -> String {
        format!("{}.retry.>", self.prefix)
    }

    pub fn dead_lane(&self, subscription: &str, spec: &str) -> String {
        format!(
            "{}.dead.{}.{}",
            self.prefix,
            token(subscription),
            token(spec)
        )
    }

    pub fn all_dead(&self) -> String {
        format!("{}.dead.>", self.prefix)
    }

    pub fn evidence_of(&self, spec: &str) -> String {
        format!("{}.evidence.{}", self.prefix, token(spec))
    }

    pub fn all_evidence(&self) -> String {
        format!("{}.evidence.>", self.prefix)
    }

    /// The durable consumer of one subscription's lanes.
    pub fn consumer(&self, subscription: &str) -> String {
        format!("{}_w_{}", self.prefix, token(subscription))
    }

    /// (subscription, SPEC) of a lane, retry or dead subject.
    pub fn lane_of(&self, subject: &str) -> Option<(String, String)> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        let mut parts = rest.split('.');
        let _kind = parts.next()?;
        let sub = untoken(parts.next()?)?;
        let spec = untoken(parts.next()?)?;
        Some((sub, spec))
    }

    /// The first layout's subjects and consumer (before lanes).
    fn legacy_jobs(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    fn legacy_consumer(&self) -> String {
        format!("{}_workers", self.prefix)
    }
}

fn base(nats: &Nats) -> stream::Config {
    stream::Config {
        storage: stream::StorageType::File,
        num_replicas: nats.replicas,
        allow_direct: true,
        ..Default::default()
    }
}

fn wanted_streams(nats: &Nats) -> Vec<stream::Config> {
    let n = &nats.names;
    vec![
        stream::Config {
            name: n.jobs.clone(),
            subjects: vec![n.all_lanes(), n.all_retries(), n.all_fifo()],
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: DUPLICATE_WINDOW,
            allow_message_schedules: true,
            ..base(nats)
        },
        stream::Config {
            name: n.dead.clone(),
            subjects: vec![n.all_dead()],
            duplicate_window: DUPLICATE_WINDOW,
            ..base(nats)
        },
        stream::Config {
            name: n.evidence.clone(),
            subjects: vec![n.all_evidence()],
            max_age: EVIDENCE_MAX_AGE,
            ..base(nats)
        },
    ]
}

/// Makes sure the streams and the bucket exist with the right settings,
/// moving a first-layout jobs stream to lanes.
pub fn ensure(nats: &Nats) -> Result<()> {
    for wanted in wanted_streams(nats) {
        ensure_stream(nats, wanted)?;
    }
    ensure_bucket(nats, &nats.names.circuits)?;
    ensure_bucket(nats, &nats.names.lanes)?;
    migrate_legacy(nats)
}

fn ensure_stream(nats: &Nats, wanted: stream::Config) -> Result<()> {
    let name = wanted.name.clone();
    // Made here, or found (perhaps made by another worker a moment ago):
    // only this part is tried again; a refusal below is final.
    let found = super::client::retried(
        &format!("set up stream {name}"),
        |_| true,
        || {
            let found = nats.call("open stream", async {
                match nats.js.get_stream(&name).await {
                    Ok(mut s) => Ok(Some(s.info().await?.config.clone())),
                    Err(e) => match e.kind() {
                        jetstream::context::GetStreamErrorKind::JetStream(js)
                            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                        {
                            Ok(None)
                        }
                        _ => Err(anyhow!("{e}")),
                    },
                }
            })?;
            match found.with_context(|| format!("cannot open stream {name}"))? {
                Some(found) => Ok(Some(found)),
                None => {
                    // Another worker may make it first: then it is found next round.
                    nats.call("create stream", nats.js.create_stream(wanted.clone()))?
                        .map_err(|e| anyhow!("cannot create stream {name}: {e}"))?;
                    Ok(None)
                }
            }
        },
    )?;
    match found {
        Some(found) => reconcile(nats, &found, &wanted),
        None => Ok(()),
    }
}

/// Brings a stream found on the server to the settings wanted where that
/// is safe; refuses, with the fix, where it is not.
fn reconcile(nats: &Nats, found: &stream::Config, wanted: &stream::Config) -> Result<()> {
    let name = &wanted.name;
    if found.retention != wanted.retention {
        bail!(
            "stream {name} exists with {:?} retention, not {:?}: it was made by something else; pick another `stream` prefix in [spec_ops.webhooks.relay], or delete the stream (`nats stream rm {name}`) once nothing in it is needed",
            found.retention,
            wanted.retention
        );
    }
    if found.storage != wanted.storage {
        bail!(
            "stream {name} keeps its messages in {:?}, not on file: spec-notify needs file storage to lose nothing; pick another `stream` prefix, or move the stream's messages and recreate it",
            found.storage
        );
    }
    let mut next = found.clone();
    // The first layout's subjects stay until its jobs have moved.
    for subject in &wanted.subjects {
        if !next.subjects.contains(subject) {
            next.subjects.push(subject.clone());
        }
    }
    next.num_replicas = wanted.num_replicas;
    next.duplicate_window = next.duplicate_window.max(wanted.duplicate_window);
    next.allow_direct = true;
    next.allow_message_schedules |= wanted.allow_message_schedules;
    if wanted.max_age > Duration::ZERO {
        next.max_age = wanted.max_age;
    }
    if &next == found {
        return Ok(());
    }
    nats.call("update stream", nats.js.update_stream(next))?
        .map(drop)
        .with_context(|| {
            format!(
                "stream {name} has other settings than [spec_ops.webhooks.relay] asks (replicas {} → {}) and the server would not change them",
                found.num_replicas, wanted.num_replicas
            )
        })
}

fn ensure_bucket(nats: &Nats, name: &str) -> Result<()> {
    super::client::retried(
        &format!("set up bucket {name}"),
        |_| true,
        || {
            if nats
                .call("open bucket", nats.js.get_key_value(name))?
                .is_ok()
            {
                let mut wanted = base(nats);
                wanted.name = format!("KV_{name}");
                // The bucket's stream: only the replicas are ours to correct.
                let found = nats.call("open bucket", async {
                    let mut s = nats.js.get_stream(&wanted.name).await?;
                    Ok::<_, anyhow::Error>(s.info().await?.config.clone())
                })??;
                if found.num_replicas != nats.replicas {
                    let mut next = found.clone();
                    next.num_replicas = nats.replicas;
                    nats.call("update bucket", nats.js.update_stream(next))?
                        .map(drop)
                        .with_context(|| format!("cannot change the replicas of bucket {name}"))?;
                }
                return Ok(());
            }
            nats.call(
                "create bucket",
                nats.js.create_key_value(kv::Config {
                    bucket: name.to_string(),
                    history: 1,
                    storage: stream::StorageType::File,
                    num_replicas: nats.replicas,
                    ..Default::default()
                }),
            )?
            .map(drop)
            .map_err(|e| anyhow!("cannot create bucket {name}: {e}"))
        },
    )
}

/// Moves the jobs of the first layout (subject `P.jobs`, consumer
/// `P_workers`) to their lanes. Each is published to its lane with an id
/// of its own (stored once however often this runs) before it is acked.
fn migrate_legacy(nats: &Nats) -> Result<()> {
    let n = &nats.names;
    let legacy = n.legacy_jobs();
    let has_legacy = nats.call("open stream", async {
        let mut s = nats.js.get_stream(&n.jobs).await?;
        Ok::<_, anyhow::Error>(s.info().await?.config.subjects.contains(&legacy))
    })??;
    if !has_legacy {
        return Ok(());
    }
    // Its consumer covers every subject: a work queue allows no other.
    let _ = nats.call(
        "delete consumer",
        nats.js
            .delete_consumer_from_stream(n.legacy_consumer(), &n.jobs),
    )?;
    let mover = format!("{}_move", n.prefix);
    let consumer: consumer::PullConsumer = nats
        .call(
            "create consumer",
            nats.js.create_consumer_on_stream(
                consumer::pull::Config {
                    durable_name: Some(mover.clone()),
                    filter_subject: legacy.clone(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
                &n.jobs,
            ),
        )?
        .map_err(|e| anyhow!("cannot create consumer {mover} to move the old jobs: {e}"))?;
    loop {
        let batch: Vec<jetstream::Message> = nats.call("move old jobs", async {
            let mut batch = consumer
                .fetch()
                .max_messages(500)
                .messages()
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let mut out = Vec::new();
            while let Some(m) = batch.next().await {
                out.push(m.map_err(|e| anyhow!("{e}"))?);
            }
            Ok::<_, anyhow::Error>(out)
        })??;
        if batch.is_empty() {
            break;
        }
        let outgoing: Vec<Outgoing> = batch
            .iter()
            .map(|m| {
                let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
                let subject = match crate::spool::Job::decode(&m.payload) {
                    Ok(job) => n.lane(&job.meta.subscription, &job.meta.spec),
                    // Not a job: kept in the dead stream as it is.
                    Err(_) => n.dead_lane("unreadable", "unreadable"),
                };
                Outgoing {
                    subject,
                    msg_id: Some(format!("moved.{seq}")),
                    headers: Vec::new(),
                    payload: Bytes::from(m.payload.to_vec()),
                }
            })
            .collect();
        for result in nats.publish_all(outgoing) {
            result.context("cannot move a job of the first layout to its lane; it stays where it is: start the worker again")?;
        }
        for m in &batch {
            nats.call("ack", m.double_ack())?
                .map_err(|e| anyhow!("cannot acknowledge a moved job: {e}"))?;
        }
    }
    let _ = nats.call(
        "delete consumer",
        nats.js.delete_consumer_from_stream(&mover, &n.jobs),
    )?;
    let mut config = nats.call("open stream", async {
        let mut s = nats.js.get_stream(&n.jobs).await?;
        Ok::<_, anyhow::Error>(s.info().await?.config.clone())
    })??;
    config.subjects.retain(|s| *s != legacy);
    nats.call("update stream", nats.js.update_stream(config))?
        .map(drop)
        .with_context(|| {
            format!(
                "cannot drop the old subject {legacy} from stream {}",
                n.jobs
            )
        })
}

/// Makes sure a subscription's consumer exists with the settings wanted
/// (a changed `ack_wait_ms` is applied), and returns it.
pub async fn consumer_of(
    nats_js: &jetstream::Context,
    names: &Names,
    subscription: &str,
    ack_wait: Duration,
) -> Result<consumer::PullConsumer> {
    let name = names.consumer(subscription);
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: names.lanes_of(subscription),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        max_deliver: -1,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    };
    let mut last = None;
    for _ in 0..5 {
        match nats_js
            .create_consumer_on_stream(config.clone(), &names.jobs)
            .await
        {
            Ok(consumer) => return Ok(consumer),
            Err(e) if e.to_string().contains("already exists") => {
                // Made earlier with other settings: bring them to these.
                match nats_js
                    .update_consumer_on_stream(config.clone(), &names.jobs)
                    .await
                {
                    Ok(consumer) => return Ok(consumer),
                    Err(e) => last = Some(anyhow!("{e}")),
                }
            }
            Err(e) => last = Some(anyhow!("{e}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last
        .unwrap_or_else(|| anyhow!("no answer"))
        .context(format!("cannot create or open consumer {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_collide() {
        for id in [
            "hook",
            "SPEC-KIT-065",
            "a.b",
            "~",
            "x~y",
            "日本",
            "a:b+c@d",
            "7e",
        ] {
            let t = token(id);
            assert!(
                !t.is_empty() && !t.contains(['.', '*', '>', ' ']),
                "{id} → {t}"
            );
            assert_eq!(untoken(&t).as_deref(), Some(id), "{id} → {t}");
        }
        assert_ne!(token("a.b"), token("a_b"));
        assert_eq!(token("plain_id-1"), "plain_id-1");
        assert_eq!(untoken("~zz"), None);
    }

    #[test]
    fn lane_subjects_name_their_subscription_and_spec() {
        let n = Names::new("P");
        assert_eq!(n.lane("hook", "S-1"), "P.jobs.hook.S-1");
        let subject = n.lane("chat.ops", "SPEC:1");
        assert_eq!(
            n.lane_of(&subject),
            Some(("chat.ops".to_string(), "SPEC:1".to_string()))
        );
        assert_eq!(
            n.lane_of(&n.retry("chat.ops", "SPEC:1", "d-1")),
            Some(("chat.ops".to_string(), "SPEC:1".to_string()))
        );
        assert_eq!(n.consumer("hook"), "P_w_hook");
        assert_eq!(n.lane_of("Q.jobs.a.b"), None);
        assert_eq!(n.fifo("hook", "S-1"), "P.fifo.hook.S-1");
        assert_eq!(
            n.lane_of(&n.fifo_replays("chat.ops", "S")),
            Some(("chat.ops".to_string(), "S".to_string()))
        );
        let key = n.lane_key("chat.ops", "SPEC:1");
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b)),
            "{key}"
        );
        assert_eq!(
            Names::of_lane_key(&key),
            Some(("chat.ops".to_string(), "SPEC:1".to_string()))
        );
    }
}
