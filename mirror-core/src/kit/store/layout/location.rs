//! `oci:PATH[:tag]` locations and the references a layout is asked for.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::validate_tag;

#[allow(unused_imports)]
use super::*;

/// Parses a CLI location `oci:PATH[:TAG]` into the layout path and the tag, if any.
///
/// The tag is the text after the last `:` when that `:` comes after the last `/` and the text
/// is a valid tag; otherwise the whole text is the path (`oci:/a:b/c` is the path `/a:b/c`).
/// An empty path, an empty tag (`oci:dir:`) and digests (`oci:dir@sha256:…`) are rejected.
pub fn parse_oci_location(s: &str) -> Result<(PathBuf, Option<String>)> {
    let invalid = |reason: &str| Error::InvalidReference {
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let rest = s
        .strip_prefix("oci:")
        .ok_or_else(|| invalid("an OCI layout location is written oci:PATH[:TAG]"))?;
    let (path, tag) = match rest.rsplit_once(':') {
        Some((_, t)) if t.contains('/') => (rest, None),
        Some((_, "")) => return Err(invalid("empty tag after ':'")),
        Some((p, t)) if validate_tag(t).is_ok() => {
            if p.rsplit_once('@')
                .is_some_and(|(_, d)| Digest::parse(&format!("{d}:{t}")).is_ok())
            {
                return Err(invalid(
                    "digests are not supported in oci: locations; use a tag",
                ));
            }
            (p, Some(t.to_string()))
        }
        Some((_, t)) if !t.contains('\\') => {
            return Err(invalid(&format!(
                "{t:?} after the last ':' is not a valid tag (letters, digits, '_', '.', '-'; \
                 at most 128); a path that contains ':' needs a tag after it (oci:PATH:TAG)"
            )))
        }
        _ => (rest, None),
    };
    if path.is_empty() {
        return Err(invalid("empty layout path"));
    }
    Ok((PathBuf::from(path), tag))
}

pub(super) fn parse_reference(reference: &str) -> Result<ManifestRef> {
    let invalid = |reason: String| Error::InvalidReference {
        input: reference.to_string(),
        reason,
    };
    if reference.contains(':') {
        Digest::parse(reference)
            .map(ManifestRef::Digest)
            .map_err(|e| invalid(e.to_string()))
    } else {
        validate_tag(reference).map_err(invalid)?;
        Ok(ManifestRef::Tag(reference.to_string()))
    }
}
