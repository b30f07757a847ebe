//! Deletions for control planes that delete one manifest per call (Artifact Registry's
//! `versions.delete`, any API without a batch call): the [`Deletion`] semantics of
//! [`ControlPlane::delete_manifests`] written once, a few calls at a time ([`delete_each`]),
//! and the orphan check that registries without server-side garbage collection of platform
//! manifests need after an index is deleted ([`orphans`]).

use std::collections::HashSet;
use std::future::Future;

use futures::StreamExt as _;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::DELETE_CONCURRENCY;
use crate::provider::cloud::{index_children, ControlPlane, Deletion};
use crate::provider::error::ControlPlaneError;

/// The platform manifests among `children` (of an index just deleted) that are orphans now:
/// untagged in the control plane's listing of `repository`, and held by no index it still
/// lists (indexes read through the data plane).
pub async fn orphans<C: ControlPlane + ?Sized>(
    plane: &C,
    repository: &str,
    children: &[Digest],
) -> Result<Vec<Digest>> {
    let listed = plane.list_images(repository).await?;
    let store = plane.data_plane().repository(repository)?;
    let held = index_children(&store, &listed).await?;
    let untagged: HashSet<&Digest> = listed
        .iter()
        .filter(|l| l.tags.is_empty())
        .map(|l| &l.digest)
        .collect();
    let orphan = |c: &&Digest| untagged.contains(c) && !held.contains(*c);
    Ok(children.iter().filter(orphan).cloned().collect())
}

/// [`ControlPlane::delete_manifests`] over `delete(digest, with_tags)`, one call per manifest
/// and [`DELETE_CONCURRENCY`] at a time. `delete` removes one manifest, with its tags when
/// `with_tags`; without, it refuses a tagged manifest with [`Kind::Conflict`](crate::provider::error::Kind::Conflict).
///
/// - [`Deletion::Image`]: each with its tags; every failure is an error (absent: not found);
/// - [`Deletion::Referrer`]: each with its tags; absent is fine;
/// - [`Deletion::Child`]: only the [`orphans`], without their tags (tagged meanwhile, a child
///   is kept); absent or refused is fine.
pub async fn delete_each<C, F, Fut>(
    plane: &C,
    repository: &str,
    digests: &[Digest],
    why: Deletion,
    delete: F,
) -> Result<()>
where
    C: ControlPlane + ?Sized,
    F: Fn(Digest, bool) -> Fut,
    Fut: Future<Output = Result<(), ControlPlaneError>>,
{
    let digests = match why {
        Deletion::Child => orphans(plane, repository, digests).await?,
        _ => digests.to_vec(),
    };
    let calls = digests.into_iter().map(|d| {
        let call = delete(d, why != Deletion::Child);
        async move {
            match call.await {
                Err(e) if !why.tolerates(e.kind()) => Err(Error::from(e)),
                _ => Ok(()),
            }
        }
    });
    let done: Vec<Result<()>> = futures::stream::iter(calls)
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect()
        .await;
    done.into_iter().collect()
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::provider::cloud::ListedImage;
    use crate::provider::error::{Kind, Origin};
    use crate::registry::{Repository, RepositoryScope, RepositorySettings};
    use crate::store::http::RegistryClient;
    use crate::testing::{TestImage, TestIndex, TestRegistry};
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// A control plane listing a real registry's repository `r`: tagged images and the
    /// untagged manifests in `untagged`.
    #[derive(Debug)]
    struct Plane {
        data: RegistryClient,
        untagged: Vec<Digest>,
        tagged: Vec<(Digest, &'static str)>,
        deleted: Mutex<Vec<(Digest, bool)>>,
    }

    #[async_trait]
    impl ControlPlane for Plane {
        const PROVIDER: &'static str = "test";
        fn data_plane(&self) -> &RegistryClient {
            &self.data
        }
        fn repository_name(&self, _: &RepositoryScope) -> Result<String> {
            Ok("r".into())
        }
        fn check_repository(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn create_repository(&self, _: &Repository, _: &RepositorySettings) -> Result<bool> {
            Ok(false)
        }
        async fn list_repositories(&self, _: &str) -> Result<Vec<String>> {
            Ok(vec![])
        }
        async fn list_images(&self, _: &str) -> Result<Vec<ListedImage>> {
            let mut out: Vec<ListedImage> = self
                .untagged
                .iter()
                .cloned()
                .map(ListedImage::new)
                .collect();
            for (d, t) in &self.tagged {
                let mut l = ListedImage::new(d.clone());
                l.tags.push(t.to_string());
                out.push(l);
            }
            Ok(out)
        }
        async fn delete_manifests(&self, _: &str, _: &[Digest], _: Deletion) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn only_untagged_children_no_index_holds_are_orphans_and_deleted_without_tags() {
        let registry = TestRegistry::start();
        let data = RegistryClient::new(&registry.host(), Default::default()).unwrap();
        let store = data.repository("r").unwrap();
        let image = |seed, platform| {
            TestImage::builder()
                .seed(seed)
                .layer(10)
                .platform(platform)
                .build()
        };
        let (amd, arm, arm2) = (
            image(1, "linux/amd64"),
            image(2, "linux/arm64"),
            image(3, "linux/arm64"),
        );
        let tagged = image(4, "linux/amd64");
        // The index that held amd and arm is gone; this one still holds amd.
        let second = TestIndex::from_images(vec![amd.clone(), arm2.clone()]);
        second.push(&store, "v2").await.unwrap();
        let plane = Plane {
            data,
            untagged: vec![
                amd.digest().clone(),
                arm.digest().clone(),
                arm2.digest().clone(),
            ],
            tagged: vec![
                (second.digest().clone(), "v2"),
                (tagged.digest().clone(), "t"),
            ],
            deleted: Mutex::default(),
        };
        let children = [
            amd.digest().clone(),
            arm.digest().clone(),
            tagged.digest().clone(),
        ];
        let found = orphans(&plane, "r", &children).await.unwrap();
        assert_eq!(found, vec![arm.digest().clone()]);

        let origin = Origin::new("test", "h");
        let refused = arm.digest().clone();
        let delete = |d: Digest, with_tags: bool| {
            let (plane, origin, refused) = (&plane, &origin, &refused);
            async move {
                plane.deleted.lock().unwrap().push((d.clone(), with_tags));
                match d == *refused {
                    true => Err(origin.error("delete", "r", Kind::Conflict, "tagged")),
                    false => Ok(()),
                }
            }
        };
        delete_each(&plane, "r", &children, Deletion::Child, delete)
            .await
            .unwrap();
        assert_eq!(
            *plane.deleted.lock().unwrap(),
            vec![(arm.digest().clone(), false)]
        );
        // The image asked for: a refusal is an error; a referrer gone is fine.
        let err = delete_each(
            &plane,
            "r",
            &[arm.digest().clone()],
            Deletion::Image,
            delete,
        )
        .await;
        assert!(err.is_err());
        let gone = |_: Digest, with_tags: bool| {
            let origin = &origin;
            async move {
                assert!(with_tags);
                Err(origin.error("delete", "r", Kind::NotFound("manifest"), ""))
            }
        };
        delete_each(&plane, "r", &children, Deletion::Referrer, gone)
            .await
            .unwrap();
        assert!(delete_each(&plane, "r", &children, Deletion::Image, gone)
            .await
            .unwrap_err()
            .is_not_found());
    }
}
