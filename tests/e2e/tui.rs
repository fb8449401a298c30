//! The full-screen view of `tcptrace transitions`, run for real in a tmux pane of 80×24 (its
//! own tmux server) under a known workload in a network namespace of the test: keys sent with
//! `send-keys`, the screen read with `capture-pane`. The header shows, a selected transition's
//! detail gives its exact count and an exemplar on the workload's port, the pane resizes, and
//! `q` restores the terminal and prints the summary.

use std::{path::Path, process::Command};

use crate::support::{Netns, Peer, privileged, start_lock, tcptrace_bin, wait_until};

const LO: &str = "127.0.0.1";
/// The workload's port: unique among the tests, so that the filter keeps its sockets only.
const PORT: u16 = 47931;
const CONNECTIONS: u64 = 7;

/// A tmux server of the test's own (`-L`), killed with the test.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// `name`: the test's, so that tests running at once have servers of their own.
    fn new(name: &str) -> Self {
        Self {
            socket: format!("tcptrace-tui-{name}-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-u")
            .args(["-L", &self.socket])
            .args(args)
            .env("LANG", "C.UTF-8")
            .output()
            .expect("run tmux (installed by `cargo xtask setup`)");
        assert!(output.status.success(), "tmux {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The visible screen.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "tui"])
    }

    /// The screen and everything scrolled off it.
    fn history(&self) -> String {
        self.run(&["capture-pane", "-p", "-S", "-", "-t", "tui"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn wait_screen(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        wait_until(what, || {
            last = self.screen();
            check(&last).then(|| last.clone())
        })
    }

    fn flag(&self, name: &str) -> String {
        self.run(&[
            "display-message",
            "-p",
            "-t",
            "tui",
            &format!("#{{{name}}}"),
        ])
        .trim()
        .to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// A tcptrace started in a pane (its pid, and what its command line has): killed with the
/// test should it hang, not leaked.
struct Reaped(i32, String);

impl Reaped {
    fn find(needle: String) -> Self {
        let pid = wait_until("tcptrace's pid", || pid_of_tcptrace_with(&needle));
        Self(pid, needle)
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        // Only while the pid is still that tcptrace's, not a later process's.
        if pid_of_tcptrace_with(&self.1) == Some(self.0) {
            // SAFETY: kill has no memory preconditions; the pid is the tcptrace this test
            // started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

fn tmux_present() -> bool {
    let found = Command::new("tmux").arg("-V").output().is_ok();
    if !found {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("tmux is missing: `cargo xtask setup` installs it");
        }
        eprintln!("SKIPPED the full-screen view's test: tmux is missing (cargo xtask setup)");
    }
    found
}

/// The table row of `edge` (`LAST_ACK→CLOSE`), split in words: tag, edge, count, ...
fn table_row(screen: &str, edge: &str) -> Option<Vec<String>> {
    screen
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(edge))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
}

/// Runs `command` in an 80×24 pane and waits for the header's first interval (the probe is
/// attached then); returns that screen. After the command: its exit status, then whether the
/// terminal is back in cooked mode with echo; the shell stays so that the pane can be read.
fn start_in_pane(tmux: &Tmux, command: &str) -> String {
    let script = format!(
        "{command}; echo TCPTRACE-EXIT=$?; \
         stty -a | tr ' ;' '\\n\\n' | grep -x -e '-*icanon' -e '-*echo' | sed 's/^/TTY-/'; \
         sleep 600",
    );
    // Until the probe is attached.
    let _guard = start_lock();
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "80",
        "-y",
        "24",
        "sh",
        "-c",
        &script,
    ]);
    tmux.wait_screen("the header's first interval", |s| s.contains("elapsed"))
}

#[test]
fn the_full_screen_view_under_a_known_workload() {
    if !privileged("the_full_screen_view_under_a_known_workload") || !tmux_present() {
        return;
    }
    let netns = Netns::new("tui");
    let mut server = Peer::spawn_in(&netns);
    assert_eq!(server.port(&format!("listen {LO} {PORT}")), PORT);
    let mut client = Peer::spawn_in(&netns);

    let tmux = Tmux::new("view");
    let bin = tcptrace_bin();
    assert!(Path::new(&bin).exists());
    {
        let screen = start_in_pane(
            &tmux,
            &format!(
                "ip netns exec {} {} transitions --lport {PORT}",
                netns.name,
                bin.display()
            ),
        );
        let header = screen.lines().next().unwrap();
        assert!(header.starts_with("tcptrace transitions"), "{screen}");
        assert!(header.contains("0 lost"), "{screen}");
        assert!(
            screen.contains(&format!("filters: --lport {PORT}")),
            "{screen}"
        );
        assert!(screen.contains("SERVER PATH"), "{screen}");
    }
    let _reaped = Reaped::find(format!("--lport {PORT}"));
    assert_eq!(tmux.flag("alternate_on"), "1", "the view is full-screen");

    // The client closes first; the server reads the end of the stream, then closes: every
    // server socket goes LAST_ACK -> CLOSE.
    for _ in 0..CONNECTIONS {
        client.port(&format!("connect {LO} {PORT}"));
        server.cmd("accept");
        client.cmd("close");
        server.cmd("wait-eof");
        server.cmd("close");
    }
    tmux.keys(&["Tab"]);
    let screen = tmux.wait_screen("every LAST_ACK -> CLOSE in the table", |s| {
        table_row(s, "LAST_ACK→CLOSE").is_some_and(|row| row[2] == CONNECTIONS.to_string())
    });
    assert!(screen.contains("TRANSITION"), "{screen}");
    // Select it with the keys, as a user would.
    let mut selected = false;
    for _ in 0..12 {
        let screen = tmux.screen();
        if table_row(&screen, "LAST_ACK→CLOSE").is_some_and(|row| row[0].starts_with('▶')) {
            selected = true;
            break;
        }
        tmux.keys(&["Down"]);
        tmux.wait_screen("the selection to move", |s| s != screen);
    }
    assert!(
        selected,
        "LAST_ACK→CLOSE can be selected:\n{}",
        tmux.screen()
    );
    tmux.keys(&["Enter"]);
    let detail = tmux.wait_screen("the detail of LAST_ACK -> CLOSE", |s| {
        s.contains("LAST_ACK → CLOSE") && s.contains("exemplars")
    });
    assert!(
        detail.contains(&format!("count {CONNECTIONS}")),
        "the exact count:\n{detail}"
    );
    assert!(
        detail
            .lines()
            .any(|l| l.starts_with("slow") && l.contains(&format!("{LO}:{PORT}"))),
        "an exemplar on the workload's port:\n{detail}"
    );
    assert!(detail.contains("time in LAST_ACK"), "{detail}");

    // Wider: the detail adds the exemplars' namespace and time.
    tmux.run(&["resize-window", "-t", "tui", "-x", "200", "-y", "60"]);
    let wide = tmux.wait_screen("the wide detail", |s| s.contains("NETNS"));
    assert!(
        wide.lines()
            .next()
            .unwrap()
            .starts_with("tcptrace transitions")
    );
    assert!(wide.lines().count() >= 60, "{wide}");

    tmux.keys(&["q"]);
    let history = history_after_exit(&tmux);
    // The summary, on the restored terminal.
    assert!(
        history.contains("LAST_ACK -> CLOSE (server): time in LAST_ACK"),
        "{history}"
    );
    assert!(history.contains("transitions, 0 lost"), "{history}");
    assert_terminal_restored(&tmux, &history);
    assert_eq!(tmux.flag("cursor_flag"), "1", "the cursor is shown");
}

/// The pane's history once tcptrace exited and the pane's shell printed its status and the
/// terminal's modes (the `TTY-` lines); tcptrace exited with 0.
fn history_after_exit(tmux: &Tmux) -> String {
    let mut last = String::new();
    let history = wait_until("tcptrace to exit", || {
        last = tmux.history();
        last.contains("TTY-").then(|| last.clone())
    });
    assert!(history.contains("TCPTRACE-EXIT=0"), "{history}");
    history
}

/// Cooked mode and echo back, the alternate screen left.
fn assert_terminal_restored(tmux: &Tmux, history: &str) {
    assert!(
        history.lines().any(|l| l == "TTY-icanon"),
        "cooked mode: {history}"
    );
    assert!(history.lines().any(|l| l == "TTY-echo"), "echo: {history}");
    assert_eq!(
        tmux.flag("alternate_on"),
        "0",
        "the alternate screen is left"
    );
}

/// The pid of the tcptrace whose command line has `needle`, found in /proc.
fn pid_of_tcptrace_with(needle: &str) -> Option<i32> {
    let bin = tcptrace_bin();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            (args.first().map(Path::new) == Some(bin.as_path()) && args.join(" ").contains(needle))
                .then_some(pid)
        })
}

#[test]
fn a_signal_ends_the_full_screen_view_with_the_terminal_restored_and_the_summary() {
    if !privileged("a_signal_ends_the_full_screen_view_with_the_terminal_restored_and_the_summary")
        || !tmux_present()
    {
        return;
    }
    const SIGNALLED_PORT: u16 = 47932;
    let tmux = Tmux::new("signal");
    let bin = tcptrace_bin();
    start_in_pane(
        &tmux,
        &format!("{} transitions --lport {SIGNALLED_PORT}", bin.display()),
    );
    let reaped = Reaped::find(format!("--lport {SIGNALLED_PORT}"));
    let pid = reaped.0;
    // SAFETY: kill has no memory preconditions; the pid is the tcptrace this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let history = history_after_exit(&tmux);
    assert!(history.contains("0 transitions, 0 lost"), "{history}");
    assert_terminal_restored(&tmux, &history);
}
