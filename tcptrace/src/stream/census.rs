//! The start-up census of the tracing commands: once the probe is attached and before tracing
//! is announced, the TCP sockets that already exist — in tcptrace's own network namespace and
//! in those of the other processes — and the processes holding them, so that the transitions
//! of sockets that predate tracing carry an owner too.
//!
//! After the attach, so that no listener slips between the census and the probe: one that
//! listens meanwhile is in the probe's map already, and its seed is dropped. A socket seen by
//! the probe before the census asked for its cookie carries none in that event: its later
//! transitions are attributed.

use crate::{
    census::seeds::{self, NamespaceSockets, STATES, Seeds},
    core::{event::Family, filter::EventFilter, seed::SocketSeed},
    kernel::{
        listeners::{self, Seeded},
        probe::Probe,
    },
    os::{
        clock,
        diag::{self, DiagError, DiagSocket, Families},
        netns::{self, Namespace},
        owners::Owners,
        procfs,
    },
};

/// What the census did, for the log (and the snapshot benchmark, which reads it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub namespaces: usize,
    /// Namespaces whose sockets could not be read (named in a warning each).
    pub namespaces_failed: usize,
    /// Sockets the filter kept, and those of them no process holds.
    pub considered: usize,
    pub without_holder: usize,
    /// Seeds of sockets, for the socket table.
    pub sockets_seeded: usize,
    /// Seeds of listening ports, for the probe's listener map, and what became of them.
    pub listener_ports: usize,
    pub listeners: Seeded,
    pub elapsed_ns: u64,
}

impl Report {
    /// One line for the log: what was found and how long it took.
    pub fn line(&self) -> String {
        format!(
            "start-up census: {} sockets in {} network namespace{}{}, {} without a process; \
             owners seeded for {} sockets and {} listening ports ({} recorded by the probe \
             meanwhile, {} refused), in {:.1} ms",
            self.considered,
            self.namespaces,
            if self.namespaces == 1 { "" } else { "s" },
            if self.namespaces_failed > 0 {
                format!(" ({} unreadable)", self.namespaces_failed)
            } else {
                String::new()
            },
            self.without_holder,
            self.sockets_seeded,
            self.listener_ports,
            self.listeners.recorded_since,
            self.listeners.failed,
            self.elapsed_ns as f64 / 1e6,
        )
    }
}

/// The namespaces to read: tcptrace's own first, then every other one a process is in; only
/// the one `--netns` names, when it does.
fn namespaces(wanted: Option<u32>) -> (Option<u32>, Vec<Namespace>) {
    let own = match procfs::own_netns() {
        Ok(own) => Some(own),
        Err(err) => {
            log::warn!("cannot read /proc/self/ns/net ({err}): the census skips it");
            None
        }
    };
    let others = netns::of_processes()
        .into_iter()
        .filter(|ns| Some(ns.inode) != own && wanted.is_none_or(|w| w == ns.inode))
        .collect();
    (own.filter(|own| wanted.is_none_or(|w| w == *own)), others)
}

fn dump(families: Families) -> Result<Vec<diag::SocketEntry>, DiagError> {
    let start_ns = clock::monotonic_ns();
    let mut socket = DiagSocket::open()?;
    let sockets = diag::census_dump(&mut socket, families, STATES)?.sockets;
    log::debug!(
        "start-up census: {} sockets from inet_diag in {:.1} ms",
        sockets.len(),
        clock::monotonic_ns().saturating_sub(start_ns) as f64 / 1e6
    );
    Ok(sockets)
}

/// Dumps every namespace to read, counting them (and those that failed) in `report`.
fn dump_namespaces(
    report: &mut Report,
    families: Families,
    wanted: Option<u32>,
) -> Vec<NamespaceSockets> {
    let mut found = Vec::new();
    let (own, others) = namespaces(wanted);
    if let Some(own) = own {
        report.namespaces += 1;
        match dump(families) {
            Ok(sockets) => found.push(NamespaceSockets {
                netns: own,
                sockets,
            }),
            Err(err) => {
                report.namespaces_failed += 1;
                log::warn!("start-up census of this network namespace: {err}");
            }
        }
    }
    for namespace in &others {
        report.namespaces += 1;
        match netns::run_in(namespace, || dump(families)) {
            Ok(Ok(sockets)) => found.push(NamespaceSockets {
                netns: namespace.inode,
                sockets,
            }),
            // A process that exited with its namespace: nothing left to trace there.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                report.namespaces -= 1;
            }
            Ok(Err(err)) => {
                report.namespaces_failed += 1;
                log::warn!(
                    "start-up census of network namespace {}: {err}",
                    namespace.inode
                );
            }
            Err(err) => {
                report.namespaces_failed += 1;
                log::warn!(
                    "start-up census: cannot enter network namespace {} ({}): {err}",
                    namespace.inode,
                    namespace.path.display()
                );
            }
        }
    }
    found
}

/// Takes the census, seeds the probe's listener map, and returns the seeds of the other
/// sockets (for the socket table) with what was done. Failures are warnings: tracing goes on,
/// with fewer owners.
pub fn take(probe: &mut Probe, filter: &EventFilter) -> (Vec<SocketSeed>, Report) {
    let start_ns = clock::monotonic_ns();
    let families = match filter.family {
        None => Families::BOTH,
        Some(Family::Inet) => Families::from_flags(true, false),
        Some(Family::Inet6) => Families::from_flags(false, true),
    };
    let mut report = Report::default();
    // The holders under /proc are read meanwhile, on a thread of their own: every socket any
    // process holds, since which ones the dumps find is not known yet.
    let (found, owners, dumped_ns, scanned_ns) = std::thread::scope(|scope| {
        let scan = scope.spawn(|| {
            let owners = Owners::scan_all();
            (owners, clock::monotonic_ns())
        });
        let found = dump_namespaces(&mut report, families, filter.netns);
        let dumped_ns = clock::monotonic_ns();
        let (owners, scanned_ns) = scan.join().unwrap_or_else(|_| {
            log::warn!("start-up census: the scan of /proc failed");
            (Owners::default(), clock::monotonic_ns())
        });
        (found, owners, dumped_ns, scanned_ns)
    });
    let joined_ns = clock::monotonic_ns();
    let Seeds {
        listeners: listener_seeds,
        sockets,
        considered,
        without_holder,
    } = seeds::seeds(&found, &owners, filter);
    report.considered = considered;
    report.without_holder = without_holder;
    report.sockets_seeded = sockets.len();
    report.listener_ports = listener_seeds.len();
    report.listeners = match listeners::seed(probe, &listener_seeds) {
        Ok(seeded) => seeded,
        Err(err) => {
            log::warn!(
                "cannot seed the listener map ({err}): children of listeners that predate \
                 tracing carry no owner"
            );
            Seeded {
                failed: listener_seeds.len(),
                ..Seeded::default()
            }
        }
    };
    let end_ns = clock::monotonic_ns();
    report.elapsed_ns = end_ns.saturating_sub(start_ns);
    let ms = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e6;
    log::debug!(
        "start-up census: {:.1} ms in inet_diag and, meanwhile, {:.1} ms under /proc; {:.1} ms \
         joining and seeding",
        ms(start_ns, dumped_ns),
        ms(start_ns, scanned_ns),
        ms(joined_ns, end_ns)
    );
    log::info!("{}", report.line());
    (sockets, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_one_line_with_its_time() {
        let report = Report {
            namespaces: 3,
            namespaces_failed: 1,
            considered: 18_004,
            without_holder: 2,
            sockets_seeded: 18_000,
            listener_ports: 2,
            listeners: Seeded {
                written: 1,
                recorded_since: 1,
                failed: 0,
            },
            elapsed_ns: 61_234_567,
        };
        assert_eq!(
            report.line(),
            "start-up census: 18004 sockets in 3 network namespaces (1 unreadable), 2 without a \
             process; owners seeded for 18000 sockets and 2 listening ports (1 recorded by the \
             probe meanwhile, 0 refused), in 61.2 ms"
        );
    }
}
