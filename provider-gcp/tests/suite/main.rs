//! provider-gcp's tests against the Artifact Registry fake and the real registry.
//!
//! One test binary: each module was its own binary before, and linking two dozen binaries
//! of several hundred MB each cost more disk and time than compiling them.

mod cleanup_model;
mod conformance;
mod gar;
mod gar_anchors;
mod gar_source;
