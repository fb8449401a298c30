//! The OS edge: socket snapshots over netlink (inet_diag), the owners of sockets under /proc,
//! network namespaces, the kernel's TCP counters in procfs, sysctls, clocks and the files of
//! `tcptrace record`, the terminal of the full-screen view, and the exporter's HTTP server with
//! its web configuration, and the capabilities a thread gives up.
//! Every file this crate reads or writes is opened here.

pub mod capabilities;
pub mod clock;
pub mod diag;
pub mod host;
pub mod http;
pub mod netns;
pub mod owners;
pub mod procfs;
pub mod record_file;
pub mod sysctl;
pub mod terminal;
pub mod web_config;
