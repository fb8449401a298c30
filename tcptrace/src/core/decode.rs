//! Raw ring-buffer records → typed [`Record`]s. Pure: the kernel side is trusted for nothing,
//! every field is validated and an invalid record is an error the caller counts.

use std::{
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use tcptrace_ebpf::{Event, close, flags, kind};
use thiserror::Error;

use crate::core::{
    event::{
        CloseDetails, Comm, Family, Fate, OwnerKind, PacketDrop, Record, Signal, SignalKind,
        Transition,
    },
    state::TcpState,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Why a record was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event ({size} bytes)", size = size_of::<Event>())]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("unknown TCP state {0}")]
    UnknownState(u16),
    #[error("unknown address family {0}")]
    UnknownFamily(u16),
    #[error("unknown packet fate {0}")]
    UnknownFate(u16),
}

/// Reinterprets the bytes of one record as the ABI struct.
pub fn raw_event(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < size_of::<Event>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: `Event` is `#[repr(C)]` plain old data (every bit pattern is valid) and the slice
    // holds at least `size_of::<Event>()` bytes; the read is unaligned-safe.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let event = raw_event(bytes)?;
    match event.kind {
        kind::TRANSITION => decode_transition(&event).map(Record::Transition),
        kind::RESET_RECEIVED => decode_signal(&event, SignalKind::ResetReceived),
        kind::RESET_SENT => decode_signal(&event, SignalKind::ResetSent),
        kind::RETRANSMIT => decode_signal(&event, SignalKind::Retransmit),
        kind::RETRANSMIT_SYNACK => decode_signal(&event, SignalKind::SynAckRetransmit),
        kind::DROP => decode_drop(&event).map(Record::Drop),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn state(raw: u16) -> Result<TcpState, DecodeError> {
    TcpState::from_raw(raw).ok_or(DecodeError::UnknownState(raw))
}

/// The family and the two addresses of an event. IPv4-mapped IPv6 addresses (an IPv4 peer of a
/// dual-stack socket) are given as IPv4, as the operator knows them.
pub fn addresses(event: &Event) -> Result<(Family, IpAddr, IpAddr), DecodeError> {
    match event.family {
        AF_INET => {
            let v4 = |a: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
            Ok((Family::Inet, v4(&event.saddr), v4(&event.daddr)))
        }
        AF_INET6 => {
            let v6 = |a: &[u8; 16]| {
                let addr = Ipv6Addr::from(*a);
                match addr.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(addr),
                }
            };
            Ok((Family::Inet6, v6(&event.saddr), v6(&event.daddr)))
        }
        other => Err(DecodeError::UnknownFamily(other)),
    }
}

/// Signals carry the socket's state in `oldstate`; 0 when the tracepoint has none.
fn decode_signal(event: &Event, kind: SignalKind) -> Result<Record, DecodeError> {
    let state = match event.oldstate {
        0 => None,
        raw => Some(state(raw)?),
    };
    Ok(Record::Signal(Signal {
        ts_ns: event.ts_ns,
        sk: event.skaddr,
        kind,
        state,
        netns: event.netns,
        reset_reason: (kind == SignalKind::ResetSent
            && event.close_flags & close::RESET_REASON != 0)
            .then_some(event.reset_reason),
    }))
}

/// A dropped packet: the fate in `newstate`, the TCP flags in `oldstate`, the kernel's reason in
/// `holders`, the listener's owner when the listener map had it.
fn decode_drop(event: &Event) -> Result<PacketDrop, DecodeError> {
    let fate = Fate::from_raw(event.newstate).ok_or(DecodeError::UnknownFate(event.newstate))?;
    let (family, laddr, raddr) = addresses(event)?;
    let owner_known = event.flags & flags::OWNER_UNKNOWN == 0 && event.tgid != 0;
    Ok(PacketDrop {
        ts_ns: event.ts_ns,
        fate,
        family,
        laddr,
        lport: event.sport,
        raddr,
        rport: event.dport,
        netns: event.netns,
        tcp_flags: event.oldstate as u8,
        reason: event.holders,
        pid: owner_known.then_some(event.tgid),
        comm: if owner_known {
            Comm::from_raw(&event.comm)
        } else {
            Comm::default()
        },
    })
}

fn decode_transition(event: &Event) -> Result<Transition, DecodeError> {
    let from = state(event.oldstate)?;
    let to = state(event.newstate)?;
    let (family, laddr, raddr) = addresses(event)?;
    let owner_known = event.flags & flags::OWNER_UNKNOWN == 0 && event.tgid != 0;
    Ok(Transition {
        ts_ns: event.ts_ns,
        sk: event.skaddr,
        pid: owner_known.then_some(event.tgid),
        comm: if owner_known {
            Comm::from_raw(&event.comm)
        } else {
            Comm::default()
        },
        // Set only from a listener seeded at start (see `Owner::holders`).
        owner_kind: if owner_known {
            OwnerKind::of_holders(event.holders, true)
        } else {
            OwnerKind::Process
        },
        cookie: event.cookie,
        family,
        laddr,
        lport: event.sport,
        raddr,
        rport: event.dport,
        from,
        to,
        // Filled in by the socket table, from the socket's earlier transitions.
        time_in_from_ns: None,
        netns: event.netns,
        first_seen_midlife: false,
        close: close_details(event, to),
    })
}

/// The close details of a →CLOSE transition, when the probe read them.
fn close_details(event: &Event, to: TcpState) -> Option<CloseDetails> {
    let bits = event.close_flags;
    (to == TcpState::Close && bits & close::DETAILS != 0).then_some(CloseDetails {
        err: event.sk_err,
        err_soft: event.sk_err_soft,
        retransmits: event.retransmits,
        probes_out: event.probes_out,
        orphan: bits & close::ORPHAN != 0,
        keepalive: bits & close::KEEPALIVE != 0,
        user_timeout: bits & close::USER_TIMEOUT != 0,
    })
}

/// Encodes an event as the kernel would: for tests, recordings and benchmarks.
pub fn encode(event: &Event) -> [u8; size_of::<Event>()] {
    // SAFETY: `Event` is plain old data without implicit padding: all its bytes are initialized.
    unsafe { std::mem::transmute_copy(event) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A client's SYN_SENT→ESTABLISHED on loopback, as the kernel sends it.
    pub(crate) fn sample() -> Event {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        Event {
            ts_ns: 1_000,
            skaddr: 0xffff_8880_1234_5678,
            saddr,
            daddr,
            comm,
            tgid: 4242,
            netns: 4026531840,
            sport: 40000,
            dport: 80,
            family: AF_INET,
            kind: kind::TRANSITION,
            oldstate: 2,
            newstate: 1,
            cookie: 0x0001_0000_002a,
            ..Event::empty()
        }
    }

    #[test]
    fn decodes_a_valid_transition() {
        let Ok(Record::Transition(t)) = decode(&encode(&sample())) else {
            panic!("not a transition")
        };
        assert_eq!(t.ts_ns, 1_000);
        assert_eq!(t.netns, 4026531840);
        assert_eq!(t.sk, 0xffff_8880_1234_5678);
        assert_eq!(t.pid, Some(4242));
        assert_eq!(t.comm, "curl");
        assert_eq!(t.family, Family::Inet);
        assert_eq!(t.laddr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(t.raddr, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((t.lport, t.rport), (40000, 80));
        assert_eq!((t.from, t.to), (TcpState::SynSent, TcpState::Established));
        assert_eq!(t.time_in_from_ns, None);
        assert!(!t.first_seen_midlife);
        assert_eq!(t.cookie, 0x0001_0000_002a);
        assert_eq!(t.owner_kind, OwnerKind::Process);
    }

    #[test]
    fn an_owner_from_a_listener_of_several_holders_is_marked() {
        let mut e = sample();
        e.oldstate = 10;
        e.newstate = 3;
        e.holders = 5;
        let Ok(Record::Transition(t)) = decode(&encode(&e)) else {
            panic!("not a transition")
        };
        assert_eq!(
            (t.pid, t.owner_kind),
            (Some(4242), OwnerKind::ListenerHolders(5))
        );
        // Without an owner the count means nothing.
        e.flags = flags::OWNER_UNKNOWN;
        let Ok(Record::Transition(t)) = decode(&encode(&e)) else {
            panic!("not a transition")
        };
        assert_eq!((t.pid, t.owner_kind), (None, OwnerKind::Process));
    }

    #[test]
    fn longer_records_are_accepted_for_forward_compatibility() {
        let mut bytes = encode(&sample()).to_vec();
        bytes.extend_from_slice(&[0; 8]);
        assert!(decode(&bytes).is_ok());
    }

    #[test]
    fn short_records_are_rejected() {
        let bytes = encode(&sample());
        assert_eq!(decode(&bytes[..103]), Err(DecodeError::Short(103)));
        // A record of ABI version 2 (96 bytes) is too short for this one: recordings widen them.
        assert_eq!(decode(&bytes[..96]), Err(DecodeError::Short(96)));
        // A record of ABI version 1 (88 bytes) is too short for this one.
        assert_eq!(decode(&bytes[..88]), Err(DecodeError::Short(88)));
        assert_eq!(decode(&[]), Err(DecodeError::Short(0)));
    }

    #[test]
    fn unknown_states_kinds_and_families_are_rejected() {
        let mut e = sample();
        e.newstate = 13;
        assert_eq!(decode(&encode(&e)), Err(DecodeError::UnknownState(13)));
        let mut e = sample();
        e.oldstate = u16::MAX;
        assert_eq!(
            decode(&encode(&e)),
            Err(DecodeError::UnknownState(u16::MAX))
        );
        let mut e = sample();
        e.kind = 99;
        assert_eq!(decode(&encode(&e)), Err(DecodeError::UnknownKind(99)));
        let mut e = sample();
        e.family = 1;
        assert_eq!(decode(&encode(&e)), Err(DecodeError::UnknownFamily(1)));
    }

    #[test]
    fn drops_carry_their_fate_ports_and_the_listeners_owner() {
        let mut e = sample();
        e.kind = kind::DROP;
        e.newstate = tcptrace_ebpf::fate::EMBRYONIC_RESET;
        e.oldstate = 0x14;
        e.holders = 2;
        e.sport = 8080;
        e.dport = 40000;
        let Ok(Record::Drop(d)) = decode(&encode(&e)) else {
            panic!("not a drop")
        };
        assert_eq!(d.fate, Fate::EmbryonicReset);
        assert_eq!(
            (d.lport, d.rport, d.tcp_flags, d.reason),
            (8080, 40000, 0x14, 2)
        );
        assert_eq!(d.laddr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(d.raddr, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((d.pid, d.comm.as_str()), (Some(4242), "curl"));
        e.flags = flags::OWNER_UNKNOWN;
        let Ok(Record::Drop(d)) = decode(&encode(&e)) else {
            panic!("not a drop")
        };
        assert_eq!(d.pid, None);
        e.newstate = 0;
        assert_eq!(decode(&encode(&e)), Err(DecodeError::UnknownFate(0)));
        e.newstate = 4;
        assert_eq!(decode(&encode(&e)), Err(DecodeError::UnknownFate(4)));
    }

    #[test]
    fn unknown_owner() {
        let mut e = sample();
        e.flags = flags::OWNER_UNKNOWN;
        let Ok(Record::Transition(t)) = decode(&encode(&e)) else {
            panic!("not a transition")
        };
        assert_eq!(t.pid, None);
        assert_eq!(t.comm, "");
    }

    #[test]
    fn ipv6_and_ipv4_mapped_addresses() {
        let mut e = sample();
        e.family = AF_INET6;
        e.saddr = Ipv6Addr::LOCALHOST.octets();
        e.daddr = Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped().octets();
        let Ok(Record::Transition(t)) = decode(&encode(&e)) else {
            panic!("not a transition")
        };
        assert_eq!(t.family, Family::Inet6);
        assert_eq!(t.laddr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(t.raddr, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    }

    #[test]
    fn signals_carry_their_kind_and_optional_state() {
        let mut e = sample();
        e.kind = kind::RESET_RECEIVED;
        e.oldstate = 2;
        assert_eq!(
            decode(&encode(&e)),
            Ok(Record::Signal(Signal {
                ts_ns: 1_000,
                sk: 0xffff_8880_1234_5678,
                kind: SignalKind::ResetReceived,
                state: Some(TcpState::SynSent),
                netns: 4026531840,
                reset_reason: None,
            }))
        );
        e.kind = kind::RETRANSMIT_SYNACK;
        e.oldstate = 0;
        let Ok(Record::Signal(signal)) = decode(&encode(&e)) else {
            panic!("not a signal")
        };
        assert_eq!(
            (signal.kind, signal.state),
            (SignalKind::SynAckRetransmit, None)
        );
        e.oldstate = 77;
        assert_eq!(decode(&encode(&e)), Err(DecodeError::UnknownState(77)));
    }

    #[test]
    fn a_reset_sent_carries_its_reason_only_when_the_probe_read_one() {
        let mut e = sample();
        e.kind = kind::RESET_SENT;
        e.oldstate = 1;
        e.reset_reason = 15;
        let reason = |e: &Event| match decode(&encode(e)) {
            Ok(Record::Signal(signal)) => signal.reset_reason,
            other => panic!("{other:?}"),
        };
        // Before Linux 6.10 the tracepoint has none: the field means nothing.
        assert_eq!(reason(&e), None);
        e.close_flags = close::RESET_REASON;
        assert_eq!(reason(&e), Some(15));
        // Reason 0 (not specified) is a reason.
        e.reset_reason = 0;
        assert_eq!(reason(&e), Some(0));
        // Other kinds never carry one.
        e.kind = kind::RESET_RECEIVED;
        assert_eq!(reason(&e), None);
    }

    #[test]
    fn close_details_are_decoded_for_closes_only() {
        let mut e = sample();
        e.oldstate = 2;
        e.newstate = 7;
        e.sk_err = 110;
        e.sk_err_soft = 113;
        e.retransmits = 3;
        e.probes_out = 1;
        let details = |e: &Event| match decode(&encode(e)) {
            Ok(Record::Transition(t)) => t.close,
            other => panic!("{other:?}"),
        };
        // Not read by the probe (a record of ABI 2, widened): nothing known.
        assert_eq!(details(&e), None);
        e.close_flags = close::DETAILS | close::ORPHAN | close::USER_TIMEOUT;
        assert_eq!(
            details(&e),
            Some(CloseDetails {
                err: 110,
                err_soft: 113,
                retransmits: 3,
                probes_out: 1,
                orphan: true,
                keepalive: false,
                user_timeout: true,
            })
        );
        e.close_flags = close::DETAILS | close::KEEPALIVE;
        assert!(details(&e).is_some_and(|d| d.keepalive && !d.orphan));
        // A transition to another state has no close to tell of.
        e.newstate = 1;
        assert_eq!(details(&e), None);
    }
}
