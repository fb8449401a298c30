//! The kernel edge: loads the embedded BPF object with its load-time settings and attaches it.
//! Every failure becomes a [`ProbeError`] that says what to do about it.

use std::{io, os::fd::AsFd as _};

use aya::{Btf as AyaBtf, Ebpf, EbpfLoader, programs::BtfTracePoint};
use tcptrace_ebpf::{DropLayout, Filter, names};
use thiserror::Error;

use crate::{
    core::reset_reason::ResetReasons,
    kernel::{btf, kallsyms, privileges},
};

/// The object built from `tcptrace-ebpf` by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrace-probe"));

/// Default size of the event ring buffer: 4 MiB holds ~43,000 events, a few hundred
/// milliseconds of a storm of tens of thousands of connections per second.
pub const DEFAULT_RING_BYTES: u32 = 4 << 20;

/// Default early wake-up threshold: 1 MiB, a quarter of the default ring. Below it the reader
/// is not woken and drains the ring every [`crate::stream::live::DRAIN_EVERY`].
pub const DEFAULT_WAKEUP_BYTES: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("{}", privileges::denied_message())]
    Permission,
    #[error(
        "cannot read the kernel's BTF ({0}); tcptrace needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF (/sys/kernel/btf/vmlinux), as distribution kernels are"
    )]
    NoBtf(String),
    #[error("the kernel has no {0} tracepoint (no btf_trace_{0} in its BTF)")]
    MissingTracepoint(String),
    #[error("unexpected kernel BTF: {0}")]
    Layout(String),
    #[error("loading the BPF program failed: {0}")]
    Load(String),
    #[error("attaching to {tracepoint} failed: {reason}")]
    Attach { tracepoint: String, reason: String },
}

/// What the probe is loaded with.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub filter: Filter,
    pub ring_bytes: u32,
    /// Wake the reader early once this many bytes wait (0: the kernel's policy, a wake-up
    /// whenever the reader has caught up). The reader must also drain the ring on a timer.
    pub wakeup_bytes: u64,
    /// Also attach the `tcp:*` tracepoints that explain transitions (resets, retransmissions).
    pub causes: bool,
    /// Also attach the program on `skb:kfree_skb` that tells the fates of request sockets and
    /// closed ports; optional: where it cannot attach, the rest works without it.
    pub drops: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            ring_bytes: DEFAULT_RING_BYTES,
            wakeup_bytes: DEFAULT_WAKEUP_BYTES,
            causes: false,
            drops: false,
        }
    }
}

/// The loaded, attached probe. Dropping it detaches everything.
pub struct Probe {
    pub ebpf: Ebpf,
    /// The names of the reasons that reset records carry; empty when the kernel reports none
    /// (before Linux 6.10).
    pub reset_reasons: ResetReasons,
    /// Names of the attached programs.
    attached: Vec<&'static str>,
    /// Whether the program on `skb:kfree_skb` is attached.
    drops: bool,
}

/// The kernel's TCP receive functions, whose own reasonless drops are a request socket's.
const TCP_RECEIVE: [&str; 2] = ["tcp_v4_rcv", "tcp_v6_rcv"];

/// The drop program for this kernel and its settings, or why there is none.
fn drop_program(kernel_btf: &btf::Btf) -> Result<(&'static str, DropLayout), String> {
    let arguments = kernel_btf
        .tracepoint_arguments(names::DROP_TRACEPOINT)
        .ok_or("the kernel has no kfree_skb tracepoint with BTF")?;
    // (skb, location), then the reason since Linux 5.17, then rx_sk since 6.12.
    let program = match arguments {
        0..=2 => return Err("the kernel's kfree_skb tracepoint passes no drop reason".into()),
        3 => names::DROP_PROGRAM,
        _ => names::DROP_PROGRAM_RX_SK,
    };
    let mut layout = kernel_btf.drop_layout()?;
    match kallsyms::read(&TCP_RECEIVE) {
        Ok(ranges) => {
            let [v4, v6] = [ranges[0], ranges[1]];
            if v4.is_none() {
                log::warn!(
                    "tcp_v4_rcv not found in /proc/kallsyms: embryonic resets are not told apart"
                );
            }
            layout.rcv_v4 = v4.unwrap_or_default();
            layout.rcv_v6 = v6.unwrap_or_default();
        }
        Err(err) => {
            log::warn!("cannot read /proc/kallsyms ({err}): embryonic resets are not told apart")
        }
    }
    Ok((program, layout))
}

/// `struct bpf_prog_info` (include/uapi/linux/bpf.h) up to `recursion_misses` (Linux 5.12).
const PROG_INFO_LEN: usize = 232;
const PROG_INFO_RUN_TIME_NS: usize = 192;
const PROG_INFO_RUN_CNT: usize = 200;
const PROG_INFO_RECURSION_MISSES: usize = 208;

/// What the kernel tells about a loaded program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// Runs skipped because another BPF program was running on the CPU.
    pub recursion_misses: u64,
    /// Total run time and runs; counted only while `kernel.bpf_stats_enabled` is 1.
    pub run_time_ns: u64,
    pub run_count: u64,
}

impl std::ops::AddAssign for ProgramStats {
    fn add_assign(&mut self, other: Self) {
        self.recursion_misses += other.recursion_misses;
        self.run_time_ns += other.run_time_ns;
        self.run_count += other.run_count;
    }
}
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// A program's statistics from `bpf_prog_info`. `recursion_misses` counts the runs the kernel
/// skipped because another BPF program was running on the same CPU: it happens when a softirq
/// interrupts a running program and fires the same tracepoint. Those transitions are lost, and
/// the kernel counts them only here.
fn program_stats(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<ProgramStats> {
    use std::os::fd::AsRawFd as _;

    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    #[repr(C, align(8))]
    struct Info([u8; PROG_INFO_LEN]);
    let mut info = Info([0; PROG_INFO_LEN]);
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: PROG_INFO_LEN as u32,
        info: info.0.as_mut_ptr() as u64,
    };
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD writes at most `info_len` bytes to `info`, which lives
    // for the call; `attr` is a valid, fully initialized `bpf_attr` prefix for this command.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            size_of::<InfoAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // Older kernels fill less: missing fields read as zero, which is what they can tell.
    let field = |at: usize| u64::from_ne_bytes(info.0[at..at + 8].try_into().expect("8 bytes"));
    Ok(ProgramStats {
        recursion_misses: field(PROG_INFO_RECURSION_MISSES),
        run_time_ns: field(PROG_INFO_RUN_TIME_NS),
        run_count: field(PROG_INFO_RUN_CNT),
    })
}

/// A full error chain on one line ("a: b: c"), as aya nests its causes.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// True when any cause in the chain is EPERM or EACCES.
fn is_permission(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// Raises RLIMIT_MEMLOCK: kernels before 5.11 charge BPF maps against it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer; failure only matters on old kernels, where
    // the load error that follows says so.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    if rc != 0 {
        log::debug!(
            "setrlimit(RLIMIT_MEMLOCK) failed: {}",
            io::Error::last_os_error()
        );
    }
}

/// Hands the heap's free memory back to the kernel. Start-up parses the kernel's BTF twice
/// (ours, then aya's: some 20 MiB of small allocations, all freed once the programs are loaded);
/// without this, glibc keeps those pages and they stay in the tracer's resident set for its whole
/// run.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no arguments to get wrong; it only returns free pages of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `release`: the running kernel's (`uname -r`), named when it is too old for the probe.
fn load_error(err: &(dyn std::error::Error + 'static), release: Option<&str>) -> ProbeError {
    if is_permission(err) {
        return ProbeError::Permission;
    }
    match release {
        Some(release) if release_before(release, (5, 8)) => ProbeError::Load(format!(
            "BPF ring buffers need Linux 5.8 or later; this kernel is {release} ({})",
            chain(err)
        )),
        _ => ProbeError::Load(chain(err)),
    }
}

/// Whether a release like `5.4.0-150-generic` is older than `major.minor`.
fn release_before(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    match (numbers.next(), numbers.next()) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}

/// Loads and attaches one more program of the object on a BTF-typed tracepoint.
fn attach_program(
    ebpf: &mut Ebpf,
    btf: &AyaBtf,
    name: &str,
    tracepoint: &str,
    release: Option<&str>,
) -> Result<(), ProbeError> {
    let attach_error = |err: &(dyn std::error::Error + 'static)| ProbeError::Attach {
        tracepoint: tracepoint.to_owned(),
        reason: chain(err),
    };
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| ProbeError::Load(format!("program {name} missing")))?
        .try_into()
        .map_err(|err: aya::programs::ProgramError| attach_error(&err))?;
    program
        .load(tracepoint, btf)
        .map_err(|err| load_error(&err, release))?;
    program.attach().map_err(|err| attach_error(&err))?;
    Ok(())
}

impl Probe {
    /// Checks privileges, reads the socket layout from the kernel's BTF, loads and attaches.
    /// `kernel_release`: the running kernel's (`uname -r`, which the OS edge reads), named in
    /// the error when the kernel is too old to load the probe.
    pub fn load(config: &ProbeConfig, kernel_release: Option<&str>) -> Result<Self, ProbeError> {
        privileges::check().map_err(|_| ProbeError::Permission)?;
        let kernel_btf =
            btf::read_kernel_btf().map_err(|err| ProbeError::NoBtf(err.to_string()))?;
        // (program, tracepoint). The kernel runs the programs of a tracepoint in the order they
        // were attached, which the three transition programs rely on.
        let mut programs = vec![
            (names::ENTER_PROGRAM, names::PROGRAM),
            (names::PROGRAM, names::PROGRAM),
            (names::NESTED_PROGRAM, names::PROGRAM),
        ];
        if config.causes {
            programs.extend(names::SIGNAL_PROGRAMS.map(|name| (name, name)));
        }
        if let Some((_, missing)) = programs.iter().find(|(_, t)| !kernel_btf.has_tracepoint(t)) {
            return Err(ProbeError::MissingTracepoint((*missing).to_owned()));
        }
        let layout = kernel_btf.sock_layout().map_err(ProbeError::Layout)?;
        let drops = if config.drops {
            drop_program(&kernel_btf)
        } else {
            Err(String::new())
        };
        if layout.has_netns == 0 {
            log::info!("the kernel has no network namespaces: events carry namespace 0");
        }
        if layout.cookie == 0 {
            log::warn!(
                "the kernel's BTF has no sock_common.skc_cookie: sockets that predate tracing \
                 carry no owner (the children of listeners that predate it still do)"
            );
        }
        let reset_reasons = if layout.reset_reason_arg != 0 {
            kernel_btf.reset_reasons()
        } else {
            log::info!(
                "tcp:tcp_send_reset carries no reason on this kernel (Linux 6.10 has it): resets \
                 sent are shown without one"
            );
            ResetReasons::default()
        };
        drop(kernel_btf);
        release_freed_memory();
        // `EbpfLoader::new` parses the kernel's BTF for itself, out of reach of the attach below,
        // which needs it too: that copy goes at once, so that only one is ever held.
        let mut loader = EbpfLoader::new();
        loader.btf(None);
        let aya_btf = AyaBtf::from_sys_fs().map_err(|err| ProbeError::NoBtf(chain(&err)))?;
        raise_memlock_limit();

        let mut ebpf = loader
            .btf(Some(&aya_btf))
            .override_global(names::SOCK_LAYOUT, &layout, true)
            .override_global(names::WAKEUP_BYTES, &config.wakeup_bytes, true)
            .override_global(names::FILTER, &config.filter, true)
            .override_global(
                names::DROP_LAYOUT,
                drops.as_ref().map_or(&DropLayout::default(), |(_, l)| l),
                true,
            )
            .map_max_entries(names::EVENTS, config.ring_bytes)
            .load(OBJECT)
            .map_err(|err| load_error(&err, kernel_release))?;
        for (name, tracepoint) in &programs {
            attach_program(&mut ebpf, &aya_btf, name, tracepoint, kernel_release)?;
        }
        let mut attached: Vec<&'static str> = programs.into_iter().map(|(name, _)| name).collect();
        let drops = match drops {
            Ok((name, _)) => {
                let tracepoint = names::DROP_TRACEPOINT;
                match attach_program(&mut ebpf, &aya_btf, name, tracepoint, kernel_release) {
                    Ok(()) => {
                        attached.push(name);
                        true
                    }
                    Err(err) => {
                        log::warn!("request-socket fates by listener unavailable: {err}");
                        false
                    }
                }
            }
            Err(why) => {
                if config.drops {
                    log::warn!("request-socket fates by listener unavailable: {why}");
                }
                false
            }
        };
        drop(aya_btf);
        release_freed_memory();
        Ok(Self {
            ebpf,
            reset_reasons,
            attached,
            drops,
        })
    }

    /// Whether the program on `skb:kfree_skb` is attached (asked for, and the kernel allowed it).
    pub fn drops_attached(&self) -> bool {
        self.drops
    }

    fn program_stats(&self, name: &str) -> io::Result<ProgramStats> {
        let program: &BtfTracePoint = self
            .ebpf
            .program(name)
            .ok_or_else(|| io::Error::other(format!("program {name} missing")))?
            .try_into()
            .map_err(io::Error::other)?;
        let fd = program.fd().map_err(io::Error::other)?;
        program_stats(fd.as_fd())
    }

    /// Statistics of the program on `skb:kfree_skb`, when it is attached: it runs for every
    /// packet the machine drops, which is its cost.
    pub fn drop_stats(&self) -> Option<io::Result<ProgramStats>> {
        self.attached
            .iter()
            .find(|name| [names::DROP_PROGRAM, names::DROP_PROGRAM_RX_SK].contains(name))
            .map(|name| self.program_stats(name))
    }

    /// Names of the attached programs.
    pub fn attached(&self) -> &[&'static str] {
        &self.attached
    }

    /// Statistics of the attached programs, summed (see [`program_stats`]).
    pub fn stats(&self) -> io::Result<ProgramStats> {
        let mut total = ProgramStats::default();
        for name in &self.attached {
            total += self.program_stats(name)?;
        }
        Ok(total)
    }

    /// Runs the kernel skipped so far, by role. The enter and nested programs' own misses lose
    /// nothing and are left out: when one of them is skipped, the main program was not running
    /// and took the transition.
    pub fn misses(&self) -> io::Result<Misses> {
        let mut misses = Misses {
            transitions: self.program_stats(names::PROGRAM)?.recursion_misses,
            signals: 0,
        };
        for name in &self.attached {
            if names::SIGNAL_PROGRAMS.contains(name)
                || [names::DROP_PROGRAM, names::DROP_PROGRAM_RX_SK].contains(name)
            {
                misses.signals += self.program_stats(name)?.recursion_misses;
            }
        }
        Ok(misses)
    }
}

/// Runs of the probe's programs the kernel skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misses {
    /// Of the main transition program: the nested program takes each of these.
    pub transitions: u64,
    /// Of the programs that explain transitions: lost.
    pub signals: u64,
}

impl Misses {
    /// Events no program took, given how many the nested program `caught`. Read the misses
    /// first: the kernel counts a miss before the nested program catches it, so a later read
    /// of `caught` can only be ahead, never behind, and a loss is never reported falsely.
    pub fn unrecovered(self, caught: u64) -> u64 {
        self.transitions.saturating_sub(caught) + self.signals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_are_found_in_the_chain() {
        #[derive(Debug, Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        assert!(is_permission(&Outer(io::Error::from_raw_os_error(
            libc::EPERM
        ))));
        assert!(!is_permission(&Outer(io::Error::from_raw_os_error(
            libc::EINVAL
        ))));
        assert_eq!(
            chain(&Outer(io::Error::from_raw_os_error(libc::EINVAL))),
            "outer: Invalid argument (os error 22)"
        );
    }

    #[test]
    fn misses_of_the_main_program_are_lost_only_beyond_what_the_nested_one_caught() {
        let misses = Misses {
            transitions: 16,
            signals: 1,
        };
        assert_eq!(misses.unrecovered(16), 1);
        assert_eq!(misses.unrecovered(14), 3);
        // Caught read after the misses may be ahead of them: never a negative loss.
        assert_eq!(misses.unrecovered(20), 1);
    }

    #[test]
    fn btf_errors_say_what_the_kernel_lacks_on_one_line() {
        let no_btf = ProbeError::NoBtf("No such file or directory (os error 2)".into()).to_string();
        assert!(no_btf.contains("CONFIG_DEBUG_INFO_BTF"), "{no_btf}");
        let missing = ProbeError::MissingTracepoint("inet_sock_set_state".into()).to_string();
        assert_eq!(
            missing,
            "the kernel has no inet_sock_set_state tracepoint (no btf_trace_inet_sock_set_state \
             in its BTF)"
        );
        for message in [no_btf, missing] {
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn kernel_releases_compare() {
        assert!(release_before("5.4.0-150-generic", (5, 8)));
        assert!(release_before("4.19.0", (5, 8)));
        assert!(!release_before("5.8.0", (5, 8)));
        assert!(!release_before("6.18.44-fc-v657", (5, 8)));
        assert!(!release_before("garbage", (5, 8)));
    }

    #[test]
    fn the_embedded_object_is_an_elf_bpf_object() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        // e_machine (offset 18, little endian) is EM_BPF = 247.
        assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247);
    }
}
