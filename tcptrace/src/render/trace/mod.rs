//! `tcptrace trace`: one line per transition, as a table or as JSON Lines.

pub mod json;
pub mod text;
