//! The state machine driven through its messages: startup, dispatch, retries and give-ups,
//! Job collisions and adoption, watch re-lists, the resync.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::watcher;

use super::*;
use crate::dispatch::CreateOutcome;
use crate::error::Error;
use crate::index::{ResultInfo, ResultRef, SourceKind};
use crate::jobs::JobView;

const HASH: &str = "h";
const SCANNER: &str = "v";

fn config(batch: usize, max_jobs: usize) -> Arc<Config> {
    Arc::new(
        Config::parse(
            "t",
            &format!(
                r#"
clusterName: test
continuousScanning:
  matchingRules:
  - {{apiGroups: [apps], apiVersions: [v1], resources: [deployments, replicasets]}}
  - {{apiGroups: [example.com], apiVersions: [v1], resources: [widgets]}}
scanJob: {{image: scan:1, serviceAccountName: sa, batchSize: {batch}, maxConcurrentJobs: {max_jobs}, ttlSecondsAfterFinished: 300, activeDeadlineSeconds: 300, backoffLimit: 2}}
"#
            ),
        )
        .unwrap(),
    )
}

fn kind(k: &str, plural: &str) -> KindInfo {
    KindInfo {
        group: "apps".into(),
        version: "v1".into(),
        kind: k.into(),
        plural: plural.into(),
        namespaced: true,
    }
}

fn spec_of(plural: &str, group: &str) -> KindSpec {
    KindSpec {
        group: group.into(),
        version: "v1".into(),
        resource: plural.into(),
    }
}

struct Harness {
    state: State,
    now: Instant,
    deploy: Arc<KindInfo>,
    rs: Arc<KindInfo>,
    metrics: Metrics,
}

impl Harness {
    fn new(batch: usize, max_jobs: usize) -> Self {
        let now = Instant::now();
        let deploy = kind("Deployment", "deployments");
        let rs = kind("ReplicaSet", "replicasets");
        let found = vec![Arc::new(deploy.clone()), Arc::new(rs.clone())];
        let index = Index::new("kubevigil", &found, SCANNER, HASH);
        let (metrics, _) = Metrics::new();
        let resolved = vec![
            (spec_of("deployments", "apps"), Ok(deploy)),
            (spec_of("replicasets", "apps"), Ok(rs)),
            (
                spec_of("widgets", "example.com"),
                Err(Failure::NotFound(
                    "resource widgets.example.com/v1 not found in API discovery".into(),
                )),
            ),
        ];
        let state = State::new(
            StateSettings::new(config(batch, max_jobs), "kubevigil".into()),
            index,
            resolved,
            metrics.clone(),
            now,
        );
        let (deploy, rs) = (found[0].clone(), found[1].clone());
        Harness {
            state,
            now,
            deploy,
            rs,
            metrics,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn send(&mut self, msg: Msg) -> Vec<Effect> {
        self.state.handle(msg, self.now)
    }

    fn tick(&mut self) -> Vec<Effect> {
        self.state.tick(self.now)
    }

    /// Ticks; every Job it creates is answered as created (UID `uid-<name>`).
    fn dispatched(&mut self) -> Vec<(String, Vec<String>)> {
        let created = jobs(&self.tick());
        for (name, _) in &created {
            self.send(Msg::JobCreated {
                name: name.clone(),
                outcome: CreateOutcome::Created {
                    uid: format!("uid-{name}"),
                },
            });
        }
        created
    }

    fn watch(&mut self, kind: &Arc<KindInfo>, event: WatchEvent) -> Vec<Effect> {
        self.send(Msg::Watch {
            kind: kind.clone(),
            event,
        })
    }

    fn key(&self, kind: &Arc<KindInfo>, ns: &str, name: &str) -> TargetKey {
        TargetKey {
            kind: kind.clone(),
            namespace: Some(ns.into()),
            name: name.into(),
        }
    }

    fn apply(
        &mut self,
        kind: &Arc<KindInfo>,
        ns: &str,
        name: &str,
        meta: ObjectMeta,
    ) -> Vec<Effect> {
        let key = self.key(kind, ns, name);
        self.watch(
            kind,
            WatchEvent::Apply {
                key,
                meta: Box::new(meta),
                binding: None,
                spec_hash: None,
                pod: None,
                init: false,
            },
        )
    }

    /// Jobs listed (none running), both kinds listed with the given deployments.
    fn sync(&mut self, deployments: &[&str]) -> Vec<Effect> {
        let mut effects = self.send(Msg::Jobs(JobEvent::Init));
        effects.extend(self.send(Msg::Jobs(JobEvent::InitDone)));
        let (deploy, rs) = (self.deploy.clone(), self.rs.clone());
        effects.extend(self.watch(&deploy, WatchEvent::Init));
        for name in deployments {
            effects.extend(self.apply(&deploy, "shop", name, meta(name, 1, "1")));
        }
        effects.extend(self.watch(&deploy, WatchEvent::InitDone));
        effects.extend(self.watch(&rs, WatchEvent::Init));
        effects.extend(self.watch(&rs, WatchEvent::InitDone));
        effects
    }
}

fn meta(name: &str, generation: i64, rv: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("shop".into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(generation),
        resource_version: Some(rv.into()),
        ..ObjectMeta::default()
    }
}

fn jobs(effects: &[Effect]) -> Vec<(String, Vec<String>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::CreateJob(job) => Some((
                job.metadata.name.clone().unwrap_or_default(),
                crate::jobs::job_targets(job)
                    .iter()
                    .map(|k| k.name.clone())
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

fn view(name: &str, targets: Vec<TargetKey>, finished: Option<bool>) -> JobView {
    JobView {
        name: name.into(),
        uid: format!("uid-{name}"),
        targets,
        finished,
        deleting: false,
        oom_killed: false,
    }
}

#[test]
fn startup_watches_found_kinds_and_reports_missing_ones() {
    let mut h = Harness::new(50, 5);
    let effects = h.state.start(h.now);
    let starts = effects
        .iter()
        .filter(|e| matches!(e, Effect::StartWatch(_)))
        .count();
    assert_eq!(starts, 2);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::RetryDiscovery(s) if s.resource == "widgets"))
    );
    // No role kinds configured: bindings need not wait.
    assert!(effects.iter().any(|e| matches!(e, Effect::RolesSynced)));
    let reports = h.state.kind_reports();
    let widgets = reports.iter().find(|r| r.resource == "widgets").unwrap();
    assert_eq!(widgets.state, "not-found");
    assert_eq!(
        widgets.message.as_deref(),
        Some("resource widgets.example.com/v1 not found in API discovery")
    );
    assert!(!h.state.initial_sync_done());
}

#[test]
fn initial_backlog_goes_out_in_full_batches_after_the_sync() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    let names: Vec<String> = (0..120).map(|i| format!("d{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // Before the sync is done nothing is dispatched.
    let deploy = h.deploy.clone();
    h.watch(&deploy, WatchEvent::Init);
    h.apply(&deploy, "shop", "d000", meta("d000", 1, "1"));
    assert!(h.dispatched().is_empty());
    let effects = h.sync(&refs);
    assert!(h.state.initial_sync_done());
    assert!(effects.iter().any(|e| matches!(e, Effect::ListResults)));
    let created = h.dispatched();
    let sizes: Vec<usize> = created.iter().map(|(_, t)| t.len()).collect();
    assert_eq!(sizes, vec![50, 50, 20]);
    assert_eq!(h.state.active_jobs(), 3);
    assert_eq!(h.metrics.scans_started.get(), 120);
    assert!(h.dispatched().is_empty(), "all targets are in flight");
}

#[test]
fn dispatch_holds_at_most_max_jobs_and_refills_on_completion() {
    let mut h = Harness::new(1, 2);
    h.state.start(h.now);
    h.sync(&["a", "b", "c"]);
    let first = h.dispatched();
    assert_eq!(first.len(), 2);
    assert!(h.dispatched().is_empty());
    let (name, targets) = first[0].clone();
    let key = h.key(&h.deploy.clone(), "shop", &targets[0]);
    h.advance(Duration::from_secs(3));
    h.send(Msg::Jobs(JobEvent::Apply(view(
        &name,
        vec![key],
        Some(true),
    ))));
    let next = h.dispatched();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, vec!["c".to_string()]);
    assert_eq!(h.metrics.scans_succeeded.get(), 1);
}

#[test]
fn status_only_updates_and_owned_children_start_no_job() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["web"]);
    let created = h.dispatched();
    assert_eq!(created.len(), 1);
    let (name, _) = created[0].clone();
    let web = h.key(&h.deploy.clone(), "shop", "web");
    h.send(Msg::Jobs(JobEvent::Apply(view(
        &name,
        vec![web],
        Some(true),
    ))));
    // Rollout churn: status updates of the Deployment, a new ReplicaSet it owns.
    let deploy = h.deploy.clone();
    let rs = h.rs.clone();
    for rv in 2..10 {
        h.advance(Duration::from_millis(300));
        h.apply(&deploy, "shop", "web", meta("web", 1, &rv.to_string()));
        let mut child = meta("web-7d9f", 1, &rv.to_string());
        child.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: "uid-web".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        h.apply(&rs, "shop", "web-7d9f", child);
        assert!(h.dispatched().is_empty());
    }
    // A spec change (generation 2) is one scan.
    h.apply(&deploy, "shop", "web", meta("web", 2, "20"));
    h.advance(Duration::from_secs(3));
    assert_eq!(h.dispatched().len(), 1);
}

#[test]
fn failed_scans_retry_alone_then_are_reported() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["a", "b"]);
    let (name, _) = h.dispatched()[0].clone();
    let a = h.key(&h.deploy.clone(), "shop", "a");
    let b = h.key(&h.deploy.clone(), "shop", "b");
    h.send(Msg::Jobs(JobEvent::Apply(view(
        &name,
        vec![a.clone(), b.clone()],
        Some(false),
    ))));
    assert_eq!(h.metrics.scan_retries.get(), 2);
    // Retries go one target per Job, so that a bad target cannot fail the others again.
    h.advance(Duration::from_secs(300));
    let retries = h.dispatched();
    assert_eq!(retries.len(), 2);
    let mut reported = Vec::new();
    for (name, targets) in retries {
        let (key, ok) = if targets[0] == "a" {
            (a.clone(), false)
        } else {
            (b.clone(), true)
        };
        reported.extend(h.send(Msg::Jobs(JobEvent::Apply(view(&name, vec![key], Some(ok))))));
    }
    // a fails its third and fourth attempts: then it is reported, not retried.
    for _ in 0..2 {
        h.advance(Duration::from_secs(300));
        let created = h.dispatched();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].1, vec!["a".to_string()]);
        reported.extend(h.send(Msg::Jobs(JobEvent::Apply(view(
            &created[0].0,
            vec![a.clone()],
            Some(false),
        )))));
    }
    let failures: Vec<&TargetKey> = reported
        .iter()
        .filter_map(|e| match e {
            Effect::ReportFailure {
                key, attempts: 4, ..
            } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(failures, vec![&a]);
    assert_eq!(h.metrics.scans_failed.get(), 1);
    assert_eq!(h.metrics.scans_succeeded.get(), 1);
    h.advance(Duration::from_secs(600));
    assert!(h.dispatched().is_empty(), "left to the next resync");
}

#[test]
fn job_name_collisions() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["a"]);
    let a = h.key(&h.deploy.clone(), "shop", "a");
    let (name, _) = jobs(&h.tick())[0].clone();
    let old = |finished| JobView {
        name: name.clone(),
        uid: "uid-old".into(),
        targets: vec![a.clone()],
        finished,
        deleting: false,
        oom_killed: false,
    };
    // Events of the older, finished Job of that name (being deleted by the conflict
    // handling) are not this create's outcome.
    assert!(
        h.send(Msg::Jobs(JobEvent::Apply(old(Some(false)))))
            .is_empty()
    );
    assert!(
        h.send(Msg::Jobs(JobEvent::Delete(old(Some(false)))))
            .is_empty()
    );
    assert_eq!(h.metrics.scan_retries.get(), 0);
    assert_eq!(h.state.active_jobs(), 1);
    // The conflict handling deleted that finished Job: requeued shortly.
    h.send(Msg::JobCreated {
        name: name.clone(),
        outcome: CreateOutcome::FinishedDeleted,
    });
    assert_eq!(h.state.active_jobs(), 0);
    assert!(jobs(&h.tick()).is_empty());
    h.advance(COLLISION_REQUEUE);
    let again = jobs(&h.tick());
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, name, "same batch, same deterministic name");
    // This time one is running: its targets stay in flight until it finishes.
    h.send(Msg::JobCreated {
        name: name.clone(),
        outcome: CreateOutcome::Running {
            uid: "uid-running".into(),
        },
    });
    assert_eq!(h.state.active_jobs(), 1);
    h.advance(Duration::from_secs(60));
    assert!(jobs(&h.tick()).is_empty());
    let mut running = old(Some(true));
    running.uid = "uid-running".into();
    h.send(Msg::Jobs(JobEvent::Apply(running)));
    assert_eq!(h.state.active_jobs(), 0);
    assert_eq!(h.metrics.scans_succeeded.get(), 1);
}

#[test]
fn running_jobs_are_adopted_at_startup() {
    let mut h = Harness::new(50, 1);
    h.state.start(h.now);
    let a = h.key(&h.deploy.clone(), "shop", "a");
    h.send(Msg::Jobs(JobEvent::Init));
    h.send(Msg::Jobs(JobEvent::Apply(view(
        "kubevigil-scan-old",
        vec![a.clone()],
        None,
    ))));
    h.send(Msg::Jobs(JobEvent::Apply(view(
        "kubevigil-scan-done",
        vec![a.clone()],
        Some(true),
    ))));
    let effects = h.sync(&["a", "b"]);
    assert!(effects.iter().any(|e| matches!(e, Effect::ListResults)));
    assert!(h.state.queue().in_flight(&a));
    assert_eq!(h.state.active_jobs(), 1);
    assert!(
        h.dispatched().is_empty(),
        "the adopted Job fills the only slot"
    );
    h.send(Msg::Jobs(JobEvent::Delete(view(
        "kubevigil-scan-old",
        vec![a.clone()],
        Some(true),
    ))));
    // `a` was listed while the adopted Job ran: it is scanned again after it (the old Job
    // may have read an older version), together with `b`.
    assert_eq!(h.dispatched()[0].1, vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn deletes_missed_during_a_watch_outage_are_found_by_the_relist() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["keep", "gone"]);
    let deploy = h.deploy.clone();
    h.watch(&deploy, WatchEvent::Init);
    h.apply(&deploy, "shop", "keep", meta("keep", 1, "1"));
    let effects = h.watch(&deploy, WatchEvent::InitDone);
    let deleted: Vec<&ResultRef> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::DeleteResults(r) => Some(r),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        deleted,
        vec![&ResultRef {
            namespace: "shop".into(),
            name: "deployment-gone".into()
        }]
    );
    assert_eq!(h.state.index().target_count(), 1);
}

#[test]
fn target_deleted_during_its_scan_loses_late_results() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["a"]);
    let (name, _) = h.dispatched()[0].clone();
    let a = h.key(&h.deploy.clone(), "shop", "a");
    let deploy = h.deploy.clone();
    let effects = h.watch(
        &deploy,
        WatchEvent::Delete {
            key: a.clone(),
            binding: None,
        },
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::DeleteResults(_)))
    );
    let effects = h.send(Msg::Jobs(JobEvent::Apply(view(&name, vec![a], Some(true)))));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::DeleteResults(_))),
        "results written by the finishing scan are deleted again"
    );
    assert!(h.dispatched().is_empty());
}

#[test]
fn resync_rescans_missing_and_collects_only_orphans_of_listed_kinds() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["a"]);
    h.tick();
    let info = |kind: &str, group: &str| ResultInfo {
        fingerprint: "x".into(),
        scanner_version: SCANNER.into(),
        controls_hash: HASH.into(),
        related_inputs: None,
        source: Some(SourceKind {
            group: group.into(),
            kind: kind.into(),
        }),
    };
    let r = |name: &str| ResultRef {
        namespace: "shop".into(),
        name: name.into(),
    };
    let snapshot = ResultsSnapshot {
        results: HashMap::from([
            (r("deployment-orphan"), info("Deployment", "apps")),
            (r("widget-w"), info("Widget", "example.com")),
            (r("statefulset-s"), info("StatefulSet", "apps")),
        ]),
        summaries: BTreeSet::from(["old-ns".to_string()]),
        ..ResultsSnapshot::default()
    };
    let effects = h.send(Msg::ResultsListed(Ok(snapshot)));
    let deleted: Vec<String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::DeleteResults(r) => Some(r),
            _ => None,
        })
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    // Widgets are not discovered (not found): their results are orphans too; a kind that is
    // no longer watched at all likewise.
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    // Summaries of namespaces with results and of existing summaries are recomputed.
    h.advance(Duration::from_secs(3));
    let summarized: BTreeSet<String> = h
        .tick()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Summarize(ns) => Some(ns),
            _ => None,
        })
        .collect();
    assert_eq!(
        summarized,
        BTreeSet::from(["old-ns".to_string(), "shop".to_string()])
    );
    // Next resync after the period.
    h.advance(Duration::from_secs(600));
    assert!(h.tick().iter().any(|e| matches!(e, Effect::ListResults)));
}

#[test]
fn scans_finished_while_results_were_listed_are_not_rescanned() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["a", "b"]);
    h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
    // Dispatch just before the next resync is due.
    h.advance(Duration::from_secs(599));
    let (name, _) = h.dispatched()[0].clone();
    let a = h.key(&h.deploy.clone(), "shop", "a");
    let b = h.key(&h.deploy.clone(), "shop", "b");
    h.advance(Duration::from_secs(1));
    assert!(h.tick().iter().any(|e| matches!(e, Effect::ListResults)));
    // The Job finishes while the list runs; the list does not have the new results.
    h.send(Msg::Jobs(JobEvent::Apply(view(
        &name,
        vec![a.clone(), b],
        Some(true),
    ))));
    h.advance(Duration::from_secs(10));
    h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
    assert!(!h.state.queue().is_queued(&a));
    // The next resync (with the results still missing) does rescan.
    h.advance(Duration::from_secs(600));
    h.tick();
    h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
    assert!(h.state.queue().is_queued(&a));
}

#[test]
fn orphans_wait_for_a_kind_that_is_still_listing() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.send(Msg::Jobs(JobEvent::InitDone));
    let deploy = h.deploy.clone();
    h.watch(&deploy, WatchEvent::Init);
    h.watch(&deploy, WatchEvent::InitDone);
    // replicasets fail with a server error before listing: the initial sync proceeds.
    let rs = h.rs.clone();
    let effects = h.watch(
        &rs,
        WatchEvent::Error(watcher::Error::WatchError(Box::new(kube::core::Status {
            code: 500,
            message: "boom".into(),
            ..kube::core::Status::default()
        }))),
    );
    assert!(effects.iter().any(|e| matches!(e, Effect::ListResults)));
    let snapshot = ResultsSnapshot {
        results: HashMap::from([(
            ResultRef {
                namespace: "shop".into(),
                name: "replicaset-x".into(),
            },
            ResultInfo {
                fingerprint: "x".into(),
                scanner_version: SCANNER.into(),
                controls_hash: HASH.into(),
                related_inputs: None,
                source: Some(SourceKind {
                    group: "apps".into(),
                    kind: "ReplicaSet".into(),
                }),
            },
        )]),
        summaries: BTreeSet::new(),
        ..ResultsSnapshot::default()
    };
    let effects = h.send(Msg::ResultsListed(Ok(snapshot)));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::DeleteResults(_)))
    );
    let reports = h.state.kind_reports();
    assert_eq!(
        reports
            .iter()
            .find(|r| r.resource == "replicasets")
            .map(|r| r.state.as_str()),
        Some("error")
    );
}

#[test]
fn completed_scans_refresh_their_namespace_summary() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["a"]);
    h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
    let (name, _) = h.dispatched().first().cloned().unwrap_or_default();
    h.advance(Duration::from_secs(5));
    h.tick();
    let a = h.key(&h.deploy.clone(), "shop", "a");
    h.send(Msg::Jobs(JobEvent::Apply(view(&name, vec![a], Some(true)))));
    assert!(!h.tick().iter().any(|e| matches!(e, Effect::Summarize(_))));
    h.advance(Duration::from_secs(2));
    let effects = h.tick();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Summarize(ns) if ns == "shop"))
    );
}

fn api_error(code: u16) -> kube::Error {
    kube::Error::Api(Box::new(kube::core::Status {
        code,
        message: format!("mock {code}"),
        ..kube::core::Status::default()
    }))
}

/// The create of the first Job (targets `a` and `b`) fails with `code`; the effects of that
/// answer.
fn create_fails_with(h: &mut Harness, code: u16) -> Vec<Effect> {
    h.state.start(h.now);
    h.sync(&["a", "b"]);
    let (name, _) = jobs(&h.tick())[0].clone();
    h.send(Msg::JobCreated {
        name: name.clone(),
        outcome: CreateOutcome::Failed(Error::CreateJob {
            job: format!("kubevigil/{name}"),
            source: api_error(code),
        }),
    })
}

#[rstest::rstest]
#[case::forbidden(403)]
#[case::invalid(422)]
fn a_refused_job_create_gives_its_targets_up_at_once(#[case] code: u16) {
    let mut h = Harness::new(50, 5);
    let effects = create_fails_with(&mut h, code);
    let reported: Vec<(&str, u32)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::ReportFailure { key, attempts, .. } => Some((key.name.as_str(), *attempts)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reported,
        vec![("a", 1), ("b", 1)],
        "a ScanFailed event each"
    );
    assert_eq!(h.metrics.scans_failed.get(), 2);
    assert_eq!(h.metrics.scan_retries.get(), 0);
    assert_eq!(h.state.active_jobs(), 0);
    // Not retried: left to the next resync (or the target's next change).
    for _ in 0..5 {
        h.advance(Duration::from_secs(300));
        assert!(h.dispatched().is_empty(), "{code} must not be retried");
    }
}

#[rstest::rstest]
#[case::throttled(429)]
#[case::server_error(500)]
#[case::unavailable(503)]
fn a_transient_job_create_error_is_retried_with_backoff(#[case] code: u16) {
    let mut h = Harness::new(50, 5);
    let effects = create_fails_with(&mut h, code);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ReportFailure { .. })),
        "{code} must not be given up"
    );
    assert_eq!(h.metrics.scan_retries.get(), 2);
    assert_eq!(h.metrics.scans_failed.get(), 0);
    // Nothing before the first backoff delay (2 s), then one Job per target.
    assert!(h.dispatched().is_empty());
    h.advance(Duration::from_secs(2));
    let retries = h.dispatched();
    let mut targets: Vec<String> = retries.into_iter().flat_map(|(_, t)| t).collect();
    targets.sort();
    assert_eq!(targets, vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn a_permanent_results_list_error_waits_for_the_next_resync() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["a"]);
    let forbidden = Error::List {
        what: "workloadconfigurationscans in all namespaces".into(),
        source: api_error(403),
    };
    h.send(Msg::ResultsListed(Err(forbidden)));
    h.advance(Duration::from_secs(60));
    assert!(!h.tick().iter().any(|e| matches!(e, Effect::ListResults)));
    h.advance(Duration::from_secs(600));
    assert!(h.tick().iter().any(|e| matches!(e, Effect::ListResults)));
    // A transient one is retried after 30 s.
    let unavailable = Error::List {
        what: "workloadconfigurationscans in all namespaces".into(),
        source: api_error(503),
    };
    h.send(Msg::ResultsListed(Err(unavailable)));
    h.advance(Duration::from_secs(30));
    assert!(h.tick().iter().any(|e| matches!(e, Effect::ListResults)));
}

mod oom;

mod related {
    use kubevigil_engine::related::{PodFacts, RelatedFacts, find_kind, watched_kinds};
    use serde_json::json;

    use super::*;

    fn pod(app: &str) -> PodFacts {
        PodFacts::of_object(
            "Deployment",
            &json!({"spec": {"template": {"metadata": {"labels": {"app": app}}}}}),
        )
        .unwrap()
    }

    fn np(name: &str, rv: &str, app: &str) -> RelatedFacts {
        RelatedFacts::of(
            find_kind("networking.k8s.io", "NetworkPolicy").unwrap(),
            Some("shop"),
            name,
            rv,
            &json!({"podSelector": {"matchLabels": {"app": app}}}),
        )
    }

    fn related(h: &mut Harness, facts: RelatedFacts, delete: bool) {
        let kind = facts.kind;
        let event = if delete {
            RelatedEvent::Delete(facts)
        } else {
            RelatedEvent::Apply(facts)
        };
        h.send(Msg::Related { kind, event });
    }

    #[test]
    fn related_changes_rescan_what_they_select_and_the_resync_repairs_missed_ones() {
        let mut h = Harness::new(50, 5);
        h.state.start(h.now);
        let deploy = h.deploy.clone();
        h.send(Msg::Jobs(JobEvent::Init));
        h.send(Msg::Jobs(JobEvent::InitDone));
        h.watch(&deploy, WatchEvent::Init);
        for name in ["a", "b"] {
            let key = h.key(&deploy, "shop", name);
            h.watch(
                &deploy,
                WatchEvent::Apply {
                    key,
                    meta: Box::new(meta(name, 1, "1")),
                    binding: None,
                    spec_hash: None,
                    pod: Some(pod(name)),
                    init: true,
                },
            );
        }
        h.watch(&deploy, WatchEvent::InitDone);
        let rs = h.rs.clone();
        h.watch(&rs, WatchEvent::Init);
        h.watch(&rs, WatchEvent::InitDone);
        let (a, b) = (h.key(&deploy, "shop", "a"), h.key(&deploy, "shop", "b"));
        // The startup resync finds no results; the initial scans of a and b go out and finish.
        h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
        let jobs = h.dispatched();
        assert_eq!(jobs.len(), 1);
        h.send(Msg::Jobs(JobEvent::Apply(view(
            &jobs[0].0,
            vec![a.clone(), b.clone()],
            Some(true),
        ))));
        assert!(!h.state.queue().is_queued(&a));

        // The first list of the related kinds queues nothing (the resync compares instead).
        let np_kind = find_kind("networking.k8s.io", "NetworkPolicy").unwrap();
        h.send(Msg::Related {
            kind: np_kind,
            event: RelatedEvent::Init,
        });
        related(&mut h, np("old", "5", "a"), false);
        h.send(Msg::Related {
            kind: np_kind,
            event: RelatedEvent::InitDone,
        });
        for k in watched_kinds().filter(|k| k.kind != "NetworkPolicy") {
            h.send(Msg::Related {
                kind: k,
                event: RelatedEvent::Missing,
            });
        }
        assert!(!h.state.queue().is_queued(&a) && !h.state.queue().is_queued(&b));

        // The resync: a's result was written before "old" existed (no related inputs), b's
        // matches the caches (no related object selects b).
        let fp_a = h
            .state
            .index()
            .expected_fingerprint(&a)
            .unwrap()
            .to_string();
        let fp_b = h
            .state
            .index()
            .expected_fingerprint(&b)
            .unwrap()
            .to_string();
        let info = |fp: String, related_inputs: Option<String>| ResultInfo {
            fingerprint: fp,
            scanner_version: SCANNER.into(),
            controls_hash: HASH.into(),
            related_inputs,
            source: Some(SourceKind {
                group: "apps".into(),
                kind: "Deployment".into(),
            }),
        };
        let r = |name: &str| ResultRef {
            namespace: "shop".into(),
            name: format!("deployment-{name}"),
        };
        let b_inputs = Some(kubevigil_engine::related::inputs_hash([]));
        h.advance(Duration::from_secs(600));
        assert!(h.tick().iter().any(|e| matches!(e, Effect::ListResults)));
        let snapshot = ResultsSnapshot {
            results: HashMap::from([(r("a"), info(fp_a, None)), (r("b"), info(fp_b, b_inputs))]),
            ..ResultsSnapshot::default()
        };
        h.send(Msg::ResultsListed(Ok(snapshot)));
        assert!(h.state.queue().is_queued(&a), "a is stale by relation");
        assert!(!h.state.queue().is_queued(&b), "b is current");
        assert_eq!(h.metrics.related_stale.get(), 1);

        // A live change rescans exactly what the policy selects, before and after.
        related(&mut h, np("new", "6", "b"), false);
        assert!(h.state.queue().is_queued(&b));
        assert_eq!(h.metrics.related_rescans.get(), 1);
        related(&mut h, np("new", "6", "b"), true);
        assert_eq!(h.metrics.related_rescans.get(), 2);
        // A policy that selects nothing watched rescans nothing.
        related(&mut h, np("none", "7", "zzz"), false);
        assert_eq!(h.metrics.related_rescans.get(), 2);
    }

    #[test]
    fn rescan_after_sweeps_every_target_spread_over_the_period() {
        let mut h = Harness::new(50, 5);
        let cfg = (*config(50, 5)).clone();
        let mut cfg = cfg;
        cfg.continuous_scanning.rescan_after = Some(Duration::from_secs(60));
        let (metrics, _) = Metrics::new();
        let deploy = h.deploy.clone();
        let index = Index::new("kubevigil", &[deploy.clone(), h.rs.clone()], SCANNER, HASH);
        h.state = State::new(
            StateSettings::new(Arc::new(cfg), "kubevigil".into()),
            index,
            vec![
                (spec_of("deployments", "apps"), Ok((*deploy).clone())),
                (spec_of("replicasets", "apps"), Ok((*h.rs).clone())),
            ],
            metrics.clone(),
            h.now,
        );
        h.state.start(h.now);
        let names: Vec<String> = (0..20).map(|i| format!("w{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        h.sync(&refs);
        h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
        // The initial scans go out and finish.
        for (job, targets) in h.dispatched() {
            let keys = targets.iter().map(|n| h.key(&deploy, "shop", n)).collect();
            h.send(Msg::Jobs(JobEvent::Apply(view(&job, keys, Some(true)))));
        }
        // Over one period, every target is queued again, a few at a time.
        let mut rounds = Vec::new();
        for _ in 0..60 {
            h.advance(Duration::from_secs(1));
            let before = metrics.age_rescans.get();
            for (job, targets) in h.dispatched() {
                let keys = targets.iter().map(|n| h.key(&deploy, "shop", n)).collect();
                h.send(Msg::Jobs(JobEvent::Apply(view(&job, keys, Some(true)))));
            }
            let queued = metrics.age_rescans.get() - before;
            if queued > 0 {
                rounds.push(queued);
            }
        }
        assert_eq!(metrics.age_rescans.get(), 20, "{rounds:?}");
        assert!(
            rounds.len() >= 10 && rounds.iter().all(|&n| n <= 2),
            "{rounds:?}"
        );
    }
}

#[test]
fn results_of_namespaces_that_left_the_scope_are_deleted() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["a"]);
    let r = |ns: &str, name: &str| ResultRef {
        namespace: ns.into(),
        name: name.into(),
    };
    let snapshot = ResultsSnapshot {
        dropped_namespaces: BTreeSet::from(["gone-a".to_string(), "gone-b".to_string()]),
        out_of_scope: BTreeSet::from([r("gone-a", "deployment-x"), r("gone-a", "deployment-y")]),
        ..ResultsSnapshot::default()
    };
    let effects = h.send(Msg::ResultsListed(Ok(snapshot)));
    let deleted: BTreeSet<ResultRef> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::DeleteResults(r) => Some(r.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from([r("gone-a", "deployment-x"), r("gone-a", "deployment-y")])
    );
    // The namespace without results left has its summary recomputed (deleted) at once; the
    // other once its deletes are done.
    h.advance(Duration::from_secs(3));
    let summarized: BTreeSet<String> = h
        .tick()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Summarize(ns) => Some(ns),
            _ => None,
        })
        .collect();
    assert!(summarized.contains("gone-b"), "{summarized:?}");
    assert!(!summarized.contains("gone-a"), "{summarized:?}");
    h.send(Msg::ResultsDeleted {
        deleted: 4,
        namespaces: BTreeSet::from(["gone-a".to_string()]),
    });
    h.advance(Duration::from_secs(3));
    assert!(
        h.tick()
            .iter()
            .any(|e| matches!(e, Effect::Summarize(ns) if ns == "gone-a"))
    );
}
