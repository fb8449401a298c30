//! Which sockets of a snapshot a listing or a census shows: the command-line filters, applied
//! to typed sockets.

use crate::{
    core::{event::Family, state::TcpState},
    os::{diag::SocketEntry, owners::Owners},
};

#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Shown states (request sockets match SYN_RECV); empty: all.
    pub states: Vec<TcpState>,
    pub family: Option<Family>,
    pub lports: Vec<u16>,
    pub rports: Vec<u16>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
}

impl Selection {
    /// True when the filter needs to know who owns each socket.
    pub fn needs_owners(&self) -> bool {
        self.pid.is_some() || self.comm.is_some()
    }

    pub fn matches(&self, socket: &SocketEntry, owners: Option<&Owners>) -> bool {
        if !self.states.is_empty() && !self.states.contains(&socket.shown_state()) {
            return false;
        }
        if self.family.is_some_and(|f| f != socket.family) {
            return false;
        }
        if !self.lports.is_empty() && !self.lports.contains(&socket.local.port()) {
            return false;
        }
        if !self.rports.is_empty() && !self.rports.contains(&socket.remote.port()) {
            return false;
        }
        if self.needs_owners() {
            let all = owners.map_or(&[][..], |o| o.all(socket.inode));
            let owned = all.iter().any(|owner| {
                self.pid.is_none_or(|pid| owner.pid == pid)
                    && self.comm.as_ref().is_none_or(|comm| &owner.comm == comm)
            });
            if socket.inode == 0 || !owned {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::census::tests::{owners, population};

    fn selected(selection: &Selection) -> Vec<String> {
        let owners = owners();
        population()
            .iter()
            .filter(|s| selection.matches(s, Some(&owners)))
            .map(|s| format!("{}>{}", s.local, s.remote))
            .collect()
    }

    #[test]
    fn everything_by_default() {
        assert_eq!(selected(&Selection::default()).len(), population().len());
    }

    #[test]
    fn states_ports_and_owners_filter() {
        let syn = Selection {
            states: vec![TcpState::SynRecv],
            ..Selection::default()
        };
        assert_eq!(selected(&syn), ["10.0.0.1:80>10.0.0.7:40003"]);
        let db = Selection {
            states: vec![TcpState::TimeWait],
            rports: vec![5432],
            lports: vec![33001, 33002],
            ..Selection::default()
        };
        assert_eq!(
            selected(&db),
            [
                "10.0.0.1:33001>10.0.0.5:5432",
                "10.0.0.1:33002>10.0.0.6:5432"
            ]
        );
        let pid = Selection {
            pid: Some(101),
            ..Selection::default()
        };
        assert_eq!(
            selected(&pid),
            ["10.0.0.1:80>10.0.0.9:40000", "10.0.0.1:80>10.0.0.9:40001"]
        );
        let comm = Selection {
            comm: Some("worker".into()),
            ..Selection::default()
        };
        assert_eq!(selected(&comm), ["10.0.0.1:80>10.0.0.8:40002"]);
        let v6 = Selection {
            family: Some(Family::Inet6),
            ..Selection::default()
        };
        assert!(selected(&v6).is_empty());
    }
}
