//! Fills in ports and addresses that the kernel reports as zero at a socket's first transition,
//! from that socket's next transition, while keeping the output in kernel order.
//!
//! Two cases: a connecting socket enters SYN_SENT before its local port is chosen
//! (`tcp_v4_connect` sets the state, then calls `inet_hash_connect`), and before about Linux 6.15
//! a passively opened child's LISTEN→SYN_RECV carried a zero peer address and port.
//!
//! Such a transition is held until the socket's next one arrives (usually within microseconds,
//! in the same batch) or until it is `hold_ns` old; records behind it wait, so kernel order
//! holds. Order matters beyond output: a reset must reach the aggregator after the transitions
//! before it and before the close it causes, even when the socket's address is reused.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use crate::core::{
    event::{Record, Transition},
    state::{Side, TcpState},
};

pub struct PeerFill {
    queue: VecDeque<Slot>,
    /// Socket → sequence number of its held transition.
    waiting: HashMap<u64, u64>,
    /// Sequence number of `queue[0]`.
    front_seq: u64,
    hold_ns: u64,
}

struct Slot {
    record: Record,
    ready: bool,
}

impl Slot {
    fn ts_ns(&self) -> u64 {
        match &self.record {
            Record::Transition(t) => t.ts_ns,
            Record::Signal(s) => s.ts_ns,
            Record::Drop(d) => d.ts_ns,
        }
    }
}

/// Whether a transition should know its peer: listeners have none.
fn expects_peer(t: &Transition) -> bool {
    !(t.to == TcpState::Listen || (t.from == TcpState::Listen && t.to == TcpState::Close))
}

fn needs_fill(t: &Transition) -> bool {
    t.lport == 0 || (expects_peer(t) && t.rport == 0)
}

fn unspecified(addr: &IpAddr) -> bool {
    addr.is_unspecified()
}

impl PeerFill {
    pub fn new(hold_ns: u64) -> Self {
        Self {
            queue: VecDeque::new(),
            waiting: HashMap::new(),
            front_seq: 0,
            hold_ns,
        }
    }

    /// Transitions held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.queue.len()
    }

    /// Takes one record; hands every record that is ready, in order, to `out`.
    pub fn push(&mut self, record: Record, out: &mut impl FnMut(Record)) {
        let t = match record {
            Record::Transition(t) => t,
            // Signals and drops have nothing to fill: they keep their place in the order.
            signal @ (Record::Signal(_) | Record::Drop(_)) if self.queue.is_empty() => {
                out(signal);
                return;
            }
            signal @ (Record::Signal(_) | Record::Drop(_)) => {
                self.queue.push_back(Slot {
                    record: signal,
                    ready: true,
                });
                self.release(out);
                return;
            }
        };
        // Nothing held (the common case): no lookup.
        let held_seq = if self.waiting.is_empty() {
            None
        } else {
            self.waiting.remove(&t.sk)
        };
        if let Some(seq) = held_seq {
            let slot = &mut self.queue[(seq - self.front_seq) as usize];
            let Record::Transition(held) = &mut slot.record else {
                unreachable!("only transitions wait")
            };
            slot.ready = true;
            // Only the same socket's next transition may fill in: with a port filter the
            // kernel drops that one, and the address may meanwhile belong to a new socket
            // (a birth), whose ports are not the held socket's.
            let continues = t.from == held.to && Side::of_birth(t.from, t.to).is_none();
            if continues {
                if held.lport == 0 && t.lport != 0 {
                    held.lport = t.lport;
                    if unspecified(&held.laddr) {
                        held.laddr = t.laddr;
                    }
                }
                if held.rport == 0 && t.rport != 0 && expects_peer(held) {
                    held.rport = t.rport;
                    if unspecified(&held.raddr) {
                        held.raddr = t.raddr;
                    }
                }
            }
        }
        // After →CLOSE there is no next transition to learn from.
        let hold = needs_fill(&t) && t.to != TcpState::Close;
        if hold {
            self.waiting
                .insert(t.sk, self.front_seq + self.queue.len() as u64);
        }
        if !hold && self.queue.is_empty() {
            // Nothing waits ahead of it: straight through, no queueing.
            out(Record::Transition(t));
            return;
        }
        self.queue.push_back(Slot {
            record: Record::Transition(t),
            ready: !hold,
        });
        self.release(out);
    }

    /// Gives up on transitions held for `hold_ns` or more at kernel time `now_ns`.
    pub fn expire(&mut self, now_ns: u64, out: &mut impl FnMut(Record)) {
        for slot in self.queue.iter_mut().filter(|slot| !slot.ready) {
            if now_ns.saturating_sub(slot.ts_ns()) >= self.hold_ns {
                slot.ready = true;
                if let Record::Transition(t) = &slot.record {
                    self.waiting.remove(&t.sk);
                }
            }
        }
        self.release(out);
    }

    /// Hands out everything, filled or not: at the end of tracing.
    pub fn flush(&mut self, out: &mut impl FnMut(Record)) {
        self.waiting.clear();
        for slot in &mut self.queue {
            slot.ready = true;
        }
        self.release(out);
    }

    fn release(&mut self, out: &mut impl FnMut(Record)) {
        while self.queue.front().is_some_and(|slot| slot.ready) {
            let slot = self.queue.pop_front().expect("front exists");
            self.front_seq += 1;
            out(slot.record);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn t(sk: u64, ts: u64, from: TcpState, to: TcpState, lport: u16, rport: u16) -> Transition {
        let addr = |port: u16| {
            if port == 0 {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
        };
        Transition {
            pid: Some(1),
            comm: "x".into(),
            laddr: addr(lport),
            lport,
            raddr: addr(rport),
            rport,
            ..Transition::fixture(sk, ts, from, to)
        }
    }

    fn transitions(records: Vec<Record>) -> Vec<Transition> {
        records
            .into_iter()
            .filter_map(|r| match r {
                Record::Transition(t) => Some(t),
                Record::Signal(_) | Record::Drop(_) => None,
            })
            .collect()
    }

    fn run(fill: &mut PeerFill, items: Vec<Transition>) -> Vec<Transition> {
        let mut out = Vec::new();
        for item in items {
            fill.push(Record::Transition(item), &mut |r| out.push(r));
        }
        transitions(out)
    }

    use TcpState::*;

    #[test]
    fn connecting_socket_gets_its_local_port_from_the_next_transition_and_order_holds() {
        let mut fill = PeerFill::new(1_000);
        let out = run(
            &mut fill,
            vec![
                t(1, 10, Close, SynSent, 0, 80),
                t(2, 11, Established, FinWait1, 5000, 6000),
                t(1, 12, SynSent, Established, 40000, 80),
            ],
        );
        let got: Vec<_> = out.iter().map(|t| (t.sk, t.lport, t.ts_ns)).collect();
        assert_eq!(got, [(1, 40000, 10), (2, 5000, 11), (1, 40000, 12)]);
        assert_eq!(out[0].laddr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(fill.held(), 0);
    }

    #[test]
    fn child_with_zero_peer_is_filled() {
        let mut fill = PeerFill::new(1_000);
        let out = run(
            &mut fill,
            vec![
                t(7, 1, Listen, SynRecv, 80, 0),
                t(7, 2, SynRecv, Established, 80, 51000),
            ],
        );
        assert_eq!(
            (out[0].rport, out[0].raddr),
            (51000, IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn listeners_are_not_held() {
        let mut fill = PeerFill::new(1_000);
        let out = run(
            &mut fill,
            vec![t(3, 1, Close, Listen, 80, 0), t(3, 2, Listen, Close, 80, 0)],
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn held_transitions_expire_after_the_hold_time() {
        let mut fill = PeerFill::new(100);
        let mut out = run(&mut fill, vec![t(1, 10, Close, SynSent, 0, 80)]);
        assert!(out.is_empty());
        let mut push = |r| out.extend(transitions(vec![r]));
        fill.expire(109, &mut push);
        assert!(out.is_empty());
        let mut push = |r| out.extend(transitions(vec![r]));
        fill.expire(110, &mut push);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].lport, 0);
        // The socket's next transition is no longer matched to the released one.
        let out = run(&mut fill, vec![t(1, 200, SynSent, Established, 4, 80)]);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn flush_releases_everything() {
        let mut fill = PeerFill::new(1_000_000);
        let mut out = run(
            &mut fill,
            vec![
                t(1, 1, Close, SynSent, 0, 80),
                t(2, 2, Close, SynSent, 0, 80),
            ],
        );
        fill.flush(&mut |r| out.extend(transitions(vec![r])));
        assert_eq!(out.len(), 2);
        assert_eq!(fill.held(), 0);
    }

    #[test]
    fn signals_keep_their_place_behind_held_transitions() {
        use crate::core::event::{Signal, SignalKind};
        let mut fill = PeerFill::new(1_000);
        let mut out = Vec::new();
        let signal = Record::Signal(Signal::fixture(1, 11, SignalKind::ResetReceived));
        fill.push(
            Record::Transition(t(1, 10, Close, SynSent, 0, 80)),
            &mut |r| out.push(r),
        );
        fill.push(signal.clone(), &mut |r| out.push(r));
        assert!(
            out.is_empty(),
            "the signal waits behind the held transition"
        );
        fill.push(
            Record::Transition(t(1, 12, SynSent, Close, 4000, 80)),
            &mut |r| out.push(r),
        );
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[0], Record::Transition(t) if t.lport == 4000 && t.to == SynSent));
        assert_eq!(out[1], signal);
        assert!(matches!(&out[2], Record::Transition(t) if t.to == Close));
    }

    #[test]
    fn a_new_socket_at_the_same_address_does_not_fill_in() {
        // The client's next transitions were filtered out in the kernel; its memory now holds
        // an accepted child of the listener on port 80.
        let mut fill = PeerFill::new(1_000);
        let out = run(
            &mut fill,
            vec![
                t(1, 10, Close, SynSent, 0, 80),
                t(1, 20, Listen, SynRecv, 80, 41000),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].lport, out[0].to), (0, SynSent));
        assert_eq!(fill.held(), 0);
    }

    #[test]
    fn a_close_with_zero_ports_is_not_held() {
        let mut fill = PeerFill::new(1_000);
        let out = run(&mut fill, vec![t(1, 1, SynSent, Close, 0, 80)]);
        assert_eq!(out.len(), 1);
    }
}
