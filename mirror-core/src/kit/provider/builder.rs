//! The one builder and factory shape of every provider.
//!
//! A provider declares its keys ([`config_keys!`](crate::config_keys)) and its builder
//! ([`provider_builder!`](crate::provider_builder): the struct, `new`, `from_env`,
//! `with_config`, `get_config`, the shared typed setters and one typed setter per key it
//! lists), writes `build()` (validate, then make its control plane and data plane), and
//! implements [`Provider`]: its schemes, the hosts only it serves, how a location's host
//! and path set its keys. [`ProviderFactory`] is then its
//! [`crate::registry::RegistryFactory`] for
//! [`registry::open`](crate::registry::open()).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::provider::config::{factory_options, ConfigKey, Settings};
use crate::registry::{OpenOptions, Registry, RegistryFactory};

/// What a provider tells the kit so that [`ProviderFactory`] opens its registries.
///
/// # Contract
///
/// - `recognises` is true only for data-plane hosts no other provider serves.
/// - `locate` sets keys from what a location names (a host, a path) and makes no network
///   call; `open` validates every setting before its first network call.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Its configuration keys.
    type Key: ConfigKey;
    /// Its builder (made with [`provider_builder!`](crate::provider_builder)).
    type Builder: ProviderBuilder<Key = Self::Key>;
    /// The provider name (`aws`).
    const ID: &'static str;
    /// The schemes of its locations (`ecr`).
    const SCHEMES: &'static [&'static str];
    /// The key a location's prefix (and the `prefix` option) sets.
    const PREFIX: Self::Key;
    /// What `--registry-creds` is told: the credentials its data plane takes instead.
    const CREDENTIALS_HINT: &'static str;

    /// True for a data-plane host only this provider serves.
    fn recognises(host: &str) -> bool;

    /// Sets the keys a location names: its host (`None` when it names none) and its path;
    /// returns the prefix the path names, if any.
    fn locate<'a>(
        builder: Self::Builder,
        host: Option<&str>,
        path: Option<&'a str>,
    ) -> (Self::Builder, Option<&'a str>);

    /// Builds the registry.
    async fn open(builder: Self::Builder) -> Result<Arc<dyn Registry>>;
}

/// A builder made with [`provider_builder!`](crate::provider_builder).
pub trait ProviderBuilder: Sized + Send {
    /// Its keys.
    type Key: ConfigKey;
    /// The builder with these settings.
    fn from_settings(settings: Settings<Self::Key>) -> Self;
    /// Sets one key.
    fn with_config(self, key: Self::Key, value: impl Into<String>) -> Self;
}

/// Declares a provider's builder: the struct (its [`Settings`] and what only code can set,
/// `extra`), `new`, `from_env`, `with_config`, `get_config`, the shared typed setters
/// (`plain_http`, `retry`), and one typed setter per listed key. The provider writes
/// `build()` in its own `impl`.
///
/// ```
/// use mirror_core::kit::provider::config::Value;
/// mirror_core::config_keys! {
///     /// Keys.
///     pub enum DemoKey: "Demo", "MIRROR_DEMO_" {
///         /// The region.
///         Region = "region" => Value::Text;
///     }
/// }
/// mirror_core::provider_builder! {
///     /// Configures a made-up provider.
///     pub struct DemoBuilder(DemoKey, ()) {
///         /// The region.
///         fn region => Region;
///     }
/// }
/// let b = DemoBuilder::new().region("north");
/// assert_eq!(b.get_config(DemoKey::Region).as_deref(), Some("north"));
/// ```
#[macro_export]
macro_rules! provider_builder {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($key:ident, $extra:ty) {
            $( $(#[$smeta:meta])* fn $setter:ident => $variant:ident; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default)]
        $vis struct $name {
            settings: $crate::kit::provider::config::Settings<$key>,
            extra: $extra,
        }

        impl $name {
            /// A builder with every default and nothing read from the environment.
            pub fn new() -> Self {
                Self::default()
            }

            /// A builder configured from the environment (see the module docs); empty
            /// variables are ignored.
            pub fn from_env() -> Self {
                <Self as $crate::kit::provider::builder::ProviderBuilder>::from_settings(
                    $crate::kit::provider::config::Settings::from_env(),
                )
            }

            /// Sets one setting from a string; invalid values are reported by `build()`.
            pub fn with_config(mut self, key: $key, value: impl Into<String>) -> Self {
                self.settings.set(key, &value.into());
                self
            }

            /// The current value of a setting, as a string (secrets as `***`).
            pub fn get_config(&self, key: $key) -> Option<String> {
                self.settings.get(key)
            }

            /// Plain HTTP (`true`) or HTTPS to the data plane (default: plain only for
            /// loopback hosts).
            pub fn plain_http(mut self, plain: bool) -> Self {
                self.settings.common_mut().plain_http = Some(plain);
                self
            }

            /// The retry policy of API calls and of the data plane.
            pub fn retry(mut self, retry: $crate::kit::retry::RetryConfig) -> Self {
                self.settings.common_mut().retry = Some(retry);
                self
            }

            $(
                $(#[$smeta])*
                pub fn $setter(self, value: impl $crate::kit::provider::config::IntoSetting) -> Self {
                    self.with_config($key::$variant, value.into_setting())
                }
            )*
        }

        impl $crate::kit::provider::builder::ProviderBuilder for $name {
            type Key = $key;
            fn from_settings(settings: $crate::kit::provider::config::Settings<$key>) -> Self {
                $name { settings, extra: Default::default() }
            }
            fn with_config(self, key: $key, value: impl Into<String>) -> Self {
                $name::with_config(self, key, value)
            }
        }
    };
}

/// The [`RegistryFactory`] of a [`Provider`]: the environment (unless the options refuse
/// it), then the location, then the options, then [`Provider::open`].
pub struct ProviderFactory<P>(PhantomData<fn() -> P>);

impl<P> ProviderFactory<P> {
    /// The factory.
    pub const fn new() -> Self {
        ProviderFactory(PhantomData)
    }
}

impl<P> Default for ProviderFactory<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Clone for ProviderFactory<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for ProviderFactory<P> {}

impl<P: Provider> fmt::Debug for ProviderFactory<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderFactory({})", P::ID)
    }
}

impl<P: Provider> ProviderFactory<P> {
    /// The builder `open` would build: the environment (unless refused), the location (its
    /// host and path, and the `prefix` option), then the other options.
    pub fn builder(
        &self,
        host: Option<&str>,
        path: Option<&str>,
        options: &OpenOptions,
    ) -> Result<P::Builder> {
        let settings = if options.reads_env() {
            Settings::from_env()
        } else {
            Settings::default()
        };
        let host = host.filter(|h| *h != "default");
        let (mut b, prefix) = P::locate(P::Builder::from_settings(settings), host, path);
        if let Some(p) = options.prefix(prefix)? {
            b = b.with_config(P::PREFIX, p);
        }
        let scheme = P::SCHEMES.first().copied().unwrap_or(P::ID);
        for (k, v) in factory_options::<P::Key>(options, scheme, P::CREDENTIALS_HINT)? {
            b = b.with_config(k, v);
        }
        Ok(b)
    }
}

#[async_trait]
impl<P: Provider> RegistryFactory for ProviderFactory<P> {
    fn provider(&self) -> &'static str {
        P::ID
    }

    fn schemes(&self) -> &'static [&'static str] {
        P::SCHEMES
    }

    fn recognises(&self, host: &str) -> bool {
        P::recognises(host)
    }

    async fn open(
        &self,
        host: Option<&str>,
        path: Option<&str>,
        options: &OpenOptions,
    ) -> Result<Arc<dyn Registry>> {
        P::open(self.builder(host, path, options)?).await
    }
}
