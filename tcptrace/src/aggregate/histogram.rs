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

/// Upper edges of the fixed buckets an exporter publishes, in nanoseconds. Below a second,
/// decades and the 200 ms minimum retransmission timeout (TCP_RTO_MIN); from a second, the
/// moments a SYN's retransmissions give up with the default back-off (initial RTO 1 s,
/// doubling: 1, 3, 7, 15, 31, 63, 127 s, the last one `tcp_syn_retries` = 6), then out to a day
/// for the lifetimes of ESTABLISHED and CLOSE_WAIT sockets. TIME_WAIT and `tcp_fin_timeout`
/// (60 s) fall in the 63 s bucket.
pub const EDGES_NS: [u64; 19] = [
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    3_000_000_000,
    7_000_000_000,
    15_000_000_000,
    31_000_000_000,
    63_000_000_000,
    127_000_000_000,
    300_000_000_000,
    900_000_000_000,
    3_600_000_000_000,
    14_400_000_000_000,
    86_400_000_000_000,
];

/// The exponential buckets' schema, as Prometheus's native histograms number them: each
/// bucket is 2^(2^-3) ≈ 1.09 times as wide as the one below (a 9 % resolution, the Go client's
/// default), over seconds.
pub const EXPONENTIAL_SCHEMA: i32 = 3;

/// The recorded times as fixed and exponential buckets, for exporters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    /// Samples per fixed bucket (not cumulative): `fixed[i]` holds the times in
    /// (`EDGES_NS[i - 1]`, `EDGES_NS[i]`]; the last one those above the last edge.
    pub fixed: [u64; EDGES_NS.len() + 1],
    /// Samples per exponential bucket of [`EXPONENTIAL_SCHEMA`], by bucket index, ascending;
    /// empty buckets left out. Bucket `i` holds the times in (2^((i-1)/8), 2^(i/8)] seconds.
    pub exponential: Vec<(i32, u64)>,
    /// Samples of zero nanoseconds.
    pub zero: u64,
    /// Sum of the recorded times (exact: each is added as it is recorded).
    pub sum_ns: u128,
}

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
    pub buckets: Buckets,
}

/// A histogram of durations in nanoseconds.
#[derive(Clone, Debug)]
pub struct TimeHistogram {
    inner: Histogram<u64>,
    sum_ns: u128,
    /// Exact bucket counts, when an exporter asked for them.
    exact: Option<Box<ExactBuckets>>,
}

/// The lowest exponential bucket a time can fall in: the one holding 1 ns.
const EXPONENTIAL_MIN: i32 = -239;
/// The highest: the one holding [`HIGHEST_NS`].
const EXPONENTIAL_MAX: i32 = 154;

/// Bucket counts kept as each time is recorded: an HDR bucket can straddle an edge, so
/// counting from the HDR histogram afterwards could put a time on the wrong side of one.
#[derive(Clone, Debug)]
struct ExactBuckets {
    fixed: [u64; EDGES_NS.len() + 1],
    /// From [`EXPONENTIAL_MIN`] to [`EXPONENTIAL_MAX`].
    exponential: Vec<u64>,
    zero: u64,
}

impl ExactBuckets {
    fn new() -> Self {
        Self {
            fixed: [0; EDGES_NS.len() + 1],
            exponential: vec![0; (EXPONENTIAL_MAX - EXPONENTIAL_MIN + 1) as usize],
            zero: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        self.fixed[EDGES_NS.partition_point(|edge| *edge < ns)] += 1;
        match exponential_index(ns) {
            Some(index) => {
                let slot = index.clamp(EXPONENTIAL_MIN, EXPONENTIAL_MAX) - EXPONENTIAL_MIN;
                self.exponential[slot as usize] += 1;
            }
            None => self.zero += 1,
        }
    }

    fn buckets(&self, sum_ns: u128) -> Buckets {
        Buckets {
            fixed: self.fixed,
            exponential: self
                .exponential
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(slot, count)| (slot as i32 + EXPONENTIAL_MIN, *count))
                .collect(),
            zero: self.zero,
            sum_ns,
        }
    }
}

impl TimeHistogram {
    /// `significant` digits of precision (1 to 5); 3 keeps 0.1 % of the value.
    pub fn new(significant: u8) -> Self {
        let inner = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, significant.clamp(1, 5))
            .expect("constant bounds are valid");
        Self {
            inner,
            sum_ns: 0,
            exact: None,
        }
    }

    /// The same, also counting each time into the fixed and exponential buckets of
    /// [`Buckets`] as it is recorded.
    pub fn with_buckets(significant: u8) -> Self {
        Self {
            exact: Some(Box::new(ExactBuckets::new())),
            ..Self::new(significant)
        }
    }

    pub fn record(&mut self, ns: u64) {
        // Values above the bound are clamped, so recording cannot fail.
        let ns = ns.min(HIGHEST_NS);
        let _ = self.inner.record(ns);
        self.sum_ns += u128::from(ns);
        if let Some(exact) = &mut self.exact {
            exact.record(ns);
        }
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
        let buckets = self
            .exact
            .as_ref()
            .map(|exact| exact.buckets(self.sum_ns))
            .unwrap_or_default();
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
            buckets,
        }
    }
}

/// The exponential bucket of [`EXPONENTIAL_SCHEMA`] holding `ns` (`None`: zero, the zero
/// bucket): the `i` with 2^((i-1)/8) < seconds <= 2^(i/8).
pub fn exponential_index(ns: u64) -> Option<i32> {
    if ns == 0 {
        return None;
    }
    let scale = f64::from(1u32 << EXPONENTIAL_SCHEMA);
    let seconds = ns as f64 / 1e9;
    let mut index = (seconds.log2() * scale).ceil() as i32;
    // log2 rounds: keep the defining inequality exact at the bucket edges.
    let upper = |i: i32| (f64::from(i) / scale).exp2();
    if seconds > upper(index) {
        index += 1;
    } else if seconds <= upper(index - 1) {
        index -= 1;
    }
    Some(index)
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
    fn fixed_buckets_hold_each_time_once_with_an_exact_sum() {
        let mut h = TimeHistogram::with_buckets(3);
        // A SYN retried twice (3 s), a handshake (50 us), an hour in CLOSE_WAIT, two days.
        for ns in [
            3_000_000_000,
            50_000,
            3_600_000_000_000,
            2 * 86_400_000_000_000,
        ] {
            h.record(ns);
        }
        let b = h.summary().buckets;
        assert_eq!(b.fixed.iter().sum::<u64>(), 4);
        let at = |edge_ns: u64| EDGES_NS.iter().position(|e| *e == edge_ns).unwrap();
        assert_eq!(b.fixed[at(3_000_000_000)], 1);
        assert_eq!(b.fixed[at(100_000)], 1);
        assert_eq!(b.fixed[at(3_600_000_000_000)], 1);
        assert_eq!(b.fixed[EDGES_NS.len()], 1);
        assert_eq!(
            b.sum_ns,
            3_000_000_000 + 50_000 + 3_600_000_000_000 + 2 * 86_400_000_000_000
        );
        assert_eq!(b.exponential.iter().map(|(_, c)| c).sum::<u64>(), 4);
        assert!(b.exponential.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn no_buckets_unless_asked_for() {
        let mut h = TimeHistogram::new(3);
        h.record(5);
        assert_eq!(h.summary().buckets, Buckets::default());
    }

    #[test]
    fn the_exponential_range_covers_every_time() {
        assert_eq!(exponential_index(1), Some(EXPONENTIAL_MIN));
        assert_eq!(exponential_index(HIGHEST_NS), Some(EXPONENTIAL_MAX));
    }

    #[test]
    fn exponential_buckets_follow_prometheus_numbering() {
        // 1 s is the upper edge of bucket 0; 2 s of bucket 8 (schema 3: 8 buckets per doubling).
        assert_eq!(exponential_index(1_000_000_000), Some(0));
        assert_eq!(exponential_index(1_000_000_001), Some(1));
        assert_eq!(exponential_index(2_000_000_000), Some(8));
        assert_eq!(exponential_index(500_000_000), Some(-8));
        assert_eq!(exponential_index(0), None);
        for ns in [1, 999, 123_456, 7_000_000_000, HIGHEST_NS] {
            let i = exponential_index(ns).unwrap();
            let s = ns as f64 / 1e9;
            assert!((f64::from(i - 1) / 8.0).exp2() < s && s <= (f64::from(i) / 8.0).exp2());
        }
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
