//! Test support: the snapshots of the recorded storm (`tests/e2e/testdata/storm-40.tcptrace`,
//! a 40-connection storm on port 47012 recorded by the real probe), made as `transitions
//! --replay` makes them: through the replay path, the pipeline and the aggregator, one per
//! recorded reading and the final one last. Deterministic: the times are the recording's.

use std::path::PathBuf;

use crate::{
    aggregate::{Aggregator, Config, SocketState, snapshot::Snapshot},
    core::{clock::WallClock, filter::EventFilter, pipeline::PipelineConfig},
    stream::{
        self, Update,
        aggregating::{self, Fed},
    },
};

pub fn storm_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/testdata/storm-40.tcptrace")
}

/// Every snapshot of the replay, the final one last; and the recording's wall clock.
pub fn storm_replay() -> (Vec<Snapshot>, WallClock) {
    let mut aggregator = Aggregator::new(Config {
        breakdowns: true,
        ..Config::default()
    });
    let mut snapshots = Vec::new();
    let mut wall = WallClock::default();
    let (totals, damage) = stream::run_replay(
        &storm_path(),
        PipelineConfig::default(),
        |update: Update<'_, SocketState>| {
            match aggregating::feed(&mut aggregator, &EventFilter::default(), update) {
                Fed::Started(origin, _) => wall = origin.wall,
                Fed::Taken => {}
                Fed::Tick(totals) => snapshots.push(aggregating::snapshot(&mut aggregator, totals)),
            }
            Ok(())
        },
    )
    .expect("the recorded storm replays");
    assert!(damage.is_none(), "the recording is whole");
    snapshots.push(aggregating::snapshot(&mut aggregator, &totals));
    (snapshots, wall)
}

pub fn storm_snapshots() -> Vec<Snapshot> {
    storm_replay().0
}
