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
//! - [`config`]: configuration keys declared once ([`config_keys!`](crate::config_keys)),
//!   their parsing, [`Settings`], the settings every provider has ([`CommonSettings`]) and
//!   the data-plane client made from them; every setting error is
//!   [`Error::Setting`](crate::Error::Setting), naming the key;
//! - [`builder`]: the one builder shape ([`provider_builder!`](crate::provider_builder)) and
//!   [`ProviderFactory`], the factory of every [`Provider`] for `registry::open`;
//! - [`rest`]: [`RestClient`], the REST control plane of providers without an SDK (retries
//!   with `Retry-After`, capped bodies, paging, polling);
//! - [`error`]: also [`ErrorTable`], the one table (codes and statuses to [`Kind`]s) a
//!   provider writes;
//! - [`naming`]: name grammars, declared ([`Grammar`]);
//! - [`calls`]: shapes of control-plane calls (absent answers, paging, batch deletions);
//! - [`basic`]: [`BasicToken`], an expiring basic-auth token (ECR's);
//! - [`retention`]: a retention document beside a repository, reconciled;
//! - [`choice`]: settings that are one word of a fixed set ([`setting_choice!`](crate::setting_choice));
//! - [`token`]: also [`SourceCaches`], lazy per-region or per-host token caches for source
//!   credentials;
//! - [`deletes`]: deletions for control planes that delete one manifest per call, and the
//!   orphaned platform manifests of a deleted index;
//! - [`scope`]: scopes as flat ids and labels (readable ids, hashes, label values, the
//!   labels of a listed repository);
//! - retries and "wait until" loops: [`crate::retry::RetryConfig::run_with`] with
//!   [`ControlPlaneError::retry`] as the classifier, and [`crate::retry::Poll`].

pub mod basic;
pub mod builder;
pub mod calls;
pub mod choice;
pub mod cloud;
pub mod config;
pub mod deletes;
pub mod error;
pub mod naming;
pub mod rest;
pub mod retention;
pub mod scope;
pub mod token;

pub use basic::BasicToken;
pub use builder::{Provider, ProviderBuilder, ProviderFactory};
pub use config::{
    from_env, parse_bool, parse_duration, setting_error, CommonKey, CommonSettings, ConfigKey,
    Settings, Shown, Value,
};
pub use error::{ControlPlaneError, ErrorTable, Kind, Origin};
pub use naming::Grammar;
pub use rest::{BearerAuth, BearerToken, HeaderAuth, Paging, RestAuth, RestClient, RestDialect};
pub use token::{
    AsCredentials, Expiring, MakeSource, SourceCaches, TokenCache, TokenPolicy, TokenSource,
};
