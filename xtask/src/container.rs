//! `cargo xtask container`: the image of `tcptrace/dist/container/Containerfile`, built
//! offline: the release binary and the shared libraries `ldd` says it loads are staged with
//! their paths into `target/container/rootfs`, and podman builds the image from
//! `scratch`; then `tcptrace export --help` must run inside it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    run::{self, workspace_root},
    setup::{ensure_packages, output, status},
};

pub const IMAGE: &str = "localhost/tcptrace:0.1.0";

/// The absolute paths of the shared objects in `ldd`'s output (the vDSO has none).
fn shared_objects(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, after)) => after.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Copies `file` to the same path under `root`.
fn stage(root: &Path, file: &Path) -> anyhow::Result<()> {
    let target = root.join(file.strip_prefix("/").unwrap_or(file));
    fs::create_dir_all(target.parent().expect("a file has a folder"))?;
    // The file itself, not the symbolic link many library names are.
    fs::copy(file, &target).with_context(|| format!("copying {}", file.display()))?;
    Ok(())
}

pub fn run() -> anyhow::Result<ExitCode> {
    run::build()?;
    // podman builds the image and runs it (buildah alone could not run it).
    if Command::new("podman").arg("--version").output().is_err() {
        ensure_packages(&["podman"])?;
    }
    if Command::new("podman").arg("--version").output().is_err() {
        bail!("podman does not run here (apt-get install podman)");
    }
    let context = workspace_root().join("target/container");
    let root = context.join("rootfs");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(root.join("usr/bin"))?;
    let binary = run::binary();
    fs::copy(&binary, root.join("usr/bin/tcptrace"))?;
    let ldd = output(Command::new("ldd").arg(&binary))?;
    let libraries = shared_objects(&ldd);
    ensure!(!libraries.is_empty(), "ldd listed no library: {ldd}");
    for library in &libraries {
        stage(&root, library)?;
    }
    // The probe is loaded against the host's BTF, mounted at run time.
    fs::create_dir_all(root.join("sys/kernel/btf"))?;
    fs::create_dir_all(root.join("proc"))?;
    fs::create_dir_all(root.join("tmp"))?;
    let containerfile = workspace_root().join("tcptrace/dist/container/Containerfile");
    eprintln!(
        "xtask: building {IMAGE} with podman from {} ({} libraries)",
        containerfile.display(),
        libraries.len()
    );
    status(
        Command::new("podman")
            .args(["build", "--pull=never", "-t", IMAGE, "-f"])
            .arg(&containerfile)
            .arg(&context),
    )?;
    let help = match output(Command::new("podman").args([
        "run",
        "--rm",
        "--network=none",
        IMAGE,
        "export",
        "--help",
    ])) {
        Ok(help) => help,
        Err(err) => {
            // A runtime that cannot start containers here (crun refuses cgroups in hybrid
            // mode, for one): the image's own file system, mounted, run with chroot, still
            // shows that nothing outside it is needed.
            eprintln!("xtask: podman run failed ({err:#}); running the image's files with chroot");
            let mounted = output(Command::new("podman").args(["image", "mount", IMAGE]))?;
            let help = output(Command::new("chroot").arg(mounted.trim()).args([
                "/usr/bin/tcptrace",
                "export",
                "--help",
            ]));
            status(Command::new("podman").args(["image", "unmount", IMAGE]))?;
            help?
        }
    };
    ensure!(
        help.contains("--web-config") && help.contains("--listen"),
        "`tcptrace export --help` in the image printed: {help}"
    );
    eprintln!("xtask: {IMAGE}: `tcptrace export --help` runs in it");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_files_to_stage() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f48)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f48)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f48)\n";
        assert_eq!(
            shared_objects(ldd),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
