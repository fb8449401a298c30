//! The kernel's tracing filesystem: where it is (mounting it when nobody did), and the record
//! layout of a tracepoint, read from its `format` file.

use std::{
    collections::HashMap,
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

use tcptrace_ebpf::{NO_FIELD, RECORD_BYTES, RECORD_OFFSET_LIMIT, SignalLayout, TracepointLayout};
use thiserror::Error;

/// Where tracefs lives on current kernels, and where older ones expose it through debugfs.
const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and mounting it at {TRACEFS} failed ({0}); \
         mount it with `mount -t tracefs tracefs {TRACEFS}` and retry"
    )]
    Unmountable(io::Error),
    #[error("the kernel has no {category}:{name} tracepoint; tcptrace needs Linux 4.16 or later")]
    MissingTracepoint { category: String, name: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("unexpected format of {tracepoint}: {reason}")]
    Format { tracepoint: String, reason: String },
}

/// A field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// Finds tracefs; mounts it at `/sys/kernel/tracing` when neither place has it.
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    if let Some(root) = mounted_root() {
        return Ok(root);
    }
    mount_tracefs().map_err(TracefsError::Unmountable)?;
    mounted_root().ok_or_else(|| {
        TracefsError::Unmountable(io::Error::other("mounted, yet events/ is still missing"))
    })
}

/// A tracing root is usable when its `events` directory is there: the mount point itself exists
/// (empty) on kernels whose tracefs nobody mounted.
fn mounted_root() -> Option<PathBuf> {
    [TRACEFS, DEBUGFS_TRACING]
        .into_iter()
        .map(PathBuf::from)
        .find(|root| root.join("events").is_dir())
}

fn mount_tracefs() -> io::Result<()> {
    let source = CString::new("tracefs").expect("no NUL");
    let target = CString::new(TRACEFS).expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the `format` file of `category:name` under a tracing root.
pub fn read_format(root: &Path, category: &str, name: &str) -> Result<String, TracefsError> {
    let dir = root.join("events").join(category).join(name);
    if !dir.is_dir() {
        return Err(TracefsError::MissingTracepoint {
            category: category.to_owned(),
            name: name.to_owned(),
        });
    }
    let path = dir.join("format");
    fs::read_to_string(&path).map_err(|source| TracefsError::Read { path, source })
}

/// Parses the `field:` lines of a `format` file into name → (offset, size).
pub fn parse_fields(format: &str) -> HashMap<String, Field> {
    let mut fields = HashMap::new();
    for line in format.lines() {
        let Some(rest) = line.trim().strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let Some(declaration) = parts.next() else {
            continue;
        };
        // `const void * skaddr`, `__u8 saddr[4]`: the name is the last word, without `[n]`.
        let Some(name) = declaration
            .rsplit([' ', '*'])
            .next()
            .map(|word| word.split('[').next().unwrap_or(word))
        else {
            continue;
        };
        let mut offset = None;
        let mut size = None;
        for part in parts {
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        if let (Some(offset), Some(size)) = (offset, size) {
            fields.insert(name.to_owned(), Field { offset, size });
        }
    }
    fields
}

/// Looks up a field and checks its size is one of `sizes`.
pub fn field(
    fields: &HashMap<String, Field>,
    tracepoint: &str,
    name: &str,
    sizes: &[u32],
) -> Result<Field, TracefsError> {
    let field = fields.get(name).ok_or_else(|| TracefsError::Format {
        tracepoint: tracepoint.to_owned(),
        reason: format!("no field `{name}`"),
    })?;
    if !sizes.contains(&field.size) {
        return Err(TracefsError::Format {
            tracepoint: tracepoint.to_owned(),
            reason: format!("field `{name}` has size {}, expected {sizes:?}", field.size),
        });
    }
    Ok(*field)
}

/// The layout of `sock:inet_sock_set_state` records, from its `format` file.
pub fn inet_sock_set_state_layout(format: &str) -> Result<TracepointLayout, TracefsError> {
    const TP: &str = "sock:inet_sock_set_state";
    let fields = parse_fields(format);
    let get = |name, sizes: &[u32]| field(&fields, TP, name, sizes);
    let protocol = get("protocol", &[1, 2])?;
    // The program copies the first RECORD_BYTES of the record and reads fields at offsets it
    // masks below RECORD_OFFSET_LIMIT: a layout beyond that would be read wrong, so refuse it.
    for name in [
        "skaddr", "oldstate", "newstate", "sport", "dport", "family", "protocol", "saddr", "daddr",
        "saddr_v6", "daddr_v6",
    ] {
        let f = get(name, &[1, 2, 4, 8, 16])?;
        if f.offset >= RECORD_OFFSET_LIMIT || (f.offset + f.size) as usize > RECORD_BYTES {
            return Err(TracefsError::Format {
                tracepoint: TP.to_owned(),
                reason: format!(
                    "field `{name}` at offset {} lies beyond the {RECORD_BYTES} bytes the probe reads",
                    f.offset
                ),
            });
        }
    }
    Ok(TracepointLayout {
        skaddr: get("skaddr", &[8])?.offset,
        oldstate: get("oldstate", &[4])?.offset,
        newstate: get("newstate", &[4])?.offset,
        sport: get("sport", &[2])?.offset,
        dport: get("dport", &[2])?.offset,
        family: get("family", &[2])?.offset,
        protocol: protocol.offset,
        protocol_size: protocol.size,
        saddr: get("saddr", &[4])?.offset,
        daddr: get("daddr", &[4])?.offset,
        saddr_v6: get("saddr_v6", &[16])?.offset,
        daddr_v6: get("daddr_v6", &[16])?.offset,
    })
}

/// The layout of a `tcp:*` record that explains transitions: the socket address, and the
/// socket's state where the record has one.
pub fn signal_layout(tracepoint: &str, format: &str) -> Result<SignalLayout, TracefsError> {
    let fields = parse_fields(format);
    Ok(SignalLayout {
        skaddr: field(&fields, tracepoint, "skaddr", &[8])?.offset,
        state: match fields.get("state") {
            Some(_) => field(&fields, tracepoint, "state", &[4])?.offset,
            None => NO_FIELD,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_6_18: &str = include_str!("testdata/inet_sock_set_state.6.18.format");
    /// The layout of Linux 4.16–5.5, where `protocol` was a `__u8` and the addresses followed
    /// it at odd offsets.
    const FORMAT_4_16: &str = include_str!("testdata/inet_sock_set_state.4.16.format");

    #[test]
    fn layout_of_this_kernel_generation() {
        let layout = inet_sock_set_state_layout(FORMAT_6_18).unwrap();
        assert_eq!(
            layout,
            TracepointLayout {
                skaddr: 8,
                oldstate: 16,
                newstate: 20,
                sport: 24,
                dport: 26,
                family: 28,
                protocol: 30,
                protocol_size: 2,
                saddr: 32,
                daddr: 36,
                saddr_v6: 40,
                daddr_v6: 56,
            }
        );
    }

    #[test]
    fn layout_before_protocol_was_widened() {
        let layout = inet_sock_set_state_layout(FORMAT_4_16).unwrap();
        assert_eq!((layout.protocol, layout.protocol_size), (30, 1));
        assert_eq!((layout.saddr, layout.daddr), (31, 35));
        assert_eq!((layout.saddr_v6, layout.daddr_v6), (39, 55));
    }

    #[test]
    fn missing_or_resized_fields_are_errors() {
        let without = FORMAT_6_18.replace("saddr_v6", "something_else");
        let err = inet_sock_set_state_layout(&without).unwrap_err();
        assert!(err.to_string().contains("no field `saddr_v6`"), "{err}");
        let resized = FORMAT_6_18.replace(
            "int oldstate;\toffset:16;\tsize:4",
            "int oldstate;\toffset:16;\tsize:8",
        );
        let err = inet_sock_set_state_layout(&resized).unwrap_err();
        assert!(err.to_string().contains("size 8"), "{err}");
    }

    #[test]
    fn signal_layouts_of_this_kernel_generation() {
        let layout = |name, text| signal_layout(name, text).unwrap();
        assert_eq!(
            layout(
                "tcp_receive_reset",
                include_str!("testdata/tcp_receive_reset.6.18.format")
            ),
            SignalLayout {
                skaddr: 8,
                state: NO_FIELD
            }
        );
        assert_eq!(
            layout(
                "tcp_send_reset",
                include_str!("testdata/tcp_send_reset.6.18.format")
            ),
            SignalLayout {
                skaddr: 16,
                state: 24
            }
        );
        assert_eq!(
            layout(
                "tcp_retransmit_skb",
                include_str!("testdata/tcp_retransmit_skb.6.18.format")
            ),
            SignalLayout {
                skaddr: 16,
                state: 24
            }
        );
        assert_eq!(
            layout(
                "tcp_retransmit_synack",
                include_str!("testdata/tcp_retransmit_synack.6.18.format")
            ),
            SignalLayout {
                skaddr: 8,
                state: NO_FIELD
            }
        );
    }

    #[test]
    fn a_missing_tracepoint_says_which_kernel_is_needed() {
        let root = std::env::temp_dir().join(format!("tcptrace-tracefs-{}", std::process::id()));
        std::fs::create_dir_all(root.join("events/sock")).unwrap();
        let err = read_format(&root, "sock", "inet_sock_set_state").unwrap_err();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            err.to_string(),
            "the kernel has no sock:inet_sock_set_state tracepoint; tcptrace needs Linux 4.16 or later"
        );
    }

    #[test]
    fn fields_beyond_the_copied_record_are_refused() {
        let moved = FORMAT_6_18.replace("daddr_v6[16];\toffset:56", "daddr_v6[16];\toffset:72");
        let err = inet_sock_set_state_layout(&moved).unwrap_err();
        assert!(err.to_string().contains("beyond the 80 bytes"), "{err}");
    }

    #[test]
    fn parses_pointer_and_array_declarations() {
        let fields = parse_fields(FORMAT_6_18);
        assert_eq!(fields["skaddr"], Field { offset: 8, size: 8 });
        assert_eq!(
            fields["daddr_v6"],
            Field {
                offset: 56,
                size: 16
            }
        );
        assert_eq!(fields["common_pid"], Field { offset: 4, size: 4 });
    }

    #[test]
    fn the_kernel_we_run_on_matches_when_tracefs_is_readable() {
        // The ABI check against the live kernel: skipped (with a reason) when tracefs is absent.
        let Some(root) = mounted_root() else {
            eprintln!("skipped: tracefs not mounted");
            return;
        };
        match read_format(&root, "sock", "inet_sock_set_state") {
            Ok(format) => {
                inet_sock_set_state_layout(&format).unwrap();
            }
            Err(err) => eprintln!("skipped: {err}"),
        }
    }
}
