#![no_main]
//! `Digest::parse`: canonical text, round trip.

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::fuzz_digest(data);
});
