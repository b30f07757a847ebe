#![no_main]
//! Manifests and indexes: first line is the Content-Type (empty: none), the rest the body.

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::manifest_fuzz(data);
});
