//! Engine benchmarks (issue 4, acceptance 4). Run on one core:
//!
//! ```text
//! taskset -c 0 cargo bench -p kubevigil-engine --bench engine
//! # profile one benchmark alone:
//! KUBEVIGIL_BENCH_NO_SUMMARY=1 perf record -g -- target/release/deps/engine-* --bench 'deployment/evaluate_object$' --profile-time 10
//! # instructions per Deployment (steady on a shared machine): the I refs of 3000 calls minus
//! # those of 1000, divided by 2000; KUBEVIGIL_BENCH_CONTROL=C-0012 narrows it to one control
//! KUBEVIGIL_BENCH_ITERS=3000 valgrind --tool=cachegrind --cache-sim=no target/release/deps/engine-* --bench
//! # the same with `report::build` after each evaluation (its cost: the difference)
//! KUBEVIGIL_BENCH_REPORT=1 KUBEVIGIL_BENCH_ITERS=3000 valgrind --tool=callgrind target/release/deps/engine-* --bench
//! ```
//!
//! Groups:
//! - `deployment`: the full catalog on one realistic Deployment (four containers with probes,
//!   resources, securityContext, env and volumes; its ServiceAccount, a Service and a
//!   NetworkPolicy in the inventory): `Evaluator::evaluate_object` alone, and followed by
//!   `report::build`.
//! - `mixed_1000`: `Evaluator::evaluate_all` over 1,000 generated manifests (Deployments, Pods,
//!   StatefulSets, CronJobs, Services, ServiceAccounts, Roles and RoleBindings), reported in
//!   manifests per second.
//! - `engine_overhead_100_trivial`: the same Deployment under 100 controls that pass at once:
//!   the evaluator's (and the report's) own cost per control.
//! - `engine_overhead_100_synthetic`: the same Deployment under 100 synthetic controls that do
//!   typical work (walk the pod spec and its containers, read fields, some fail with paths, some
//!   read configuration inputs, some look up the ServiceAccount in the inventory).
//!
//! The two `engine_overhead` groups stand in for the full catalog while it is being written;
//! they do not replace the figures of the real catalog.
//!
//! After the criterion output, a plain summary is printed for BENCHMARKS.md: the median wall
//! time per call and the median CPU time of the benchmark thread per call (the CPU figure is
//! the one that stays meaningful when other processes share the core).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use kubevigil_engine::catalog;
use kubevigil_engine::report::{self, ReportContext};
use kubevigil_engine::workload::{Containers, WL7, pod_spec};
use kubevigil_engine::{
    Context, Control, ControlInputs, ControlMeta, Evaluator, Exceptions, Finding, Inventory,
    K8sObject, Needs, Outcome, Resource,
};
use serde_json::{Value, json};

/// The allocator of the `scan-job` binary, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The realistic Deployment and its neighbours (ServiceAccount, Service, NetworkPolicy).
fn deployment_inventory() -> Inventory {
    let container = |name: &str, image: &str, port: u16| {
        json!({
            "name": name,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "args": ["--port", port.to_string(), "--log-level=info"],
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "env": [
                {"name": "LOG_FORMAT", "value": "json"},
                {"name": "DB_HOST", "value": "postgres.shop.svc"},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "API_TOKEN", "value": "not-really-a-token"}
            ],
            "envFrom": [{"configMapRef": {"name": "web-config"}}],
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "512Mi"}
            },
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 5},
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 10001,
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
            },
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/web", "readOnly": true},
                {"name": "cache", "mountPath": "/var/cache/web"},
                {"name": "certs", "mountPath": "/etc/certs", "readOnly": true}
            ]
        })
    };
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "8d1f4c1e-0000-4000-8000-000000000001",
            "generation": 3,
            "labels": {"app": "web", "app.kubernetes.io/name": "web", "tier": "frontend"},
            "annotations": {"deployment.kubernetes.io/revision": "3"}
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "frontend", "version": "1.4.2"}},
                "spec": {
                    "serviceAccountName": "web",
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                    "initContainers": [{
                        "name": "migrate",
                        "image": "registry.example.com/shop/migrate:1.4.2",
                        "command": ["/migrate", "up"],
                        "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false}
                    }],
                    "containers": [
                        container("web", "registry.example.com/shop/web:1.4.2", 8080),
                        container("sidecar", "registry.example.com/shop/proxy:2.1.0", 9090),
                        container("metrics", "prom/statsd-exporter:latest", 9102)
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "web-config"}},
                        {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "certs", "secret": {"secretName": "web-tls"}},
                        {"name": "logs", "hostPath": {"path": "/var/log/web", "type": "DirectoryOrCreate"}}
                    ],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}]
                }
            }
        }
    });
    let service_account = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "web", "namespace": "shop"},
        "automountServiceAccountToken": false
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    });
    let network_policy = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}]}],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "postgres"}}}]}]
        }
    });
    objects([deployment, service_account, service, network_policy])
}

fn objects(values: impl IntoIterator<Item = Value>) -> Inventory {
    Inventory::new(
        values
            .into_iter()
            .map(|v| K8sObject::from_value(v).unwrap())
            .collect(),
    )
}

fn pod_spec_value(i: usize, host_network: bool) -> Value {
    json!({
        "serviceAccountName": format!("sa-{}", i % 17),
        "hostNetwork": host_network,
        "containers": [{
            "name": "app",
            "image": format!("registry.example.com/team-{}/app:{}", i % 9, i % 5),
            "env": [{"name": "MODE", "value": "prod"}, {"name": "SECRET_KEY", "value": "x"}],
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": {"privileged": i.is_multiple_of(11), "runAsNonRoot": !i.is_multiple_of(3)},
            "livenessProbe": {"tcpSocket": {"port": 8080}}
        }, {
            "name": "sidecar",
            "image": "envoyproxy/envoy:v1.30",
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]
        }],
        "volumes": [{"name": "data", "emptyDir": {}}]
    })
}

/// 1,000 mixed manifests over 20 namespaces.
fn mixed_inventory() -> Inventory {
    let mut out = Vec::with_capacity(1000);
    for i in 0..1000usize {
        let ns = format!("team-{}", i % 20);
        let name = format!("obj-{i}");
        let labels = json!({"app": name.clone()});
        let template =
            json!({"metadata": {"labels": labels.clone()}, "spec": pod_spec_value(i, i % 13 == 0)});
        let v = match i % 8 {
            0 | 1 => json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": labels.clone()},
                "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": template}}),
            2 => json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": pod_spec_value(i, false)}),
            3 => json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"serviceName": name.clone(), "selector": {"matchLabels": labels}, "template": template}}),
            4 => json!({"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}}),
            5 => json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": if i % 3 == 0 { "LoadBalancer" } else { "ClusterIP" },
                         "selector": {"app": format!("obj-{}", i - 5)}, "ports": [{"port": 80}]}}),
            6 => json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": format!("sa-{}", i % 17), "namespace": ns}}),
            _ if i % 16 == 7 => {
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": format!("role-{i}"), "namespace": ns},
                "rules": [{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "list", if i % 3 == 0 { "*" } else { "watch" }]}]})
            }
            _ => json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("rb-{i}"), "namespace": format!("team-{}", (i - 8) % 20)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{}", i - 8)},
            "subjects": [
                {"kind": "ServiceAccount", "name": format!("sa-{}", i % 17)},
                {"kind": "User", "name": format!("user-{}", i % 7), "apiGroup": "rbac.authorization.k8s.io"}
            ]}),
        };
        out.push(v);
    }
    objects(out)
}

/// A control that does the kind of work real ones do, for the engine-overhead figure.
struct Synthetic {
    meta: &'static ControlMeta,
    variant: usize,
}

const FIELDS: &[&str] = &[
    "privileged",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
];

impl Control for Synthetic {
    fn meta(&self) -> &'static ControlMeta {
        self.meta
    }

    fn evaluate(&self, resource: Resource<'_>, cx: &Context<'_>) -> Outcome {
        let Resource::Object(obj) = resource else {
            return Outcome::NotApplicable;
        };
        let Some(pod) = pod_spec(obj) else {
            return Outcome::Passed;
        };
        let mut findings = Vec::new();
        match self.variant % 4 {
            // Container-level field check; fails on containers without it set to true.
            0 | 1 => {
                let field = FIELDS[self.variant % FIELDS.len()];
                for c in pod.containers(Containers::All.lists()) {
                    let sc = c.value.get("securityContext");
                    if sc.and_then(|s| s.get(field)).and_then(Value::as_bool) != Some(true)
                        && self.variant.is_multiple_of(8)
                    {
                        findings.push(
                            Finding::new(self.meta.rules[0])
                                .fix(c.path(&format!("securityContext.{field}")), "true"),
                        );
                    }
                }
            }
            // Reads a configuration input and compares env names with it.
            2 => {
                let keys = cx.inputs.get("sensitiveKeyNames");
                for c in pod.containers(Containers::Main.lists()) {
                    for (i, env) in c
                        .value
                        .get("env")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        let name = env
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_ascii_lowercase();
                        if self.variant % 16 == 2 && keys.iter().any(|k| name.contains(k.as_str()))
                        {
                            findings.push(
                                Finding::new(self.meta.rules[0])
                                    .review(c.path(&format!("env[{i}]"))),
                            );
                        }
                    }
                }
            }
            // Pod-level check through the inventory (ServiceAccount in the namespace).
            _ => {
                let sa = pod
                    .spec
                    .get("serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                let _found = cx
                    .inventory
                    .of_kind_in("ServiceAccount", obj.namespace_or_default())
                    .any(|o| o.name == sa);
            }
        }
        Outcome::from_findings(findings)
    }
}

fn synthetic_catalog(n: usize) -> Vec<&'static dyn Control> {
    (0..n)
        .map(|i| {
            let meta = synthetic_meta(i, "X");
            let c: &'static dyn Control = Box::leak(Box::new(Synthetic { meta, variant: i }));
            c
        })
        .collect()
}

/// A control that passes at once: what remains is the evaluator's own cost per control.
struct Trivial(&'static ControlMeta);

impl Control for Trivial {
    fn meta(&self) -> &'static ControlMeta {
        self.0
    }

    fn evaluate(&self, _resource: Resource<'_>, _cx: &Context<'_>) -> Outcome {
        Outcome::Passed
    }
}

fn synthetic_meta(i: usize, prefix: &str) -> &'static ControlMeta {
    let id: &'static str = Box::leak(format!("{prefix}-{i:04}").into_boxed_str());
    let inputs: &'static [&'static str] = if i % 4 == 2 {
        &["sensitiveKeyNames", "sensitiveValuesAllowed"]
    } else {
        &[]
    };
    Box::leak(Box::new(ControlMeta {
        id,
        name: "Synthetic control",
        description: "",
        remediation: "",
        base_score: (i % 10) as f64,
        frameworks: &["AllControls"],
        applies: WL7,
        rules: &["synthetic-rule"],
        inputs,
        configuration_required: false,
        needs: if i % 25 == 24 {
            Needs::Integration
        } else {
            Needs::Nothing
        },
    }))
}

fn trivial_catalog(n: usize) -> Vec<&'static dyn Control> {
    (0..n)
        .map(|i| {
            let c: &'static dyn Control = Box::leak(Box::new(Trivial(synthetic_meta(i, "T"))));
            c
        })
        .collect()
}

fn report_context(evaluator: &Evaluator<'_>) -> ReportContext {
    ReportContext {
        install_namespace: "kubevigil".into(),
        cluster_name: "bench".into(),
        controls_hash: report::controls_hash(evaluator),
        scan_time: None,
    }
}

fn evaluator(controls: Vec<&'static dyn Control>) -> Evaluator<'static> {
    Evaluator::new(controls, ControlInputs::default(), Exceptions::none())
}

fn bench_deployment(c: &mut Criterion, group: &str, controls: Vec<&'static dyn Control>) {
    let inventory = deployment_inventory();
    let ev = evaluator(controls);
    let cx = report_context(&ev);
    let mut g = c.benchmark_group(group);
    g.bench_function("evaluate_object", |b| {
        b.iter(|| ev.evaluate_object(black_box(&inventory), black_box(0)))
    });
    g.bench_function("evaluate_object+report", |b| {
        b.iter(|| {
            ev.evaluate_object(black_box(&inventory), black_box(0))
                .map(|r| report::build(&r, &inventory, &cx))
        })
    });
    g.finish();
}

fn deployment(c: &mut Criterion) {
    bench_deployment(c, "deployment", catalog::all());
}

fn overhead(c: &mut Criterion) {
    bench_deployment(c, "engine_overhead_100_trivial", trivial_catalog(100));
    bench_deployment(c, "engine_overhead_100_synthetic", synthetic_catalog(100));
}

fn mixed(c: &mut Criterion) {
    let inventory = mixed_inventory();
    let ev = evaluator(catalog::all());
    let mut g = c.benchmark_group("mixed_1000");
    g.throughput(Throughput::Elements(inventory.objects().len() as u64));
    g.bench_function("evaluate_all", |b| {
        b.iter(|| ev.evaluate_all(black_box(&inventory)))
    });
    g.finish();
}

/// This thread's CPU time in nanoseconds (Linux `schedstat`; updated at scheduler ticks, so
/// only long batches are precise), or `None` where unavailable.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Median wall-clock and CPU time per call of `f`, over `samples` batches of about `batch`
/// each. Batches are sized on CPU time where it is available, so that other processes on the
/// core do not shrink them; the CPU figure is the one to compare on a loaded machine.
fn median_ns(f: impl FnMut(), samples: usize) -> (f64, Option<f64>) {
    median_ns_in(f, samples, Duration::from_millis(100))
}

/// [`median_ns`] with batches of `batch` CPU time.
fn median_ns_in(mut f: impl FnMut(), samples: usize, batch: Duration) -> (f64, Option<f64>) {
    let (start, cpu_start) = (Instant::now(), thread_cpu_ns());
    let mut iters = 0u64;
    loop {
        f();
        iters += 1;
        let spent = match (cpu_start, thread_cpu_ns()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
            _ => start.elapsed(),
        };
        if spent >= batch {
            break;
        }
    }
    let mut wall = Vec::with_capacity(samples);
    let mut cpu = Vec::with_capacity(samples);
    for _ in 0..samples {
        let (t, c) = (Instant::now(), thread_cpu_ns());
        for _ in 0..iters {
            f();
        }
        wall.push(t.elapsed().as_nanos() as f64 / iters as f64);
        if let (Some(c0), Some(c1)) = (c, thread_cpu_ns()) {
            cpu.push(c1.saturating_sub(c0) as f64 / iters as f64);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    (median(wall).unwrap_or(f64::NAN), median(cpu))
}

fn line(label: &str, (wall, cpu): (f64, Option<f64>), unit: f64, unit_name: &str) -> String {
    let cpu = cpu.map_or("n/a".to_string(), |c| {
        format!("{:.1} {unit_name}", c / unit)
    });
    format!(
        "{label:<44} wall {:>9.1} {unit_name}   cpu {cpu:>12}",
        wall / unit
    )
}

/// The plain figures for BENCHMARKS.md.
fn summary() {
    let catalog = catalog::all();
    let inventory = deployment_inventory();
    let ev = evaluator(catalog.clone());
    let cx = report_context(&ev);
    let applicable = ev
        .evaluate_object(&inventory, 0)
        .map_or(0, |r| r.controls.len());
    let per_deployment = |ev: &Evaluator<'_>, cx: &ReportContext| {
        let eval = median_ns(|| drop(black_box(ev.evaluate_object(&inventory, 0))), 15);
        let with_report = median_ns(
            || {
                let r = ev
                    .evaluate_object(&inventory, 0)
                    .map(|r| report::build(&r, &inventory, cx));
                drop(black_box(r));
            },
            15,
        );
        (eval, with_report)
    };
    let (eval, with_report) = per_deployment(&ev, &cx);
    let trivial = evaluator(trivial_catalog(100));
    let (t_eval, t_report) = per_deployment(&trivial, &report_context(&trivial));
    let synthetic = evaluator(synthetic_catalog(100));
    let (s_eval, s_report) = per_deployment(&synthetic, &report_context(&synthetic));
    let mixed = mixed_inventory();
    let n = mixed.objects().len();
    let all = median_ns(|| drop(black_box(ev.evaluate_all(&mixed))), 15);
    let rate = |ns: f64| n as f64 / (ns / 1e9);
    println!();
    println!("== kubevigil engine summary (median per call; cpu = this thread's CPU time) ==");
    println!(
        "catalog: {} controls ({applicable} applicable to the Deployment)",
        catalog.len()
    );
    println!("{}", line("deployment: evaluate_object", eval, 1e3, "us"));
    println!(
        "{}",
        line(
            "deployment: evaluate_object + report::build",
            with_report,
            1e3,
            "us"
        )
    );
    println!(
        "{}",
        line("100 trivial controls: evaluate_object", t_eval, 1e3, "us")
    );
    println!(
        "{}",
        line("100 trivial controls: + report::build", t_report, 1e3, "us")
    );
    println!(
        "{}",
        line("100 synthetic controls: evaluate_object", s_eval, 1e3, "us")
    );
    println!(
        "{}",
        line(
            "100 synthetic controls: + report::build",
            s_report,
            1e3,
            "us"
        )
    );
    println!(
        "{}",
        line(
            &format!("mixed {n} manifests: evaluate_all"),
            all,
            1e6,
            "ms"
        )
    );
    println!(
        "mixed {n} manifests: {:.0} manifests/s (wall), {} manifests/s (cpu)",
        rate(all.0),
        all.1
            .map_or("n/a".to_string(), |c| format!("{:.0}", rate(c)))
    );
}

/// Each control of the catalog alone on the Deployment (an evaluator with that one control),
/// most expensive first: where the per-Deployment time goes. Shorter batches than the summary
/// (30 ms, 5 samples), so single figures are rougher; the sum is close to the full-catalog time
/// plus the evaluator's per-object cost counted once per control.
fn breakdown() {
    let inventory = deployment_inventory();
    let mut rows: Vec<(&'static str, f64)> = catalog::all()
        .into_iter()
        .filter_map(|control| {
            let ev = evaluator(vec![control]);
            ev.evaluate_object(&inventory, 0)?;
            let (wall, cpu) = median_ns_in(
                || drop(black_box(ev.evaluate_object(&inventory, 0))),
                5,
                Duration::from_millis(30),
            );
            Some((control.meta().id, cpu.unwrap_or(wall)))
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    println!();
    println!("== per-control cost on the Deployment (each control alone; cpu, median per call) ==");
    println!(
        "{} applicable controls, sum {:.1} us",
        rows.len(),
        total / 1e3
    );
    for (id, ns) in rows.iter().take(15) {
        println!("{id:<8} {:>7.2} us  {:>5.1}%", ns / 1e3, ns / total * 100.0);
    }
}

criterion_group!(benches, deployment, mixed, overhead);

/// `KUBEVIGIL_BENCH_ITERS=N`: only `evaluate_object` on the Deployment, N times, for
/// `perf stat` or `valgrind --tool=cachegrind` (instruction counts are steadier than times on a
/// shared machine).
fn fixed_iterations() -> bool {
    let Some(n) = std::env::var("KUBEVIGIL_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return false;
    };
    let inventory = deployment_inventory();
    // `KUBEVIGIL_BENCH_CONTROL=C-0012`: that control alone.
    let only = std::env::var("KUBEVIGIL_BENCH_CONTROL").ok();
    let controls = catalog::all()
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|id| c.meta().id == id))
        .collect();
    let ev = evaluator(controls);
    // `KUBEVIGIL_BENCH_REPORT=1`: each evaluation followed by `report::build`.
    let with_report = std::env::var_os("KUBEVIGIL_BENCH_REPORT").is_some_and(|v| v == "1");
    let cx = report_context(&ev);
    let start = Instant::now();
    for _ in 0..n {
        let r = ev.evaluate_object(black_box(&inventory), 0);
        if with_report {
            drop(black_box(r.map(|r| report::build(&r, &inventory, &cx))));
        } else {
            drop(black_box(r));
        }
    }
    println!(
        "{n} x evaluate_object{}: {:.2} us per call",
        if with_report { " + report::build" } else { "" },
        start.elapsed().as_nanos() as f64 / n as f64 / 1e3
    );
    true
}

fn main() {
    if fixed_iterations() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs each benchmark once without `--bench`: no summary then.
    // `KUBEVIGIL_BENCH_NO_SUMMARY=1` leaves them out too, so that a profiler sees only the
    // benchmarks selected by the filter.
    let no_summary = std::env::var_os("KUBEVIGIL_BENCH_NO_SUMMARY").is_some_and(|v| v == "1");
    if std::env::args().any(|a| a == "--bench") && !no_summary {
        summary();
        breakdown();
    }
}
