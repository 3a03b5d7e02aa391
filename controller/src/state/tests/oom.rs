//! A scan Job whose container was OOMKilled: its targets are given up at once with the reason,
//! and the resync leaves them alone until they change.

use super::*;

#[test]
fn an_oom_killed_job_is_given_up_at_once_and_not_rescanned_until_its_target_changes() {
    let mut h = Harness::new(50, 5);
    h.state.start(h.now);
    h.sync(&["a", "b"]);
    h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
    let (name, _) = h.dispatched()[0].clone();
    let a = h.key(&h.deploy.clone(), "shop", "a");
    let b = h.key(&h.deploy.clone(), "shop", "b");
    let mut failed = view(&name, vec![a.clone(), b.clone()], Some(false));
    failed.oom_killed = true;
    let effects = h.send(Msg::Jobs(JobEvent::Apply(failed)));
    let reported: Vec<(&str, GiveUpReason)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::ReportFailure { key, reason, .. } => Some((key.name.as_str(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reported,
        vec![
            ("a", GiveUpReason::OomKilled),
            ("b", GiveUpReason::OomKilled)
        ]
    );
    assert_eq!(h.metrics.scan_jobs_oom_killed.get(), 1);
    assert_eq!(
        h.metrics.scan_retries.get(),
        0,
        "an OOM kill is not retried"
    );
    h.advance(Duration::from_secs(300));
    assert!(h.dispatched().is_empty());

    // The resync finds both without results, and rescans neither: nothing changed.
    h.advance(Duration::from_secs(600));
    assert!(h.tick().iter().any(|e| matches!(e, Effect::ListResults)));
    h.send(Msg::ResultsListed(Ok(ResultsSnapshot::default())));
    assert!(!h.state.queue().is_queued(&a));
    assert!(!h.state.queue().is_queued(&b));

    // A change of a (a new generation) scans it again; b stays given up.
    let deploy = h.deploy.clone();
    h.apply(&deploy, "shop", "a", meta("a", 2, "50"));
    h.advance(Duration::from_secs(3));
    let again = h.dispatched();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, vec!["a".to_string()]);
}
