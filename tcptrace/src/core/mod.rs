//! The pure core: kernel records in, typed transitions out. Nothing here reads a clock, opens a
//! file or touches BPF; time comes in as arguments, so a recorded stream replays exactly.

pub mod cgroup;
pub mod client_sans;
pub mod clock;
pub mod counters;
pub mod decode;
pub mod event;
pub mod filter;
pub mod hash;
pub mod losses;
pub mod peer_fill;
pub mod pipeline;
pub mod record;
pub mod reset_reason;
pub mod seed;
pub mod sockets;
pub mod state;
pub mod web_config;
