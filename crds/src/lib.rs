//! kubevigil's result API: the custom resource types (results, and the posture exceptions
//! users write), and the names, labels and annotations that
//! tie each result to its target. [`openreports`] holds the types of the OpenReports objects
//! kubevigil writes when asked (not kubevigil's CRDs).
//!
//! Everything here is pure (no I/O), so that the controller, the scan Job and the tests compute
//! exactly the same names, and classify API errors by the same rule ([`api_error`]).

pub mod api_error;
pub mod duration;
pub mod exception;
pub mod identity;
pub mod openreports;
pub mod scan;
pub mod summary;
pub mod target;

pub use exception::{
    ClusterPostureException, ClusterPostureExceptionSpec, ExceptionResource, PostureException,
    PostureExceptionSpec,
};
pub use scan::{
    CatalogText, ControlSeverity, ControlStatus, RelatedObject, RulePath, RuleStatus,
    ScannedControl, ScannedRule, Severity, Status, SubStatus, WorkloadConfigurationScan,
    WorkloadConfigurationScanSpec,
};
pub use summary::{
    ConfigurationScanSummary, ConfigurationScanSummarySpec, ControlSummary, SeveritySummary,
    SummaryRef, WorkloadConfigurationScanSummary, WorkloadConfigurationScanSummarySpec,
};

/// API group of every kubevigil resource.
pub const GROUP: &str = "kubevigil.io";
/// API version of every kubevigil resource.
pub const VERSION: &str = "v1beta1";

/// The CustomResourceDefinitions, in the order the chart installs them.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt as _;
    vec![
        WorkloadConfigurationScan::crd(),
        WorkloadConfigurationScanSummary::crd(),
        ConfigurationScanSummary::crd(),
        PostureException::crd(),
        ClusterPostureException::crd(),
    ]
}
