//! AWS Elastic Container Registry (ECR) as a cluster's mirror registry.
//!
//! This crate will hold the `Ecr` implementation of the core `Registry` trait (issue
//! "provider-aws"): ECR repository naming rules, `CreateRepository` with tags, lifecycle
//! policies for Cluster-mode retention, `GetAuthorizationToken` credentials refreshed ahead of
//! their 12 h expiry, `DescribeImages` listings and `BatchDeleteImage` eviction. It is an empty
//! shell until the core `Registry` trait lands.
#![deny(missing_docs)]

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "aws";
