//! Command-line interface: flags, their validation, and the help text.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use tcptrace_ebpf::MAX_FILTER_PORTS;

use crate::{
    census::selection::Selection,
    core::{event::Family, filter::EventFilter, state::TcpState},
    os::diag::Families,
};

#[derive(Debug, Parser)]
#[command(
    name = "tcptrace",
    version,
    about = "Shows how this machine's TCP connections move through the TCP state diagram, live.",
    long_about = "Shows how this machine's TCP connections move through the TCP state diagram, live.\n\n\
        A kernel probe on the sock:inet_sock_set_state tracepoint streams every TCP state \
        transition; tcptrace decodes, filters and shows them. The tracing commands need root \
        (or CAP_BPF and CAP_PERFMON) and Linux 5.8 or later; `states`, `sockets` and `explain` \
        read socket snapshots (inet_diag) or print text, and need neither."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every TCP state transition as it happens, one line each.
    #[command(after_help = TRACE_EXAMPLES)]
    Trace(TraceArgs),
    /// Count TCP sockets per state (a snapshot through inet_diag), with findings.
    #[command(after_help = STATES_EXAMPLES)]
    States(StatesArgs),
    /// List TCP sockets like `netstat -tanpo`, with netstat's timer column.
    #[command(after_help = SOCKETS_EXAMPLES)]
    Sockets(SocketsArgs),
    /// Explain a TCP state or a transition: what it means, who passes through it, what to check.
    #[command(after_help = EXPLAIN_EXAMPLES)]
    Explain(ExplainArgs),
    /// Aggregate every transition along the client and server paths, with live time-in-state
    /// histograms, abnormal closes and their causes.
    #[command(after_help = TRANSITIONS_HELP)]
    Transitions(TransitionsArgs),
    /// Write the raw transition stream to a file, for `trace --replay` and
    /// `transitions --replay` (anywhere, without root).
    #[command(after_help = RECORD_HELP)]
    Record(RecordArgs),
    /// Serve the transitions aggregation and the sockets per state as Prometheus metrics
    /// over HTTP (OpenMetrics, Prometheus text, protobuf with native histograms).
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
}

/// Bad input found after the arguments were parsed (an address that cannot be listened on):
/// exits 2, as clap does for bad flags.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exporter's own port: none of node_exporter's (9100), ebpf_exporter's (9435),
/// hubble's (9965), retina's (10093) or inspektor-gadget's (2224).
pub const EXPORT_PORT: u16 = 10427;

const EXPORT_HELP: &str = "\
Endpoints:
  /metrics   the metrics, in the format the scraper's Accept header asks for: protobuf with
             native histograms (Prometheus with --enable-feature=native-histograms),
             OpenMetrics 1.0.0, or Prometheus text 0.0.4 (the default)
  /          a landing page
  /healthz   200 once the probe is attached, 503 before

The transitions are aggregated continuously, with the filters of `transitions`, and handed to
the HTTP server every --refresh seconds: a scrape reads the last snapshot and never waits on
the event loop. The sockets per state and the findings are counted from an inet_diag snapshot
of tcptrace's network namespace taken at each scrape. Every metric, its labels and its
cardinality bound: README, \"Monitoring a fleet\".

Examples:
  tcptrace export                               http://127.0.0.1:10427/metrics
  tcptrace export --listen 0.0.0.0:10427        reachable from other hosts
  tcptrace export --port-label 80,443           accept-queue series for these listeners";

impl Command {
    /// `-v`s given: only the commands that load the probe have the flag.
    pub fn verbose(&self) -> u8 {
        match self {
            Self::Trace(args) => args.verbosity.verbose,
            Self::Transitions(args) => args.verbosity.verbose,
            Self::Record(args) => args.verbosity.verbose,
            Self::States(args) => args.verbosity.verbose,
            Self::Export(args) => args.verbosity.verbose,
            Self::Sockets(_) | Self::Explain(_) => 0,
        }
    }
}

/// Diagnostics of the commands that load the probe.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Verbosity {
    /// Show more diagnostics (-v: the kernel probe's log and info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

const RECORD_HELP: &str = "\
The file holds every event as the probe delivered it, the kernel's counters at the start, every
second and at the end, and what a replay needs to print exactly what the live command would
have printed: the recording host's kernel release, clock and network namespace. Its layout is
versioned (see the README); a file from a newer tcptrace is refused.

Only the filters the kernel applies are recorded (-4/-6, --lport, --rport); --pid, --comm and
--netns are applied when replaying. The cause tracepoints (resets, retransmissions) are always
recorded.

Examples:
  tcptrace record --output web.tcptrace --duration 60 --lport 443
  tcptrace transitions --replay web.tcptrace --json
  tcptrace trace --replay web.tcptrace --comm nginx";

const STATES_EXAMPLES: &str = "\
Every TCP socket of this network namespace, IPv4 and IPv6, is read from the kernel through
NETLINK_SOCK_DIAG (as `ss` does), including TIME_WAIT and half-open request sockets, which are
counted as SYN_RECV as netstat shows them.

Findings under the table (`!` a risk, `-` information):
  CLOSE_WAIT      who holds sockets whose peer closed, and for how long: a leak once older than
                  --close-wait-age (60 s); children still in an accept queue are \"not yet
                  accepted by PID/COMM\" of the listener
  accept queue    listeners with connections waiting for accept(): queue against backlog
                  (full past it: the kernel drops new connections), with the namespace's
                  ListenOverflows and ListenDrops (since boot, or since the last snapshot of
                  --watch)
  SYN cookies     SyncookiesSent/Recv/Failed and SYNs dropped for a full SYN queue, read
                  against net.ipv4.tcp_syncookies (1: the SYN queue overflowed; 2: always sent)
  TIME_WAIT       the busiest destination's ports against net.ipv4.ip_local_port_range, and
                  whether net.ipv4.tcp_tw_reuse lets connect() reuse them
  SYN_RECV        half-open connections per listening port and their growth

Examples:
  tcptrace states                       counts per state
  tcptrace states --by process          per process (needs root to see every process)
  tcptrace states --by port --watch 5   per service port, redrawn every 5 s with changes
  tcptrace states --json                one JSON object";

const SOCKETS_EXAMPLES: &str = "\
Timer column (-o), as netstat prints it: KIND (SECONDS/RETRANSMITS/PROBES)
  off        no timer pending
  on         retransmission timer (data, FIN or SYN-ACK not acknowledged yet)
  keepalive  keepalive timer (SO_KEEPALIVE), or an orphan's FIN_WAIT2 timer
  timewait   TIME_WAIT expiry (60 s on Linux)
  probe      zero-window probe timer (the peer advertises no receive room)
SECONDS until the timer fires; RETRANSMITS so far; PROBES keepalive or zero-window probes sent.

Examples:
  tcptrace sockets -o                         every socket with its timer
  tcptrace sockets --state CLOSE_WAIT         who holds CLOSE_WAIT sockets
  tcptrace sockets --state SYN_RECV --lport 443
  tcptrace sockets --pid 1234 --json";

const EXPLAIN_EXAMPLES: &str = "\
Examples:
  tcptrace explain                        every state in one line
  tcptrace explain CLOSE_WAIT
  tcptrace explain 'FIN_WAIT2->CLOSE'
  tcptrace explain CLOSE_WAIT LAST_ACK    several, one after the other
  tcptrace explain causes                 the causes of abnormal closes and their timers
  tcptrace explain keepalive_timeout      one cause: how it is told, what to check";

const TRANSITIONS_HELP: &str = "\
Tables (redrawn each interval on a terminal, printed one after the other otherwise):
  CLIENT PATH    sockets opened actively (CLOSE -> SYN_SENT), including how they closed
  SERVER PATH    accepted sockets (LISTEN -> SYN_RECV), including how they closed; a server
                 that closes first shows ESTABLISHED -> FIN_WAIT1 here
  LISTENERS      CLOSE -> LISTEN -> CLOSE
  FIRST SEEN MID-LIFE  sockets that predate tracing (or were forgotten): counted, not guessed
  ABNORMAL       closes from SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT1, CLOSE_WAIT, and from
                 FIN_WAIT2, CLOSING or LAST_ACK after a reset or with an error, with their
                 cause, told from what the kernel knew at the close (the socket's error, its
                 timers' counts, its resets):
                   refused            the connect was refused (ECONNREFUSED: a reset in
                                      SYN_SENT, or ICMP port unreachable)
                   reset_received     the peer reset the connection
                   reset_sent         this side aborted it (SO_LINGER 0, unread data, …),
                                      with the kernel's reason on Linux 6.10 and later
                   timeout            a timer gave up, with which one (syn_retries,
                                      retransmissions, user_timeout, orphan_retries,
                                      zero_window_probes, fin_wait2_timeout)
                   keepalive_timeout  the keepalive probes went unanswered
                   connect_abandoned  the application closed a connect in progress
                   other              none of these could be told
                 and how many closed after N retransmissions (`tcptrace explain causes`)
  REQUEST SOCKETS  half-open passive connections, from the kernel's counters: counted, without
                 latency
  REQUEST-SOCKET FATES BY LISTENER  the same fates by listener (address:port, owner) and
                 peer, from the packets the kernel drops for them (skb:kfree_skb): EMBRYONIC
                 (a reset killed a request socket: SYN_RECV -> LISTEN on RST), OVERFLOW (the
                 final ACK found the accept queue full: no child), CLOSED (a SYN to a port
                 nothing listens on: the server's side of a refused connect). Not seen: SYNs
                 refused on a full accept queue (consumed, not dropped), SYN cookies. Shown once
                 one is seen; a kernel whose kfree_skb cannot be traced says so in one warning
  KERNEL AS WITNESS  the kernel's own counters against the stream, over the same window, in
                 tcptrace's network namespace: TcpActiveOpens = CLOSE -> SYN_SENT,
                 TcpPassiveOpens = LISTEN -> SYN_RECV, TcpEstabResets = ESTABLISHED -> CLOSE +
                 CLOSE_WAIT -> CLOSE; 'agrees' or 'differs by N' (not comparable with filters)
  NETWORK NAMESPACES  per namespace (inode, as in readlink /proc/PID/ns/net): transitions,
                 active and passive opens, abnormal closes; shown once a second one appears
Columns: COUNT since start, +NEW this interval, RATE/s, P50 P90 P99 MAX of the time spent in
the from-state, and a bar of that time per decade from under 10us to over 1000s.

TIME_WAIT: Linux never reports it through this tracepoint. A socket handed to a timewait
socket goes FIN_WAIT2 -> CLOSE or CLOSING -> CLOSE (an orphaned socket right after FIN_WAIT1 ->
FIN_WAIT2). These are shown as -> TIME_WAIT*, marked inferred, unless a reset was seen on the
socket: then they are abnormal closes.

SYN_RECV: an accepted socket appears at the final ACK of the handshake and leaves SYN_RECV
microseconds later. Its SYN_RECV time is not the handshake time; the handshake lives on the
request socket, whose fate is in REQUEST SOCKETS.

Lost events, sockets forgotten at --max-sockets (table full), and invalid records
are always shown in the header and the summary. On Ctrl-C or at the end of --duration: a
summary with a log2 histogram per transition, its exemplars and the most frequent paths.

Exemplars (--exemplars N, default 3): per transition, the N sockets that spent the longest in
the from-state and the N most recent: local and remote address and port, pid/comm, network
namespace, time in the from-state, cause (abnormal closes).
Breakdowns (--by port|process|remote|netns): per transition and over all, the --top busiest
keys and the rest summed as \"other\". Memory stays bounded: N exemplars of each kind per
transition; the first 1024 distinct keys per transition and kind are counted one by one,
later ones are summed as other (all transitions' breakdown is their sum).

On a terminal the view is full-screen (keys: arrows or j/k select, Enter detail, Tab next
view, b breakdown, s sort, p pause, ? help, q or Ctrl-C quit); on quit the terminal is
restored and the summary printed. --plain, a pipe or a file get the text tables instead.

Examples:
  tcptrace transitions                          full-screen live view (a terminal)
  tcptrace transitions --plain                  the text tables, redrawn every second
  tcptrace transitions --by process --duration 30 > report
                                                who made which transitions, and examples
  tcptrace transitions --interval 5 --lport 443 HTTPS connections, every 5 seconds
  tcptrace transitions --duration 60 > report   one minute, its summary as plain text
  tcptrace transitions --json --interval 1 --duration 10
                                                one JSON object per second, the last with
                                                \"final\": true";

const TRACE_EXAMPLES: &str = "\
Columns:
  TIME        local time of the transition
  PID, COMM   the socket's owner: the process that connected, listened or closed it (an
              accepted socket inherits its listener's). For sockets that predate tracing, the
              process holding it when tracing started (a census at start, as `ss -p`);
              PID+N: PID and N more processes hold it or its listener (a pre-forked server),
              until the one that accepted it makes a syscall on it; '-' when unknown
  LOCAL, REMOTE  addresses and ports; IPv4-mapped IPv6 addresses print as IPv4
  OLD -> NEW  the transition, with netstat's state names
  MS          milliseconds spent in OLD; '-' when the socket was first seen in it

Linux never reports TIME_WAIT here: a closing socket goes FIN_WAIT2 -> CLOSE (or CLOSING ->
CLOSE) when the kernel hands it to a timewait socket. Half-open passive connections live as
request sockets and appear only once the handshake completes (LISTEN -> SYN_RECV).

With --json, every -> CLOSE carries what the kernel knew as the socket closed: `close.error`
(ETIMEDOUT, ECONNREFUSED, ECONNRESET, …; null when none), `soft_error`, `retransmits` (the
retransmission timeouts in a row), `probes_out` (keepalive or zero-window probes), `orphan`
(already closed by its owner), `keepalive`, `user_timeout` (TCP_USER_TIMEOUT set).
`tcptrace transitions` tells the causes of abnormal closes from them (`tcptrace explain causes`).

Examples:
  tcptrace trace                        every transition on this machine
  tcptrace trace --lport 80,443         connections to or from local ports 80 and 443
  tcptrace trace -6 --rport 5432        IPv6 connections to PostgreSQL servers
  tcptrace trace --comm nginx           sockets owned by nginx
  tcptrace trace --json --duration 10   ten seconds of JSON lines, one per transition";

/// Filters shared by the tracing commands.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// IPv4 only.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// IPv6 only.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Local ports to show, comma separated (at most 16).
    #[arg(short = 'L', long, value_name = "PORT[,PORT...]", value_parser = parse_ports)]
    pub lport: Option<Ports>,
    /// Remote ports to show, comma separated (at most 16).
    #[arg(short = 'D', long, value_name = "PORT[,PORT...]", value_parser = parse_ports)]
    pub rport: Option<Ports>,
    /// Only sockets owned by this process id. Whole sockets: from the first transition it
    /// owns, every later transition of the socket is shown, whoever owns it then.
    #[arg(short = 'p', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Option<u32>,
    /// Only sockets owned by processes with this command name (exact, as in /proc/PID/comm).
    /// Whole sockets, as --pid.
    #[arg(long, value_name = "NAME", value_parser = parse_comm)]
    pub comm: Option<String>,
    /// Only sockets of this network namespace: its inode, as in `readlink /proc/PID/ns/net`
    /// (`net:[4026531840]`; either form is accepted).
    #[arg(long, value_name = "INODE", value_parser = parse_netns)]
    pub netns: Option<u32>,
}

impl FilterArgs {
    pub fn to_filter(&self) -> EventFilter {
        EventFilter {
            family: if self.ipv4 {
                Some(Family::Inet)
            } else if self.ipv6 {
                Some(Family::Inet6)
            } else {
                None
            },
            lports: self.lport.clone().map(|p| p.0).unwrap_or_default(),
            rports: self.rport.clone().map(|p| p.0).unwrap_or_default(),
            pid: self.pid,
            comm: self.comm.clone(),
            netns: self.netns,
        }
    }

    /// The sockets of a snapshot these flags select, in the given states (all when `None`).
    pub fn selection(&self, states: Option<&StateList>) -> Selection {
        let f = self.to_filter();
        Selection {
            states: states.map(|s| s.0.clone()).unwrap_or_default(),
            family: f.family,
            lports: f.lports,
            rports: f.rports,
            pid: f.pid,
            comm: f.comm,
        }
    }

    /// The address families a snapshot dumps.
    pub fn families(&self) -> Families {
        Families::from_flags(self.ipv4, self.ipv6)
    }
}

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Fixed columns wide enough for any IPv6 address and the full command name, the time of
    /// day to the microsecond and the time in the old state in milliseconds (as tcpstates
    /// prints them). Without it the table fits 80 columns for IPv4: its columns grow with what
    /// they show.
    #[arg(short = 'w', long, conflicts_with = "json")]
    pub wide: bool,
    /// Start each line with the time of day, to the millisecond (always there with --wide).
    #[arg(short = 'T', long, conflicts_with_all = ["json", "wide"])]
    pub time: bool,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Read the transitions from a file of `tcptrace record` instead of the kernel (no root
    /// needed); prints what the live command would have printed.
    #[arg(long, value_name = "FILE", conflicts_with = "duration")]
    pub replay: Option<PathBuf>,
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// The file to write (overwritten if it exists).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Stop after this many seconds (fractions allowed); else at Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StatesArgs {
    /// Group the counts: by service port (the local port of a listener, else the remote port),
    /// by owning process, or by remote address.
    #[arg(long, value_enum)]
    pub by: Option<crate::census::GroupBy>,
    /// Take a snapshot every SECS seconds (2 when omitted) and show the change since the last.
    /// When the probe loads (root), the counts are kept current from the transition stream in
    /// between (redrawn every second; TIME_WAIT from hand-overs, less those past 60 s), each
    /// snapshot is checked against what the stream allows while it was dumped (STREAM:
    /// agrees, differs by N, or unverified when transitions were lost), and CLOSE_WAIT findings
    /// say how long the sockets have been there.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2",
          value_parser = parse_duration, allow_negative_numbers = true)]
    pub watch: Option<Duration>,
    /// With --watch: stop after this many snapshots.
    #[arg(long, value_name = "N", requires = "watch",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// CLOSE_WAIT sockets held at least this long (fractions allowed) are a leak; younger
    /// ones are a server closing in its own time. 60 by default: a server closes a connection
    /// whose peer closed within milliseconds of reading the end of file, a busy one within
    /// seconds; a minute without close() is code that never will. The age is exact when
    /// tracing saw the socket enter CLOSE_WAIT, else a lower bound (the time since the last
    /// ACK the kernel received, shown as "≥").
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_duration,
          allow_negative_numbers = true)]
    pub close_wait_age: Duration,
    /// One JSON object per snapshot instead of a table.
    #[arg(long)]
    pub json: bool,
    /// With --watch on a terminal: the text redrawn in place, instead of the full-screen view
    /// (its states tab; q quits).
    #[arg(long, requires = "watch", conflicts_with = "json")]
    pub plain: bool,
    /// Only sockets in these states (netstat names, comma separated).
    #[arg(long, value_name = "STATE[,STATE...]", value_parser = parse_states)]
    pub state: Option<StateList>,
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TransitionsArgs {
    /// Seconds between two redraws (fractions allowed). Default: every second on a terminal;
    /// otherwise (a pipe, a file) only the final summary unless this is given.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub interval: Option<Duration>,
    /// Stop after this many seconds (fractions allowed) and print the summary.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// One JSON object per interval (JSON Lines), the last with "final": true.
    #[arg(long)]
    pub json: bool,
    /// Sockets followed at once; past it the oldest is forgotten (and counted).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = parse_max_sockets)]
    pub max_sockets: usize,
    /// Path signatures shown, and keys per breakdown (the rest summed as "other").
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Break every transition, and all of them, down by service port, owning process, remote
    /// address or network namespace (top --top keys, the rest as "other"), in the tables and
    /// the JSON.
    #[arg(long, value_enum, value_name = "KIND")]
    pub by: Option<crate::aggregate::breakdowns::BreakdownKind>,
    /// Example sockets kept per transition: its N slowest (longest in the from-state) and N
    /// most recent, shown in the summary and the JSON (0 to 100).
    #[arg(long, value_name = "N", default_value_t = crate::aggregate::exemplars::DEFAULT_EXEMPLARS,
          value_parser = parse_exemplars)]
    pub exemplars: usize,
    /// Plain text redrawn in place on a terminal, instead of the full-screen view.
    #[arg(long, conflicts_with = "json")]
    pub plain: bool,
    /// Read the transitions from a file of `tcptrace record` instead of the kernel (no root
    /// needed); prints what the live command would have printed (on a terminal: the
    /// full-screen view of the whole recording, until q).
    #[arg(long, value_name = "FILE", conflicts_with = "duration")]
    pub replay: Option<PathBuf>,
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Address and port to serve on. Default: loopback only; other hosts need it explicit
    /// (e.g. 0.0.0.0:10427).
    #[arg(long, value_name = "ADDR:PORT", default_value_t = SocketAddr::from(([127, 0, 0, 1], EXPORT_PORT)),
          value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// TLS, client certificates and basic auth, in the web configuration format of
    /// Prometheus's exporter-toolkit (as node_exporter reads it): `tls_server_config` with
    /// `cert_file` and `key_file` (PEM, relative to the file's folder;
    /// `min_version`/`max_version` TLS12 or TLS13; `client_auth_type` RequireAndVerifyClientCert or
    /// VerifyClientCertIfGiven with `client_ca_file`, the PEM CAs that client certificates
    /// must chain to, and `client_allowed_sans`) and `basic_auth_users` (user: bcrypt hash, e.g. from `htpasswd -nBC 10
    /// USER`). Unknown keys, and exporter-toolkit's that tcptrace does not implement, are
    /// refused by name.
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<std::path::PathBuf>,
    /// Seconds between two snapshots handed to the HTTP server (fractions allowed): how
    /// fresh a scrape's transitions are.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration)]
    pub refresh: Duration,
    /// Stop after this many seconds (fractions allowed); else at Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Network namespaces with a label value of their own; the rest are counted under
    /// netns="other".
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub netns_limit: usize,
    /// Seconds after which a labelled namespace with no process and no transition is
    /// dropped from the metrics.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_duration)]
    pub netns_ttl: Duration,
    /// Listening ports whose accept queue gets series of its own (a port label), comma
    /// separated; the others count only in the fullest-queue gauge.
    #[arg(long, value_name = "PORT[,PORT...]", value_parser = parse_ports)]
    pub port_label: Option<Ports>,
    /// HTTP connections served at once; past it a connection gets a 503 and is closed.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = parse_max_sockets)]
    pub max_connections: usize,
    /// Sockets followed at once; past it the oldest is forgotten (and counted).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = parse_max_sockets)]
    pub max_sockets: usize,
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("`{text}` is not an address and port (e.g. 127.0.0.1:{EXPORT_PORT} or [::1]:{EXPORT_PORT})")
    })
}

#[derive(Debug, Clone, Args)]
pub struct SocketsArgs {
    /// Show netstat's Timer column: kind (seconds left/retransmissions/probes).
    #[arg(short = 'o', long)]
    pub timers: bool,
    /// One JSON object per socket (always with the timer).
    #[arg(long)]
    pub json: bool,
    /// Only sockets in these states (netstat names, comma separated).
    #[arg(long, value_name = "STATE[,STATE...]", value_parser = parse_states)]
    pub state: Option<StateList>,
    /// Listening sockets only (`netstat -l`): the same as `--state LISTEN`.
    #[arg(short = 'l', long, conflicts_with = "state")]
    pub listening: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

impl SocketsArgs {
    /// The states asked for: `--state`, or LISTEN with `-l`.
    pub fn states(&self) -> Option<StateList> {
        if self.listening {
            Some(StateList(vec![TcpState::Listen]))
        } else {
            self.state.clone()
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// States (CLOSE_WAIT) or transitions (FIN_WAIT2->CLOSE, or FIN_WAIT2 -> CLOSE), one or
    /// several; `causes` (the causes of abnormal closes) or one cause or timer (timeout,
    /// syn_retries); nothing: all states.
    // Hyphen values: the `->` of a transition written with spaces is not a flag.
    #[arg(value_name = "STATE | FROM->TO", allow_hyphen_values = true)]
    pub query: Vec<String>,
}

/// A validated list of states, netstat names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateList(pub Vec<crate::core::state::TcpState>);

pub fn parse_states(text: &str) -> Result<StateList, String> {
    let mut states = Vec::new();
    for part in text.split(',') {
        let state = crate::render::explain::parse_state(part).map_err(|e| e.to_string())?;
        if !states.contains(&state) {
            states.push(state);
        }
    }
    Ok(StateList(states))
}

fn parse_exemplars(text: &str) -> Result<usize, String> {
    let max = crate::aggregate::exemplars::MAX_EXEMPLARS;
    match text.trim().parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "`{text}` is not a number of exemplars (0 to {max})"
        )),
    }
}

fn parse_max_sockets(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{text}` is not a number of sockets (1 or more)")),
    }
}

/// A validated, de-duplicated list of ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(pub Vec<u16>);

pub fn parse_ports(text: &str) -> Result<Ports, String> {
    let mut ports = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let port: u16 = part
            .parse()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("`{part}` is not a port (1-65535)"))?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    if ports.len() > MAX_FILTER_PORTS {
        return Err(format!(
            "at most {MAX_FILTER_PORTS} ports, got {}",
            ports.len()
        ));
    }
    Ok(Ports(ports))
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("`{text}` must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse_netns(text: &str) -> Result<u32, String> {
    let inode = text
        .trim()
        .strip_prefix("net:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(text.trim());
    inode
        .parse()
        .ok()
        .filter(|inode| *inode != 0)
        .ok_or_else(|| format!("`{text}` is not a network namespace inode (e.g. 4026531840)"))
}

fn parse_comm(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 15 {
        return Err("a command name has 1 to 15 bytes (the kernel truncates longer ones)".into());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn states_and_sockets_flags() {
        let cli = Cli::try_parse_from([
            "tcptrace",
            "states",
            "--by",
            "process",
            "--watch",
            "--count",
            "2",
            "--state",
            "time_wait,ESTAB",
        ])
        .unwrap();
        let Command::States(args) = cli.command else {
            panic!("not states")
        };
        assert_eq!(args.by, Some(crate::census::GroupBy::Process));
        assert_eq!(args.watch, Some(Duration::from_secs(2)));
        assert_eq!(args.count, Some(2));
        assert_eq!(
            args.state,
            Some(StateList(vec![
                crate::core::state::TcpState::TimeWait,
                crate::core::state::TcpState::Established
            ]))
        );
        let cli = Cli::try_parse_from(["tcptrace", "sockets", "-o6", "--rport", "443"]).unwrap();
        let Command::Sockets(args) = cli.command else {
            panic!("not sockets")
        };
        assert!(args.timers && args.filter.ipv6);
        assert_eq!(args.filter.rport, Some(Ports(vec![443])));
    }

    #[test]
    fn ports_parse_and_validate() {
        assert_eq!(parse_ports("80"), Ok(Ports(vec![80])));
        assert_eq!(parse_ports("80, 443,80"), Ok(Ports(vec![80, 443])));
        assert!(parse_ports("0").unwrap_err().contains("not a port"));
        assert!(parse_ports("65536").unwrap_err().contains("not a port"));
        assert!(parse_ports("http").unwrap_err().contains("not a port"));
        assert!(parse_ports("80,").unwrap_err().contains("not a port"));
        let many: Vec<String> = (1..=17).map(|p| p.to_string()).collect();
        assert!(
            parse_ports(&many.join(","))
                .unwrap_err()
                .contains("at most 16")
        );
    }

    #[test]
    fn durations_parse_and_validate() {
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "abc", "inf", "NaN", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn netns_accepts_inode_or_readlink_form() {
        assert_eq!(parse_netns("4026531840"), Ok(4026531840));
        assert_eq!(parse_netns("net:[4026531840]"), Ok(4026531840));
        assert!(parse_netns("0").is_err());
        assert!(parse_netns("net:[x]").is_err());
    }

    #[test]
    fn flags_reach_the_filter() {
        let cli = Cli::try_parse_from([
            "tcptrace", "trace", "-6", "--lport", "80,443", "--rport", "5432", "--pid", "7",
            "--comm", "nginx",
        ])
        .unwrap();
        let Command::Trace(args) = cli.command else {
            panic!("not trace")
        };
        let filter = args.filter.to_filter();
        assert_eq!(filter.family, Some(Family::Inet6));
        assert_eq!(filter.lports, [80, 443]);
        assert_eq!(filter.rports, [5432]);
        assert_eq!(filter.pid, Some(7));
        assert_eq!(filter.comm.as_deref(), Some("nginx"));
    }

    #[test]
    fn bcc_style_short_flags() {
        let cli =
            Cli::try_parse_from(["tcptrace", "trace", "-L", "80,443", "-D", "5432", "-p", "7"])
                .unwrap();
        let Command::Trace(args) = cli.command else {
            panic!("not trace")
        };
        let filter = args.filter.to_filter();
        assert_eq!(
            (filter.lports, filter.rports, filter.pid),
            (vec![80, 443], vec![5432], Some(7))
        );
        let cli = Cli::try_parse_from(["tcptrace", "sockets", "-l"]).unwrap();
        let Command::Sockets(args) = cli.command else {
            panic!("not sockets")
        };
        assert_eq!(args.states().unwrap().0, [TcpState::Listen]);
        assert!(Cli::try_parse_from(["tcptrace", "sockets", "-l", "--state", "LISTEN"]).is_err());
    }

    #[test]
    fn verbose_only_where_the_probe_loads() {
        for command in ["trace", "transitions", "states"] {
            let cli = Cli::try_parse_from(["tcptrace", command, "-vv"]).unwrap();
            assert_eq!(cli.command.verbose(), 2, "{command}");
        }
        assert!(Cli::try_parse_from(["tcptrace", "sockets", "-v"]).is_err());
        // `explain` takes `->` as a word: `-v` is a query there, refused as no state.
        let cli = Cli::try_parse_from(["tcptrace", "explain", "FIN_WAIT2", "->", "CLOSE"]).unwrap();
        assert_eq!(cli.command.verbose(), 0);
    }

    #[test]
    fn transitions_flags() {
        let cli = Cli::try_parse_from(["tcptrace", "transitions"]).unwrap();
        let Command::Transitions(args) = cli.command else {
            panic!("not transitions")
        };
        // None: the output decides (a terminal is redrawn every second, a pipe gets the summary).
        assert_eq!(args.interval, None);
        assert_eq!(args.max_sockets, 1_000_000);
        assert!(!args.json && args.duration.is_none());
        let cli = Cli::try_parse_from([
            "tcptrace",
            "transitions",
            "--interval",
            "0.5",
            "--duration",
            "3",
            "--json",
            "--max-sockets",
            "10",
            "--lport",
            "80",
        ])
        .unwrap();
        let Command::Transitions(args) = cli.command else {
            panic!("not transitions")
        };
        assert_eq!(args.interval, Some(Duration::from_millis(500)));
        assert_eq!(args.duration, Some(Duration::from_secs(3)));
        assert!(args.json);
        assert_eq!(args.max_sockets, 10);
        assert_eq!(args.filter.to_filter().lports, [80]);
    }

    #[test]
    fn bad_flags_are_rejected() {
        for args in [
            &["tcptrace", "trace", "-4", "-6"][..],
            &["tcptrace", "trace", "--pid", "0"],
            &["tcptrace", "trace", "--pid", "x"],
            &["tcptrace", "trace", "--duration", "0"],
            &["tcptrace", "trace", "--comm", "a-name-longer-than-15"],
            &["tcptrace", "trace", "--lport", "99999"],
            &["tcptrace", "nope"],
            &["tcptrace", "states", "--by", "color"],
            &["tcptrace", "states", "--watch", "0"],
            &["tcptrace", "states", "--count", "3"],
            &["tcptrace", "sockets", "--state", "SYN_WAIT"],
            &["tcptrace", "sockets", "--lport", "0"],
            &["tcptrace", "transitions", "--interval", "0"],
            &["tcptrace", "transitions", "--max-sockets", "0"],
            &["tcptrace", "transitions", "--max-sockets", "many"],
            &["tcptrace", "transitions", "--duration", "-1"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
