//! Fuzz target: the record-file reader, and the replay behind it. A recording may be cut short,
//! corrupt or hostile; any byte string must replay up to where it stops making sense, or be
//! refused, through the same Pipeline and aggregation as `transitions --replay`, never panic.

#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use tcptrace::{
    aggregate::{Aggregator, Config, SocketState},
    core::{
        pipeline::PipelineConfig,
        record::{Reader, RecordError},
    },
    render::transitions::text,
    stream::{Update, Updates, replay::replay},
};

fuzz_target!(|data: &[u8]| {
    let (reader, header) = match Reader::new(data) {
        Ok(opened) => opened,
        Err(err) => {
            // Refused: in one line, as the user reads it.
            assert!(!err.to_string().contains('\n'), "{err}");
            return;
        }
    };
    let mut aggregator = Aggregator::new(Config::default());
    let mut updates = Updates::new(
        PipelineConfig::default(),
        |update: Update<'_, SocketState>| {
            match update {
                Update::Started(origin, _) => {
                    aggregator.start(origin.start_ns);
                    // Every record decoded reaches the aggregation, drops included.
                    aggregator.trace_fates();
                }
                Update::Transition(t, socket) => aggregator.feed_transition(t, socket),
                Update::Signal(s, socket) => aggregator.feed_signal(s, socket),
                Update::Drop(d) => aggregator.feed_drop(d),
                Update::BatchEnd => aggregator.end_batch(),
                Update::Tick(_) => {}
            }
            Ok(())
        },
    );
    let replayed = replay(reader, header, &mut updates).expect("the sink never fails");
    let totals = updates.totals().clone();
    if let Some(damage) = &replayed.damage {
        let message: &RecordError = damage;
        assert!(!message.to_string().contains('\n'), "{message}");
    }
    aggregator.set_stream(totals.losses, totals.table);
    let snapshot = aggregator.snapshot(totals.now_ns);
    let mut out = Vec::new();
    text::summary(&mut out, &snapshot).expect("writing to memory");
    black_box(out);
});
