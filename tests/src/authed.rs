//! Two registries with basic auth and a mirror between them: the set-up of the tests that
//! check no credential reaches metrics or traces.

use std::sync::Arc;
use std::time::Duration;

use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::kit::store::ImageStore;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{GenericRegistry, Mirror, ServiceStrategy, Source, Sources};

/// The user of both registries.
pub const USER: &str = "deployer";
/// Its password: it must appear in no metric, span or event.
pub const PASSWORD: &str = "pa55-never-in-telemetry";

/// A current-thread runtime (thread-local recorders and subscribers see all its work).
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A mirror of `dst` (basic auth) for cluster `prod`, Service mode keeping no previous image,
/// reading sources from `src` (basic auth too).
pub fn mirror(dst: &TestRegistry, src: &TestRegistry) -> Mirror {
    let creds = || Credentials::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let client = RegistryClient::new(&dst.host(), creds()).expect("a client");
    Mirror::builder(Arc::new(GenericRegistry::new(client)), "prod")
        .strategy(Arc::new(ServiceStrategy { keep_previous: 0 }))
        .eviction_grace(Duration::ZERO)
        .sources(Sources::new().with_credentials(&src.host(), creds()))
        .build()
        .expect("a mirror")
}

/// Pushes two images (`app:v1`, `app:v2`) to `src` and returns them as sources.
pub async fn sources(src: &TestRegistry) -> Vec<Source> {
    let client = RegistryClient::new(
        &src.host(),
        Credentials::Basic {
            username: USER.into(),
            password: PASSWORD.into(),
        },
    )
    .expect("a client");
    let store = client.repository("app").expect("a repository");
    let mut out = Vec::new();
    for (n, tag) in ["v1", "v2"].into_iter().enumerate() {
        let img = TestImage::builder()
            .seed(n as u64 + 40)
            .layers([10_000, 20_000])
            .build();
        img.push(&store as &dyn ImageStore, tag)
            .await
            .expect("push a source image");
        out.push(Source::parse(&format!("{}/app:{tag}", src.host())).expect("a source"));
    }
    out
}
