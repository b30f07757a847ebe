//! The façade's decisions, tested without a registry server: the in-memory registry
//! ([`crate::memory`]) as the mirror, a layout as the source, call counts and contents as the
//! evidence; a mockall mock where only a failure matters.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::memory::MemoryRegistry;
use crate::mock::MockRegistry;
use crate::testing::TestImage;
use crate::{Action, ErrorKind, Mirror, Registry, ServiceStrategy, Source};

fn layout_source(dir: &std::path::Path, seed: u64, tag: &str) -> Source {
    TestImage::builder()
        .seed(seed)
        .layers([300])
        .build()
        .write_layout(dir.join("src"), tag)
        .unwrap();
    Source::parse(&format!("oci:{}:{tag}", dir.join("src").display())).unwrap()
}

fn mirror(registry: &Arc<MemoryRegistry>, keep: usize) -> Mirror {
    Mirror::builder(registry.clone(), "prod")
        .strategy(Arc::new(ServiceStrategy {
            keep_previous: keep,
        }))
        .eviction_grace(Duration::ZERO)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_first_deploy_copies_and_the_second_skips_without_ensuring_again() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(MemoryRegistry::new("mirror.test"));
    let m = mirror(&registry, 1);
    let src = layout_source(dir.path(), 1, "v1");
    let first = m.mirror("api", &src).await.unwrap();
    assert_eq!(first.action, Action::Copied);
    assert_eq!(registry.calls().ensure_repository, 1);
    let again = m.mirror("api", &src).await.unwrap();
    assert_eq!(again.action, Action::Skipped);
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.blobs_uploaded, 0);
    assert_eq!(
        registry.calls().ensure_repository,
        1,
        "a skip ensures nothing"
    );
    assert_eq!(
        again.pull_reference,
        format!("mirror.test/prod/services/api@{}", first.digest)
    );
}

#[tokio::test]
async fn a_repushed_source_tag_is_recopied_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(MemoryRegistry::new("mirror.test"));
    let m = mirror(&registry, 1);
    let first = m
        .mirror("api", &layout_source(dir.path(), 2, "v1"))
        .await
        .unwrap();
    let repushed = m
        .mirror("api", &layout_source(dir.path(), 3, "v1"))
        .await
        .unwrap();
    assert_eq!(repushed.action, Action::Recopied);
    assert_ne!(repushed.digest, first.digest);
    assert!(repushed.warnings.iter().any(|w| w.kind() == "mutable_tag"));
}

#[tokio::test]
async fn a_source_gone_is_served_from_the_mirror_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(MemoryRegistry::new("mirror.test"));
    let m = mirror(&registry, 1);
    let src = layout_source(dir.path(), 4, "v1");
    let first = m.mirror("api", &src).await.unwrap();
    std::fs::remove_dir_all(dir.path().join("src")).unwrap();
    let served = m.mirror("api", &src).await.unwrap();
    assert_eq!(served.action, Action::Skipped);
    assert_eq!(served.digest, first.digest);
    assert!(
        served.warnings.iter().any(|w| w.served_from_mirror()),
        "{:?}",
        served.warnings
    );
}

#[tokio::test]
async fn a_new_version_evicts_the_old_one_but_not_what_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(MemoryRegistry::new("mirror.test"));
    let m = mirror(&registry, 0);
    let v1 = m
        .mirror("api", &layout_source(dir.path(), 5, "v1"))
        .await
        .unwrap();
    let v2 = m
        .mirror("api", &layout_source(dir.path(), 6, "v2"))
        .await
        .unwrap();
    assert_eq!(v2.evicted, vec![v1.digest.clone()]);
    let v3 = m
        .mirror_with(
            "api",
            &layout_source(dir.path(), 7, "v3"),
            &HashSet::from([v2.digest.clone()]),
        )
        .await
        .unwrap();
    assert!(v3.evicted.is_empty(), "v2 is in use: {:?}", v3.evicted);
}

#[tokio::test]
async fn a_mirror_that_refuses_fails_the_deploy_as_an_auth_error_and_ensures_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = MockRegistry::new();
    registry
        .expect_repository()
        .returning(|scope| Ok(crate::Repository::new("prod/services/api", scope.clone())));
    registry.expect_store().times(1).returning(|_| {
        Err(crate::Error::Unauthorized {
            registry: "mirror.test".into(),
            message: "denied".into(),
        })
    });
    registry.expect_ensure_repository().times(0);
    registry
        .expect_location()
        .returning(|| "mirror.test".to_string());
    registry.expect_provider().return_const("mock".to_string());
    let registry: Arc<dyn Registry> = Arc::new(registry);
    let m = Mirror::builder(registry, "prod").build().unwrap();
    let err = m
        .mirror("api", &layout_source(dir.path(), 8, "v1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(m.side_of(&err), crate::Side::Mirror);
}
