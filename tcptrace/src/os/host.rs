//! What names this host in a recording: its kernel release and hostname (`uname`).

/// One NUL-terminated field of `utsname`.
fn field(raw: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `(kernel release, hostname)`, empty where `uname` fails.
pub fn release_and_hostname() -> (String, String) {
    // SAFETY: `uname` fills the zeroed struct; its fields are NUL-terminated.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return (String::new(), String::new());
    }
    (field(&name.release), field(&name.nodename))
}
