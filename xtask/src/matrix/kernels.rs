//! Which kernels the matrix boots: the default matrix, kept here and nowhere else, and what a
//! `--kernel` argument names. Pure: the edge hands in `apt-cache`'s text.

use std::path::{Path, PathBuf};

/// A family of Debian kernel packages, `linux-image-{series}-{N}-{flavour}`, of which the
/// matrix takes the highest ABI number N that the archive offers: new 6.1 point releases keep
/// arriving under new N, and an old one leaves the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub series: &'static str,
    pub flavour: &'static str,
}

/// The default matrix: Debian 12's own 6.1 LTS kernel, generic and PREEMPT_RT (softirqs run
/// in threads there, which changes how transitions interleave with the probe). The host's
/// kernel is tested by the host's part of `cargo xtask test`.
pub const DEFAULT_MATRIX: &[Family] = &[
    Family {
        series: "6.1.0",
        flavour: "amd64",
    },
    Family {
        series: "6.1.0",
        flavour: "rt-amd64",
    },
];

impl Family {
    /// The ABI number N when `package` is `linux-image-{series}-{N}-{flavour}` exactly (not
    /// `-unsigned`, `-dbg`, nor another flavour whose name ends the same way).
    fn abi_of(self, package: &str) -> Option<u32> {
        let rest = package
            .strip_prefix("linux-image-")?
            .strip_prefix(self.series)?
            .strip_prefix('-')?;
        let (abi, flavour) = rest.split_once('-')?;
        (flavour == self.flavour && !abi.is_empty() && abi.bytes().all(|b| b.is_ascii_digit()))
            .then(|| abi.parse().ok())
            .flatten()
    }

    /// The `apt-cache search --names-only` pattern of this family.
    pub fn search_pattern(self) -> String {
        format!(
            "^linux-image-{}-[0-9]+-{}$",
            self.series.replace('.', "\\."),
            self.flavour
        )
    }

    /// The family's newest package in `apt-cache search` output (`NAME - DESCRIPTION` lines).
    pub fn newest(self, search_output: &str) -> Option<String> {
        search_output
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter_map(|name| Some((self.abi_of(name)?, name)))
            .max_by_key(|(abi, _)| *abi)
            .map(|(_, name)| name.to_owned())
    }

    pub fn describe(self) -> String {
        format!("linux-image-{}-N-{}", self.series, self.flavour)
    }
}

/// A kernel of the matrix, as named on the command line or resolved from the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// A kernel image file, booted as it is (its modules, if any, from /lib/modules).
    Image(PathBuf),
    /// A Debian package `linux-image-RELEASE`, installed if missing; its image is
    /// /boot/vmlinuz-RELEASE.
    Package(String),
}

impl Kernel {
    /// What `--kernel` names: a path (anything with a `/`), a package name, or a release such
    /// as `6.1.0-57-rt-amd64` (the package `linux-image-6.1.0-57-rt-amd64`).
    pub fn parse(arg: &str) -> Result<Self, String> {
        let arg = arg.trim();
        if arg.is_empty() {
            return Err("an empty --kernel".to_owned());
        }
        if arg.contains('/') {
            return Ok(Self::Image(PathBuf::from(arg)));
        }
        let package = if arg.starts_with("linux-image-") {
            arg.to_owned()
        } else if arg.starts_with(|c: char| c.is_ascii_digit()) {
            format!("linux-image-{arg}")
        } else {
            return Err(format!(
                "--kernel {arg}: not a kernel image path, a linux-image-… package or a release \
                 such as 6.1.0-57-amd64"
            ));
        };
        if !package
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b))
        {
            return Err(format!("--kernel {arg}: not a Debian package name"));
        }
        Ok(Self::Package(package))
    }

    /// The image to boot.
    pub fn image(&self) -> PathBuf {
        match self {
            Self::Image(path) => path.clone(),
            Self::Package(package) => {
                let release = package.strip_prefix("linux-image-").unwrap_or(package);
                Path::new("/boot").join(format!("vmlinuz-{release}"))
            }
        }
    }

    /// How the kernel is named in messages and file names.
    pub fn label(&self) -> String {
        match self {
            Self::Image(path) => path.display().to_string(),
            Self::Package(package) => package
                .strip_prefix("linux-image-")
                .unwrap_or(package)
                .to_owned(),
        }
    }

    /// A name safe for a directory: the label with `/` and odd characters replaced.
    pub fn slug(&self) -> String {
        let slug: String = self
            .label()
            .trim_start_matches('/')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-._".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if slug.is_empty() {
            "kernel".into()
        } else {
            slug
        }
    }
}

/// The candidate version in `apt-cache policy PACKAGE` output; `None` for `(none)` or no line.
pub fn policy_candidate(policy_output: &str) -> Option<String> {
    policy_output
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEARCH: &str = "\
linux-image-6.1.0-55-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-55-rt-amd64 - Linux 6.1 for 64-bit PCs, PREEMPT_RT (signed)
linux-image-6.1.0-9-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-57-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-57-rt-amd64 - Linux 6.1 for 64-bit PCs, PREEMPT_RT (signed)
linux-image-6.1.0-58-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-58-amd64-dbg - Debug symbols for linux-image-6.1.0-58-amd64
linux-image-6.1.0-58-cloud-amd64 - Linux 6.1 for x86-64 cloud
linux-image-6.1.0-56-rt-amd64 - Linux 6.1 for 64-bit PCs, PREEMPT_RT (signed)
";

    #[test]
    fn the_default_matrix_takes_the_highest_abi_of_each_flavour() {
        let newest: Vec<Option<String>> = DEFAULT_MATRIX.iter().map(|f| f.newest(SEARCH)).collect();
        assert_eq!(
            newest,
            [
                Some("linux-image-6.1.0-57-amd64".to_owned()),
                Some("linux-image-6.1.0-57-rt-amd64".to_owned())
            ]
        );
        // Numerically, not as text: 57 > 9.
        assert_eq!(
            DEFAULT_MATRIX[0]
                .newest("linux-image-6.1.0-9-amd64 - x\nlinux-image-6.1.0-10-amd64 - x\n"),
            Some("linux-image-6.1.0-10-amd64".to_owned())
        );
        assert_eq!(DEFAULT_MATRIX[1].newest(""), None);
        assert_eq!(
            DEFAULT_MATRIX[1].search_pattern(),
            "^linux-image-6\\.1\\.0-[0-9]+-rt-amd64$"
        );
    }

    #[test]
    fn kernel_arguments_name_images_packages_or_releases() {
        assert_eq!(
            Kernel::parse("/boot/vmlinuz-6.1.0-57-amd64"),
            Ok(Kernel::Image("/boot/vmlinuz-6.1.0-57-amd64".into()))
        );
        assert_eq!(
            Kernel::parse("linux-image-6.1.0-57-rt-amd64"),
            Ok(Kernel::Package("linux-image-6.1.0-57-rt-amd64".into()))
        );
        let release = Kernel::parse("6.1.0-57-rt-amd64").unwrap();
        assert_eq!(
            release,
            Kernel::Package("linux-image-6.1.0-57-rt-amd64".into())
        );
        assert_eq!(
            release.image(),
            PathBuf::from("/boot/vmlinuz-6.1.0-57-rt-amd64")
        );
        assert_eq!(release.label(), "6.1.0-57-rt-amd64");
        assert!(Kernel::parse("").is_err());
        assert!(Kernel::parse("vmlinuz").is_err());
        assert!(Kernel::parse("linux-image-6.1; rm -rf").is_err());
        assert_eq!(
            Kernel::parse("/boot/does-not-exist").unwrap().slug(),
            "boot_does-not-exist"
        );
    }

    #[test]
    fn policy_candidates() {
        let policy = "linux-image-6.1.0-57-amd64:\n  Installed: (none)\n  Candidate: 6.1.158-1\n";
        assert_eq!(policy_candidate(policy), Some("6.1.158-1".to_owned()));
        assert_eq!(
            policy_candidate("x:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        assert_eq!(policy_candidate(""), None);
    }
}
