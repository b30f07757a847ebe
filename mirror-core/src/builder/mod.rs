//! Building images from source.
//!
//! This module will hold the `Builder` trait (build a context into a target reference with
//! remote cache references, returning the pushed digest) and its command backends, `Buildah`
//! and `Buildx` (BuildKit). Today it holds [`dockerfile`], which finds the build arguments a
//! Dockerfile declares so that only those take part in a build and its key.

pub mod dockerfile;
