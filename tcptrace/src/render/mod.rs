//! Renderers: typed data in, bytes out to any `io::Write`, one text and one JSON renderer per
//! command. No clocks; terminal control lives in [`terminal`] alone.

pub mod cause_texts;
pub mod explain;
#[cfg(test)]
mod golden_file;
pub mod histogram;
pub mod metrics;
pub mod sockets;
pub mod states;
pub mod terminal;
pub mod trace;
pub mod transitions;
pub mod tui;
pub mod units;
use std::net::IpAddr;

/// `addr:port`, with IPv6 addresses in brackets.
pub fn endpoint(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Wraps text at 88 columns with an indent, so that explanations read well in a terminal.
pub fn wrap(text: &str, indent: usize) -> String {
    const WIDTH: usize = 88;
    let pad = " ".repeat(indent);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > WIDTH {
            lines.push(format!("{pad}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!("{pad}{line}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint(&"10.0.0.1".parse().unwrap(), 80), "10.0.0.1:80");
        assert_eq!(endpoint(&"::1".parse().unwrap(), 443), "[::1]:443");
    }
}
