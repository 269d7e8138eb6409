//! The report's two charts as geometry for inline SVG: attempts per time
//! bucket stacked by outcome, and p50/p95 latency per bucket. Pure: points
//! in, coordinates and labels out (the template draws them), plus the same
//! numbers as rows for the data table beside each chart.

use crate::evidence::Outcome;
use crate::health::percentile;

/// The SVG's coordinate box and the plot area inside it.
pub const WIDTH: u32 = 720;
pub const HEIGHT: u32 = 230;
/// Room for the y-axis labels (`999ms`, `12.5s`) at the phone font size.
pub const LEFT: f64 = 76.0;
pub const RIGHT: f64 = 10.0;
pub const TOP: f64 = 12.0;
pub const BOTTOM: f64 = 34.0;
/// At most this many buckets; the bucket width is the smallest "nice" one
/// that keeps under it.
const MAX_BUCKETS: u64 = 48;
const NICE_WIDTHS_MS: [u64; 11] = [
    60_000,
    300_000,
    900_000,
    1_800_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    86_400_000,
    7 * 86_400_000,
    30 * 86_400_000,
];

/// The outcomes a bar stacks, bottom up: name, the word, the CSS/pattern id.
pub const SERIES: [(Outcome, &str); 4] = [
    (Outcome::Delivered, "delivered"),
    (Outcome::Retry, "retry"),
    (Outcome::Paused, "paused"),
    (Outcome::Dead, "dead"),
];

/// One delivery attempt, as much as the charts need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub ts_ms: u64,
    pub outcome: Outcome,
    pub latency_ms: Option<u64>,
}

/// Attempts grouped into equal time buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    pub start_ms: u64,
    pub width_ms: u64,
    /// Per bucket: attempts by [`SERIES`] order.
    pub counts: Vec<[u64; 4]>,
    /// Per bucket: the latencies, sorted.
    pub latencies: Vec<Vec<u64>>,
}

impl Buckets {
    /// Buckets from the first point (or `since_ms` if none) to `now_ms`.
    pub fn of(points: &[Point], since_ms: u64, now_ms: u64) -> Buckets {
        let first = points.iter().map(|p| p.ts_ms).min().unwrap_or(since_ms);
        let from = first.max(since_ms).min(now_ms);
        let span = now_ms - from;
        let width_ms = NICE_WIDTHS_MS
            .into_iter()
            .find(|w| span / w < MAX_BUCKETS)
            .unwrap_or(NICE_WIDTHS_MS[NICE_WIDTHS_MS.len() - 1]);
        let start_ms = from - from % width_ms;
        let n = ((now_ms - start_ms) / width_ms + 1) as usize;
        let mut buckets = Buckets {
            start_ms,
            width_ms,
            counts: vec![[0; 4]; n],
            latencies: vec![Vec::new(); n],
        };
        for p in points {
            if p.ts_ms < start_ms || p.ts_ms > now_ms {
                continue;
            }
            let i = ((p.ts_ms - start_ms) / width_ms) as usize;
            if let Some(s) = SERIES.iter().position(|(o, _)| *o == p.outcome) {
                buckets.counts[i][s] += 1;
            }
            buckets.latencies[i].extend(p.latency_ms);
        }
        buckets.latencies.iter_mut().for_each(|l| l.sort_unstable());
        buckets
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// `11-23 18:00` (UTC) for buckets under a day, `11-23` otherwise.
    pub fn label(&self, i: usize) -> String {
        let at = crate::clock::rfc3339(self.start_ms + i as u64 * self.width_ms);
        if self.width_ms < 86_400_000 {
            at[5..16].replace('T', " ")
        } else {
            at[5..10].to_string()
        }
    }
}

/// A tick on an axis: where, and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub at: f64,
    pub label: String,
}

/// One outcome's part of a bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub series: &'static str,
    pub y: f64,
    pub height: f64,
    /// The tooltip: `11-23 18:00: 12 delivered`.
    pub title: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub x: f64,
    pub width: f64,
    pub segments: Vec<Segment>,
}

/// One row of a chart's data table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    pub cells: Vec<String>,
}

/// Attempts over time, stacked by outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub bars: Vec<Bar>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    /// One sentence for screen readers.
    pub summary: String,
    pub rows: Vec<Row>,
}

/// A dot on a latency line, with its tooltip.
#[derive(Debug, Clone, PartialEq)]
pub struct Dot {
    pub x: f64,
    pub y: f64,
    pub title: String,
}

/// p50 and p95 latency over time.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// SVG `points` lists, one per run of buckets that have latencies.
    pub p50_lines: Vec<String>,
    pub p95_lines: Vec<String>,
    pub p50_dots: Vec<Dot>,
    pub p95_dots: Vec<Dot>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub summary: String,
    pub rows: Vec<Row>,
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (at least 1).
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn plot_width() -> f64 {
    f64::from(WIDTH) - LEFT - RIGHT
}

fn plot_height() -> f64 {
    f64::from(HEIGHT) - TOP - BOTTOM
}

/// The y of `value` on a 0..`max` axis.
fn y_of(value: f64, max: f64) -> f64 {
    round1(TOP + plot_height() * (1.0 - value / max))
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn y_ticks(max: f64, label: impl Fn(f64) -> String) -> Vec<Tick> {
    [0.0, 0.5, 1.0]
        .into_iter()
        .map(|f| Tick {
            at: y_of(max * f, max),
            label: label(max * f),
        })
        .collect()
}

/// Up to four labels along the time axis, at bucket centres (room for
/// larger text on a phone).
fn x_ticks(buckets: &Buckets) -> Vec<Tick> {
    let n = buckets.len();
    let step = n.div_ceil(4).max(1);
    (0..n)
        .step_by(step)
        .map(|i| Tick {
            at: round1(x_centre(i, n)),
            label: buckets.label(i),
        })
        .collect()
}

fn x_centre(i: usize, n: usize) -> f64 {
    let slot = plot_width() / n as f64;
    LEFT + slot * (i as f64 + 0.5)
}

pub fn bar_chart(buckets: &Buckets) -> BarChart {
    let n = buckets.len().max(1);
    let top = buckets
        .counts
        .iter()
        .map(|c| c.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let max = nice_ceiling(top as f64);
    let slot = plot_width() / n as f64;
    let width = round1((slot * 0.8).max(1.0));
    let mut bars = Vec::new();
    let mut rows = Vec::new();
    for (i, counts) in buckets.counts.iter().enumerate() {
        let label = buckets.label(i);
        let mut below = 0u64;
        let mut segments = Vec::new();
        for ((_, series), &count) in SERIES.iter().zip(counts) {
            if count == 0 {
                continue;
            }
            let y_top = y_of((below + count) as f64, max);
            let y_bottom = y_of(below as f64, max);
            segments.push(Segment {
                series,
                y: y_top,
                height: round1(y_bottom - y_top),
                title: format!("{label}: {count} {series}"),
            });
            below += count;
        }
        if below > 0 {
            bars.push(Bar {
                x: round1(x_centre(i, n) - width / 2.0),
                width,
                segments,
            });
            rows.push(Row {
                label,
                cells: counts.iter().map(u64::to_string).collect(),
            });
        }
    }
    let totals: Vec<u64> = (0..4)
        .map(|s| buckets.counts.iter().map(|c| c[s]).sum())
        .collect();
    let summary = format!(
        "{} attempts in {} buckets of {}: {}",
        totals.iter().sum::<u64>(),
        buckets.len(),
        humantime::format_duration(std::time::Duration::from_millis(buckets.width_ms)),
        SERIES
            .iter()
            .zip(&totals)
            .map(|((_, s), n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    BarChart {
        bars,
        y_ticks: y_ticks(max, |v| format!("{}", v.round() as u64)),
        x_ticks: x_ticks(buckets),
        summary,
        rows,
    }
}

pub fn line_chart(buckets: &Buckets) -> LineChart {
    let n = buckets.len().max(1);
    let per_bucket: Vec<Option<(u64, u64)>> = buckets
        .latencies
        .iter()
        .map(|l| Some((percentile(l, 50.0)?, percentile(l, 95.0)?)))
        .collect();
    let top = per_bucket.iter().flatten().map(|p| p.1).max().unwrap_or(0);
    let max = nice_ceiling(top as f64);
    let mut chart = LineChart {
        p50_lines: Vec::new(),
        p95_lines: Vec::new(),
        p50_dots: Vec::new(),
        p95_dots: Vec::new(),
        y_ticks: y_ticks(max, |v| crate::output::latency_text(Some(v.round() as u64))),
        x_ticks: x_ticks(buckets),
        summary: String::new(),
        rows: Vec::new(),
    };
    let (mut run50, mut run95) = (Vec::new(), Vec::new());
    for (i, p) in per_bucket.iter().enumerate() {
        let Some((p50, p95)) = *p else {
            flush(&mut run50, &mut chart.p50_lines);
            flush(&mut run95, &mut chart.p95_lines);
            continue;
        };
        let label = buckets.label(i);
        let x = round1(x_centre(i, n));
        let (y50, y95) = (y_of(p50 as f64, max), y_of(p95 as f64, max));
        run50.push(format!("{x},{y50}"));
        run95.push(format!("{x},{y95}"));
        let text = |v| crate::output::latency_text(Some(v));
        chart.p50_dots.push(Dot {
            x,
            y: y50,
            title: format!("{label}: p50 {}", text(p50)),
        });
        chart.p95_dots.push(Dot {
            x,
            y: y95,
            title: format!("{label}: p95 {}", text(p95)),
        });
        chart.rows.push(Row {
            label,
            cells: vec![text(p50), text(p95), buckets.latencies[i].len().to_string()],
        });
    }
    flush(&mut run50, &mut chart.p50_lines);
    flush(&mut run95, &mut chart.p95_lines);
    let all: Vec<u64> = {
        let mut all: Vec<u64> = buckets.latencies.iter().flatten().copied().collect();
        all.sort_unstable();
        all
    };
    chart.summary = match (percentile(&all, 50.0), percentile(&all, 95.0)) {
        (Some(p50), Some(p95)) => format!(
            "latency of {} attempts: p50 {}, p95 {}; highest bucket p95 {}",
            all.len(),
            crate::output::latency_text(Some(p50)),
            crate::output::latency_text(Some(p95)),
            crate::output::latency_text(Some(top)),
        ),
        _ => "no attempt recorded a latency in this period".into(),
    };
    chart
}

fn flush(run: &mut Vec<String>, lines: &mut Vec<String>) {
    if !run.is_empty() {
        lines.push(run.join(" "));
        run.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn point(ts_ms: u64, outcome: Outcome, latency_ms: Option<u64>) -> Point {
        Point {
            ts_ms,
            outcome,
            latency_ms,
        }
    }

    #[test]
    fn buckets_start_at_the_first_attempt_with_a_nice_width() {
        let now = 100 * HOUR + 1_234;
        let points = [
            point(90 * HOUR + 5, Outcome::Delivered, Some(10)),
            point(90 * HOUR + 9, Outcome::Retry, Some(30)),
            point(99 * HOUR, Outcome::Dead, None),
            point(99 * HOUR, Outcome::CircuitOpen, None),
        ];
        let b = Buckets::of(&points, 0, now);
        assert_eq!(b.width_ms, 15 * 60_000, "10 h in under 48 buckets");
        assert_eq!(b.start_ms, 90 * HOUR);
        assert_eq!(b.len(), 41);
        assert_eq!(b.counts[0], [1, 1, 0, 0]);
        assert_eq!(b.latencies[0], [10, 30]);
        assert_eq!(b.counts[36], [0, 0, 0, 1], "non-attempts are not drawn");
        assert_eq!(b.label(4), "01-04 19:00");
    }

    #[test]
    fn an_empty_window_still_has_one_bucket() {
        let b = Buckets::of(&[], 7 * 86_400_000, 8 * 86_400_000);
        assert_eq!((b.width_ms, b.len()), (HOUR, 25));
        let chart = bar_chart(&b);
        assert!(chart.bars.is_empty());
        assert!(chart.summary.starts_with("0 attempts"), "{}", chart.summary);
        let lines = line_chart(&b);
        assert!(lines.p50_lines.is_empty());
        assert_eq!(
            lines.summary,
            "no attempt recorded a latency in this period"
        );
    }

    #[test]
    fn bars_stack_bottom_up_within_the_plot() {
        let points = [
            point(0, Outcome::Delivered, None),
            point(1, Outcome::Delivered, None),
            point(2, Outcome::Dead, None),
            point(HOUR, Outcome::Retry, None),
        ];
        let b = Buckets::of(&points, 0, 2 * HOUR);
        let chart = bar_chart(&b);
        assert_eq!(chart.bars.len(), 2);
        let first = &chart.bars[0].segments;
        assert_eq!(
            first.iter().map(|s| s.series).collect::<Vec<_>>(),
            ["delivered", "dead"]
        );
        let bottom = TOP + plot_height();
        assert!((first[0].y + first[0].height - bottom).abs() < 0.2);
        assert!((first[1].y + first[1].height - first[0].y).abs() < 0.2);
        assert_eq!(chart.y_ticks.last().unwrap().label, "5", "max 3 → 5");
        assert_eq!(chart.rows[0].cells, ["2", "0", "0", "1"]);
        assert!(first[1].title.ends_with(": 1 dead"));
    }

    #[test]
    fn latency_lines_break_where_a_bucket_has_none() {
        let points = [
            point(0, Outcome::Delivered, Some(100)),
            point(1, Outcome::Delivered, Some(300)),
            point(2 * HOUR, Outcome::Delivered, Some(50)),
        ];
        let b = Buckets::of(&points, 0, 2 * HOUR);
        let chart = line_chart(&b);
        assert_eq!(chart.p50_lines.len(), 2, "{:?}", chart.p50_lines);
        assert_eq!(chart.rows[0].cells, ["100ms", "300ms", "2"]);
        assert!(chart.p95_dots[0].y < chart.p50_dots[0].y, "higher is up");
        assert!(chart.summary.contains("p95 300ms"), "{}", chart.summary);
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(4_200.0), 5_000.0);
    }
}
