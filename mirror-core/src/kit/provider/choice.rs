//! Settings that are one word of a fixed set (a tag mutability, what a retention counts
//! from): [`setting_choice!`](crate::setting_choice) declares the enum a builder's typed
//! setter takes, with its words (the first shown, the others aliases), so that the key's
//! [`Value::OneOf`](super::config::Value::OneOf), its parsing and the typed setter agree.

/// Declares an enum of setting words: the enum (`#[non_exhaustive]`, its first variant the
/// default), `WORDS` (for [`Value::OneOf`](crate::kit::provider::config::Value::OneOf)),
/// `as_str` (the word shown), `FromStr` (any word, in any case) and
/// [`IntoSetting`](crate::kit::provider::config::IntoSetting).
///
/// ```
/// mirror_core::setting_choice! {
///     /// How loud.
///     pub enum Volume {
///         /// Quiet (the default).
///         Quiet = ["quiet", "low"],
///         /// Loud.
///         Loud = ["loud", "high"],
///     }
/// }
/// assert_eq!("HIGH".parse::<Volume>(), Ok(Volume::Loud));
/// assert_eq!(Volume::default().as_str(), "quiet");
/// assert_eq!(Volume::WORDS[1], ["loud", "high"]);
/// assert!("soft".parse::<Volume>().unwrap_err().contains("`quiet` or `loud`"));
/// ```
#[macro_export]
macro_rules! setting_choice {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(#[$fmeta:meta])* $first:ident = [$($fword:literal),+ $(,)?],
            $( $(#[$vmeta:meta])* $variant:ident = [$($word:literal),+ $(,)?], )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[non_exhaustive]
        $vis enum $name {
            $(#[$fmeta])*
            #[default]
            $first,
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// The words of each variant, in order; the first of each is the one shown.
            pub const WORDS: &'static [&'static [&'static str]] =
                &[&[$($fword),+], $(&[$($word),+]),*];

            /// The word shown for it.
            pub fn as_str(self) -> &'static str {
                Self::WORDS[self as usize][0]
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> ::std::result::Result<Self, String> {
                let all = [$name::$first, $($name::$variant),*];
                let word = |w: &&[&str]| w.iter().any(|a| a.eq_ignore_ascii_case(s.trim()));
                let shown: Vec<String> = Self::WORDS.iter().map(|w| format!("`{}`", w[0])).collect();
                Self::WORDS
                    .iter()
                    .position(word)
                    .map(|i| all[i])
                    .ok_or_else(|| format!("{s:?}: expected {}", shown.join(" or ")))
            }
        }

        impl $crate::kit::provider::config::IntoSetting for $name {
            fn into_setting(self) -> String {
                self.as_str().to_string()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::setting_choice! {
        /// Test words.
        enum Mode {
            /// The default.
            Plain = ["PLAIN"],
            /// Another.
            Fancy = ["FANCY", "nice"],
        }
    }

    #[test]
    fn words_parse_show_and_default() {
        use crate::kit::provider::config::IntoSetting;
        assert_eq!(Mode::default(), Mode::Plain);
        assert_eq!("Nice".parse::<Mode>(), Ok(Mode::Fancy));
        assert_eq!(" plain ".parse::<Mode>(), Ok(Mode::Plain));
        assert_eq!(Mode::Fancy.into_setting(), "FANCY");
        let e = "x".parse::<Mode>().unwrap_err();
        assert_eq!(e, "\"x\": expected `PLAIN` or `FANCY`");
    }
}
