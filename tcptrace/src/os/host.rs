//! What names this host: its kernel release (in a recording, and in the error of a kernel too
//! old for the probe) and hostname (`uname`).

/// `uname`, `None` where it fails.
fn uname() -> Option<libc::utsname> {
    // SAFETY: `uname` fills the zeroed struct; its fields are NUL-terminated.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    (unsafe { libc::uname(&mut name) } == 0).then_some(name)
}

/// One NUL-terminated field of `utsname`.
fn field(raw: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> Option<String> {
    uname().map(|name| field(&name.release))
}

/// `(kernel release, hostname)`, empty where `uname` fails.
pub fn release_and_hostname() -> (String, String) {
    uname().map_or_else(Default::default, |name| {
        (field(&name.release), field(&name.nodename))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_sys_kernel(name: &str) -> String {
        let path = format!("/proc/sys/kernel/{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.trim_end().to_owned()
    }

    #[test]
    fn uname_agrees_with_procfs() {
        let release = proc_sys_kernel("osrelease");
        assert_eq!(kernel_release().as_deref(), Some(release.as_str()));
        assert_eq!(
            release_and_hostname(),
            (release, proc_sys_kernel("hostname"))
        );
    }
}
