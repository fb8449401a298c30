//! The code ranges of kernel functions, from /proc/kallsyms: where the program on
//! `skb:kfree_skb` tells a drop by the TCP receive path itself (which gives no reason for a
//! request socket's packets) from the drops of the code it calls (which do).

use std::{fs, io};

/// `[start, end)` of each function named, `None` where it is not found or the addresses are
/// hidden (`kernel.kptr_restrict`, which shows them as 0 to the unprivileged).
pub fn ranges(text: &str, names: &[&str]) -> Vec<Option<[u64; 2]>> {
    let mut starts = vec![None; names.len()];
    let mut addresses = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let (Some(address), Some(kind), Some(name)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T") {
            continue;
        }
        let Ok(address) = u64::from_str_radix(address, 16) else {
            continue;
        };
        if address == 0 {
            continue;
        }
        addresses.push(address);
        // The kernel's own symbol, not a module's of the same name (those carry `[module]`).
        if let Some(i) = names.iter().position(|n| *n == name)
            && starts[i].is_none()
        {
            starts[i] = Some(address);
        }
    }
    addresses.sort_unstable();
    starts
        .into_iter()
        .map(|start| {
            let start = start?;
            let end = addresses[addresses.partition_point(|a| *a <= start)..]
                .first()
                .copied()?;
            Some([start, end])
        })
        .collect()
}

/// The ranges of `names` in the running kernel.
pub fn read(names: &[&str]) -> io::Result<Vec<Option<[u64; 2]>>> {
    Ok(ranges(&fs::read_to_string("/proc/kallsyms")?, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_ends_where_the_next_text_symbol_starts() {
        let text = "ffffffff82094000 T tcp_v4_do_rcv\n\
                    ffffffff820945b0 T tcp_v4_rcv\n\
                    ffffffff82095000 d some_data\n\
                    ffffffff82096000 t tcp_v4_fill_cb\n\
                    ffffffffc0001000 t tcp_v6_rcv\t[ipv6]\n\
                    ffffffffc0002000 t other\t[ipv6]\n";
        assert_eq!(
            ranges(text, &["tcp_v4_rcv", "tcp_v6_rcv", "missing"]),
            [
                Some([0xffffffff820945b0, 0xffffffff82096000]),
                Some([0xffffffffc0001000, 0xffffffffc0002000]),
                None
            ]
        );
    }

    #[test]
    fn hidden_addresses_are_no_range() {
        let text = "0000000000000000 T tcp_v4_rcv\n0000000000000000 T next\n";
        assert_eq!(ranges(text, &["tcp_v4_rcv"]), [None]);
    }

    #[test]
    fn the_running_kernel_has_the_tcp_receive_functions() {
        match read(&["tcp_v4_rcv"]) {
            Ok(found) if found[0].is_some() => {
                let [start, end] = found[0].unwrap();
                assert!(start < end && end - start < 1 << 20, "{start:x}..{end:x}");
            }
            other => eprintln!("skipped: no readable /proc/kallsyms: {other:?}"),
        }
    }
}
