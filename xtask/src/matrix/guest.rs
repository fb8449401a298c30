//! One guest of the matrix, in its pure parts: the script it runs, the `vng` command line that
//! boots it, and the reading of what it printed into one summary line and a verdict.
//!
//! The guest speaks to the host through marker lines on its standard output (a virtio port of
//! its own, apart from the kernel's console), so nothing the kernel logs can split them.

use std::{path::Path, time::Duration};

use crate::bench::SmokeCounts;

/// Starts every line the guest script and `xtask guest-smoke` print for the host to read.
pub const MARKER: &str = "tcptrace-matrix:";

/// How the guest runs: hardware virtualization or QEMU's emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "KVM",
            Self::Tcg => "TCG",
        }
    }
}

/// The guest's size: 2 CPUs like the host, so that softirqs can interrupt the probe on one
/// CPU while the other runs; 3 GiB leaves room for the e2e tests' 100,000 sockets.
pub const GUEST_CPUS: u32 = 2;
pub const GUEST_MEMORY: &str = "3G";

/// The `vng` arguments that boot `image` and run `exec` in it. The guest sees the host's root
/// filesystem read-only over 9p with writable overlays on /tmp, /var, /etc… (vng's defaults),
/// no network device (loopback only), and its console on vng's stderr (`--verbose`) so that a
/// boot that fails leaves its messages there.
pub fn vng_args(image: &Path, accel: Accel, cpus: u32, memory: &str, exec: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--run".into(),
        image.display().to_string(),
        "--memory".into(),
        memory.into(),
        "--cpus".into(),
        cpus.to_string(),
        // vng waits for virtiofsd, which is not installed, then falls back to 9p anyway.
        "--force-9p".into(),
        "--verbose".into(),
    ];
    if accel == Accel::Tcg {
        args.push("--disable-kvm".into());
    }
    args.extend(["--exec".into(), exec.into()]);
    args
}

/// What the guest script needs to know of the host.
pub struct ScriptParams<'a> {
    /// The e2e test binary (`cargo test --no-run`'s executable), run from `tests_dir` as cargo
    /// runs it on the host.
    pub e2e: &'a Path,
    pub tests_dir: &'a Path,
    pub tcptrace: &'a Path,
    /// The xtask binary itself: `xtask guest-smoke` runs the host's smoke code.
    pub xtask: &'a Path,
    /// Arguments for the e2e binary (a test filter), as `cargo xtask test ARGS` passes them.
    pub e2e_args: &'a [String],
    pub accel: Accel,
    /// `kubernetes-validate`, which the packaging tests run, as on the host.
    pub kubernetes_validate: &'a Path,
}

/// The e2e tests' allowance for two probes' clock reads of one transition (50 µs natively):
/// under TCG each BPF program runs tens of times slower, and the gap between the two reads
/// with it (80 µs was seen on 6.1).
const TCG_CLOCK_SLACK_US: u32 = 1_000;

/// Quotes a word for the shell.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The script the guest runs. It sets up what the host has and vng's guest lacks, then runs
/// the e2e tests and the smoke check as root with `CI=true`, so that nothing is skipped:
/// under CI the e2e support fails where it would otherwise skip.
pub fn script(params: &ScriptParams<'_>) -> String {
    let q = |p: &Path| sh_quote(&p.display().to_string());
    let e2e_args: Vec<String> = params.e2e_args.iter().map(|a| sh_quote(a)).collect();
    let slack = match params.accel {
        Accel::Tcg => format!("export TCPTRACE_E2E_CLOCK_SLACK_US={TCG_CLOCK_SLACK_US}\n"),
        Accel::Kvm => String::new(),
    };
    format!(
        r#"#!/bin/bash
# Written by `cargo xtask matrix`; runs inside a guest of the kernel matrix.
set -u
exec 2>&1
export CI=true
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export TCPTRACE_BIN={tcptrace}
export KUBERNETES_VALIDATE={kubernetes_validate}
export RUST_BACKTRACE=1
{slack}echo "{MARKER} kernel $(uname -r)"
# vng mounts tracefs and brings loopback up; the e2e tests rely on both, so make sure.
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
ip link set lo up
[ -r /sys/kernel/btf/vmlinux ] || echo "{MARKER} note: no /sys/kernel/btf/vmlinux"
# The crowd test opens 100,000+ sockets; the guest's default is 1,024 or 8,192.
ulimit -n "$(ulimit -Hn)"
ulimit -l unlimited
cd {tests_dir} || exit 1
# One test at a time: under TCG every instruction is emulated, and two tests at once on two
# vCPUs can run past the tests' 20-second waits.
{e2e} --test-threads 1 {e2e_args}
echo "{MARKER} e2e exit $?"
{xtask} guest-smoke
echo "{MARKER} smoke exit $?"
echo "{MARKER} done"
"#,
        tcptrace = q(params.tcptrace),
        kubernetes_validate = q(params.kubernetes_validate),
        tests_dir = q(params.tests_dir),
        e2e = q(params.e2e),
        e2e_args = e2e_args.join(" "),
        xtask = q(params.xtask),
    )
}

/// The smoke counts as one marker line, printed by `xtask guest-smoke` in the guest.
pub fn smoke_marker(counts: &SmokeCounts) -> String {
    format!(
        "{MARKER} smoke seen={} expected={} unmade={} lost={} nested={}",
        counts.seen, counts.expected, counts.unmade, counts.lost, counts.nested
    )
}

fn parse_smoke_marker(rest: &str) -> Option<SmokeCounts> {
    let mut counts = SmokeCounts::default();
    let mut fields = 0;
    for part in rest.split_whitespace() {
        let (key, value) = part.split_once('=')?;
        let value: u64 = value.parse().ok()?;
        match key {
            "seen" => counts.seen = value,
            "expected" => counts.expected = value,
            "unmade" => counts.unmade = value,
            "lost" => counts.lost = value,
            "nested" => counts.nested = value,
            _ => return None,
        }
        fields += 1;
    }
    (fields == 5).then_some(counts)
}

/// libtest's counts (`test result: ok. 30 passed; 0 failed; …`), summed over its result lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
}

impl TestCounts {
    /// Adds one line's counts if it is a libtest result line; true if it was.
    pub fn add_line(&mut self, line: &str) -> bool {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return false;
        };
        let count = |what: &str| {
            rest.split([';', '.'])
                .find_map(|part| part.trim().strip_suffix(what)?.trim().parse::<u64>().ok())
        };
        match (count(" passed"), count(" failed")) {
            (Some(passed), Some(failed)) => {
                self.passed += passed;
                self.failed += failed;
                true
            }
            _ => false,
        }
    }
}

/// How the guest's run ended, seen from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// vng exited with this status (`None`: killed by a signal).
    Exited(Option<i32>),
    /// It ran past its bound and its process group was killed.
    TimedOut(Duration),
}

/// What one guest reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestReport {
    /// `uname -r` inside the guest.
    pub release: Option<String>,
    pub e2e: TestCounts,
    pub e2e_exit: Option<i32>,
    pub smoke: Option<SmokeCounts>,
    pub smoke_exit: Option<i32>,
    /// The script's last line was reached.
    pub done: bool,
}

impl GuestReport {
    /// Reads the guest's standard output.
    pub fn parse(output: &str) -> Self {
        let mut report = Self::default();
        for line in output.lines() {
            if report.e2e_exit.is_none() && report.e2e.add_line(line) {
                continue;
            }
            let Some(rest) = line.trim().strip_prefix(MARKER) else {
                continue;
            };
            let rest = rest.trim();
            if let Some(release) = rest.strip_prefix("kernel ") {
                report.release = Some(release.trim().to_owned());
            } else if let Some(code) = rest.strip_prefix("e2e exit ") {
                report.e2e_exit = code.trim().parse().ok();
            } else if let Some(code) = rest.strip_prefix("smoke exit ") {
                report.smoke_exit = code.trim().parse().ok();
            } else if let Some(counts) = rest.strip_prefix("smoke ") {
                report.smoke = parse_smoke_marker(counts);
            } else if rest == "done" {
                report.done = true;
            }
        }
        report
    }

    /// Why this guest failed, in a few words; `None` when it passed. A guest that did not
    /// boot, hung or stopped early fails: only a run that reached its end and whose every
    /// check passed is a pass.
    pub fn failure(&self, ending: Ending) -> Option<String> {
        if let Ending::TimedOut(bound) = ending {
            return Some(format!(
                "the guest ran past its {} s bound and was killed",
                bound.as_secs()
            ));
        }
        if self.release.is_none() {
            return Some(match ending {
                Ending::Exited(Some(code)) => {
                    format!(
                        "the guest never started its script (vng exited with {code}: did it boot?)"
                    )
                }
                _ => "the guest never started its script (vng was killed: did it boot?)".into(),
            });
        }
        if !self.done {
            return Some("the guest stopped before the end of its script".into());
        }
        let mut why = Vec::new();
        if self.e2e_exit != Some(0) || self.e2e.failed > 0 || self.e2e.passed == 0 {
            why.push(format!(
                "e2e: {} passed, {} failed, exit {}",
                self.e2e.passed,
                self.e2e.failed,
                self.e2e_exit.map_or("?".into(), |c| c.to_string())
            ));
        }
        match self.smoke {
            _ if self.smoke_exit != Some(0) => why.push(format!(
                "smoke check failed (exit {})",
                self.smoke_exit.map_or("?".into(), |c| c.to_string())
            )),
            None => why.push("smoke check printed no counts".into()),
            Some(s) if s.lost > 0 || s.seen + s.unmade != s.expected => why.push(format!(
                "smoke: {} of {} seen, {} lost",
                s.seen, s.expected, s.lost
            )),
            Some(_) => {}
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// One kernel's summary line: release, e2e counts, smoke counts, time, verdict.
pub fn summary_line(
    label: &str,
    release: Option<&str>,
    e2e: TestCounts,
    smoke: Option<&SmokeCounts>,
    elapsed: Duration,
    failure: Option<&str>,
) -> String {
    let smoke = smoke.map_or("smoke -".to_owned(), |s| {
        format!(
            "smoke {}/{} seen{}, {} lost, {} nested catches",
            thousands(s.seen),
            thousands(s.expected),
            if s.unmade > 0 {
                format!(
                    " ({} the kernel ran no BPF program for)",
                    thousands(s.unmade)
                )
            } else {
                String::new()
            },
            s.lost,
            s.nested
        )
    });
    let secs = elapsed.as_secs();
    format!(
        "kernel {}: e2e {} passed, {} failed; {smoke}; {} min {:02} s: {}",
        release.unwrap_or(label),
        e2e.passed,
        e2e.failed,
        secs / 60,
        secs % 60,
        failure.map_or("ok".to_owned(), |why| format!("FAILED ({why})"))
    )
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smoke() -> SmokeCounts {
        SmokeCounts {
            seen: 32_002,
            expected: 32_002,
            unmade: 0,
            lost: 0,
            nested: 3,
        }
    }

    fn good_output() -> String {
        format!(
            "{MARKER} kernel 6.1.0-57-rt-amd64\n\
             running 30 tests\n\
             test errors::x ... ok\n\
             test result: ok. 30 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; \
             finished in 121.02s\n\
             {MARKER} e2e exit 0\n\
             smoke: tcptrace trace --json: 4000 connections, 32002 of 32002 transitions seen, 0 lost: ok\n\
             {}\n\
             {MARKER} smoke exit 0\n\
             {MARKER} done\n",
            smoke_marker(&smoke())
        )
    }

    #[test]
    fn a_complete_guest_run_passes_with_its_counts() {
        let report = GuestReport::parse(&good_output());
        assert_eq!(report.release.as_deref(), Some("6.1.0-57-rt-amd64"));
        assert_eq!(
            report.e2e,
            TestCounts {
                passed: 30,
                failed: 0
            }
        );
        assert_eq!(report.smoke, Some(smoke()));
        assert!(report.done);
        assert_eq!(report.failure(Ending::Exited(Some(0))), None);
        assert_eq!(
            summary_line(
                "x",
                report.release.as_deref(),
                report.e2e,
                report.smoke.as_ref(),
                Duration::from_secs(245),
                None
            ),
            "kernel 6.1.0-57-rt-amd64: e2e 30 passed, 0 failed; smoke 32,002/32,002 seen, 0 \
             lost, 3 nested catches; 4 min 05 s: ok"
        );
    }

    #[test]
    fn a_guest_that_did_not_boot_hung_or_stopped_early_fails() {
        let nothing = GuestReport::parse("");
        let why = nothing.failure(Ending::Exited(Some(255))).unwrap();
        assert!(why.contains("never started its script"), "{why}");
        assert!(why.contains("255"), "{why}");
        let hung = GuestReport::parse(&format!("{MARKER} kernel 6.1.0-57-amd64\n"));
        let why = hung
            .failure(Ending::TimedOut(Duration::from_secs(900)))
            .unwrap();
        assert_eq!(why, "the guest ran past its 900 s bound and was killed");
        let why = hung.failure(Ending::Exited(Some(0))).unwrap();
        assert_eq!(why, "the guest stopped before the end of its script");
        // Even a full report is a failure once the bound has passed.
        let full = GuestReport::parse(&good_output());
        assert!(
            full.failure(Ending::TimedOut(Duration::from_secs(900)))
                .is_some()
        );
        let line = summary_line(
            "/boot/does-not-boot",
            None,
            TestCounts::default(),
            None,
            Duration::from_secs(3),
            Some("the guest never started its script"),
        );
        assert_eq!(
            line,
            "kernel /boot/does-not-boot: e2e 0 passed, 0 failed; smoke -; 0 min 03 s: FAILED \
             (the guest never started its script)"
        );
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn failed_checks_inside_the_guest_fail_it() {
        let failed_test = good_output()
            .replace("ok. 30 passed; 0 failed", "FAILED. 29 passed; 1 failed")
            .replace("e2e exit 0", "e2e exit 101");
        let why = GuestReport::parse(&failed_test)
            .failure(Ending::Exited(Some(0)))
            .unwrap();
        assert_eq!(why, "e2e: 29 passed, 1 failed, exit 101");
        // No test ran at all (a filter that matches nothing) is no pass either.
        let none_ran = good_output().replace("30 passed", "0 passed");
        assert!(
            GuestReport::parse(&none_ran)
                .failure(Ending::Exited(Some(0)))
                .is_some()
        );
        let smoke_failed = good_output().replace("smoke exit 0", "smoke exit 1");
        let why = GuestReport::parse(&smoke_failed)
            .failure(Ending::Exited(Some(0)))
            .unwrap();
        assert_eq!(why, "smoke check failed (exit 1)");
        let lost = good_output().replace("lost=0", "lost=2");
        let why = GuestReport::parse(&lost)
            .failure(Ending::Exited(Some(0)))
            .unwrap();
        assert_eq!(why, "smoke: 32002 of 32002 seen, 2 lost");
    }

    #[test]
    fn smoke_markers_round_trip_and_reject_damage() {
        let counts = SmokeCounts {
            seen: 31_998,
            expected: 32_002,
            unmade: 4,
            lost: 0,
            nested: 74,
        };
        let line = smoke_marker(&counts);
        assert_eq!(GuestReport::parse(&line).smoke, Some(counts));
        assert_eq!(parse_smoke_marker("seen=1 expected=2"), None);
        assert_eq!(
            parse_smoke_marker("seen=1 expected=x unmade=0 lost=0 nested=0"),
            None
        );
        assert!(
            summary_line(
                "x",
                None,
                TestCounts::default(),
                Some(&counts),
                Duration::ZERO,
                None
            )
            .contains("31,998/32,002 seen (4 the kernel ran no BPF program for)")
        );
    }

    #[test]
    fn libtest_result_lines_add_up() {
        let mut counts = TestCounts::default();
        assert!(
            counts.add_line("test result: ok. 0 passed; 0 failed; 0 ignored; finished in 0.00s")
        );
        assert!(counts.add_line(
            "test result: FAILED. 25 passed; 5 failed; 0 ignored; 0 measured; 0 filtered out"
        ));
        assert!(!counts.add_line("test foo ... ok"));
        assert_eq!(
            counts,
            TestCounts {
                passed: 25,
                failed: 5
            }
        );
    }

    #[test]
    fn the_guest_runs_everything_as_in_ci() {
        let args = vec!["trace::".to_owned(), "it's".to_owned()];
        let script = script(&ScriptParams {
            e2e: Path::new("/w/target/debug/deps/e2e-0123"),
            tests_dir: Path::new("/w/tests"),
            tcptrace: Path::new("/w/target/release/tcptrace"),
            xtask: Path::new("/w/target/debug/xtask"),
            e2e_args: &args,
            accel: Accel::Tcg,
            kubernetes_validate: Path::new("/k/bin/kubernetes-validate"),
        });
        for needle in [
            "export CI=true\n",
            "export TCPTRACE_E2E_CLOCK_SLACK_US=1000\n",
            "export KUBERNETES_VALIDATE='/k/bin/kubernetes-validate'\n",
            "export TCPTRACE_BIN='/w/target/release/tcptrace'\n",
            "cd '/w/tests' || exit 1\n",
            "'/w/target/debug/deps/e2e-0123' --test-threads 1 'trace::' 'it'\\''s'\n",
            "'/w/target/debug/xtask' guest-smoke\n",
            "tcptrace-matrix: done",
        ] {
            assert!(script.contains(needle), "{needle:?} not in\n{script}");
        }
        let tcg = vng_args(
            Path::new("/boot/vmlinuz-6.1.0-57-amd64"),
            Accel::Tcg,
            2,
            "3G",
            "bash /s",
        );
        assert_eq!(
            tcg.join(" "),
            "--run /boot/vmlinuz-6.1.0-57-amd64 --memory 3G --cpus 2 --force-9p --verbose \
             --disable-kvm --exec bash /s"
        );
        let kvm = vng_args(Path::new("/k"), Accel::Kvm, 1, "512M", "true");
        assert!(!kvm.contains(&"--disable-kvm".to_owned()));
    }
}
