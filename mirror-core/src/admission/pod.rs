//! The parts of a Pod an admission reads and writes: its images (with the JSON pointer of
//! each), the opt-out, the pull secrets it names; and the JSON patch that rewrites it.

use std::collections::HashMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::config::OPT_OUT;
use super::report::ContainerKind;

/// One container's image and where it is in the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodImage {
    pub kind: ContainerKind,
    /// The container's position in its list.
    pub index: usize,
    pub container: String,
    pub image: String,
}

impl PodImage {
    /// `/spec/<list>/<index>/image`.
    pub fn pointer(&self) -> PointerBuf {
        PointerBuf::from_tokens([
            "spec".to_string(),
            self.kind.field().to_string(),
            self.index.to_string(),
            "image".to_string(),
        ])
    }
}

/// Every container's image: containers, init containers, ephemeral containers (those
/// without an image are left out: the API server refuses them anyway).
pub(crate) fn images(pod: &Pod) -> Vec<PodImage> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |kind, index, container: &str, image: Option<&String>| {
        if let Some(image) = image.filter(|i| !i.trim().is_empty()) {
            out.push(PodImage {
                kind,
                index,
                container: container.to_string(),
                image: image.clone(),
            });
        }
    };
    for (i, c) in spec.containers.iter().enumerate() {
        push(ContainerKind::Container, i, &c.name, c.image.as_ref());
    }
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        push(ContainerKind::InitContainer, i, &c.name, c.image.as_ref());
    }
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        push(
            ContainerKind::EphemeralContainer,
            i,
            &c.name,
            c.image.as_ref(),
        );
    }
    out
}

/// The images an update sets: those of containers that `old` does not have, or has with
/// another image. An update that changes nothing else (labels, an added ephemeral
/// container) must not restart containers by rewriting their images.
pub(crate) fn changed_images(pod: &Pod, old: Option<&Pod>) -> Vec<PodImage> {
    let Some(old) = old else {
        return images(pod);
    };
    let before: HashMap<(ContainerKind, String), String> = images(old)
        .into_iter()
        .map(|i| ((i.kind, i.container), i.image))
        .collect();
    images(pod)
        .into_iter()
        .filter(|i| before.get(&(i.kind, i.container.clone())) != Some(&i.image))
        .collect()
}

/// Whether the pod opts out ([`OPT_OUT`] label or annotation set to `true`).
pub(crate) fn opted_out(pod: &Pod) -> bool {
    let meta = &pod.metadata;
    [&meta.labels, &meta.annotations]
        .into_iter()
        .flatten()
        .filter_map(|m| m.get(OPT_OUT))
        .any(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The pod's name, else its `generateName` prefix (a pod being created by a controller has
/// no name yet), else the request's.
pub(crate) fn display_name(pod: &Pod, request_name: &str) -> String {
    pod.metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| pod.metadata.generate_name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| request_name.to_string())
}

/// The names of the pull secrets the pod lists.
pub(crate) fn pull_secret_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The pod's service account (`default` when it names none).
pub(crate) fn service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.service_account_name
                .clone()
                .or_else(|| s.service_account.clone())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// The patch: each image replaced by its pinned mirror reference, and `pull_secret` added
/// to `imagePullSecrets` unless the pod lists it already.
pub(crate) fn patch(pod: &Pod, rewrites: &[(&PodImage, &str)], pull_secret: Option<&str>) -> Patch {
    let mut ops: Vec<PatchOperation> = rewrites
        .iter()
        .map(|(image, pinned)| {
            PatchOperation::Replace(ReplaceOperation {
                path: image.pointer(),
                value: Value::String((*pinned).to_string()),
            })
        })
        .collect();
    if let Some(name) = pull_secret {
        let listed = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref());
        match listed {
            None => ops.push(PatchOperation::Add(AddOperation {
                path: PointerBuf::from_tokens(["spec", "imagePullSecrets"]),
                value: json!([{ "name": name }]),
            })),
            Some(list) if !list.iter().any(|r| r.name == name) => {
                ops.push(PatchOperation::Add(AddOperation {
                    path: PointerBuf::from_tokens(["spec", "imagePullSecrets", "-"]),
                    value: json!({ "name": name }),
                }))
            }
            Some(_) => {}
        }
    }
    Patch(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, EphemeralContainer, LocalObjectReference, PodSpec,
    };

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    fn pod() -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![container("app", "nginx:1"), container("side", "busybox")],
                init_containers: Some(vec![container("init", "alpine:3")]),
                ephemeral_containers: Some(vec![EphemeralContainer {
                    name: "debug".into(),
                    image: Some("busybox@sha256:00".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn every_list_is_read_with_its_pointer() {
        let found = images(&pod());
        let pointers: Vec<String> = found.iter().map(|i| i.pointer().to_string()).collect();
        assert_eq!(
            pointers,
            [
                "/spec/containers/0/image",
                "/spec/containers/1/image",
                "/spec/initContainers/0/image",
                "/spec/ephemeralContainers/0/image"
            ]
        );
        assert_eq!(found[2].container, "init");
        assert_eq!(found[3].image, "busybox@sha256:00");
    }

    #[test]
    fn an_update_rewrites_only_what_it_changes() {
        let old = pod();
        let mut new = pod();
        new.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(
            changed_images(&new, Some(&old)).is_empty(),
            "a label change"
        );
        if let Some(spec) = new.spec.as_mut() {
            spec.containers[1].image = Some("busybox:1.36".into());
            spec.ephemeral_containers
                .get_or_insert_with(Vec::new)
                .push(EphemeralContainer {
                    name: "debug2".into(),
                    image: Some("alpine".into()),
                    ..Default::default()
                });
        }
        let changed: Vec<String> = changed_images(&new, Some(&old))
            .into_iter()
            .map(|i| i.container)
            .collect();
        assert_eq!(changed, ["side", "debug2"]);
    }

    #[test]
    fn opt_out_by_label_or_annotation() {
        let mut p = pod();
        assert!(!opted_out(&p));
        p.metadata.annotations = Some([(OPT_OUT.to_string(), "True".to_string())].into());
        assert!(opted_out(&p));
        p.metadata.annotations = None;
        p.metadata.labels = Some([(OPT_OUT.to_string(), "false".to_string())].into());
        assert!(!opted_out(&p));
        p.metadata.labels = Some([(OPT_OUT.to_string(), "true".to_string())].into());
        assert!(opted_out(&p));
    }

    #[test]
    fn the_patch_replaces_images_and_adds_the_pull_secret_once() {
        let p = pod();
        let found = images(&p);
        let patch = patch(&p, &[(&found[0], "m/x@sha256:1")], Some("mirror-pull"));
        let text = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            text,
            json!([
                {"op": "replace", "path": "/spec/containers/0/image", "value": "m/x@sha256:1"},
                {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "mirror-pull"}]}
            ])
        );
        let mut listed = pod();
        if let Some(spec) = listed.spec.as_mut() {
            spec.image_pull_secrets = Some(vec![LocalObjectReference {
                name: "other".into(),
            }]);
        }
        let text = serde_json::to_value(super::patch(&listed, &[], Some("mirror-pull"))).unwrap();
        assert_eq!(
            text,
            json!([{"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": "mirror-pull"}}])
        );
        if let Some(spec) = listed.spec.as_mut() {
            spec.image_pull_secrets = Some(vec![LocalObjectReference {
                name: "mirror-pull".into(),
            }]);
        }
        assert!(super::patch(&listed, &[], Some("mirror-pull")).0.is_empty());
    }

    #[test]
    fn names_and_service_accounts() {
        let mut p = pod();
        assert_eq!(display_name(&p, "req"), "req");
        p.metadata.generate_name = Some("web-7d9f-".into());
        assert_eq!(display_name(&p, ""), "web-7d9f-");
        assert_eq!(service_account(&p), "default");
        if let Some(spec) = p.spec.as_mut() {
            spec.service_account_name = Some("builder".into());
            spec.image_pull_secrets = Some(vec![
                LocalObjectReference { name: "a".into() },
                LocalObjectReference { name: "".into() },
            ]);
        }
        assert_eq!(service_account(&p), "builder");
        assert_eq!(pull_secret_names(&p), ["a"]);
    }
}
