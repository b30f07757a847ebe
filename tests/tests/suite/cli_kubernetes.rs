//! The `mirror` CLI with Kubernetes discovery (`--kubeconfig`) against the in-process API
//! server of `tests::kube_api` and the real registry: `sweep` keeps what a CronJob references
//! and fails without deleting when the API refuses, `ls` shows users and expiry.

use tests::cli::{build_cli, Cli};
use tests::kube_api::{self, FakeKubernetes};

use mirror_core::testing::{TestImage, TestRegistry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_and_ls_ask_the_cluster_what_it_runs() {
    let bin = tokio::task::spawn_blocking(build_cli).await.unwrap();
    let dst = TestRegistry::start();
    let host = dst.host();
    let cli = Cli::new(bin, &[], &["--registry", &host, "--cluster", "prod"]);
    let kubeconfig = cli.home.path().join("kubeconfig");
    let kubeconfig_arg = kubeconfig.display().to_string();
    let k8s = FakeKubernetes::start().await;
    k8s.write_kubeconfig(&kubeconfig);
    // `mirror <words of cmd> --kubeconfig KUBECONFIG`: its output, or its JSON (`run`).
    let words = |cmd: &'static str| -> Vec<&str> {
        let kubeconfig = ["--kubeconfig", kubeconfig_arg.as_str()];
        cmd.split_whitespace().chain(kubeconfig).collect()
    };
    let run = |cmd| cli.json_async(words(cmd));

    let backup_src = cli.layout_source(
        &TestImage::builder().seed(5).layer(900).build(),
        "backup",
        "1",
    );
    let report_src = cli.layout_source(
        &TestImage::builder().seed(6).layer(900).build(),
        "report",
        "1",
    );
    let deploy = |src: String| {
        let args = vec!["deploy", "--mode", "cluster", "--service", "ops", "--json"]
            .into_iter()
            .map(str::to_string)
            .chain([src])
            .collect::<Vec<_>>();
        cli.json_async(args)
    };
    let backup = deploy(backup_src).await;
    let report = deploy(report_src).await;
    let backup_ref = backup["pull_reference"].as_str().unwrap().to_string();
    k8s.put(&kube_api::cron_job("ops", "nightly-backup", &backup_ref));

    // ls: who uses what, and when the rest expires.
    let inventory = run("ls --retention 1h --json").await;
    let images = inventory["repositories"][0]["images"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(images.len(), 2);
    for image in &images {
        assert!(image["expires_at"].is_number(), "{image}");
        if image["digest"] == backup["digest"] {
            assert_eq!(image["in_use_by"][0]["kind"], "cron_job", "{image}");
            assert_eq!(image["in_use_by"][0]["name"], "nightly-backup", "{image}");
        } else {
            assert!(image.get("in_use_by").is_none(), "{image}");
        }
    }
    let text = cli.run(&words("ls"));
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        shown.contains("in use by cron_job ops/nightly-backup"),
        "{shown}"
    );

    // The API refuses: the sweep fails, says why, and deletes nothing.
    k8s.forbid("cronjobs");
    let out = cli.run(&words("sweep --retention 0s"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot tell which images are in use"), "{err}");
    assert!(err.contains("403"), "{err}");

    // Allowed again (a fresh API server with the same CronJob): only the unused image goes.
    let k8s = FakeKubernetes::start().await;
    k8s.write_kubeconfig(&kubeconfig);
    k8s.put(&kube_api::cron_job("ops", "nightly-backup", &backup_ref));
    let swept = run("sweep --retention 0s --grace 0s --json").await;
    assert_eq!(
        swept["deleted"],
        serde_json::json!([report["digest"]]),
        "{swept}"
    );
}
