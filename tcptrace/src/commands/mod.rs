//! One module per subcommand: each wires the stream to its renderers.

pub mod explain;
pub mod export;
pub mod record;
pub mod sockets;
pub mod states;
pub mod trace;
pub mod transitions;
