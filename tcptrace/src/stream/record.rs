//! The recorder: a [`RawSink`] that writes what the live loop feeds it to a `tcptrace record`
//! file, in the order met — the owners of the sockets that predate tracing, the baseline
//! reading, then each wake-up's raw records and its end, each reading, and the final one — so
//! that a replay feeds the pipeline exactly the same.

use std::io::{self, Write};

use crate::{
    core::{
        record::{Header, Writer},
        seed::SocketSeed,
    },
    os::host,
    stream::sink::{Origin, RawSink, Reading},
};

pub struct Recorder<W: Write> {
    /// `None` once the end was written.
    writer: Option<Writer<W>>,
    /// What the writer wrote to, once it has ended.
    ended: Option<W>,
    /// Raw records written.
    pub records: u64,
}

impl<W: Write> Recorder<W> {
    pub fn new(writer: Writer<W>) -> Self {
        Self {
            writer: Some(writer),
            ended: None,
            records: 0,
        }
    }

    fn writer(&mut self) -> io::Result<&mut Writer<W>> {
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("the recording was already ended"))
    }
}

#[cfg(test)]
impl Recorder<Vec<u8>> {
    /// The bytes of an ended recording in memory.
    pub fn into_bytes(self) -> Vec<u8> {
        self.ended.expect("the recording was ended")
    }
}

/// The header of a recording made here: what a replay needs to print as the live command
/// would have.
pub fn header(origin: &Origin, causes: bool, filter: String) -> Header {
    let (kernel_release, hostname) = host::release_and_hostname();
    Header {
        kernel_release,
        hostname,
        tcptrace_version: env!("CARGO_PKG_VERSION").to_owned(),
        clock: origin.wall,
        netns: origin.own_netns.unwrap_or(0),
        causes,
        filter,
    }
}

impl<W: Write> RawSink for Recorder<W> {
    fn seed(&mut self, seed: &SocketSeed) -> io::Result<()> {
        self.writer()?.seed(seed)
    }

    fn started(&mut self, origin: &Origin, reading: &Reading) -> io::Result<()> {
        let writer = self.writer()?;
        if !origin.reset_reasons.is_empty() {
            writer.reasons(&origin.reset_reasons)?;
        }
        if origin.fates {
            writer.fates()?;
        }
        writer.counters(reading.now_ns, &reading.kernel, reading.tcp.as_ref())?;
        writer.flush()
    }

    fn record(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.records += 1;
        self.writer()?.event(bytes)
    }

    fn wakeup_end(&mut self, now_ns: u64) -> io::Result<()> {
        self.writer()?.batch(now_ns)
    }

    fn tick(&mut self, reading: &Reading) -> io::Result<()> {
        let writer = self.writer()?;
        writer.counters(reading.now_ns, &reading.kernel, reading.tcp.as_ref())?;
        // A recorder killed now loses at most one interval.
        writer.flush()
    }

    fn stopped(&mut self, reading: &Reading) -> io::Result<()> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| io::Error::other("the recording was already ended"))?;
        writer.counters(reading.now_ns, &reading.kernel, reading.tcp.as_ref())?;
        let mut out = writer.end(reading.now_ns)?;
        out.flush()?;
        self.ended = Some(out);
        Ok(())
    }
}
