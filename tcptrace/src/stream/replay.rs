//! The replay of a `tcptrace record` file: its frames handed to a [`RawSink`] in the order the
//! live loop met them, so that the pure pipeline behind it prints what the live command would
//! have printed, without root or a probe.
//!
//! The first reading is the baseline ([`RawSink::started`]), the last one before the end is the
//! final one ([`RawSink::stopped`]), the others are the command's ticks. A file cut short or
//! corrupt still replays up to the damage; the error is returned beside the result.

use std::io::{self, Read};

use crate::{
    core::record::{Frame, Header, Reader, RecordError},
    stream::sink::{Origin, RawSink, Reading},
};

/// How a replay ended.
pub struct Replayed {
    pub header: Header,
    /// Why the file ended before its end frame, when it did: every frame before the damage
    /// was replayed, and the sink was stopped.
    pub damage: Option<RecordError>,
}

/// The origin a recording describes: the recorder's namespace and clock, and its first time.
fn origin(header: &Header, start_ns: u64) -> Origin {
    Origin {
        own_netns: (header.netns != 0).then_some(header.netns),
        wall: header.clock,
        start_ns,
    }
}

/// Replays the frames of `reader` (whose header was `header`) into `sink`. An error of the
/// sink is an error; damage in the file is returned in [`Replayed::damage`].
pub fn replay<R: Read>(
    mut reader: Reader<R>,
    header: Header,
    sink: &mut impl RawSink,
) -> Result<Replayed, ReplayError> {
    let mut started = false;
    // A reading is held until the next frame: the last one before the end is the final one.
    let mut held: Option<Reading> = None;
    let mut last = Reading::default();
    let damage = loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(err) => break Some(err),
        };
        if let Some(reading) = held.take() {
            sink.tick(&reading).map_err(ReplayError::Sink)?;
        }
        if let Frame::Counters {
            now_ns,
            kernel,
            tcp,
        } = frame
        {
            last = Reading {
                now_ns,
                kernel,
                tcp,
            };
            if started {
                held = Some(last);
            } else {
                started = true;
                sink.started(&origin(&header, now_ns), &last)
                    .map_err(ReplayError::Sink)?;
            }
            continue;
        }
        if !started {
            // A recorder writes its baseline first; without one, start from nothing.
            started = true;
            sink.started(&origin(&header, 0), &last)
                .map_err(ReplayError::Sink)?;
        }
        match frame {
            Frame::Event(bytes) => sink.record(bytes),
            Frame::Batch { now_ns } => {
                last.now_ns = now_ns;
                sink.wakeup_end(now_ns)
            }
            Frame::End { now_ns } => {
                last.now_ns = now_ns;
                Ok(())
            }
            Frame::Counters { .. } => Ok(()),
        }
        .map_err(ReplayError::Sink)?;
    };
    if started {
        // The final reading: the recorder's, or after damage the last one seen.
        sink.stopped(&held.unwrap_or(last))
            .map_err(ReplayError::Sink)?;
    }
    Ok(Replayed { header, damage })
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Record(RecordError),
    #[error(transparent)]
    Sink(io::Error),
}
