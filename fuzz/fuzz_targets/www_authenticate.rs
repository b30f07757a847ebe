#![no_main]
//! `WWW-Authenticate`: `parse_challenge`, written-back challenge re-parses equal.

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::fuzz_www_authenticate(data);
});
