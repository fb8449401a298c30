//! The OS edge: socket snapshots over netlink (inet_diag), the owners of sockets under /proc,
//! the kernel's TCP counters in procfs, sysctls and clocks. Every file this crate reads is read
//! here.

pub mod diag;
pub mod owners;
pub mod procfs;
pub mod record_file;
