//! What every command that aggregates the stream does with it alike: starts the
//! [`Aggregator`] on the stream's origin, feeds it the records, and takes its snapshot with the
//! stream's totals.

use crate::{
    aggregate::{Aggregator, SocketState, snapshot::Snapshot},
    core::filter::EventFilter,
    stream::{Origin, Totals, Update},
};

/// What of an update is left to the command once the aggregator has taken it.
pub enum Fed<'a> {
    /// Tracing started, and so did the aggregator: the command may take more of the origin.
    Started(&'a Origin, &'a Totals),
    /// A record, or the end of a batch: the aggregator took it all.
    Taken,
    /// The command's interval elapsed.
    Tick(&'a Totals),
}

/// Hands `update` to `aggregator`; `filter` is the stream's, which decides whether the kernel
/// counters (never filtered) can be checked against the transitions.
pub fn feed<'a>(
    aggregator: &mut Aggregator,
    filter: &EventFilter,
    update: Update<'a, SocketState>,
) -> Fed<'a> {
    match update {
        Update::Started(origin, totals) => {
            start(aggregator, filter, origin, totals);
            return Fed::Started(origin, totals);
        }
        Update::Transition(t, socket) => aggregator.feed_transition(t, socket),
        Update::Signal(signal, socket) => aggregator.feed_signal(signal, socket),
        Update::Drop(drop) => aggregator.feed_drop(drop),
        Update::BatchEnd => aggregator.end_batch(),
        Update::Tick(totals) => return Fed::Tick(totals),
    }
    Fed::Taken
}

fn start(aggregator: &mut Aggregator, filter: &EventFilter, origin: &Origin, totals: &Totals) {
    let own_netns = origin.own_netns.unwrap_or(0);
    aggregator.set_own_netns(
        own_netns,
        // The check counts only this namespace anyway: `--netns` naming it filters nothing
        // the kernel counters would see.
        EventFilter {
            netns: filter.netns.filter(|netns| *netns != own_netns),
            ..filter.clone()
        } != EventFilter::default(),
    );
    // The traced kernel's names of reset reasons: some causes are told by them (an orphan's
    // FIN_WAIT2 timeout).
    aggregator.set_reset_reasons(origin.reset_reasons.clone());
    if origin.fates {
        aggregator.trace_fates();
    }
    aggregator.start(origin.start_ns);
    // The baseline of the kernel counters' window.
    if let Some(counters) = totals.tcp {
        aggregator.feed_kernel_counters(counters);
    }
}

/// Hands the stream's totals to the aggregator and takes its snapshot as of their reading.
pub fn snapshot(aggregator: &mut Aggregator, totals: &Totals) -> Snapshot {
    if let Some(counters) = totals.tcp {
        aggregator.feed_kernel_counters(counters);
    }
    aggregator.set_stream(totals.losses, totals.table);
    aggregator.snapshot(totals.now_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{aggregate::Config, core::counters::TcpCounters};

    /// Whether the snapshot compares the transitions with the kernel's counters, after a
    /// stream filtered by `filter` started in namespace 7.
    fn comparable(filter: EventFilter) -> bool {
        let mut aggregator = Aggregator::new(Config::default());
        let origin = Origin {
            own_netns: Some(7),
            start_ns: 1_000,
            ..Origin::default()
        };
        let totals = Totals {
            now_ns: 1_000,
            tcp: Some(TcpCounters::default()),
            ..Totals::default()
        };
        assert!(matches!(
            feed(&mut aggregator, &filter, Update::Started(&origin, &totals)),
            Fed::Started(..)
        ));
        let later = Totals {
            now_ns: 2_000,
            ..totals
        };
        let witness = snapshot(&mut aggregator, &later).witness;
        witness.expect("the kernel counters were read").comparable
    }

    /// Every command that aggregates gets the traced kernel's reset-reason names and its
    /// fates from the origin: an orphan's FIN_WAIT2 timeout is told by its reset's reason.
    #[test]
    fn the_origin_names_the_reset_reasons_and_turns_the_fates_on() {
        use crate::{
            aggregate::{causes::Cause, fed::Fed as Table},
            core::{
                event::{CloseDetails, Signal, SignalKind, Transition},
                reset_reason::ResetReasons,
                state::{Side, TcpState::*},
            },
        };
        let mut names = vec![String::new(); 16];
        names[9] = "tcp_state".into();
        let origin = Origin {
            own_netns: Some(7),
            reset_reasons: ResetReasons::from_names(names),
            fates: true,
            ..Origin::default()
        };
        let mut table = Table::with(Config::default());
        let totals = Totals::default();
        let started = feed(
            &mut table.agg,
            &EventFilter::default(),
            Update::Started(&origin, &totals),
        );
        assert!(matches!(started, Fed::Started(..)));
        let go = |table: &mut Table, ts_ns, from, to, close| {
            table.feed_transition(&Transition {
                netns: 7,
                close,
                ..Transition::fixture(1, ts_ns, from, to)
            });
        };
        go(&mut table, 0, Close, SynSent, None);
        go(&mut table, 1, SynSent, Established, None);
        go(&mut table, 2, Established, FinWait1, None);
        go(&mut table, 3, FinWait1, FinWait2, None);
        table.feed_signal(&Signal {
            reset_reason: Some(9),
            state: Some(FinWait2),
            netns: 7,
            ..Signal::fixture(1, 60, SignalKind::ResetSent)
        });
        let orphan = CloseDetails {
            orphan: true,
            ..CloseDetails::default()
        };
        go(&mut table, 60, FinWait2, Close, Some(orphan));
        table.end_batch();
        let snap = table.snapshot(100);
        assert!(snap.fates.is_some());
        let row = snap
            .rows
            .iter()
            .find(|r| r.side == Side::Client && r.from == FinWait2 && r.abnormal)
            .expect("the FIN_WAIT2 close");
        assert_eq!(row.causes, [(Cause::Timeout, 1)]);
    }

    #[test]
    fn only_a_filter_beyond_the_own_namespace_stops_the_kernel_check() {
        assert!(comparable(EventFilter::default()));
        let netns = |netns| EventFilter {
            netns: Some(netns),
            ..EventFilter::default()
        };
        assert!(comparable(netns(7)));
        assert!(!comparable(netns(8)));
        assert!(!comparable(EventFilter {
            lports: vec![80],
            ..netns(7)
        }));
    }
}
