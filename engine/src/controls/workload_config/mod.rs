//! Single-object workload configuration: images and registries, credentials in env, labels,
//! namespaces, deprecated or mismatched fields, known vulnerable images.
//!
//! Submodules group the controls by what they read; the helpers here are shared by them.
//!
//! Container coverage (catalog quirk 1) is decided per control in each control's doc comment;
//! unless it says otherwise a control inspects what its Kubescape rule inspects.

use kubevigil_crds::SubStatus;

use crate::workload::{WL7, WL7_RC};
use crate::{Applies, Control, Outcome};

mod credentials;
mod cves;
mod fields;
mod image_ref;
mod images;
mod labels;
mod namespaces;
mod regex_cache;

/// The controls of this group.
pub fn controls() -> Vec<&'static dyn Control> {
    vec![
        &images::ForbiddenRegistries,
        &credentials::CredentialsInConfiguration,
        &fields::CronJobs,
        &cves::SubPathSymlink,
        &cves::NginxSnippetAnnotation,
        &namespaces::PodsInDefaultNamespace,
        &fields::SudoInEntrypoint,
        &fields::NakedPods,
        &images::PullPolicyOnLatestTag,
        &labels::LabelUsage,
        &labels::K8sCommonLabels,
        &images::AllowedRegistries,
        &cves::ArgoCdDirTraversal,
        &cves::CriticalVulnerabilitiesExposed,
        &cves::RceVulnerabilitiesExposed,
        &cves::ExcessiveVulnerabilities,
        &cves::GrafanaAuthBypass,
        &cves::KyvernoSignatureBypass,
        &credentials::SecretsInEnv,
        &namespaces::DefaultNamespaceUsed,
        &fields::ExternalSecretStorage,
        &images::VerifyImageSignature,
        &images::ImageSignatureExists,
        &images::DeprecatedK8sRegistry,
        &credentials::CredentialAccess,
        &images::NginxIngressEol,
        &fields::DeprecatedServiceAccountField,
        &fields::DuplicateEnvVar,
        &fields::MismatchingSelector,
        &fields::NoRollingUpdate,
        &images::ImagesNotPinned,
    ]
}

/// Deployments only (the CVE rules).
const DEPLOYMENT: &[Applies] = &[Applies::Kind("Deployment")];

/// Pods only.
const POD: &[Applies] = &[Applies::Kind("Pod")];

/// Implements [`Control`] for a unit struct from its static meta and an evaluation function over
/// one object (`fn(&K8sObject, &Context) -> Outcome`). Triplets are never evaluated.
macro_rules! object_control {
    ($ty:ident, $meta:ident, $eval:path) => {
        impl $crate::Control for $ty {
            fn meta(&self) -> &'static $crate::ControlMeta {
                &$meta
            }

            fn evaluate(
                &self,
                resource: $crate::Resource<'_>,
                cx: &$crate::Context<'_>,
            ) -> $crate::Outcome {
                match resource {
                    $crate::Resource::Object(obj) => $eval(obj, cx),
                    $crate::Resource::Triplet(_) => $crate::Outcome::NotApplicable,
                }
            }
        }
    };
}

/// Implements [`Control`] for a control that needs data from outside the objects
/// (`Needs::Integration`): the engine never evaluates it; if it did, it would be skipped.
macro_rules! integration_control {
    ($ty:ident, $meta:ident) => {
        impl $crate::Control for $ty {
            fn meta(&self) -> &'static $crate::ControlMeta {
                &$meta
            }

            fn evaluate(
                &self,
                _resource: $crate::Resource<'_>,
                _cx: &$crate::Context<'_>,
            ) -> $crate::Outcome {
                $crate::controls::workload_config::integration_outcome()
            }
        }
    };
}

pub(crate) use integration_control;
pub(crate) use object_control;

/// The outcome of a control that needs outside data.
pub(crate) fn integration_outcome() -> Outcome {
    Outcome::Skipped {
        sub_status: SubStatus::Integration,
        info: "Control needs data from outside the cluster's objects".to_string(),
    }
}
