//! The kit: what provider authors and tools built on the engine use, and a deployer does not
//! need.
//!
//! A deployer's whole API is at the crate root and in its [`prelude`](crate::prelude); the
//! types it meets from here ([`ImageStore`](store::ImageStore),
//! [`Credentials`](store::http::credentials::Credentials), [`ImageRecord`](image::ImageRecord),
//! [`RetryConfig`](retry::RetryConfig)…) are re-exported there too.
//!
//! - [`provider`]: a cloud provider in a few hundred lines: `CloudRegistry` over a
//!   `ControlPlane`, configuration keys, the builder and factory shapes, the control-plane
//!   error and its table, the REST client, token caches, naming grammars;
//! - [`store`]: the data plane: the [`ImageStore`](store::ImageStore) trait, the registry HTTP
//!   client (auth, tokens, retries, uploads, paging, TLS) and the OCI layout;
//! - [`image`]: image composition over stores: listings, placing an image whole, referrers,
//!   deletion order;
//! - [`retry`]: the retry policy and its clock; [`sync`]: keyed single flight.

pub mod image;
pub mod provider;
pub mod retry;
pub mod store;
pub mod sync;
