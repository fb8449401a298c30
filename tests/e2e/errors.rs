//! Bad input and hostile environments: one clear line, a non-zero exit, never a panic.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use crate::support::{
    AS_NOBODY, Peer, events_lost, privileged, start_lock, tcptrace_bin, wait_until,
};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(tcptrace_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tcptrace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    for (args, expected) in [
        (&["trace", "--lport", "0"][..], "not a port"),
        (&["trace", "--lport", "80,http"], "not a port"),
        (&["trace", "--duration", "-3"], "--duration"),
        (&["trace", "--pid", "zero"], "--pid"),
        (&["trace", "-4", "-6"], "cannot be used with"),
        (&["frobnicate"], "unrecognized subcommand"),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error:") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn without_privileges_it_says_how_to_run() {
    // Needs root to drop to an unprivileged user; without root we already are one.
    let out = if unsafe { libc::geteuid() } == 0 {
        Command::new("setpriv")
            .args(AS_NOBODY)
            .arg(tcptrace_bin())
            .args(["trace", "--duration", "1"])
            .output()
            .expect("run setpriv (util-linux)")
    } else {
        Command::new(tcptrace_bin())
            .args(["trace", "--duration", "1"])
            .output()
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("needs root") && stderr.contains("sudo"),
        "{stderr}"
    );
}

#[test]
fn broken_pipe_exits_quietly_with_success() {
    if !privileged("broken_pipe_exits_quietly_with_success") {
        return;
    }
    let mut server = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    let mut child = {
        let _guard = start_lock();
        Command::new(tcptrace_bin())
            .args(["trace", "--lport", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Like `| head -1`: read the header, then close the pipe.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    stdout.read_line(&mut header).unwrap();
    assert!(header.starts_with("  PID COMM "), "{header}");
    drop(stdout);
    // Traffic makes tcptrace write into the closed pipe.
    let status = wait_until("tcptrace to notice the closed pipe", || {
        let mut client = Peer::spawn();
        client.cmd(&format!("connect 127.0.0.1 {port}"));
        server.cmd("accept");
        child.try_wait().unwrap()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("tcptrace:"), "{stderr}");
}

/// Mounts tracefs back at these paths when dropped.
struct Remount(Vec<&'static str>);

impl Drop for Remount {
    fn drop(&mut self) {
        for path in &self.0 {
            let status = Command::new("mount")
                .args(["-t", "tracefs", "tracefs", path])
                .status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("could not mount tracefs back at {path}");
            }
        }
    }
}

#[test]
fn tracefs_is_not_needed() {
    if !privileged("tracefs_is_not_needed") {
        return;
    }
    let _guard = start_lock();
    let mounted = |path: &str| {
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .any(|line| line.split_whitespace().nth(1) == Some(path))
    };
    // Unmount every tracefs mount, as on a fresh machine where nobody mounted it; mounted back
    // afterwards, whatever happens, for the other tools that need it.
    let mut remount = Remount(Vec::new());
    for path in ["/sys/kernel/debug/tracing", "/sys/kernel/tracing"] {
        while mounted(path) {
            let status = Command::new("umount").arg(path).status().unwrap();
            if !status.success() {
                eprintln!("SKIPPED tracefs_is_not_needed: cannot unmount {path} (busy)");
                return;
            }
            if !remount.0.contains(&path) {
                remount.0.push(path);
            }
        }
    }
    let (code, stderr) = run(&["trace", "--duration", "0.2"]);
    assert_eq!(code, 0, "{stderr}");
    // Only the summary line: no error, no warning.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(events_lost(&stderr), Some(0), "{stderr}");
}

#[test]
fn snapshots_of_another_namespace_are_refused_with_the_way_there() {
    for command in ["states", "sockets"] {
        let (code, stderr) = run(&[command, "--netns", "1"]);
        assert_eq!(code, 1, "{command}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("ip netns exec"), "{stderr}");
    }
}
