//! [`ServerTime`]: the NATS server's clock as one worker reads it. A retry
//! waits on a message schedule (`Nats-Schedule: @at …`), which the server
//! fires by its own clock; a worker whose clock is off would write a time
//! the server already considers past (fired at once) or one far in its
//! future. So a worker never writes its own wall-clock time there: it
//! writes the server's time now (its clock plus the offset measured here,
//! from the `ts` of a stream info answer) plus the wait it means.

use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;

use crate::clock;

/// The offset of the server's clock from this host's, in milliseconds.
#[derive(Debug, Default)]
pub struct ServerTime {
    offset_ms: AtomicI64,
}

impl ServerTime {
    /// The server's time now, as far as the last measure tells (this host's
    /// clock before the first).
    pub fn now_ms(&self) -> u64 {
        shifted(clock::now_ms(), self.offset_ms.load(Ordering::Relaxed))
    }

    /// Measures the offset again: one stream info request, whose answer the
    /// server stamps with its time (taken at the middle of the round trip).
    pub async fn measure(&self, client: &async_nats::Client, stream: &str) -> Result<()> {
        let before = clock::now_ms();
        let reply = client
            .request(format!("$JS.API.STREAM.INFO.{stream}"), Bytes::new())
            .await
            .map_err(|e| anyhow!("cannot ask the NATS server for its time: {e}"))?;
        let after = clock::now_ms();
        let offset = offset_from(&reply.payload, before, after)?;
        self.offset_ms.store(offset, Ordering::Relaxed);
        Ok(())
    }
}

/// The offset a stream info answer (`ts`) shows, read between `before` and
/// `after` on this host's clock.
fn offset_from(answer: &[u8], before: u64, after: u64) -> Result<i64> {
    let info: serde_json::Value =
        serde_json::from_slice(answer).context("the NATS server's stream info is not JSON")?;
    let ts = info["ts"]
        .as_str()
        .and_then(clock::parse_rfc3339)
        .context("the NATS server's stream info has no time (`ts`); nats-server 2.10+ sends it")?;
    let middle = before / 2 + after / 2;
    Ok(i64::try_from(i128::from(ts) - i128::from(middle)).unwrap_or(0))
}

fn shifted(at: u64, offset: i64) -> u64 {
    u64::try_from((i128::from(at) + i128::from(offset)).max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_the_server_time_less_the_middle_of_the_round_trip() {
        let answer = br#"{"ts":"2026-01-01T00:00:20Z"}"#;
        let at = clock::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(offset_from(answer, at, at + 2000).unwrap(), 19_000);
        assert_eq!(
            offset_from(answer, at + 40_000, at + 40_000).unwrap(),
            -20_000
        );
        assert!(offset_from(b"{}", at, at).is_err());
        assert_eq!(shifted(10, -20), 0);
    }
}
