//! The `mirror` example CLI with `--registry gar://…` against the Artifact Registry emulator:
//! the CLI scenario of `tests::cli_suite`, configured through `MIRROR_GAR_*` variables and
//! `-o KEY=VALUE` options, with a temporary `HOME` and no other environment.

use provider_gcp::testing as support;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, SystemTime};

use mirror_core::testing::TestImage;
use serde_json::Value;
use support::{FakeGar, LOCATION, PROJECT};
use tests::cli::Cli;
use tests::cli_suite::{deploy_ls_and_sweep, CliHarness};

struct Gcp(FakeGar);

impl CliHarness for Gcp {
    fn cli(&self, bin: PathBuf) -> Cli {
        let endpoint = self.0.endpoint();
        let registry = format!("gar://{}", self.0.docker_host());
        let location = format!("location={LOCATION}");
        let key = format!("credentials_file={}", self.0.key_file().display());
        let env = [
            ("MIRROR_GAR_ENDPOINT", endpoint.as_str()),
            ("MIRROR_GAR_PROJECT", PROJECT),
        ];
        let args = [
            "--registry",
            &registry,
            "-o",
            &location,
            "-o",
            &key,
            "--cluster",
            "prod",
        ];
        Cli::new(bin, &env, &args)
    }

    fn host(&self) -> String {
        self.0.docker_host()
    }

    fn check_service(&self, repo: &str, d: &Value) {
        let prefix = format!("{PROJECT}/mirror-prod-svc-api-");
        assert!(repo.starts_with(&prefix), "{d}");
        assert!(repo.ends_with("/image"), "{d}");
    }

    async fn check_cluster(&self, c: &Value) -> String {
        let cluster_repo = c["repository"].as_str().unwrap_or_default().to_string();
        let prefix = format!("{PROJECT}/mirror-prod-mirror-");
        assert!(cluster_repo.starts_with(&prefix), "{c}");
        let id = cluster_repo.split('/').nth(1).unwrap_or_default();
        let policies = &self.0.repository(id).unwrap()["cleanupPolicies"];
        assert_eq!(
            policies["mirror-core-retention"]["condition"]["olderThan"],
            "129600s"
        );
        cluster_repo
    }

    /// The cluster image is two days old: a sweep with one day of retention deletes it.
    async fn sweep(&self, cli: &Cli, cluster_repo: &str, img: &TestImage) {
        let id = cluster_repo
            .split('/')
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let old = SystemTime::now() - Duration::from_secs(2 * 86_400);
        self.0
            .set_upload_time(&id, "image", &img.digest().to_string(), old);
        let run = |args: &[&str]| cli.json_async(args.iter().map(|a| a.to_string()).collect());
        let dry = run(&["sweep", "--retention", "1d", "--dry-run", "--json"]).await;
        assert_eq!(dry["dry_run"], true, "{dry}");
        assert_eq!(
            dry["plans"][0]["delete"].as_array().map(Vec::len),
            Some(1),
            "{dry}"
        );
        assert!(self.0.deleted_versions().is_empty());
        let sweep = run(&["sweep", "--retention", "1d", "--json"]).await;
        assert_eq!(
            sweep["deleted"].as_array().map(Vec::len),
            Some(1),
            "{sweep}"
        );
        let deleted = vec![format!("{id}/image@{}", img.digest())];
        assert_eq!(self.0.deleted_versions(), deleted);
        assert!(self.0.package_deletes().is_empty());
    }

    /// Without a location the CLI says what to set, before looking for credentials.
    fn missing_setting(&self, cli: &Cli) -> (Output, &'static str) {
        let args = ["ls", "--registry", "gar://", "--cluster", "prod"];
        (
            cli.command().args(args).output().unwrap(),
            "MIRROR_GAR_LOCATION",
        )
    }

    fn registry_creds_hint(&self) -> Option<&'static str> {
        Some("oauth2accesstoken")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_ls_and_sweep_with_provider_gcp() {
    deploy_ls_and_sweep(&Gcp(FakeGar::start().await)).await;
}
