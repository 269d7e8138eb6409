//! Wall-clock helpers. Times on disk and in output are unix milliseconds
//! internally and RFC 3339 for people; logic takes `now` as a parameter so it
//! can be tested without waiting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    to_millis(SystemTime::now())
}

pub fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `2026-11-23T18:50:01.123Z`
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(from_millis(ms)).to_string()
}

/// A short human age: `42s`, `5m`, `3h`, `2d`.
pub fn age(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(1_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(age(200_000, 100_000), "100s");
        assert_eq!(age(10_000_000, 0), "2h");
        assert_eq!(age(0, 5), "0s");
    }
}
