//! provider-scaleway's tests against the Scaleway fake and the real registry.
//!
//! One test binary: each module was its own binary before, and linking two dozen binaries
//! of several hundred MB each cost more disk and time than compiling them.

mod conformance;
mod scaleway;
mod scaleway_source;
