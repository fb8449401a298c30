//! What the user asked to see: compiled into the kernel's load-time filter where the kernel can
//! decide, and checked again here on complete transitions (ports the kernel did not know yet,
//! owners).

use tcptrace_ebpf::{Filter, MAX_FILTER_PORTS};

use crate::core::event::{Family, PacketDrop, Transition};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub family: Option<Family>,
    pub lports: Vec<u16>,
    pub rports: Vec<u16>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub netns: Option<u32>,
}

impl EventFilter {
    /// The part the kernel applies before an event is reserved in the ring buffer.
    pub fn kernel(&self) -> Filter {
        let mut filter = Filter {
            family: match self.family {
                None => 0,
                Some(Family::Inet) => AF_INET,
                Some(Family::Inet6) => AF_INET6,
            },
            ..Filter::default()
        };
        // The CLI caps both lists at MAX_FILTER_PORTS.
        for (slot, port) in filter.lports.iter_mut().zip(&self.lports) {
            *slot = *port;
        }
        for (slot, port) in filter.rports.iter_mut().zip(&self.rports) {
            *slot = *port;
        }
        filter.lport_count = self.lports.len().min(MAX_FILTER_PORTS) as u16;
        filter.rport_count = self.rports.len().min(MAX_FILTER_PORTS) as u16;
        filter
    }

    /// Whether one transition passes on its own: its socket's constant properties and its
    /// owner. The pipeline selects whole sockets instead ([`Self::socket_matches`],
    /// [`Self::owner_matches`]).
    pub fn matches(&self, t: &Transition) -> bool {
        self.socket_matches(t) && self.owner_matches(t)
    }

    /// Whether a dropped packet passes: its family, namespace and ports as the listener's
    /// (local) and the peer's (remote), and the listener's owner where `--pid` or `--comm` ask
    /// for one (a closed port has none, so it never passes them).
    pub fn drop_matches(&self, d: &PacketDrop) -> bool {
        let port_in = |ports: &[u16], port: u16| ports.is_empty() || ports.contains(&port);
        (self.family.is_none() || self.family == Some(d.family))
            && self.netns.is_none_or(|netns| netns == d.netns)
            && port_in(&self.lports, d.lport)
            && port_in(&self.rports, d.rport)
            && (self.pid.is_none() || self.pid == d.pid)
            && self
                .comm
                .as_ref()
                .is_none_or(|comm| d.comm == comm.as_str())
    }

    /// Whether the socket passes what never changes over its life: family, ports, namespace.
    pub fn socket_matches(&self, t: &Transition) -> bool {
        (self.family.is_none() || self.family == Some(t.family))
            && self.ports_match(t)
            && self.netns.is_none_or(|netns| netns == t.netns)
    }

    /// Whether the transition's owner passes `--pid` and `--comm` (always, without them). The
    /// owner can change over a socket's life (an accepted socket inherits its listener's owner
    /// until the process that accepted it makes a syscall on it), so the pipeline asks this of
    /// each transition until one passes, then keeps the whole socket.
    pub fn owner_matches(&self, t: &Transition) -> bool {
        (self.pid.is_none() || self.pid == t.pid)
            && self
                .comm
                .as_ref()
                .is_none_or(|comm| t.comm == comm.as_str())
    }
}

/// Ports as the command line takes them: `80,443`.
pub fn port_list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl EventFilter {
    /// The kernel's part of the filter as a recording keeps it: `family=inet6 lports=80,443
    /// rports=` (empty where not set).
    pub fn kernel_text(&self) -> String {
        format!(
            "family={} lports={} rports={}",
            self.family.map_or("", Family::name),
            port_list(&self.lports),
            port_list(&self.rports)
        )
    }

    /// This filter with a recording's kernel filter ([`Self::kernel_text`]) where this one
    /// sets none: what the recorder's kernel dropped is not in the file, and a replay must
    /// drop the rest of those sockets' transitions as the live command did. Unreadable text
    /// adds nothing.
    pub fn with_recorded(mut self, text: &str) -> Self {
        for part in text.split_whitespace() {
            let Some((key, value)) = part.split_once('=') else {
                continue;
            };
            let ports =
                || -> Vec<u16> { value.split(',').filter_map(|p| p.parse().ok()).collect() };
            match key {
                "family" if self.family.is_none() => {
                    self.family = match value {
                        "inet" => Some(Family::Inet),
                        "inet6" => Some(Family::Inet6),
                        _ => None,
                    }
                }
                "lports" if self.lports.is_empty() => self.lports = ports(),
                "rports" if self.rports.is_empty() => self.rports = ports(),
                _ => {}
            }
        }
        self
    }

    /// Whether the ports pass. Unlike the owner, they never change over a socket's life: a
    /// socket whose ports fail will never be shown.
    pub fn ports_match(&self, t: &Transition) -> bool {
        (self.lports.is_empty() || self.lports.contains(&t.lport))
            && (self.rports.is_empty() || self.rports.contains(&t.rport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::TcpState;

    fn sample() -> Transition {
        Transition {
            pid: Some(10),
            comm: "nginx".into(),
            lport: 80,
            rport: 5000,
            ..Transition::fixture(1, 0, TcpState::Established, TcpState::CloseWait)
        }
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(EventFilter::default().matches(&sample()));
        assert_eq!(EventFilter::default().kernel(), Filter::default());
    }

    #[test]
    fn each_criterion_filters() {
        let t = sample();
        let f = |f: EventFilter| f.matches(&t);
        assert!(f(EventFilter {
            lports: vec![22, 80],
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            lports: vec![22],
            ..Default::default()
        }));
        assert!(f(EventFilter {
            rports: vec![5000],
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            rports: vec![80],
            ..Default::default()
        }));
        assert!(f(EventFilter {
            pid: Some(10),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            pid: Some(11),
            ..Default::default()
        }));
        assert!(f(EventFilter {
            comm: Some("nginx".into()),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            comm: Some("ngin".into()),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            family: Some(Family::Inet6),
            ..Default::default()
        }));
        assert!(f(EventFilter {
            netns: Some(0),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            netns: Some(4026531840),
            ..Default::default()
        }));
    }

    #[test]
    fn a_recorded_kernel_filter_applies_where_none_is_given() {
        let recorded = EventFilter {
            family: Some(Family::Inet6),
            lports: vec![80, 443],
            ..Default::default()
        }
        .kernel_text();
        assert_eq!(recorded, "family=inet6 lports=80,443 rports=");
        let replayed = EventFilter {
            lports: vec![8080],
            ..Default::default()
        }
        .with_recorded(&recorded);
        assert_eq!(replayed.family, Some(Family::Inet6));
        assert_eq!(replayed.lports, [8080]);
        assert!(replayed.rports.is_empty());
        assert_eq!(
            EventFilter::default().with_recorded("garbage"),
            EventFilter::default()
        );
    }

    #[test]
    fn kernel_filter_carries_family_and_ports() {
        let filter = EventFilter {
            family: Some(Family::Inet6),
            lports: vec![80, 443],
            rports: vec![5432],
            ..Default::default()
        }
        .kernel();
        assert_eq!(filter.family, AF_INET6);
        assert_eq!(filter.lport_count, 2);
        assert_eq!(&filter.lports[..3], &[80, 443, 0]);
        assert_eq!(filter.rport_count, 1);
        assert_eq!(filter.rports[0], 5432);
    }
}
