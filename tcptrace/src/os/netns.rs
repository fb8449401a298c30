//! Network namespaces: which ones the processes of this machine are in (their
//! `/proc/PID/ns/net`), and running code inside one of them. inet_diag answers for the
//! namespace of the netlink socket asked only, and a socket stays in the namespace it was
//! created in: a thread that enters another namespace and opens its socket there can dump it.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    thread,
};

/// A network namespace, by its inode (what the events carry) and a path that opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub inode: u32,
    /// `/proc/PID/ns/net` of one process in it.
    pub path: PathBuf,
}

/// The network namespaces of the processes under /proc, each once, by inode. Processes that
/// exit meanwhile, or whose namespace we may not see, are skipped.
pub fn of_processes() -> Vec<Namespace> {
    of_processes_under(Path::new("/proc"))
}

fn of_processes_under(proc_root: &Path) -> Vec<Namespace> {
    let mut found: BTreeMap<u32, PathBuf> = BTreeMap::new();
    let Ok(entries) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let path = entry.path().join("ns/net");
        // The link's target is the namespace itself: its inode is the namespace's.
        if let Ok(meta) = fs::metadata(&path)
            && let Ok(inode) = u32::try_from(meta.ino())
        {
            found.entry(inode).or_insert(path);
        }
    }
    found
        .into_iter()
        .map(|(inode, path)| Namespace { inode, path })
        .collect()
}

/// The text of `/proc/PID/cgroup` of the process whose namespace link `namespace` names: where
/// that process sits in the cgroup tree (its pod and container, on a container host).
pub fn cgroup_of(namespace: &Namespace) -> Option<String> {
    let process = namespace.path.parent()?.parent()?;
    fs::read_to_string(process.join("cgroup")).ok()
}

/// Runs `work` on a thread of its own inside the namespace, and returns what it returns. Needs
/// `CAP_SYS_ADMIN`; the calling thread stays where it is.
pub fn run_in<T: Send>(namespace: &Namespace, work: impl FnOnce() -> T + Send) -> io::Result<T> {
    let file = File::open(&namespace.path)?;
    thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) on a descriptor we own, open for the call; it changes this
                // thread's namespace only, and the thread ends after `work`.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(work())
            })
            .join()
            .map_err(|_| io::Error::other("the namespace's thread panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_is_among_those_of_the_processes() {
        let own = crate::os::procfs::own_netns().expect("/proc/self/ns/net");
        let found = of_processes();
        assert!(found.iter().any(|ns| ns.inode == own), "{found:?}");
        // Each once.
        let mut inodes: Vec<u32> = found.iter().map(|ns| ns.inode).collect();
        inodes.dedup();
        assert_eq!(inodes.len(), found.len());
        assert!(of_processes_under(Path::new("/nonexistent")).is_empty());
        let ours = found.iter().find(|ns| ns.inode == own).unwrap();
        assert!(cgroup_of(ours).is_some_and(|text| text.contains(':')));
    }

    #[test]
    fn work_runs_inside_the_namespace() {
        let own = crate::os::procfs::own_netns().expect("/proc/self/ns/net");
        let namespace = Namespace {
            inode: own,
            path: PathBuf::from("/proc/self/ns/net"),
        };
        // The thread's own namespace: /proc/self is the main thread's.
        let inside = || {
            fs::metadata("/proc/thread-self/ns/net")
                .ok()
                .map(|meta| meta.ino() as u32)
        };
        // Entering one's own namespace needs CAP_SYS_ADMIN too: without it, an error.
        match run_in(&namespace, inside) {
            Ok(inside) => assert_eq!(inside, Some(own)),
            Err(err) => assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}"),
        }
        let gone = Namespace {
            inode: 1,
            path: PathBuf::from("/nonexistent/ns/net"),
        };
        assert!(run_in(&gone, || ()).is_err());
    }
}
