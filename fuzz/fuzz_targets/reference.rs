#![no_main]
//! `Reference::parse`: validity of the parts, `Display` round trip.

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::fuzz_reference(data);
});
