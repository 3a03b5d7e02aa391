//! The scan queue, and the per-namespace debouncer of summaries. Pure: time is passed in,
//! nothing sleeps.
//!
//! The queue: one entry per target, latest event wins, never two scans of one target at a time,
//! retries with exponential backoff.
//!
//! Timing: an event on an idle target is ready at once (low latency); further events on the
//! same target within the debounce period push it back by the debounce (a trailing debounce that
//! coalesces bursts), but never beyond `max_wait` after the first of them. An event that arrives
//! while the target's scan runs marks it dirty: it is scanned again right after that scan.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder as _, ExponentialBuilder};

/// Settings of the queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueSettings {
    /// Quiet period that coalesces events on one target.
    pub debounce: Duration,
    /// Longest a target may wait because events keep coming.
    pub max_wait: Duration,
    /// Scan attempts before a failure is reported and the target left to the next resync.
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl QueueSettings {
    /// Settings derived from the debounce: max wait 5× the debounce, 4 attempts, retries from
    /// 2 s up to 2 min.
    pub fn with_debounce(debounce: Duration) -> Self {
        QueueSettings {
            debounce,
            max_wait: debounce * 5,
            max_attempts: 4,
            retry_min: Duration::from_secs(2),
            retry_max: Duration::from_secs(120),
        }
    }

    /// The delay before retry number `attempt` (1-based), from backon's exponential backoff.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.retry_min)
            .with_max_delay(self.retry_max)
            .with_factor(2.0)
            .without_max_times()
            .build();
        let n = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        delays.nth(n).unwrap_or(self.retry_max)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting to be scanned at `due`.
    Pending { due: Instant, since: Instant },
    /// A Job is scanning it; `dirty` when a newer event arrived meanwhile.
    InFlight { dirty: bool },
    /// Scanned recently; kept until `until` so that a new event is debounced.
    Recent { until: Instant },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    state: State,
    attempts: u32,
}

/// A target handed out for scanning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready<K> {
    /// The target.
    pub key: K,
    /// Failed attempts so far (0 on a first scan).
    pub attempts: u32,
}

/// What became of a target after its scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Done (or queued again because it changed during the scan).
    Done,
    /// Will be retried after the backoff.
    Retrying {
        /// The retry's number.
        attempt: u32,
        /// Its delay.
        delay: Duration,
    },
    /// Failed `max_attempts` times: report it; the next resync tries again.
    GaveUp {
        /// Attempts made.
        attempts: u32,
    },
}

/// The queue of targets to scan.
#[derive(Debug)]
pub struct Queue<K> {
    settings: QueueSettings,
    entries: HashMap<K, Entry>,
}

impl<K: Clone + Eq + Hash + Ord> Queue<K> {
    /// An empty queue.
    pub fn new(settings: QueueSettings) -> Self {
        Queue {
            settings,
            entries: HashMap::new(),
        }
    }

    /// Records an event on `key` at `now`.
    pub fn enqueue(&mut self, key: K, now: Instant) {
        let debounce = self.settings.debounce;
        let max_wait = self.settings.max_wait;
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(
                    key,
                    Entry {
                        state: State::Pending {
                            due: now,
                            since: now,
                        },
                        attempts: 0,
                    },
                );
            }
            Some(entry) => {
                entry.state = match entry.state {
                    State::Pending { since, due } => State::Pending {
                        due: (now + debounce).min(since + max_wait).max(due),
                        since,
                    },
                    State::InFlight { .. } => State::InFlight { dirty: true },
                    State::Recent { until } if now >= until => State::Pending {
                        due: now,
                        since: now,
                    },
                    State::Recent { .. } => State::Pending {
                        due: now + debounce,
                        since: now,
                    },
                };
                entry.attempts = 0;
            }
        }
    }

    /// Records an event on `key` at `now` that comes in bursts of many objects (related
    /// objects: a release applies dozens at once): an idle target waits `settle` instead of
    /// starting at once, and each further event of the burst moves it to `settle` after that
    /// event (within `max_wait`), so that the burst's targets become ready together and share
    /// one Job. Otherwise as [`Queue::enqueue`].
    pub fn enqueue_settled(&mut self, key: K, now: Instant, settle: Duration) {
        let max_wait = self.settings.max_wait;
        let idle = match self.entries.get(&key) {
            None => true,
            Some(e) => matches!(e.state, State::Recent { until } if now >= until),
        };
        if idle {
            self.entries.insert(
                key,
                Entry {
                    state: State::Pending {
                        due: now + settle,
                        since: now,
                    },
                    attempts: 0,
                },
            );
            return;
        }
        match self.entries.get_mut(&key) {
            Some(Entry {
                state: State::Pending { due, since },
                attempts,
            }) => {
                *due = (*due).max((now + settle).min(*since + max_wait));
                *attempts = 0;
            }
            _ => self.enqueue(key, now),
        }
    }

    /// Forgets a target (it was deleted): a pending scan is dropped. A scan in flight finishes,
    /// and its completion is then ignored.
    pub fn forget(&mut self, key: &K) {
        if let Some(e) = self.entries.get(key)
            && matches!(e.state, State::InFlight { .. })
        {
            return;
        }
        self.entries.remove(key);
    }

    /// Marks a target in flight without a prior event (a Job found running at startup).
    pub fn mark_in_flight(&mut self, key: K) {
        self.entries.insert(
            key,
            Entry {
                state: State::InFlight { dirty: false },
                attempts: 0,
            },
        );
    }

    /// Up to `limit` ready targets, oldest due first; they are now in flight.
    pub fn take_ready(&mut self, now: Instant, limit: usize) -> Vec<Ready<K>> {
        let mut ready: Vec<(Instant, K, u32)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| match e.state {
                State::Pending { due, .. } if due <= now => Some((due, k.clone(), e.attempts)),
                _ => None,
            })
            .collect();
        ready.sort();
        ready.truncate(limit);
        for (_, k, _) in &ready {
            if let Some(e) = self.entries.get_mut(k) {
                e.state = State::InFlight { dirty: false };
            }
        }
        ready
            .into_iter()
            .map(|(_, key, attempts)| Ready { key, attempts })
            .collect()
    }

    /// Records the end of a target's scan.
    pub fn complete(&mut self, key: &K, succeeded: bool, now: Instant) -> Completion {
        let Some(entry) = self.entries.get_mut(key) else {
            return Completion::Done;
        };
        let State::InFlight { dirty } = entry.state else {
            return Completion::Done;
        };
        if succeeded || dirty {
            entry.attempts = 0;
            entry.state = if dirty {
                State::Pending {
                    due: now,
                    since: now,
                }
            } else {
                State::Recent {
                    until: now + self.settings.debounce,
                }
            };
            return Completion::Done;
        }
        entry.attempts += 1;
        let attempt = entry.attempts;
        if attempt >= self.settings.max_attempts {
            self.entries.remove(key);
            return Completion::GaveUp { attempts: attempt };
        }
        let delay = self.settings.retry_delay(attempt);
        entry.state = State::Pending {
            due: now + delay,
            since: now,
        };
        Completion::Retrying { attempt, delay }
    }

    /// Gives a target in flight up without further attempts (its scan was refused for good):
    /// its entry is dropped, so the next event or resync queues it afresh.
    pub fn give_up(&mut self, key: &K) -> Completion {
        match self.entries.get(key) {
            Some(e) if matches!(e.state, State::InFlight { .. }) => {
                let attempts = e.attempts + 1;
                self.entries.remove(key);
                Completion::GaveUp { attempts }
            }
            _ => Completion::Done,
        }
    }

    /// Drops `Recent` entries whose debounce has passed (bounded memory).
    pub fn prune(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| !matches!(e.state, State::Recent { until } if until <= now));
    }

    /// Counts: (ready now, pending later, in flight).
    pub fn counts(&self, now: Instant) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for e in self.entries.values() {
            match e.state {
                State::Pending { due, .. } if due <= now => c.0 += 1,
                State::Pending { .. } => c.1 += 1,
                State::InFlight { .. } => c.2 += 1,
                State::Recent { .. } => {}
            }
        }
        c
    }

    /// When the oldest ready target became ready, if any.
    pub fn oldest_ready(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.state {
                State::Pending { due, .. } if due <= now => Some(due),
                _ => None,
            })
            .min()
    }

    /// The next time a pending target becomes ready, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.state {
                State::Pending { due, .. } => Some(due),
                _ => None,
            })
            .min()
    }

    /// Hands a target that was taken for scanning back without a scan (its Job could not be
    /// started for a reason that is not the target's): pending again at `due`, attempts kept.
    pub fn release(&mut self, key: &K, due: Instant) {
        if let Some(e) = self.entries.get_mut(key)
            && matches!(e.state, State::InFlight { .. })
        {
            e.state = State::Pending { due, since: due };
        }
    }

    /// Whether a target is waiting to be scanned or being scanned.
    pub fn is_queued(&self, key: &K) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| matches!(e.state, State::Pending { .. } | State::InFlight { .. }))
    }

    /// Whether a target is being scanned.
    #[cfg(test)]
    pub(crate) fn in_flight(&self, key: &K) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| matches!(e.state, State::InFlight { .. }))
    }
}

/// Per-key trailing debounce with at most one run per key at a time. Pure: time is passed in.
#[derive(Debug)]
pub struct Debouncer {
    delay: Duration,
    max_wait: Duration,
    pending: HashMap<String, (Instant, Instant)>,
    running: HashSet<String>,
    rerun: HashSet<String>,
}

impl Debouncer {
    /// A debouncer: a key runs `delay` after its last mark, at most `max_wait` after its first.
    pub fn new(delay: Duration, max_wait: Duration) -> Self {
        Debouncer {
            delay,
            max_wait,
            pending: HashMap::new(),
            running: HashSet::new(),
            rerun: HashSet::new(),
        }
    }

    /// Marks a key dirty at `now`.
    pub fn mark(&mut self, key: &str, now: Instant) {
        if self.running.contains(key) {
            self.rerun.insert(key.to_string());
            return;
        }
        let (delay, max_wait) = (self.delay, self.max_wait);
        let entry = self.pending.entry(key.to_string()).or_insert((now, now));
        entry.0 = (now + delay).min(entry.1 + max_wait);
    }

    /// Keys whose quiet period has passed; they are now running.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        for k in &due {
            self.pending.remove(k);
            self.running.insert(k.clone());
        }
        due
    }

    /// A run finished; a key marked meanwhile (or whose run failed) is marked again.
    pub fn done(&mut self, key: &str, now: Instant, ok: bool) {
        self.running.remove(key);
        let rerun = self.rerun.remove(key);
        if !ok {
            // Retry after a pause rather than immediately.
            self.pending
                .entry(key.to_string())
                .or_insert((now + Duration::from_secs(10), now));
        } else if rerun {
            self.mark(key, now);
        }
    }

    /// When the next key becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|(d, _)| *d).min()
    }
}

/// Whether the dispatcher should start a Job now: a full batch is ready, or nothing else is
/// about to become ready, or the oldest ready target has waited the batching window.
pub fn should_dispatch(
    ready: usize,
    pending_later: usize,
    oldest_ready_age: Duration,
    batch_size: usize,
    batch_window: Duration,
) -> bool {
    ready > 0 && (ready >= batch_size || pending_later == 0 || oldest_ready_age >= batch_window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> QueueSettings {
        QueueSettings::with_debounce(Duration::from_secs(2))
    }

    #[test]
    fn idle_target_is_ready_at_once_and_bursts_coalesce() {
        let t0 = Instant::now();
        let mut q = Queue::new(settings());
        q.enqueue("a", t0);
        assert_eq!(q.take_ready(t0, 10).len(), 1);
        assert_eq!(q.complete(&"a", true, t0), Completion::Done);
        // A second event within the debounce waits for the quiet period.
        q.enqueue("a", t0 + Duration::from_millis(500));
        q.enqueue("a", t0 + Duration::from_millis(900));
        assert!(q.take_ready(t0 + Duration::from_secs(2), 10).is_empty());
        assert_eq!(q.take_ready(t0 + Duration::from_millis(2900), 10).len(), 1);
    }

    #[test]
    fn a_burst_of_related_events_makes_its_targets_ready_together() {
        let t0 = Instant::now();
        let settle = Duration::from_millis(500);
        let mut q = Queue::new(settings());
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Five targets, each touched twice during a 300 ms burst.
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let i = i as u64;
            q.enqueue_settled(*key, ms(i * 30), settle);
            q.enqueue_settled(*key, ms(150 + i * 30), settle);
        }
        // None is ready during the burst or right after it.
        assert!(q.take_ready(ms(400), 10).is_empty());
        // All are ready once the last event has settled: one batch.
        assert_eq!(q.take_ready(ms(270 + 500), 10).len(), 5);
        // A target being scanned is marked dirty, as with any event.
        q.enqueue_settled("a", ms(800), settle);
        assert_eq!(q.complete(&"a", true, ms(900)), Completion::Done);
        assert!(q.is_queued(&"a"));
    }

    #[test]
    fn latest_event_wins_one_entry_per_key() {
        let t0 = Instant::now();
        let mut q = Queue::new(settings());
        for i in 0..100 {
            q.enqueue("a", t0 + Duration::from_millis(i));
        }
        assert_eq!(q.counts(t0 + Duration::from_secs(60)), (1, 0, 0));
    }

    #[test]
    fn max_wait_bounds_a_never_quiet_target() {
        let t0 = Instant::now();
        let mut q = Queue::new(settings());
        q.enqueue("a", t0);
        q.take_ready(t0, 1);
        q.complete(&"a", true, t0);
        for i in 1..100u64 {
            q.enqueue("a", t0 + Duration::from_millis(i * 500));
        }
        // First event of the burst at 0.5 s: ready at the latest 0.5 s + 10 s.
        assert_eq!(q.take_ready(t0 + Duration::from_millis(10_500), 1).len(), 1);
    }

    #[test]
    fn never_two_scans_at_once_and_dirty_rescans_after() {
        let t0 = Instant::now();
        let mut q = Queue::new(settings());
        q.enqueue("a", t0);
        assert_eq!(q.take_ready(t0, 10).len(), 1);
        q.enqueue("a", t0 + Duration::from_millis(10));
        assert!(q.take_ready(t0 + Duration::from_secs(30), 10).is_empty());
        assert!(q.in_flight(&"a"));
        q.complete(&"a", true, t0 + Duration::from_secs(31));
        assert_eq!(q.take_ready(t0 + Duration::from_secs(31), 10).len(), 1);
    }

    #[test]
    fn failures_back_off_then_give_up() {
        let t0 = Instant::now();
        let mut q = Queue::new(settings());
        q.enqueue("a", t0);
        let mut now = t0;
        let mut delays = Vec::new();
        loop {
            let got = q.take_ready(now, 1);
            assert_eq!(got.len(), 1, "target must be ready again after its backoff");
            match q.complete(&"a", false, now) {
                Completion::Retrying { delay, attempt } => {
                    assert_eq!(attempt as usize, delays.len() + 1);
                    assert!(
                        q.take_ready(now + delay - Duration::from_millis(1), 1)
                            .is_empty()
                    );
                    delays.push(delay);
                    now += delay;
                }
                Completion::GaveUp { attempts } => {
                    assert_eq!(attempts, 4);
                    break;
                }
                Completion::Done => panic!("a failure is never Done"),
            }
        }
        assert_eq!(
            delays,
            vec![
                Duration::from_secs(2),
                Duration::from_secs(4),
                Duration::from_secs(8)
            ]
        );
        assert_eq!(q.counts(now), (0, 0, 0));
    }

    #[test]
    fn release_keeps_attempts_and_requeues() {
        let t0 = Instant::now();
        let mut q = Queue::new(settings());
        q.enqueue("a", t0);
        q.take_ready(t0, 1);
        assert!(matches!(
            q.complete(&"a", false, t0),
            Completion::Retrying { attempt: 1, .. }
        ));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(q.take_ready(later, 1)[0].attempts, 1);
        assert!(q.is_queued(&"a"));
        q.release(&"a", later + Duration::from_secs(1));
        assert!(!q.in_flight(&"a") && q.is_queued(&"a"));
        assert!(q.take_ready(later, 1).is_empty());
        let again = q.take_ready(later + Duration::from_secs(1), 1);
        assert_eq!(
            again,
            vec![Ready {
                key: "a",
                attempts: 1
            }]
        );
        // Releasing a target that is not in flight changes nothing.
        q.complete(&"a", true, later);
        q.release(&"a", later);
        assert!(!q.is_queued(&"a"));
    }

    #[test]
    fn dispatch_policy() {
        let w = Duration::from_millis(200);
        assert!(!should_dispatch(0, 0, Duration::ZERO, 50, w));
        assert!(
            should_dispatch(1, 0, Duration::ZERO, 50, w),
            "idle: go at once"
        );
        assert!(
            !should_dispatch(10, 5, Duration::ZERO, 50, w),
            "backlog building: wait"
        );
        assert!(should_dispatch(10, 5, w, 50, w), "window passed");
        assert!(
            should_dispatch(50, 100, Duration::ZERO, 50, w),
            "full batch"
        );
    }

    #[test]
    fn debounce_trails_and_never_runs_a_key_twice_at_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Debouncer::new(2 * s, 10 * s);
        d.mark("a", t0);
        d.mark("a", t0 + s);
        assert!(d.take_due(t0 + 2 * s).is_empty());
        assert_eq!(d.next_due(), Some(t0 + 3 * s));
        assert_eq!(d.take_due(t0 + 3 * s), vec!["a".to_string()]);
        // Marked while running: runs again after.
        d.mark("a", t0 + 3 * s);
        assert_eq!(d.next_due(), None);
        d.done("a", t0 + 4 * s, true);
        assert_eq!(d.take_due(t0 + 6 * s), vec!["a".to_string()]);
        // A failed run is retried after a pause.
        d.done("a", t0 + 6 * s, false);
        assert!(d.take_due(t0 + 7 * s).is_empty());
        assert_eq!(d.take_due(t0 + 16 * s), vec!["a".to_string()]);
        d.done("a", t0 + 16 * s, true);
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn debounce_is_bounded_by_max_wait() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Debouncer::new(2 * s, 5 * s);
        for i in 0..20 {
            d.mark("busy", t0 + i * s / 2);
        }
        assert_eq!(d.next_due(), Some(t0 + 5 * s));
    }
}
