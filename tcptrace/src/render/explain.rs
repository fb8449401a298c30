//! What each TCP state and transition means, in our own words: who passes through it, what to
//! look at when it piles up, which timer governs it, and where Linux differs from the RFC 793
//! diagram. Used by `tcptrace explain` and the help of the other commands.

use thiserror::Error;

use super::{cause_texts, wrap};
use crate::core::state::TcpState;

/// The explanation of one state.
pub struct StateText {
    pub state: TcpState,
    /// Client, server or either.
    pub side: &'static str,
    pub meaning: &'static str,
    /// What to check when many sockets sit in it.
    pub piles_up: &'static str,
    pub timer: &'static str,
    pub linux: &'static str,
}

/// The explanation of one transition.
pub struct TransitionText {
    pub from: TcpState,
    pub to: TcpState,
    pub side: &'static str,
    pub cause: &'static str,
}

pub const STATES: &[StateText] = &[
    StateText {
        state: TcpState::Listen,
        side: "server",
        meaning: "A socket on which listen() was called: it answers SYNs and queues completed \
            connections until the application accept()s them.",
        piles_up: "One per service and address is normal. For a listener, Recv-Q is the number \
            of connections waiting for accept() and Send-Q the backlog limit (listen()'s, \
            capped by net.core.somaxconn). Linux calls the queue full once it holds more than \
            the backlog, and then drops SYNs and final ACKs, counting each in \
            TcpExtListenOverflows: the accept loop is too slow. `tcptrace states` shows every \
            listener with connections waiting (`accept queue 129/128, full`), its holders and \
            the namespace's ListenOverflows since boot, or since the last snapshot of \
            --watch; the waiting children are ESTABLISHED or CLOSE_WAIT sockets without a \
            process, `not yet accepted`.",
        timer: "none on the listener itself; its request sockets retransmit SYN-ACKs.",
        linux: "As in RFC 793.",
    },
    StateText {
        state: TcpState::SynSent,
        side: "client",
        meaning: "connect() sent a SYN and waits for the SYN-ACK.",
        piles_up: "The destination does not answer: a firewall dropping SYNs, a dead host, or \
            a server whose SYN queue is full. Check the Foreign Address column for a common \
            destination.",
        timer: "retransmission (`on`): the SYN is retried tcp_syn_retries times (6 by default, \
            about 127 s in all) before connect() fails with ETIMEDOUT.",
        linux: "As in RFC 793.",
    },
    StateText {
        state: TcpState::SynRecv,
        side: "server",
        meaning: "A SYN arrived on a listener and a SYN-ACK went back; the final ACK of the \
            three-way handshake has not arrived.",
        piles_up: "Many of them mean a SYN flood (spoofed sources never answer), clients \
            whose ACKs are lost, or a full accept queue. Check `sysctl net.ipv4.tcp_syncookies`, \
            tcp_max_syn_backlog, and the listener's Recv-Q against its backlog. When the SYN \
            queue is full, net.ipv4.tcp_syncookies = 1 answers SYNs with cookies instead of \
            request sockets (TcpExtSyncookiesSent; Recv and Failed for the ACKs that come \
            back); 2 sends them for every SYN, full or not; 0 drops the SYNs \
            (TcpExtTCPReqQFullDrop). `tcptrace states` reports them read against the \
            setting.",
        timer: "retransmission (`on`): the SYN-ACK is retried tcp_synack_retries times \
            (5 by default, about 63 s) before the request is dropped.",
        linux: "Linux does not create a full socket for a half-open connection: it keeps a \
            small request socket (state NEW_SYN_RECV, shown as SYN_RECV as netstat does), and \
            builds the full socket only when the final ACK arrives, which then passes \
            through SYN_RECV for an instant on its way to ESTABLISHED.",
    },
    StateText {
        state: TcpState::Established,
        side: "either",
        meaning: "The connection is open: both sides can send data.",
        piles_up: "Normal for busy servers and connection pools. If it grows without bound, \
            look for clients that never close (a pool without limits) or idle connections \
            without keepalive whose peer vanished.",
        timer: "retransmission (`on`) while data is unacknowledged, keepalive when \
            SO_KEEPALIVE is set (tcp_keepalive_time, 7200 s by default), zero-window probe \
            (`probe`) while the peer advertises no room; otherwise `off`.",
        linux: "As in RFC 793.",
    },
    StateText {
        state: TcpState::FinWait1,
        side: "the side that closes first (active close)",
        meaning: "The application closed; our FIN is sent and not acknowledged yet.",
        piles_up: "The peer does not acknowledge: it is gone, unreachable, or its receive \
            window is closed while our unsent data waits. Look for a `probe` or `on` timer \
            with a growing retransmission count.",
        timer: "retransmission (`on`) or zero-window probe (`probe`); an orphaned socket \
            gives up after tcp_orphan_retries.",
        linux: "As in RFC 793; orphaned sockets (closed by the application) are limited by \
            tcp_max_orphans.",
    },
    StateText {
        state: TcpState::FinWait2,
        side: "the side that closes first (active close)",
        meaning: "Our FIN was acknowledged; we wait for the peer's FIN.",
        piles_up: "The peer application has not closed its side. If our application only \
            called shutdown(SHUT_WR) the socket may stay here forever; an orphaned one \
            (already close()d) is dropped after tcp_fin_timeout (60 s by default).",
        timer: "for an orphan, the FIN_WAIT2 timer (tcp_fin_timeout, shown as `timewait`); \
            otherwise none.",
        linux: "RFC 793 has no limit; Linux bounds orphaned FIN_WAIT2 sockets by \
            tcp_fin_timeout and may move them to a timewait socket early.",
    },
    StateText {
        state: TcpState::TimeWait,
        side: "the side that closes first (active close)",
        meaning: "Both FINs are exchanged; the connection is over. The 4-tuple stays \
            reserved so that late duplicates of the old connection cannot corrupt a new one \
            with the same addresses and ports.",
        piles_up: "Normal on clients that open many short connections. The risk is port \
            exhaustion: towards one destination, each TIME_WAIT socket holds one port of \
            net.ipv4.ip_local_port_range. Remedies: connection reuse (keep-alive, pools), \
            more source addresses, net.ipv4.tcp_tw_reuse for outgoing connections, or let \
            the server close second. tcp_tw_reuse = 1 lets connect() take over a TIME_WAIT \
            port towards the same destination after about a second (net.ipv4.tcp_tw_reuse_delay \
            where the kernel has it; older kernels, 6.1 included, once its last timestamp is \
            from an earlier second), when the connection used TCP timestamps; 2, the default, does so for loopback connections only; 0 \
            never. It does nothing for ports an application bind()s itself, nor for the \
            server's side. `tcptrace states` says which applies to the busiest destination.",
        timer: "timewait: exactly 60 s on Linux (TCP_TIMEWAIT_LEN, not configurable), \
            which is 2×MSL with an MSL of 30 s.",
        linux: "The full socket is freed when it enters TIME_WAIT: Linux keeps a small \
            timewait socket instead (so tracing sees FIN_WAIT2 -> CLOSE). RFC 793 suggests \
            2×MSL with an MSL of 2 minutes; the table of timewait sockets is limited by \
            tcp_max_tw_buckets.",
    },
    StateText {
        state: TcpState::Close,
        side: "either",
        meaning: "No connection: a socket just created, or one that finished (after LAST_ACK, \
            TIME_WAIT, a reset or a timeout).",
        piles_up: "Sockets created and bound but neither connected nor listening. Dumps \
            rarely show CLOSE: the kernel frees closed sockets at once.",
        timer: "none.",
        linux: "RFC 793 calls it CLOSED, a fictional state; Linux uses it as the start and \
            end state of every socket.",
    },
    StateText {
        state: TcpState::CloseWait,
        side: "the side that closes second (passive close)",
        meaning: "The peer sent its FIN: it will send nothing more. The socket waits for our \
            application to call close().",
        piles_up: "The application does not close sockets whose peer hung up: a leak in its \
            code (an error path that forgets close, a stuck worker, a pool that keeps dead \
            connections). The kernel never times CLOSE_WAIT out; only the owning process \
            can end it. Young ones are normal: a server closes a connection within \
            milliseconds of reading the end of file. `tcptrace states` names the processes \
            holding them and how long they have been there: exactly when tracing saw them \
            enter, else at least the time since the last ACK arrived (the peer's FIN was one); \
            a leak past --close-wait-age (60 s). Children still in a listener's accept queue \
            whose peer gave up are CLOSE_WAIT too, held by no process: `not yet accepted`, a \
            slow accept loop, not a missing close().",
        timer: "none of its own (keepalive if set; `on` if we still send data).",
        linux: "As in RFC 793.",
    },
    StateText {
        state: TcpState::LastAck,
        side: "the side that closes second (passive close)",
        meaning: "Our application closed after the peer had; our FIN waits for its \
            acknowledgment.",
        piles_up: "The peer vanished after sending its FIN, or its ACKs are dropped. The \
            sockets go away after the FIN retransmissions give up.",
        timer: "retransmission (`on`) of our FIN.",
        linux: "As in RFC 793.",
    },
    StateText {
        state: TcpState::Closing,
        side: "either (simultaneous close)",
        meaning: "Both sides sent a FIN at the same time; ours is not acknowledged yet.",
        piles_up: "Rare. Many of them point at lost ACKs.",
        timer: "retransmission (`on`) of our FIN.",
        linux: "As in RFC 793; the socket then becomes a timewait socket.",
    },
];

pub const TRANSITIONS: &[TransitionText] = &[
    TransitionText {
        from: TcpState::Close,
        to: TcpState::Listen,
        side: "server",
        cause: "The application called listen().",
    },
    TransitionText {
        from: TcpState::Close,
        to: TcpState::SynSent,
        side: "client",
        cause: "The application called connect(): a SYN goes out.",
    },
    TransitionText {
        from: TcpState::Listen,
        to: TcpState::SynRecv,
        side: "server",
        cause: "A connection was requested. On Linux this is the new child socket, created when the final ACK of the handshake arrives (the SYN itself only makes a request socket).",
    },
    TransitionText {
        from: TcpState::SynRecv,
        to: TcpState::Listen,
        side: "server",
        cause: "A reset killed a half-open connection (an embryonic reset, TcpExt EmbryonicRsts): the peer gave up, or a SYN from a spoofed or reused address was answered by a host that never sent it. Linux keeps it in a request socket, which never passes through the state tracepoint: `transitions` counts it in REQUEST SOCKETS and, by listener and peer, in REQUEST-SOCKET FATES BY LISTENER.",
    },
    TransitionText {
        from: TcpState::Listen,
        to: TcpState::Close,
        side: "server",
        cause: "The listener was closed; queued, not yet accepted connections are reset.",
    },
    TransitionText {
        from: TcpState::SynSent,
        to: TcpState::Established,
        side: "client",
        cause: "The SYN-ACK arrived and was acknowledged: connect() returns.",
    },
    TransitionText {
        from: TcpState::SynSent,
        to: TcpState::SynRecv,
        side: "either",
        cause: "Simultaneous open: a SYN arrived while ours was unanswered.",
    },
    TransitionText {
        from: TcpState::SynSent,
        to: TcpState::Close,
        side: "client",
        cause: "connect() failed: a reset (nothing listens: ECONNREFUSED), the SYN retries ran out (ETIMEDOUT), or the application gave up.",
    },
    TransitionText {
        from: TcpState::SynRecv,
        to: TcpState::Established,
        side: "server",
        cause: "The handshake completed; the connection waits in the accept queue. On Linux this follows LISTEN -> SYN_RECV within microseconds.",
    },
    TransitionText {
        from: TcpState::SynRecv,
        to: TcpState::FinWait1,
        side: "server",
        cause: "The application closed before the handshake completed (possible with TCP Fast Open).",
    },
    TransitionText {
        from: TcpState::SynRecv,
        to: TcpState::Close,
        side: "server",
        cause: "The half-open connection was reset or timed out.",
    },
    TransitionText {
        from: TcpState::Established,
        to: TcpState::FinWait1,
        side: "the side that closes first",
        cause: "The application closed (or shut down writing): our FIN goes out.",
    },
    TransitionText {
        from: TcpState::Established,
        to: TcpState::CloseWait,
        side: "the side that closes second",
        cause: "The peer's FIN arrived: the peer will send nothing more. Our application reads end of file and should close.",
    },
    TransitionText {
        from: TcpState::Established,
        to: TcpState::Close,
        side: "either",
        cause: "Abortive end: a reset was received or sent (SO_LINGER with timeout 0, close() with unread data), or retransmissions or keepalive probes ran out.",
    },
    TransitionText {
        from: TcpState::FinWait1,
        to: TcpState::FinWait2,
        side: "the side that closes first",
        cause: "Our FIN was acknowledged.",
    },
    TransitionText {
        from: TcpState::FinWait1,
        to: TcpState::Closing,
        side: "either",
        cause: "Simultaneous close: the peer's FIN arrived before the ACK of ours.",
    },
    TransitionText {
        from: TcpState::FinWait1,
        to: TcpState::TimeWait,
        side: "the side that closes first",
        cause: "The peer acknowledged our FIN and sent its own in the same segment.",
    },
    TransitionText {
        from: TcpState::FinWait1,
        to: TcpState::Close,
        side: "the side that closes first",
        cause: "A reset, or an orphaned socket whose FIN retries (tcp_orphan_retries) ran out.",
    },
    TransitionText {
        from: TcpState::FinWait2,
        to: TcpState::TimeWait,
        side: "the side that closes first",
        cause: "The peer's FIN arrived. On Linux the full socket is replaced by a timewait socket, so tracing shows FIN_WAIT2 -> CLOSE.",
    },
    TransitionText {
        from: TcpState::FinWait2,
        to: TcpState::Close,
        side: "the side that closes first",
        cause: "On Linux, the hand-off to a timewait socket after the peer's FIN, or an orphaned socket whose tcp_fin_timeout expired, or a reset.",
    },
    TransitionText {
        from: TcpState::Closing,
        to: TcpState::TimeWait,
        side: "either",
        cause: "After a simultaneous close, our FIN was acknowledged.",
    },
    TransitionText {
        from: TcpState::Closing,
        to: TcpState::Close,
        side: "either",
        cause: "On Linux, the hand-off to a timewait socket, or a reset.",
    },
    TransitionText {
        from: TcpState::TimeWait,
        to: TcpState::Close,
        side: "the side that closes first",
        cause: "The 60-second TIME_WAIT timer fired (or a new SYN reused the 4-tuple, which Linux allows when the sequence numbers show it is safe).",
    },
    TransitionText {
        from: TcpState::CloseWait,
        to: TcpState::LastAck,
        side: "the side that closes second",
        cause: "The application closed after the peer: our FIN goes out.",
    },
    TransitionText {
        from: TcpState::CloseWait,
        to: TcpState::Close,
        side: "the side that closes second",
        cause: "Abortive close (SO_LINGER 0 or unread data) or a reset.",
    },
    TransitionText {
        from: TcpState::LastAck,
        to: TcpState::Close,
        side: "the side that closes second",
        cause: "Our FIN was acknowledged: the connection is gone, without TIME_WAIT on this side.",
    },
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExplainError {
    #[error(
        "unknown TCP state `{0}` (try one of: {list}; or `causes`, or a cause such as timeout)",
        list = state_names()
    )]
    UnknownState(String),
    #[error(
        "{0} -> {1} is not a transition of the TCP state diagram (`tcptrace explain {0}` lists where it goes)"
    )]
    NoSuchTransition(String, String),
}

fn state_names() -> String {
    STATES
        .iter()
        .map(|s| s.state.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A state by name, as netstat, ss or the kernel spell it, in any case.
pub fn parse_state(name: &str) -> Result<TcpState, ExplainError> {
    let upper = name.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    let alias = match upper.as_str() {
        "ESTAB" => "ESTABLISHED",
        "SYN_RECEIVED" | "NEW_SYN_RECV" => "SYN_RECV",
        "FIN_WAIT_1" => "FIN_WAIT1",
        "FIN_WAIT_2" => "FIN_WAIT2",
        "TIME_WAIT" | "TIMEWAIT" | "TIME_WAIT_" => "TIME_WAIT",
        "CLOSED" | "UNCONN" => "CLOSE",
        "LISTENING" => "LISTEN",
        other => other,
    };
    TcpState::ALL
        .into_iter()
        .find(|state| state.name() == alias)
        .ok_or_else(|| ExplainError::UnknownState(name.trim().to_owned()))
}

pub fn state(state: TcpState) -> &'static StateText {
    let state = match state {
        TcpState::NewSynRecv => TcpState::SynRecv,
        other => other,
    };
    STATES
        .iter()
        .find(|s| s.state == state)
        .expect("every shown state has an entry (tested)")
}

/// Renders the answer to `tcptrace explain QUERY`.
/// The states and transitions the words of a command line ask about: `CLOSE_WAIT LAST_ACK`
/// is two states, `FIN_WAIT2->CLOSE` and `FIN_WAIT2 -> CLOSE` one transition.
pub fn queries(words: &[String]) -> Vec<String> {
    let joined = words.join(" ");
    let mut arrows = joined.replace("->", " -> ");
    while arrows.contains("  ") {
        arrows = arrows.replace("  ", " ");
    }
    arrows
        .replace(" -> ", "->")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

pub fn explain(query: &str) -> Result<String, ExplainError> {
    if query.trim().eq_ignore_ascii_case("causes") {
        return Ok(cause_texts::page());
    }
    if let Some(text) = cause_texts::explain(query) {
        return Ok(text);
    }
    if let Some((from, to)) = query.split_once("->") {
        let (from, to) = (parse_state(from)?, parse_state(to)?);
        let t = TRANSITIONS
            .iter()
            .find(|t| t.from == from && t.to == to)
            .ok_or_else(|| ExplainError::NoSuchTransition(from.name().into(), to.name().into()))?;
        return Ok(format!(
            "{} -> {}  ({})\n\n{}\n",
            t.from,
            t.to,
            t.side,
            wrap(t.cause, 0)
        ));
    }
    let s = state(parse_state(query)?);
    let mut out = format!("{}  ({})\n\n{}\n", s.state, s.side, wrap(s.meaning, 0));
    for (title, text) in [
        ("When it piles up", s.piles_up),
        ("Timer", s.timer),
        ("Linux vs RFC 793", s.linux),
    ] {
        out.push_str(&format!("\n{title}:\n{}\n", wrap(text, 2)));
    }
    let next: Vec<_> = TRANSITIONS
        .iter()
        .filter(|t| t.from == s.state)
        .map(|t| t.to.name())
        .collect();
    if !next.is_empty() {
        out.push_str(&format!("\nLeads to: {}\n", next.join(", ")));
    }
    Ok(out)
}

/// A one-screen overview: every state and its one-line meaning.
pub fn overview() -> String {
    let mut out = String::from("TCP states, as Linux and netstat name them:\n\n");
    for s in STATES {
        let first = s.meaning.split(". ").next().unwrap_or(s.meaning);
        out.push_str(&format!(
            "  {:<12} {}\n",
            s.state.name(),
            first.trim_end_matches('.')
        ));
    }
    out.push_str(
        "\n`tcptrace explain STATE` or `tcptrace explain FROM->TO` for details, \
         `tcptrace explain causes` for the causes of abnormal closes.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_states_and_transitions_in_one_command_line() {
        let words = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            queries(&words("CLOSE_WAIT LAST_ACK")),
            ["CLOSE_WAIT", "LAST_ACK"]
        );
        assert_eq!(
            queries(&words("FIN_WAIT2 -> CLOSE TIME_WAIT")),
            ["FIN_WAIT2->CLOSE", "TIME_WAIT"]
        );
        assert_eq!(queries(&words("FIN_WAIT2->CLOSE")), ["FIN_WAIT2->CLOSE"]);
        assert_eq!(
            queries(&words("SYN_SENT-> ESTABLISHED")),
            ["SYN_SENT->ESTABLISHED"]
        );
    }
    use crate::census::counts::SHOWN;

    #[test]
    fn every_state_has_an_entry_and_every_field_says_something() {
        for shown in SHOWN {
            let s = state(shown);
            assert_eq!(s.state, shown);
            for text in [s.side, s.meaning, s.piles_up, s.timer, s.linux] {
                assert!(text.len() > 3, "{shown}");
            }
        }
        assert_eq!(state(TcpState::NewSynRecv).state, TcpState::SynRecv);
        assert_eq!(STATES.len(), SHOWN.len());
    }

    #[test]
    fn the_operator_facts_are_there() {
        assert!(
            explain("CLOSE_WAIT")
                .unwrap()
                .contains("application does not close")
        );
        assert!(explain("time_wait").unwrap().contains("60 s"));
        assert!(explain("FIN_WAIT2").unwrap().contains("tcp_fin_timeout"));
        assert!(explain("SYN_RECV").unwrap().contains("request socket"));
    }

    #[test]
    fn names_are_accepted_as_netstat_ss_and_the_kernel_spell_them() {
        for (name, state) in [
            ("estab", TcpState::Established),
            ("NEW_SYN_RECV", TcpState::SynRecv),
            ("fin-wait-2", TcpState::FinWait2),
            (" listen ", TcpState::Listen),
            ("CLOSED", TcpState::Close),
        ] {
            assert_eq!(parse_state(name), Ok(state), "{name}");
        }
    }

    #[test]
    fn transitions_explain_and_unknown_input_is_an_error() {
        let text = explain("FIN_WAIT2->CLOSE").unwrap();
        assert!(text.starts_with("FIN_WAIT2 -> CLOSE  ("), "{text}");
        assert!(text.contains("timewait socket"));
        assert_eq!(
            explain("LISTEN->TIME_WAIT"),
            Err(ExplainError::NoSuchTransition(
                "LISTEN".into(),
                "TIME_WAIT".into()
            ))
        );
        let err = explain("SYN_WAIT").unwrap_err().to_string();
        assert!(
            err.starts_with("unknown TCP state `SYN_WAIT` (try one of: LISTEN,"),
            "{err}"
        );
        assert!(explain("FOO->CLOSE").is_err());
    }

    #[test]
    fn an_embryonic_reset_points_to_where_transitions_shows_it() {
        let text = explain("SYN_RECV->LISTEN").unwrap();
        assert!(text.contains("EmbryonicRsts"), "{text}");
        assert!(text.contains("REQUEST-SOCKET FATES BY LISTENER"), "{text}");
    }

    #[test]
    fn every_transition_is_between_shown_states_and_unique() {
        for (i, t) in TRANSITIONS.iter().enumerate() {
            assert!(SHOWN.contains(&t.from) && SHOWN.contains(&t.to));
            assert!(
                !TRANSITIONS[..i]
                    .iter()
                    .any(|u| u.from == t.from && u.to == t.to),
                "{} -> {} twice",
                t.from,
                t.to
            );
        }
    }

    #[test]
    fn the_state_page_is_wrapped_and_lists_next_states() {
        let text = explain("LAST_ACK").unwrap();
        assert!(text.lines().all(|l| l.len() <= 88), "{text}");
        assert!(text.ends_with("Leads to: CLOSE\n"), "{text}");
        assert!(overview().contains("  CLOSE_WAIT   The peer sent its FIN"));
    }
}
