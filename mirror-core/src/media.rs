//! Manifest and index media types, and the small part of a manifest the copy engine reads.
//!
//! Manifests travel as raw bytes plus media type and are never re-serialised: re-encoding JSON
//! changes the digest. We parse only what we need (child descriptors and platforms) with
//! lenient serde structs rather than `oci-spec`'s typed builders, because one parser must
//! accept both OCI and Docker v2 schema 2 documents as registries serve them, including
//! documents whose `mediaType` field is absent (it is optional in OCI) and unknown fields.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (the Docker counterpart of an OCI index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifest (unsigned).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 manifest (signed).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The OCI empty descriptor's media type (the config of artifacts that have none).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Every manifest media type this library reads and writes, for `Accept` headers.
pub(crate) const ACCEPTED_MANIFEST_TYPES: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// What kind of document a media type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// A single-platform image manifest (config + layers).
    Image,
    /// An index / manifest list (child manifests, usually one per platform).
    Index,
}

/// Classifies a manifest media type; schema 1 and unknown types are errors naming `location`.
pub(crate) fn manifest_kind(media_type: &str, location: &str) -> Result<ManifestKind> {
    match media_type.to_ascii_lowercase().as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(ManifestKind::Index),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(schema1(media_type, location)),
        _ => Err(Error::UnsupportedMediaType {
            media_type: media_type.to_string(),
            location: location.to_string(),
            reason: format!("expected one of {}", ACCEPTED_MANIFEST_TYPES.join(", ")),
        }),
    }
}

fn schema1(media_type: &str, location: &str) -> Error {
    Error::UnsupportedMediaType {
        media_type: media_type.to_string(),
        location: location.to_string(),
        reason: "Docker schema 1 manifests are deprecated and not copied; re-push the image with \
                 a current client to get a schema 2 or OCI manifest"
            .to_string(),
    }
}

/// A manifest exactly as stored: its bytes, media type and digest.
#[derive(Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// The bytes, never re-serialised.
    pub bytes: bytes::Bytes,
    /// The media type (`Content-Type` when pushed).
    pub media_type: String,
    /// The sha256 digest of `bytes`.
    pub digest: Digest,
}

impl std::fmt::Debug for RawManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawManifest")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl RawManifest {
    /// Wraps bytes whose media type is known; the digest is computed.
    pub fn new(bytes: impl Into<bytes::Bytes>, media_type: impl Into<String>) -> Self {
        let bytes = bytes.into();
        let digest = Digest::sha256_of(&bytes);
        RawManifest {
            bytes,
            media_type: media_type.into(),
            digest,
        }
    }

    /// Wraps bytes whose media type is missing or generic (`application/json`): it is taken
    /// from the document's `mediaType` field, else inferred from its shape.
    pub fn detect(
        bytes: impl Into<bytes::Bytes>,
        declared: Option<&str>,
        location: &str,
    ) -> Result<Self> {
        let bytes = bytes.into();
        let media_type = match declared.map(|d| d.split(';').next().unwrap_or(d).trim()) {
            Some(t)
                if !t.is_empty()
                    && t != "application/json"
                    && t != "application/octet-stream"
                    && t != "text/plain" =>
            {
                t.to_string()
            }
            _ => infer_media_type(&bytes, location)?,
        };
        Ok(RawManifest::new(bytes, media_type))
    }

    /// The kind of document (image or index); errors on schema 1 and unknown types.
    pub fn kind(&self, location: &str) -> Result<ManifestKind> {
        manifest_kind(&self.media_type, location)
    }

    /// Parses the parts the copy engine needs.
    pub fn parse(&self, location: &str) -> Result<ParsedManifest> {
        let kind = self.kind(location)?;
        let invalid = |reason: String| Error::InvalidManifest {
            location: location.to_string(),
            reason,
        };
        let doc: ManifestDoc = json_doc(&self.bytes).map_err(invalid)?;
        if doc.schema_version != Some(2) {
            return Err(invalid(format!(
                "schemaVersion must be 2, got {:?}",
                doc.schema_version
            )));
        }
        if let Some(declared) = &doc.media_type {
            if declared != &self.media_type {
                return Err(invalid(format!(
                    "document says mediaType {declared:?} but was served as {:?}",
                    self.media_type
                )));
            }
        }
        match kind {
            ManifestKind::Image => {
                let config = doc
                    .config
                    .ok_or_else(|| invalid("image manifest without config".into()))?;
                Ok(ParsedManifest::Image {
                    config,
                    layers: doc.layers.unwrap_or_default(),
                })
            }
            ManifestKind::Index => Ok(ParsedManifest::Index {
                manifests: doc
                    .manifests
                    .ok_or_else(|| invalid("index without manifests".into()))?,
            }),
        }
    }
}

impl RawManifest {
    /// The manifest's `subject`, artifact type and annotations (see [`Referral`]); an
    /// unreadable document is [`Error::InvalidManifest`].
    pub fn referral(&self, location: &str) -> Result<Referral> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Doc {
            #[serde(default)]
            artifact_type: Option<String>,
            #[serde(default)]
            subject: Option<Descriptor>,
            #[serde(default)]
            config: Option<Descriptor>,
            #[serde(default)]
            annotations: Option<std::collections::BTreeMap<String, String>>,
        }
        let text = std::str::from_utf8(&self.bytes).map_err(|e| Error::InvalidManifest {
            location: location.to_string(),
            reason: format!("not UTF-8 JSON: {e}"),
        })?;
        let doc: Doc = serde_json::from_str(text).map_err(|e| Error::InvalidManifest {
            location: location.to_string(),
            reason: e.to_string(),
        })?;
        // As the referrers API reports it: `artifactType`, else the config's media type.
        let artifact_type = doc
            .artifact_type
            .filter(|t| !t.is_empty())
            .or_else(|| doc.config.map(|c| c.media_type).filter(|t| !t.is_empty()));
        Ok(Referral {
            subject: doc.subject,
            artifact_type,
            annotations: doc.annotations,
        })
    }
}

fn infer_media_type(bytes: &[u8], location: &str) -> Result<String> {
    let invalid = |reason: String| Error::InvalidManifest {
        location: location.to_string(),
        reason,
    };
    let doc: ManifestDoc = json_doc(bytes).map_err(invalid)?;
    if doc.schema_version == Some(1) {
        return Err(schema1(DOCKER_SCHEMA1, location));
    }
    if let Some(mt) = doc.media_type {
        return Ok(mt);
    }
    if doc.manifests.is_some() {
        Ok(OCI_INDEX.to_string())
    } else if doc.config.is_some() {
        Ok(OCI_MANIFEST.to_string())
    } else {
        Err(invalid(
            "cannot tell the media type: no mediaType, manifests or config".into(),
        ))
    }
}

/// Parses a manifest document. The bytes must be UTF-8 as a whole: serde skips the contents
/// of unknown fields without checking them, and a registry would refuse such a document.
fn json_doc(bytes: &[u8]) -> std::result::Result<ManifestDoc, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 JSON: {e}"))?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

/// What makes a manifest a referrer: the manifest it refers to, and its artifact type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    /// The `subject` descriptor, when the manifest has one.
    pub subject: Option<Descriptor>,
    /// The artifact type: the `artifactType` field, else (for image manifests) the config's
    /// media type, as the OCI 1.1 referrers API reports it (distribution spec, "Listing
    /// Referrers"). `None` for an index without `artifactType`.
    pub artifact_type: Option<String>,
    /// The manifest's annotations.
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// A content descriptor: what a manifest says about a blob or a child manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// The artifact type, on the entries of a referrers index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Platform, on index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (the OCI layout stores tags in `org.opencontainers.image.ref.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// CPU variant (`v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows).
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A platform filter: `os/arch[/variant]`, as `--platform` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformFilter {
    /// Operating system.
    pub os: String,
    /// Architecture.
    pub architecture: String,
    /// Variant; `None` matches any variant.
    pub variant: Option<String>,
}

impl PlatformFilter {
    /// Parses `os/arch[/variant]`.
    pub fn parse(input: &str) -> Result<Self> {
        let parts: Vec<&str> = input.split('/').collect();
        let bad = || Error::config("platform", format!("{input:?} is not os/arch[/variant]"));
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(PlatformFilter {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// True when `platform` is selected by this filter.
    pub fn matches(&self, platform: &Platform) -> bool {
        self.os == platform.os
            && self.architecture == platform.architecture
            && match &self.variant {
                None => true,
                Some(v) => platform.variant.as_deref() == Some(v.as_str()),
            }
    }
}

impl std::fmt::Display for PlatformFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The parts of a manifest the copy engine follows.
// One short-lived value per manifest read: boxing the config would cost more than it saves.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ParsedManifest {
    /// An image: its config and layers, all blobs.
    Image {
        /// The config blob.
        config: Descriptor,
        /// The layer blobs, in order.
        layers: Vec<Descriptor>,
    },
    /// An index: child manifests.
    Index {
        /// The child manifests with their platforms.
        manifests: Vec<Descriptor>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_artifact_type_falls_back_to_the_config_media_type_as_the_spec_says() {
        let with = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "artifactType":"application/spdx+json",
            "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
            "layers":[]}"#;
        let r = RawManifest::new(&with[..], OCI_MANIFEST)
            .referral("x")
            .unwrap();
        assert_eq!(r.artifact_type.as_deref(), Some("application/spdx+json"));
        let without = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
            "layers":[]}"#;
        let r = RawManifest::new(&without[..], OCI_MANIFEST)
            .referral("x")
            .unwrap();
        assert_eq!(r.artifact_type.as_deref(), Some(OCI_CONFIG));
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let r = RawManifest::new(&index[..], OCI_INDEX)
            .referral("x")
            .unwrap();
        assert_eq!(r.artifact_type, None);
    }

    #[test]
    fn schema1_is_rejected_with_advice() {
        let doc = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let err = RawManifest::detect(&doc[..], None, "r/x:y").unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        let m = RawManifest::new(&doc[..], DOCKER_SCHEMA1_SIGNED);
        assert!(matches!(
            m.parse("r/x:y"),
            Err(Error::UnsupportedMediaType { .. })
        ));
    }

    #[test]
    fn unknown_media_type_names_the_type() {
        let m = RawManifest::new(&b"{}"[..], "application/x-nonsense");
        let err = m.parse("reg/repo:tag").unwrap_err();
        assert!(err.to_string().contains("application/x-nonsense"));
        assert!(err.to_string().contains("reg/repo:tag"));
    }

    #[test]
    fn media_type_is_inferred_when_missing() {
        let doc = br#"{"schemaVersion":2,"manifests":[]}"#;
        let m = RawManifest::detect(&doc[..], Some("application/json"), "x").unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
    }

    #[test]
    fn platform_filter_matches_variant_only_when_given() {
        let p = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
            os_version: None,
        };
        assert!(PlatformFilter::parse("linux/arm64").unwrap().matches(&p));
        assert!(PlatformFilter::parse("linux/arm64/v8").unwrap().matches(&p));
        assert!(!PlatformFilter::parse("linux/arm64/v7").unwrap().matches(&p));
        assert!(PlatformFilter::parse("linux").is_err());
    }
}
