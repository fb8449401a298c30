//! tcptrace as a library, in layers that only import downwards:
//!
//! - [`core`]: the pure pipeline: raw records in, typed transitions out (decode → per-socket
//!   state → peer fill → filter), without clocks, files or BPF;
//! - [`kernel`] and [`os`]: the edges, the only code that touches aya, netlink, /proc, sysctls
//!   or clocks;
//! - [`aggregate`] (transitions) and [`census`] (socket snapshots): pure aggregation;
//! - [`render`] (text and JSON) and [`stream`] (the event loop that feeds the core);
//! - [`cli`] and [`commands`]: one command per subcommand, wiring the layers together.
//!
//! A library so that benchmarks, fuzzers and tests reach the core without root or a probe.

pub mod aggregate;
pub mod census;
pub mod cli;
pub mod commands;
pub mod core;
pub mod kernel;
pub mod os;
pub mod render;
pub mod stream;
