//! The core `Registry` conformance suite against `Ecr` on the ECR emulator (moto for the
//! control plane, a real distribution registry for the data plane; see `support/mod.rs`).
//!
//! Run one scenario alone with e.g. `cargo test -p provider-aws --test suite conformance::push_list_delete`.

use provider_aws::testing as support;

use std::sync::Arc;

use mirror_core::Registry;
use support::EcrEmulator;

async fn make() -> (Arc<dyn Registry>, EcrEmulator) {
    let emulator = EcrEmulator::start().await;
    let ecr = emulator.ecr().await;
    (Arc::new(ecr), emulator)
}

mirror_core::registry_conformance!(make);
