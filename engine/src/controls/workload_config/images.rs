//! Image controls: registries (forbidden, allowed, deprecated), pull policy, digests,
//! end-of-life images and image signatures.

use crate::object::Field;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde_json::Value;

use super::image_ref::normalize;
use super::{WL7, integration_control, object_control};
use crate::workload::Containers;
use crate::{Applies, Context, ControlMeta, Finding, K8sObject, Needs, Outcome};

/// Reports `<c>.image` (review + failed) for every container whose image satisfies `bad`.
fn image_findings(
    obj: &K8sObject,
    cx: &Context<'_>,
    rule: &'static str,
    which: Containers,
    mut bad: impl FnMut(&str) -> bool,
) -> Outcome {
    let Some(pod) = cx.pod_spec(obj) else {
        return Outcome::Passed;
    };
    let mut findings = Vec::new();
    for c in pod.containers(which.lists()) {
        if c.image_str().is_some_and(&mut bad) {
            findings.push(Finding::new(rule).review(c.path("image")));
        }
    }
    Outcome::from_findings(findings)
}

/// C-0001 Forbidden Container Registries.
///
/// Per container (`containers` only, quirk 1: compatible), the image is normalised as Docker
/// does (`nginx` → `docker.io/library/nginx`) and fails when it starts with an entry of
/// `untrustedRegistries` or `publicRegistries`; review path `<c>.image`. This is Kubescape's
/// active rule (`-v1`, Kubescape ≥ 2.9). An image that is not a valid reference is not reported
/// (the builtin errors in Kubescape). Both lists are empty by default, so the control is
/// reported skipped/configuration until one is configured.
pub struct ForbiddenRegistries;

static FORBIDDEN_REGISTRIES: ControlMeta = ControlMeta {
    id: "C-0001",
    name: "Forbidden Container Registries",
    description: "Images from untrusted or public registries may be tampered with or carry malware.",
    remediation: "Pull images only from trusted registries; mirror public images into a private registry.",
    base_score: 7.0,
    frameworks: &["YAML"],
    applies: WL7,
    rules: &["rule-identify-blocklisted-image-registries-v1"],
    inputs: &["untrustedRegistries", "publicRegistries"],
    configuration_required: true,
    needs: Needs::Nothing,
};

object_control!(
    ForbiddenRegistries,
    FORBIDDEN_REGISTRIES,
    forbidden_registries
);

fn forbidden_registries(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let untrusted = cx.inputs.get("untrustedRegistries");
    let public = cx.inputs.get("publicRegistries");
    if untrusted.is_empty() && public.is_empty() {
        return Outcome::Passed;
    }
    image_findings(
        obj,
        cx,
        "rule-identify-blocklisted-image-registries-v1",
        Containers::Main,
        |image| {
            normalize(image)
                .is_some_and(|name| untrusted.iter().chain(public).any(|r| name.starts_with(r)))
        },
    )
}

/// C-0078 Images from allowed registry.
///
/// Per container (`containers` only, quirk 1: compatible), the normalised image (see C-0001)
/// must start with an entry of `imageRepositoryAllowList`, else the container fails with review
/// path `<c>.image`. An image that is not a valid reference fails (it is in no allowed
/// repository). Kubescape's active `-v1` rule; the list is empty by default, so the control is
/// reported skipped/configuration until configured.
pub struct AllowedRegistries;

static ALLOWED_REGISTRIES: ControlMeta = ControlMeta {
    id: "C-0078",
    name: "Images from allowed registry",
    description: "Images should come only from the registries and repositories the organisation allows.",
    remediation: "Use images from the allowed repositories, or add the repository to imageRepositoryAllowList.",
    base_score: 5.0,
    frameworks: &[
        "ArmoBest",
        "WorkloadScan",
        "YAML",
        "cis-aks-t1.2.0",
        "cis-aks-t1.8.0",
        "cis-eks-t1.7.0",
        "cis-eks-t1.8.0",
        "cis-gke-v1.9.0",
    ],
    applies: WL7,
    rules: &["container-image-repository-v1"],
    inputs: &["imageRepositoryAllowList"],
    configuration_required: true,
    needs: Needs::Nothing,
};

object_control!(AllowedRegistries, ALLOWED_REGISTRIES, allowed_registries);

fn allowed_registries(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let allowed = cx.inputs.get("imageRepositoryAllowList");
    if allowed.is_empty() {
        return Outcome::Passed;
    }
    image_findings(
        obj,
        cx,
        "container-image-repository-v1",
        Containers::Main,
        |image| !normalize(image).is_some_and(|name| allowed.iter().any(|r| name.starts_with(r))),
    )
}

/// C-0075 Image pull policy on latest tag.
///
/// Per container (`containers` only, quirk 1: compatible): fails when `imagePullPolicy` is
/// explicitly `Never` or `IfNotPresent` and the image tag is `latest`, the image has neither a
/// tag nor a digest, or the tag is in `floatingImageTags`; review paths `<c>.image` and
/// `<c>.imagePullPolicy`. Quirk 6 (an unset pull policy passes): compatible — Kubernetes
/// defaults the policy to `Always` for such images, so an unset policy is not a problem.
pub struct PullPolicyOnLatestTag;

static PULL_POLICY: ControlMeta = ControlMeta {
    id: "C-0075",
    name: "Image pull policy on latest tag",
    description: "A floating tag with a non-Always pull policy can run stale or unexpected image versions.",
    remediation: "Set imagePullPolicy: Always, or pin the image to a fixed tag or digest.",
    base_score: 2.0,
    frameworks: &["DevOpsBest", "YAML"],
    applies: WL7,
    rules: &["image-pull-policy-is-not-set-to-always"],
    inputs: &["floatingImageTags"],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(PullPolicyOnLatestTag, PULL_POLICY, pull_policy);

/// The tag of an image reference (after the last `/`, before any digest) and whether it has a
/// digest.
fn tag_and_digest(image: &str) -> (Option<&str>, bool) {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    (last.split_once(':').map(|(_, tag)| tag), digest)
}

fn pull_policy(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let Some(pod) = cx.pod_spec(obj) else {
        return Outcome::Passed;
    };
    let floating = cx.inputs.get("floatingImageTags");
    let mut findings = Vec::new();
    for c in pod.containers(Containers::Main.lists()) {
        if !matches!(
            c.image_pull_policy().and_then(Value::as_str),
            Some("Never" | "IfNotPresent")
        ) {
            continue;
        }
        let Some(image) = c.image_str() else {
            continue;
        };
        let bad = match tag_and_digest(image) {
            (Some(tag), _) => tag == "latest" || floating.iter().any(|f| f == tag),
            (None, digest) => !digest,
        };
        if bad {
            findings.push(
                Finding::new("image-pull-policy-is-not-set-to-always")
                    .review(c.path("image"))
                    .review(c.path("imagePullPolicy")),
            );
        }
    }
    Outcome::from_findings(findings)
}

/// C-0306 Images not pinned to digest.
///
/// Every container, init container and ephemeral container (quirk 1: compatible) whose image
/// does not end in a digest (`@sha256:` + 64 lowercase hex, `@sha512:` + 128, `@blake3:` + 64,
/// or another `@algorithm:encoded` of the OCI digest grammar) and is not in an
/// `imageDigestExemptRepositories` entry (the entry followed by the end, `/`, `:` or `@`)
/// fails; review path `<c>.image`.
///
/// Quirk 13: **corrected**. Kubescape marks the control configuration-required although the
/// exemption list is optional, so with the default (empty) list it is always reported skipped
/// and unpinned images go unreported. kubevigil evaluates it with or without exemptions.
pub struct ImagesNotPinned;

static NOT_PINNED: ControlMeta = ControlMeta {
    id: "C-0306",
    name: "Images not pinned to digest",
    description: "Tags are mutable: an image not pinned by digest can change under a running workload.",
    remediation: "Reference images by digest (image@sha256:...), or exempt the repository in imageDigestExemptRepositories.",
    base_score: 3.0,
    frameworks: &["ArmoBest"],
    applies: WL7,
    rules: &["image-not-pinned-to-digest"],
    inputs: &["imageDigestExemptRepositories"],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(ImagesNotPinned, NOT_PINNED, images_not_pinned);

static KNOWN_DIGEST: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new("@(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}|blake3:[a-f0-9]{64})$").ok()
});
static OTHER_DIGEST: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new("@([a-z0-9]+(?:[.+_-][a-z0-9]+)*):[a-zA-Z0-9=_-]+$").ok());

/// Whether an image reference ends with a valid pinned digest.
fn has_digest(image: &str) -> bool {
    if !image.contains('@') {
        return false;
    }
    if KNOWN_DIGEST.as_ref().is_some_and(|r| r.is_match(image)) {
        return true;
    }
    let registered = ["@sha256:", "@sha512:", "@blake3:"]
        .iter()
        .any(|p| image.contains(p));
    !registered && OTHER_DIGEST.as_ref().is_some_and(|r| r.is_match(image))
}

fn digest_exempt(image: &str, exempt: &[String]) -> bool {
    exempt.iter().any(|repo| {
        image
            .strip_prefix(repo.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', ':', '@']))
    })
}

fn images_not_pinned(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    let exempt = cx.inputs.get("imageDigestExemptRepositories");
    image_findings(
        obj,
        cx,
        "image-not-pinned-to-digest",
        Containers::All,
        |image| !has_digest(image) && !digest_exempt(image, exempt),
    )
}

/// C-0253 Deprecated Kubernetes image registry.
///
/// Only objects in namespace `kube-system` are evaluated (Kubescape's filter; others are not
/// counted). A container (`containers` only, quirk 1: compatible) whose image starts with
/// `k8s.gcr.io/` fails; review path `<c>.image`.
pub struct DeprecatedK8sRegistry;

static DEPRECATED_REGISTRY: ControlMeta = ControlMeta {
    id: "C-0253",
    name: "Deprecated Kubernetes image registry",
    description: "k8s.gcr.io is frozen: images there get no updates or security fixes.",
    remediation: "Pull Kubernetes images from registry.k8s.io instead of k8s.gcr.io.",
    base_score: 5.0,
    frameworks: &["DevOpsBest"],
    applies: WL7,
    rules: &["rule-identify-old-k8s-registry"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(
    DeprecatedK8sRegistry,
    DEPRECATED_REGISTRY,
    deprecated_registry
);

fn deprecated_registry(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    if obj.metadata().field("namespace").and_then(Value::as_str) != Some("kube-system") {
        return Outcome::NotApplicable;
    }
    image_findings(
        obj,
        cx,
        "rule-identify-old-k8s-registry",
        Containers::Main,
        |image| image.starts_with("k8s.gcr.io/"),
    )
}

/// C-0292 Nginx Ingress Controller End of Life.
///
/// Deployments, DaemonSets and StatefulSets whose container (`containers` only, quirk 1:
/// compatible) image contains `ingress-nginx/controller`, `k8s.gcr.io/ingress-nginx` or
/// `registry.k8s.io/ingress-nginx` fail (the community ingress-nginx reaches end of life in
/// March 2026); review path `<c>.image`.
pub struct NginxIngressEol;

static NGINX_EOL: ControlMeta = ControlMeta {
    id: "C-0292",
    name: "Nginx Ingress Controller End of Life",
    description: "The community ingress-nginx controller reaches end of life in March 2026 and gets no more fixes.",
    remediation: "Migrate to a maintained ingress or Gateway API controller.",
    base_score: 6.0,
    frameworks: &["NSA", "ArmoBest", "DevOpsBest", "security"],
    applies: &[
        Applies::Kind("Deployment"),
        Applies::Kind("DaemonSet"),
        Applies::Kind("StatefulSet"),
    ],
    rules: &["detect-nginx-ingress-controller-eol"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Nothing,
};

object_control!(NginxIngressEol, NGINX_EOL, nginx_eol);

/// The image names of the ingress-nginx controller (substrings), searched in one pass.
static NGINX_CONTROLLER_IMAGES: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::new([
        "ingress-nginx/controller",
        "k8s.gcr.io/ingress-nginx",
        "registry.k8s.io/ingress-nginx",
    ])
    .ok()
});

fn nginx_eol(obj: &K8sObject, cx: &Context<'_>) -> Outcome {
    image_findings(
        obj,
        cx,
        "detect-nginx-ingress-controller-eol",
        Containers::Main,
        |image| {
            NGINX_CONTROLLER_IMAGES
                .as_ref()
                .is_some_and(|ac| ac.is_match(image))
        },
    )
}

/// C-0236 Verify image signature.
///
/// Kubescape verifies each container image's cosign signature against
/// `trustedCosignPublicKeys` with a registry lookup; that needs data from outside the objects,
/// so kubevigil reports the control skipped/integration.
pub struct VerifyImageSignature;

static VERIFY_SIGNATURE: ControlMeta = ControlMeta {
    id: "C-0236",
    name: "Verify image signature",
    description: "Unsigned or wrongly signed images may have been tampered with.",
    remediation: "Sign images with cosign and run only images signed by a trusted key.",
    base_score: 7.0,
    frameworks: &["ArmoBest"],
    applies: WL7,
    rules: &["verify-image-signature"],
    inputs: &["trustedCosignPublicKeys"],
    configuration_required: true,
    needs: Needs::Integration,
};

integration_control!(VerifyImageSignature, VERIFY_SIGNATURE);

/// C-0237 Check if signature exists.
///
/// Kubescape looks up a cosign signature for each container image in its registry; that needs
/// data from outside the objects, so kubevigil reports the control skipped/integration.
pub struct ImageSignatureExists;

static SIGNATURE_EXISTS: ControlMeta = ControlMeta {
    id: "C-0237",
    name: "Check if signature exists",
    description: "Images without a signature cannot be traced to a trusted build.",
    remediation: "Sign images with cosign as part of the build.",
    base_score: 7.0,
    frameworks: &["ArmoBest"],
    applies: WL7,
    rules: &["has-image-signature"],
    inputs: &[],
    configuration_required: false,
    needs: Needs::Integration,
};

integration_control!(ImageSignatureExists, SIGNATURE_EXISTS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(tag_and_digest("nginx"), (None, false));
        assert_eq!(tag_and_digest("nginx:latest"), (Some("latest"), false));
        assert_eq!(tag_and_digest("localhost:5000/app"), (None, false));
        assert_eq!(
            tag_and_digest("localhost:5000/app:1.0"),
            (Some("1.0"), false)
        );
        assert_eq!(tag_and_digest("app@sha256:abc"), (None, true));
        assert_eq!(tag_and_digest("app:1@sha256:abc"), (Some("1"), true));
    }

    #[test]
    fn digests() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(has_digest(&format!("nginx@sha256:{hex}")));
        assert!(has_digest(&format!("nginx:1.2@sha256:{hex}")));
        assert!(has_digest(&format!("nginx@sha512:{hex}{hex}")));
        assert!(has_digest(&format!("nginx@blake3:{hex}")));
        assert!(has_digest(&format!("nginx@custom:{}", "x".repeat(32))));
        assert!(!has_digest(&format!("nginx@sha256:{}", hex.to_uppercase())));
        assert!(!has_digest("nginx@sha256:abc"));
        assert!(!has_digest(&format!("nginx@blake3:{}", "z".repeat(64))));
        assert!(has_digest("nginx@custom-algorithm:a"));
        assert!(!has_digest("nginx@custom:"));
        assert!(!has_digest("nginx@Custom:abc"));
        assert!(!has_digest("nginx:1.25"));
        assert!(!has_digest("localhost:5000/nginx:1.25"));
    }

    #[test]
    fn exemptions_stop_at_repository_boundaries() {
        let exempt = vec!["internal-registry".to_string()];
        assert!(digest_exempt("internal-registry/app:1", &exempt));
        assert!(digest_exempt("internal-registry:5000", &exempt));
        assert!(digest_exempt("internal-registry", &exempt));
        assert!(!digest_exempt("internal-registry-attacker/app", &exempt));
    }
}
