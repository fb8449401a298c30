//! Fuzz target: the NETLINK_SOCK_DIAG dump parser (`diag::parse`). A reply buffer is the
//! kernel's, but a short read, a kernel newer than the parser or a bug on either side must give
//! an error, never a panic or an out-of-bounds read.

#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use tcptrace::os::diag::parse::{INET_DIAG_MSG_LEN, NLMSG_HDRLEN, parse_batch, parse_socket};

fuzz_target!(|data: &[u8]| {
    let mut sockets = Vec::new();
    match parse_batch(data, &mut sockets) {
        Ok(batch) => {
            // Every socket, decoded or skipped, needs a message of its own: more than the
            // buffer can hold would mean bytes read twice.
            let most = data.len() / (NLMSG_HDRLEN + INET_DIAG_MSG_LEN);
            assert!(sockets.len() + batch.skipped <= most, "{batch:?}");
        }
        Err(err) => {
            black_box(err.to_string());
        }
    }
    for socket in &sockets {
        // What `sockets` and `states` print of each one.
        black_box((socket.shown_state(), socket.retransmits(), socket.probes()));
        black_box(socket.timer.name());
    }
    // The first message's payload alone, whatever its header claims: reaches the attribute
    // walk of `parse_socket` even where the netlink framing would have stopped `parse_batch`.
    if let Some(payload) = data.get(NLMSG_HDRLEN..) {
        let _ = black_box(parse_socket(payload));
    }
});
