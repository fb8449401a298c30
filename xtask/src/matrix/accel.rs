//! Whether the guests can use KVM, found out rather than assumed: /dev/kvm must create a VM,
//! and a tiny guest must then boot under it. Nested under another hypervisor, /dev/kvm can
//! pass the first test and fail the second: QEMU aborts on an MSR it cannot set, or the guest
//! hangs early in boot. Then the guests run under TCG, QEMU's emulator: slower, but correct.

use std::{
    fs::{self, OpenOptions},
    os::fd::AsRawFd as _,
    path::Path,
    time::Duration,
};

use super::{
    Vng, boot,
    guest::{self, Accel, MARKER},
};

/// A KVM guest prints its marker within a few seconds; a TCG boot alone takes 15-40 s here,
/// so past this the KVM guest is not coming.
const PROBE_BOUND: Duration = Duration::from_secs(30);

/// `_IO(KVMIO, 0x00)` and `_IO(KVMIO, 0x01)` (include/uapi/linux/kvm.h).
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_API_VERSION: libc::c_int = 12;

/// Why /dev/kvm cannot run a VM, or `None` when it can create one.
fn kvm_device_refuses() -> Option<String> {
    let kvm = match OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(kvm) => kvm,
        Err(err) => return Some(format!("cannot open /dev/kvm: {err}")),
    };
    // SAFETY: ioctls without arguments on a file we hold open.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != KVM_API_VERSION {
        return Some(format!(
            "/dev/kvm speaks KVM API {version}, not {KVM_API_VERSION}"
        ));
    }
    // SAFETY: as above; the VM's descriptor is closed at once.
    let vm = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Some(format!(
            "KVM_CREATE_VM failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `vm` is a descriptor the ioctl just gave us and nothing else holds.
    unsafe { libc::close(vm) };
    None
}

/// The host's boot: a probe's answer holds until the machine restarts.
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// KVM when a tiny guest of `image` boots under it, else TCG; says which and why. The answer
/// of the tiny boot is kept in `dir` for this boot of the host, since it costs up to
/// [`PROBE_BOUND`].
pub fn detect(vng: &Vng, image: &Path, dir: &Path) -> Accel {
    if let Some(why) = kvm_device_refuses() {
        eprintln!("xtask: matrix: {why}: the guests run under TCG (emulated, slower)");
        return Accel::Tcg;
    }
    let cache = dir.join("kvm-probe");
    let key = format!("{} {}", boot_id(), image.display());
    if let Ok(text) = fs::read_to_string(&cache)
        && let Some((cached_key, answer)) = text.trim().rsplit_once(' ')
        && cached_key == key
    {
        let accel = if answer == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        eprintln!(
            "xtask: matrix: {} (a tiny KVM guest was tried earlier in this boot of the host; \
             delete {} to try again)",
            accel.name(),
            cache.display()
        );
        return accel;
    }
    eprintln!(
        "xtask: matrix: /dev/kvm creates VMs; booting a tiny KVM guest (up to {} s) to see \
         whether guests run under it",
        PROBE_BOUND.as_secs()
    );
    let args = guest::vng_args(
        image,
        Accel::Kvm,
        1,
        "512M",
        &format!("echo {MARKER} kvm works"),
    );
    let accel = match boot(vng, &args, PROBE_BOUND, &dir.join("kvm-probe.d"), None) {
        Ok(booted) if booted.stdout.iter().any(|l| l.contains("kvm works")) => {
            eprintln!(
                "xtask: matrix: the KVM guest booted in {:.1} s: KVM",
                booted.elapsed.as_secs_f64()
            );
            Accel::Kvm
        }
        Ok(booted) => {
            let last = booted
                .console_tail
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map_or(String::new(), |l| {
                    format!("; its console's last line: {}", l.trim())
                });
            eprintln!(
                "xtask: matrix: the KVM guest did not boot ({:?}{last}): the guests run under \
                 TCG (emulated, slower)",
                booted.ending
            );
            Accel::Tcg
        }
        Err(err) => {
            eprintln!("xtask: matrix: the KVM probe failed to start ({err:#}): TCG");
            Accel::Tcg
        }
    };
    let answer = if accel == Accel::Kvm { "kvm" } else { "tcg" };
    let _ = fs::write(&cache, format!("{key} {answer}\n"));
    accel
}
