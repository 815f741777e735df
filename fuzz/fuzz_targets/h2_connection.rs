//! The HTTP/2 connection (crates/server/src/h2) on arbitrary bytes after the preface: it never
//! panics, always ends (the harness's paused clock runs the idle timer), and writes only whole,
//! well-formed frames (the harness checks them).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    ssehub_server::h2_harness::run(input);
});
