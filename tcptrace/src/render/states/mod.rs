//! `tcptrace states`: counts per state, their changes and the findings, as text or JSON.

pub mod frame;
#[cfg(test)]
mod golden;
pub mod json;
pub mod text;
