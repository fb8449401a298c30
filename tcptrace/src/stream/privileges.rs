//! Once the probe is attached: giving up the capabilities that only loading and attaching it
//! needed, keeping what the live loop still uses (other processes' /proc entries, and reading
//! the probe's maps where the kernel asks a capability for that).

use std::io;

use crate::{
    kernel::source::Session,
    os::capabilities::{self, AFTER_ATTACH, MAP_ACCESS},
};

/// Drops every capability of the calling thread but those it still needs, and says what it
/// did; a failure is said, not fatal: tracing goes on with what the thread holds.
pub fn drop_after_attach(session: &Session) {
    match keep_what_is_needed(session) {
        Ok(dropped) => {
            let names = |caps: &[caps::Capability]| {
                let names: Vec<String> = caps.iter().map(ToString::to_string).collect();
                names.join(", ")
            };
            log::info!(
                "capabilities: kept {} only, gave up {} others{}",
                if dropped.kept.is_empty() {
                    "none".to_owned()
                } else {
                    names(&dropped.kept)
                },
                dropped.dropped.len(),
                if dropped.bounding {
                    ""
                } else {
                    " (the bounding set is left as given: no CAP_SETPCAP)"
                }
            );
            log::debug!("capabilities given up: {}", names(&dropped.dropped));
            // The HTTP server's thread keeps less (no map access): this bounds both.
            match capabilities::threads_holding_more(&dropped.kept) {
                Ok(threads) if threads.is_empty() => {}
                Ok(threads) => log::warn!(
                    "threads that still hold capabilities they do not need: {}",
                    threads.join("; ")
                ),
                Err(err) => log::warn!("cannot check the threads' capabilities: {err}"),
            }
        }
        Err(err) => log::warn!(
            "cannot give up the capabilities that attaching the probe needed ({err}): tracing \
             goes on with them"
        ),
    }
}

fn keep_what_is_needed(session: &Session) -> io::Result<capabilities::Dropped> {
    let mut keep = AFTER_ATTACH.to_vec();
    // Whether this kernel lets a thread without CAP_BPF read the probe's maps (it does from
    // 5.19 on): tried with the effective set lowered, the permitted one still whole.
    let effective = capabilities::lower_effective(&keep)?;
    let readable = session.counters();
    capabilities::restore_effective(&effective)?;
    if let Err(err) = readable {
        log::debug!("the probe's maps need a capability to read here: {err}");
        keep.extend(MAP_ACCESS);
    }
    capabilities::keep_only(&keep)
}
