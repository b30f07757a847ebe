//! The provider kit: what every cloud provider crate needs and writes only once here.
//!
//! A provider crate (see the README's "Adding a provider") writes its naming rules, its
//! control-plane calls, one token source and one classification table; the kit does the rest:
//!
//! - [`cloud`]: [`CloudRegistry`](cloud::CloudRegistry), the [`Registry`](crate::Registry)
//!   of every provider over its [`ControlPlane`](cloud::ControlPlane);
//! - [`token`]: [`TokenCache`] in front of a provider's [`TokenSource`] (refresh ahead of
//!   expiry, minimum cache time, debounced invalidation, injectable clock), which is also the
//!   data plane's credential provider;
//! - [`error`]: [`ControlPlaneError`], the one error of every control plane, with its
//!   [`Kind`] (the output of the provider's table), its retry classification and its one
//!   conversion into [`crate::Error`];
//! - [`config`]: string configuration keys, their parsing, the settings every provider has
//!   ([`CommonSettings`]) and the data-plane client made from them;
//! - retries and "wait until" loops: [`crate::retry::RetryConfig::run_with`] with
//!   [`ControlPlaneError::retry`] as the classifier, and [`crate::retry::Poll`].

pub mod cloud;
pub mod config;
pub mod error;
pub mod token;

pub use config::{from_env, parse_bool, parse_duration, CommonKey, CommonSettings, ConfigKey};
pub use error::{ControlPlaneError, Kind, Origin};
pub use token::{AsCredentials, Expiring, TokenCache, TokenPolicy, TokenSource};
