#![no_main]
//! Dockerfile `ARG` scanning: `declared_args`.

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::fuzz_dockerfile_args(data);
});
