//! The workspace's end-to-end tests against real registries, emulators and tools.
//!
//! One test binary: each module was its own binary before, and linking two dozen binaries
//! of several hundred MB each cost more disk and time than compiling them.

mod admission;
mod attacks;
mod build;
mod build_cache;
mod cli_aws;
mod cli_gcp;
mod cli_kubernetes;
mod cli_scaleway;
mod cli_serve;
mod cli_warnings;
mod conformance;
mod copy;
mod copy_auth;
mod error_kinds;
mod faults;
mod hostile;
mod hostile_sources;
mod identity;
mod identity_model;
mod inuse_kubernetes;
mod inuse_mirror;
mod inventory_requests;
mod load;
mod mirror;
mod parsers;
mod rate_limits;
mod referrers;
mod referrers_lifecycle;
mod security;
mod telemetry;
mod warm_requests;
