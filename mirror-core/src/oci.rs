//! Conversions to and from [`oci_spec`]'s image types (feature `oci-spec`).
//!
//! Deployers in the Rust ecosystem hold `oci-spec` values (what `oci-client` and most OCI
//! tooling speak). This module converts between them and this crate's views:
//!
//! | this crate | `oci_spec::image` | direction |
//! |---|---|---|
//! | [`Descriptor`] | [`oci_spec::image::Descriptor`] | both, `TryFrom` (digests are checked) |
//! | [`Platform`] | [`oci_spec::image::Platform`] | both |
//! | [`PlatformFilter`] | [`oci_spec::image::Platform`] | `From` (an oci-spec platform is accepted wherever a filter is) |
//! | [`RawManifest`] | [`oci_spec::image::ImageManifest`], [`oci_spec::image::ImageIndex`] | typed views of the raw bytes, and raw bytes from a typed value |
//!
//! # What is typed and what stays raw
//!
//! A manifest's **bytes are the source of truth**: its digest is the digest of exactly those
//! bytes, and re-serialising a parsed document can change them (field order, whitespace,
//! unknown fields dropped), which would change the digest and break every signature and
//! pinned reference. So a [`RawManifest`] is never rebuilt from a typed value behind the
//! caller's back: [`RawManifest::image_manifest`] and [`RawManifest::image_index`] are
//! read-only views, and [`RawManifest::from_image_manifest`] /
//! [`RawManifest::from_image_index`] are for *new* documents (a deployer writing an
//! artifact), whose digest is computed from the bytes they produce.

use oci_spec::image as spec;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{Descriptor, Platform, PlatformFilter, RawManifest, OCI_INDEX, OCI_MANIFEST};

impl From<&Platform> for spec::Platform {
    fn from(p: &Platform) -> Self {
        let mut out = spec::Platform::default();
        out.set_architecture(spec::Arch::from(p.architecture.as_str()));
        out.set_os(spec::Os::from(p.os.as_str()));
        out.set_variant(p.variant.clone());
        out.set_os_version(p.os_version.clone());
        out
    }
}

impl From<&spec::Platform> for Platform {
    fn from(p: &spec::Platform) -> Self {
        Platform {
            architecture: p.architecture().to_string(),
            os: p.os().to_string(),
            variant: p.variant().clone(),
            os_version: p.os_version().clone(),
        }
    }
}

/// An oci-spec platform selects exactly its variant when it has one, any variant otherwise.
impl From<&spec::Platform> for PlatformFilter {
    fn from(p: &spec::Platform) -> Self {
        PlatformFilter {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone(),
        }
    }
}

impl From<spec::Platform> for PlatformFilter {
    fn from(p: spec::Platform) -> Self {
        PlatformFilter::from(&p)
    }
}

impl TryFrom<&Descriptor> for spec::Descriptor {
    type Error = Error;

    /// Fails only if oci-spec refuses the digest (this crate's digests are sha256 or sha512
    /// in lowercase hex, which it accepts).
    fn try_from(d: &Descriptor) -> Result<Self> {
        let digest = spec::Digest::try_from(d.digest.to_string().as_str()).map_err(|e| {
            Error::InvalidDigest {
                input: d.digest.to_string(),
                reason: format!("oci-spec: {e}"),
            }
        })?;
        let mut out =
            spec::Descriptor::new(spec::MediaType::from(d.media_type.as_str()), d.size, digest);
        out.set_artifact_type(d.artifact_type.as_deref().map(spec::MediaType::from));
        out.set_platform(d.platform.as_ref().map(spec::Platform::from));
        out.set_annotations(
            d.annotations
                .as_ref()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        );
        Ok(out)
    }
}

impl TryFrom<&spec::Descriptor> for Descriptor {
    type Error = Error;

    /// Fails when the digest is not one this crate can verify (sha256 or sha512).
    fn try_from(d: &spec::Descriptor) -> Result<Self> {
        Ok(Descriptor {
            media_type: d.media_type().to_string(),
            digest: Digest::parse(d.digest().as_ref())?,
            size: d.size(),
            artifact_type: d.artifact_type().as_ref().map(|t| t.to_string()),
            platform: d.platform().as_ref().map(Platform::from),
            annotations: d
                .annotations()
                .as_ref()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        })
    }
}

impl RawManifest {
    /// The manifest as an oci-spec [`ImageManifest`](spec::ImageManifest): a read-only view
    /// of the bytes (see the [module docs](crate::oci)). An index, or a document oci-spec
    /// cannot read, is [`Error::InvalidManifest`] naming `location`.
    pub fn image_manifest(&self, location: &str) -> Result<spec::ImageManifest> {
        if self.kind(location)? != crate::media::ManifestKind::Image {
            return Err(invalid(location, "an index, not an image manifest"));
        }
        spec::ImageManifest::from_reader(&self.bytes[..])
            .map_err(|e| invalid(location, &e.to_string()))
    }

    /// The manifest as an oci-spec [`ImageIndex`](spec::ImageIndex) (a Docker manifest list
    /// reads as one): a read-only view of the bytes. An image manifest, or a document
    /// oci-spec cannot read, is [`Error::InvalidManifest`] naming `location`.
    pub fn image_index(&self, location: &str) -> Result<spec::ImageIndex> {
        if self.kind(location)? != crate::media::ManifestKind::Index {
            return Err(invalid(location, "an image manifest, not an index"));
        }
        spec::ImageIndex::from_reader(&self.bytes[..])
            .map_err(|e| invalid(location, &e.to_string()))
    }

    /// A new manifest document from an oci-spec value: serialised once, its media type the
    /// document's own (OCI image manifest by default) and its digest that of the bytes.
    pub fn from_image_manifest(manifest: &spec::ImageManifest) -> Result<Self> {
        let bytes = manifest
            .to_string()
            .map_err(|e| invalid("an oci-spec image manifest", &e.to_string()))?;
        let media_type = manifest
            .media_type()
            .as_ref()
            .map_or_else(|| OCI_MANIFEST.to_string(), |m| m.to_string());
        Ok(RawManifest::new(bytes.into_bytes(), media_type))
    }

    /// A new index document from an oci-spec value: serialised once, its media type the
    /// document's own (OCI image index by default) and its digest that of the bytes.
    pub fn from_image_index(index: &spec::ImageIndex) -> Result<Self> {
        let bytes = index
            .to_string()
            .map_err(|e| invalid("an oci-spec image index", &e.to_string()))?;
        let media_type = index
            .media_type()
            .as_ref()
            .map_or_else(|| OCI_INDEX.to_string(), |m| m.to_string());
        Ok(RawManifest::new(bytes.into_bytes(), media_type))
    }
}

fn invalid(location: &str, reason: &str) -> Error {
    Error::InvalidManifest {
        location: location.to_string(),
        reason: format!("oci-spec: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn image_bytes() -> &'static [u8] {
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"annotations":{"a":"b"}}],"zzz-unknown":1}"#
    }

    #[test]
    fn a_descriptor_round_trips_through_oci_spec_with_platform_and_annotations() {
        let ours = Descriptor {
            media_type: OCI_MANIFEST.to_string(),
            digest: Digest::parse(CONFIG).unwrap(),
            size: 42,
            artifact_type: Some("application/spdx+json".into()),
            platform: Some(Platform {
                architecture: "arm64".into(),
                os: "linux".into(),
                variant: Some("v8".into()),
                os_version: None,
            }),
            annotations: Some([("k".to_string(), "v".to_string())].into()),
        };
        let theirs = spec::Descriptor::try_from(&ours).unwrap();
        assert_eq!(theirs.digest().to_string(), CONFIG);
        assert_eq!(theirs.size(), 42);
        assert_eq!(
            theirs.platform().as_ref().map(|p| p.architecture().clone()),
            Some(spec::Arch::ARM64)
        );
        assert_eq!(Descriptor::try_from(&theirs).unwrap(), ours);
    }

    #[test]
    fn an_oci_spec_digest_this_crate_cannot_verify_is_an_input_error() {
        let d = spec::Descriptor::new(
            spec::MediaType::ImageManifest,
            1,
            spec::Digest::try_from(format!("sha384:{}", "a".repeat(96))).unwrap(),
        );
        let err = Descriptor::try_from(&d).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Input, "{err}");
    }

    #[test]
    fn an_oci_spec_platform_is_a_filter_that_selects_the_same_platforms() {
        let p = spec::PlatformBuilder::default()
            .architecture(spec::Arch::ARM64)
            .os(spec::Os::Linux)
            .variant("v8")
            .build()
            .unwrap();
        let filter = PlatformFilter::from(&p);
        let options = crate::CopyOptions::default().with_platforms([p.clone()]);
        assert_eq!(options.platforms, vec![filter.clone()]);
        assert_eq!(filter.to_string(), "linux/arm64/v8");
        assert!(filter.matches(&Platform::from(&p)));
        let any_variant = PlatformFilter::from(
            spec::PlatformBuilder::default()
                .architecture(spec::Arch::Amd64)
                .os(spec::Os::Linux)
                .build()
                .unwrap(),
        );
        assert_eq!(any_variant, PlatformFilter::parse("linux/amd64").unwrap());
    }

    #[test]
    fn typed_views_read_the_raw_bytes_and_leave_them_and_the_digest_unchanged() {
        let raw = RawManifest::new(image_bytes(), OCI_MANIFEST);
        let before = raw.digest.clone();
        let m = raw.image_manifest("r/x@d").unwrap();
        assert_eq!(m.layers().len(), 1);
        assert_eq!(m.config().digest().to_string(), CONFIG);
        // The view does not touch the bytes (which carry a field oci-spec drops).
        assert_eq!(raw.digest, before);
        assert_eq!(&raw.bytes[..], image_bytes());
        // An image is not an index, and the error names where it came from.
        let err = raw.image_index("r/x@d").unwrap_err();
        assert!(matches!(err, Error::InvalidManifest { ref location, .. } if location == "r/x@d"));
        // A new document from a typed value: its digest is that of the bytes written.
        let written = RawManifest::from_image_manifest(&m).unwrap();
        assert_eq!(written.media_type, OCI_MANIFEST);
        assert_eq!(written.digest, Digest::sha256_of(&written.bytes));
        assert_ne!(
            written.digest, before,
            "re-serialising changes bytes: never done silently"
        );
        written.parse("new").unwrap();
    }

    #[test]
    fn an_index_reads_as_an_oci_spec_index_and_a_typed_index_becomes_a_document() {
        let index = spec::ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(spec::MediaType::ImageIndex)
            .manifests(vec![spec::Descriptor::new(
                spec::MediaType::ImageManifest,
                7,
                spec::Digest::try_from(CONFIG).unwrap(),
            )])
            .build()
            .unwrap();
        let raw = RawManifest::from_image_index(&index).unwrap();
        assert_eq!(raw.media_type, OCI_INDEX);
        let back = raw.image_index("r/x@i").unwrap();
        assert_eq!(back.manifests().len(), 1);
        assert!(raw.image_manifest("r/x@i").is_err());
        // Garbage is an integrity error, never a panic.
        let junk = RawManifest::new(&b"{\"schemaVersion\":2,\"manifests\":7}"[..], OCI_INDEX);
        assert!(matches!(
            junk.image_index("j"),
            Err(Error::InvalidManifest { .. })
        ));
    }
}
