//! NATS JetStream as a queue backend, with the official `async-nats` client.
//! This module owns the only async code in the program: a current-thread
//! tokio runtime driven by one thread of its own, and a blocking API over
//! it ([`Nats`]); everything else stays synchronous.
//!
//! - [`queue`]: [`queue::NatsQueue`], the drain engine's [`crate::drain::queue::Queue`]
//!   on a shared durable pull consumer (`drain --source nats`).
//! - [`relay`]: moves a host's pending jobs into the jobs stream.
//! - [`view`]: reads the streams and the breaker bucket for `list`, `status`
//!   and `history`.
//! - [`dead`]: `replay` and `discard` on the dead stream, logged as evidence.
//! - [`health`]: the streams and the bucket as a health source, for
//!   `report` and `metrics`.
//!
//! Layout, for a prefix `P` (`stream` in `[spec_ops.webhooks.relay]`):
//! stream `P_JOBS` (work queue, subject `P.jobs`, one message per job in the
//! spool's job format), its durable consumer `P_workers`, stream `P_DEAD`
//! (`P.dead`), stream `P_EVIDENCE` (`P.evidence`, one evidence record per
//! message) and the KV bucket `P_CIRCUITS` (one breaker state per
//! subscription). Only APIs of nats-server 2.9 are used.

pub mod dead;
pub mod health;
pub mod queue;
pub mod relay;
pub mod store;
pub mod view;

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::config::Relay;

/// How long one call to the server may take before it counts as failed
/// (the caller retries or reports it).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A job a worker holds is redelivered to another worker when no ack or
/// in-progress ack came for this long (a worker that died).
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Relay publishes of the same delivery id within this window are stored once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
/// Evidence records older than this leave the evidence stream.
const EVIDENCE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The names of everything on the server, from the prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub jobs: String,
    pub jobs_subject: String,
    pub dead: String,
    pub dead_subject: String,
    pub evidence: String,
    pub evidence_subject: String,
    pub consumer: String,
    pub circuits: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            jobs: format!("{prefix}_JOBS"),
            jobs_subject: format!("{prefix}.jobs"),
            dead: format!("{prefix}_DEAD"),
            dead_subject: format!("{prefix}.dead"),
            evidence: format!("{prefix}_EVIDENCE"),
            evidence_subject: format!("{prefix}.evidence"),
            consumer: format!("{prefix}_workers"),
            circuits: format!("{prefix}_CIRCUITS"),
        }
    }
}

/// The current-thread runtime and the thread that drives it; dropping it
/// stops the thread.
struct Runtime {
    handle: tokio::runtime::Handle,
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
    fn call<F: Future>(&self, what: &str, future: F) -> Result<F::Output> {
        let _inside = self.handle.enter();
        self.handle
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, future).await })
            .map_err(|_| anyhow!("{what}: no answer from NATS within {CALL_TIMEOUT:?}"))
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
    client: async_nats::Client,
    js: jetstream::Context,
    pub names: Names,
    replicas: usize,
    /// Last: the client goes before the runtime that drives it.
    runtime: Runtime,
}

/// Where messages name the server.
fn shown(relay: &Relay) -> String {
    relay.shown_urls().join(", ")
}

impl Nats {
    /// Connects (reconnecting on its own later, without end) and makes sure
    /// the streams, the consumer and the bucket exist.
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
            runtime,
        };
        nats.ensure()
            .with_context(|| format!("cannot set up JetStream at {}", shown(relay)))?;
        Ok(nats)
    }

    fn call<F: Future>(&self, what: &str, future: F) -> Result<F::Output> {
        self.runtime.call(what, future)
    }

    fn ensure(&self) -> Result<()> {
        let n = &self.names;
        let streams = [
            stream::Config {
                name: n.jobs.clone(),
                subjects: vec![n.jobs_subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                duplicate_window: DUPLICATE_WINDOW,
                ..self.stream_base()
            },
            stream::Config {
                name: n.dead.clone(),
                subjects: vec![n.dead_subject.clone()],
                duplicate_window: DUPLICATE_WINDOW,
                ..self.stream_base()
            },
            stream::Config {
                name: n.evidence.clone(),
                subjects: vec![n.evidence_subject.clone()],
                max_age: EVIDENCE_MAX_AGE,
                ..self.stream_base()
            },
        ];
        for config in streams {
            let name = config.name.clone();
            self.call("create stream", self.js.get_or_create_stream(config))?
                .with_context(|| format!("cannot create or open stream {name}"))?;
        }
        let jobs = self
            .call("open stream", self.js.get_stream(&n.jobs))?
            .with_context(|| format!("cannot open stream {}", n.jobs))?;
        self.call(
            "create consumer",
            jobs.get_or_create_consumer(
                &n.consumer,
                consumer::pull::Config {
                    durable_name: Some(n.consumer.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_deliver: -1,
                    max_ack_pending: 20_000,
                    ..Default::default()
                },
            ),
        )?
        .with_context(|| format!("cannot create or open consumer {}", n.consumer))?;
        // The bucket's stream, made by hand: the client's
        // `create_key_value` first asks for account details that a 2.9
        // server answers in a shape this client does not read.
        let bucket = stream::Config {
            name: format!("KV_{}", n.circuits),
            subjects: vec![format!("$KV.{}.>", n.circuits)],
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            ..self.stream_base()
        };
        self.call("create bucket", self.js.get_or_create_stream(bucket))?
            .with_context(|| format!("cannot create or open bucket {}", n.circuits))?;
        Ok(())
    }

    fn stream_base(&self) -> stream::Config {
        stream::Config {
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Publishes and waits for the server's ack: stored (or a duplicate of
    /// a message stored within the de-duplication window).
    pub fn publish(&self, subject: &str, msg_id: Option<&str>, payload: Vec<u8>) -> Result<()> {
        let mut publish = jetstream::message::PublishMessage::build().payload(Bytes::from(payload));
        if let Some(id) = msg_id {
            publish = publish.message_id(id);
        }
        let js = &self.js;
        let to = subject.to_string();
        self.call("publish", async move {
            let ack = js.send_publish(to, publish).await?;
            ack.await?;
            Ok::<_, anyhow::Error>(())
        })?
        .with_context(|| format!("the NATS server did not store a message on {subject}"))
    }

    /// Up to `max` jobs from the shared consumer, without waiting for more.
    pub fn fetch(&self, max: usize) -> Result<Vec<jetstream::Message>> {
        let n = &self.names;
        self.call("fetch", async {
            let consumer: consumer::PullConsumer = self
                .js
                .get_consumer_from_stream(&n.consumer, &n.jobs)
                .await
                .map_err(|e| anyhow!("cannot open consumer {}: {e}", n.consumer))?;
            let mut batch = consumer
                .fetch()
                .max_messages(max)
                .messages()
                .await
                .map_err(|e| anyhow!("cannot fetch from {}: {e}", n.consumer))?;
            let mut out = Vec::new();
            while let Some(message) = batch.next().await {
                out.push(message.map_err(|e| anyhow!("cannot fetch from {}: {e}", n.consumer))?);
            }
            Ok::<_, anyhow::Error>(out)
        })?
    }

    /// Acks, naks or extends a message; `sure` waits for the server to
    /// confirm (an ack that must not be lost).
    pub fn ack(
        &self,
        message: &jetstream::Message,
        kind: jetstream::AckKind,
        sure: bool,
    ) -> Result<()> {
        let done = if sure {
            self.call("ack", message.double_ack_with(kind))?
        } else {
            self.call("ack", message.ack_with(kind))?
        };
        done.map_err(|e| anyhow!("cannot acknowledge a job to NATS: {e}"))
    }

    fn bucket(&self) -> Result<kv::Store> {
        self.call("open bucket", self.js.get_key_value(&self.names.circuits))?
            .with_context(|| format!("cannot open bucket {}", self.names.circuits))
    }

    /// A key's value and revision in the breaker bucket.
    pub fn kv_get(&self, key: &str) -> Result<Option<(Bytes, u64)>> {
        let bucket = self.bucket()?;
        let entry = self
            .call("read bucket", bucket.entry(key))?
            .with_context(|| format!("cannot read `{key}` from bucket {}", self.names.circuits))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| (e.value, e.revision)))
    }

    /// Writes a key if its revision is still `revision` (0: absent, or
    /// deleted). `Ok(false)`: someone else wrote it first.
    pub fn kv_swap(&self, key: &str, value: Vec<u8>, revision: u64) -> Result<bool> {
        let bucket = self.bucket()?;
        let value = Bytes::from(value);
        let written = if revision == 0 {
            self.call("write bucket", bucket.create(key, value))?
                .map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                })
        } else {
            self.call("write bucket", bucket.update(key, value, revision))?
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                })
        };
        match written {
            Ok(_) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, e)) => bail!(
                "cannot write `{key}` to bucket {}: {e}",
                self.names.circuits
            ),
        }
    }

    /// Every key in the breaker bucket with its value.
    pub fn kv_all(&self) -> Result<Vec<(String, Bytes)>> {
        let bucket = self.bucket()?;
        let keys: Vec<String> = self.call("list bucket", async {
            let mut keys = bucket.keys().await.map_err(|e| anyhow!("{e}"))?;
            let mut out = Vec::new();
            while let Some(key) = keys.next().await {
                out.push(key.map_err(|e| anyhow!("{e}"))?);
            }
            Ok::<_, anyhow::Error>(out)
        })??;
        let mut out = Vec::new();
        for key in keys {
            if let Some((value, _)) = self.kv_get(&key)? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// Every message now in a stream, oldest first, with its sequence.
    pub fn read_stream(&self, name: &str) -> Result<Vec<(u64, Bytes)>> {
        let stream = self
            .call("open stream", self.js.get_stream(name))?
            .with_context(|| format!("cannot open stream {name}"))?;
        let info = stream.cached_info().state.clone();
        let mut out = Vec::new();
        let mut seq = info.first_sequence.max(1);
        while seq <= info.last_sequence && info.messages > 0 {
            // The next message at or after `seq` (deleted ones are skipped).
            let got = self.call(
                "read stream",
                stream
                    .raw_message_builder()
                    .sequence(seq)
                    .next_by_subject(">")
                    .send(),
            )?;
            match got {
                Ok(message) => {
                    seq = message.sequence + 1;
                    if message.sequence > info.last_sequence {
                        break;
                    }
                    out.push((message.sequence, message.payload));
                }
                Err(e) if e.to_string().contains("no message found") => break,
                Err(e) => bail!("cannot read stream {name}: {e}"),
            }
        }
        Ok(out)
    }

    /// Deletes one message of a stream (discarding a dead job).
    pub fn delete(&self, name: &str, seq: u64) -> Result<()> {
        let stream = self
            .call("open stream", self.js.get_stream(name))?
            .with_context(|| format!("cannot open stream {name}"))?;
        self.call("delete message", stream.delete_message(seq))?
            .with_context(|| format!("cannot delete message {seq} of stream {name}"))?;
        Ok(())
    }

    /// Whether the client is connected now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}
