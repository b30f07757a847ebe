#![no_main]
//! Token server answers: `token_answer` (lifetimes bounded, no panic on any number).

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::fuzz_token_answer(data);
});
