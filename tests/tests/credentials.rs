//! Docker `config.json` credential helpers, end to end: a `docker-credential-<name>` program on
//! `PATH` (a shell script written by the test) answers `get`, and the client authenticates to a
//! real registry with what it printed. Its own test binary, because it changes `PATH`.

use std::os::unix::fs::PermissionsExt;

use mirror_core::kit::store::http::credentials::{Credentials, DockerConfig};
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::ImageStore;

#[tokio::test]
async fn cred_helpers_and_creds_store_are_run_and_their_answer_used() {
    let reg = TestRegistry::with_basic_auth("helper-user", "helper-pass");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("asked");
    for (name, user, pass) in [
        ("testhelper", "helper-user", "helper-pass"),
        ("teststore", "store-user", "store-pass"),
    ] {
        let script = dir.path().join(format!("docker-credential-{name}"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"{name} $server\" >> {}\n\
                 printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{pass}\"}}' \"$server\"\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // SAFETY of the test: this binary holds only this test, so no other thread reads PATH.
    unsafe { std::env::set_var("PATH", path) };

    let host = reg.host();
    let config = format!(
        r#"{{"credHelpers":{{"{host}":"testhelper"}},"credsStore":"teststore","auths":{{}}}}"#
    );
    let cfg = DockerConfig::parse(std::path::Path::new("config.json"), config.as_bytes()).unwrap();
    let creds = cfg.credentials_for(&host).unwrap();
    assert_eq!(creds, Credentials::basic("helper-user", "helper-pass"));
    // The client authenticates with the helper's answer.
    let store = RegistryClient::new(&host, creds)
        .unwrap()
        .repository("h/app")
        .unwrap();
    let img = TestImage::builder().seed(3).layer(100).build();
    img.push(&store, "v1").await.unwrap();
    assert_eq!(
        store.head_manifest("v1").await.unwrap().unwrap().digest,
        *img.digest()
    );

    // Another registry falls back to credsStore; Docker Hub is asked for by its server URL.
    assert_eq!(
        cfg.credentials_for("other.example.com").unwrap(),
        Credentials::basic("store-user", "store-pass")
    );
    assert_eq!(
        cfg.credentials_for("docker.io").unwrap(),
        Credentials::basic("store-user", "store-pass")
    );
    let asked = std::fs::read_to_string(&log).unwrap();
    assert!(asked.contains(&format!("testhelper {host}")), "{asked}");
    assert!(asked.contains("teststore other.example.com"), "{asked}");
    assert!(
        asked.contains("teststore https://index.docker.io/v1/"),
        "{asked}"
    );
}
