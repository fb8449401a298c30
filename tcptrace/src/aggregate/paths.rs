//! Where a transition belongs in the TCP state diagram: whether it is abnormal, whether it is
//! the hand-over to TIME_WAIT that Linux reports as →CLOSE, and whether the diagram has that
//! edge at all. The path it is on comes from how its socket was born ([`Side`]).
//!
//! [`Side`]: crate::core::state::Side

use crate::core::state::TcpState;

/// Where a transition goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The state shown as entered: TIME_WAIT for an inferred hand-over, else the real one.
    pub to: TcpState,
    pub abnormal: bool,
    /// `to` is TIME_WAIT, inferred from a →CLOSE the kernel reported.
    pub inferred: bool,
}

/// Places `from → to` given whether a reset was seen on the socket.
///
/// Linux never reports TIME_WAIT through `sock:inet_sock_set_state`: `tcp_time_wait()` hands a
/// FIN_WAIT2 or CLOSING socket to a timewait socket and the full socket goes to CLOSE
/// (net/ipv4/tcp_minisocks.c). An orphaned socket does so right after FIN_WAIT1→FIN_WAIT2. A
/// reset in those states also ends in CLOSE, but without a TIME_WAIT: that one is abnormal.
pub fn place(from: TcpState, to: TcpState, reset_seen: bool) -> Placement {
    use TcpState::*;
    let normal = |to| Placement {
        to,
        abnormal: false,
        inferred: false,
    };
    let abnormal = Placement {
        to,
        abnormal: true,
        inferred: false,
    };
    match (from, to) {
        (FinWait2 | Closing, Close) if !reset_seen => Placement {
            to: TimeWait,
            abnormal: false,
            inferred: true,
        },
        // The final ACK arrived; with a reset it did not.
        (LastAck, Close) if !reset_seen => normal(Close),
        (
            SynSent | SynRecv | Established | FinWait1 | FinWait2 | Closing | CloseWait | LastAck,
            Close,
        ) => abnormal,
        _ => normal(to),
    }
}

/// Whether the kernel's diagram has this edge at all (simultaneous open included). Anything
/// else is shown, but as unusual.
pub fn is_diagram_edge(from: TcpState, to: TcpState) -> bool {
    use TcpState::*;
    matches!(
        (from, to),
        (Close, SynSent)
            | (Close, Listen)
            | (Listen, Close)
            | (Listen, SynRecv)
            | (SynSent, Established)
            | (SynSent, SynRecv)
            | (SynSent, Close)
            | (SynRecv, Established)
            | (SynRecv, Close)
            | (SynRecv, FinWait1)
            | (Established, FinWait1)
            | (Established, CloseWait)
            | (Established, Close)
            | (FinWait1, FinWait2)
            | (FinWait1, Closing)
            | (FinWait1, Close)
            | (FinWait2, Close)
            | (Closing, Close)
            | (CloseWait, LastAck)
            | (CloseWait, Close)
            | (LastAck, Close)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    #[test]
    fn normal_paths_are_normal() {
        for (from, to) in [
            (Close, SynSent),
            (SynSent, Established),
            (Established, FinWait1),
            (FinWait1, FinWait2),
            (FinWait1, Closing),
            (Listen, SynRecv),
            (SynRecv, Established),
            (Established, CloseWait),
            (CloseWait, LastAck),
            (LastAck, Close),
            (Close, Listen),
            (Listen, Close),
        ] {
            let p = place(from, to, false);
            assert_eq!(
                p,
                Placement {
                    to,
                    abnormal: false,
                    inferred: false
                },
                "{from}->{to}"
            );
            assert!(is_diagram_edge(from, to), "{from}->{to}");
        }
    }

    #[test]
    fn time_wait_is_inferred_unless_reset() {
        for from in [FinWait2, Closing] {
            assert_eq!(
                place(from, Close, false),
                Placement {
                    to: TimeWait,
                    abnormal: false,
                    inferred: true
                }
            );
            assert_eq!(
                place(from, Close, true),
                Placement {
                    to: Close,
                    abnormal: true,
                    inferred: false
                }
            );
        }
    }

    #[test]
    fn abnormal_closes() {
        for from in [SynSent, SynRecv, Established, FinWait1, CloseWait] {
            for reset in [false, true] {
                let p = place(from, Close, reset);
                assert!(p.abnormal && !p.inferred && p.to == Close, "{from}");
            }
        }
        assert!(place(LastAck, Close, true).abnormal);
        assert!(!place(LastAck, Close, false).abnormal);
    }

    #[test]
    fn unusual_edges() {
        assert!(!is_diagram_edge(Established, SynSent));
        assert!(is_diagram_edge(SynSent, SynRecv));
    }
}
