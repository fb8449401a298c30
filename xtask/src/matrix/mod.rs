//! `cargo xtask matrix`: the end-to-end tests and the smoke check inside other kernels, each
//! booted by virtme-ng (`vng`) in QEMU over a read-only view of this machine's root filesystem,
//! so the guest runs the binaries built here. `cargo xtask test` runs it after the host's tests.
//!
//! The pure parts (which kernels, the guest's script and command line, the reading of its
//! report) are in `kernels` and `guest`; this file installs, builds, boots and bounds.

mod accel;
mod guest;
mod kernels;

use std::{
    collections::VecDeque,
    fs,
    io::{BufRead as _, BufReader, Read, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;

pub use self::guest::TestCounts;
use self::{
    guest::{Accel, Ending, GuestReport, ScriptParams},
    kernels::{DEFAULT_MATRIX, Kernel},
};
use crate::{
    bench::{self, SmokeCounts},
    run::{self, workspace_root},
    setup::{self, output},
};

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// A kernel to boot instead of the default matrix; repeatable. An image
    /// (`/boot/vmlinuz-…`), a Debian package (`linux-image-…`, installed if missing) or a
    /// release (`6.1.0-57-rt-amd64`). Default: the newest Debian 6.1 generic and PREEMPT_RT
    /// kernels the archive offers.
    #[arg(long = "kernel", value_name = "KERNEL")]
    pub kernels: Vec<String>,
    /// Each guest's bound in seconds; a guest still running then is killed and fails.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(10..=7200))]
    pub guest_timeout: u64,
}

/// Debian packages the guests need besides the kernels: QEMU, and a static busybox, from
/// which vng builds the guest's initramfs (Debian's kernels have virtio and 9p as modules).
const PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static"];

/// Lines of the kernel console shown when a guest fails.
const CONSOLE_TAIL: usize = 40;
/// Lines of the guest's own output shown when it fails.
const OUTPUT_TAIL: usize = 25;

/// One kernel's result.
pub struct Outcome {
    pub line: String,
    pub failure: Option<String>,
}

pub fn output_dir() -> PathBuf {
    workspace_root().join("target/matrix")
}

/// `cargo xtask matrix`: the matrix alone, its summary, and failure if any guest failed.
pub fn run_alone(args: &MatrixArgs, e2e_args: &[String]) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let outcomes = run(args, e2e_args)?;
    finish(&outcomes, started.elapsed())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the summary lines and a closing count; fails with one line if a kernel failed.
pub fn finish(outcomes: &[Outcome], elapsed: Duration) -> anyhow::Result<()> {
    println!();
    for outcome in outcomes {
        println!("{}", outcome.line);
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    println!(
        "matrix: {} passed, {} failed",
        outcomes.len() - failed.len(),
        failed.len()
    );
    eprintln!(
        "xtask: the kernel matrix took {} min {:02} s",
        elapsed.as_secs() / 60,
        elapsed.as_secs() % 60
    );
    if !failed.is_empty() {
        bail!(
            "{} of {} kernels failed: {}",
            failed.len(),
            outcomes.len(),
            failed
                .iter()
                .filter_map(|o| o.failure.as_deref())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

/// Boots each kernel of the matrix and runs the e2e tests (with `e2e_args`) and the smoke
/// check in it. Errors are set-up failures; a guest that fails is an [`Outcome`] with a failure.
pub fn run(args: &MatrixArgs, e2e_args: &[String]) -> anyhow::Result<Vec<Outcome>> {
    let kernels = resolve(&args.kernels)?;
    if !run::is_root() {
        // vng runs the guest as the calling user: the e2e tests inside need root as here, and
        // like them the matrix skips loudly outside CI and fails in CI.
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            bail!("the kernel matrix must run as root in CI (its guests run the privileged tests)");
        }
        eprintln!("SKIPPED the kernel matrix: needs root (its guests run the privileged tests)");
        return Ok(Vec::new());
    }
    setup::ensure_packages(PACKAGES)?;
    install_kernels(&kernels)?;
    let vng_bin = setup::ensure_virtme_ng()?;
    eprintln!("xtask: matrix: building what the guests run");
    let artifacts = Artifacts::build()?;
    let dir = output_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let vng = Vng { bin: vng_bin };
    let accel = accel::detect(&vng, &kernels[0].image(), &dir);
    eprintln!(
        "xtask: matrix: {} kernel(s): {}; {} guests, {} CPUs, {} memory, {} s bound each",
        kernels.len(),
        kernels
            .iter()
            .map(Kernel::label)
            .collect::<Vec<_>>()
            .join(", "),
        accel.name(),
        guest::GUEST_CPUS,
        guest::GUEST_MEMORY,
        args.guest_timeout
    );
    let mut outcomes = Vec::new();
    for kernel in &kernels {
        outcomes.push(run_guest(
            &vng,
            kernel,
            accel,
            &artifacts,
            e2e_args,
            Duration::from_secs(args.guest_timeout),
        )?);
    }
    Ok(outcomes)
}

/// The kernels to boot: those named, each checked before anything is installed or built, or
/// the default matrix resolved from the archive.
fn resolve(named: &[String]) -> anyhow::Result<Vec<Kernel>> {
    if !named.is_empty() {
        let kernels = named
            .iter()
            .map(|arg| Kernel::parse(arg).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for kernel in &kernels {
            if let Kernel::Image(path) = kernel
                && !path.is_file()
            {
                bail!(
                    "--kernel {}: no such kernel image (name an installed /boot/vmlinuz-…, a \
                     package such as linux-image-6.1.0-57-amd64, or a release)",
                    path.display()
                );
            }
        }
        return Ok(kernels);
    }
    let mut kernels = Vec::new();
    for family in DEFAULT_MATRIX {
        let search = || {
            output(Command::new("apt-cache").args([
                "search",
                "--names-only",
                &family.search_pattern(),
            ]))
        };
        let mut newest = family.newest(&search()?);
        if newest.is_none() {
            // No package lists yet (a fresh machine): fetch them once.
            eprintln!(
                "xtask: matrix: apt-cache knows no {}; apt-get update",
                family.describe()
            );
            setup::status(Command::new("apt-get").arg("update"))?;
            newest = family.newest(&search()?);
        }
        let package = newest.with_context(|| {
            format!(
                "the archive offers no {} package (apt-cache search); name kernels with --kernel",
                family.describe()
            )
        })?;
        kernels.push(Kernel::Package(package));
    }
    Ok(kernels)
}

/// Installs the kernel packages that are missing, after checking apt can install them.
fn install_kernels(kernels: &[Kernel]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for kernel in kernels {
        if let Kernel::Package(package) = kernel
            && !setup::dpkg_installed(package)
        {
            let policy = output(Command::new("apt-cache").args(["policy", package]))?;
            if kernels::policy_candidate(&policy).is_none() {
                bail!(
                    "--kernel {package}: apt has no candidate for it (apt-cache policy {package})"
                );
            }
            missing.push(package.as_str());
        }
    }
    if !missing.is_empty() {
        setup::apt_install(&missing)?;
    }
    for kernel in kernels {
        let image = kernel.image();
        if !image.is_file() {
            bail!(
                "{}: {} is missing after installing it",
                kernel.label(),
                image.display()
            );
        }
    }
    Ok(())
}

/// The binaries the guests run, built on the host.
struct Artifacts {
    e2e: PathBuf,
    xtask: PathBuf,
}

impl Artifacts {
    fn build() -> anyhow::Result<Self> {
        // Release tcptrace and the test programs (tcp-storm for the smoke check).
        bench::build()?;
        // The e2e test binary; building it also builds the debug test programs it runs
        // (tcp-peer, raw-syn, tcp-crowd: their paths are compiled into it).
        let json = output(
            Command::new("cargo")
                .current_dir(workspace_root())
                .args(["test", "--quiet", "--package", "tcptrace-tests", "--no-run"])
                .args(["--message-format=json"]),
        )?;
        let e2e = test_executable(&json, "e2e")
            .context("cargo test --no-run named no executable of the e2e test target")?;
        let xtask = std::env::current_exe().context("cannot find xtask's own binary")?;
        Ok(Self { e2e, xtask })
    }
}

/// The executable of test target `name` in cargo's `--message-format=json` output.
fn test_executable(json_lines: &str, name: &str) -> Option<PathBuf> {
    json_lines.lines().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let target = value.get("target")?;
        let is_test = target
            .get("kind")?
            .as_array()?
            .iter()
            .any(|kind| kind == "test");
        (value.get("reason")? == "compiler-artifact" && is_test && target.get("name")? == name)
            .then(|| value.get("executable")?.as_str().map(PathBuf::from))
            .flatten()
    })
}

/// The installed `vng`.
pub struct Vng {
    /// The virtual environment's `bin`: vng runs its siblings (`virtme-run`) from PATH.
    bin: PathBuf,
}

impl Vng {
    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(self.bin.join("vng"));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        cmd.args(args)
            .env("PATH", std::env::join_paths(dirs).unwrap_or(path))
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills QEMU with it.
            .process_group(0);
        cmd
    }
}

/// What a booted guest left.
pub struct Booted {
    /// The guest's own standard output (its script's, stderr included).
    pub stdout: Vec<String>,
    /// The last lines of the kernel console (vng's stderr).
    pub console_tail: VecDeque<String>,
    pub ending: Ending,
    pub elapsed: Duration,
}

enum Line {
    Out(String),
    Console(String),
}

fn forward(pipe: impl Read + Send + 'static, tx: mpsc::Sender<Line>, wrap: fn(String) -> Line) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_owned();
                    if tx.send(wrap(line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Boots a guest with `args`, within `bound`: past it, the whole process group (vng and QEMU)
/// is killed. The guest's output lines are echoed with `echo` before them when given; both
/// streams are logged in `log_dir`.
pub fn boot(
    vng: &Vng,
    args: &[String],
    bound: Duration,
    log_dir: &Path,
    echo: Option<&str>,
) -> anyhow::Result<Booted> {
    fs::create_dir_all(log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
    let mut output_log = fs::File::create(log_dir.join("output.log"))?;
    let mut console_log = fs::File::create(log_dir.join("console.log"))?;
    let started = Instant::now();
    let mut child = vng
        .command(args)
        .spawn()
        .context("cannot start vng (virtme-ng)")?;
    let (tx, rx) = mpsc::channel();
    forward(
        child.stdout.take().context("stdout")?,
        tx.clone(),
        Line::Out,
    );
    forward(child.stderr.take().context("stderr")?, tx, Line::Console);
    let mut booted = Booted {
        stdout: Vec::new(),
        console_tail: VecDeque::new(),
        ending: Ending::Exited(None),
        elapsed: Duration::ZERO,
    };
    let mut timed_out = false;
    // After a kill, what is still in the pipes is read for a few seconds at most.
    let mut deadline = started + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Line::Out(line)) => {
                writeln!(output_log, "{line}")?;
                if let Some(prefix) = echo {
                    eprintln!("[{prefix}] {line}");
                }
                booted.stdout.push(line);
            }
            Ok(Line::Console(line)) => {
                writeln!(console_log, "{line}")?;
                if booted.console_tail.len() == CONSOLE_TAIL {
                    booted.console_tail.pop_front();
                }
                booted.console_tail.push_back(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !timed_out => {
                timed_out = true;
                // SAFETY: kill(2) of the process group we created for the child.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                deadline = Instant::now() + Duration::from_secs(5);
            }
            Err(_) => break,
        }
    }
    if timed_out {
        // SAFETY: as above; the group may hold a straggler that kept the pipes open.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    }
    let status = child.wait().context("cannot wait for vng")?;
    booted.elapsed = started.elapsed();
    booted.ending = if timed_out {
        Ending::TimedOut(bound)
    } else {
        Ending::Exited(status.code())
    };
    Ok(booted)
}

fn run_guest(
    vng: &Vng,
    kernel: &Kernel,
    accel: Accel,
    artifacts: &Artifacts,
    e2e_args: &[String],
    bound: Duration,
) -> anyhow::Result<Outcome> {
    let label = kernel.label();
    let dir = output_dir().join(kernel.slug());
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kubernetes_validate = setup::ensure_kubernetes_validate()?;
    let script = guest::script(&ScriptParams {
        kubernetes_validate: &kubernetes_validate,
        e2e: &artifacts.e2e,
        tests_dir: &workspace_root().join("tests"),
        tcptrace: &run::binary(),
        xtask: &artifacts.xtask,
        e2e_args,
        accel,
    });
    let script_path = dir.join("guest.sh");
    fs::write(&script_path, script)
        .with_context(|| format!("cannot write {}", script_path.display()))?;
    let exec = format!(
        "bash {}",
        guest::sh_quote(&script_path.display().to_string())
    );
    let args = guest::vng_args(
        &kernel.image(),
        accel,
        guest::GUEST_CPUS,
        guest::GUEST_MEMORY,
        &exec,
    );
    eprintln!(
        "xtask: matrix: booting {label} ({}), up to {} s",
        accel.name(),
        bound.as_secs()
    );
    let booted = boot(vng, &args, bound, &dir, Some(&label))?;
    let report = GuestReport::parse(&booted.stdout.join("\n"));
    let failure = report.failure(booted.ending);
    if let Some(why) = &failure {
        eprintln!(
            "xtask: matrix: {label}: {why}; the last lines of its console ({}):",
            dir.join("console.log").display()
        );
        for line in &booted.console_tail {
            eprintln!("  | {line}");
        }
        let tail = &booted.stdout[booted.stdout.len().saturating_sub(OUTPUT_TAIL)..];
        eprintln!(
            "xtask: matrix: {label}: the last lines of its output ({}):",
            dir.join("output.log").display()
        );
        for line in tail {
            eprintln!("  | {line}");
        }
    }
    let line = guest::summary_line(
        &label,
        report.release.as_deref(),
        report.e2e,
        report.smoke.as_ref(),
        booted.elapsed,
        failure.as_deref(),
    );
    eprintln!("xtask: matrix: {line}");
    Ok(Outcome {
        line,
        failure: failure.map(|why| format!("{label}: {why}")),
    })
}

/// The summary line of the host's own run, in the guests' format.
pub fn host_line(e2e: TestCounts, smoke: Option<&SmokeCounts>, elapsed: Duration) -> String {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    guest::summary_line(
        "host",
        Some(&format!("{} (host)", release.trim())),
        e2e,
        smoke,
        elapsed,
        None,
    )
}

/// `xtask guest-smoke`, inside a guest: the host's smoke check on the binaries built by the
/// host, its counts as a marker line for the host to read.
pub fn guest_smoke() -> anyhow::Result<ExitCode> {
    // The guest's /tmp is a writable overlay; the workspace is read-only there.
    let dir = std::env::temp_dir().join("tcptrace-matrix-smoke");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let counts = bench::smoke(&dir)?;
    println!("{}", guest::smoke_marker(&counts));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_e2e_executable_in_cargos_messages() {
        let json = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"tcp-peer"},"executable":"/w/target/debug/tcp-peer"}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"e2e"},"executable":"/w/target/debug/deps/e2e-5f2c"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            test_executable(json, "e2e"),
            Some(PathBuf::from("/w/target/debug/deps/e2e-5f2c"))
        );
        assert_eq!(test_executable(json, "other"), None);
        assert_eq!(test_executable("not json\n", "e2e"), None);
    }

    #[test]
    fn a_missing_kernel_image_is_refused_on_one_line_before_anything_runs() {
        let err = resolve(&["/boot/does-not-exist".to_owned()])
            .expect_err("refused")
            .to_string();
        assert_eq!(
            err,
            "--kernel /boot/does-not-exist: no such kernel image (name an installed \
             /boot/vmlinuz-…, a package such as linux-image-6.1.0-57-amd64, or a release)"
        );
        assert!(resolve(&["vmlinuz".to_owned()]).is_err());
    }
}
