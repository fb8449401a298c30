//! What one redraw of `tcptrace states` shows, for its text and JSON renderers.

use crate::census::{Census, GroupBy, counts::Counts, live::Check};

/// What one redraw shows.
pub struct Frame<'a> {
    pub census: &'a Census,
    /// The previous snapshot of a watch: changes are shown against it.
    pub previous: Option<&'a Census>,
    pub by: Option<GroupBy>,
    /// The kernel flagged the dump as changed while it was taken.
    pub interrupted: bool,
    /// When tracing: the snapshot's time and the stream's check against it.
    pub live: Option<LiveInfo<'a>>,
}

/// What tracing adds to a snapshot's frame.
#[derive(Clone, Copy)]
pub struct LiveInfo<'a> {
    /// Start of the snapshot's dump, kernel monotonic time (`CLOCK_MONOTONIC`).
    pub snapshot_ns: u64,
    /// The previous snapshot plus the transitions since, against this one; `None` for the
    /// first snapshot.
    pub check: Option<&'a Check>,
}

/// A redraw between two snapshots: the counts kept current from the stream.
pub struct LiveFrame<'a> {
    pub counts: &'a Counts,
    /// The last snapshot: changes are shown against it, its findings under the table.
    pub snapshot: &'a Census,
}
