//! The invariants checked by the fuzz targets in `fuzz_targets/`. The same file is compiled
//! into the CI regression test `tests/tests/suite/parsers.rs`, which replays `corpus/` and
//! `artifacts/` through it; see `README.md`.

pub mod checks;
