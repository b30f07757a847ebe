//! The `Registry` conformance suite (`mirror_core::testing::conformance`) run against the two
//! core registries: `GenericRegistry` over a real CNCF distribution registry
//! (`docker-registry`, one process per test) and `LayoutRegistry` over a temporary directory.
//!
//! Run one scenario alone with e.g. `cargo test -p tests --test suite conformance::generic::not_found`.

/// `GenericRegistry` over a fresh `TestRegistry` (anonymous push and pull, deletes enabled).
mod generic {
    use std::sync::Arc;

    use mirror_core::kit::store::http::credentials::Credentials;
    use mirror_core::kit::store::http::RegistryClient;
    use mirror_core::testing::TestRegistry;
    use mirror_core::{GenericRegistry, Registry};

    async fn make() -> (Arc<dyn Registry>, TestRegistry) {
        let reg = TestRegistry::start();
        let client = RegistryClient::new(&reg.host(), Credentials::Anonymous)
            .unwrap_or_else(|e| panic!("client for {}: {e}", reg.host()));
        (Arc::new(GenericRegistry::new(client)), reg)
    }

    mirror_core::registry_conformance!(make);
}

/// `LayoutRegistry` over a temporary directory.
mod layout {
    use std::sync::Arc;

    use mirror_core::{LayoutRegistry, Registry};
    use tempfile::TempDir;

    async fn make() -> (Arc<dyn Registry>, TempDir) {
        let dir = tempfile::tempdir().expect("create a temp dir");
        (
            Arc::new(LayoutRegistry::new(dir.path().join("mirror"))),
            dir,
        )
    }

    mirror_core::registry_conformance!(make);
}

/// The `Instrumented` wrapper around `GenericRegistry` (behind an `Arc<dyn Registry>`, through
/// the blanket `impl Registry for Arc<R>`): a wrapper passes the same suite as what it wraps.
mod instrumented_generic {
    use std::sync::Arc;

    use mirror_core::kit::store::http::credentials::Credentials;
    use mirror_core::kit::store::http::RegistryClient;
    use mirror_core::registry::Instrumented;
    use mirror_core::testing::TestRegistry;
    use mirror_core::{GenericRegistry, Registry};

    async fn make() -> (Arc<dyn Registry>, TestRegistry) {
        let reg = TestRegistry::start();
        let client = RegistryClient::new(&reg.host(), Credentials::Anonymous)
            .unwrap_or_else(|e| panic!("client for {}: {e}", reg.host()));
        let inner: Arc<dyn Registry> = Arc::new(GenericRegistry::new(client));
        (Arc::new(Instrumented::new(Arc::new(inner))), reg)
    }

    mirror_core::registry_conformance!(make);
}

/// The `Instrumented` wrapper around `LayoutRegistry`.
mod instrumented_layout {
    use std::sync::Arc;

    use mirror_core::registry::Instrumented;
    use mirror_core::{LayoutRegistry, Registry};
    use tempfile::TempDir;

    async fn make() -> (Arc<dyn Registry>, TempDir) {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let inner = Arc::new(LayoutRegistry::new(dir.path().join("mirror")));
        (Arc::new(Instrumented::new(inner)), dir)
    }

    mirror_core::registry_conformance!(make);
}

/// The wrapper counts what a deploy costs: a warm deploy ensures the repository once per
/// `Mirror` and makes no other registry call.
mod instrumented_counts {
    use std::sync::Arc;

    use mirror_core::registry::{Instrumented, Operation};
    use mirror_core::testing::TestImage;
    use mirror_core::{LayoutRegistry, Mirror, Source};

    #[tokio::test]
    async fn a_warm_deploy_costs_one_store_and_no_control_plane_call() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        TestImage::builder()
            .seed(5)
            .layer(1024)
            .build()
            .write_layout(&src, "v1")
            .unwrap();
        let registry = Instrumented::new(Arc::new(LayoutRegistry::new(dir.path().join("m"))));
        let mirror = Mirror::builder(Arc::new(registry.clone()), "prod")
            .eviction_grace(std::time::Duration::ZERO)
            .build()
            .unwrap();
        let source = Source::parse(&format!("oci:{}:v1", src.display())).unwrap();
        mirror.mirror("api", &source).await.unwrap();
        let cold = registry.all_calls();
        assert_eq!(cold[&Operation::EnsureRepository].ok, 1, "{cold:?}");
        assert_eq!(
            cold[&Operation::ListImages].ok,
            1,
            "eviction lists once: {cold:?}"
        );
        mirror.mirror("api", &source).await.unwrap();
        let warm = registry.all_calls();
        assert_eq!(
            warm[&Operation::EnsureRepository].ok,
            1,
            "ensured once per Mirror: {warm:?}"
        );
        assert_eq!(warm[&Operation::Store].ok, cold[&Operation::Store].ok + 1);
        assert_eq!(
            warm[&Operation::ListImages],
            cold[&Operation::ListImages],
            "a skip evicts nothing and lists nothing: {warm:?}"
        );
        assert!(!warm.contains_key(&Operation::DeleteImage));

        // A fresh deployer process (a new Mirror): the warm deploy still ensures nothing.
        let fresh = Instrumented::new(Arc::new(LayoutRegistry::new(dir.path().join("m"))));
        let mirror = Mirror::builder(Arc::new(fresh.clone()), "prod")
            .build()
            .unwrap();
        let d = mirror.mirror("api", &source).await.unwrap();
        assert_eq!(d.action, mirror_core::Action::Skipped);
        let calls = fresh.all_calls();
        assert!(
            !calls.contains_key(&Operation::EnsureRepository),
            "a warm deploy in a fresh process ensures no repository: {calls:?}"
        );
        assert_eq!(calls[&Operation::Store].ok, 1, "{calls:?}");
    }
}
