//! `mirror deploy --json` shows typed warnings with their `kind`, so that a deployer can
//! branch on "served from the mirror because the source is down" without parsing text.

use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{TestImage, TestRegistry};
use tests::cli::{build_cli, Cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_json_names_the_kind_of_each_warning() {
    let bin = tokio::task::spawn_blocking(build_cli).await.unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let store = RegistryClient::new(&src.host(), Credentials::Anonymous)
        .unwrap()
        .repository("team/web")
        .unwrap();
    TestImage::builder()
        .seed(1)
        .layer(500)
        .build()
        .push(&store, "latest")
        .await
        .unwrap();
    let dst_host = dst.host();
    let cli = Cli::new(bin, &[], &["--registry", &dst_host, "--cluster", "prod"]);
    let source = format!("{}/team/web:latest", src.host());
    let deploy = || {
        cli.json_async(vec![
            "deploy",
            "--service",
            "web",
            "--json",
            source.as_str(),
        ])
    };

    let first = deploy().await;
    assert_eq!(first["action"], "copied", "{first}");
    assert!(first
        .get("warnings")
        .and_then(|w| w.as_array())
        .is_none_or(|w| w.is_empty()));

    // The tag moves at the source: re-mirrored, with a `mutable_tag` warning.
    TestImage::builder()
        .seed(2)
        .layer(500)
        .build()
        .push(&store, "latest")
        .await
        .unwrap();
    let second = deploy().await;
    assert_eq!(second["action"], "recopied", "{second}");
    assert_eq!(second["warnings"][0]["kind"], "mutable_tag", "{second}");
    assert_eq!(
        second["warnings"][0]["previous"], first["digest"],
        "{second}"
    );

    // The source goes down: the mirrored copy is served, `source_unreachable`.
    src.stop();
    let third = deploy().await;
    assert_eq!(third["action"], "skipped", "{third}");
    assert_eq!(
        third["warnings"][0]["kind"], "source_unreachable",
        "{third}"
    );
    assert_eq!(third["warnings"][0]["served"], second["digest"], "{third}");

    // People read the sentence on stderr.
    let out = cli.run(&["deploy", "--service", "web", &source]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: source") && err.contains("serving the mirrored copy"),
        "{err}"
    );
}
