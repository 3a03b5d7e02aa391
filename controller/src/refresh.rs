//! `rescanAfter`, pure: every target is rescanned at least once per period, spread evenly over
//! it and rate-limited. Time is passed in.
//!
//! The targets are swept in their sorted order, a chunk at a time: a chunk of
//! `clamp(ceil(N / 10), 1, batchSize)` targets every `period × chunk / N`, so that a period
//! holds at least ten evenly spaced rounds (a small cluster's rescans are spread out, not one
//! burst) and a large cluster's chunks fill whole scan Jobs (10,000 targets, 24 h and batches of
//! 400: 25 Jobs a day, one every 57.6 minutes). A sweep always covers every target once within a
//! period, whatever the events scanned meanwhile: an event-driven scan does not postpone a
//! target's turn, so that no result is ever older than the period plus one chunk interval.
//! Targets added during a sweep are reached by it when they sort after the cursor, or by the
//! next sweep otherwise.

use std::time::{Duration, Instant};

use kubevigil_crds::target::TargetKey;

/// Fewest evenly spaced rounds per period.
const ROUNDS: usize = 10;
/// Shortest time between two rounds (the rate limit of a short period on many targets).
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The rescan sweep.
#[derive(Debug)]
pub struct Refresh {
    period: Duration,
    batch: usize,
    next: Instant,
    /// The last target of the previous chunk (the sweep resumes after it).
    cursor: Option<TargetKey>,
}

impl Refresh {
    /// A sweep over `period` in chunks of at most `batch` targets; the first round is due one
    /// interval after `now` (the initial scans come first).
    pub fn new(period: Duration, batch: usize, now: Instant) -> Self {
        Refresh {
            period,
            batch: batch.max(1),
            next: now + MIN_INTERVAL,
            cursor: None,
        }
    }

    /// When the next round is due.
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// The chunk size and round interval for `n` targets.
    pub fn pace(&self, n: usize) -> (usize, Duration) {
        let n = n.max(1);
        let chunk = n.div_ceil(ROUNDS).clamp(1, self.batch);
        let interval = self
            .period
            .mul_f64(chunk as f64 / n as f64)
            .max(MIN_INTERVAL);
        (chunk, interval)
    }

    /// The targets to rescan now (a chunk of `sorted`, after the cursor, wrapping around), or
    /// none when the next round is not due yet.
    pub fn due(&mut self, now: Instant, sorted: &[TargetKey]) -> Vec<TargetKey> {
        if now < self.next {
            return Vec::new();
        }
        let (chunk, interval) = self.pace(sorted.len());
        self.next = now + interval;
        if sorted.is_empty() {
            return Vec::new();
        }
        let start = match &self.cursor {
            Some(c) => sorted.partition_point(|k| k <= c),
            None => 0,
        };
        let out: Vec<TargetKey> = sorted
            .iter()
            .cycle()
            .skip(start % sorted.len())
            .take(chunk.min(sorted.len()))
            .cloned()
            .collect();
        self.cursor = out.last().cloned();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use kubevigil_crds::target::KindInfo;

    use super::*;

    fn keys(n: usize) -> Vec<TargetKey> {
        let kind = Arc::new(KindInfo {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            namespaced: true,
        });
        let mut out: Vec<TargetKey> = (0..n)
            .map(|i| TargetKey {
                kind: kind.clone(),
                namespace: Some("shop".into()),
                name: format!("w{i:05}"),
            })
            .collect();
        out.sort();
        out
    }

    /// Runs the sweep for `span` with a tick every second; the times each target was due.
    fn run(
        period: Duration,
        batch: usize,
        n: usize,
        span: Duration,
    ) -> HashMap<String, Vec<Duration>> {
        let t0 = Instant::now();
        let mut r = Refresh::new(period, batch, t0);
        let targets = keys(n);
        let mut seen: HashMap<String, Vec<Duration>> = HashMap::new();
        let mut t = Duration::ZERO;
        while t <= span {
            for k in r.due(t0 + t, &targets) {
                seen.entry(k.name).or_default().push(t);
            }
            t += Duration::from_secs(1);
        }
        seen
    }

    #[test]
    fn every_target_within_the_period_spread_out() {
        // The demo's size: about 30 targets, rescanAfter 1m.
        let period = Duration::from_secs(60);
        let seen = run(period, 50, 30, Duration::from_secs(180));
        assert_eq!(seen.len(), 30);
        for (name, times) in &seen {
            for pair in times.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(gap <= period + Duration::from_secs(7), "{name}: {times:?}");
            }
            assert!(
                times[0] <= period + Duration::from_secs(1),
                "{name}: {times:?}"
            );
        }
        // Spread: ten rounds of three in the first period, not one burst.
        let first_round: usize = seen
            .values()
            .filter(|t| t[0] <= Duration::from_secs(2))
            .count();
        assert_eq!(first_round, 3);
    }

    #[test]
    fn pace_at_ten_thousand_targets_a_day() {
        let r = Refresh::new(Duration::from_secs(86_400), 50, Instant::now());
        let (chunk, interval) = r.pace(10_000);
        assert_eq!(chunk, 50);
        assert_eq!(interval, Duration::from_secs(432));
        // A short period on many targets is rate-limited to a round a second.
        let fast = Refresh::new(Duration::from_secs(60), 50, Instant::now());
        assert_eq!(fast.pace(10_000), (50, MIN_INTERVAL));
    }

    #[test]
    fn the_sweep_wraps_and_follows_a_changing_set() {
        let t0 = Instant::now();
        let mut r = Refresh::new(Duration::from_secs(10), 2, t0);
        let all = keys(4);
        let names = |v: Vec<TargetKey>| v.into_iter().map(|k| k.name).collect::<Vec<_>>();
        assert!(
            r.due(t0, &all).is_empty(),
            "not due before the first interval"
        );
        let mut t = t0 + MIN_INTERVAL;
        assert_eq!(names(r.due(t, &all)), ["w00000"]);
        t = r.next_due();
        assert_eq!(names(r.due(t, &all)), ["w00001"]);
        // w00002 is gone: the sweep resumes after the cursor.
        let fewer: Vec<TargetKey> = all.iter().filter(|k| k.name != "w00002").cloned().collect();
        t = r.next_due();
        assert_eq!(names(r.due(t, &fewer)), ["w00003"]);
        t = r.next_due();
        assert_eq!(names(r.due(t, &fewer)), ["w00000"]);
        assert!(r.due(t, &[]).is_empty());
    }
}
