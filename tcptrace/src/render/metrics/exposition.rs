//! What one scrape shows: the snapshot the event loop handed over, the census taken at the
//! scrape, and the namespaces' label values; plain data.

use std::sync::Arc;

use super::namespaces::NamespacesExport;
use crate::{aggregate::snapshot::Snapshot, census::Census, os::sysctl::PortRange};

/// What the event loop hands to the HTTP side, replaced whole at each of its ticks.
#[derive(Clone, Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    /// BPF programs attached by the probe.
    pub programs_attached: u32,
}

/// A listening socket's accept queue, from inet_diag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerQueue {
    pub port: u16,
    /// Connections waiting for accept() (inet_diag's `idiag_rqueue` of a listener).
    pub queued: u32,
    /// The queue's capacity, listen()'s backlog capped by `net.core.somaxconn`
    /// (`idiag_wqueue`).
    pub backlog: u32,
}

/// The census taken at a scrape: tcptrace's own network namespace.
#[derive(Clone, Debug)]
pub struct CensusFacts {
    pub census: Census,
    pub listeners: Vec<ListenerQueue>,
    pub port_range: Option<PortRange>,
}

/// Everything one scrape shows.
#[derive(Clone, Debug)]
pub struct Exposition {
    /// `None` until the probe is attached.
    pub stream: Option<Arc<Published>>,
    /// `None` when the last census failed (and said so in the log), or none finished yet.
    pub census: Option<Arc<CensusFacts>>,
    /// How old the census is: it began this long before the scrape's encoding.
    pub census_age: Option<std::time::Duration>,
    pub namespaces: NamespacesExport,
    /// Local ports that get a label value of their own (`--port-label`).
    pub labelled_ports: Vec<u16>,
    /// Process names told apart in the CLOSE_WAIT findings; the others are summed.
    pub max_processes: usize,
    pub version: &'static str,
    /// Connections the HTTP server turned away at its limit.
    pub connections_refused: u64,
}
