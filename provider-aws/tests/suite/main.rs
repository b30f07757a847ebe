//! provider-aws's tests against moto (ECR's control plane) and the real registry.
//!
//! One test binary: each module was its own binary before, and linking two dozen binaries
//! of several hundred MB each cost more disk and time than compiling them.

mod conformance;
mod ecr;
mod ecr_anchors;
mod ecr_source;
mod lifecycle_model;
