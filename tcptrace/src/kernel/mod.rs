//! The kernel edge: loading and attaching the BPF programs, the kernel's BTF, the privileges
//! they need, the ring buffer they write to, and the listener map seeded at start. The only
//! code that imports aya.

pub mod btf;
pub mod kallsyms;
pub mod listeners;
pub mod privileges;
pub mod probe;
pub mod source;
