//! The CLI scenario every provider instantiates: `deploy` (Service and Cluster mode), `ls`,
//! `sweep`, human output and the configuration errors of the `mirror` CLI against the
//! provider's emulator. A provider writes a [`CliHarness`] (how its CLI is configured, how
//! its repositories are named, what its sweep and its retention document look like);
//! [`deploy_ls_and_sweep`] runs the rest.

use std::path::PathBuf;
use std::process::Output;

use mirror_core::testing::TestImage;
use serde_json::Value;

use crate::cli::{build_cli, Cli};

/// A provider's CLI on its emulator.
#[allow(async_fn_in_trait)]
pub trait CliHarness {
    /// The CLI configured for the emulator (environment, registry arguments, cluster `prod`).
    fn cli(&self, bin: PathBuf) -> Cli;

    /// The data-plane host pull references name.
    fn host(&self) -> String;

    /// Checks what `ls` says the registry is.
    fn check_registry(&self, shown: &Value) {
        assert_eq!(shown, &Value::String(self.host()));
    }

    /// Checks the repository of service `api` (a `deploy --json`).
    fn check_service(&self, repository: &str, deployment: &Value);

    /// Checks a Cluster-mode deploy with a retention of 36 h (a `deploy --json`); the
    /// cluster repository.
    async fn check_cluster(&self, deployment: &Value) -> String;

    /// Runs and checks the sweeps of the provider, the cluster image being `image`.
    async fn sweep(&self, cli: &Cli, cluster: &str, image: &TestImage);

    /// A command missing a required setting, and what its error must name.
    fn missing_setting(&self, cli: &Cli) -> (Output, &'static str);

    /// What `--registry-creds` is told, when the provider's data plane takes other
    /// credentials.
    fn registry_creds_hint(&self) -> Option<&'static str> {
        None
    }
}

/// See the module docs.
pub async fn deploy_ls_and_sweep<H: CliHarness>(h: &H) {
    let bin = tokio::task::spawn_blocking(build_cli)
        .await
        .expect("build task");
    let cli = h.cli(bin);
    let img = TestImage::builder().seed(77).layers([4000, 9000]).build();
    let source = cli.layout_source(&img, "app", "1.0");
    let run = |args: Vec<&str>| cli.json_async(args.iter().map(|a| a.to_string()).collect());

    let d = run(vec!["deploy", "--service", "api", "--json", &source]).await;
    assert_eq!(d["action"], "copied", "{d}");
    let repo = d["repository"].as_str().unwrap_or_default().to_string();
    h.check_service(&repo, &d);
    let pinned = format!("{}/{repo}@{}", h.host(), img.digest());
    assert_eq!(d["pull_reference"], pinned);
    let again = run(vec!["deploy", "--service", "api", "--json", &source]).await;
    assert_eq!(again["action"], "skipped", "{again}");

    let cluster = ["deploy", "--service", "api", "--mode", "cluster"];
    let c = run([&cluster[..], &["--retention", "36h", "--json", &source]].concat()).await;
    let cluster_repo = h.check_cluster(&c).await;

    let ls = run(vec!["ls", "--json"]).await;
    let listed = ls["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("{ls}"));
    let mut repos: Vec<&str> = listed
        .iter()
        .filter_map(|r| r["repository"].as_str())
        .collect();
    repos.sort();
    let mut expected = vec![cluster_repo.as_str(), repo.as_str()];
    expected.sort();
    assert_eq!(repos, expected, "{ls}");
    h.check_registry(&ls["registry"]);

    h.sweep(&cli, &cluster_repo, &img).await;

    // Human output names the pinned reference.
    let out = cli.run(&["deploy", "--service", "api", &source]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&img.digest().to_string()), "{text}");

    // Without a required setting the CLI says what to set.
    let (out, named) = h.missing_setting(&cli);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(named), "{err}");
    // The data plane takes other credentials than --registry-creds.
    if let Some(hint) = h.registry_creds_hint() {
        let out = cli.run(&["ls", "--registry-creds", "nologin:x"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(hint));
    }
}
