//! One module per subcommand: each wires the stream to its renderers.

pub mod trace;
pub mod transitions;
