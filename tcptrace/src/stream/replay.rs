//! The replay of a `tcptrace record` file: its frames handed to a [`RawSink`] in the order the
//! live loop met them, so that the pure pipeline behind it prints what the live command would
//! have printed, without root or a probe.
//!
//! The first reading is the baseline ([`RawSink::started`]), the last one before the end is the
//! final one ([`RawSink::stopped`]), the others are the command's ticks. A file cut short or
//! corrupt still replays up to the damage; the error is returned beside the result.

use std::io::{self, Read};

use crate::{
    core::{
        record::{Frame, Header, Reader, RecordError},
        reset_reason::ResetReasons,
    },
    stream::sink::{Origin, RawSink, Reading},
};

/// How a replay ended.
pub struct Replayed {
    pub header: Header,
    /// Why the file ended before its end frame, when it did: every frame before the damage
    /// was replayed, and the sink was stopped.
    pub damage: Option<RecordError>,
}

/// The origin a recording describes: the recorder's namespace, clock and reset reasons, whether
/// it traced request sockets' fates, and its first time.
fn origin(header: &Header, reset_reasons: &ResetReasons, start_ns: u64, fates: bool) -> Origin {
    Origin {
        own_netns: (header.netns != 0).then_some(header.netns),
        wall: header.clock,
        start_ns,
        reset_reasons: reset_reasons.clone(),
        programs_attached: 0,
        fates,
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
    // Whether the recorder traced dropped packets: said before the baseline, or never.
    let mut fates = false;
    // A reading is held until the next frame: the last one before the end is the final one.
    let mut held: Option<Reading> = None;
    let mut last = Reading::default();
    let mut reasons = ResetReasons::default();
    let damage = loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(err) => break Some(err),
        };
        // Written before the baseline: not a frame of the stream proper.
        if let Frame::Seed(seed) = frame {
            sink.seed(&seed).map_err(ReplayError::Sink)?;
            continue;
        }
        if let Frame::Reasons(names) = frame {
            reasons = names.clone();
            continue;
        }
        if matches!(frame, Frame::Fates) {
            fates = true;
            continue;
        }
        // The reading before the end frame is the final one, not a tick.
        if !matches!(frame, Frame::End { .. })
            && let Some(reading) = held.take()
        {
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
                sink.started(&origin(&header, &reasons, now_ns, fates), &last)
                    .map_err(ReplayError::Sink)?;
            }
            continue;
        }
        if !started {
            // A recorder writes its baseline first; without one, start from nothing.
            started = true;
            sink.started(&origin(&header, &reasons, 0, fates), &last)
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
            Frame::Counters { .. } | Frame::Seed(_) | Frame::Reasons(_) | Frame::Fates => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        core::{
            counters::TcpCounters,
            losses::KernelCounters,
            record::{Header, Writer},
            seed::{Holders, SocketSeed},
        },
        stream::record::Recorder,
    };

    /// Every call a sink receives, in order.
    #[derive(Debug, Default, PartialEq)]
    struct Log(Vec<String>);

    impl RawSink for Log {
        fn seed(&mut self, seed: &SocketSeed) -> io::Result<()> {
            self.0.push(format!(
                "seed {} {} {} {}",
                seed.cookie, seed.holders.pid, seed.holders.comm, seed.holders.count
            ));
            Ok(())
        }
        fn started(&mut self, origin: &Origin, reading: &Reading) -> io::Result<()> {
            self.0.push(format!(
                "started {:?} {} {} fates {}",
                origin.own_netns, origin.start_ns, reading.kernel.ringbuf_full, origin.fates
            ));
            Ok(())
        }
        fn record(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.0.push(format!("record {bytes:?}"));
            Ok(())
        }
        fn wakeup_end(&mut self, now_ns: u64) -> io::Result<()> {
            self.0.push(format!("wakeup_end {now_ns}"));
            Ok(())
        }
        fn tick(&mut self, reading: &Reading) -> io::Result<()> {
            self.0.push(format!(
                "tick {} {:?}",
                reading.now_ns,
                reading.tcp.is_some()
            ));
            Ok(())
        }
        fn stopped(&mut self, reading: &Reading) -> io::Result<()> {
            self.0.push(format!(
                "stopped {} {}",
                reading.now_ns, reading.kernel.ringbuf_full
            ));
            Ok(())
        }
    }

    fn reading(now_ns: u64, ringbuf_full: u64) -> Reading {
        Reading {
            now_ns,
            kernel: KernelCounters {
                ringbuf_full,
                ..KernelCounters::default()
            },
            tcp: Some(TcpCounters::default()),
        }
    }

    /// What the live loop would feed: a baseline, two wake-ups with a tick between, the end.
    fn live(sink: &mut impl RawSink) {
        live_with(sink, true);
    }

    /// The same, with `fates`: whether dropped packets are traced.
    fn live_with(sink: &mut impl RawSink, fates: bool) {
        let origin = Origin {
            own_netns: Some(7),
            start_ns: 100,
            fates,
            ..Origin::default()
        };
        for cookie in [7, 8] {
            let seed = SocketSeed {
                cookie,
                holders: Holders {
                    pid: 42,
                    comm: "nginx".into(),
                    count: 3,
                },
            };
            sink.seed(&seed).unwrap();
        }
        sink.started(&origin, &reading(100, 0)).unwrap();
        sink.record(&[1, 2, 3]).unwrap();
        sink.wakeup_end(150).unwrap();
        sink.tick(&reading(160, 1)).unwrap();
        sink.record(&[4]).unwrap();
        sink.wakeup_end(170).unwrap();
        sink.stopped(&reading(180, 2)).unwrap();
    }

    fn recording() -> Vec<u8> {
        let header = Header {
            netns: 7,
            ..Header::default()
        };
        let mut recorder = Recorder::new(Writer::new(Vec::new(), &header).unwrap());
        live(&mut recorder);
        assert_eq!(recorder.records, 2);
        // The recorder has ended its writer; what it wrote is the recording.
        recorder.into_bytes()
    }

    #[test]
    fn a_replay_feeds_the_sink_what_the_live_loop_fed_the_recorder() {
        let bytes = recording();
        let mut expected = Log::default();
        live(&mut expected);
        let (reader, header) = Reader::new(&bytes[..]).unwrap();
        let mut replayed = Log::default();
        let result = replay(reader, header, &mut replayed).unwrap();
        assert!(result.damage.is_none());
        assert_eq!(replayed, expected);
    }

    #[test]
    fn a_recording_says_whether_it_traced_dropped_packets() {
        for fates in [false, true] {
            let header = Header::default();
            let mut recorder = Recorder::new(Writer::new(Vec::new(), &header).unwrap());
            live_with(&mut recorder, fates);
            let bytes = recorder.into_bytes();
            let (reader, header) = Reader::new(&bytes[..]).unwrap();
            let mut replayed = Log::default();
            replay(reader, header, &mut replayed).unwrap();
            let started = replayed
                .0
                .iter()
                .find(|c| c.starts_with("started"))
                .unwrap();
            assert!(started.ends_with(&format!("fates {fates}")), "{started}");
        }
    }

    #[test]
    fn a_damaged_recording_stops_the_sink_with_the_last_reading() {
        let bytes = recording();
        // Cut inside the last frames: after the tick's reading, before the final one.
        let mut cut = None;
        for len in (0..bytes.len()).rev() {
            let (reader, header) = match Reader::new(&bytes[..len]) {
                Ok(opened) => opened,
                Err(_) => continue,
            };
            let mut log = Log::default();
            let result = replay(reader, header, &mut log).unwrap();
            assert!(result.damage.is_some(), "cut at {len}");
            if log.0.iter().any(|call| call.starts_with("tick")) {
                cut = Some(log);
                break;
            }
        }
        let log = cut.expect("some cut keeps the tick");
        assert_eq!(log.0[..2], ["seed 7 42 nginx 3", "seed 8 42 nginx 3"]);
        assert_eq!(log.0[2], "started Some(7) 100 0 fates true");
        // Stopped with the last reading seen, never a made-up zero.
        assert!(log.0.last().unwrap().starts_with("stopped"), "{log:?}");
        assert!(!log.0.last().unwrap().ends_with(" 0"), "{log:?}");
    }
}
