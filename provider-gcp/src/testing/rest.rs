//! The fake Google: its state, OAuth, and the REST methods of Artifact Registry.

// A handler's error is its answer (a `Response`), returned once per request.
#![allow(clippy::result_large_err)]

use std::collections::{btree_map::Entry, BTreeMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::response::Response;
use mirror_core::kit::provider::Grammar;
use mirror_core::kit::store::http::{credentials::Credentials, RegistryClient};
use mirror_core::testing::control_plane::{json as respond, manifest_size, manifests, rfc3339};
use mirror_core::testing::control_plane::{token_page, FakeRequest, Ledger, OAuthTokens};
use mirror_core::testing::control_plane::{HiddenTags, Operations, PushTimes, Step};
use mirror_core::{Digest, ImageStore};
use serde_json::{json, Value};

use super::{CLIENT_EMAIL, LOCATION, PROJECT};

/// The work an operation does when it completes.
pub(crate) enum Deferred {
    Create(String),
    /// Repository id, package, digest.
    DeleteVersion(String, String, String),
    Nothing,
}

#[derive(Default)]
pub(crate) struct St {
    /// Repositories by id: the resource, and whether it is visible (its creation done).
    pub(crate) repos: BTreeMap<String, (Value, bool)>,
    pub(crate) page_size: usize,
    pub(crate) deleted_versions: Vec<String>,
    pub(crate) package_deletes: Vec<String>,
    pub(crate) patches: Vec<(String, String)>,
    pub(crate) data_patches: usize,
    pub(crate) data_unauthorized: usize,
}

pub(crate) struct Fake {
    pub(crate) registry: RegistryClient,
    /// The REST endpoint and the data proxy, as URLs.
    pub(crate) urls: OnceLock<(String, String)>,
    pub(crate) oauth: OAuthTokens,
    /// The registry tokens of the data proxy.
    pub(crate) registry_tokens: OAuthTokens,
    pub(crate) ops: Operations<Deferred>,
    /// Tags deleted with `tags.delete`.
    pub(crate) hidden: HiddenTags,
    /// Upload times by registry name.
    pub(crate) pushed: PushTimes,
    pub(crate) ledger: Ledger,
    pub(crate) st: Mutex<St>,
}

/// A Google API error.
pub(crate) fn gerr(http: u16, status: &str, message: &str) -> Response {
    let error = json!({"code": http, "message": message, "status": status});
    respond(http, &json!({ "error": error }))
}

fn absent(what: &str) -> Response {
    gerr(
        404,
        "NOT_FOUND",
        &format!("Requested entity was not found: {what}"),
    )
}

fn invalid(message: &str) -> Response {
    gerr(400, "INVALID_ARGUMENT", message)
}

/// `projects/P/locations/L/repositories/ID`, and the registry name of a package of it.
pub(crate) fn names(id: &str, package: &str) -> (String, String) {
    let parent = format!("projects/{PROJECT}/locations/{LOCATION}/repositories/{id}");
    (parent, format!("{PROJECT}/{id}/{package}"))
}

impl Fake {
    pub(crate) fn new(registry_host: &str) -> Self {
        let registry = RegistryClient::new(registry_host, Credentials::Anonymous);
        let st = St {
            page_size: 2,
            ..St::default()
        };
        Fake {
            registry: registry.expect("a client of the registry"),
            urls: OnceLock::new(),
            oauth: OAuthTokens::default(),
            registry_tokens: OAuthTokens::default(),
            ops: Operations::new(&format!("projects/{PROJECT}/locations/{LOCATION}")),
            hidden: HiddenTags::default(),
            pushed: PushTimes::default(),
            ledger: Ledger::default(),
            st: Mutex::new(st),
        }
    }

    pub(crate) fn st(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tags of a registry repository, those removed by `tags.delete` left out.
    pub(crate) async fn tags(&self, name: &str) -> Vec<String> {
        let Ok(store) = self.registry.repository(name) else {
            return Vec::new();
        };
        let tags = store.list_tags().await.unwrap_or_default();
        self.hidden.visible(name, tags)
    }

    /// The digest `reference` names in a registry repository.
    pub(crate) async fn digest(&self, name: &str, reference: &str) -> Option<String> {
        let store = self.registry.repository(name).ok()?;
        let head = store.head_manifest(reference).await.ok()??;
        Some(head.digest.to_string())
    }

    fn visible(&self, id: &str) -> Result<Value, Response> {
        let repo = self.st().repos.get(id).filter(|r| r.1).map(|r| r.0.clone());
        repo.ok_or_else(|| absent(&format!("repository {id}")))
    }
}

/// Checks cleanup policies as the reference describes them.
fn check_policies(policies: &Value) -> Result<(), String> {
    let map = policies
        .as_object()
        .ok_or("cleanupPolicies must be a map")?;
    for (key, p) in map {
        let (c, recent) = (&p["condition"], p.get("mostRecentVersions"));
        let (action, state) = (p["action"].as_str(), c["tagState"].as_str());
        let seconds = |d: &str| {
            let n = c[d].as_str().and_then(|s| s.strip_suffix('s'));
            c[d].is_null() || n.is_some_and(|n| n.parse::<f64>().is_ok_and(|f| f >= 0.0))
        };
        let keep = recent.map(|r| r["keepCount"].as_i64().unwrap_or(0));
        let problem = if p["id"].as_str().is_some_and(|id| id != key) {
            "its id is not its key"
        } else if !matches!(action, Some("DELETE" | "KEEP")) {
            "the action is not DELETE or KEEP"
        } else if c.is_null() == recent.is_none() {
            "not exactly one of condition and mostRecentVersions"
        } else if !matches!(state, None | Some("TAGGED" | "UNTAGGED" | "ANY")) {
            "the tagState is not TAGGED, UNTAGGED or ANY"
        } else if !seconds("olderThan") || !seconds("newerThan") {
            "a duration is not `<seconds>s`"
        } else if keep.is_some_and(|k| k <= 0 || action != Some("KEEP")) {
            "mostRecentVersions needs a positive keepCount and action KEEP"
        } else {
            continue;
        };
        return Err(format!("policy {key}: {problem}"));
    }
    Ok(())
}

const ROUTES: [&str; 9] = [
    "POST projects/*/locations/*/repositories repositories.create",
    "GET projects/*/locations/*/repositories repositories.list",
    "GET projects/*/locations/*/repositories/* repositories.get",
    "PATCH projects/*/locations/*/repositories/* repositories.patch",
    "GET projects/*/locations/*/repositories/*/dockerImages dockerImages.list",
    "DELETE projects/*/locations/*/repositories/*/packages/* packages.delete",
    "DELETE projects/*/locations/*/repositories/*/packages/*/versions/* versions.delete",
    "DELETE projects/*/locations/*/repositories/*/packages/*/tags/* tags.delete",
    "GET projects/*/locations/*/operations/* operations.get",
];

pub(crate) async fn handler(State(fake): State<Arc<Fake>>, req: Request) -> Response {
    let r = FakeRequest::read(req).await;
    if r.path == "/token" {
        let uri = format!("{}/token", fake.urls.get().map_or("", |u| u.0.as_str()));
        return fake
            .oauth
            .grant(&r.body, &uri, CLIENT_EMAIL, crate::credential::SCOPE);
    }
    let Some((method, segs)) = r.route("/v1/", &ROUTES) else {
        return gerr(
            404,
            "NOT_FOUND",
            &format!("no method for {} {}", r.method, r.path),
        );
    };
    // Authentication first, as Google does.
    if !fake.oauth.check(r.bearer(), &format!("rest {method}")) {
        let message =
            "Request had invalid authentication credentials. Expected OAuth 2 access token.";
        return gerr(401, "UNAUTHENTICATED", message);
    }
    if let Some(fault) = fake.ledger.record(method, &r.query, r.json()) {
        return fault;
    }
    if segs[1] != PROJECT {
        let message = format!("Permission denied on resource project {}.", segs[1]);
        return gerr(403, "PERMISSION_DENIED", &message);
    }
    if segs[3] != LOCATION {
        return gerr(404, "NOT_FOUND", &format!("location {} not found", segs[3]));
    }
    let seg = |i: usize| segs.get(i).map_or("", String::as_str);
    let (id, package) = (seg(5), seg(7));
    let result = match method {
        "repositories.create" => create(&fake, &r).await,
        "repositories.list" => {
            let st = fake.st();
            let all = st.repos.values().filter(|r| r.1).map(|r| r.0.clone());
            let page = token_page(all.collect(), &r.params, st.page_size, "repositories");
            Ok(respond(200, &page))
        }
        "repositories.get" => fake.visible(id).map(|repo| respond(200, &repo)),
        "repositories.patch" => patch(&fake, id, &r),
        "dockerImages.list" => docker_images(&fake, id, &r).await,
        "packages.delete" => {
            fake.st().package_deletes.push(format!("{id}/{package}"));
            Ok(respond(
                200,
                &fake.ops.start(Deferred::Nothing, json!({})).1,
            ))
        }
        "versions.delete" => delete_version(&fake, [id, package, seg(9)], &r).await,
        "tags.delete" => delete_tag(&fake, id, package, seg(9)).await,
        _ => Ok(operation(&fake, &segs.join("/")).await),
    };
    result.unwrap_or_else(|e| e)
}

type Answer = Result<Response, Response>;

/// The fields `repositories.patch` updates.
const PATCHABLE: [&str; 4] = [
    "labels",
    "cleanupPolicies",
    "cleanupPolicyDryRun",
    "description",
];

async fn create(fake: &Fake, r: &FakeRequest) -> Answer {
    let id = r.params.get("repositoryId");
    let id = id.ok_or_else(|| invalid("repositoryId is required"))?;
    let grammar = Grammar::dns_label("repository id", 1, 63);
    grammar
        .check(id)
        .map_err(|e| invalid(&format!("Invalid repository id: {e}")))?;
    let mut repo = r.json();
    if repo["format"] != "DOCKER" {
        return Err(invalid("format must be set (DOCKER)"));
    }
    check_policies(repo.get("cleanupPolicies").unwrap_or(&json!({}))).map_err(|e| invalid(&e))?;
    let name = names(id, "").0;
    let now = json!(rfc3339(SystemTime::now()));
    (repo["name"], repo["createTime"], repo["updateTime"]) = (json!(&name), now.clone(), now);
    let mut response = repo.clone();
    response["@type"] = json!("type.googleapis.com/google.devtools.artifactregistry.v1.Repository");
    let vacant = match fake.st().repos.entry(id.clone()) {
        Entry::Vacant(v) => {
            v.insert((repo, false));
            true
        }
        Entry::Occupied(_) => false,
    };
    if !vacant {
        let message = format!("the repository already exists: {name}");
        return Err(gerr(409, "ALREADY_EXISTS", &message));
    }
    Ok(start(fake, Deferred::Create(id.clone()), response).await)
}

/// Starts an operation: its answer, or when operations finish at once its result.
async fn start(fake: &Fake, action: Deferred, response: Value) -> Response {
    let (op, body) = fake.ops.start(action, response);
    match fake.ops.pending_polls() {
        0 => operation(fake, &op).await,
        _ => respond(200, &body),
    }
}

fn patch(fake: &Fake, id: &str, r: &FakeRequest) -> Answer {
    let patch = r.json();
    let mask = r.params.get("updateMask").filter(|m| !m.is_empty());
    let mask = mask.ok_or_else(|| invalid("updateMask is required"))?;
    let mut updated = fake.visible(id)?;
    for field in mask.split(',') {
        if !PATCHABLE.contains(&field) {
            return Err(invalid(&format!("invalid update mask field {field:?}")));
        }
        if field == "cleanupPolicies" {
            check_policies(patch.get(field).unwrap_or(&json!({}))).map_err(|e| invalid(&e))?;
        }
        match patch.get(field) {
            Some(v) => updated[field] = v.clone(),
            None => _ = updated.as_object_mut().map(|o| o.remove(field)),
        }
    }
    updated["updateTime"] = json!(rfc3339(SystemTime::now()));
    let mut st = fake.st();
    st.repos.insert(id.to_string(), (updated.clone(), true));
    st.patches.push((id.to_string(), mask.clone()));
    Ok(respond(200, &updated))
}

/// `dockerImages.list`: the versions of the repository's packages in the registry.
async fn docker_images(fake: &Fake, id: &str, r: &FakeRequest) -> Answer {
    fake.visible(id)?;
    let host = fake
        .urls
        .get()
        .map_or("", |u| u.1.trim_start_matches("http://"));
    let mut entries: Vec<Value> = Vec::new();
    for name in fake.registry.catalog().await.unwrap_or_default() {
        let Some(package) = name.strip_prefix(&format!("{PROJECT}/{id}/")) else {
            continue;
        };
        let (tags, known) = (fake.tags(&name).await, fake.pushed.known(&name));
        let (found, gone) = manifests(&fake.registry, &name, tags, known).await;
        fake.pushed.forget(&name, &gone);
        let (parent, escaped) = (names(id, "").0, package.replace('/', "%2F"));
        for (digest, (m, mut tags)) in found {
            let upload = rfc3339(fake.pushed.seen(&name, &digest));
            tags.sort();
            entries.push(
                json!({"name": format!("{parent}/dockerImages/{escaped}@{digest}"),
                "uri": format!("{host}/{name}@{digest}"), "tags": tags,
                "imageSizeBytes": manifest_size(&m).to_string(), "uploadTime": upload,
                "updateTime": upload, "mediaType": m.media_type}),
            );
        }
    }
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let page = token_page(entries, &r.params, fake.st().page_size, "dockerImages");
    Ok(respond(200, &page))
}

/// `versions.delete` of `[repository id, package, version]`.
async fn delete_version(fake: &Fake, at: [&str; 3], r: &FakeRequest) -> Answer {
    let [id, package, version] = at;
    fake.visible(id)?;
    Digest::parse(version).map_err(|_| invalid(&format!("invalid version {version:?}")))?;
    let name = names(id, package).1;
    if fake.digest(&name, version).await.is_none() {
        return Err(absent(&format!("version {version} of package {package}")));
    }
    if r.params.get("force").map(String::as_str) != Some("true") {
        for tag in fake.tags(&name).await {
            if fake.digest(&name, &tag).await.as_deref() == Some(version) {
                let message =
                    format!("version {version} has tags (such as {tag}); delete it with force");
                return Err(gerr(400, "FAILED_PRECONDITION", &message));
            }
        }
    }
    let action = Deferred::DeleteVersion(id.into(), package.into(), version.into());
    let empty = json!({"@type": "type.googleapis.com/google.protobuf.Empty"});
    Ok(start(fake, action, empty).await)
}

/// `tags.delete`: answers `Empty` (no operation); `NOT_FOUND` for a tag the package lacks.
async fn delete_tag(fake: &Fake, id: &str, package: &str, tag: &str) -> Answer {
    let missing = gerr(404, "NOT_FOUND", &format!("Repository \"{id}\" not found"));
    fake.visible(id).map_err(|_| missing)?;
    let name = names(id, package).1;
    if !fake.tags(&name).await.iter().any(|t| t == tag) {
        return Err(absent(&format!("tag {tag}")));
    }
    fake.hidden.hide(&name, tag);
    Ok(respond(200, &json!({})))
}

/// `operations.get`: pending, or its work done and then done.
async fn operation(fake: &Fake, name: &str) -> Response {
    let action = match fake.ops.poll(name) {
        None => return gerr(404, "NOT_FOUND", &format!("operation {name} not found")),
        Some(Step::Answer(v)) => return respond(200, &v),
        Some(Step::Run(action)) => action,
    };
    let error = match action {
        Deferred::Create(id) => {
            fake.st().repos.entry(id).and_modify(|r| r.1 = true);
            None
        }
        Deferred::DeleteVersion(id, package, digest) => {
            let name = names(&id, &package).1;
            let deleted = match (fake.registry.repository(&name), Digest::parse(&digest)) {
                (Ok(store), Ok(d)) => store.delete_manifest(&d).await,
                _ => Ok(()),
            };
            fake.pushed.forget(&name, std::slice::from_ref(&digest));
            match deleted {
                Ok(()) => {
                    fake.st()
                        .deleted_versions
                        .push(format!("{id}/{package}@{digest}"));
                    None
                }
                Err(e) if e.is_not_found() => Some((5, format!("version {digest} not found"))),
                Err(e) => Some((13, format!("registry: {e}"))),
            }
        }
        Deferred::Nothing => None,
    };
    respond(200, &fake.ops.finish(name, error))
}
