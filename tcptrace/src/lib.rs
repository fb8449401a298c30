//! tcptrace's pure core as a library, so that `benches/` can drive it without root or a probe:
//! raw ring-buffer records in, typed records out. The binary compiles these same files as its
//! own modules (main.rs); only what a benchmark needs is exported.

mod decode;
mod event;
mod state;

pub use decode::{DecodeError, decode};
pub use event::{Family, Record, Signal, SignalKind, Transition};
pub use state::TcpState;
