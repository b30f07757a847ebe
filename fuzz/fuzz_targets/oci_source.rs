#![no_main]
//! `parse_oci_location` and `Source::parse` (input as is and behind `oci:`).

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::fuzz_oci_source(data);
});
