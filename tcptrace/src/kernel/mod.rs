//! The kernel edge: loading and attaching the BPF programs, the kernel's BTF, the privileges
//! they need, and the ring buffer they write to. The only code that imports aya.

pub mod btf;
pub mod privileges;
pub mod probe;
pub mod source;
