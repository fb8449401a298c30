//! Numbers as people read them: durations with a unit that fits, rates with few digits.

/// `850ns`, `12.3us`, `4.56ms`, `1.23s`, `12m03s`, `5h02m`: three significant digits below a
/// minute, then minutes and hours.
pub fn duration(ns: u64) -> String {
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    let scaled = |value: f64, unit: &str| {
        if value >= 100.0 {
            format!("{value:.0}{unit}")
        } else if value >= 10.0 {
            format!("{value:.1}{unit}")
        } else {
            format!("{value:.2}{unit}")
        }
    };
    if ns < US {
        format!("{ns}ns")
    } else if ns < MS {
        scaled(ns as f64 / US as f64, "us")
    } else if ns < S {
        scaled(ns as f64 / MS as f64, "ms")
    } else if ns < 60 * S {
        scaled(ns as f64 / S as f64, "s")
    } else if ns < 3600 * S {
        let s = ns / S;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = ns / (60 * S);
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// A rate per second with at most one decimal.
pub fn rate(per_s: f64) -> String {
    if per_s >= 100.0 {
        format!("{per_s:.0}")
    } else {
        format!("{per_s:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0ns");
        assert_eq!(duration(999), "999ns");
        assert_eq!(duration(1_000), "1.00us");
        assert_eq!(duration(12_345), "12.3us");
        assert_eq!(duration(456_000), "456us");
        assert_eq!(duration(4_560_000), "4.56ms");
        assert_eq!(duration(1_230_000_000), "1.23s");
        assert_eq!(duration(59_990_000_000), "60.0s");
        assert_eq!(duration(723_000_000_000), "12m03s");
        assert_eq!(
            duration(5 * 3600 * 1_000_000_000 + 120_000_000_000),
            "5h02m"
        );
    }

    #[test]
    fn rates() {
        assert_eq!(rate(0.0), "0.0");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(1234.5), "1234");
    }
}
