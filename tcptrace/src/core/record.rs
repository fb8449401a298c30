//! The format of `tcptrace record` files: the raw event stream exactly as the probe delivered
//! it, with the wake-ups and counter readings of the live loop between the events, so that a
//! replay runs the same pure pipeline over the same input and prints what the live command
//! would have printed, without root or a probe. [`Writer`] writes it, [`Reader`] streams it
//! back; both over any `io::Write` / `io::Read` (files are opened by `os::record_file`).
//!
//! # Layout
//!
//! Every integer is little-endian. A header, then frames until the end frame.
//!
//! | bytes | header field                                                            |
//! | ----- | ----------------------------------------------------------------------- |
//! | 0     | magic, the 8 bytes `TCPTRACE`                                           |
//! | 8     | format version, u16: [`FORMAT_VERSION`] (= 3)                           |
//! | 10    | event ABI version, u16: `tcptrace_ebpf::ABI_VERSION`                    |
//! | 12    | event size, u32: `size_of::<tcptrace_ebpf::Event>()` (= 104)            |
//! | 16    | `WallClock::mono_to_unix_ns`, i128                                      |
//! | 32    | `WallClock::utc_offset_s`, i64                                          |
//! | 40    | the recorder's network namespace inode, u32                             |
//! | 44    | cause tracepoints attached, u8: 0 or 1                                  |
//! | 45    | kernel release, hostname, tcptrace version, kernel filter: four strings |
//! |       | in this order, each a u32 length then that many bytes of UTF-8          |
//!
//! | bytes | frame field                                                             |
//! | ----- | ----------------------------------------------------------------------- |
//! | 0     | tag, u8 (below)                                                         |
//! | 1     | payload length, u32, at most [`MAX_PAYLOAD`]                            |
//! | 5     | payload                                                                 |
//!
//! | tag | frame      | payload                                                             |
//! | --- | ---------- | ------------------------------------------------------------------- |
//! | 1   | `Event`    | one ring-buffer record as read (104 bytes today; any length is kept)|
//! | 2   | `Batch`    | `now_ns`, u64 (8 bytes)                                             |
//! | 3   | `Counters` | `now_ns`, u64; `KernelCounters` as 4 u64 in field order; a u8 flag, |
//! |     |            | 1 if the TCP counters follow as 10 u64 in field order (41 or 121)   |
//! | 4   | `End`      | `now_ns`, u64 (8 bytes)                                             |
//! | 5   | `Seed`     | the owner of a socket that predates tracing, found by the start-up  |
//! |     |            | census: cookie, u64; pid, u32; holders, u32; comm, 16 bytes,        |
//! |     |            | NUL-padded (32 bytes). Written before the first counters frame.     |
//! | 6   | `Reasons`  | the names of the kernel's reset reasons by value (`enum             |
//! |     |            | sk_rst_reason`, from its BTF): a u16 count, then each name as a u16 |
//! |     |            | length and that many bytes of UTF-8 (empty: no such value). Written |
//! |     |            | before the first counters frame, only by a kernel that has them.    |
//! | 7   | `Fates`    | empty: the recorder traced the packets dropped for request sockets' |
//! |     |            | fates (`skb:kfree_skb` attached), so that their absence means none. |
//! |     |            | Written before the first counters frame, or never.                  |
//!
//! Version 2 added the seed frame (and came with event ABI version 2); a reader of version 2
//! reads version 1's layout too, whose events it then refuses by their ABI. Version 3 added the
//! reasons and fates frames and came with event ABI version 3 (104-byte events, appended close
//! details; events of kind `DROP`, which the fates frame announces); a reader of version 3
//! reads files of version 2 too, and hands their 96-byte events out widened to the current
//! layout, the appended fields zero: nothing known of their closes, and no fates traced.
//!
//! `KernelCounters` in field order: `ringbuf_full`, `skipped_by_kernel`, `nested_caught`,
//! `listener_update_failed`. `TcpCounters` in field order: `active_opens`, `passive_opens`,
//! `estab_resets`, `embryonic_rsts`, `listen_overflows`, `listen_drops`, `req_q_full_drop`,
//! `req_q_full_do_cookies`, `syncookies_sent`, `syn_retrans`.
//!
//! Any change to this layout, to `KernelCounters` or to `TcpCounters` bumps [`FORMAT_VERSION`];
//! any change to the event bumps the ABI version. A reader refuses a newer format and another
//! ABI rather than misreading them. Tag 0 is never written, so a zeroed region is corruption.

use std::io::{self, Read, Write};

use tcptrace_ebpf::{ABI_VERSION, EVENT_SIZE_V2, Event};
use thiserror::Error;

use crate::core::{
    clock::WallClock,
    counters::TcpCounters,
    event::Comm,
    losses::KernelCounters,
    reset_reason::ResetReasons,
    seed::{Holders, SocketSeed},
};

/// The first bytes of every recording.
pub const MAGIC: [u8; 8] = *b"TCPTRACE";
/// The version of this layout that this tcptrace writes, and the newest it reads.
pub const FORMAT_VERSION: u16 = 3;
/// The event ABI of format version 2, whose events a reader widens.
const ABI_V2: u16 = 2;
/// The largest payload of a frame, and the longest header string. A ring-buffer record is 96
/// bytes; a length beyond this is corruption, never an allocation.
pub const MAX_PAYLOAD: usize = 64 << 10;

const EVENT_SIZE: u32 = size_of::<Event>() as u32;
/// Tag and length.
const FRAME_HEAD: usize = 5;
const TIME_LEN: usize = 8;
const KERNEL_COUNTERS_LEN: usize = 4 * 8;
const TCP_COUNTERS_LEN: usize = 10 * 8;
const COUNTERS_LEN: usize = TIME_LEN + KERNEL_COUNTERS_LEN + 1;
const COUNTERS_WITH_TCP_LEN: usize = COUNTERS_LEN + TCP_COUNTERS_LEN;
// A counter added to `TcpCounters` changes the format: it fails here until the length (and
// `FORMAT_VERSION`) follow.
const _: () = assert!(TCP_COUNTERS_LEN == TcpCounters::LEN * 8);
const COMM_LEN: usize = tcptrace_ebpf::COMM_LEN;
const SEED_LEN: usize = 8 + 4 + 4 + COMM_LEN;

mod tag {
    pub const EVENT: u8 = 1;
    pub const BATCH: u8 = 2;
    pub const COUNTERS: u8 = 3;
    pub const END: u8 = 4;
    pub const SEED: u8 = 5;
    pub const REASONS: u8 = 6;
    pub const FATES: u8 = 7;
}

/// What the recorder knew about its run: what a replay needs besides the events to print what
/// the live command printed (times of day, the own namespace, whether causes were traced), and
/// what identifies the recording to whoever reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `uname -r` of the recording host.
    pub kernel_release: String,
    pub hostname: String,
    /// The recorder's own version (`CARGO_PKG_VERSION`), named when a replay must use it.
    pub tcptrace_version: String,
    /// The recording host's clock offsets, read at start, so that times of day replay as they
    /// were shown.
    pub clock: WallClock,
    /// The recorder's own network namespace inode.
    pub netns: u32,
    /// Whether the cause tracepoints (resets, retransmissions) were attached: without them the
    /// absence of signals means nothing.
    pub causes: bool,
    /// The kernel-side filter in force, for display: transitions it dropped are not in the file.
    pub filter: String,
}

/// One frame of a recording, as [`Reader::next_frame`] returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One raw ring-buffer record, as read: for `core::decode::decode`, which validates it.
    Event(&'a [u8]),
    /// The live loop finished one wake-up at kernel-monotonic `now_ns`: the events since the
    /// previous batch were that wake-up's, and the pipeline expired held transitions here.
    Batch { now_ns: u64 },
    /// A reading of the probe's counters and of the kernel's TCP counters (`None`: the recorder
    /// had none, /proc/net/snmp unreadable say): the baseline at start, one at each tick, the
    /// final values at the end.
    Counters {
        now_ns: u64,
        kernel: KernelCounters,
        tcp: Option<TcpCounters>,
    },
    /// Tracing stopped at `now_ns`: the last wake-up, where the live loop flushes the held
    /// transitions instead of expiring them. A file without it was cut short.
    End { now_ns: u64 },
    /// The owner of a socket that predates tracing, as the start-up census found it.
    Seed(SocketSeed),
    /// The names of the recording kernel's reset reasons, by value.
    Reasons(&'a ResetReasons),
    /// The recorder traced the packets dropped for request sockets' fates.
    Fates,
}

/// Why a recording cannot be read (further). Frames returned before the error stay valid.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error(
        "not a tcptrace recording (no `TCPTRACE` at byte 0): make one with \
         `tcptrace record --output FILE`"
    )]
    NotARecord,
    #[error(
        "format version {found} is newer than this tcptrace reads ({supported}): upgrade tcptrace"
    )]
    NewerFormat { found: u16, supported: u16 },
    #[error(
        "the events were recorded by tcptrace {recorder} with event ABI version {found}, this \
         tcptrace {ours} decodes version {supported}: replay the file with tcptrace {recorder}",
        ours = env!("CARGO_PKG_VERSION")
    )]
    AbiMismatch {
        found: u16,
        supported: u16,
        /// The recorder's version, from the header.
        recorder: String,
    },
    #[error(
        "recording truncated at byte {offset}, in its header: tcptrace record stopped before it \
         began recording; record again"
    )]
    TruncatedHeader { offset: u64 },
    #[error(
        "recording truncated at byte {offset}, inside the frame that starts at byte {frame}: \
         tcptrace record was cut short (killed, or out of disk space) or is still writing; what \
         precedes is intact"
    )]
    TruncatedFrame { offset: u64, frame: u64 },
    #[error(
        "recording truncated at byte {offset}, where it ends without an end frame: tcptrace \
         record was cut short (killed, or out of disk space) or is still writing; what precedes \
         is intact"
    )]
    MissingEnd { offset: u64 },
    #[error("recording corrupt at byte {offset}: {problem}")]
    Corrupt { offset: u64, problem: Corruption },
    #[error("cannot read the recording at byte {offset}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

/// What is wrong at the offset of a [`RecordError::Corrupt`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Corruption {
    #[error("format version 0, which no tcptrace writes")]
    FormatVersionZero,
    #[error("{found}-byte events, where event ABI version {abi} has {expected}-byte ones")]
    EventSize { found: u32, expected: u32, abi: u16 },
    #[error("the {field} is {len} bytes long, over the limit of {MAX_PAYLOAD}")]
    StringTooLong { field: &'static str, len: u32 },
    #[error("the {field} is not UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("the {field} flag is {value}, neither 0 nor 1")]
    BadFlag { field: &'static str, value: u8 },
    #[error("a frame of unknown kind {0}")]
    UnknownTag(u8),
    #[error("a frame of {0} bytes, over the limit of {MAX_PAYLOAD}")]
    TooLong(u32),
    #[error("a {kind} frame of {len} bytes, where one has {expected}")]
    BadLength {
        kind: &'static str,
        len: u32,
        expected: &'static str,
    },
    #[error("data after the end frame (two recordings in one file?)")]
    AfterEnd,
    #[error("a reasons frame whose names overrun it or are not UTF-8")]
    BadReasons,
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes a recording: the header at creation, then one call per frame. [`Writer::event`] runs
/// for every record the probe delivers and allocates nothing: give it a buffered `W`.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    /// Writes the header to `out`.
    pub fn new(mut out: W, header: &Header) -> io::Result<Self> {
        out.write_all(&MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        out.write_all(&ABI_VERSION.to_le_bytes())?;
        out.write_all(&EVENT_SIZE.to_le_bytes())?;
        out.write_all(&header.clock.mono_to_unix_ns.to_le_bytes())?;
        out.write_all(&header.clock.utc_offset_s.to_le_bytes())?;
        out.write_all(&header.netns.to_le_bytes())?;
        out.write_all(&[u8::from(header.causes)])?;
        for (field, text) in header.strings() {
            let len = payload_len(text.len(), field)?;
            out.write_all(&len.to_le_bytes())?;
            out.write_all(text.as_bytes())?;
        }
        Ok(Self { out })
    }

    /// One raw ring-buffer record, exactly as read.
    pub fn event(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = payload_len(bytes.len(), "event")?;
        self.out.write_all(&frame_head(tag::EVENT, len))?;
        self.out.write_all(bytes)
    }

    /// The end of one wake-up of the live loop, at kernel-monotonic `now_ns`.
    pub fn batch(&mut self, now_ns: u64) -> io::Result<()> {
        self.out.write_all(&time_frame(tag::BATCH, now_ns))
    }

    /// A reading of the counters at `now_ns`.
    pub fn counters(
        &mut self,
        now_ns: u64,
        kernel: &KernelCounters,
        tcp: Option<&TcpCounters>,
    ) -> io::Result<()> {
        let mut frame = [0u8; FRAME_HEAD + COUNTERS_WITH_TCP_LEN];
        let mut at = FRAME_HEAD;
        put_u64(&mut frame, &mut at, now_ns);
        // Destructured rather than read field by field, so that a new counter fails to build
        // here instead of silently missing from recordings (and bumps FORMAT_VERSION).
        let KernelCounters {
            ringbuf_full,
            skipped_by_kernel,
            nested_caught,
            listener_update_failed,
        } = *kernel;
        for value in [
            ringbuf_full,
            skipped_by_kernel,
            nested_caught,
            listener_update_failed,
        ] {
            put_u64(&mut frame, &mut at, value);
        }
        frame[at] = u8::from(tcp.is_some());
        at += 1;
        for value in tcp.map(TcpCounters::to_array).into_iter().flatten() {
            put_u64(&mut frame, &mut at, value);
        }
        frame[..FRAME_HEAD].copy_from_slice(&frame_head(tag::COUNTERS, (at - FRAME_HEAD) as u32));
        self.out.write_all(&frame[..at])
    }

    /// Pushes what is buffered to the file: a recorder that flushes at each tick loses at most
    /// one tick's frames if it is killed.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The recorder traces the packets dropped for request sockets' fates: before the first
    /// counters.
    pub fn fates(&mut self) -> io::Result<()> {
        self.out.write_all(&frame_head(tag::FATES, 0))
    }

    /// The owner of a socket that predates tracing.
    pub fn seed(&mut self, seed: &SocketSeed) -> io::Result<()> {
        let mut frame = [0u8; FRAME_HEAD + SEED_LEN];
        frame[..FRAME_HEAD].copy_from_slice(&frame_head(tag::SEED, SEED_LEN as u32));
        let mut at = FRAME_HEAD;
        put_u64(&mut frame, &mut at, seed.cookie);
        put_u32(&mut frame, &mut at, seed.holders.pid);
        put_u32(&mut frame, &mut at, seed.holders.count);
        let comm = seed.holders.comm.as_str().as_bytes();
        frame[at..at + comm.len()].copy_from_slice(comm);
        self.out.write_all(&frame)
    }

    /// The names of the kernel's reset reasons.
    pub fn reasons(&mut self, reasons: &ResetReasons) -> io::Result<()> {
        let names = reasons.names();
        let mut payload = Vec::with_capacity(2 + names.iter().map(|n| 2 + n.len()).sum::<usize>());
        let count = u16::try_from(names.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many reset reasons"))?;
        payload.extend_from_slice(&count.to_le_bytes());
        for name in names {
            let len = u16::try_from(name.len()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a reset reason's name is too long",
                )
            })?;
            payload.extend_from_slice(&len.to_le_bytes());
            payload.extend_from_slice(name.as_bytes());
        }
        let len = payload_len(payload.len(), "reasons frame")?;
        self.out.write_all(&frame_head(tag::REASONS, len))?;
        self.out.write_all(&payload)
    }

    /// The end frame, at `now_ns`; flushes and hands back the output. Consumes the writer: a
    /// frame after the end would make the file corrupt.
    pub fn end(mut self, now_ns: u64) -> io::Result<W> {
        self.out.write_all(&time_frame(tag::END, now_ns))?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// The output, without an end frame: the recording reads as cut short.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl Header {
    /// The strings in file order, with the names errors call them by.
    fn strings(&self) -> [(&'static str, &str); 4] {
        [
            ("kernel release", &self.kernel_release),
            ("hostname", &self.hostname),
            ("tcptrace version", &self.tcptrace_version),
            ("kernel filter", &self.filter),
        ]
    }
}

fn payload_len(len: usize, what: &str) -> io::Result<u32> {
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the {what} is {len} bytes long, over the record-file limit of {MAX_PAYLOAD}"),
        ));
    }
    Ok(len as u32)
}

fn frame_head(kind: u8, len: u32) -> [u8; FRAME_HEAD] {
    let len = len.to_le_bytes();
    [kind, len[0], len[1], len[2], len[3]]
}

fn time_frame(kind: u8, now_ns: u64) -> [u8; FRAME_HEAD + TIME_LEN] {
    let mut frame = [0u8; FRAME_HEAD + TIME_LEN];
    frame[..FRAME_HEAD].copy_from_slice(&frame_head(kind, TIME_LEN as u32));
    frame[FRAME_HEAD..].copy_from_slice(&now_ns.to_le_bytes());
    frame
}

fn put_u64(buf: &mut [u8], at: &mut usize, value: u64) {
    buf[*at..*at + 8].copy_from_slice(&value.to_le_bytes());
    *at += 8;
}

fn put_u32(buf: &mut [u8], at: &mut usize, value: u32) {
    buf[*at..*at + 4].copy_from_slice(&value.to_le_bytes());
    *at += 4;
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Streams a recording frame by frame, never holding more than one frame: files run to
/// hundreds of megabytes. Give it a buffered `R`.
#[derive(Debug)]
pub struct Reader<R: Read> {
    input: Input<R>,
    /// The payload of the last frame, reused: events borrow it, so reading allocates only when
    /// a frame is longer than any before it.
    payload: Vec<u8>,
    state: State,
    /// The file's events are of ABI version 2: each is widened to the current layout.
    widen: bool,
    /// The names of the last reasons frame.
    reasons: ResetReasons,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Frames,
    /// The end frame was read: only end of file may follow.
    Ended,
    /// End of file after the end frame, or an error: nothing more is read.
    Done,
}

/// A frame read and checked, its payload (for events) left in `Reader::payload`.
enum Parsed {
    Event(usize),
    Batch(u64),
    Counters(u64, KernelCounters, Option<TcpCounters>),
    End(u64),
    Seed(SocketSeed),
    Reasons,
    Fates,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<(Self, Header), RecordError> {
        let mut input = Input {
            inner: input,
            offset: 0,
        };
        let (header, abi) = read_header(&mut input)?;
        let reader = Self {
            input,
            payload: Vec::with_capacity(EVENT_SIZE as usize),
            state: State::Frames,
            widen: abi == ABI_V2,
            reasons: ResetReasons::default(),
        };
        Ok((reader, header))
    }

    /// The next frame; `None` after the end frame and end of file. A file cut short or corrupt
    /// yields every frame before the damage, then the error, then `None`.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, RecordError> {
        let parsed = match self.state {
            State::Done => return Ok(None),
            State::Ended => {
                self.state = State::Done;
                let at = self.input.offset;
                return match self.input.fill(&mut [0u8; 1])? {
                    0 => Ok(None),
                    _ => Err(RecordError::Corrupt {
                        offset: at,
                        problem: Corruption::AfterEnd,
                    }),
                };
            }
            State::Frames => match self.read_frame() {
                Ok(parsed) => parsed,
                Err(err) => {
                    self.state = State::Done;
                    return Err(err);
                }
            },
        };
        Ok(Some(match parsed {
            Parsed::Event(len) => Frame::Event(&self.payload[..len]),
            Parsed::Batch(now_ns) => Frame::Batch { now_ns },
            Parsed::Counters(now_ns, kernel, tcp) => Frame::Counters {
                now_ns,
                kernel,
                tcp,
            },
            Parsed::End(now_ns) => {
                self.state = State::Ended;
                Frame::End { now_ns }
            }
            Parsed::Seed(seed) => Frame::Seed(seed),
            Parsed::Reasons => Frame::Reasons(&self.reasons),
            Parsed::Fates => Frame::Fates,
        }))
    }

    /// Bytes read so far: the end of the last frame returned.
    pub fn offset(&self) -> u64 {
        self.input.offset
    }

    fn read_frame(&mut self) -> Result<Parsed, RecordError> {
        let start = self.input.offset;
        let mut head = [0u8; FRAME_HEAD];
        match self.input.fill(&mut head)? {
            0 => return Err(RecordError::MissingEnd { offset: start }),
            FRAME_HEAD => {}
            _ => {
                return Err(RecordError::TruncatedFrame {
                    offset: self.input.offset,
                    frame: start,
                });
            }
        }
        let [kind, len @ ..] = head;
        let len = u32::from_le_bytes(len);
        let corrupt = |problem| RecordError::Corrupt {
            offset: start,
            problem,
        };
        let bad_length = |name, expected| {
            corrupt(Corruption::BadLength {
                kind: name,
                len,
                expected,
            })
        };
        match kind {
            tag::EVENT if len as usize > MAX_PAYLOAD => {
                return Err(corrupt(Corruption::TooLong(len)));
            }
            tag::BATCH if len as usize != TIME_LEN => return Err(bad_length("batch", "8")),
            tag::END if len as usize != TIME_LEN => return Err(bad_length("end", "8")),
            tag::SEED if len as usize != SEED_LEN => return Err(bad_length("seed", "32")),
            tag::REASONS if len as usize > MAX_PAYLOAD || len < 2 => {
                return Err(bad_length("reasons", "2 to 65536"));
            }
            tag::FATES if len != 0 => return Err(bad_length("fates", "0")),
            tag::COUNTERS
                if len as usize != COUNTERS_LEN && len as usize != COUNTERS_WITH_TCP_LEN =>
            {
                return Err(bad_length("counters", "41 or 121"));
            }
            tag::EVENT
            | tag::BATCH
            | tag::END
            | tag::COUNTERS
            | tag::SEED
            | tag::REASONS
            | tag::FATES => {}
            // Whatever its length: that garbage is long says less than that it is garbage.
            other => return Err(corrupt(Corruption::UnknownTag(other))),
        }
        let len = len as usize;
        if self.payload.len() < len {
            self.payload.resize(len, 0);
        }
        let payload = &mut self.payload[..len];
        if self.input.fill(payload)? < len {
            return Err(RecordError::TruncatedFrame {
                offset: self.input.offset,
                frame: start,
            });
        }
        Ok(match kind {
            // Zeroed past its end: the fields ABI version 3 appended, not read then.
            tag::EVENT if self.widen && len == EVENT_SIZE_V2 => {
                self.payload.resize(len.max(EVENT_SIZE as usize), 0);
                self.payload[len..EVENT_SIZE as usize].fill(0);
                Parsed::Event(EVENT_SIZE as usize)
            }
            tag::EVENT => Parsed::Event(len),
            tag::REASONS => {
                self.reasons = reasons(payload).ok_or(corrupt(Corruption::BadReasons))?;
                Parsed::Reasons
            }
            tag::BATCH => Parsed::Batch(Fields(payload).u64()),
            tag::END => Parsed::End(Fields(payload).u64()),
            tag::SEED => Parsed::Seed(seed(payload)),
            tag::FATES => Parsed::Fates,
            _ => counters(payload, start, bad_length)?,
        })
    }
}

/// The payload of a counters frame whose length is one of the two valid ones.
fn counters(
    payload: &[u8],
    start: u64,
    bad_length: impl Fn(&'static str, &'static str) -> RecordError,
) -> Result<Parsed, RecordError> {
    let mut fields = Fields(payload);
    let now_ns = fields.u64();
    let kernel = KernelCounters {
        ringbuf_full: fields.u64(),
        skipped_by_kernel: fields.u64(),
        nested_caught: fields.u64(),
        listener_update_failed: fields.u64(),
    };
    let flag_at = start + (FRAME_HEAD + TIME_LEN + KERNEL_COUNTERS_LEN) as u64;
    let has_tcp = flag(fields.u8(), "TCP counters", flag_at)?;
    match (has_tcp, payload.len()) {
        (true, COUNTERS_WITH_TCP_LEN) | (false, COUNTERS_LEN) => {}
        (true, _) => return Err(bad_length("counters", "121 with TCP counters")),
        (false, _) => return Err(bad_length("counters", "41 without TCP counters")),
    }
    // `from_fn` fills the array in ascending order: the fields are read in the file's order.
    let tcp = has_tcp.then(|| TcpCounters::from_array(std::array::from_fn(|_| fields.u64())));
    Ok(Parsed::Counters(now_ns, kernel, tcp))
}

/// The payload of a reasons frame: `None` when it is not as documented.
fn reasons(payload: &[u8]) -> Option<ResetReasons> {
    let (count, mut rest) = payload.split_first_chunk::<2>()?;
    let mut names = Vec::new();
    for _ in 0..u16::from_le_bytes(*count) {
        let (len, after) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        let name = after.get(..len)?;
        names.push(std::str::from_utf8(name).ok()?.to_owned());
        rest = &after[len..];
    }
    rest.is_empty().then(|| ResetReasons::from_names(names))
}

/// The payload of a seed frame, whose length was checked.
fn seed(payload: &[u8]) -> SocketSeed {
    let mut fields = Fields(payload);
    let cookie = fields.u64();
    let pid = fields.u32();
    let count = fields.u32();
    SocketSeed {
        cookie,
        holders: Holders {
            pid,
            comm: Comm::from_raw(fields.0),
            count,
        },
    }
}

/// Reads a payload's fields one after the other. Its length was checked against the frame's
/// kind before: running out is a bug, not bad input.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u64(&mut self) -> u64 {
        let (field, rest) = self
            .0
            .split_first_chunk()
            .expect("the frame's length was checked");
        self.0 = rest;
        u64::from_le_bytes(*field)
    }

    fn u32(&mut self) -> u32 {
        let (field, rest) = self
            .0
            .split_first_chunk()
            .expect("the frame's length was checked");
        self.0 = rest;
        u32::from_le_bytes(*field)
    }

    fn u8(&mut self) -> u8 {
        let (&field, rest) = self
            .0
            .split_first()
            .expect("the frame's length was checked");
        self.0 = rest;
        field
    }
}

/// The input and how far into it we are, for the offsets of errors.
#[derive(Debug)]
struct Input<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Input<R> {
    /// Fills `buf` as far as the input goes: fewer bytes only at end of file.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, RecordError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    self.offset += n as u64;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(RecordError::Io {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
        Ok(got)
    }

    /// `N` bytes of the header.
    fn header<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut bytes = [0u8; N];
        if self.fill(&mut bytes)? < N {
            return Err(RecordError::TruncatedHeader {
                offset: self.offset,
            });
        }
        Ok(bytes)
    }

    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        let at = self.offset;
        let len = u32::from_le_bytes(self.header()?);
        if len as usize > MAX_PAYLOAD {
            return Err(RecordError::Corrupt {
                offset: at,
                problem: Corruption::StringTooLong { field, len },
            });
        }
        let mut bytes = vec![0u8; len as usize];
        if self.fill(&mut bytes)? < bytes.len() {
            return Err(RecordError::TruncatedHeader {
                offset: self.offset,
            });
        }
        String::from_utf8(bytes).map_err(|_| RecordError::Corrupt {
            offset: at + 4,
            problem: Corruption::NotUtf8 { field },
        })
    }
}

/// The header, and the ABI version of the file's events.
fn read_header<R: Read>(input: &mut Input<R>) -> Result<(Header, u16), RecordError> {
    let mut magic = [0u8; MAGIC.len()];
    let got = input.fill(&mut magic)?;
    // A prefix of the magic is a recording cut short (an empty file among them), anything
    // else is another kind of file.
    if magic[..got] != MAGIC[..got] {
        return Err(RecordError::NotARecord);
    }
    if got < MAGIC.len() {
        return Err(RecordError::TruncatedHeader {
            offset: input.offset,
        });
    }
    // The version first: a newer one may lay out everything after it differently.
    let version_at = input.offset;
    match u16::from_le_bytes(input.header()?) {
        0 => {
            return Err(RecordError::Corrupt {
                offset: version_at,
                problem: Corruption::FormatVersionZero,
            });
        }
        found if found > FORMAT_VERSION => {
            return Err(RecordError::NewerFormat {
                found,
                supported: FORMAT_VERSION,
            });
        }
        _ => {}
    }
    let abi = u16::from_le_bytes(input.header()?);
    let size_at = input.offset;
    let event_size = u32::from_le_bytes(input.header()?);
    let clock = WallClock {
        mono_to_unix_ns: i128::from_le_bytes(input.header()?),
        utc_offset_s: i64::from_le_bytes(input.header()?),
    };
    let netns = u32::from_le_bytes(input.header()?);
    let causes_at = input.offset;
    let [causes] = input.header()?;
    let causes = flag(causes, "cause tracepoints", causes_at)?;
    let header = Header {
        kernel_release: input.string("kernel release")?,
        hostname: input.string("hostname")?,
        tcptrace_version: input.string("tcptrace version")?,
        clock,
        netns,
        causes,
        filter: input.string("kernel filter")?,
    };
    // Checked once the whole header is read, to name the tcptrace that can replay the file.
    // Version 2's events are a prefix of this version's: widened on reading.
    let expected_size = if abi == ABI_V2 {
        EVENT_SIZE_V2 as u32
    } else {
        EVENT_SIZE
    };
    if abi != ABI_VERSION && abi != ABI_V2 {
        return Err(RecordError::AbiMismatch {
            found: abi,
            supported: ABI_VERSION,
            recorder: header.tcptrace_version,
        });
    }
    if event_size != expected_size {
        return Err(RecordError::Corrupt {
            offset: size_at,
            problem: Corruption::EventSize {
                found: event_size,
                expected: expected_size,
                abi,
            },
        });
    }
    Ok((header, abi))
}

fn flag(value: u8, field: &'static str, offset: u64) -> Result<bool, RecordError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(RecordError::Corrupt {
            offset,
            problem: Corruption::BadFlag { field, value },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decode::{encode, tests::sample};

    /// A frame that owns its event's bytes, to collect frames.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Owned {
        Event(Vec<u8>),
        Batch(u64),
        Counters(u64, KernelCounters, Option<TcpCounters>),
        End(u64),
        Seed(SocketSeed),
        Reasons(Vec<String>),
        Fates,
    }

    impl From<Frame<'_>> for Owned {
        fn from(frame: Frame<'_>) -> Self {
            match frame {
                Frame::Event(bytes) => Self::Event(bytes.to_vec()),
                Frame::Batch { now_ns } => Self::Batch(now_ns),
                Frame::Counters {
                    now_ns,
                    kernel,
                    tcp,
                } => Self::Counters(now_ns, kernel, tcp),
                Frame::End { now_ns } => Self::End(now_ns),
                Frame::Seed(seed) => Self::Seed(seed),
                Frame::Reasons(reasons) => Self::Reasons(reasons.names().to_vec()),
                Frame::Fates => Self::Fates,
            }
        }
    }

    fn header() -> Header {
        Header {
            kernel_release: "6.8.0-45-generic".into(),
            hostname: "db-1".into(),
            tcptrace_version: "0.1.0".into(),
            clock: WallClock {
                mono_to_unix_ns: 1_700_000_000_123_456_789,
                utc_offset_s: -7 * 3600,
            },
            netns: 4026531840,
            causes: true,
            filter: "--lport 5432 --family inet".into(),
        }
    }

    fn kernel_counters() -> KernelCounters {
        KernelCounters {
            ringbuf_full: 1,
            skipped_by_kernel: 2,
            nested_caught: 3,
            listener_update_failed: 4,
        }
    }

    fn tcp_counters() -> TcpCounters {
        TcpCounters {
            active_opens: 11,
            passive_opens: 12,
            estab_resets: 13,
            embryonic_rsts: 14,
            listen_overflows: 15,
            listen_drops: 16,
            req_q_full_drop: 17,
            req_q_full_do_cookies: 18,
            syncookies_sent: 19,
            syn_retrans: u64::MAX,
        }
    }

    /// Every kind of frame, events of unusual lengths among them, as written.
    fn frames() -> Vec<Owned> {
        let event = encode(&sample()).to_vec();
        vec![
            Owned::Counters(1_000, KernelCounters::default(), Some(tcp_counters())),
            Owned::Event(event.clone()),
            Owned::Event(vec![]),
            Owned::Event(vec![0xab; 3]),
            Owned::Batch(2_000),
            Owned::Event(event),
            Owned::Counters(3_000, kernel_counters(), None),
            Owned::Batch(4_000),
            Owned::Counters(5_000, kernel_counters(), Some(tcp_counters())),
            Owned::Seed(seed(7, "python3", 1)),
            Owned::Seed(seed(u64::MAX, "full-sixteen-chr", u32::MAX)),
            Owned::Reasons(vec![
                "not_specified".into(),
                String::new(),
                "tcp_keepalive_timeout".into(),
            ]),
            Owned::Fates,
            Owned::End(u64::MAX),
        ]
    }

    fn seed(cookie: u64, comm: &str, count: u32) -> SocketSeed {
        SocketSeed {
            cookie,
            holders: Holders {
                pid: 4242,
                comm: comm.into(),
                count,
            },
        }
    }

    /// `frames` written; without the end frame unless `end`.
    fn write(frames: &[Owned], end: bool) -> Vec<u8> {
        let mut writer = Writer::new(Vec::new(), &header()).unwrap();
        for frame in frames {
            match frame {
                Owned::Event(bytes) => writer.event(bytes).unwrap(),
                Owned::Batch(now_ns) => writer.batch(*now_ns).unwrap(),
                Owned::Counters(now_ns, kernel, tcp) => {
                    writer.counters(*now_ns, kernel, tcp.as_ref()).unwrap()
                }
                Owned::Seed(seed) => writer.seed(seed).unwrap(),
                Owned::Reasons(names) => writer
                    .reasons(&ResetReasons::from_names(names.clone()))
                    .unwrap(),
                Owned::Fates => writer.fates().unwrap(),
                Owned::End(_) => {}
            }
        }
        match frames.last() {
            Some(Owned::End(now_ns)) if end => writer.end(*now_ns).unwrap(),
            _ => writer.into_inner(),
        }
    }

    fn recording() -> Vec<u8> {
        write(&frames(), true)
    }

    /// Everything a reader yields: the frames, then the error that stopped it, if any.
    fn read_all(bytes: &[u8]) -> Result<(Header, Vec<Owned>, Option<RecordError>), RecordError> {
        let (mut reader, header) = Reader::new(bytes)?;
        let mut frames = Vec::new();
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => frames.push(frame.into()),
                Ok(None) => return Ok((header, frames, None)),
                Err(err) => {
                    // Fused: nothing after the error.
                    assert!(matches!(reader.next_frame(), Ok(None)));
                    return Ok((header, frames, Some(err)));
                }
            }
        }
    }

    /// Where the header ends and each frame ends, read back from a valid recording.
    fn frame_ends(bytes: &[u8]) -> (u64, Vec<u64>) {
        let (mut reader, _) = Reader::new(bytes).unwrap();
        let header_end = reader.offset();
        let mut ends = Vec::new();
        while reader.next_frame().unwrap().is_some() {
            ends.push(reader.offset());
        }
        (header_end, ends)
    }

    fn header_error(bytes: &[u8]) -> RecordError {
        match Reader::new(bytes) {
            Ok(_) => panic!("the header was accepted"),
            Err(err) => err,
        }
    }

    /// The error after the frames, which must be those of `frames()` up to `count`.
    fn frame_error(bytes: &[u8], count: usize) -> RecordError {
        let (_, frames, err) = read_all(bytes).unwrap();
        assert_eq!(frames, self::frames()[..count]);
        err.expect("an error after the frames")
    }

    fn patched(at: usize, with: &[u8]) -> Vec<u8> {
        let mut bytes = recording();
        bytes[at..at + with.len()].copy_from_slice(with);
        bytes
    }

    #[test]
    fn every_frame_kind_and_the_header_round_trip() {
        let (header, frames, err) = read_all(&recording()).unwrap();
        assert_eq!(header, self::header());
        assert_eq!(frames, self::frames());
        assert!(err.is_none(), "{err:?}");
    }

    #[test]
    fn the_header_is_laid_out_as_documented() {
        let bytes = recording();
        assert_eq!(&bytes[0..8], b"TCPTRACE");
        assert_eq!(&bytes[8..10], &3u16.to_le_bytes());
        assert_eq!(&bytes[10..12], &ABI_VERSION.to_le_bytes());
        assert_eq!(&bytes[12..16], &104u32.to_le_bytes());
        assert_eq!(&bytes[16..32], &1_700_000_000_123_456_789i128.to_le_bytes());
        assert_eq!(&bytes[32..40], &(-7i64 * 3600).to_le_bytes());
        assert_eq!(&bytes[40..44], &4026531840u32.to_le_bytes());
        assert_eq!(bytes[44], 1);
        assert_eq!(&bytes[45..49], &16u32.to_le_bytes());
        assert_eq!(&bytes[49..65], b"6.8.0-45-generic");
        // The first frame: counters with TCP counters, then a 104-byte event.
        let (header_end, ends) = frame_ends(&bytes);
        let first = header_end as usize;
        assert_eq!(bytes[first], 3);
        assert_eq!(&bytes[first + 1..first + 5], &121u32.to_le_bytes());
        assert_eq!(bytes[first + 5 + 40], 1);
        let second = ends[0] as usize;
        assert_eq!(&bytes[second..second + 5], &[1, 104, 0, 0, 0]);
        assert_eq!(ends[1] - ends[0], 5 + 104);
        // A seed frame: cookie, pid, holders, comm.
        let seed = ends[8] as usize;
        assert_eq!(&bytes[seed..seed + 5], &[5, 32, 0, 0, 0]);
        assert_eq!(&bytes[seed + 5..seed + 13], &7u64.to_le_bytes());
        assert_eq!(&bytes[seed + 13..seed + 17], &4242u32.to_le_bytes());
        assert_eq!(&bytes[seed + 17..seed + 21], &1u32.to_le_bytes());
        assert_eq!(&bytes[seed + 21..seed + 37], b"python3\0\0\0\0\0\0\0\0\0");
        // The reasons frame: a count, then each name by its length.
        let reasons = ends[10] as usize;
        let payload = b"\x03\x00\x0d\x00not_specified\x00\x00\x15\x00tcp_keepalive_timeout";
        assert_eq!(bytes[reasons], 6);
        assert_eq!(
            &bytes[reasons + 1..reasons + 5],
            &(payload.len() as u32).to_le_bytes()
        );
        assert_eq!(&bytes[reasons + 5..reasons + 5 + payload.len()], payload);
    }

    /// A recording of format version 2, as tcptrace wrote them with event ABI version 2:
    /// 96-byte events, no reasons frame.
    fn recording_v2(events: &[&[u8]]) -> Vec<u8> {
        let mut bytes = recording();
        let header_end = frame_ends(&bytes).0 as usize;
        bytes.truncate(header_end);
        bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
        bytes[10..12].copy_from_slice(&2u16.to_le_bytes());
        bytes[12..16].copy_from_slice(&96u32.to_le_bytes());
        for event in events {
            bytes.push(1);
            bytes.extend_from_slice(&(event.len() as u32).to_le_bytes());
            bytes.extend_from_slice(event);
        }
        bytes.extend_from_slice(&time_frame(tag::END, 9));
        bytes
    }

    #[test]
    fn events_of_format_2_are_widened_with_nothing_known_of_their_closes() {
        use crate::core::{decode::decode, event::Record, state::TcpState};
        let mut close = sample();
        close.oldstate = 1;
        close.newstate = 7;
        let full = encode(&close);
        // Garbage past 96 bytes in the buffer must not leak into a widened event.
        let long = [0xee; 200];
        let bytes = recording_v2(&[&long, &full[..96], &full[..40]]);
        let (header, frames, err) = read_all(&bytes).unwrap();
        assert_eq!(header, self::header());
        assert!(err.is_none(), "{err:?}");
        let Owned::Event(widened) = &frames[1] else {
            panic!("{frames:?}")
        };
        assert_eq!(widened.len(), 104);
        assert_eq!(&widened[..96], &full[..96]);
        assert_eq!(&widened[96..], &[0; 8]);
        let Ok(Record::Transition(t)) = decode(widened) else {
            panic!("not a transition")
        };
        assert_eq!(
            (t.from, t.to, t.close),
            (TcpState::Established, TcpState::Close, None)
        );
        // Records of other lengths are kept as they were (and rejected by decode if short).
        assert!(matches!(&frames[0], Owned::Event(b) if b.len() == 200));
        assert!(matches!(&frames[2], Owned::Event(b) if b.len() == 40));
    }

    #[test]
    fn a_reasons_frame_that_overruns_or_is_not_utf8_is_corruption() {
        for payload in [
            &b"\x01\x00\x05\x00abc"[..],
            b"\x01\x00\x01\x00\xff",
            b"\x00\x00extra",
            b"\x01",
        ] {
            let mut bytes = recording();
            let header_end = frame_ends(&bytes).0 as usize;
            bytes.truncate(header_end);
            bytes.push(6);
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(payload);
            let (_, frames, err) = read_all(&bytes).unwrap();
            assert!(frames.is_empty());
            let err = err.expect("an error");
            assert!(
                matches!(
                    err,
                    RecordError::Corrupt {
                        problem: Corruption::BadReasons | Corruption::BadLength { .. },
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn an_empty_file_is_a_header_cut_at_byte_0() {
        let err = header_error(&[]);
        assert!(matches!(err, RecordError::TruncatedHeader { offset: 0 }));
        assert_eq!(
            err.to_string(),
            "recording truncated at byte 0, in its header: tcptrace record stopped before it \
             began recording; record again"
        );
    }

    #[test]
    fn other_files_are_not_recordings() {
        for bytes in [&b"GIF89a, and more"[..], b"TCPTRACX", b"x", b"TCP\n"] {
            let err = header_error(bytes);
            assert!(matches!(err, RecordError::NotARecord), "{err:?}");
        }
        assert_eq!(
            header_error(b"\x7fELF").to_string(),
            "not a tcptrace recording (no `TCPTRACE` at byte 0): make one with `tcptrace record \
             --output FILE`"
        );
    }

    #[test]
    fn a_newer_format_asks_for_an_upgrade_whatever_follows() {
        let mut bytes = b"TCPTRACE".to_vec();
        bytes.extend_from_slice(&4u16.to_le_bytes());
        let err = header_error(&bytes);
        assert!(matches!(
            err,
            RecordError::NewerFormat {
                found: 4,
                supported: 3
            }
        ));
        assert_eq!(
            err.to_string(),
            "format version 4 is newer than this tcptrace reads (3): upgrade tcptrace"
        );
        let err = header_error(&patched(8, &0u16.to_le_bytes()));
        assert!(matches!(
            err,
            RecordError::Corrupt {
                offset: 8,
                problem: Corruption::FormatVersionZero
            }
        ));
    }

    #[test]
    fn another_event_abi_is_refused_naming_the_recorder() {
        let err = header_error(&patched(10, &(ABI_VERSION + 1).to_le_bytes()));
        let RecordError::AbiMismatch {
            found,
            supported,
            recorder,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((*found, *supported), (ABI_VERSION + 1, ABI_VERSION));
        assert_eq!(recorder, "0.1.0");
        assert_eq!(
            err.to_string(),
            format!(
                "the events were recorded by tcptrace 0.1.0 with event ABI version 4, this \
                 tcptrace {} decodes version 3: replay the file with tcptrace 0.1.0",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn another_event_size_under_the_same_abi_is_corruption() {
        let err = header_error(&patched(12, &88u32.to_le_bytes()));
        assert!(matches!(
            err,
            RecordError::Corrupt {
                offset: 12,
                problem: Corruption::EventSize {
                    found: 88,
                    expected: 104,
                    abi: 3
                }
            }
        ));
        assert_eq!(
            err.to_string(),
            "recording corrupt at byte 12: 88-byte events, where event ABI version 3 has 104-byte \
             ones"
        );
        // Version 2's events keep their own size.
        let mut v2 = patched(10, &2u16.to_le_bytes());
        v2[12..16].copy_from_slice(&104u32.to_le_bytes());
        assert!(matches!(
            header_error(&v2),
            RecordError::Corrupt {
                problem: Corruption::EventSize {
                    found: 104,
                    expected: 96,
                    abi: 2
                },
                ..
            }
        ));
    }

    #[test]
    fn a_truncated_header_is_reported_where_the_data_ends() {
        let bytes = recording();
        for cut in [3, 8, 9, 30, 45, 47, 60] {
            let err = header_error(&bytes[..cut]);
            assert!(
                matches!(err, RecordError::TruncatedHeader { offset } if offset == cut as u64),
                "{cut}: {err:?}"
            );
        }
    }

    #[test]
    fn bad_flags_and_text_in_the_header_are_corruption() {
        let err = header_error(&patched(44, &[2]));
        assert_eq!(
            err.to_string(),
            "recording corrupt at byte 44: the cause tracepoints flag is 2, neither 0 nor 1"
        );
        // The hostname's length is at 65, its bytes from 69.
        let err = header_error(&patched(70, &[0xff]));
        assert!(matches!(
            err,
            RecordError::Corrupt {
                offset: 69,
                problem: Corruption::NotUtf8 { field: "hostname" }
            }
        ));
        let err = header_error(&patched(65, &u32::MAX.to_le_bytes()));
        assert_eq!(
            err.to_string(),
            "recording corrupt at byte 65: the hostname is 4294967295 bytes long, over the limit \
             of 65536"
        );
    }

    #[test]
    fn a_frame_cut_short_comes_after_the_frames_before_it() {
        let bytes = recording();
        let (_, ends) = frame_ends(&bytes);
        // Two bytes into the payload of the fourth frame, the 3-byte event.
        let cut = ends[2] as usize + FRAME_HEAD + 2;
        let err = frame_error(&bytes[..cut], 3);
        assert!(matches!(
            err,
            RecordError::TruncatedFrame { offset, frame } if offset == cut as u64 && frame == ends[2]
        ));
        assert_eq!(
            err.to_string(),
            format!(
                "recording truncated at byte {cut}, inside the frame that starts at byte {}: \
                 tcptrace record was cut short (killed, or out of disk space) or is still \
                 writing; what precedes is intact",
                ends[2]
            )
        );
    }

    #[test]
    fn a_missing_end_is_truncation_after_every_frame() {
        let bytes = write(&frames(), false);
        let err = frame_error(&bytes, frames().len() - 1);
        assert!(
            matches!(err, RecordError::MissingEnd { offset } if offset == bytes.len() as u64),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "recording truncated at byte {}, where it ends without an end frame: tcptrace \
                 record was cut short (killed, or out of disk space) or is still writing; what \
                 precedes is intact",
                bytes.len()
            )
        );
    }

    #[test]
    fn an_unknown_tag_is_corruption_at_its_frame() {
        let bytes = recording();
        let (_, ends) = frame_ends(&bytes);
        for tag in [0, 8, 0xff] {
            let mut bytes = bytes.clone();
            bytes[ends[1] as usize] = tag;
            let err = frame_error(&bytes, 2);
            assert!(matches!(
                err,
                RecordError::Corrupt { offset, problem: Corruption::UnknownTag(t) }
                    if offset == ends[1] && t == tag
            ));
        }
        let mut bytes = bytes;
        bytes[ends[1] as usize] = 9;
        assert_eq!(
            frame_error(&bytes, 2).to_string(),
            format!(
                "recording corrupt at byte {}: a frame of unknown kind 9",
                ends[1]
            )
        );
    }

    #[test]
    fn an_oversized_length_is_corruption_not_an_allocation() {
        let bytes = recording();
        let (_, ends) = frame_ends(&bytes);
        let at = ends[0] as usize;
        let mut bytes = bytes;
        bytes[at + 1..at + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = frame_error(&bytes, 1);
        assert_eq!(
            err.to_string(),
            format!(
                "recording corrupt at byte {at}: a frame of 4294967295 bytes, over the limit of 65536"
            )
        );
        // At the limit, a frame is read (and here cut short).
        bytes[at + 1..at + 5].copy_from_slice(&(MAX_PAYLOAD as u32).to_le_bytes());
        bytes.truncate(at + FRAME_HEAD + 10);
        assert!(matches!(
            frame_error(&bytes, 1),
            RecordError::TruncatedFrame { .. }
        ));
    }

    #[test]
    fn fixed_frames_of_another_length_or_a_bad_flag_are_corruption() {
        let bytes = recording();
        let (_, ends) = frame_ends(&bytes);
        // The batch frame after the 3-byte event.
        let batch = ends[3] as usize;
        let mut bad = bytes.clone();
        bad[batch + 1] = 7;
        assert_eq!(
            frame_error(&bad, 4).to_string(),
            format!("recording corrupt at byte {batch}: a batch frame of 7 bytes, where one has 8")
        );
        // The counters frame without TCP counters, claiming to have them.
        let counters = ends[5] as usize;
        let flag_at = counters + FRAME_HEAD + 40;
        let mut bad = bytes.clone();
        bad[flag_at] = 1;
        assert_eq!(
            frame_error(&bad, 6).to_string(),
            format!(
                "recording corrupt at byte {counters}: a counters frame of 41 bytes, where one \
                 has 121 with TCP counters"
            )
        );
        let mut bad = bytes.clone();
        bad[flag_at] = 7;
        assert_eq!(
            frame_error(&bad, 6).to_string(),
            format!(
                "recording corrupt at byte {flag_at}: the TCP counters flag is 7, neither 0 nor 1"
            )
        );
        let mut bad = bytes;
        bad[counters + 1] = 42;
        assert!(matches!(
            frame_error(&bad, 6),
            RecordError::Corrupt {
                problem: Corruption::BadLength {
                    kind: "counters",
                    len: 42,
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn a_seed_frame_of_another_length_is_corruption() {
        let mut bytes = recording();
        let (_, ends) = frame_ends(&bytes);
        let seed = ends[8] as usize;
        bytes[seed + 1] = 31;
        assert_eq!(
            frame_error(&bytes, 9).to_string(),
            format!("recording corrupt at byte {seed}: a seed frame of 31 bytes, where one has 32")
        );
    }

    #[test]
    fn data_after_the_end_frame_is_corruption() {
        let mut bytes = recording();
        let end = bytes.len();
        bytes.extend_from_slice(b"TCPTRACE");
        let err = frame_error(&bytes, frames().len());
        assert!(matches!(
            err,
            RecordError::Corrupt { offset, problem: Corruption::AfterEnd } if offset == end as u64
        ));
    }

    /// Cut anywhere, a recording yields the frames wholly before the cut, then truncation at
    /// the cut: never a panic, never a frame that was not written, never another error.
    #[test]
    fn cutting_a_recording_anywhere_yields_a_prefix_then_truncation() {
        let bytes = recording();
        let all = frames();
        let (header_end, ends) = frame_ends(&bytes);
        for cut in 0..=bytes.len() {
            let at = cut as u64;
            if at < header_end {
                let err = header_error(&bytes[..cut]);
                assert!(
                    matches!(err, RecordError::TruncatedHeader { offset } if offset == at),
                    "{cut}: {err:?}"
                );
                continue;
            }
            let (_, frames, err) = read_all(&bytes[..cut]).unwrap();
            let complete = ends.iter().filter(|&&end| end <= at).count();
            assert_eq!(frames, all[..complete], "cut at {cut}");
            let start = if complete == 0 {
                header_end
            } else {
                ends[complete - 1]
            };
            match err {
                None => assert_eq!(cut, bytes.len()),
                Some(RecordError::MissingEnd { offset }) => {
                    assert_eq!((offset, start), (at, at), "cut at {cut}")
                }
                Some(RecordError::TruncatedFrame { offset, frame }) => {
                    assert_eq!((offset, frame), (at, start), "cut at {cut}")
                }
                Some(err) => panic!("cut at {cut}: {err:?}"),
            }
        }
    }

    /// A reader that hands out one byte per call and is interrupted between them, as pipes
    /// and slow disks may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let Some((&first, rest)) = self.bytes.split_first() else {
                return Ok(0);
            };
            buf[0] = first;
            self.bytes = rest;
            Ok(1)
        }
    }

    #[test]
    fn short_and_interrupted_reads_are_resumed() {
        let bytes = recording();
        let (mut reader, header) = Reader::new(Trickle {
            bytes: &bytes,
            interrupt: false,
        })
        .unwrap();
        assert_eq!(header, self::header());
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            frames.push(Owned::from(frame));
        }
        assert_eq!(frames, self::frames());
    }

    /// A reader that fails after `good` bytes.
    struct Failing<'a> {
        good: &'a [u8],
    }

    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let n = buf.len().min(self.good.len());
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good = &self.good[n..];
            Ok(n)
        }
    }

    #[test]
    fn io_errors_name_their_offset_and_keep_their_cause() {
        let bytes = recording();
        let (_, ends) = frame_ends(&bytes);
        let cut = ends[1] as usize + 2;
        let (mut reader, _) = Reader::new(Failing {
            good: &bytes[..cut],
        })
        .unwrap();
        assert!(reader.next_frame().unwrap().is_some());
        assert!(reader.next_frame().unwrap().is_some());
        let err = reader.next_frame().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read the recording at byte {cut}")
        );
        let cause = std::error::Error::source(&err).expect("the I/O error");
        assert_eq!(cause.to_string(), "Input/output error (os error 5)");
        assert!(reader.next_frame().unwrap().is_none());
    }

    #[test]
    fn the_writer_refuses_what_the_reader_would_call_corrupt() {
        let mut writer = Writer::new(Vec::new(), &header()).unwrap();
        let err = writer.event(&vec![0; MAX_PAYLOAD + 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "the event is 65537 bytes long, over the record-file limit of 65536"
        );
        writer.event(&vec![0; MAX_PAYLOAD]).unwrap();
        let long = Header {
            filter: "x".repeat(MAX_PAYLOAD + 1),
            ..header()
        };
        assert!(Writer::new(Vec::new(), &long).is_err());
    }

    #[test]
    fn every_error_is_one_line() {
        let errors = [
            header_error(&[]),
            header_error(b"nope"),
            header_error(&patched(8, &9u16.to_le_bytes())),
            header_error(&patched(10, &9u16.to_le_bytes())),
            header_error(&patched(44, &[3])),
            frame_error(&write(&frames(), false), frames().len() - 1),
            RecordError::TruncatedFrame {
                offset: 100,
                frame: 90,
            },
            RecordError::Corrupt {
                offset: 1,
                problem: Corruption::AfterEnd,
            },
            RecordError::Io {
                offset: 7,
                source: io::ErrorKind::UnexpectedEof.into(),
            },
        ];
        for err in errors {
            let message = err.to_string();
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }
}
