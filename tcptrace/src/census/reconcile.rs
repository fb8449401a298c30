//! What the transition stream allows each state's count to be in a snapshot, given the previous
//! snapshot, when neither dump was instantaneous. Pure: counts and transitions in, bounds out.
//!
//! An inet_diag dump walks the kernel's socket tables bucket by bucket while sockets keep
//! moving: it reads each socket once, at some moment between the dump's start and its end. A
//! socket that changed state during a dump may be listed in any state it had meanwhile; one
//! that did not is listed in the state it had. So, per socket, the stream gives a set of
//! possible views of each snapshot: exactly one state when the socket did not move during that
//! dump, its state before the dump and every state it entered during it when it did ("not
//! counted" is one of them: a socket not yet born, gone, or in a state the stream does not
//! follow). The previous snapshot's counts, plus for every socket that moved between the two
//! (its view in the new snapshot minus its view in the previous one), bound the new snapshot's
//! counts: from below by the sockets that are certainly in a state now and could have been in
//! it before, from above by the sockets that could be in it now and were certainly not before.
//! Sockets that did not move during either dump contribute exactly.
//!
//! A socket that moved during a dump is then looked up in that snapshot by its addresses (the
//! two ends, as both the stream and inet_diag give them): listed in one of its possible states,
//! or not listed while "not counted" is possible, its view is that one, exactly. Only a socket
//! that cannot be looked up (no local port known yet, addresses listed several times: an
//! `SO_REUSEPORT` group of listeners) keeps its whole set, and one the snapshot lists in a state
//! the stream never gave it during the dump takes the state the stream had it in at the dump's
//! end: a disagreement, which the counts show. So, with every transition seen, the bounds are
//! one number but for the sockets that cannot be looked up.
//!
//! A transition's time is taken in the tracepoint, just before the kernel stores the new state
//! (net/ipv4/tcp.c, tcp_set_state) and, for a connecting socket, before it enters the hash
//! table (tcp_v4_connect hashes it after SYN_SENT). A dump is therefore taken as starting
//! [`DUMP_MARGIN_NS`] earlier than the clock said, so that a transition stamped just before it
//! but stored just after counts as one that moved during it.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
};

use crate::census::{close_wait::Tuple, counts::SHOWN};

/// How long after a transition's timestamp its new state may still be invisible to a dump:
/// the few instructions between the tracepoint and the store, or a connect() picking its port
/// before it hashes the socket, preempted at worst.
pub const DUMP_MARGIN_NS: u64 = 10_000_000;

/// When one snapshot was dumped, kernel monotonic time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dump {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Dump {
    /// The earliest time of a transition the dump may not show.
    pub fn from_ns(&self) -> u64 {
        self.start_ns.saturating_sub(DUMP_MARGIN_NS)
    }

    /// True when the dump may show the socket before or after a transition at `ts_ns`.
    pub fn overlaps(&self, ts_ns: u64) -> bool {
        (self.from_ns()..=self.end_ns).contains(&ts_ns)
    }
}

/// A socket's addresses as one number, 0 for none: what a step and a snapshot are joined by.
pub fn identity(tuple: &Tuple) -> u64 {
    if tuple.1 == 0 {
        return 0;
    }
    let mut hasher = DefaultHasher::new();
    tuple.hash(&mut hasher);
    hasher.finish().max(1)
}

/// Where a snapshot lists a full socket the stream follows, by [`identity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In `SHOWN[i]`.
    At(u8),
    /// Several sockets share these addresses.
    Several,
}

pub type Places = HashMap<u64, Place>;

/// Adds a listed socket to `places`.
pub fn place(places: &mut Places, identity: u64, state: u8) {
    if identity != 0 {
        places
            .entry(identity)
            .and_modify(|p| *p = Place::Several)
            .or_insert(Place::At(state));
    }
}

/// One transition as the counts see it: the index in [`SHOWN`] of the state a socket leaves and
/// of the one it enters, `None` where the socket is not counted (not born yet, gone, or in a
/// state the stream does not follow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub sk: u64,
    pub ts_ns: u64,
    /// The socket's [`identity`], 0 while its local port is not known.
    pub identity: u64,
    pub from: Option<u8>,
    pub to: Option<u8>,
    /// The first transition of a new socket, which may sit at the address of an older one.
    pub birth: bool,
}

/// Per shown state, the range the stream allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: [i64; SHOWN.len()],
    pub max: [i64; SHOWN.len()],
    /// Sockets that moved during a dump and could not be looked up in its snapshot.
    pub uncertain: u64,
    /// Sockets that moved during a dump, listed in a state the stream never gave them then.
    pub conflicting: u64,
    /// Sockets that moved during a dump, found in its snapshot.
    pub resolved: u64,
    /// Transitions that do not start where the socket's previous one ended: one in between
    /// was missed.
    pub gaps: u64,
}

/// A set of possible views of one socket: bit `i` for `SHOWN[i]`, [`NOT_COUNTED`] for none.
type Views = u16;
const NOT_COUNTED: Views = 1 << 15;

fn view(state: Option<u8>) -> Views {
    state.map_or(NOT_COUNTED, |i| 1 << i)
}

/// A snapshot and when it was dumped.
#[derive(Clone, Copy, Debug)]
pub struct Listed<'a> {
    pub dump: Dump,
    pub places: &'a Places,
}

/// What the views of one socket in one snapshot came to.
enum Seen {
    Certain(Views),
    /// Moved during the dump, found in the snapshot.
    Resolved(Views),
    /// Could not be looked up.
    Uncertain(Views),
    Conflicting(Views),
}

/// The view a snapshot gives of one socket's life, from its transitions (sorted by time)
/// around the dump. `after`: the dump comes after every transition that does not overlap it
/// (the new snapshot); else before them (the previous one).
fn seen(listed: Listed<'_>, life: &[Step], after: bool) -> Seen {
    let mut during = life.iter().filter(|s| listed.dump.overlaps(s.ts_ns));
    let Some(first) = during.next() else {
        let certain = match (after, life.first(), life.last()) {
            (true, _, Some(last)) => view(last.to),
            (false, Some(first), _) => view(first.from),
            _ => NOT_COUNTED,
        };
        return Seen::Certain(certain);
    };
    let (views, at_end) = during.fold(
        (view(first.from) | view(first.to), view(first.to)),
        |(v, _), s| (v | view(s.to), view(s.to)),
    );
    if views.count_ones() == 1 {
        return Seen::Certain(views);
    }
    let identity = life.iter().rev().map(|s| s.identity).find(|i| *i != 0);
    let Some(identity) = identity else {
        return Seen::Uncertain(views);
    };
    let found = match listed.places.get(&identity) {
        Some(Place::Several) => return Seen::Uncertain(views),
        Some(Place::At(i)) => 1 << i,
        None => NOT_COUNTED,
    };
    if views & found != 0 {
        Seen::Resolved(found)
    } else {
        Seen::Conflicting(at_end)
    }
}

/// The bounds of each state's count in the snapshot `next`, from the counts of the one
/// `previous` and every transition between `previous.dump.from_ns()` and `next.dump.end_ns`
/// (in any order; sorted here).
pub fn bounds(
    before: &[i64; SHOWN.len()],
    previous: Listed<'_>,
    next: Listed<'_>,
    steps: &mut [Step],
) -> Bounds {
    steps.sort_unstable_by_key(|s| (s.sk, s.ts_ns));
    let mut bounds = Bounds {
        min: *before,
        max: *before,
        uncertain: 0,
        conflicting: 0,
        resolved: 0,
        gaps: 0,
    };
    // A socket address is one socket at a time; a birth there starts the next one's life.
    let lives = steps
        .chunk_by(|a, b| a.sk == b.sk)
        .flat_map(|socket| socket.chunk_by(|_, b| !b.birth));
    for life in lives {
        bounds.gaps += life
            .windows(2)
            .filter(|w| w[0].to.is_some() && w[0].to != w[1].from)
            .count() as u64;
        let mut views = |seen: Seen| match seen {
            Seen::Certain(v) => v,
            Seen::Resolved(v) => {
                bounds.resolved += 1;
                v
            }
            Seen::Uncertain(v) => {
                bounds.uncertain += 1;
                v
            }
            Seen::Conflicting(v) => {
                bounds.conflicting += 1;
                v
            }
        };
        let was = views(seen(previous, life, false));
        let is = views(seen(next, life, true));
        for (i, (min, max)) in bounds.min.iter_mut().zip(&mut bounds.max).enumerate() {
            let bit: Views = 1 << i;
            let certain = |v: Views| i64::from(v == bit);
            let possible = |v: Views| i64::from(v & bit != 0);
            *min += certain(is) - possible(was);
            *max += possible(is) - certain(was);
        }
    }
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::TcpState;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    fn idx(state: TcpState) -> u8 {
        SHOWN.iter().position(|s| *s == state).unwrap() as u8
    }

    /// A step of a socket whose addresses are not known: it cannot be looked up.
    fn step(sk: u64, ts_ns: u64, from: Option<TcpState>, to: Option<TcpState>) -> Step {
        Step {
            sk,
            ts_ns,
            identity: 0,
            from: from.map(idx),
            to: to.map(idx),
            birth: false,
        }
    }

    fn bounds(
        before: &[i64; SHOWN.len()],
        previous: Dump,
        next: Dump,
        steps: &mut [Step],
    ) -> Bounds {
        let none = Places::new();
        super::bounds(
            before,
            Listed {
                dump: previous,
                places: &none,
            },
            Listed {
                dump: next,
                places: &none,
            },
            steps,
        )
    }

    fn counts(of: &[(TcpState, i64)]) -> [i64; SHOWN.len()] {
        let mut counts = [0; SHOWN.len()];
        for (state, n) in of {
            counts[idx(*state) as usize] = *n;
        }
        counts
    }

    fn range(bounds: &Bounds, state: TcpState) -> (i64, i64) {
        let i = idx(state) as usize;
        (bounds.min[i], bounds.max[i])
    }

    const PREVIOUS: Dump = Dump {
        start_ns: 10 * S,
        end_ns: 10 * S + 50 * MS,
    };
    const NEXT: Dump = Dump {
        start_ns: 12 * S,
        end_ns: 12 * S + 50 * MS,
    };

    #[test]
    fn between_the_dumps_the_bounds_are_exact() {
        use TcpState::*;
        let before = counts(&[(Established, 2), (Listen, 1)]);
        let mut steps = [
            step(1, 11 * S, Some(Established), Some(CloseWait)),
            step(2, 11 * S, Some(Established), Some(FinWait1)),
            step(2, 11 * S + 1, Some(FinWait1), Some(FinWait2)),
            step(2, 11 * S + 2, Some(FinWait2), None),
            step(3, 11 * S, None, Some(SynSent)),
            step(3, 11 * S + 5, Some(SynSent), Some(Established)),
        ];
        let bounds = bounds(&before, PREVIOUS, NEXT, &mut steps);
        assert_eq!(range(&bounds, Established), (1, 1));
        assert_eq!(range(&bounds, CloseWait), (1, 1));
        assert_eq!(range(&bounds, FinWait2), (0, 0));
        assert_eq!(range(&bounds, SynSent), (0, 0));
        assert_eq!(range(&bounds, Listen), (1, 1));
        assert_eq!(bounds.uncertain, 0);
    }

    #[test]
    fn a_socket_moving_during_a_dump_may_be_in_either_state() {
        use TcpState::*;
        let before = counts(&[(Established, 1)]);
        // During the new dump: listed ESTABLISHED or CLOSE_WAIT.
        let mut steps = [step(
            1,
            NEXT.start_ns + MS,
            Some(Established),
            Some(CloseWait),
        )];
        let b = bounds(&before, PREVIOUS, NEXT, &mut steps);
        assert_eq!(range(&b, Established), (0, 1));
        assert_eq!(range(&b, CloseWait), (0, 1));
        assert_eq!(b.uncertain, 1);

        // During the previous dump, then once more between the dumps: the previous snapshot
        // listed it ESTABLISHED or CLOSE_WAIT; it is LAST_ACK now, for certain.
        let before = counts(&[(CloseWait, 1)]);
        let mut steps = [
            step(
                1,
                PREVIOUS.start_ns + MS,
                Some(Established),
                Some(CloseWait),
            ),
            step(1, 11 * S, Some(CloseWait), Some(LastAck)),
        ];
        let b = bounds(&before, PREVIOUS, NEXT, &mut steps);
        assert_eq!(range(&b, LastAck), (1, 1));
        assert_eq!(range(&b, CloseWait), (0, 1));
        assert_eq!(range(&b, Established), (-1, 0));

        // Stamped just before the dump started: it may still have been stored after.
        let before = counts(&[(Established, 1)]);
        let mut steps = [step(
            1,
            NEXT.start_ns - MS,
            Some(Established),
            Some(CloseWait),
        )];
        let b = bounds(&before, PREVIOUS, NEXT, &mut steps);
        assert_eq!(range(&b, CloseWait), (0, 1));
        let mut steps = [step(
            1,
            NEXT.start_ns - DUMP_MARGIN_NS - 1,
            Some(Established),
            Some(CloseWait),
        )];
        let b = bounds(&before, PREVIOUS, NEXT, &mut steps);
        assert_eq!(range(&b, CloseWait), (1, 1));
    }

    #[test]
    fn a_whole_connection_during_a_dump_may_be_listed_in_any_of_its_states_or_not_at_all() {
        use TcpState::*;
        let during = |n| NEXT.start_ns + n * MS;
        let mut steps = [
            step(7, during(1), None, Some(SynSent)),
            step(7, during(2), Some(SynSent), Some(Established)),
            step(7, during(3), Some(Established), Some(FinWait1)),
            step(7, during(4), Some(FinWait1), Some(FinWait2)),
            step(7, during(5), Some(FinWait2), None),
        ];
        let b = bounds(&[0; SHOWN.len()], PREVIOUS, NEXT, &mut steps);
        for state in [SynSent, Established, FinWait1, FinWait2] {
            assert_eq!(range(&b, state), (0, 1), "{state}");
        }
        assert_eq!(range(&b, CloseWait), (0, 0));
    }

    #[test]
    fn a_missing_transition_leaves_the_snapshot_outside_the_bounds() {
        use TcpState::*;
        // ESTABLISHED -> FIN_WAIT1 was lost: the stream keeps the socket ESTABLISHED.
        let before = counts(&[(Established, 1)]);
        let mut steps = [
            step(1, 11 * S, Some(FinWait1), Some(FinWait2)),
            step(1, 11 * S + 1, Some(FinWait2), None),
        ];
        let b = bounds(&before, PREVIOUS, NEXT, &mut steps);
        assert_eq!(range(&b, Established), (1, 1));
        assert_eq!(range(&b, FinWait1), (-1, -1));
        assert_eq!(b.gaps, 0);

        // Missed within the window: the socket's transitions skip a state.
        let mut steps = [
            step(1, 11 * S, Some(Established), Some(CloseWait)),
            step(1, 11 * S + 1, Some(FinWait1), Some(FinWait2)),
        ];
        assert_eq!(bounds(&before, PREVIOUS, NEXT, &mut steps).gaps, 1);
    }

    #[test]
    fn a_socket_that_moved_during_a_dump_is_looked_up_in_its_snapshot() {
        use TcpState::*;
        let before = counts(&[(Established, 2)]);
        let tuple = |port| -> Tuple {
            let ip = "10.0.0.1".parse().unwrap();
            (ip, port, ip, 80)
        };
        let with = |sk, from, to, port| Step {
            identity: identity(&tuple(port)),
            ..step(sk, NEXT.start_ns + MS, Some(from), Some(to))
        };
        // Both ESTABLISHED -> CLOSE_WAIT during the dump; the snapshot read 1 before, 2 after.
        let mut steps = [
            with(1, Established, CloseWait, 1),
            with(2, Established, CloseWait, 2),
        ];
        let mut places = Places::new();
        place(&mut places, identity(&tuple(1)), idx(Established));
        place(&mut places, identity(&tuple(2)), idx(CloseWait));
        let none = Places::new();
        let listed = |dump, places| Listed { dump, places };
        let b = super::bounds(
            &before,
            listed(PREVIOUS, &none),
            listed(NEXT, &places),
            &mut steps,
        );
        assert_eq!(range(&b, Established), (1, 1));
        assert_eq!(range(&b, CloseWait), (1, 1));
        assert_eq!((b.uncertain, b.conflicting, b.resolved), (0, 0, 2));

        // Listed in a state it never had during the dump: the stream's state at the dump's end.
        let mut places = Places::new();
        place(&mut places, identity(&tuple(1)), idx(LastAck));
        place(&mut places, identity(&tuple(2)), idx(CloseWait));
        let b = super::bounds(
            &before,
            listed(PREVIOUS, &none),
            listed(NEXT, &places),
            &mut steps,
        );
        assert_eq!(range(&b, CloseWait), (2, 2));
        assert_eq!(range(&b, LastAck), (0, 0));
        assert_eq!(b.conflicting, 1);

        // Two listeners of one SO_REUSEPORT group: the same addresses, not looked up.
        let mut places = Places::new();
        place(&mut places, identity(&tuple(1)), idx(Established));
        place(&mut places, identity(&tuple(1)), idx(Established));
        assert_eq!(places[&identity(&tuple(1))], Place::Several);
    }

    #[test]
    fn a_new_socket_at_an_old_ones_address_is_a_life_of_its_own() {
        use TcpState::*;
        let tuple = |port| -> Tuple {
            let ip = "10.0.0.1".parse().unwrap();
            (ip, port, ip, 80)
        };
        // Socket 1 closes during the dump; a new connection is born at its address.
        let mut steps = [
            Step {
                identity: identity(&tuple(1)),
                ..step(9, NEXT.start_ns + MS, Some(Established), None)
            },
            Step {
                identity: identity(&tuple(2)),
                birth: true,
                ..step(9, NEXT.start_ns + 2 * MS, None, Some(SynSent))
            },
        ];
        let mut places = Places::new();
        place(&mut places, identity(&tuple(2)), idx(SynSent));
        let none = Places::new();
        let b = super::bounds(
            &counts(&[(Established, 1)]),
            Listed {
                dump: PREVIOUS,
                places: &none,
            },
            Listed {
                dump: NEXT,
                places: &places,
            },
            &mut steps,
        );
        assert_eq!(range(&b, Established), (0, 0));
        assert_eq!(range(&b, SynSent), (1, 1));
        assert_eq!((b.uncertain, b.conflicting), (0, 0));
    }
}
