//! tcptrace as a library: the pure core (decode → aggregate → render) and the edges (probe,
//! ring buffer, netlink, terminal) that the `tcptrace` binary drives. A library so that
//! benchmarks and tests reach the core without root or a probe.

pub mod aggregate;
pub mod btf;
pub mod census;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod decode;
pub mod diag;
pub mod event;
pub mod explain;
pub mod filter;
pub mod lifecycle;
pub mod live_census;
pub mod peer_fill;
pub mod privileges;
pub mod probe;
pub mod render;
pub mod select;
pub mod source;
pub mod state;
pub mod stream;
