//! Shapes of control-plane calls every provider writes, whatever its API (an SDK or REST):
//! an answer of one [`Kind`] meaning "absent" or "already there" ([`Absent::absent_if`]),
//! a listing that follows its page tokens to the end ([`all_pages`]), and deletions sent in
//! batches whose answer lists per-item failures ([`delete_in_batches`], judged by
//! [`Deletion::tolerates`]); and the cause worth telling of a failure ([`innermost_cause`]).

use std::future::Future;

use crate::digest::Digest;
use crate::provider::cloud::Deletion;
use crate::provider::error::{ControlPlaneError, Kind};

/// An answer that may be an error of a kind that only means "absent" (a policy not set, a
/// resource that exists already).
pub trait Absent<T> {
    /// `Ok(Some(value))` for an answer, `Ok(None)` for an error of `kind`, else the error.
    fn absent_if(self, kind: Kind) -> Result<Option<T>, ControlPlaneError>;
}

impl<T> Absent<T> for Result<T, ControlPlaneError> {
    fn absent_if(self, kind: Kind) -> Result<Option<T>, ControlPlaneError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == kind => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Every item of a paged listing: `page` is called with the token of the page to read
/// (`None` first) and returns its items and the next token; a missing or empty token ends it.
pub async fn all_pages<T, E, F, Fut>(mut page: F) -> Result<Vec<T>, E>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), E>>,
{
    let (mut out, mut token) = (Vec::new(), None);
    loop {
        let (items, next) = page(token.take()).await?;
        out.extend(items);
        match next {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// Deletes `digests` for `why` in batches of at most `limit`: `batch` sends one and returns
/// its per-item failures (an error of the whole call is returned as it is). The first
/// failure `why` does not [tolerate](Deletion::tolerates) is the error.
pub async fn delete_in_batches<F, Fut>(
    digests: &[Digest],
    limit: usize,
    why: Deletion,
    mut batch: F,
) -> Result<(), ControlPlaneError>
where
    F: FnMut(&[Digest]) -> Fut,
    Fut: Future<Output = Result<Vec<ControlPlaneError>, ControlPlaneError>>,
{
    for chunk in digests.chunks(limit.max(1)) {
        let failures = batch(chunk).await?;
        if let Some(e) = failures.into_iter().find(|e| !why.tolerates(e.kind())) {
            return Err(e);
        }
    }
    Ok(())
}

/// What to tell a person about a failed call whose error wraps one cause several times (SDK
/// credential chains do, each layer with its `Debug` form): the innermost non-empty message,
/// at most `max` characters.
pub fn innermost_cause(err: &(dyn std::error::Error + 'static), max: usize) -> String {
    let mut cause = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !text.trim().is_empty() {
            cause = text;
        }
        next = e.source();
    }
    cause.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::error::Origin;

    fn err(kind: Kind) -> ControlPlaneError {
        Origin::new("test", "h").error("Op", "r", kind, "")
    }

    #[test]
    fn absent_answers_are_none_and_other_errors_stay() {
        let found: Result<u8, _> = Ok(1);
        assert_eq!(found.absent_if(Kind::AlreadyExists).unwrap(), Some(1));
        let absent: Result<u8, _> = Err(err(Kind::NotFound("policy")));
        assert_eq!(absent.absent_if(Kind::NotFound("policy")).unwrap(), None);
        let other: Result<u8, _> = Err(err(Kind::NotFound("repository")));
        let e = other.absent_if(Kind::NotFound("policy")).unwrap_err();
        assert_eq!(e.kind(), Kind::NotFound("repository"));
    }

    #[tokio::test]
    async fn pages_are_followed_until_the_token_ends() {
        let mut asked = Vec::new();
        let items = all_pages(|token: Option<String>| {
            asked.push(token.clone());
            let next = match token.as_deref() {
                None => Some("a".to_string()),
                Some("a") => Some("b".to_string()),
                _ => Some(String::new()),
            };
            async move { Ok::<_, ControlPlaneError>((vec![token.unwrap_or_default()], next)) }
        })
        .await
        .unwrap();
        assert_eq!(items, ["", "a", "b"]);
        assert_eq!(asked, [None, Some("a".into()), Some("b".into())]);
        let failed = all_pages(|_| async { Err::<(Vec<u8>, _), _>(err(Kind::Denied)) }).await;
        assert_eq!(failed.unwrap_err().kind(), Kind::Denied);
    }

    #[tokio::test]
    async fn batches_are_bounded_and_failures_judged_by_why() {
        let digests: Vec<Digest> = (0..5u8).map(|i| Digest::sha256_of(&[i])).collect();
        let mut sizes = Vec::new();
        let ok = delete_in_batches(&digests, 2, Deletion::Referrer, |chunk| {
            sizes.push(chunk.len());
            async { Ok(vec![err(Kind::NotFound("manifest"))]) }
        })
        .await;
        assert!(ok.is_ok(), "absent referrers are fine");
        assert_eq!(sizes, [2, 2, 1]);
        let refused = delete_in_batches(&digests, 100, Deletion::Image, |_| async {
            Ok(vec![err(Kind::NotFound("manifest"))])
        })
        .await;
        assert_eq!(refused.unwrap_err().kind(), Kind::NotFound("manifest"));
        let child = delete_in_batches(&digests, 100, Deletion::Child, |_| async {
            Ok(vec![err(Kind::Conflict), err(Kind::Denied)])
        })
        .await;
        assert_eq!(child.unwrap_err().kind(), Kind::Denied);
        let whole = delete_in_batches(&digests, 100, Deletion::Child, |_| async {
            Err(err(Kind::Unavailable))
        })
        .await;
        assert_eq!(whole.unwrap_err().kind(), Kind::Unavailable);
    }

    #[test]
    fn the_innermost_cause_is_told() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<Box<Layer>>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|l| l as _)
            }
        }
        let chain = Layer(
            "outer",
            Some(Box::new(Layer(
                "no profile",
                Some(Box::new(Layer(" ", None))),
            ))),
        );
        assert_eq!(innermost_cause(&chain, 200), "no profile");
        assert_eq!(innermost_cause(&chain, 2), "no");
        assert_eq!(innermost_cause(&Layer("alone", None), 200), "alone");
    }
}
