//! Configuration keys, declared once: a provider lists its keys with
//! [`config_keys!`](crate::config_keys) (name, environment variable, how the value reads,
//! default) and gets the enum, its parsing from key or variable names, the environment
//! reading ([`from_env`]) and a settings store ([`Settings`]) that normalises values as they
//! are set, records invalid ones, shows them back (`get_config`) and hands them typed to the
//! provider's `build()`. The settings every provider has ([`CommonKey`]: plain HTTP,
//! endpoint, timeouts, attempts) live in [`CommonSettings`], which also makes the data-plane
//! client.
//!
//! Every error a setting causes is [`Error::Setting`]: which provider, which key, and why.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};
use crate::retry::RetryConfig;
use crate::store::http::credentials::{CredentialProvider, Secret};
use crate::store::http::{RegistryClient, UploadMode};

/// A setting every provider has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// How a duration is shown back by `get_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shown {
    /// Whole seconds: `120s`.
    Seconds,
    /// Milliseconds: `1500ms`.
    Millis,
    /// Units: `1m 30s`, `2h`.
    Human,
}

/// How the value of a key reads, is checked and is shown back.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Value {
    /// Any text (trimmed).
    Text,
    /// Text checked and normalised by the function (its error says why the value is wrong).
    Checked(fn(&str) -> Result<String, String>),
    /// A secret (trimmed; printable ASCII without spaces): shown as `***`, never in `Debug`.
    Secret,
    /// A boolean: `1 true yes on` / `0 false no off`, in any case; shown `true` / `false`.
    Flag,
    /// A duration of more than zero (`90`, `90s`, `1500ms`, `2m`, `1h 30m`).
    Duration(Shown),
    /// One word of a fixed set, in any case: each entry is the word shown and its aliases.
    OneOf(&'static [&'static [&'static str]]),
    /// One of the settings every provider has.
    Common(CommonKey),
}

/// A provider's string configuration key (declare them with
/// [`config_keys!`](crate::config_keys)).
///
/// Parsing from a key name or an environment variable, case-insensitively, is shared
/// ([`ConfigKey::parse`]).
pub trait ConfigKey: Copy + Eq + Ord + fmt::Debug + Send + Sync + Sized + 'static {
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

    /// How its value reads (default: text).
    fn value(self) -> Value {
        Value::Text
    }

    /// The value `get_config` shows when it is not set.
    fn default_value(self) -> Option<&'static str> {
        None
    }

    /// What the key is, when it must be set (`validate` says so, naming its variable).
    fn required(self) -> Option<&'static str> {
        None
    }

    /// The shared setting this key stands for, if it is one.
    fn common(self) -> Option<CommonKey> {
        match self.value() {
            Value::Common(c) => Some(c),
            _ => None,
        }
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

/// Declares a provider's configuration keys: the enum (with `ALL`, `as_str`, `env_var`,
/// `FromStr`) and its [`ConfigKey`](crate::provider::config::ConfigKey) implementation.
///
/// Each key is `Variant = "key"`, optionally `env "VARIABLE"` (default: the prefix and the
/// key in upper case), `=> value` (a [`Value`](crate::provider::config::Value)), optionally
/// `, default "shown"`, optionally `, required "what it is"`.
///
/// ```
/// use mirror_core::kit::provider::config::{CommonKey, ConfigKey, Shown, Value};
/// mirror_core::config_keys! {
///     /// The keys of a made-up provider.
///     pub enum DemoKey: "Demo", "MIRROR_DEMO_" {
///         /// The region.
///         Region = "region" env "DEMO_REGION" => Value::Text, default "north";
///         /// The API URL.
///         Endpoint = "endpoint" => Value::Common(CommonKey::Endpoint);
///         /// How long to wait.
///         Wait = "wait" => Value::Duration(Shown::Seconds);
///     }
/// }
/// assert_eq!("DEMO_REGION".parse::<DemoKey>(), Ok(DemoKey::Region));
/// assert_eq!(DemoKey::Wait.env_var(), "MIRROR_DEMO_WAIT");
/// assert_eq!(DemoKey::Endpoint.common(), Some(CommonKey::Endpoint));
/// ```
#[macro_export]
macro_rules! config_keys {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $provider:literal, $prefix:literal {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $key:literal $(env $env:literal)? => $value:expr
                    $(, default $default:expr)? $(, required $what:literal)?;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $crate::kit::provider::config::ConfigKey for $name {
            const ALL: &'static [$name] = &[$($name::$variant),*];
            const NAME: &'static str = $provider;
            const ENV_PREFIX: &'static str = $prefix;

            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $key,)* }
            }

            fn env_var(self) -> ::std::borrow::Cow<'static, str> {
                match self {
                    $($name::$variant => $crate::config_keys!(@env $prefix, $key $(, $env)?),)*
                }
            }

            fn value(self) -> $crate::kit::provider::config::Value {
                match self { $($name::$variant => $value,)* }
            }

            fn default_value(self) -> Option<&'static str> {
                match self { $($name::$variant => $crate::config_keys!(@default $($default)?),)* }
            }

            fn required(self) -> Option<&'static str> {
                match self { $($name::$variant => $crate::config_keys!(@default $($what)?),)* }
            }
        }

        impl $name {
            /// Every key.
            pub const ALL: &'static [$name] =
                <$name as $crate::kit::provider::config::ConfigKey>::ALL;

            /// The provider's name in messages.
            pub const NAME: &'static str = $provider;

            /// The key (`region`).
            pub fn as_str(self) -> &'static str {
                $crate::kit::provider::config::ConfigKey::as_str(self)
            }

            /// The environment variable `from_env` reads.
            pub fn env_var(self) -> String {
                $crate::kit::provider::config::ConfigKey::env_var(self).into_owned()
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> ::std::result::Result<Self, String> {
                <$name as $crate::kit::provider::config::ConfigKey>::parse(s)
            }
        }
    };
    (@env $prefix:literal, $key:literal) => {
        ::std::borrow::Cow::Owned(format!("{}{}", $prefix, $key.to_ascii_uppercase()))
    };
    (@env $prefix:literal, $key:literal, $env:literal) => {
        ::std::borrow::Cow::Borrowed($env)
    };
    (@default) => { None };
    (@default $default:expr) => { Some($default) };
}

/// The keys of `K` set (non-empty) in the environment, with their values.
pub fn from_env<K: ConfigKey>() -> Vec<(K, String)> {
    K::ALL
        .iter()
        .filter_map(|k| {
            std::env::var(k.env_var().as_ref())
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (*k, v))
        })
        .collect()
}

pub use crate::registry::open::parse_bool;

/// Reads a duration: `90` (seconds), `90s`, `1500ms`, `2m`, `1h`, `1d`, or a sum of them
/// separated by spaces (`1m 30s`).
pub fn parse_duration(key: &str, v: &str) -> std::result::Result<Duration, String> {
    let err = || format!("{key}: {v:?} is not a duration (`90`, `90s`, `1500ms`, `2m`, `1h`)");
    let mut total = Duration::ZERO;
    let mut parts = v.split_whitespace().peekable();
    if parts.peek().is_none() {
        return Err(err());
    }
    for t in parts {
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let n: u64 = n.parse().map_err(|_| err())?;
        let part = match unit {
            "" | "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(err()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// Shows a duration the way `shown` says.
pub fn show_duration(d: Duration, shown: Shown) -> String {
    match shown {
        Shown::Seconds => format!("{}s", d.as_secs()),
        Shown::Millis => format!("{}ms", d.as_millis()),
        Shown::Human => {
            let mut parts = Vec::new();
            let mut left = d.as_secs();
            for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
                if left >= size {
                    parts.push(format!("{}{unit}", left / size));
                    left %= size;
                }
            }
            if d.subsec_millis() > 0 || parts.is_empty() {
                parts.push(format!("{}ms", d.subsec_millis()));
            }
            parts.join(" ")
        }
    }
}

/// What is wrong with one setting, before it is known whose setting it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl SettingError {
    /// `key`: `reason`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        SettingError {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The [`Error::Setting`] of `provider`.
    pub fn into_error(self, provider: &str) -> Error {
        Error::Setting {
            provider: provider.to_string(),
            key: self.key,
            reason: self.reason,
        }
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// The [`Error::Setting`] of `provider` for `key`.
pub fn setting_error(provider: &str, key: &str, reason: impl Into<String>) -> Error {
    SettingError::new(key, reason).into_error(provider)
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
    errors: Vec<SettingError>,
}

/// Default timeout of one request without a streaming body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

impl CommonSettings {
    /// Sets `key` (named `name` in messages) from a string; an invalid value is recorded and
    /// reported by [`validate`](Self::validate).
    pub fn set(&mut self, key: CommonKey, name: &str, value: &str) {
        let value = value.trim();
        let timeout = |v: &str| match parse_duration(name, v) {
            Ok(d) if d.is_zero() => Err(format!("{name}: must be more than zero")),
            other => other,
        };
        let result = match key {
            CommonKey::PlainHttp => parse_bool(name, value).map(|b| self.plain_http = Some(b)),
            CommonKey::Endpoint => {
                self.endpoint = Some(value.to_string());
                Ok(())
            }
            CommonKey::RequestTimeout => timeout(value).map(|d| self.request_timeout = Some(d)),
            CommonKey::ConnectTimeout => timeout(value).map(|d| self.connect_timeout = Some(d)),
            CommonKey::MaxAttempts => match value.parse::<u32>() {
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
        if let Err(reason) = result {
            self.record_error(SettingError::new(name, reason));
        }
    }

    /// The value of `key`, as a string.
    pub fn get(&self, key: CommonKey) -> Option<String> {
        let ms = |d: &Option<Duration>| d.map(|d| show_duration(d, Shown::Millis));
        match key {
            CommonKey::PlainHttp => self.plain_http.map(|b| b.to_string()),
            CommonKey::Endpoint => self.endpoint.clone(),
            CommonKey::RequestTimeout => ms(&self.request_timeout),
            CommonKey::ConnectTimeout => ms(&self.connect_timeout),
            CommonKey::MaxAttempts => self.retry.as_ref().map(|r| r.max_attempts.to_string()),
        }
    }

    /// Records an error of a provider-specific setting.
    pub fn record_error(&mut self, error: SettingError) {
        self.errors.push(error);
    }

    /// The first recorded error; an endpoint that is not an `http`/`https` URL that can be a
    /// base.
    pub fn validate(&self) -> std::result::Result<(), SettingError> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        if let Some(e) = &self.endpoint {
            endpoint_url(e)?;
        }
        Ok(())
    }

    /// The endpoint, else `default`, as a URL.
    pub fn endpoint_or(&self, default: &str) -> std::result::Result<Url, SettingError> {
        endpoint_url(self.endpoint.as_deref().unwrap_or(default))
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

fn endpoint_url(e: &str) -> std::result::Result<Url, SettingError> {
    let bad = |why: String| SettingError::new("endpoint", format!("{e:?}: {why}"));
    let url = Url::parse(e).map_err(|err| bad(err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(bad(
            "expected http(s)://host[:port][/path]; the scheme must be http or https".into(),
        ));
    }
    Ok(url)
}

/// A host setting as `host[:port]`: a scheme and trailing `/` taken off; a path refused.
pub fn host_setting(key: &str, value: &str) -> std::result::Result<String, SettingError> {
    let host = value
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(SettingError::new(
            key,
            format!("{value:?}: expected host[:port]"),
        ));
    }
    Ok(host.to_string())
}

/// A value a typed setter of a provider builder takes, as its string setting.
pub trait IntoSetting {
    /// The string the setting's key reads.
    fn into_setting(self) -> String;
}

macro_rules! into_setting_by_display {
    ($($t:ty),*) => {$(
        impl IntoSetting for $t {
            fn into_setting(self) -> String {
                self.to_string()
            }
        }
    )*};
}
into_setting_by_display!(&str, String, &String, bool, u32, u64, usize);

impl IntoSetting for Duration {
    fn into_setting(self) -> String {
        show_duration(self, Shown::Millis)
    }
}

impl IntoSetting for PathBuf {
    fn into_setting(self) -> String {
        self.display().to_string()
    }
}

impl IntoSetting for &PathBuf {
    fn into_setting(self) -> String {
        self.display().to_string()
    }
}

impl IntoSetting for &Path {
    fn into_setting(self) -> String {
        self.display().to_string()
    }
}

/// The settings of one provider builder: the values of its keys (normalised when set,
/// shown back by [`get`](Settings::get)), the [`CommonSettings`], and the errors recorded
/// while setting them ([`validate`](Settings::validate) reports the first).
#[derive(Clone)]
pub struct Settings<K: ConfigKey> {
    values: BTreeMap<K, String>,
    common: CommonSettings,
}

impl<K: ConfigKey> Default for Settings<K> {
    fn default() -> Self {
        Settings {
            values: BTreeMap::new(),
            common: CommonSettings::default(),
        }
    }
}

impl<K: ConfigKey> fmt::Debug for Settings<K> {
    /// Secrets show as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.values {
            match k.value() {
                Value::Secret => m.entry(&k.as_str(), &"***"),
                _ => m.entry(&k.as_str(), v),
            };
        }
        m.entry(&"common", &self.common).finish()
    }
}

impl<K: ConfigKey> Settings<K> {
    /// The settings of the `K` variables set in the environment.
    pub fn from_env() -> Self {
        let mut s = Self::default();
        for (k, v) in from_env::<K>() {
            s.set(k, &v);
        }
        s
    }

    /// Sets `key` from a string, normalised; an invalid value is recorded.
    pub fn set(&mut self, key: K, value: &str) {
        let (name, value) = (key.as_str(), value.trim());
        let normalised = match key.value() {
            Value::Common(c) => {
                self.common.set(c, name, value);
                return;
            }
            Value::Text => Ok(value.to_string()),
            Value::Checked(check) => check(value).map_err(|e| format!("{value:?}: {e}")),
            Value::Secret if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) => {
                Err("empty or holding spaces or control characters".into())
            }
            Value::Secret => Ok(value.to_string()),
            Value::Flag => parse_bool(name, value).map(|b| b.to_string()),
            Value::Duration(_) => match parse_duration(name, value) {
                Ok(d) if d.is_zero() => Err(format!("{name}: must be more than zero")),
                Ok(d) => Ok(show_duration(d, Shown::Millis)),
                Err(e) => Err(e),
            },
            Value::OneOf(words) => words
                .iter()
                .find(|w| w.iter().any(|a| a.eq_ignore_ascii_case(value)))
                .map(|w| w[0].to_string())
                .ok_or_else(|| {
                    let choices: Vec<&str> = words.iter().map(|w| w[0]).collect();
                    format!("{name}: {value:?}: expected {}", choices.join(" or "))
                }),
        };
        match normalised {
            Ok(v) => {
                self.values.insert(key, v);
            }
            Err(reason) => self.common.record_error(SettingError::new(name, reason)),
        }
    }

    /// The value of `key` as `get_config` shows it: set or default (secrets as `***`).
    pub fn get(&self, key: K) -> Option<String> {
        let value = match key.value() {
            Value::Common(c) => return self.common.get(c).or_else(|| self.default_of(key)),
            _ => self.values.get(&key),
        };
        match (key.value(), value) {
            (_, None) => self.default_of(key),
            (Value::Secret, Some(_)) => Some("***".into()),
            (Value::Duration(shown), Some(v)) => Some(
                parse_duration(key.as_str(), v)
                    .map(|d| show_duration(d, shown))
                    .unwrap_or_else(|_| v.clone()),
            ),
            (_, Some(v)) => Some(v.clone()),
        }
    }

    fn default_of(&self, key: K) -> Option<String> {
        key.default_value().map(str::to_string)
    }

    /// The value set for `key` (not its default).
    pub fn text(&self, key: K) -> Option<&str> {
        self.values.get(&key).map(String::as_str)
    }

    /// The value set for `key`, else its default.
    pub fn text_or_default(&self, key: K) -> Option<&str> {
        self.text(key).or(key.default_value())
    }

    /// The value set for `key`, or [`Error::Setting`] saying to set it (naming its variable)
    /// and what it is (`what`).
    pub fn require(&self, key: K, what: &str) -> Result<&str> {
        self.text(key)
            .ok_or_else(|| self.error(key, format!("not set: set {} ({what})", key.env_var())))
    }

    /// A host set for `key`, as `host[:port]` (see [`host_setting`]).
    pub fn host(&self, key: K) -> Result<Option<String>> {
        let host = self.text(key).map(|h| host_setting(key.as_str(), h));
        host.transpose().map_err(|e| e.into_error(K::NAME))
    }

    /// A secret set for `key`.
    pub fn secret(&self, key: K) -> Option<Secret> {
        self.text(key).map(Secret::new)
    }

    /// A flag, set or default (`false` without either).
    pub fn flag(&self, key: K) -> bool {
        self.text_or_default(key)
            .and_then(|v| parse_bool(key.as_str(), v).ok())
            .unwrap_or(false)
    }

    /// A duration, set or default.
    pub fn duration(&self, key: K) -> Option<Duration> {
        self.text_or_default(key)
            .and_then(|v| parse_duration(key.as_str(), v).ok())
    }

    /// The shared settings.
    pub fn common(&self) -> &CommonSettings {
        &self.common
    }

    /// The shared settings, to set typed values (a retry policy).
    pub fn common_mut(&mut self) -> &mut CommonSettings {
        &mut self.common
    }

    /// The [`Error::Setting`] of this provider for `key`.
    pub fn error(&self, key: K, reason: impl Into<String>) -> Error {
        setting_error(K::NAME, key.as_str(), reason)
    }

    /// The first invalid value recorded, the shared checks ([`CommonSettings::validate`]),
    /// then the first required key not set.
    pub fn validate(&self) -> Result<()> {
        self.common.validate().map_err(|e| e.into_error(K::NAME))?;
        for key in K::ALL {
            if let Some(what) = key.required() {
                self.require(*key, what)?;
            }
        }
        Ok(())
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
    for key in ["username", "password"] {
        if options.get(key).is_some() {
            return Err(setting_error(
                K::NAME,
                key,
                format!("--registry-creds (username/password) does not apply: {credentials_hint}"),
            ));
        }
    }
    options
        .except(&["prefix"])
        .map(|(k, v)| {
            K::parse(k).map(|key| (key, v.to_string())).map_err(|e| {
                setting_error(
                    K::NAME,
                    k,
                    format!("{e} ({scheme}:// takes the {} configuration keys)", K::NAME),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
