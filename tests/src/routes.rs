//! Pieces of hand-written hostile registries (axum routes) that several attacks share.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};

/// `401` with a Basic challenge (realm `r`) when the request carries no `Authorization`.
pub fn basic_challenge(headers: &HeaderMap) -> Option<Response> {
    (!headers.contains_key("authorization")).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"r\"")],
        )
            .into_response()
    })
}

/// `GET /v2/` of a registry demanding basic auth: `200` with credentials, else the challenge.
pub fn v2_basic_auth() -> MethodRouter {
    get(|headers: HeaderMap| async move {
        basic_challenge(&headers).unwrap_or_else(|| StatusCode::OK.into_response())
    })
}
