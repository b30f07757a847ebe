//! Name grammars, declared: what cloud registries accept for their resource names (ECR
//! repository components, Artifact Registry ids, Scaleway namespaces) is one shape — lowercase
//! ASCII letters and digits, separators between them, a length range — that a provider
//! declares as a [`Grammar`] instead of writing a validator.

use crate::error::Error;

/// A name grammar: lowercase ASCII letters and digits, and `separators` between them (never
/// first or last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grammar {
    /// What the name is, in messages (`namespace name`).
    pub what: &'static str,
    /// The shortest length.
    pub min: usize,
    /// The longest length.
    pub max: usize,
    /// The separators allowed (`-`, `._-`).
    pub separators: &'static str,
    /// Whether separators may follow each other (`a--b`).
    pub repeated_separators: bool,
    /// Whether the name starts with a letter.
    pub letter_first: bool,
}

impl Grammar {
    /// `[a-z]([a-z0-9-]*[a-z0-9])?` of `min` to `max` characters (a DNS label).
    pub const fn dns_label(what: &'static str, min: usize, max: usize) -> Self {
        Grammar {
            what,
            min,
            max,
            separators: "-",
            repeated_separators: true,
            letter_first: true,
        }
    }

    /// Why `name` does not follow the grammar, if it does not.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let (what, len) = (self.what, name.len());
        if !(self.min..=self.max).contains(&len) {
            let (min, max) = (self.min, self.max);
            return Err(format!(
                "{what}s are {min} to {max} characters long, {name:?} has {len}"
            ));
        }
        if self.letter_first && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(format!(
                "{what} {name:?} must start with a lowercase letter"
            ));
        }
        let mut previous: Option<bool> = None;
        for c in name.chars() {
            let separator = self.separators.contains(c);
            if !(separator || c.is_ascii_lowercase() || c.is_ascii_digit()) {
                return Err(format!(
                    "{what} {name:?} contains {c:?}: only lowercase letters, digits and `{}` are allowed",
                    self.separators
                ));
            }
            let misplaced = match previous {
                None => separator,
                Some(after) => separator && after && !self.repeated_separators,
            };
            if misplaced {
                return Err(format!(
                    "{what} {name:?}: `{}` must sit between lowercase letters or digits",
                    self.separators
                ));
            }
            previous = Some(separator);
        }
        if previous != Some(false) {
            return Err(format!("{what} {name:?} must end with a letter or a digit"));
        }
        Ok(())
    }

    /// [`check`](Self::check) as an [`Error::InvalidName`] of `name`.
    pub fn validate(&self, name: &str) -> crate::Result<()> {
        self.check(name).map_err(|reason| invalid(name, reason))
    }
}

/// [`Error::InvalidName`] of `name`.
pub fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidName {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// A UUID in its canonical text form (`8-4-4-4-12` hex digits), lowercased: the shape of
/// project, tenant and subscription ids of several clouds. A checker for
/// [`Value::Checked`](super::config::Value::Checked).
pub fn uuid(value: &str) -> Result<String, String> {
    let v = value.to_ascii_lowercase();
    let dash = |i: usize| [8, 13, 18, 23].contains(&i);
    let ok = v.len() == 36
        && (v.bytes().enumerate())
            .all(|(i, b)| (b == b'-') == dash(i) && (dash(i) || b.is_ascii_hexdigit()));
    ok.then_some(v)
        .ok_or_else(|| "not a UUID (8-4-4-4-12 hexadecimal digits)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammars_check_length_letters_and_separators() {
        let ns = Grammar {
            what: "namespace name",
            min: 4,
            max: 10,
            separators: "-",
            repeated_separators: false,
            letter_first: true,
        };
        for ok in ["abcd", "a-b-c", "a123"] {
            assert!(ns.check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "abc",
            "abcdefghijk",
            "1abc",
            "-abc",
            "abc-",
            "ab--cd",
            "Abcd",
            "ab_c",
        ] {
            assert!(ns.check(bad).is_err(), "{bad}");
        }
        let dns = Grammar::dns_label("repository id", 1, 63);
        assert!(dns.check("a--b").is_ok());
        assert!(dns.check("a").is_ok());
        assert!(dns.check("a-").is_err());
        let component = Grammar {
            what: "component",
            min: 1,
            max: 256,
            separators: "._-",
            repeated_separators: false,
            letter_first: false,
        };
        assert!(component.check("1a.b_c-d").is_ok());
        assert!(component.check("a__b").is_err());
        assert!(matches!(
            component.validate(""),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn uuids_are_canonical_hex_groups_lowercased() {
        let id = "4B0C6BD4-5a39-4d48-8c1e-6a2f2e4e1b11";
        assert_eq!(uuid(id).unwrap(), id.to_ascii_lowercase());
        let bad = ["", "4b0c6bd4", "4b0c6bd4-5a39-4d48-8c1e-6a2f2e4e1b1g"];
        let more = [
            "4b0c6bd45-a39-4d48-8c1e-6a2f2e4e1b11",
            "4b0c6bd4-5a39-4d48-8c1e-6a2f2e4e1b11-",
        ];
        for v in bad.iter().chain(&more) {
            assert!(uuid(v).is_err(), "{v}");
        }
    }
}
