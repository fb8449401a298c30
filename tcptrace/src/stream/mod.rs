//! Where the commands' records come from: the live probe ([`run`]), a recorded file
//! ([`replay`]), or the live probe written to a file ([`record`]).
//!
//! The live loop is one owner of the state, waiting at once on the ring buffer, the kernel log,
//! a tick, the deadline and the signals; it starts with a census of the sockets that predate
//! tracing ([`census`]), whose owners it hands over first. It hands raw records, the end of
//! each wake-up and each reading of the counters to a [`RawSink`]: either the pure
//! [`Pipeline`] turning them into typed [`Update`]s for a command ([`updates`]), or the
//! recorder. A replay hands the recorded frames to the same pipeline, so that it prints what
//! the live command would have printed.
//! The commands that aggregate the updates share how they feed the aggregator
//! ([`aggregating`]).
//!
//! [`Pipeline`]: crate::core::pipeline::Pipeline

pub mod aggregating;
pub mod census;
pub mod latest_census;
pub mod live;
pub mod privileges;
pub mod record;
pub mod replay;
pub mod sink;
pub mod snapshot;
pub mod updates;

pub use self::{
    live::{LiveConfig, live_origin, run, run_live, run_replay},
    sink::{Origin, RawSink, Reading},
    updates::{Totals, Update, Updates},
};
