//! Converting the kernel's monotonic timestamps to wall-clock time. The offsets are read once
//! at start (`os::clock`) or from a recording's header, and handed to renderers, so that
//! rendering never reads a clock and a replay prints the times of the recording.

/// Offsets from `CLOCK_MONOTONIC` (what `bpf_ktime_get_ns` returns) to local wall-clock time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WallClock {
    /// Unix time minus monotonic time, in nanoseconds.
    pub mono_to_unix_ns: i128,
    /// The local time zone's offset from UTC, in seconds.
    pub utc_offset_s: i64,
}

impl WallClock {
    /// RFC 3339 in UTC with microseconds (`2026-12-01T09:06:10.870761Z`) of a kernel
    /// timestamp: the `time` of every JSON line, beside the monotonic `ts_ns`.
    pub fn rfc3339(&self, ts_ns: u64) -> String {
        let unix_ns = (i128::from(ts_ns) + self.mono_to_unix_ns).max(0);
        let since_epoch =
            std::time::Duration::from_nanos(u64::try_from(unix_ns).unwrap_or(u64::MAX));
        humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + since_epoch).to_string()
    }

    /// `HH:MM:SS.micros` of a kernel timestamp, in local time.
    pub fn time_of_day(&self, ts_ns: u64) -> String {
        let local_ns = i128::from(ts_ns)
            + self.mono_to_unix_ns
            + i128::from(self.utc_offset_s) * 1_000_000_000;
        let day_ns = local_ns.rem_euclid(86_400 * 1_000_000_000);
        let secs = day_ns / 1_000_000_000;
        let micros = (day_ns % 1_000_000_000) / 1_000;
        format!(
            "{:02}:{:02}:{:02}.{:06}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60,
            micros
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_time_of_day_from_offsets() {
        let clock = WallClock {
            mono_to_unix_ns: 1_700_000_000 * 1_000_000_000,
            utc_offset_s: 3600,
        };
        // 1_700_000_000 is 22:13:20 UTC; +1 h; +1.5 s of monotonic time.
        assert_eq!(clock.time_of_day(1_500_000_000), "23:13:21.500000");
    }

    #[test]
    fn rfc3339_in_utc_whatever_the_local_zone() {
        let clock = WallClock {
            mono_to_unix_ns: 1_700_000_000 * 1_000_000_000,
            utc_offset_s: 3600,
        };
        assert_eq!(clock.rfc3339(1_500_000_000), "2023-11-14T22:13:21.500000Z");
    }

    #[test]
    fn wraps_past_midnight() {
        let clock = WallClock {
            mono_to_unix_ns: 86_399 * 1_000_000_000,
            utc_offset_s: 0,
        };
        assert_eq!(clock.time_of_day(2_000_000_000), "00:00:01.000000");
    }
}
