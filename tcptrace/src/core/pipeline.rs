//! The pure pipeline every consumer of the stream shares — the live loop, the replay of a
//! recorded file and the benchmarks: raw ring-buffer records and the current time in, typed
//! records out, in kernel order.
//!
//! ```text
//! bytes ─▶ decode ─▶ peer fill ─▶ per-socket table ─▶ filter ─▶ Output
//! ```
//!
//! The peer fill holds a transition whose ports the kernel did not know yet until its socket's
//! next one (records behind it wait, so order holds); the table then sees every transition of
//! a socket in order and fills in its time in the old state and its owner; the filter drops
//! what the user did not ask for, by whole sockets for the owner (`--pid`, `--comm`): a
//! socket selected once keeps all its later transitions. No clock is read here: the caller
//! says what time it is.

use crate::core::{
    decode::decode,
    event::{PacketDrop, Record, Signal, Transition},
    filter::EventFilter,
    losses::{KernelCounters, Losses},
    peer_fill::PeerFill,
    seed::SocketSeed,
    sockets::{DEFAULT_MAX_SOCKETS, Entry, Follow, SocketTable, TableStats},
};

/// How long a transition waits for its socket's next one to fill in a zero port.
pub const FILL_HOLD_NS: u64 = 250_000_000;

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub filter: EventFilter,
    /// Bound of the per-socket table (`--max-sockets`).
    pub max_sockets: usize,
    pub fill_hold_ns: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            filter: EventFilter::default(),
            max_sockets: DEFAULT_MAX_SOCKETS,
            fill_hold_ns: FILL_HOLD_NS,
        }
    }
}

/// What comes out, in kernel order.
pub enum Output<'a, X> {
    /// A complete transition that passed the filter, with its socket's entry (also at its
    /// →CLOSE, before the entry goes).
    Transition(&'a Transition, &'a mut Entry<X>),
    /// A reset or retransmission, with the entry of its socket when the table follows it. Not
    /// filtered: the socket it concerns decides, and only the consumer knows which it shows.
    Signal(&'a Signal, Option<&'a mut Entry<X>>),
    /// A packet the kernel dropped for a request socket's fate or a closed port, that passed
    /// the filter. No socket of the table is its: request sockets are never tracked.
    Drop(&'a PacketDrop),
}

pub struct Pipeline<X> {
    fill: PeerFill,
    table: SocketTable<X>,
    filter: EventFilter,
    invalid_records: u64,
    transitions: u64,
}

impl<X: Default> Pipeline<X> {
    pub fn new(config: PipelineConfig) -> Self {
        Self {
            fill: PeerFill::new(config.fill_hold_ns),
            table: SocketTable::new(config.max_sockets),
            filter: config.filter,
            invalid_records: 0,
            transitions: 0,
        }
    }

    /// Takes one raw record as the probe wrote it; an invalid one is counted, not fatal.
    pub fn push_bytes(&mut self, bytes: &[u8], out: &mut impl FnMut(Output<'_, X>)) {
        match decode(bytes) {
            Ok(record) => self.push(record, out),
            Err(err) => {
                self.invalid_records += 1;
                log::debug!("invalid record: {err}");
            }
        }
    }

    /// Takes one decoded record.
    pub fn push(&mut self, record: Record, out: &mut impl FnMut(Output<'_, X>)) {
        let (fill, mut follow) = self.fill_and_follow(out);
        fill.push(record, &mut follow);
    }

    /// Kernel time is `now_ns`: hands out what waited for a fill longer than the hold time.
    pub fn tick(&mut self, now_ns: u64, out: &mut impl FnMut(Output<'_, X>)) {
        self.release(out, |fill, mut ready| fill.expire(now_ns, &mut ready));
    }

    /// The stream ended: hands out everything still held, filled or not.
    pub fn flush(&mut self, out: &mut impl FnMut(Output<'_, X>)) {
        self.release(out, |fill, mut ready| fill.flush(&mut ready));
    }

    /// Lets the peer fill release what it holds (once per wake-up, not per record: the
    /// dynamic call costs nothing here, unlike in [`Self::push`]).
    fn release(
        &mut self,
        out: &mut impl FnMut(Output<'_, X>),
        how: impl FnOnce(&mut PeerFill, &mut dyn FnMut(Record)),
    ) {
        let (fill, mut follow) = self.fill_and_follow(out);
        how(fill, &mut follow);
    }

    /// The peer fill, apart from what follows the records it releases through the table to
    /// `out`: borrowed separately, so that the fill can hand its records on as it goes.
    fn fill_and_follow<'a>(
        &'a mut self,
        out: &'a mut impl FnMut(Output<'_, X>),
    ) -> (&'a mut PeerFill, impl FnMut(Record) + 'a) {
        let Self {
            fill,
            table,
            filter,
            transitions,
            ..
        } = self;
        let follow = move |ready| follow(table, filter, transitions, ready, out);
        (fill, follow)
    }

    /// Transitions handed out so far.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    pub fn table(&self) -> TableStats {
        self.table.stats()
    }

    /// Takes the owner of a socket that predates tracing, found by the start-up census.
    pub fn seed(&mut self, seed: SocketSeed) {
        self.table.seed(seed);
    }

    /// Every loss so far, given the kernel's side of it.
    pub fn losses(&self, kernel: KernelCounters) -> Losses {
        Losses {
            kernel,
            invalid_records: self.invalid_records,
            sockets_forgotten: self.table.stats().forgotten,
        }
    }
}

fn follow<X: Default>(
    table: &mut SocketTable<X>,
    filter: &EventFilter,
    transitions: &mut u64,
    record: Record,
    out: &mut impl FnMut(Output<'_, X>),
) {
    match record {
        Record::Transition(mut t) => table.apply(&mut t, |t, entry| {
            // Ports that fail here were unknown to the kernel's filter: a connecting socket's
            // local port, learned only after CLOSE→SYN_SENT. The kernel drops its later
            // transitions, so its →CLOSE would never free its entry.
            if !filter.ports_match(t) {
                return Follow::Forget;
            }
            // `--pid` and `--comm` select whole sockets: from the first transition whose owner
            // passes, every later one of the socket is shown, whoever owns it then.
            if !entry.selected() && filter.owner_matches(t) {
                entry.select();
            }
            if entry.selected() && filter.socket_matches(t) {
                *transitions += 1;
                out(Output::Transition(t, entry));
            }
            Follow::Keep
        }),
        Record::Signal(signal) => out(Output::Signal(&signal, table.get_mut(signal.sk))),
        Record::Drop(drop) => {
            if filter.drop_matches(&drop) {
                out(Output::Drop(&drop));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tcptrace_ebpf::{Event, flags, kind};

    use super::*;
    use crate::core::{decode::encode, state::TcpState};

    fn raw(sk: u64, ts_ns: u64, old: u16, new: u16, sport: u16, dport: u16) -> Vec<u8> {
        raw_owned(sk, ts_ns, (old, new), (sport, dport), Some((7, "curl")))
    }

    /// A transition of socket `sk` on loopback, owned as the kernel side knew it (`None`: it
    /// ran in softirq).
    fn raw_owned(
        sk: u64,
        ts_ns: u64,
        (old, new): (u16, u16),
        (sport, dport): (u16, u16),
        owner: Option<(u32, &str)>,
    ) -> Vec<u8> {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut comm = [0u8; 16];
        let (tgid, name) = owner.unwrap_or((0, ""));
        comm[..name.len()].copy_from_slice(name.as_bytes());
        encode(&Event {
            ts_ns,
            skaddr: sk,
            saddr: addr,
            daddr: addr,
            comm,
            tgid,
            netns: 1,
            sport,
            dport,
            family: 2,
            kind: kind::TRANSITION,
            flags: if owner.is_some() {
                0
            } else {
                flags::OWNER_UNKNOWN
            },
            oldstate: old,
            newstate: new,
            ..Event::empty()
        })
        .to_vec()
    }

    fn run(pipeline: &mut Pipeline<()>, records: &[Vec<u8>]) -> Vec<Transition> {
        let mut out = Vec::new();
        for bytes in records {
            pipeline.push_bytes(bytes, &mut |o| {
                if let Output::Transition(t, _) = o {
                    out.push(t.clone());
                }
            });
        }
        pipeline.flush(&mut |o| {
            if let Output::Transition(t, _) = o {
                out.push(t.clone());
            }
        });
        out
    }

    #[test]
    fn fills_the_port_then_times_then_filters() {
        let mut pipeline = Pipeline::new(PipelineConfig {
            filter: EventFilter {
                lports: vec![40000],
                ..EventFilter::default()
            },
            ..PipelineConfig::default()
        });
        let out = run(
            &mut pipeline,
            &[
                // The connect's local port is 0 at CLOSE→SYN_SENT, filled from the next one.
                raw(1, 100, 7, 2, 0, 80),
                raw(1, 150, 2, 1, 40000, 80),
                // Another socket, on a port the filter drops.
                raw(2, 160, 7, 2, 0, 80),
                raw(2, 170, 2, 1, 41000, 80),
                b"short".to_vec(),
            ],
        );
        let got: Vec<_> = out
            .iter()
            .map(|t| (t.sk, t.lport, t.to, t.time_in_from_ns))
            .collect();
        assert_eq!(
            got,
            [
                (1, 40000, TcpState::SynSent, None),
                (1, 40000, TcpState::Established, Some(50)),
            ]
        );
        assert_eq!(pipeline.transitions(), 2);
        // The filtered socket is not followed; the short record is counted.
        assert_eq!(pipeline.table().tracked, 1);
        assert_eq!(
            pipeline.losses(KernelCounters::default()).invalid_records,
            1
        );
    }

    /// An accepted child that inherits its listener's owner (10, the master) and is then
    /// closed by the worker that accepted it (20); then a new socket at its address, owned by
    /// another process.
    fn handed_over() -> Vec<Vec<u8>> {
        let master = Some((10, "master"));
        let worker = Some((20, "worker"));
        let other = Some((30, "other"));
        let ports = (80, 40000);
        vec![
            raw_owned(1, 100, (10, 3), ports, master),
            raw_owned(1, 110, (3, 1), ports, None),
            raw_owned(1, 200, (1, 8), ports, None),
            raw_owned(1, 300, (8, 9), ports, worker),
            raw_owned(1, 310, (9, 7), ports, None),
            raw_owned(1, 400, (7, 2), (0, 81), other),
            raw_owned(1, 410, (2, 1), (50000, 81), None),
        ]
    }

    fn shown(filter: EventFilter) -> Vec<(u64, TcpState, Option<u32>)> {
        let mut pipeline = Pipeline::new(PipelineConfig {
            filter,
            ..PipelineConfig::default()
        });
        run(&mut pipeline, &handed_over())
            .iter()
            .map(|t| (t.ts_ns, t.to, t.pid))
            .collect()
    }

    #[test]
    fn the_owner_filter_selects_whole_sockets() {
        use TcpState::*;
        // Selected at its first transition: every later one is shown, the worker's included.
        assert_eq!(
            shown(EventFilter {
                pid: Some(10),
                ..EventFilter::default()
            }),
            [
                (100, SynRecv, Some(10)),
                (110, Established, Some(10)),
                (200, CloseWait, Some(10)),
                (300, LastAck, Some(20)),
                (310, Close, Some(20)),
            ]
        );
        // Selected from the worker's close on; the next socket at the address starts afresh.
        let by_worker = [(300, LastAck, Some(20)), (310, Close, Some(20))];
        assert_eq!(
            shown(EventFilter {
                pid: Some(20),
                ..EventFilter::default()
            }),
            by_worker
        );
        assert_eq!(
            shown(EventFilter {
                comm: Some("worker".into()),
                ..EventFilter::default()
            }),
            by_worker
        );
        // The other filters still apply to a selected socket's transitions.
        assert_eq!(
            shown(EventFilter {
                pid: Some(10),
                netns: Some(2),
                ..EventFilter::default()
            }),
            []
        );
        assert_eq!(shown(EventFilter::default()).len(), 7);
    }

    #[test]
    fn a_held_transition_is_released_by_time() {
        let mut pipeline: Pipeline<()> = Pipeline::new(PipelineConfig {
            fill_hold_ns: 100,
            ..PipelineConfig::default()
        });
        let mut seen = 0;
        pipeline.push_bytes(&raw(1, 10, 7, 2, 0, 80), &mut |_| seen += 1);
        assert_eq!(seen, 0);
        pipeline.tick(109, &mut |_| seen += 1);
        assert_eq!(seen, 0);
        pipeline.tick(110, &mut |_| seen += 1);
        assert_eq!(seen, 1);
    }
}
