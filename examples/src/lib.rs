//! The quickstart lives beside this crate as an `[[example]]` target:
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! This package depends on `mirror-core` alone (with its image fixtures), so the first
//! command on a fresh machine compiles no cloud SDK. The CLI and the benchmarks are the
//! `mirror-cli` package (`examples/cli/`).
