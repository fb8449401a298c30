//! Fuzz target: the BTF reader (`btf::Btf`): the parse of a blob, then the lookups the probe
//! makes. The lookups walk a type graph that a corrupt blob can make cyclic or deep, so each
//! must end, and quickly (the run's `-timeout` turns a loop into a failure).

#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use tcptrace::kernel::btf::Btf;
use tcptrace_ebpf::names;

fuzz_target!(|data: &[u8]| {
    let Some(btf) = Btf::parse(data) else {
        return;
    };
    // What the probe asks of the kernel's BTF when it loads.
    let _ = black_box(btf.sock_layout());
    for tracepoint in std::iter::once(names::PROGRAM).chain(names::SIGNAL_PROGRAMS) {
        btf.has_tracepoint(tracepoint);
    }
    // Lookups by the names the blob itself holds (its string section is NUL-separated), so
    // that a mutated blob's own structs and members are walked, not only `struct sock`.
    let strings: Vec<&str> = data
        .split(|&byte| byte == 0)
        .filter_map(|name| std::str::from_utf8(name).ok())
        .filter(|name| !name.is_empty())
        .take(64)
        .collect();
    for window in strings.windows(3) {
        black_box(btf.offset_of(window[0], &window[1..2]));
        black_box(btf.offset_of(window[0], &window[1..]));
    }
});
