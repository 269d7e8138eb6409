//! The physical ceiling for `bench/nats.sh`, with the client spec-notify
//! uses (async-nats): how fast JetStream itself takes jobs out of a
//! work-queue stream with a pull consumer and acks them, and how many
//! JetStream API requests cross the connection while spec-notify workers
//! sit idle. Not part of the product; built only by the bench
//! (`cargo build --release --features nats --example jetstream`).
//!
//! Usage:
//!   jetstream pull URL COUNT       publish COUNT messages of ~600 bytes to a
//!                                  fresh work-queue stream, then pull+ack
//!                                  them all; prints "pulled N in S s: R/s"
//!   jetstream api URL SECONDS      count messages on `$JS.API.>` for
//!                                  SECONDS; prints "api N in S s: R/s"

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, url, n) = match args.as_slice() {
        [_, mode, url, n] => (mode.as_str(), url.as_str(), n.parse::<u64>()?),
        _ => return Err("usage: jetstream pull URL COUNT | jetstream api URL SECONDS".into()),
    };
    let client = async_nats::connect(url).await?;
    match mode {
        "pull" => pull(client, n).await,
        "api" => api(client, n).await,
        other => Err(format!("unknown mode {other}").into()),
    }
}

async fn pull(client: async_nats::Client, count: u64) -> Result<(), Error> {
    let js = jetstream::new(client);
    let name = "BENCH_CEILING";
    let _ = js.delete_stream(name).await;
    let stream = js
        .create_stream(stream::Config {
            name: name.into(),
            subjects: vec!["bench.ceiling.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let body = bytes::Bytes::from(vec![b'x'; 600]);
    let mut acks = Vec::new();
    for i in 0..count {
        acks.push(
            js.publish(format!("bench.ceiling.{}", i % 16), body.clone())
                .await?,
        );
        if acks.len() >= 1000 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("ceiling".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(500)
        .messages()
        .await?;
    let mut pulled = 0;
    while pulled < count {
        let message = messages.next().await.ok_or("the stream ended")??;
        message.ack().await?;
        pulled += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "pulled {pulled} in {secs:.3} s: {:.0}/s",
        pulled as f64 / secs
    );
    js.delete_stream(name).await?;
    Ok(())
}

async fn api(client: async_nats::Client, seconds: u64) -> Result<(), Error> {
    let mut requests = client.subscribe("$JS.API.>").await?;
    client.flush().await?;
    let started = Instant::now();
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    loop {
        tokio::select! {
            got = requests.next() => match got {
                Some(_) => n += 1,
                None => break,
            },
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("api {n} in {secs:.1} s: {:.2}/s", n as f64 / secs);
    Ok(())
}
