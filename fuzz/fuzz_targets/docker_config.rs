#![no_main]
//! docker `config.json`: parse, then `credentials_for` with credential helpers stripped (never spawns a process).

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::docker_config(data);
});
