//! `tcptrace sockets`: one line per socket, as text (netstat's layout) or JSON Lines.

pub mod json;
pub mod text;
