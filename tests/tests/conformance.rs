//! The `Registry` conformance suite (`mirror_core::testing::conformance`) run against the two
//! core registries: `GenericRegistry` over a real CNCF distribution registry
//! (`docker-registry`, one process per test) and `LayoutRegistry` over a temporary directory.
//!
//! Run one scenario alone with e.g. `cargo test -p tests --test conformance generic::not_found`.

/// `GenericRegistry` over a fresh `TestRegistry` (anonymous push and pull, deletes enabled).
mod generic {
    use std::sync::Arc;

    use mirror_core::store::http::credentials::Credentials;
    use mirror_core::store::http::RegistryClient;
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
