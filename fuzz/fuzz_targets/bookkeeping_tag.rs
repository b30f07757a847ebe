#![no_main]
//! Bookkeeping tags: `parse_pushed_tag`, `parse_handed_out_tag` (times bounded, round trip).

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::fuzz_bookkeeping_tag(data);
});
