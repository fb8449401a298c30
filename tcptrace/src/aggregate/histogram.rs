//! Time-in-state histograms: HDR histograms (constant relative precision from a microsecond to
//! days, because handshakes take microseconds and CLOSE_WAIT can take hours), summarized as
//! percentiles, log2 buckets (as bcc prints them) and decade buckets (for a compact bar).

use hdrhistogram::Histogram;

/// Recorded in nanoseconds from 1, so that microseconds keep their three digits too (a lowest
/// discernible value of 1 us would make the first bucket 512 ns wide).
const LOWEST_NS: u64 = 1;
/// The largest time recorded; longer ones are recorded as this (a week).
pub const HIGHEST_NS: u64 = 7 * 24 * 3600 * 1_000_000_000;
/// Number of decade buckets of the compact bar: <10 us, <100 us, ..., >= 1000 s.
pub const DECADES: usize = 10;

/// Percentiles and extremes of the recorded times, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TimeStats {
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

/// One log2 bucket, in microseconds like bcc's `usecs` histograms: `[lo_us, hi_us]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Log2Bucket {
    pub lo_us: u64,
    pub hi_us: u64,
    pub count: u64,
}

/// What a renderer needs of a histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSummary {
    /// Samples recorded.
    pub samples: u64,
    pub stats: Option<TimeStats>,
    /// From the first to the last non-empty bucket.
    pub log2: Vec<Log2Bucket>,
    /// Counts per decade, from `< 10 us` to `>= 1000 s`.
    pub decades: [u64; DECADES],
}

/// A histogram of durations in nanoseconds.
#[derive(Clone, Debug)]
pub struct TimeHistogram {
    inner: Histogram<u64>,
}

impl TimeHistogram {
    /// `significant` digits of precision (1 to 5); 3 keeps 0.1 % of the value.
    pub fn new(significant: u8) -> Self {
        let inner = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, significant.clamp(1, 5))
            .expect("constant bounds are valid");
        Self { inner }
    }

    pub fn record(&mut self, ns: u64) {
        // Values above the bound are clamped, so recording cannot fail.
        let _ = self.inner.record(ns.min(HIGHEST_NS));
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    pub fn summary(&self) -> HistogramSummary {
        let samples = self.inner.len();
        if samples == 0 {
            return HistogramSummary::default();
        }
        let h = &self.inner;
        let stats = TimeStats {
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean().round() as u64,
        };
        let mut log2 = [0u64; 64];
        let mut decades = [0u64; DECADES];
        for bucket in h.iter_recorded() {
            let ns = h.median_equivalent(bucket.value_iterated_to());
            let count = bucket.count_at_value();
            log2[log2_index(ns / 1_000)] += count;
            decades[decade_index(ns)] += count;
        }
        let first = log2.iter().position(|c| *c > 0).unwrap_or(0);
        let last = log2.iter().rposition(|c| *c > 0).unwrap_or(0);
        let log2 = (first..=last)
            .map(|i| {
                let (lo_us, hi_us) = log2_range(i);
                Log2Bucket {
                    lo_us,
                    hi_us,
                    count: log2[i],
                }
            })
            .collect();
        HistogramSummary {
            samples,
            stats: Some(stats),
            log2,
            decades,
        }
    }
}

/// bcc's buckets: 0 holds 0..=1, then `[2^i, 2^(i+1) - 1]`.
fn log2_index(us: u64) -> usize {
    if us < 2 {
        0
    } else {
        (63 - us.leading_zeros()) as usize
    }
}

fn log2_range(index: usize) -> (u64, u64) {
    if index == 0 {
        (0, 1)
    } else {
        let lo = 1u64 << index;
        (lo, lo.saturating_mul(2).saturating_sub(1))
    }
}

fn decade_index(ns: u64) -> usize {
    let mut bound = 10_000; // 10 us
    let mut index = 0;
    while index < DECADES - 1 && ns >= bound {
        bound *= 10;
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_stats() {
        let h = TimeHistogram::new(3);
        assert_eq!(h.summary(), HistogramSummary::default());
    }

    #[test]
    fn percentiles_within_precision() {
        let mut h = TimeHistogram::new(3);
        for us in 1..=1000u64 {
            h.record(us * 1_000);
        }
        let s = h.summary().stats.unwrap();
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64 <= 0.001;
        assert!(close(s.p50, 500_000), "{s:?}");
        assert!(close(s.p90, 900_000), "{s:?}");
        assert!(close(s.p99, 990_000), "{s:?}");
        assert!(close(s.max, 1_000_000), "{s:?}");
        assert!(close(s.min, 1_000), "{s:?}");
        assert!(close(s.mean, 500_500), "{s:?}");
    }

    #[test]
    fn hours_and_microseconds_coexist() {
        let mut h = TimeHistogram::new(3);
        h.record(3_000);
        h.record(5 * 3600 * 1_000_000_000);
        let s = h.summary();
        let stats = s.stats.unwrap();
        assert!(stats.min >= 2_990 && stats.min <= 3_010, "{stats:?}");
        let five_h = 5 * 3600 * 1_000_000_000u64;
        assert!(stats.max.abs_diff(five_h) <= five_h / 1000, "{stats:?}");
        assert_eq!(s.decades[0], 1);
        assert_eq!(s.decades[DECADES - 1], 1);
    }

    #[test]
    fn too_long_is_clamped_not_lost() {
        let mut h = TimeHistogram::new(3);
        h.record(u64::MAX);
        assert_eq!(h.len(), 1);
        assert!(h.summary().stats.unwrap().max <= HIGHEST_NS + HIGHEST_NS / 1000);
    }

    #[test]
    fn log2_buckets_like_bcc() {
        let mut h = TimeHistogram::new(3);
        h.record(500); // 0 us
        h.record(3_000); // 3 us: [2, 3]
        h.record(3_500);
        h.record(100_000); // 100 us: [64, 127]
        let s = h.summary();
        assert_eq!(
            s.log2.first().unwrap(),
            &Log2Bucket {
                lo_us: 0,
                hi_us: 1,
                count: 1
            }
        );
        assert_eq!(
            s.log2[1],
            Log2Bucket {
                lo_us: 2,
                hi_us: 3,
                count: 2
            }
        );
        assert_eq!(
            s.log2.last().unwrap(),
            &Log2Bucket {
                lo_us: 64,
                hi_us: 127,
                count: 1
            }
        );
        assert_eq!(s.log2.iter().map(|b| b.count).sum::<u64>(), 4);
    }

    #[test]
    fn decades() {
        assert_eq!(decade_index(0), 0);
        assert_eq!(decade_index(9_999), 0);
        assert_eq!(decade_index(10_000), 1);
        assert_eq!(decade_index(1_000_000), 3);
        assert_eq!(decade_index(999_000_000_000), 8);
        assert_eq!(decade_index(1_000_000_000_000), 9);
        assert_eq!(decade_index(u64::MAX), DECADES - 1);
    }
}
