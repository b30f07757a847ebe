use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

crate::config_keys! {
    /// Keys declared with the macro.
    enum Declared: "Declared", "MIRROR_DECL_" {
        /// A secret.
        Token = "token" env "DECL_TOKEN" => Value::Secret;
        /// A flag.
        Public = "public" => Value::Flag, default "false";
        /// A duration.
        Wait = "wait" => Value::Duration(Shown::Human), default "2m";
        /// A word.
        Mode = "mode" => Value::OneOf(&[&["FAST", "quick"], &["SLOW"]]), default "FAST";
        /// A shared key.
        Attempts = "max_attempts" => Value::Common(CommonKey::MaxAttempts);
    }
}

#[test]
fn keys_parse_from_names_and_variables() {
    assert_eq!(Key::parse("region"), Ok(Key::Region));
    assert_eq!(Key::parse("MIRROR_TEST_PLAIN_HTTP"), Ok(Key::PlainHttp));
    assert_eq!(Key::parse("Plain_Http"), Ok(Key::PlainHttp));
    assert!(Key::parse("nope").unwrap_err().contains("unknown test"));
    assert_eq!(Key::Region.env_var(), "MIRROR_TEST_REGION");
    assert_eq!("decl_token".parse::<Declared>(), Ok(Declared::Token));
    assert_eq!(Declared::Wait.env_var(), "MIRROR_DECL_WAIT");
    assert_eq!((Declared::ALL.len(), Declared::NAME), (5, "Declared"));
    assert_eq!(Declared::Token.as_str(), "token");
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
    assert_eq!(parse_duration("k", "1m 30s"), Ok(Duration::from_secs(90)));
    assert!(parse_duration("k", "soon").is_err());
    let mut s = CommonSettings::default();
    s.set(CommonKey::PlainHttp, "plain_http", "on");
    s.set(CommonKey::MaxAttempts, "max_attempts", "3");
    assert_eq!(s.get(CommonKey::MaxAttempts).as_deref(), Some("3"));
    assert_eq!(s.plain_http, Some(true));
    assert!(s.validate().is_ok());
    s.set(CommonKey::RequestTimeout, "request_timeout", "later");
    assert!(s
        .validate()
        .unwrap_err()
        .to_string()
        .contains("request_timeout"));
    let mut s = CommonSettings::default();
    s.set(CommonKey::Endpoint, "endpoint", "ftp://x");
    assert!(s
        .validate()
        .unwrap_err()
        .to_string()
        .contains("http or https"));
}

#[test]
fn declared_values_normalise_show_and_name_their_key() {
    let mut s = Settings::<Declared>::default();
    assert_eq!(s.get(Declared::Wait).as_deref(), Some("2m"));
    s.set(Declared::Token, " s3cret ");
    s.set(Declared::Public, "YES");
    s.set(Declared::Wait, "90s");
    s.set(Declared::Mode, "quick");
    s.set(Declared::Attempts, "2");
    assert_eq!(s.get(Declared::Token).as_deref(), Some("***"));
    assert_eq!(s.secret(Declared::Token).unwrap().expose(), "s3cret");
    assert!(!format!("{s:?}").contains("s3cret"));
    assert!(s.flag(Declared::Public));
    assert_eq!(s.get(Declared::Wait).as_deref(), Some("1m 30s"));
    assert_eq!(s.duration(Declared::Wait), Some(Duration::from_secs(90)));
    assert_eq!(s.get(Declared::Mode).as_deref(), Some("FAST"));
    assert_eq!(s.get(Declared::Attempts).as_deref(), Some("2"));
    assert!(s.validate().is_ok());
    s.set(Declared::Wait, "0s");
    match s.validate().unwrap_err() {
        Error::Setting {
            provider,
            key,
            reason,
        } => {
            assert_eq!((provider.as_str(), key.as_str()), ("Declared", "wait"));
            assert!(reason.contains("more than zero"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let mut s = Settings::<Declared>::default();
    s.set(Declared::Mode, "sometimes");
    let e = s.validate().unwrap_err().to_string();
    assert!(e.contains("mode") && e.contains("FAST or SLOW"), "{e}");
    let e = s.require(Declared::Token, "the API token").unwrap_err();
    assert!(e.to_string().contains("DECL_TOKEN"), "{e}");
}
