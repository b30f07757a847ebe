//! What a warm deploy costs, per provider: a deployer process that starts fresh (a new
//! registry client and `Mirror`) deploys an image that is already mirrored. Counted on the
//! emulators (control-plane calls by operation, OAuth token requests) and on the real registry
//! behind them (data-plane requests from its access log). The warm deploy must make no
//! control-plane call but the token fetch, and one manifest HEAD on the mirror.
//!
//! `cargo test -p tests --test suite -- warm_requests:: --nocapture` prints the table (bench/README.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{Action, GenericRegistry, Mirror, Registry, Source};

fn source(dir: &Path) -> Source {
    let path = dir.join("app");
    TestImage::builder()
        .seed(42)
        .layers([4000, 9000])
        .build()
        .write_layout(&path, "1.0")
        .unwrap();
    Source::parse(&format!("oci:{}:1.0", path.display())).unwrap()
}

fn delta(
    after: &BTreeMap<String, usize>,
    before: &BTreeMap<String, usize>,
) -> BTreeMap<String, usize> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

struct Row {
    provider: &'static str,
    control: BTreeMap<String, usize>,
    data: Vec<String>,
}

fn print(rows: &[Row]) {
    println!(
        "| provider | control-plane calls of a warm deploy (fresh process) | data-plane requests |"
    );
    println!("|---|---|---|");
    for r in rows {
        let control = if r.control.is_empty() {
            "none".to_string()
        } else {
            r.control
                .iter()
                .map(|(k, v)| format!("{k} ×{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| {} | {control} | {} ({}) |",
            r.provider,
            r.data.len(),
            r.data.join(", ")
        );
    }
}

async fn warm(registry: Arc<dyn Registry>, src: &Source) -> Action {
    Mirror::builder(registry, "prod")
        .build()
        .unwrap()
        .mirror("api", src)
        .await
        .unwrap()
        .action
}

fn heads_only(row: &Row) {
    let heads: Vec<&String> = row.data.iter().filter(|r| r.starts_with("HEAD ")).collect();
    assert_eq!(
        heads.len(),
        1,
        "{}: one manifest HEAD: {:?}",
        row.provider,
        row.data
    );
    assert!(
        row.data
            .iter()
            .all(|r| r.starts_with("HEAD ") || r.starts_with("GET /v2/")),
        "{}: nothing but the HEAD (and the auth ping): {:?}",
        row.provider,
        row.data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_deploy_costs_the_token_and_one_head_on_every_provider() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let mut rows = Vec::new();

    // Generic distribution registry.
    {
        let reg = TestRegistry::start();
        let open = || -> Arc<dyn Registry> {
            Arc::new(GenericRegistry::new(
                RegistryClient::new(&reg.host(), Credentials::Anonymous).unwrap(),
            ))
        };
        assert_eq!(warm(open(), &src).await, Action::Copied);
        let before = tests::access_lines(&reg).len();
        assert_eq!(warm(open(), &src).await, Action::Skipped);
        let row = Row {
            provider: "distribution",
            control: BTreeMap::new(),
            data: tests::access_lines(&reg)[before..].to_vec(),
        };
        // Anonymous: no `GET /v2/` ping before the HEAD.
        assert_eq!(row.data.len(), 1, "{:?}", row.data);
        rows.push(row);
    }

    // AWS ECR (moto + the real registry).
    {
        let emu = provider_aws::testing::EcrEmulator::start().await;
        assert_eq!(warm(Arc::new(emu.ecr().await), &src).await, Action::Copied);
        let calls = emu.all_calls();
        let before = tests::access_lines(emu.registry()).len();
        assert_eq!(warm(Arc::new(emu.ecr().await), &src).await, Action::Skipped);
        let row = Row {
            provider: "ECR (moto)",
            control: delta(&emu.all_calls(), &calls),
            data: tests::access_lines(emu.registry())[before..].to_vec(),
        };
        rows.push(row);
    }

    // GCP Artifact Registry (the REST and OAuth fake + the real registry).
    {
        let fake = provider_gcp::testing::FakeGar::start().await;
        assert_eq!(warm(Arc::new(fake.gar().await), &src).await, Action::Copied);
        let calls = fake.all_calls();
        let tokens = fake.oauth().hits();
        let before = tests::access_lines(fake.registry()).len();
        assert_eq!(
            warm(Arc::new(fake.gar().await), &src).await,
            Action::Skipped
        );
        let mut control = delta(&fake.all_calls(), &calls);
        let oauth = fake.oauth().hits() - tokens;
        if oauth > 0 {
            control.insert("oauth token".into(), oauth);
        }
        let row = Row {
            provider: "Artifact Registry (fake)",
            control,
            data: tests::access_lines(fake.registry())[before..].to_vec(),
        };
        rows.push(row);
    }

    // Scaleway (the registry API fake + the real registry).
    {
        let fake = provider_scaleway::testing::FakeScaleway::start().await;
        assert_eq!(warm(Arc::new(fake.scaleway()), &src).await, Action::Copied);
        let calls = fake.call_log().len();
        let before = tests::access_lines(fake.registry()).len();
        assert_eq!(warm(Arc::new(fake.scaleway()), &src).await, Action::Skipped);
        let mut control = BTreeMap::new();
        for c in &fake.call_log()[calls..] {
            *control.entry(c.operation.clone()).or_insert(0) += 1;
        }
        let row = Row {
            provider: "Scaleway (fake)",
            control,
            data: tests::access_lines(fake.registry())[before..].to_vec(),
        };
        rows.push(row);
    }
    print(&rows);
    for row in &rows {
        assert!(
            row.control
                .keys()
                .all(|k| k == "GetAuthorizationToken" || k == "oauth token"),
            "{}: no control-plane call but the token: {:?}",
            row.provider,
            row.control
        );
        assert!(row.control.values().all(|n| *n <= 1), "{:?}", row.control);
        heads_only(row);
    }
}
