//! `tcptrace transitions`: the tables of each interval and the final summary, as text or as
//! JSON Lines.

#[cfg(test)]
mod golden;
pub mod json;
pub mod text;
