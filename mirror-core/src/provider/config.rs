//! Configuration shared by the provider builders: string keys ([`ConfigKey`]), their parsing
//! ([`parse_bool`], [`parse_duration`]), the settings every provider has ([`CommonSettings`]:
//! plain HTTP, endpoint, timeouts, retries) and the data-plane client made from them.
//!
//! Every provider builder has the same shape: typed setters and string keys go through one
//! `with_config(key, value)` that records invalid values instead of failing; `from_env()` feeds
//! the provider's variables ([`from_env`]) through it; `build()` first validates everything
//! ([`CommonSettings::validate`] and the provider's own checks) before any network call, then
//! makes its control-plane client and its data plane ([`CommonSettings::data_plane`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};
use crate::retry::RetryConfig;
use crate::store::http::credentials::CredentialProvider;
use crate::store::http::{RegistryClient, UploadMode};

/// A setting every provider has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommonKey {
    /// Speak plain HTTP to the data plane (`true`/`false`; default: only for loopback hosts).
    PlainHttp,
    /// The control-plane endpoint URL (an emulator, a private endpoint).
    Endpoint,
    /// Timeout of one control-plane or data-plane request without a streaming body.
    RequestTimeout,
    /// TCP connect timeout.
    ConnectTimeout,
    /// Attempts per retried request, in total (1: no retry).
    MaxAttempts,
}

/// A provider's string configuration key.
///
/// Implementations list their keys in [`ALL`](Self::ALL) and name them; parsing from a key
/// name or an environment variable, case-insensitively, is shared ([`ConfigKey::parse`]).
pub trait ConfigKey: Copy + Eq + fmt::Debug + Sized + 'static {
    /// Every key.
    const ALL: &'static [Self];
    /// The provider's name in messages (`ECR`).
    const NAME: &'static str;
    /// Prefix of the environment variables (`MIRROR_ECR_`).
    const ENV_PREFIX: &'static str;

    /// The key (`region`).
    fn as_str(self) -> &'static str;

    /// The environment variable (default: the prefix and the key in upper case).
    fn env_var(self) -> Cow<'static, str> {
        Cow::Owned(format!(
            "{}{}",
            Self::ENV_PREFIX,
            self.as_str().to_ascii_uppercase()
        ))
    }

    /// The shared setting this key stands for, if it is one.
    fn common(self) -> Option<CommonKey> {
        None
    }

    /// The key named `s`: the key itself or its environment variable, in any case.
    fn parse(s: &str) -> std::result::Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let stripped = lower
            .strip_prefix(&Self::ENV_PREFIX.to_ascii_lowercase())
            .unwrap_or(&lower)
            .to_string();
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == stripped || k.env_var().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown {} configuration key {s:?}", Self::NAME))
    }
}

/// The keys of `K` set (non-empty) in the environment, with their values.
pub fn from_env<K: ConfigKey>() -> Vec<(K, String)> {
    K::ALL
        .iter()
        .filter_map(|k| {
            std::env::var(k.env_var().as_ref())
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (*k, v))
        })
        .collect()
}

pub use crate::registry::open::parse_bool;

/// Reads a duration: `90` (seconds), `90s`, `1500ms`, `2m`, `1h`, `1d`.
pub fn parse_duration(key: &str, v: &str) -> std::result::Result<Duration, String> {
    let t = v.trim();
    let err = || format!("{key}: {v:?} is not a duration (`90`, `90s`, `1500ms`, `2m`, `1h`)");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| err())?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        "d" => Ok(Duration::from_secs(n.saturating_mul(86_400))),
        _ => Err(err()),
    }
}

/// The settings every provider has, and the errors recorded while setting them.
#[derive(Debug, Clone, Default)]
pub struct CommonSettings {
    /// Plain HTTP to the data plane; `None`: only for loopback hosts.
    pub plain_http: Option<bool>,
    /// The control-plane endpoint URL; `None`: the provider's public endpoint.
    pub endpoint: Option<String>,
    /// Per-request timeout; `None`: 60 s on the data plane, the provider's default on its
    /// control plane (its builder's docs say which).
    pub request_timeout: Option<Duration>,
    /// Connect timeout; `None`: 15 s on the data plane, the provider's default on its control
    /// plane.
    pub connect_timeout: Option<Duration>,
    /// The retry policy of both planes; `None`: [`RetryConfig::default`].
    pub retry: Option<RetryConfig>,
    errors: Vec<String>,
}

/// Default timeout of one request without a streaming body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

impl CommonSettings {
    /// Sets `key` (named `name` in messages) from a string; an invalid value is recorded and
    /// reported by [`validate`](Self::validate).
    pub fn set(&mut self, key: CommonKey, name: &str, value: &str) {
        let result = match key {
            CommonKey::PlainHttp => parse_bool(name, value).map(|b| self.plain_http = Some(b)),
            CommonKey::Endpoint => {
                self.endpoint = Some(value.to_string());
                Ok(())
            }
            CommonKey::RequestTimeout => {
                parse_duration(name, value).map(|d| self.request_timeout = Some(d))
            }
            CommonKey::ConnectTimeout => {
                parse_duration(name, value).map(|d| self.connect_timeout = Some(d))
            }
            CommonKey::MaxAttempts => match value.trim().parse::<u32>() {
                Ok(n) if n >= 1 => {
                    let mut r = self.retry.clone().unwrap_or_default();
                    r.max_attempts = n;
                    self.retry = Some(r);
                    Ok(())
                }
                _ => Err(format!(
                    "{name}: {value:?} is not a number of attempts (1 or more)"
                )),
            },
        };
        if let Err(e) = result {
            self.errors.push(e);
        }
    }

    /// The value of `key`, as a string.
    pub fn get(&self, key: CommonKey) -> Option<String> {
        match key {
            CommonKey::PlainHttp => self.plain_http.map(|b| b.to_string()),
            CommonKey::Endpoint => self.endpoint.clone(),
            CommonKey::RequestTimeout => {
                self.request_timeout.map(|d| format!("{}ms", d.as_millis()))
            }
            CommonKey::ConnectTimeout => {
                self.connect_timeout.map(|d| format!("{}ms", d.as_millis()))
            }
            CommonKey::MaxAttempts => self.retry.as_ref().map(|r| r.max_attempts.to_string()),
        }
    }

    /// Records an error of a provider-specific setting.
    pub fn record_error(&mut self, error: impl Into<String>) {
        self.errors.push(error.into());
    }

    /// The first recorded error; an endpoint that is not an `http`/`https` URL.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        if let Some(e) = &self.endpoint {
            self.endpoint_url(e)?;
        }
        Ok(())
    }

    /// The endpoint, else `default`, as a URL.
    pub fn endpoint_or(&self, default: &str) -> std::result::Result<Url, String> {
        self.endpoint_url(self.endpoint.as_deref().unwrap_or(default))
    }

    fn endpoint_url(&self, e: &str) -> std::result::Result<Url, String> {
        let url = Url::parse(e).map_err(|err| format!("endpoint {e:?}: {err}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("endpoint {e:?}: the scheme must be http or https"));
        }
        Ok(url)
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// The retry policy.
    pub fn retry(&self) -> RetryConfig {
        self.retry.clone().unwrap_or_default()
    }

    /// The data-plane client of a provider's registry at `host`, with these settings, the
    /// provider's credentials and its upload mode.
    pub fn data_plane(
        &self,
        host: &str,
        credentials: Arc<dyn CredentialProvider>,
        upload: UploadMode,
    ) -> Result<RegistryClient> {
        let mut config = crate::store::http::RegistryConfig {
            upload,
            retry: self.retry(),
            request_timeout: self.request_timeout(),
            connect_timeout: self.connect_timeout(),
            ..Default::default()
        };
        config.plain_http = self.plain_http;
        RegistryClient::builder(host)
            .config(config)
            .credential_provider(credentials)
            .build()
    }
}

/// The options a provider's [`RegistryFactory`](crate::registry::RegistryFactory) got from
/// `registry::open`, read as its keys: every option but `prefix` (which the factory takes
/// with the location's path). `username`/`password` are refused with `credentials_hint` (what
/// the provider's data plane takes instead); an unknown key is an error naming `scheme`.
pub fn factory_options<K: ConfigKey>(
    options: &crate::registry::OpenOptions,
    scheme: &str,
    credentials_hint: &str,
) -> Result<Vec<(K, String)>> {
    if options.get("username").is_some() || options.get("password").is_some() {
        return Err(Error::Config(format!(
            "--registry-creds (username/password) does not apply to {}: {credentials_hint}",
            K::NAME
        )));
    }
    options
        .except(&["prefix"])
        .map(|(k, v)| {
            K::parse(k).map(|key| (key, v.to_string())).map_err(|e| {
                Error::Config(format!(
                    "{e} ({scheme}:// takes the {} configuration keys)",
                    K::NAME
                ))
            })
        })
        .collect()
}

/// The error of a builder whose settings do not validate: [`Error::Config`] naming the
/// provider.
pub fn config_error(provider: &str, message: impl fmt::Display) -> Error {
    Error::Config(format!("{provider}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Key {
        Region,
        PlainHttp,
    }

    impl ConfigKey for Key {
        const ALL: &'static [Self] = &[Key::Region, Key::PlainHttp];
        const NAME: &'static str = "test";
        const ENV_PREFIX: &'static str = "MIRROR_TEST_";
        fn as_str(self) -> &'static str {
            match self {
                Key::Region => "region",
                Key::PlainHttp => "plain_http",
            }
        }
        fn common(self) -> Option<CommonKey> {
            (self == Key::PlainHttp).then_some(CommonKey::PlainHttp)
        }
    }

    #[test]
    fn keys_parse_from_names_and_variables() {
        assert_eq!(Key::parse("region"), Ok(Key::Region));
        assert_eq!(Key::parse("MIRROR_TEST_PLAIN_HTTP"), Ok(Key::PlainHttp));
        assert_eq!(Key::parse("Plain_Http"), Ok(Key::PlainHttp));
        assert!(Key::parse("nope").unwrap_err().contains("unknown test"));
        assert_eq!(Key::Region.env_var(), "MIRROR_TEST_REGION");
    }

    #[test]
    fn values_parse_or_are_recorded() {
        assert_eq!(parse_bool("k", " Yes "), Ok(true));
        assert!(parse_bool("k", "maybe").is_err());
        assert_eq!(parse_duration("k", "90"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("k", "1500ms"),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(parse_duration("k", "2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("k", "soon").is_err());
        let mut s = CommonSettings::default();
        s.set(CommonKey::PlainHttp, "plain_http", "on");
        s.set(CommonKey::MaxAttempts, "max_attempts", "3");
        assert_eq!(s.get(CommonKey::MaxAttempts).as_deref(), Some("3"));
        assert_eq!(s.plain_http, Some(true));
        assert!(s.validate().is_ok());
        s.set(CommonKey::RequestTimeout, "request_timeout", "later");
        assert!(s.validate().unwrap_err().contains("request_timeout"));
        let mut s = CommonSettings::default();
        s.set(CommonKey::Endpoint, "endpoint", "ftp://x");
        assert!(s.validate().unwrap_err().contains("http or https"));
    }
}
