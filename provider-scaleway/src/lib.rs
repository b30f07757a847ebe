//! Scaleway Container Registry as a cluster's mirror registry.
//!
//! This crate will hold the `Scaleway` implementation of the core `Registry` trait (issue
//! "provider-scaleway"): namespace naming within Scaleway's rules (unique per region across
//! customers, so with a stable discriminator), namespace creation through
//! `/registry/v1/regions/{region}/namespaces`, `nologin` + secret-key basic auth on
//! `rg.<region>.scw.cloud`, image and tag listings, and retention enforced by `sweep` since
//! Scaleway has no retention policy of its own. It is an empty shell until the core `Registry`
//! trait lands.
#![deny(missing_docs)]

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "scaleway";
