//! Wall-clock helpers. Times on disk and in output are unix milliseconds
//! internally and RFC 3339 for people; logic takes `now` as a parameter so it
//! can be tested without waiting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    to_millis(SystemTime::now())
}

/// `9999-12-31T23:59:59.999Z`, the last instant RFC 3339 can write.
pub const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

pub fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Saturates at the end of year 9999 where the platform cannot represent `ms`.
pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or_else(|| UNIX_EPOCH + Duration::from_millis(MAX_RFC3339_MS))
}

/// `2026-11-23T18:50:01.123Z`. Times past year 9999 (a corrupt or hand-edited
/// `next_attempt_at_ms`, say) are shown as `9999-12-31T23:59:59.999Z`:
/// humantime cannot format them, and its `Display` would panic.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(from_millis(ms.min(MAX_RFC3339_MS))).to_string()
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

    #[test]
    fn far_future_times_are_clamped_not_a_panic() {
        assert_eq!(rfc3339(MAX_RFC3339_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(MAX_RFC3339_MS - 1_000), "9999-12-31T23:59:58.999Z");
        for ms in [MAX_RFC3339_MS + 1, 1 << 62, u64::MAX - 1, u64::MAX] {
            assert_eq!(rfc3339(ms), "9999-12-31T23:59:59.999Z", "{ms}");
        }
        assert!(to_millis(from_millis(u64::MAX)) >= MAX_RFC3339_MS);
        assert_eq!(to_millis(from_millis(MAX_RFC3339_MS)), MAX_RFC3339_MS);
    }

    #[test]
    fn age_takes_any_input() {
        assert_eq!(age(u64::MAX, 0), format!("{}d", u64::MAX / 1000 / 86_400));
        assert_eq!(age(0, u64::MAX), "0s");
        assert_eq!(age(u64::MAX, u64::MAX), "0s");
        assert_eq!(age(u64::MAX, u64::MAX - 7_199_999), "119m");
    }
}
