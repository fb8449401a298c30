//! Compiles the kernel program (`tcptrace-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR`, where `src/probe.rs` embeds it.
//!
//! The nested build is the one aya-build 0.2.0's `build_ebpf` runs (same target, flags and
//! toolchain), but quiet: aya-build forwards every line of the nested cargo's output, each
//! `Compiling …` included, as a `cargo:warning`. Here a clean build of the program prints
//! nothing, its compiler warnings are forwarded as warnings, and a failed one shows the
//! compiler's errors in full.

use std::{
    env,
    ffi::OsString,
    fs,
    path::PathBuf,
    process::{self, Command},
};

use anyhow::{Context as _, bail};

/// The kernel program's package, and its binary target (`[[bin]]` in its Cargo.toml): the
/// object's name in `OUT_DIR`.
const PACKAGE: &str = "tcptrace-ebpf";
const BINARY: &str = "tcptrace-probe";

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir
        .parent()
        .context("tcptrace/ has no parent directory")?
        .join(PACKAGE);
    // The build-dependency on tcptrace-ebpf reruns this script when its library changes, not
    // when the program (its binary) does; this covers every file of the package.
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());

    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!(
            "bpf-linker is not installed: run `cargo xtask setup` (it builds it for this toolchain)"
        );
    }

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR is not set")?);
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN")?.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        endian => bail!("no BPF target for a {endian}-endian host"),
    };
    // The program's target directory, apart from the object copied to `OUT_DIR`.
    let target_dir = out_dir.join("ebpf-target");

    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "--release", "--package", PACKAGE])
        .args(["--bin", BINARY, "--target", target])
        .arg("--target-dir")
        .arg(&target_dir)
        // The BPF target ships no precompiled `core`. RUSTC_BOOTSTRAP lets stable build it,
        // for this nested build only.
        .args(["-Z", "build-std=core"])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags()?)
        // The outer build's compiler and its wrapper (clippy-driver, under `cargo clippy`):
        // the toolchain's own compiler builds the program.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let output = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    // Quiet, cargo writes only the compiler's messages: warnings, or errors.
    let messages = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // The errors are the program's, not this script's: no backtrace of it.
        eprint!("{messages}");
        eprintln!(
            "error: the kernel program ({PACKAGE}) did not compile for {target} ({}); the \
             compiler's output is above. The nested build: {cmd:?}",
            output.status
        );
        process::exit(1);
    }
    for line in messages.lines() {
        println!("cargo:warning={line}");
    }

    let (from, to) = (
        target_dir.join(target).join("release").join(BINARY),
        out_dir.join(BINARY),
    );
    fs::copy(&from, &to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Cargo of this build's toolchain, as aya-build runs it: through rustup when there is one.
fn cargo() -> Command {
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    if Command::new("rustup").arg("--version").output().is_ok() {
        let toolchain = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());
        let mut cmd = Command::new("rustup");
        cmd.args(["run", &toolchain, "cargo"]);
        cmd
    } else {
        Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
    }
}

/// The flags aya-build gives the program: the host's architecture as `bpf_target_arch` (for
/// aya-ebpf's architecture-specific code), full debug information, and BTF from the linker.
fn rustflags() -> anyhow::Result<OsString> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH")?;
    Ok([
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ]
    // CARGO_ENCODED_RUSTFLAGS separates flags by 0x1f.
    .join("\x1f")
    .into())
}
