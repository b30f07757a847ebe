//! [`Operation`]: what a request or call was, for errors and metrics.
//!
//! The data plane's requests are variants of their own, so that code and telemetry branch on
//! a value, never on a name; a provider's control-plane calls carry the API's own name
//! (`CreateRepository`, `dockerImages.list`), which the provider's error table reads.

use std::borrow::Cow;
use std::fmt;

/// A registry request or a control-plane call. Shown as it was always written in messages
/// (`HEAD manifest`, `PUT blob`, `CreateRepository`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `GET /v2/`: the version check that finds the authentication challenge.
    Ping,
    /// A bearer-token request to the registry's token server.
    Token,
    /// `HEAD` of a manifest.
    HeadManifest,
    /// `GET` of a manifest.
    GetManifest,
    /// `PUT` of a manifest.
    PutManifest,
    /// `DELETE` of a manifest.
    DeleteManifest,
    /// `HEAD` of a blob.
    HeadBlob,
    /// `GET` of a blob.
    GetBlob,
    /// A cross-repository blob mount (`POST …/blobs/uploads/?mount=`).
    MountBlob,
    /// The `POST` that opens an upload session.
    StartUpload,
    /// A `PATCH` of an upload session (a chunk).
    UploadChunk,
    /// The `PUT` that finishes an upload (the whole blob, or its last chunk).
    FinishUpload,
    /// The `DELETE` that cancels an upload session.
    CancelUpload,
    /// A blob copied from source to destination (retried as a whole).
    BlobTransfer,
    /// A page of a tag listing.
    ListTags,
    /// A page of the catalog.
    Catalog,
    /// A page of the referrers API.
    Referrers,
    /// The `PUT` of a referrers index under the tag schema.
    PutReferrersIndex,
    /// A call of a provider's control plane, by the API's own name.
    ControlPlane(Cow<'static, str>),
}

impl Operation {
    /// Every data-plane operation (all but [`ControlPlane`](Self::ControlPlane)).
    pub const DATA_PLANE: [Operation; 18] = [
        Operation::Ping,
        Operation::Token,
        Operation::HeadManifest,
        Operation::GetManifest,
        Operation::PutManifest,
        Operation::DeleteManifest,
        Operation::HeadBlob,
        Operation::GetBlob,
        Operation::MountBlob,
        Operation::StartUpload,
        Operation::UploadChunk,
        Operation::FinishUpload,
        Operation::CancelUpload,
        Operation::BlobTransfer,
        Operation::ListTags,
        Operation::Catalog,
        Operation::Referrers,
        Operation::PutReferrersIndex,
    ];

    /// How messages name it (`HEAD manifest`; a control-plane call by its name).
    pub fn as_str(&self) -> &str {
        match self {
            Operation::Ping | Operation::Token => "GET",
            Operation::HeadManifest => "HEAD manifest",
            Operation::GetManifest => "GET manifest",
            Operation::PutManifest => "PUT manifest",
            Operation::DeleteManifest => "DELETE manifest",
            Operation::HeadBlob => "HEAD blob",
            Operation::GetBlob => "GET blob",
            Operation::MountBlob => "POST blob mount",
            Operation::StartUpload => "POST blob upload",
            Operation::UploadChunk => "PATCH blob",
            Operation::FinishUpload => "PUT blob",
            Operation::CancelUpload => "DELETE upload",
            Operation::BlobTransfer => "blob transfer",
            Operation::ListTags => "GET tags",
            Operation::Catalog => "GET catalog",
            Operation::Referrers => "GET referrers",
            Operation::PutReferrersIndex => "PUT referrers index",
            Operation::ControlPlane(name) => name,
        }
    }

    /// The bounded metric label of a data-plane operation (`manifest_head`); `other` for a
    /// control-plane call.
    pub fn label(&self) -> &'static str {
        match self {
            Operation::Ping => "ping",
            Operation::Token => "token",
            Operation::HeadManifest => "manifest_head",
            Operation::GetManifest => "manifest_get",
            Operation::PutManifest => "manifest_put",
            Operation::DeleteManifest => "manifest_delete",
            Operation::HeadBlob => "blob_head",
            Operation::GetBlob => "blob_get",
            Operation::MountBlob => "blob_mount",
            Operation::StartUpload => "upload_start",
            Operation::UploadChunk => "upload_chunk",
            Operation::FinishUpload => "upload_finish",
            Operation::CancelUpload => "upload_cancel",
            Operation::BlobTransfer => "blob_transfer",
            Operation::ListTags => "tags_list",
            Operation::Catalog => "catalog",
            Operation::Referrers => "referrers",
            Operation::PutReferrersIndex => "referrers_index_put",
            Operation::ControlPlane(_) => "other",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Operation {
    /// A control-plane call named `name`.
    fn from(name: &'static str) -> Self {
        Operation::ControlPlane(Cow::Borrowed(name))
    }
}

impl From<Cow<'static, str>> for Operation {
    /// A control-plane call named `name`.
    fn from(name: Cow<'static, str>) -> Self {
        Operation::ControlPlane(name)
    }
}

impl PartialEq<&str> for Operation {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_data_plane_operation_has_a_label_of_its_own() {
        let labels: HashSet<&str> = Operation::DATA_PLANE.iter().map(Operation::label).collect();
        assert_eq!(labels.len(), Operation::DATA_PLANE.len(), "{labels:?}");
        assert!(!labels.contains("other"));
        assert_eq!(Operation::from("CreateRepository").label(), "other");
    }

    #[test]
    fn messages_name_operations_as_before() {
        assert_eq!(Operation::HeadManifest.to_string(), "HEAD manifest");
        assert_eq!(Operation::Token.to_string(), "GET");
        assert_eq!(
            Operation::from("dockerImages.list").to_string(),
            "dockerImages.list"
        );
    }
}
