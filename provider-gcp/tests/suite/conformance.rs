//! The core `Registry` conformance suite against `ArtifactRegistry` on the Artifact Registry
//! emulator (a fake of the REST API and of the OAuth endpoint, a real distribution registry for
//! the data plane; see `support/mod.rs`).
//!
//! Run one scenario alone with e.g. `cargo test -p provider-gcp --test suite conformance::push_list_delete`.

use provider_gcp::testing as support;

use std::sync::Arc;

use mirror_core::Registry;
use support::FakeGar;

async fn make() -> (Arc<dyn Registry>, FakeGar) {
    let fake = FakeGar::start().await;
    let gar = fake.gar().await;
    (Arc::new(gar), fake)
}

mirror_core::registry_conformance!(make);
