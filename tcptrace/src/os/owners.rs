//! Which processes hold which sockets: the `socket:[INODE]` links under /proc/PID/fd, as
//! `ss -p` and `netstat -p` find them. The kernel's socket dump carries the inode only.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::Path,
};

/// A process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub pid: u32,
    pub comm: String,
}

/// Socket inode → the processes holding it, lowest pid first (a socket inherited across
/// fork() has several).
#[derive(Debug, Default)]
pub struct Owners(HashMap<u32, Vec<Owner>>);

impl Owners {
    /// Scans /proc for the given inodes. Processes that exit meanwhile, or whose fds we may not
    /// read, are skipped: their sockets show no owner, as in `ss -p`.
    pub fn scan(wanted: &HashSet<u32>) -> Self {
        Self::scan_root(Path::new("/proc"), wanted)
    }

    fn scan_root(proc_root: &Path, wanted: &HashSet<u32>) -> Self {
        let mut map: HashMap<u32, Vec<Owner>> = HashMap::new();
        if wanted.is_empty() {
            return Self(map);
        }
        let Ok(entries) = fs::read_dir(proc_root) else {
            return Self(map);
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            let mut comm: Option<String> = None;
            for fd in fds.flatten() {
                let Ok(target) = fs::read_link(fd.path()) else {
                    continue;
                };
                let Some(inode) = target.to_str().and_then(socket_inode) else {
                    continue;
                };
                if !wanted.contains(&inode) {
                    continue;
                }
                let comm = comm
                    .get_or_insert_with(|| {
                        fs::read_to_string(entry.path().join("comm"))
                            .map(|c| c.trim_end_matches('\n').to_owned())
                            .unwrap_or_default()
                    })
                    .clone();
                let owners = map.entry(inode).or_default();
                if !owners.iter().any(|o| o.pid == pid) {
                    owners.push(Owner { pid, comm });
                }
            }
        }
        for owners in map.values_mut() {
            owners.sort();
        }
        Self(map)
    }

    #[cfg(test)]
    pub fn from_map(map: HashMap<u32, Vec<Owner>>) -> Self {
        Self(map)
    }

    /// The socket's first owner (lowest pid), as netstat shows one.
    pub fn first(&self, inode: u32) -> Option<&Owner> {
        self.0.get(&inode).and_then(|o| o.first())
    }

    /// Every owner of the socket.
    pub fn all(&self, inode: u32) -> &[Owner] {
        self.0.get(&inode).map_or(&[], Vec::as_slice)
    }
}

/// The inode of a `socket:[12345]` link target.
pub fn socket_inode(target: &str) -> Option<u32> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, os::unix::fs::MetadataExt};

    use super::*;

    #[test]
    fn socket_links_parse() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("socket:[]"), None);
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[99999999999]"), None);
    }

    #[test]
    fn our_own_socket_is_found() {
        // A listener on loopback of this test process: its inode must map to our pid.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&listener)
        ))
        .unwrap()
        .ino() as u32;
        let owners = Owners::scan(&HashSet::from([inode]));
        let owner = owners.first(inode).expect("our socket has an owner");
        assert_eq!(owner.pid, std::process::id());
        assert!(!owner.comm.is_empty());
        assert!(Owners::scan(&HashSet::new()).first(inode).is_none());
    }
}
