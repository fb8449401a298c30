//! The clocks: now on the kernel's monotonic clock (what `bpf_ktime_get_ns` returns), and the
//! offsets that turn it into local wall-clock time.

use crate::core::clock::WallClock;

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Now on the kernel's clock: what `bpf_ktime_get_ns` would return.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// The offsets from the monotonic clock to local time, now.
pub fn wall_clock() -> WallClock {
    let mono = clock_ns(libc::CLOCK_MONOTONIC);
    let unix = clock_ns(libc::CLOCK_REALTIME);
    let now = (unix / 1_000_000_000) as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fills; both pointers are valid.
    let utc_offset_s = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    };
    WallClock {
        mono_to_unix_ns: unix - mono,
        utc_offset_s,
    }
}
