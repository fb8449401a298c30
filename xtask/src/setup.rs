//! Idempotent set-up of the BPF build chain for the active toolchain.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail};

/// bpf-linker's version; its LLVM feature must match the toolchain's LLVM major.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// What building tcptrace needs.
pub fn run() -> anyhow::Result<ExitCode> {
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    Ok(ExitCode::SUCCESS)
}

/// What building needs, plus the tools the tests and benchmarks drive (only their tasks and
/// `cargo xtask setup` install packages: running tcptrace does not).
pub fn run_for_tests() -> anyhow::Result<ExitCode> {
    run()?;
    ensure_test_tools()?;
    ensure_kubernetes_validate()?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a command, failing with its name when it does not succeed.
pub fn status(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its standard output, failing with its name and standard error
/// when it does not succeed.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_rust_src() -> anyhow::Result<()> {
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))?;
    let src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if src.is_dir() {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src (needed to build `core` for the BPF target)");
    status(Command::new("rustup").args(["component", "add", "rust-src"]))
}

/// The LLVM major version rustc was built with ("LLVM version: 22.1.2" → 22).
fn rustc_llvm_major() -> anyhow::Result<u32> {
    let version = output(Command::new("rustc").arg("-vV"))?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.trim().parse().ok())
        .context("`rustc -vV` does not say its LLVM version")
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cargo"))
}

fn home() -> PathBuf {
    env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// True when bpf-linker runs and links the LLVM major rustc uses.
fn bpf_linker_fits(llvm_major: u32) -> bool {
    let path = cargo_home().join("bin/bpf-linker");
    let runs = Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !runs {
        return false;
    }
    // The dynamic section names the LLVM it was built against: libLLVM.so.<major>...
    let needle = format!("libLLVM.so.{llvm_major}.");
    fs::read(&path).is_ok_and(|bytes| {
        bytes
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    })
}

/// Builds bpf-linker against the toolchain's own libLLVM (rustc ships it as a shared library),
/// so no system LLVM of the right version is needed.
fn ensure_bpf_linker() -> anyhow::Result<()> {
    let major = rustc_llvm_major()?;
    if bpf_linker_fits(major) {
        return Ok(());
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against the toolchain's LLVM {major}"
    );
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let lib = fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot list {}", lib_dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so.") || name.starts_with("libLLVM-"))
        .with_context(|| format!("no libLLVM shared library in {}", lib_dir.display()))?;
    let prefix = home().join(".cache/tcptrace/rust-llvm");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("cannot create {}", prefix_lib.display()))?;
    // bpf-linker's build looks for `libLLVM.so`; the binary then loads the soname via its rpath.
    for link in ["libLLVM.so", lib.as_str()] {
        let link = prefix_lib.join(link);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(lib_dir.join(&lib), &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    status(
        Command::new("cargo")
            .args([
                "install",
                "--force",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .env("LLVM_PREFIX", &prefix),
    )?;
    if !bpf_linker_fits(major) {
        bail!("bpf-linker was installed but does not run against LLVM {major}");
    }
    Ok(())
}

/// Programs the end-to-end tests run, and the Debian packages that provide them: `ip` and `ss`
/// build network namespaces and cross-check counts, `nft` drops packets inside them;
/// `prometheus` scrapes `tcptrace export` and `promtool` checks its output and alerting rules;
/// `openssl` makes the certificate of its TLS test; `systemd-analyze` verifies the unit;
/// `tmux` runs the full-screen view in a pane of known size and reads it back.
const TEST_TOOLS: &[(&str, &str)] = &[
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("openssl", "openssl"),
    ("systemd-analyze", "systemd"),
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("nft", "nftables"),
    ("sysctl", "procps"),
    ("setpriv", "util-linux"),
    ("tmux", "tmux"),
];

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|path| {
        env::split_paths(&path).any(|dir| dir.join(program).is_file())
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|dir| Path::new(dir).join(program).is_file())
    })
}

/// Installs the missing test tools with apt-get, when we are root on a Debian-like system;
/// elsewhere says what is missing and goes on (the tests that need them fail with the reason).
fn ensure_test_tools() -> anyhow::Result<()> {
    let mut missing: Vec<&str> = TEST_TOOLS
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let root = output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0");
    if !root || !on_path("apt-get") {
        eprintln!(
            "xtask: the end-to-end tests need these packages: {} (install them as root)",
            missing.join(", ")
        );
        return Ok(());
    }
    apt_install(&missing)
}

/// Installs Debian packages with apt-get, saying which; refreshes the package lists first if
/// the install fails (a fresh machine may have none yet).
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask: installing {}", packages.join(", "));
    let install = || {
        status(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    install().or_else(|_| {
        eprintln!("xtask: apt-get update, then installing again");
        status(Command::new("apt-get").arg("update"))?;
        install()
    })
}

/// True when dpkg has the package installed.
pub fn dpkg_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|status| status.trim() == "install ok installed")
}

/// Installs those of `packages` that dpkg does not have.
pub fn ensure_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !dpkg_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

/// virtme-ng's version: the `vng` that boots the kernel matrix's guests.
const VIRTME_NG_VERSION: &str = "1.42";

/// Installs virtme-ng in a virtual environment of its own under the cache (pinned, and apart
/// from the system's Python, which Debian does not let pip change); returns its `bin` folder,
/// which must come first on vng's PATH (vng runs `virtme-run` from there).
pub fn ensure_virtme_ng() -> anyhow::Result<PathBuf> {
    let venv = home().join(format!(".cache/tcptrace/virtme-ng-{VIRTME_NG_VERSION}"));
    let bin = venv.join("bin");
    let fits = output(Command::new(bin.join("vng")).arg("--version"))
        .is_ok_and(|version| version.split_whitespace().last() == Some(VIRTME_NG_VERSION));
    if fits {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing virtme-ng {VIRTME_NG_VERSION} (pip, in {})",
        venv.display()
    );
    status(Command::new("python3").arg("-m").arg("venv").arg(&venv)).context(
        "cannot create a Python virtual environment (on Debian: apt-get install python3-venv)",
    )?;
    status(Command::new(bin.join("pip")).args([
        "install",
        "--quiet",
        &format!("virtme-ng=={VIRTME_NG_VERSION}"),
    ]))?;
    Ok(bin)
}

/// kubernetes-validate's version: the Kubernetes schemas the manifest is checked against
/// ship inside it, so that the check runs offline.
const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";

/// Installs kubernetes-validate in a virtual environment of its own under the cache, as
/// virtme-ng; returns the path of its command (the end-to-end tests get it as
/// `KUBERNETES_VALIDATE`).
pub fn ensure_kubernetes_validate() -> anyhow::Result<PathBuf> {
    let venv = home().join(format!(
        ".cache/tcptrace/kubernetes-validate-{KUBERNETES_VALIDATE_VERSION}"
    ));
    let command = venv.join("bin/kubernetes-validate");
    let fits = output(Command::new(&command).arg("--version"))
        .is_ok_and(|version| version.trim() == KUBERNETES_VALIDATE_VERSION);
    if fits {
        return Ok(command);
    }
    eprintln!(
        "xtask: installing kubernetes-validate {KUBERNETES_VALIDATE_VERSION} (pip, in {})",
        venv.display()
    );
    status(Command::new("python3").arg("-m").arg("venv").arg(&venv)).context(
        "cannot create a Python virtual environment (on Debian: apt-get install python3-venv)",
    )?;
    status(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        &format!("kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}"),
    ]))?;
    Ok(command)
}
