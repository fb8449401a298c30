//! Compiles the kernel program (`tcptrace-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR`, where `src/probe.rs` embeds it.

use std::{env, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir
        .parent()
        .context("tcptrace/ has no parent directory")?
        .join("tcptrace-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .context("non-UTF-8 path to tcptrace-ebpf")?;

    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!(
            "bpf-linker is not installed: run `cargo xtask setup` (it builds it for this toolchain)"
        );
    }

    // The BPF target needs `-Z build-std=core`. aya-build adds it when RUSTC_BOOTSTRAP is set in
    // its environment; set it for the nested build only, so the rest of the build stays stable.
    // SAFETY: a build script is single-threaded here; nothing else reads the environment.
    unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    let toolchain = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());

    aya_build::build_ebpf(
        [Package {
            name: "tcptrace-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
}
