//! The owners of sockets that predate tracing, as the start-up census found them (inet_diag and
//! /proc/PID/fd, as `ss -p`): the listeners' go into the kernel's listener map, so that their
//! children inherit them from their first transition; the other sockets' go into the socket
//! table, keyed by the socket's cookie, the one id that both inet_diag and the events carry.

use crate::core::event::{Comm, OwnerKind};

/// The processes holding a socket: the one with the lowest pid stands for them all (as netstat
/// shows one), with their number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holders {
    pub pid: u32,
    pub comm: Comm,
    /// At least 1.
    pub count: u32,
}

impl Holders {
    /// What the owner stands for when taken from these holders of the socket itself.
    pub fn kind(&self) -> OwnerKind {
        OwnerKind::of_holders(self.count, false)
    }
}

/// The owner of a socket that predates tracing, other than a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketSeed {
    /// The kernel's socket cookie (inet_diag's `idiag_cookie`), never 0.
    pub cookie: u64,
    pub holders: Holders,
}

/// The owner of the listeners on one port of one network namespace that predate tracing: the
/// holders of all of them (an `SO_REUSEPORT` group, one listener per address), since the
/// kernel's listener map has one entry per namespace and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerSeed {
    pub netns: u32,
    pub port: u16,
    pub holders: Holders,
}
