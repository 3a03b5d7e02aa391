//! Pure helpers of the benchmark: percentiles, `/proc` parsing, Prometheus text parsing and the
//! printed table. Unit-tested; the measurements in the parent module feed them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The `p`-th percentile (0..=100) of `samples` by nearest rank; `None` when empty.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Resident memory of a process from `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcMem {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size since the process started.
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` from the text of `/proc/<pid>/status`.
pub fn parse_proc_status(text: &str) -> Option<ProcMem> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some(ProcMem {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// User plus system CPU time in clock ticks from the text of `/proc/<pid>/stat` (fields 14 and
/// 15; the command name in parentheses may contain spaces, so fields count from the last `)`).
pub fn parse_proc_stat_ticks(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field N is at index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
pub const USER_HZ: f64 = 100.0;

/// The labels and value of one sample line of the Prometheus text format.
pub fn parse_sample(line: &str) -> Option<(&str, BTreeMap<&str, &str>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name_labels, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match name_labels.split_once('{') {
        None => (name_labels, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let mut labels = BTreeMap::new();
            let mut rest = body;
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"")?;
                let end = after.find('"')?;
                labels.insert(key.trim_start_matches(','), &after[..end]);
                rest = after[end + 1..].trim_start_matches(',');
            }
            (name, labels)
        }
    };
    Some((name, labels, value))
}

/// The value of an unlabelled metric (counters may carry the OpenMetrics `_total` suffix).
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let total = format!("{name}_total");
    text.lines()
        .filter_map(parse_sample)
        .find(|(n, labels, _)| labels.is_empty() && (*n == name || *n == total))
        .map(|(_, _, v)| v)
}

/// API server requests by class, summed from `apiserver_request_total` samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestCounts {
    /// Every request.
    pub total: f64,
    /// Requests on kubevigil.io resources (reads and writes of results).
    pub results: f64,
    /// Writes (create, patch, apply, update, delete) of kubevigil.io resources.
    pub result_writes: f64,
    /// Requests on Jobs and Pods (scan Jobs, their pods, their status updates).
    pub jobs_pods: f64,
    /// LIST and WATCH requests of every resource.
    pub list_watch: f64,
    /// Requests on kubevigil.io resources by `"<verb> <resource>"` (`POST
    /// workloadconfigurationscans`, `APPLY workloadconfigurationscansummaries`...).
    pub result_verbs: BTreeMap<String, f64>,
}

impl RequestCounts {
    /// Sums the `apiserver_request_total` samples of the API server's `/metrics` text.
    pub fn from_metrics(text: &str) -> Self {
        let mut c = RequestCounts::default();
        for (name, labels, v) in text.lines().filter_map(parse_sample) {
            if name != "apiserver_request_total" {
                continue;
            }
            let verb = labels.get("verb").copied().unwrap_or("");
            let group = labels.get("group").copied().unwrap_or("");
            let resource = labels.get("resource").copied().unwrap_or("");
            c.total += v;
            if group == "kubevigil.io" {
                c.results += v;
                *c.result_verbs
                    .entry(format!("{verb} {resource}"))
                    .or_default() += v;
                if matches!(
                    verb,
                    "POST" | "PATCH" | "APPLY" | "PUT" | "DELETE" | "DELETECOLLECTION"
                ) {
                    c.result_writes += v;
                }
            }
            if matches!(resource, "jobs" | "pods") {
                c.jobs_pods += v;
            }
            if matches!(verb, "LIST" | "WATCH") {
                c.list_watch += v;
            }
        }
        c
    }

    /// `self - before`, field by field.
    pub fn since(&self, before: &RequestCounts) -> RequestCounts {
        RequestCounts {
            total: self.total - before.total,
            results: self.results - before.results,
            result_writes: self.result_writes - before.result_writes,
            jobs_pods: self.jobs_pods - before.jobs_pods,
            list_watch: self.list_watch - before.list_watch,
            result_verbs: self
                .result_verbs
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v - before.result_verbs.get(k).copied().unwrap_or(0.0),
                    )
                })
                .filter(|(_, v)| *v != 0.0)
                .collect(),
        }
    }
}

impl RequestCounts {
    /// Requests on kubevigil.io resource `resource` with one of `verbs`.
    pub fn result_requests(&self, verbs: &[&str], resource: &str) -> f64 {
        verbs
            .iter()
            .map(|verb| {
                self.result_verbs
                    .get(&format!("{verb} {resource}"))
                    .copied()
                    .unwrap_or(0.0)
            })
            .sum()
    }

    /// `VERB resource: n` of every kubevigil.io request, one string.
    pub fn result_verbs_line(&self) -> String {
        self.result_verbs
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A printed table: a header and rows of cells, columns padded to the widest cell.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// As a Markdown table (pasteable into BENCHMARKS.md, readable in a terminal).
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![3usize; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in width.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                let _ = write!(s, " {c:<w$} |");
            }
            s.push('\n');
            s
        };
        let mut out = line(&self.header);
        out.push('|');
        for w in &width {
            let _ = write!(out, "{}|", "-".repeat(w + 2));
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// `1.23 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `38.4 MiB`.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let s: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&s, 50.0), Some(ms(50)));
        assert_eq!(percentile(&s, 95.0), Some(ms(95)));
        assert_eq!(percentile(&s, 99.0), Some(ms(99)));
        assert_eq!(percentile(&s, 100.0), Some(ms(100)));
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
        assert_eq!(percentile(&[ms(1), ms(9)], 0.0), Some(ms(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn proc_status_and_stat() {
        let status =
            "Name:\tcontroller\nVmPeak:\t  900 kB\nVmHWM:\t   41234 kB\nVmRSS:\t   38000 kB\n";
        assert_eq!(
            parse_proc_status(status),
            Some(ProcMem {
                rss_kib: 38000,
                hwm_kib: 41234
            })
        );
        assert_eq!(parse_proc_status("Name: x\n"), None);
        let stat = "4242 (tokio (rt) x) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_proc_stat_ticks(stat), Some(281));
        assert_eq!(parse_proc_stat_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn prometheus_samples_and_request_classes() {
        let text = "# HELP apiserver_request_total x\n\
            apiserver_request_total{code=\"200\",group=\"kubevigil.io\",resource=\"workloadconfigurationscans\",verb=\"APPLY\",version=\"v1\"} 40\n\
            apiserver_request_total{code=\"200\",group=\"kubevigil.io\",resource=\"workloadconfigurationscans\",verb=\"LIST\",version=\"v1\"} 2\n\
            apiserver_request_total{code=\"201\",group=\"batch\",resource=\"jobs\",verb=\"POST\",version=\"v1\"} 3\n\
            apiserver_request_total{code=\"200\",group=\"\",resource=\"pods\",verb=\"WATCH\",version=\"v1\"} 1\n\
            apiserver_request_duration_seconds_count{verb=\"GET\"} 99\n";
        let c = RequestCounts::from_metrics(text);
        assert_eq!(
            c,
            RequestCounts {
                total: 46.0,
                results: 42.0,
                result_writes: 40.0,
                jobs_pods: 4.0,
                list_watch: 3.0,
                result_verbs: [
                    ("APPLY workloadconfigurationscans".to_string(), 40.0),
                    ("LIST workloadconfigurationscans".to_string(), 2.0),
                ]
                .into(),
            }
        );
        let d = c.since(&RequestCounts {
            total: 6.0,
            result_verbs: [("LIST workloadconfigurationscans".to_string(), 2.0)].into(),
            ..RequestCounts::default()
        });
        assert_eq!(d.total, 40.0);
        assert_eq!(
            d.result_verbs_line(),
            "APPLY workloadconfigurationscans: 40"
        );
        assert_eq!(
            c.result_requests(&["APPLY", "POST"], "workloadconfigurationscans"),
            40.0
        );
        let m = "kubevigil_queue_depth 3\nkubevigil_scans_started_total 12\nx{a=\"b\"} 1\n";
        assert_eq!(metric_value(m, "kubevigil_queue_depth"), Some(3.0));
        assert_eq!(metric_value(m, "kubevigil_scans_started"), Some(12.0));
        assert_eq!(metric_value(m, "x"), None);
    }

    #[test]
    fn table_renders_markdown() {
        let mut t = Table::new(&["figure", "value"]);
        t.row(vec!["p50".into(), secs(ms(1500))]);
        t.row(vec!["rss".into(), mib(2048)]);
        assert_eq!(
            t.render(),
            "| figure | value   |\n|--------|---------|\n| p50    | 1.50 s  |\n| rss    | 2.0 MiB |\n"
        );
    }
}
