//! What each cause of an abnormal close and each timer that gives up means, in our own words:
//! what the kernel knew that tells it apart, and what to check. Used by `tcptrace explain
//! causes` (and `tcptrace explain CAUSE`) and by the help of `transitions`.

use crate::{
    aggregate::causes::{Cause, Timer},
    render::wrap,
};

/// The explanation of one cause.
pub struct CauseText {
    pub cause: Cause,
    pub meaning: &'static str,
    /// How tcptrace tells it: what the kernel knew at the close.
    pub told_by: &'static str,
    pub check: &'static str,
}

/// The explanation of one timer of `timeout`.
pub struct TimerText {
    pub timer: Timer,
    pub meaning: &'static str,
}

pub const CAUSES: &[CauseText] = &[
    CauseText {
        cause: Cause::Refused,
        meaning: "The connect was refused: nothing listens on the port (the peer's kernel \
            answered the SYN with a reset), or an ICMP port unreachable came back.",
        told_by: "SYN_SENT -> CLOSE with the socket's error ECONNREFUSED, or a reset received \
            in SYN_SENT.",
        check: "The service is down or listens elsewhere; a firewall that rejects (rather than \
            drops) also refuses.",
    },
    CauseText {
        cause: Cause::ResetReceived,
        meaning: "The peer reset the connection: it aborted (SO_LINGER 0, close() with unread \
            data), crashed and restarted, or a middlebox reset it.",
        told_by: "The socket's error ECONNRESET (EPIPE in CLOSE_WAIT), set by the reset that \
            arrived, or a reset received seen on the socket.",
        check: "The peer's logs at that time; a load balancer or firewall with idle timeouts \
            shorter than the connection's idle times.",
    },
    CauseText {
        cause: Cause::ResetSent,
        meaning: "This side aborted the connection with a reset: SO_LINGER with timeout 0, \
            close() with unread data, an orphan dropped for lack of memory, a socket destroyed \
            by `ss -K`.",
        told_by: "No error on the socket, and a reset sent on it just before or right after \
            the close. On Linux 6.10 and later the kernel names the reset's reason \
            (tcp_abort_on_close: unread data, tcp_state: SO_LINGER 0 or the state required \
            it, tcp_abort_on_memory, …), shown beside the cause; before 6.10 none is shown.",
        check: "The application's close path: unread requests, SO_LINGER 0 set on purpose \
            (to avoid TIME_WAIT), or orphans over net.ipv4.tcp_max_orphans.",
    },
    CauseText {
        cause: Cause::Timeout,
        meaning: "A timer of the kernel gave up on the connection: the peer stopped answering \
            (dead host, a firewall dropping its packets, a broken path). Shown with the timer \
            and the retransmissions made: syn_retries, retransmissions, user_timeout, \
            orphan_retries, zero_window_probes, fin_wait2_timeout.",
        told_by: "The socket's error ETIMEDOUT (or the soft error the retries outlived, e.g. \
            EHOSTUNREACH), with the kernel's own retransmission count (icsk_retransmits) and \
            whether the socket was an orphan or had TCP_USER_TIMEOUT set; or, for an orphan in \
            FIN_WAIT2, the reset of its timer. Counted by nstat TcpExtTCPAbortOnTimeout.",
        check: "Reachability of the peer (`tcptrace sockets -o` shows retransmission timers \
            counting up); net.ipv4.tcp_syn_retries, tcp_retries2, tcp_orphan_retries, \
            tcp_fin_timeout, or the application's TCP_USER_TIMEOUT.",
    },
    CauseText {
        cause: Cause::KeepaliveTimeout,
        meaning: "The connection was idle with SO_KEEPALIVE on, and the keepalive probes went \
            unanswered: the peer vanished without a word (powered off, its network gone, a NAT \
            or firewall that forgot the connection).",
        told_by: "The socket's error ETIMEDOUT with keepalive probes out, after the reset the \
            keepalive timer sends as it gives up (its reason tcp_keepalive_timeout on Linux \
            6.10 and later). Not a reset_sent: the application did not abort.",
        check: "The peer's host and the path to it; tcp_keepalive_time, tcp_keepalive_intvl, \
            tcp_keepalive_probes (or TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) against the \
            idle timeouts of NATs and firewalls on the way.",
    },
    CauseText {
        cause: Cause::ConnectAbandoned,
        meaning: "The application closed its socket while its connect was still in progress: \
            its own connect timeout, a cancelled request, happy eyeballs keeping the other \
            address. The kernel had not given up.",
        told_by: "SYN_SENT -> CLOSE with no error on the socket and no reset: the kernel's own \
            give-ups (refused, timeout) always set one. nstat TcpAttemptFails does not count \
            these.",
        check: "The application's connect timeout against the destination's answer time; a \
            destination that drops SYNs makes both this and timeout.",
    },
    CauseText {
        cause: Cause::Other,
        meaning: "None of the above could be told: the close had another kernel error (a hard \
            ICMP error such as EHOSTUNREACH, ECONNABORTED from `ss -K`), or nothing was known \
            (a recording made before tcptrace read the kernel's close details, with neither a \
            reset nor a retransmission seen).",
        told_by: "What remains.",
        check: "`tcptrace trace --json` shows the kernel's error of each close (`close.error`).",
    },
];

pub const TIMERS: &[TimerText] = &[
    TimerText {
        timer: Timer::SynRetries,
        meaning: "SYN_SENT: the SYN was retransmitted net.ipv4.tcp_syn_retries times (or \
            TCP_SYNCNT), about 127 s by default, without an answer.",
    },
    TimerText {
        timer: Timer::Retransmissions,
        meaning: "Data (or a FIN) went unacknowledged through net.ipv4.tcp_retries2 \
            retransmission timeouts (15, some 15 minutes, by default).",
    },
    TimerText {
        timer: Timer::UserTimeout,
        meaning: "TCP_USER_TIMEOUT was set on the socket, and data (or the SYN) stayed \
            unacknowledged that long: the application's bound, not the kernel's retry count.",
    },
    TimerText {
        timer: Timer::OrphanRetries,
        meaning: "The application had closed the socket (an orphan) and its FIN or data went \
            unacknowledged through net.ipv4.tcp_orphan_retries.",
    },
    TimerText {
        timer: Timer::ZeroWindowProbes,
        meaning: "The peer kept its receive window closed, and the zero-window probes went \
            unanswered through net.ipv4.tcp_retries2 (an orphan: tcp_orphan_retries).",
    },
    TimerText {
        timer: Timer::FinWait2,
        meaning: "An orphan waited in FIN_WAIT2 for the peer's FIN longer than \
            net.ipv4.tcp_fin_timeout; the kernel reset it.",
    },
];

/// The cause or timer of that name, explained; `None` for another word.
pub fn explain(name: &str) -> Option<String> {
    let name = name.trim().to_ascii_lowercase().replace('-', "_");
    if let Some(c) = CAUSES.iter().find(|c| c.cause.name() == name) {
        let mut out = format!(
            "{}  (cause of an abnormal close)\n\n{}\n",
            c.cause.name(),
            wrap(c.meaning, 0)
        );
        out.push_str(&format!("\nTold by:\n{}\n", wrap(c.told_by, 2)));
        out.push_str(&format!("\nWhat to check:\n{}\n", wrap(c.check, 2)));
        if c.cause == Cause::Timeout {
            out.push_str("\nTimers:\n");
            for t in TIMERS {
                out.push_str(&format!("  {}\n{}\n", t.timer.name(), wrap(t.meaning, 4)));
            }
        }
        return Some(out);
    }
    TIMERS.iter().find(|t| t.timer.name() == name).map(|t| {
        format!(
            "{}  (timer of a timeout)\n\n{}\n",
            t.timer.name(),
            wrap(t.meaning, 0)
        )
    })
}

/// Every cause, one paragraph each, and the timers of `timeout`.
pub fn page() -> String {
    let mut out = wrap(
        "Causes of abnormal closes, as `tcptrace transitions` tells them from what the kernel \
         knew at the close:",
        0,
    );
    out.push_str("\n\n");
    for c in CAUSES {
        out.push_str(&format!("  {}\n{}\n\n", c.cause.name(), wrap(c.meaning, 4)));
    }
    out.push_str("Timers of a timeout:\n\n");
    for t in TIMERS {
        out.push_str(&format!("  {}\n{}\n\n", t.timer.name(), wrap(t.meaning, 4)));
    }
    out.push_str("`tcptrace explain CAUSE` for how each is told and what to check.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_and_timer_is_explained_once() {
        for cause in Cause::ALL {
            assert_eq!(
                CAUSES.iter().filter(|c| c.cause == cause).count(),
                1,
                "{cause:?}"
            );
            let text = explain(cause.name()).unwrap();
            assert!(text.starts_with(&format!("{}  (", cause.name())), "{text}");
            assert!(text.lines().all(|l| l.len() <= 88), "{text}");
        }
        for timer in Timer::ALL {
            assert_eq!(TIMERS.iter().filter(|t| t.timer == timer).count(), 1);
            assert!(explain(timer.name()).is_some());
            // The timeout's page lists every timer.
            assert!(explain("timeout").unwrap().contains(timer.name()));
        }
        assert!(explain("FIN_WAIT2").is_none());
    }

    #[test]
    fn the_page_names_every_cause_and_the_facts_that_tell_them_apart() {
        let text = page();
        assert!(text.lines().all(|l| l.len() <= 88), "{text}");
        for cause in Cause::ALL {
            assert!(text.contains(&format!("  {}\n", cause.name())), "{cause:?}");
        }
        assert!(
            explain("connect_abandoned")
                .unwrap()
                .contains("TcpAttemptFails")
        );
        assert!(
            explain("keepalive-timeout")
                .unwrap()
                .contains("tcp_keepalive_timeout")
        );
        assert!(explain("reset_sent").unwrap().contains("6.10"));
    }
}
