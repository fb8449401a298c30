//! Fuzz target: the ring-buffer record decoder (`decode::decode`). The kernel side is trusted
//! for nothing, so any byte string must decode or be rejected, never panic.

#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use tcptrace::core::decode::{self, DecodeError};
use tcptrace_ebpf::Event;

fuzz_target!(|data: &[u8]| {
    let decoded = decode::decode(data);
    match decode::raw_event(data) {
        Ok(event) => {
            // `raw_event` is the decoder's one unsafe read: it must copy the record's bytes
            // exactly, and the bytes past the event (a newer kernel side's fields) must not
            // change the answer.
            let encoded = decode::encode(&event);
            assert_eq!(encoded[..], data[..size_of::<Event>()]);
            assert_eq!(decode::decode(&encoded), decoded);
        }
        Err(err) => {
            assert_eq!(err, DecodeError::Short(data.len()));
            assert_eq!(decoded, Err(err));
        }
    }
    // What the tracer does next with a record or a rejection: print it.
    match &decoded {
        Ok(record) => {
            black_box(format!("{record:?}"));
        }
        Err(err) => {
            black_box(err.to_string());
        }
    }
});
