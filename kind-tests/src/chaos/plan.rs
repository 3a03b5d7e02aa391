//! The seeded plan of the chaos scenario: which operation or fault comes at each step, with the
//! exact object bodies and patches. Pure: the same seed and operation count always give the
//! same plan, so a failing seed can be replayed.
//!
//! The planner keeps a model of what exists, so that it only creates absent names and only
//! updates or deletes present ones. The driver keeps the cluster equal to the model by treating
//! a create answered `AlreadyExists` (or a delete answered `NotFound`) after a retried attempt
//! as done: the earlier attempt landed although its answer was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Value, json};

/// A small seeded PRNG (SplitMix64): enough for a reproducible plan, no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        match u64::try_from(n) {
            Ok(0) | Err(_) => 0,
            Ok(n) => usize::try_from(self.next_u64() % n).unwrap_or(0),
        }
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi.saturating_sub(lo))
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One element of `items`, `None` when empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// The kinds the chaos operations create, update and delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet (replicas 0).
    StatefulSet,
    /// A naked v1 Pod.
    Pod,
    /// v1 ServiceAccount.
    ServiceAccount,
    /// rbac Role.
    Role,
    /// rbac RoleBinding.
    RoleBinding,
    /// networking.k8s.io NetworkPolicy selecting Deployments' pods (a related object).
    NetworkPolicy,
    /// v1 Service selecting Deployments' pods, ClusterIP or NodePort (a related object).
    Service,
    /// networking.k8s.io Ingress routing to the Services (a related object).
    Ingress,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 9] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::Pod,
        Kind::ServiceAccount,
        Kind::Role,
        Kind::RoleBinding,
        Kind::NetworkPolicy,
        Kind::Service,
        Kind::Ingress,
    ];

    /// Whether the kind is a related object (no results of its own; it changes the results of
    /// the workloads it relates to).
    pub fn related(self) -> bool {
        matches!(self, Kind::NetworkPolicy | Kind::Service | Kind::Ingress)
    }

    /// (group, version, kind, plural).
    pub fn api(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Kind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Kind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
            Kind::Pod => ("", "v1", "Pod", "pods"),
            Kind::ServiceAccount => ("", "v1", "ServiceAccount", "serviceaccounts"),
            Kind::Role => ("rbac.authorization.k8s.io", "v1", "Role", "roles"),
            Kind::RoleBinding => (
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
            ),
            Kind::NetworkPolicy => (
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
            ),
            Kind::Service => ("", "v1", "Service", "services"),
            Kind::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses"),
        }
    }

    /// The Kubernetes kind.
    pub fn name(self) -> &'static str {
        self.api().2
    }

    /// How many objects of the kind exist at most (names are drawn from this pool; Pods get
    /// fresh names, as a deleted Pod lingers while it terminates).
    fn pool(self) -> usize {
        match self {
            Kind::Deployment => 12,
            Kind::StatefulSet => 4,
            Kind::Pod => 3,
            Kind::ServiceAccount => 8,
            Kind::Role => 6,
            Kind::RoleBinding => 10,
            Kind::NetworkPolicy => 5,
            Kind::Service => 5,
            Kind::Ingress => 3,
        }
    }

    /// Relative frequency of operations on the kind.
    fn weight(self) -> usize {
        match self {
            Kind::Deployment => 30,
            Kind::StatefulSet => 8,
            Kind::Pod => 7,
            Kind::ServiceAccount => 15,
            Kind::Role => 15,
            Kind::RoleBinding => 25,
            Kind::NetworkPolicy => 12,
            Kind::Service => 12,
            Kind::Ingress => 10,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Deployment => "d",
            Kind::StatefulSet => "s",
            Kind::Pod => "p",
            Kind::ServiceAccount => "sa",
            Kind::Role => "r",
            Kind::RoleBinding => "rb",
            Kind::NetworkPolicy => "np",
            Kind::Service => "svc",
            Kind::Ingress => "ing",
        }
    }
}

/// What an operation does to its object.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create it with this body (namespace filled in by the driver).
    Create(Value),
    /// JSON merge patch.
    Update {
        /// What the patch changes (`labels`, `image`, `securityContext`, `scale`, `rules`,
        /// `subjects`, `automount`, `selector`, `type`, `backend`).
        what: &'static str,
        /// The patch.
        patch: Value,
    },
    /// Delete it (background propagation).
    Delete,
}

impl Action {
    /// `create`, `update` or `delete`.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Create(_) => "create",
            Action::Update { .. } => "update",
            Action::Delete => "delete",
        }
    }
}

/// One operation of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// Its position among the operations (0-based).
    pub index: usize,
    /// The object's kind.
    pub kind: Kind,
    /// The object's name.
    pub name: String,
    /// What to do.
    pub action: Action,
    /// Milliseconds the driver waits before it (spreads the operations over time, so that
    /// faults meet scan Jobs in flight).
    pub pause_ms: u64,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Update { what, .. } => write!(
                f,
                "#{} update({what}) {} {}",
                self.index,
                self.kind.name(),
                self.name
            ),
            a => write!(
                f,
                "#{} {} {} {}",
                self.index,
                a.verb(),
                self.kind.name(),
                self.name
            ),
        }
    }
}

/// How the controller is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KillMode {
    /// SIGKILL its container through containerd (a node-level kill): the kubelet restarts the
    /// container in the same pod.
    Sigkill,
    /// Delete its pod with grace period 0: the Deployment creates a new one.
    DeletePod,
}

/// A fault injected between operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Kill the controller.
    KillController(KillMode),
    /// Restart kube-apiserver while the operations go on.
    RestartApiserver,
    /// SIGKILL the scan-job pods running at that moment.
    KillScanPods,
    /// Delete a scan Job whose pod is running.
    DeleteRunningJob,
}

impl Fault {
    /// A short name for counts.
    pub fn label(self) -> &'static str {
        match self {
            Fault::KillController(KillMode::Sigkill) => "controller killed (SIGKILL)",
            Fault::KillController(KillMode::DeletePod) => "controller pod deleted (grace 0)",
            Fault::RestartApiserver => "kube-apiserver restarted",
            Fault::KillScanPods => "scan pods killed (SIGKILL)",
            Fault::DeleteRunningJob => "running scan Job deleted",
        }
    }
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// An operation.
    Op(Op),
    /// A fault, before the operation with this index.
    Fault {
        /// The index of the operation it precedes.
        before_op: usize,
        /// The fault.
        fault: Fault,
    },
}

/// The whole seeded plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// Operations and faults, in order.
    pub steps: Vec<Step>,
}

/// Per-kind state of the planner's model.
#[derive(Clone, Debug, Default)]
struct Workload {
    image: String,
    privileged: bool,
    non_root: bool,
    replicas: i64,
}

#[derive(Debug)]
struct Model {
    live: BTreeMap<Kind, BTreeSet<String>>,
    workloads: BTreeMap<(Kind, String), Workload>,
    next_pod: usize,
    images: Vec<String>,
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// Rule sets a Role may get (harmless to dangerous, so RBAC controls change verdicts).
fn rule_set(i: usize) -> Value {
    match i % 5 {
        0 => json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
        1 => {
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}])
        }
        2 => json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]),
        3 => json!([{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        _ => json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    }
}

/// The images the plan's workloads use: `probe_image` and three other tags of its repository,
/// so that image edits change the pod template. The driver tags them on the node before the run.
pub fn image_variants(probe_image: &str) -> Vec<String> {
    let repo = probe_image
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(probe_image, |(repo, _)| repo);
    vec![
        probe_image.to_owned(),
        format!("{repo}:v1"),
        format!("{repo}:v2"),
        format!("{repo}:latest"),
    ]
}

impl Model {
    fn new(probe_image: &str) -> Self {
        Model {
            live: Kind::ALL.iter().map(|k| (*k, BTreeSet::new())).collect(),
            workloads: BTreeMap::new(),
            next_pod: 0,
            images: image_variants(probe_image),
        }
    }

    fn live(&self, kind: Kind) -> Vec<String> {
        self.live
            .get(&kind)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn absent(&self, kind: Kind) -> Vec<String> {
        let live = self.live.get(&kind);
        (0..kind.pool())
            .map(|i| format!("{}{i}", kind.prefix()))
            .filter(|n| !live.is_some_and(|l| l.contains(n)))
            .collect()
    }

    fn container(w: &Workload) -> Value {
        json!({
            "name": "main",
            "image": w.image,
            "args": ["sleep"],
            "securityContext": {"privileged": w.privileged, "runAsNonRoot": w.non_root},
        })
    }

    fn random_workload(&self, rng: &mut Rng, replicas: i64) -> Workload {
        Workload {
            image: rng.pick(&self.images).cloned().unwrap_or_default(),
            privileged: rng.chance(40),
            non_root: rng.chance(50),
            replicas,
        }
    }

    fn pod_template(name: &str, w: &Workload) -> Value {
        json!({
            "metadata": {"labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [Self::container(w)]},
        })
    }

    fn subjects(rng: &mut Rng) -> Value {
        let n = 1 + rng.below(3);
        let mut out = Vec::new();
        for _ in 0..n {
            let s = match rng.below(7) {
                // ServiceAccounts of the pool, which may or may not exist now.
                0..=2 => json!({"kind": "ServiceAccount", "name": format!("sa{}", rng.below(8))}),
                // A ServiceAccount of another namespace (its result name gets a hash).
                3 => {
                    json!({"kind": "ServiceAccount", "name": "builder", "namespace": "chaos-elsewhere"})
                }
                4 => json!({"kind": "User", "apiGroup": RBAC,
                            "name": *rng.pick(&["alice@example.com", "system:chaos", "bob"]).unwrap_or(&"bob")}),
                _ => json!({"kind": "Group", "apiGroup": RBAC,
                            "name": *rng.pick(&["devs", "system:authenticated"]).unwrap_or(&"devs")}),
            };
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Value::Array(out)
    }

    /// A pod selector naming one Deployment of the pool (`app: d<i>`, which may or may not
    /// exist), or, rarely, every pod of the namespace (NetworkPolicy only).
    fn app_selector(rng: &mut Rng) -> Value {
        json!({"app": format!("d{}", rng.below(Kind::Deployment.pool()))})
    }

    fn policy_spec(rng: &mut Rng) -> Value {
        let selector = if rng.chance(15) {
            json!({})
        } else {
            json!({"matchLabels": Self::app_selector(rng)})
        };
        let types = match rng.below(3) {
            0 => json!(["Ingress"]),
            1 => json!(["Egress"]),
            _ => json!(["Ingress", "Egress"]),
        };
        json!({"podSelector": selector, "policyTypes": types})
    }

    fn service_spec(rng: &mut Rng) -> Value {
        let type_ = if rng.chance(40) {
            "NodePort"
        } else {
            "ClusterIP"
        };
        json!({"type": type_, "selector": Self::app_selector(rng), "ports": [{"port": 80}]})
    }

    fn ingress_spec(rng: &mut Rng) -> Value {
        let service = format!("svc{}", rng.below(Kind::Service.pool()));
        json!({"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]})
    }

    fn create(&mut self, rng: &mut Rng, kind: Kind, name: &str) -> Value {
        let labels = json!({"app": name, "chaos-rev": "0"});
        let body = match kind {
            Kind::Deployment => {
                let replicas = i64::from(rng.chance(15));
                let w = self.random_workload(rng, replicas);
                let body = json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "labels": labels},
                    "spec": {
                        "replicas": w.replicas,
                        "selector": {"matchLabels": {"app": name}},
                        "template": Self::pod_template(name, &w),
                    },
                });
                self.workloads.insert((kind, name.to_owned()), w);
                body
            }
            Kind::StatefulSet => {
                let w = self.random_workload(rng, 0);
                let body = json!({
                    "apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": name, "labels": labels},
                    "spec": {
                        "replicas": 0,
                        "serviceName": "chaos",
                        "selector": {"matchLabels": {"app": name}},
                        "template": Self::pod_template(name, &w),
                    },
                });
                self.workloads.insert((kind, name.to_owned()), w);
                body
            }
            Kind::Pod => {
                let w = self.random_workload(rng, 1);
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [Self::container(&w)]},
                })
            }
            Kind::ServiceAccount => json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "labels": labels},
                "automountServiceAccountToken": rng.chance(50),
            }),
            Kind::Role => json!({
                "apiVersion": format!("{RBAC}/v1"), "kind": "Role",
                "metadata": {"name": name, "labels": labels},
                "rules": rule_set(rng.below(5)),
            }),
            Kind::RoleBinding => {
                let role_ref = if rng.chance(70) {
                    // A Role of the pool: it may not exist (now or ever), which leaves the
                    // binding without triplets until it does.
                    json!({"apiGroup": RBAC, "kind": "Role", "name": format!("r{}", rng.below(6))})
                } else {
                    let name = *rng
                        .pick(&["view", "edit", "chaos-no-such-clusterrole"])
                        .unwrap_or(&"view");
                    json!({"apiGroup": RBAC, "kind": "ClusterRole", "name": name})
                };
                json!({
                    "apiVersion": format!("{RBAC}/v1"), "kind": "RoleBinding",
                    "metadata": {"name": name, "labels": labels},
                    "roleRef": role_ref,
                    "subjects": Self::subjects(rng),
                })
            }
            Kind::NetworkPolicy => json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "labels": labels},
                "spec": Self::policy_spec(rng),
            }),
            Kind::Service => json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "labels": labels},
                "spec": Self::service_spec(rng),
            }),
            Kind::Ingress => json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": name, "labels": labels},
                "spec": Self::ingress_spec(rng),
            }),
        };
        if let Some(live) = self.live.get_mut(&kind) {
            live.insert(name.to_owned());
        }
        body
    }

    fn update(&mut self, rng: &mut Rng, kind: Kind, name: &str, index: usize) -> Action {
        let labels = json!({"metadata": {"labels": {"chaos-rev": index.to_string()}}});
        let (what, patch) = match kind {
            Kind::Deployment | Kind::StatefulSet => {
                let key = (kind, name.to_owned());
                let mut w = self.workloads.get(&key).cloned().unwrap_or_default();
                let variant = rng.below(if kind == Kind::Deployment { 4 } else { 3 });
                let what = match variant {
                    0 => {
                        return Action::Update {
                            what: "labels",
                            patch: labels,
                        };
                    }
                    1 => {
                        let others: Vec<String> = self
                            .images
                            .iter()
                            .filter(|i| **i != w.image)
                            .cloned()
                            .collect();
                        w.image = rng.pick(&others).cloned().unwrap_or_default();
                        "image"
                    }
                    2 => {
                        if rng.chance(50) {
                            w.privileged = !w.privileged;
                        } else {
                            w.non_root = !w.non_root;
                        }
                        "securityContext"
                    }
                    _ => {
                        // Scaling: no control reads replicas, so no rescan is due.
                        w.replicas = 1 - w.replicas.clamp(0, 1);
                        self.workloads.insert(key, w.clone());
                        return Action::Update {
                            what: "scale",
                            patch: json!({"spec": {"replicas": w.replicas}}),
                        };
                    }
                };
                let patch =
                    json!({"spec": {"template": {"spec": {"containers": [Self::container(&w)]}}}});
                self.workloads.insert(key, w);
                (what, patch)
            }
            Kind::Pod => ("labels", labels),
            Kind::ServiceAccount => {
                if rng.chance(50) {
                    ("labels", labels)
                } else {
                    (
                        "automount",
                        json!({"automountServiceAccountToken": rng.chance(50)}),
                    )
                }
            }
            Kind::Role => {
                if rng.chance(30) {
                    ("labels", labels)
                } else {
                    ("rules", json!({"rules": rule_set(index)}))
                }
            }
            Kind::RoleBinding => {
                if rng.chance(25) {
                    ("labels", labels)
                } else {
                    ("subjects", json!({"subjects": Self::subjects(rng)}))
                }
            }
            Kind::NetworkPolicy => ("selector", json!({"spec": Self::policy_spec(rng)})),
            Kind::Service => {
                if rng.chance(50) {
                    // NodePort <-> ClusterIP (a merge patch: the allocated nodePort goes with it).
                    let type_ = if rng.chance(50) {
                        "NodePort"
                    } else {
                        "ClusterIP"
                    };
                    ("type", json!({"spec": {"type": type_}}))
                } else {
                    (
                        "selector",
                        json!({"spec": {"selector": Self::app_selector(rng)}}),
                    )
                }
            }
            Kind::Ingress => ("backend", json!({"spec": Self::ingress_spec(rng)})),
        };
        Action::Update { what, patch }
    }

    fn next_op(&mut self, rng: &mut Rng, index: usize) -> Op {
        let total: usize = Kind::ALL.iter().map(|k| k.weight()).sum();
        let mut roll = rng.below(total);
        let mut kind = Kind::Deployment;
        for k in Kind::ALL {
            if roll < k.weight() {
                kind = k;
                break;
            }
            roll -= k.weight();
        }
        let live = self.live(kind);
        let full = live.len() >= kind.pool();
        let roll = rng.below(100);
        let action = if live.is_empty() || (!full && roll < 35) {
            "create"
        } else if roll < 80 {
            "update"
        } else {
            "delete"
        };
        let pause_ms = 50 + u64::try_from(rng.below(300)).unwrap_or(0);
        let (name, action) = match action {
            "create" => {
                let name = if kind == Kind::Pod {
                    self.next_pod += 1;
                    format!("p{}", self.next_pod)
                } else {
                    rng.pick(&self.absent(kind)).cloned().unwrap_or_default()
                };
                let body = self.create(rng, kind, &name);
                (name, Action::Create(body))
            }
            "update" => {
                let name = rng.pick(&live).cloned().unwrap_or_default();
                let a = self.update(rng, kind, &name, index);
                (name, a)
            }
            _ => {
                let name = rng.pick(&live).cloned().unwrap_or_default();
                if let Some(l) = self.live.get_mut(&kind) {
                    l.remove(&name);
                }
                self.workloads.remove(&(kind, name.clone()));
                (name, Action::Delete)
            }
        };
        Op {
            index,
            kind,
            name,
            action,
            pause_ms,
        }
    }
}

/// `count` positions in `lo..hi`, one in each of `count` equal segments (so they are spread).
fn spread(rng: &mut Rng, count: usize, lo: usize, hi: usize) -> Vec<usize> {
    let width = hi.saturating_sub(lo).max(count).max(1);
    (0..count)
        .map(|i| {
            let a = lo + width * i / count.max(1);
            let b = (lo + width * (i + 1) / count.max(1)).max(a + 1);
            rng.range(a, b)
        })
        .collect()
}

impl Plan {
    /// The plan of `ops` operations for `seed`; pods run `probe_image` (tags varied).
    ///
    /// Faults: 3 or 4 controller kills (both [`KillMode`]s) spread over 5..85 % of the
    /// operations, one kube-apiserver restart between 35 and 60 %, four scan-pod kills and two
    /// running-Job deletions spread over the run.
    pub fn generate(seed: u64, ops: usize, probe_image: &str) -> Plan {
        let mut rng = Rng::new(seed);
        let mut faults: Vec<(usize, Fault)> = Vec::new();
        let pct = |p: usize| ops * p / 100;
        let kills = 3 + rng.below(2);
        let first_mode = rng.below(2);
        for (i, at) in spread(&mut rng, kills, pct(5), pct(85))
            .into_iter()
            .enumerate()
        {
            let mode = if (i + first_mode).is_multiple_of(2) {
                KillMode::Sigkill
            } else {
                KillMode::DeletePod
            };
            faults.push((at, Fault::KillController(mode)));
        }
        faults.push((rng.range(pct(35), pct(60)), Fault::RestartApiserver));
        for at in spread(&mut rng, 4, pct(3), pct(90)) {
            faults.push((at, Fault::KillScanPods));
        }
        for at in spread(&mut rng, 2, pct(10), pct(90)) {
            faults.push((at, Fault::DeleteRunningJob));
        }
        faults.sort();
        let mut model = Model::new(probe_image);
        let mut steps = Vec::with_capacity(ops + faults.len());
        let mut pending = faults.into_iter().peekable();
        for index in 0..ops {
            while let Some((_, fault)) = pending.next_if(|(at, _)| *at <= index) {
                steps.push(Step::Fault {
                    before_op: index,
                    fault,
                });
            }
            steps.push(Step::Op(model.next_op(&mut rng, index)));
        }
        for (_, fault) in pending {
            steps.push(Step::Fault {
                before_op: ops,
                fault,
            });
        }
        Plan { seed, steps }
    }

    /// The operations, in order.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.steps.iter().filter_map(|s| match s {
            Step::Op(op) => Some(op),
            Step::Fault { .. } => None,
        })
    }

    /// The faults, in order.
    pub fn faults(&self) -> impl Iterator<Item = Fault> + '_ {
        self.steps.iter().filter_map(|s| match s {
            Step::Fault { fault, .. } => Some(*fault),
            Step::Op(_) => None,
        })
    }

    /// Operations by kind and verb (`Deployment` → `create` → 12).
    pub fn op_counts(&self) -> BTreeMap<&'static str, BTreeMap<&'static str, usize>> {
        let mut out: BTreeMap<&'static str, BTreeMap<&'static str, usize>> = BTreeMap::new();
        for op in self.ops() {
            *out.entry(op.kind.name())
                .or_default()
                .entry(op.action.verb())
                .or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "ghcr.io/kubevigil/probe:0.1.0";

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let a = Plan::generate(7, 300, IMAGE);
        assert_eq!(a, Plan::generate(7, 300, IMAGE));
        assert_ne!(a, Plan::generate(8, 300, IMAGE));
    }

    #[test]
    fn plans_have_the_ops_and_faults_the_issue_asks_for() {
        for seed in 0..50 {
            let plan = Plan::generate(seed, 300, IMAGE);
            assert_eq!(plan.ops().count(), 300);
            let faults: Vec<Fault> = plan.faults().collect();
            let kills = faults
                .iter()
                .filter(|f| matches!(f, Fault::KillController(_)))
                .count();
            assert!((3..=4).contains(&kills), "seed {seed}: {kills} kills");
            for mode in [KillMode::Sigkill, KillMode::DeletePod] {
                assert!(faults.contains(&Fault::KillController(mode)), "seed {seed}");
            }
            let count = |f: Fault| faults.iter().filter(|g| **g == f).count();
            assert_eq!(count(Fault::RestartApiserver), 1, "seed {seed}");
            assert_eq!(count(Fault::KillScanPods), 4, "seed {seed}");
            assert_eq!(count(Fault::DeleteRunningJob), 2, "seed {seed}");
            // Every fault comes before the last operation.
            assert!(plan.steps.iter().all(|s| match s {
                Step::Fault { before_op, .. } => *before_op < 300,
                Step::Op(_) => true,
            }));
            // The kinds the issue names are created, updated and deleted.
            let counts = plan.op_counts();
            // The related kinds: created and updated in every plan, also deleted in the seeds
            // `make chaos` runs (1, 2, 3).
            let related_verbs: &[&str] = if (1..=3).contains(&seed) {
                &["create", "update", "delete"]
            } else {
                &["create", "update"]
            };
            for (kind, verbs) in [
                ("Deployment", &["create", "update", "delete"][..]),
                ("Role", &["create", "update", "delete"][..]),
                ("RoleBinding", &["create", "update", "delete"][..]),
                ("NetworkPolicy", related_verbs),
                ("Service", related_verbs),
                ("Ingress", related_verbs),
            ] {
                for verb in verbs {
                    assert!(
                        counts
                            .get(kind)
                            .and_then(|v| v.get(verb))
                            .is_some_and(|n| *n > 0),
                        "seed {seed}: no {verb} of {kind}: {counts:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn operations_only_create_absent_and_touch_present_objects() {
        for seed in 0..50 {
            let plan = Plan::generate(seed, 300, IMAGE);
            let mut live: BTreeSet<(Kind, String)> = BTreeSet::new();
            for op in plan.ops() {
                let key = (op.kind, op.name.clone());
                assert!(!op.name.is_empty(), "seed {seed}: {op}");
                match &op.action {
                    Action::Create(body) => {
                        assert!(live.insert(key), "seed {seed}: {op} creates a live object");
                        assert_eq!(body["metadata"]["name"], json!(op.name));
                        assert_eq!(body["kind"], json!(op.kind.name()));
                    }
                    Action::Update { .. } => {
                        assert!(live.contains(&key), "seed {seed}: {op} of an absent object");
                    }
                    Action::Delete => {
                        assert!(live.remove(&key), "seed {seed}: {op} of an absent object");
                    }
                }
            }
        }
    }

    #[test]
    fn role_binding_updates_never_touch_the_immutable_role_ref() {
        let plan = Plan::generate(3, 1000, IMAGE);
        for op in plan.ops().filter(|o| o.kind == Kind::RoleBinding) {
            if let Action::Update { patch, .. } = &op.action {
                assert!(patch.get("roleRef").is_none(), "{op}");
            }
        }
    }

    #[test]
    fn rng_is_uniform_enough_and_in_range() {
        let mut rng = Rng::new(1);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            let v = rng.below(5);
            seen[v] += 1;
        }
        assert!(seen.iter().all(|n| *n > 800), "{seen:?}");
        assert_eq!(rng.below(0), 0);
        assert!((10..20).contains(&rng.range(10, 20)));
        assert_eq!(rng.range(5, 5), 5);
    }
}
