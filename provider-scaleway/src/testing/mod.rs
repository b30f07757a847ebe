//! Test infrastructure (feature `testing`, not product code): an in-process fake of the Scaleway Container
//! Registry API v1, written from Scaleway's public API reference, in front of a real CNCF
//! distribution registry that plays Scaleway's data plane.
//!
//! ```text
//!  Scaleway (API client) ──► FakeScaleway (axum, 127.0.0.1)      namespaces: in memory
//!                                 │ images, tags: read from ──┐   images & tags: the registry
//!                                 │ DeleteTag/DeleteImage ────┤   (catalog, tags/list, HEAD,
//!                                 ▼                           │    DELETE manifest by digest)
//!  Scaleway (data plane) ───────► docker-registry ◄───────────┘   basic auth nologin:<secret>
//! ```
//!
//! What the fake does, and why:
//!
//! - **Namespaces** live in memory: `GET`/`POST .../namespaces` (filters `project_id`, `name`,
//!   `organization_id`; ordering; pagination) and `GET`/`PATCH .../namespaces/<id>`. Names are
//!   unique across every project (Scaleway's names are unique per region across all
//!   customers); [`FakeScaleway::add_foreign_namespace`] plants one owned by another customer.
//!   A new namespace starts in a configurable status (`unknown` by default, the status
//!   Scaleway reports before `ready`) and turns `ready` after a configurable number of
//!   `GET .../namespaces/<id>` reads, which is how tests see that the client waits.
//! - **Images and tags** are not stored: every call reads the real registry through the
//!   distribution API (`_catalog`, `tags/list`, manifest `HEAD` for the digest), so they
//!   always reflect what was pushed. A repository `<ns>/<image>` is a Scaleway image when
//!   the fake knows namespace `<ns>`. Ids are derived from names (stable across calls), and
//!   `created_at` is when the fake first saw the image or tag.
//! - **Deletions** act on the registry: `DELETE .../tags/<id>` deletes the tag's manifest by
//!   digest (which removes every tag naming it, hence `force=true` when the digest has
//!   other tags, as Scaleway requires), `DELETE .../images/<id>` deletes every manifest of
//!   the image.
//! - **Auth**: `X-Auth-Token` must be the secret key (`401 denied_authentication`
//!   otherwise); namespaces of projects the key may not use answer `403
//!   permissions_denied`. The data plane is the registry itself with htpasswd basic auth
//!   `nologin:<secret>`, as Scaleway's is.
//! - **Pagination** follows the reference (`page` from 1, `page_size` default 20, at most
//!   100, `total_count`); [`FakeScaleway::set_max_page_size`] makes the server return fewer
//!   items per page than asked, so clients must follow `total_count`.
//! - **Faults**: [`FakeScaleway::inject`] answers the next calls of an operation with a given
//!   status and body (401, 403, 404, 409, 429 with `Retry-After`, 5xx).
//!
//! Known differences from Scaleway: pushes into a namespace the fake does not know are
//! accepted by the registry (Scaleway refuses them), they are just not listed; image sizes
//! are 0; namespace deletion is not implemented.

mod api;
mod emulator;
mod state;

pub use emulator::FakeScaleway;
pub use state::Call;

#[allow(unused_imports)]
use self::{api::*, emulator::*, state::*};

/// The secret key the fake accepts (and the data-plane password).
pub const SECRET: &str = "5c1e0b7a-3e2d-4f8b-9a61-0d4c2b1e7f90";
/// The project of the tests.
pub const PROJECT: &str = "4b0c6bd4-5a39-4d48-8c1e-6a2f2e4e1b11";
/// The organization of the tests.
pub const ORGANIZATION: &str = "7e1d2c3b-4a59-4f68-8e7d-6c5b4a392817";
/// Another customer's project.
pub const FOREIGN_PROJECT: &str = "9d3f0a57-0e36-4c5e-8f3c-2d1b0a9e8f7c";
/// The region of the tests.
pub const REGION: &str = "fr-par";
