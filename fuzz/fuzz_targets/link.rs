#![no_main]
//! `Link` headers: `parse_next_link`.

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::fuzz_link(data);
});
