//! A retention document kept beside a repository (ECR's lifecycle policy; any registry whose
//! API reads, writes and removes a policy document of a repository): the provider writes the
//! three calls ([`RetentionCalls`]) and the document; the kit reconciles ([`reconcile`]):
//! written when the stored one says something else (compared as JSON, since a registry may
//! store it reformatted), removed when retention is unset and the stored one is the
//! library's ([`all_marked`]: every rule carries its mark), never touched when it is a
//! person's.

use async_trait::async_trait;
use serde_json::Value;

use crate::provider::error::ControlPlaneError;

/// The calls that keep a repository's retention document.
///
/// # Contract
///
/// `read` returns `Ok(None)` when the repository has no document; `remove` succeeds when
/// there is none. A repository that is not visible yet fails with the provider's not-found
/// error (callers retry it).
#[async_trait]
pub trait RetentionCalls: Send + Sync {
    /// The stored document's text.
    async fn read(&self, repository: &str) -> Result<Option<String>, ControlPlaneError>;
    /// Stores `text`, replacing any document.
    async fn write(&self, repository: &str, text: &str) -> Result<(), ControlPlaneError>;
    /// Removes the document.
    async fn remove(&self, repository: &str) -> Result<(), ControlPlaneError>;
}

/// Makes `repository`'s document `desired` (`None`: no retention, so a stored document that
/// is `ours` goes). A repository just `created` has none: nothing is read.
pub async fn reconcile<C: RetentionCalls + ?Sized>(
    calls: &C,
    repository: &str,
    desired: Option<String>,
    created: bool,
    ours: impl Fn(&str) -> bool,
) -> Result<(), ControlPlaneError> {
    let current = match created {
        true => None,
        false => calls.read(repository).await?,
    };
    match desired {
        Some(d) if !same_json(current.as_deref(), &d) => calls.write(repository, &d).await,
        None if current.as_deref().is_some_and(ours) => calls.remove(repository).await,
        _ => Ok(()),
    }
}

/// Whether `current` (`None`: no document) says the same as `desired`, both read as JSON.
pub fn same_json(current: Option<&str>, desired: &str) -> bool {
    let read = |t: &str| serde_json::from_str::<Value>(t).ok();
    current
        .and_then(read)
        .is_some_and(|c| Some(c) == read(desired))
}

/// Whether `text` is JSON whose array at `pointer` (`/rules`) is not empty and each of its
/// entries has a string `field` starting with `mark`.
pub fn all_marked(text: &str, pointer: &str, field: &str, mark: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let marked = |r: &Value| {
        r.get(field)
            .and_then(Value::as_str)
            .is_some_and(|d| d.starts_with(mark))
    };
    match v.pointer(pointer).and_then(Value::as_array) {
        Some(rules) if !rules.is_empty() => rules.iter().all(marked),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::error::{Kind, Origin};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Stored(Mutex<(Option<String>, Vec<&'static str>)>);

    #[async_trait]
    impl RetentionCalls for Stored {
        async fn read(&self, _: &str) -> Result<Option<String>, ControlPlaneError> {
            let mut s = self.0.lock().unwrap();
            s.1.push("read");
            Ok(s.0.clone())
        }
        async fn write(&self, _: &str, text: &str) -> Result<(), ControlPlaneError> {
            let mut s = self.0.lock().unwrap();
            s.1.push("write");
            s.0 = Some(text.to_string());
            Ok(())
        }
        async fn remove(&self, r: &str) -> Result<(), ControlPlaneError> {
            let mut s = self.0.lock().unwrap();
            s.1.push("remove");
            match s.0.take() {
                Some(_) => Ok(()),
                None => Err(Origin::new("t", "h").error("Remove", r, Kind::Other, "")),
            }
        }
    }

    fn ours(t: &str) -> bool {
        all_marked(t, "/rules", "description", "lib")
    }

    #[tokio::test]
    async fn documents_are_written_when_different_and_removed_when_ours() {
        let calls = Stored::default();
        let doc = r#"{"rules":[{"description":"lib: 7 days"}]}"#;
        reconcile(&calls, "r", Some(doc.into()), true, ours)
            .await
            .unwrap();
        assert_eq!(
            calls.0.lock().unwrap().1,
            ["write"],
            "created: nothing read"
        );
        let pretty = "{\n \"rules\": [ {\"description\": \"lib: 7 days\"} ]\n}";
        reconcile(&calls, "r", Some(pretty.into()), false, ours)
            .await
            .unwrap();
        assert_eq!(
            calls.0.lock().unwrap().1,
            ["write", "read"],
            "the same as JSON"
        );
        reconcile(&calls, "r", None, false, ours).await.unwrap();
        assert_eq!(calls.0.lock().unwrap().1.last(), Some(&"remove"));
        let person = r#"{"rules":[{"description":"team rule"}]}"#;
        calls.0.lock().unwrap().0 = Some(person.into());
        reconcile(&calls, "r", None, false, ours).await.unwrap();
        assert_eq!(
            calls.0.lock().unwrap().0.as_deref(),
            Some(person),
            "never removed"
        );
    }

    #[test]
    fn comparisons_and_marks() {
        assert!(same_json(Some(r#"{"a": [1, 2]}"#), r#"{"a":[1,2]}"#));
        assert!(!same_json(Some(r#"{"a":[2,1]}"#), r#"{"a":[1,2]}"#));
        assert!(!same_json(None, "{}"));
        assert!(!same_json(Some("not json"), "{}"));
        assert!(ours(
            r#"{"rules":[{"description":"lib a"},{"description":"lib b"}]}"#
        ));
        assert!(!ours(
            r#"{"rules":[{"description":"lib a"},{"description":"x"}]}"#
        ));
        assert!(!ours(r#"{"rules":[{"x":"lib"}]}"#));
        assert!(!ours(r#"{"rules":[]}"#));
        assert!(!ours("nope"));
    }
}
