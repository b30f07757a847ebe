//! The core `Registry` conformance suite against `Scaleway` on the fake Scaleway registry API
//! (in-process, see `support/mod.rs`) with a real distribution registry as the data plane.
//!
//! Run one scenario alone with e.g.
//! `cargo test -p provider-scaleway --test suite conformance::push_list_delete`.

use provider_scaleway::testing as support;

use std::sync::Arc;

use mirror_core::Registry;
use support::FakeScaleway;

async fn make() -> (Arc<dyn Registry>, FakeScaleway) {
    let fake = FakeScaleway::start().await;
    // Namespaces take two reads to become ready, as a real one may.
    fake.set_readiness("unknown", 2);
    let scaleway = fake.scaleway();
    (Arc::new(scaleway), fake)
}

mirror_core::registry_conformance!(make);
