//! Which processes hold which sockets: the `socket:[INODE]` links under /proc/PID/fd, as
//! `ss -p` and `netstat -p` find them. The kernel's socket dump carries the inode only.

use std::{
    collections::{HashMap, HashSet},
    fs::{self, File},
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::Path,
};

use super::capabilities;

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
        if wanted.is_empty() {
            return Self::default();
        }
        Self::scan_root(Path::new("/proc"), Some(wanted))
    }

    /// Scans /proc for every socket any process holds: what a caller that does not know yet
    /// which sockets it will ask about (it is dumping them meanwhile) takes.
    pub fn scan_all() -> Self {
        Self::scan_root(Path::new("/proc"), None)
    }

    fn scan_root(proc_root: &Path, wanted: Option<&HashSet<u32>>) -> Self {
        let mut map: HashMap<u32, Vec<Owner>> = HashMap::new();
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
            let fd_dir = entry.path().join("fd");
            let (Ok(fds), Ok(dir)) = (fs::read_dir(&fd_dir), File::open(&fd_dir)) else {
                continue;
            };
            let mut comm: Option<String> = None;
            for fd in fds.flatten() {
                let Some(inode) = socket_link_at(&dir, fd.file_name().as_bytes()) else {
                    continue;
                };
                if wanted.is_some_and(|wanted| !wanted.contains(&inode)) {
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

/// True when this process may read every process's descriptors, so that a socket with a file
/// and no holder found is not hidden from us (its holder exited while /proc was read, or it
/// is held in a way /proc does not show, such as a descriptor in flight over a Unix socket).
/// Reading another user's `/proc/PID/fd` is a ptrace access check (`proc_fd_access_allowed()`),
/// which root passes through `CAP_SYS_PTRACE`, not its uid.
pub fn sees_every_process() -> bool {
    capabilities::holds(caps::Capability::CAP_SYS_PTRACE)
}

/// The inode of the socket that the link `name` in the directory `dir` (a `/proc/PID/fd`)
/// points to, if it is a socket. Read relative to the directory, into a buffer on the stack:
/// a census reads one link per socket of the host, and resolving each full path again and
/// allocating its target cost more than the read itself.
fn socket_link_at(dir: &File, name: &[u8]) -> Option<u32> {
    // Descriptor numbers: a few digits.
    let mut c_name = [0u8; 24];
    if name.len() >= c_name.len() {
        return None;
    }
    c_name[..name.len()].copy_from_slice(name);
    // `socket:[4294967295]` is 19 bytes; a longer target is not a socket.
    let mut target = [0u8; 32];
    // SAFETY: `c_name` is NUL-terminated (zeroed past the name), `target` is a live buffer of
    // the length passed, and `dir` is an open descriptor for the call.
    let len = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c_name.as_ptr().cast(),
            target.as_mut_ptr().cast(),
            target.len(),
        )
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len < target.len())?;
    socket_inode(std::str::from_utf8(&target[..len]).ok()?)
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
        let all = Owners::scan_all();
        assert!(all.all(inode).iter().any(|o| o.pid == std::process::id()));
    }
}
