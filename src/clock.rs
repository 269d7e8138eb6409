//! Wall-clock helpers. Times on disk and in output are unix milliseconds
//! internally and RFC 3339 for people (written in UTC, read with any offset);
//! logic takes `now` as a parameter so it can be tested without waiting.
//!
//! [`Steady`] is a running process's own time line for waits (backoff,
//! circuit cool-downs, rate spacing): wall-clock milliseconds as they were
//! when it started, advanced by the monotonic clock, so a step of the wall
//! clock (NTP, a VM resumed, an operator) neither stretches nor skips a
//! wait. Times on disk stay wall-clock; [`Steady::from_wall`] brings one
//! onto the time line, never later than its own wait after it was seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    to_millis(SystemTime::now())
}

/// A process's time line: see the module doc. Clone it freely; every
/// clone reads the same line.
#[derive(Debug, Clone)]
pub struct Steady {
    wall_at_start: u64,
    started: Instant,
    /// The wall clock's lead over this line as last taken (ms): changed
    /// only by a step, so that two times written alike land alike (reading
    /// both clocks a millisecond apart must not reorder jobs due at once).
    lead: Arc<AtomicI64>,
}

/// A change of the wall clock's lead smaller than this is reading jitter,
/// not a step.
const STEP_MS: i64 = 250;

impl Default for Steady {
    fn default() -> Steady {
        Steady::start()
    }
}

impl Steady {
    pub fn start() -> Steady {
        Steady {
            wall_at_start: now_ms(),
            started: Instant::now(),
            lead: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Now on this time line, in milliseconds (the wall clock's now, had it
    /// never stepped since the start).
    pub fn now(&self) -> u64 {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.wall_at_start.saturating_add(elapsed)
    }

    /// A wall-clock time `at` read from disk, on this time line. It moves
    /// with the wall clock's steps since the start (a time written before
    /// a step keeps its distance from now), but it is never later than
    /// `own_wait` after `seen` (when this process first saw it, on this
    /// line): a time written by a clock that was off, or before a step, can
    /// delay its job by at most the job's own wait.
    pub fn from_wall(&self, at: u64, seen: u64, own_wait: u64) -> u64 {
        shift(at, -self.lead()).min(seen.saturating_add(own_wait))
    }

    /// A time on this line as a wall-clock time now (to write to disk).
    pub fn to_wall(&self, at: u64) -> u64 {
        shift(at, self.lead())
    }

    /// The wall clock's lead over this line now, as last taken unless it
    /// moved by a step.
    fn lead(&self) -> i64 {
        let measured =
            i64::try_from(i128::from(now_ms()) - i128::from(self.now())).unwrap_or(i64::MAX);
        let taken = self.lead.load(Ordering::Relaxed);
        if (measured.saturating_sub(taken)).abs() > STEP_MS {
            self.lead.store(measured, Ordering::Relaxed);
            return measured;
        }
        taken
    }
}

/// `at + by`, within `u64`.
fn shift(at: u64, by: i64) -> u64 {
    let shifted = i128::from(at) + i128::from(by);
    u64::try_from(shifted.max(0)).unwrap_or(u64::MAX)
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

/// A time a person wrote, as unix milliseconds: RFC 3339 with `Z` or an
/// offset (`2026-11-25T12:00:00+02:00`), fractional seconds optional, `T` or
/// a space between date and time; without an offset it is UTC. Times before
/// 1970 are 0. `None` when `text` is not such a time.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text.trim();
    let at = text
        .parse::<jiff::Timestamp>()
        .or_else(|_| format!("{text}Z").parse::<jiff::Timestamp>())
        .ok()?;
    Some(u64::try_from(at.as_millisecond()).unwrap_or(0))
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
    fn times_are_read_with_their_offset() {
        let noon_utc = 1_795_608_000_000; // 2026-11-25T12:00:00Z
        for text in [
            "2026-11-25T12:00:00Z",
            "2026-11-25T12:00:00z",
            "2026-11-25T14:00:00+02:00",
            "2026-11-25T07:00:00-05:00",
            "2026-11-25T12:00:00+00:00",
            "2026-11-25 12:00:00Z",
            "2026-11-25T12:00:00",
            " 2026-11-25T12:00:00Z ",
        ] {
            assert_eq!(parse_rfc3339(text), Some(noon_utc), "{text}");
        }
        assert_eq!(
            parse_rfc3339("2026-11-25T14:00:00.250+02:00"),
            Some(noon_utc + 250)
        );
        assert_eq!(
            parse_rfc3339("2026-11-25T12:00:00.123456789Z"),
            Some(noon_utc + 123)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1_000));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(0));
        assert_eq!(rfc3339(noon_utc), "2026-11-25T12:00:00.000Z");
    }

    #[test]
    fn what_is_not_a_time_is_none() {
        for text in [
            "",
            "2h",
            "yesterday",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-11-25T25:00:00Z",
            "2026-11-25T12:00:00[Europe/Paris]",
            "2026-11-25T12:00:00ZZ",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_steady_line_follows_the_monotonic_clock_and_clamps_skewed_times() {
        let line = Steady::start();
        let now = line.now();
        let wall = now_ms();
        assert!(now.abs_diff(wall) < 1_000, "starts at the wall clock");
        // A time from disk written with this same clock keeps its distance.
        let due = line.from_wall(wall + 3_000, now, 3_000);
        assert!(due.abs_diff(now + 3_000) < 1_000, "{due} vs {now}");
        // Written by a clock a day ahead (its own wait is 0): due when seen.
        assert_eq!(line.from_wall(wall + 86_400_000, now, 0), now);
        // A day behind: due at once, not a day ago plus anything.
        assert!(line.from_wall(wall - 86_400_000, now, 0) <= now);
        assert!(line.to_wall(now).abs_diff(wall) < 1_000);
        assert_eq!(shift(5, -10), 0, "never below zero");
        assert_eq!(shift(u64::MAX, 10), u64::MAX, "nor above u64");
    }

    #[test]
    fn times_written_alike_land_alike_however_the_clocks_are_read() {
        let line = Steady::start();
        let wall = now_ms() - 5;
        let first = line.from_wall(wall, u64::MAX, 0);
        // Reads of both clocks a moment apart: the same time on the line.
        for _ in 0..10_000 {
            assert_eq!(line.from_wall(wall, u64::MAX, 0), first);
        }
    }

    #[test]
    fn age_takes_any_input() {
        assert_eq!(age(u64::MAX, 0), format!("{}d", u64::MAX / 1000 / 86_400));
        assert_eq!(age(0, u64::MAX), "0s");
        assert_eq!(age(u64::MAX, u64::MAX), "0s");
        assert_eq!(age(u64::MAX, u64::MAX - 7_199_999), "119m");
    }
}
