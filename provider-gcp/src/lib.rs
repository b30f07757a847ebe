//! Google Artifact Registry as a cluster's mirror registry.
//!
//! This crate will hold the `ArtifactRegistry` implementation of the core `Registry` trait
//! (issue "provider-gcp"): repository-id and image-path rules, DOCKER-format repository
//! creation through the REST API with long-running operations, cleanup policies for retention,
//! OAuth access tokens (through `gcp_auth`) as `oauth2accesstoken` passwords, listings from
//! `dockerImages` and per-version deletion. It is an empty shell until the core `Registry`
//! trait lands.
#![deny(missing_docs)]

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "gcp";
