//! Rendering for people: the scan table, the summary table and the control catalog, laid out
//! for a 100-column terminal. Colour is optional and off unless asked for ([`Style`]).

use std::fmt::Write as _;
use std::io::Write;

use kubevigil_crds::identity::Target;
use std::collections::{BTreeMap, HashMap};

use kubevigil_crds::{
    CatalogText, ControlSummary, RulePath, ScannedControl, Severity, Status,
    WorkloadConfigurationScan, WorkloadConfigurationScanSpec, WorkloadConfigurationScanSummary,
    WorkloadConfigurationScanSummarySpec,
};
use serde::Serialize;

use crate::offline::{ScanOutcome, ScannedResource, Totals, severity_rank};
use kubevigil_engine::{Applies, Control, Needs};

/// Width the tables are laid out for.
pub const WIDTH: usize = 100;

/// How text is decorated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Whether to use ANSI colours.
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    /// `text` (a severity name, possibly padded) in the severity's colour.
    fn severity(self, severity: Severity, text: &str) -> String {
        let code = match severity {
            Severity::Critical => "1;31",
            Severity::High => "31",
            Severity::Medium => "33",
            Severity::Low => "36",
            Severity::Unknown => return text.to_string(),
        };
        self.paint(code, text)
    }
}

/// `kind namespace/name`, or for a triplet the subject with its binding and role.
pub fn target_label(target: &Target) -> String {
    fn qualified(namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        }
    }
    match target {
        Target::Object(o) => format!("{} {}", o.kind, qualified(o.namespace.as_deref(), &o.name)),
        Target::Triplet {
            subject,
            role,
            binding,
        } => format!(
            "{} {} via {} {} -> {} {}",
            subject.kind.as_str(),
            qualified(subject.namespace.as_deref(), &subject.name),
            if binding.cluster {
                "ClusterRoleBinding"
            } else {
                "RoleBinding"
            },
            qualified(binding.namespace.as_deref(), &binding.name),
            if role.cluster { "ClusterRole" } else { "Role" },
            qualified(role.namespace.as_deref(), &role.name),
        ),
    }
}

/// A percentage without useless decimals: `100`, `66.67`, `12.5`.
fn percent(score: f64) -> String {
    let s = format!("{score:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Lays `pieces` out greedily on lines of at most `width` characters (trailing spaces do not
/// count and are dropped). A piece longer than `width` is cut.
fn wrap_pieces<'a>(pieces: impl IntoIterator<Item = &'a str>, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    // Room for a whole line at once (it is cleared, not dropped, between lines).
    let mut line = String::with_capacity(width + 16);
    // `line`'s length in characters, kept as pieces are added rather than counted again for
    // each piece (a path has dozens of pieces).
    let mut line_chars = 0usize;
    for piece in pieces {
        let fits = line_chars + piece.trim_end().chars().count() <= width;
        if !fits && !line.is_empty() {
            lines.push(line.trim_end().to_string());
            line.clear();
            line_chars = 0;
        }
        let mut rest = piece;
        while line.is_empty() && rest.trim_end().chars().count() > width {
            let cut = rest
                .char_indices()
                .nth(width)
                .map_or(rest.len(), |(i, _)| i);
            lines.push(rest[..cut].to_string());
            rest = &rest[cut..];
        }
        line.push_str(rest);
        line_chars += rest.chars().count();
    }
    if !line.trim_end().is_empty() || lines.is_empty() {
        lines.push(line.trim_end().to_string());
    }
    lines
}

/// Wraps `text` at `width`; a line may start at a character `c` following `prev` when
/// `starts_line(prev, c)`.
fn wrap(text: &str, width: usize, starts_line: impl Fn(char, char) -> bool) -> Vec<String> {
    if fits_one_line(text, width) {
        return vec![text.trim_end().to_string()];
    }
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev = None;
    for (i, c) in text.char_indices() {
        if prev.is_some_and(|p| starts_line(p, c)) {
            pieces.push(&text[start..i]);
            start = i;
        }
        prev = Some(c);
    }
    pieces.push(&text[start..]);
    wrap_pieces(pieces, width)
}

/// Word wrap: lines break after spaces.
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    wrap(text, width, |prev, c| prev == ' ' && c != ' ')
}

/// Path wrap: lines break before `.` and `[`.
fn wrap_path(text: &str, width: usize) -> Vec<String> {
    wrap(text, width, |_, c| c == '.' || c == '[')
}

/// Resource-label wrap: lines break after a space, `/` or `-`.
fn wrap_label(text: &str, width: usize) -> Vec<String> {
    wrap(text, width, |prev, c| {
        matches!(prev, ' ' | '/' | '-') && c != ' '
    })
}

/// Whether `text` is one line at `width` whatever the wrapping: no more bytes (so no more
/// characters) than the width. [`wrap_pieces`] then returns `text` without trailing spaces.
fn fits_one_line(text: &str, width: usize) -> bool {
    text.len() <= width
}

/// A way of wrapping text at a width ([`wrap_words`], [`wrap_path`], [`wrap_label`]).
type Wrap = fn(&str, usize) -> Vec<String>;

/// Pushes `text` wrapped by `wrap` at `width`, as [`push_wrapped`]; a text that fits is pushed
/// as it is, without building its list of lines (most control names and paths fit).
fn push_wrapped_text(
    out: &mut String,
    first: &str,
    text: &str,
    (wrap, width): (Wrap, usize),
    indent: usize,
) {
    if fits_one_line(text, width) {
        out.push_str(first);
        out.push_str(text.trim_end());
        out.push('\n');
    } else {
        push_wrapped(out, first, wrap(text, width), indent);
    }
}

/// Pushes wrapped `lines`: the first after `first`, the others indented by `indent` columns.
fn push_wrapped(out: &mut String, first: &str, lines: Vec<String>, indent: usize) {
    for (i, line) in lines.into_iter().enumerate() {
        if i == 0 {
            out.push_str(first);
        } else {
            push_spaces(out, indent);
        }
        out.push_str(&line);
        out.push('\n');
    }
}

/// What a path line says: the fix (`fixPath=value`), else the path to delete or review; its
/// text is written into `text` (cleared first), its label returned.
fn path_line(p: &RulePath, text: &mut String) -> Option<&'static str> {
    text.clear();
    let label = if let Some(fix) = &p.fix_path {
        let value = p.fix_path_value.as_deref().unwrap_or("YOUR_VALUE");
        text.push_str(fix);
        text.push('=');
        text.push_str(value);
        "fix"
    } else if let Some(d) = &p.delete_path {
        text.push_str(d);
        "delete"
    } else if let Some(r) = &p.review_path {
        text.push_str(r);
        "review"
    } else {
        text.push_str(p.failed_path.as_deref()?);
        "failed"
    };
    if let Some(id) = &p.resource_id {
        text.push_str("  (on ");
        text.push_str(id);
        text.push(')');
    }
    Some(label)
}

/// The failed controls of a result, Critical first, then by ID.
fn failed_controls(r: &ScannedResource) -> Vec<&ScannedControl> {
    let mut failed: Vec<&ScannedControl> = r
        .objects
        .scan
        .spec
        .controls
        .values()
        .filter(|c| c.status.status == Status::Failed)
        .collect();
    failed.sort_by(|a, b| {
        severity_rank(b.severity.severity)
            .cmp(&severity_rank(a.severity.severity))
            .then_with(|| a.control_id.cmp(&b.control_id))
    });
    failed
}

fn severity_counts(s: &kubevigil_crds::SeveritySummary, style: Style) -> (String, usize) {
    let mut parts = vec![
        (Severity::Critical, "critical", s.critical),
        (Severity::High, "high", s.high),
        (Severity::Medium, "medium", s.medium),
        (Severity::Low, "low", s.low),
    ];
    if s.unknown > 0 {
        parts.push((Severity::Unknown, "unknown", s.unknown));
    }
    let plain: Vec<String> = parts.iter().map(|(_, n, c)| format!("{n} {c}")).collect();
    let painted: Vec<String> = parts
        .iter()
        .zip(&plain)
        .map(|((sev, _, c), text)| {
            if *c > 0 {
                style.severity(*sev, text)
            } else {
                text.clone()
            }
        })
        .collect();
    let width = plain.join("  ").chars().count();
    (painted.join("  "), width)
}

/// Header of one resource: its label, then right-aligned its score and failed-control counts.
fn push_header(out: &mut String, r: &ScannedResource, style: Style) {
    let label = target_label(&r.target);
    let spec = &r.objects.summary.spec;
    let (counts, counts_width) = severity_counts(&spec.severities, style);
    let score = format!("score {}", percent(spec.compliance_score));
    let stats_width = score.chars().count() + 2 + counts_width;
    let stats = format!("{score}  {counts}");
    let label_width = label.chars().count();
    if label_width + 2 + stats_width <= WIDTH {
        let pad = WIDTH - label_width - stats_width;
        let _ = writeln!(out, "{}{}{stats}", style.bold(&label), " ".repeat(pad));
    } else {
        for line in wrap_label(&label, WIDTH) {
            let _ = writeln!(out, "{}", style.bold(&line));
        }
        let pad = WIDTH.saturating_sub(stats_width);
        let _ = writeln!(out, "{}{stats}", " ".repeat(pad));
    }
}

const ID_COL: usize = 2;
const SEVERITY_COL: usize = 10;
const NAME_COL: usize = 20;
const PATH_LABEL_COL: usize = 10;
const PATH_COL: usize = 18;

/// Appends `n` spaces.
fn push_spaces(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Appends `text` left-aligned in `width` characters, as `{text:<width$}` would (without
/// going through the formatting machinery, a few times per failed control).
fn push_padded(out: &mut String, text: &str, width: usize) {
    out.push_str(text);
    push_spaces(out, width.saturating_sub(text.chars().count()));
}

fn push_failed_control(out: &mut String, c: &ScannedControl, style: Style) {
    let severity = c.severity.severity;
    let mut sev = String::with_capacity(NAME_COL);
    push_padded(&mut sev, severity.as_str(), NAME_COL - SEVERITY_COL - 1);
    let mut first = String::with_capacity(NAME_COL + 16);
    push_spaces(&mut first, ID_COL);
    push_padded(&mut first, &c.control_id, SEVERITY_COL - ID_COL - 1);
    first.push(' ');
    first.push_str(&style.severity(severity, &sev));
    first.push(' ');
    push_wrapped_text(
        out,
        &first,
        &c.name,
        (wrap_words, WIDTH - NAME_COL),
        NAME_COL,
    );
    // The lines printed, to print each once: their texts one after the other in `seen_text`,
    // and per line its label and where its text is there (no `String` per line).
    let mut seen: Vec<(&str, usize, usize)> = Vec::new();
    let mut seen_text = String::new();
    let mut text = String::new();
    let mut lead = String::with_capacity(PATH_COL);
    for rule in &c.rules {
        for p in &rule.paths {
            let Some(label) = path_line(p, &mut text) else {
                continue;
            };
            let printed = |&(l, start, end): &(&str, usize, usize)| {
                l == label && seen_text.get(start..end) == Some(text.as_str())
            };
            if seen.iter().any(printed) {
                continue;
            }
            lead.clear();
            push_spaces(&mut lead, PATH_LABEL_COL);
            push_padded(&mut lead, label, PATH_COL - PATH_LABEL_COL);
            push_wrapped_text(
                out,
                &lead,
                &text,
                (wrap_path, WIDTH - PATH_COL - 2),
                PATH_COL + 2,
            );
            let start = seen_text.len();
            seen_text.push_str(&text);
            seen.push((label, start, seen_text.len()));
        }
    }
}

/// The clauses of the closing totals line.
fn totals_clauses(t: &Totals) -> Vec<String> {
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let f = &t.failed;
    let mut failed = format!(
        "failed controls: {} critical, {} high, {} medium, {} low",
        f.critical, f.high, f.medium, f.low
    );
    if f.unknown > 0 {
        let _ = write!(failed, ", {} unknown", f.unknown);
    }
    let mut clauses = vec![
        format!(
            "{} scanned ({} failing)",
            plural(t.resources, "resource", "resources"),
            t.with_failures
        ),
        failed,
        format!("{} skipped", t.skipped),
    ];
    if t.excepted > 0 {
        clauses.push(format!("{} passed with exceptions", t.excepted));
    }
    if t.unreadable > 0 {
        clauses.push(format!(
            "{} unreadable (errors on stderr)",
            plural(t.unreadable, "input", "inputs")
        ));
    }
    clauses
}

/// The totals, `; `-separated, wrapped between clauses.
fn push_totals(out: &mut String, totals: &Totals, style: Style) {
    let clauses = totals_clauses(totals);
    let last = clauses.len().saturating_sub(1);
    let pieces: Vec<String> = clauses
        .into_iter()
        .enumerate()
        .map(|(i, c)| if i < last { format!("{c}; ") } else { c })
        .collect();
    for line in wrap_pieces(pieces.iter().map(String::as_str), WIDTH) {
        let _ = writeln!(out, "{}", style.bold(&line));
    }
}

/// The scan table: per resource a header (label, compliance score, failed controls per
/// severity) and its failed controls, Critical first, each with its fix, delete or review paths;
/// then the totals.
pub fn scan_table(outcome: &ScanOutcome, style: Style) -> String {
    render_to_string(Format::ScanTable, style, outcome)
}

/// The summary table: one line per resource with its score and failed-control counts.
pub fn summary_table(outcome: &ScanOutcome, style: Style) -> String {
    render_to_string(Format::SummaryTable, style, outcome)
}

fn render_to_string(format: Format, style: Style, outcome: &ScanOutcome) -> String {
    let mut out = Vec::new();
    let mut r = Renderer::new(format, style);
    let written = r
        .begin(&mut out)
        .and_then(|()| {
            outcome
                .resources
                .iter()
                .try_for_each(|res| r.item(&mut out, res))
        })
        .and_then(|()| r.end(&mut out, &outcome.totals()));
    match written {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => format!("cannot render the results: {e}"),
    }
}

/// What [`Renderer`] prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// [`scan_table`].
    ScanTable,
    /// [`summary_table`].
    SummaryTable,
    /// A `kind: List` of the WorkloadConfigurationScans as JSON (`summary`: of the summaries).
    Json {
        /// Print the summaries.
        summary: bool,
    },
    /// The same list as YAML.
    Yaml {
        /// Print the summaries.
        summary: bool,
    },
}

/// One row of the summary table: label, score and the four severity counts.
type SummaryRow = [String; 6];

/// Prints scan results as they come, one resource at a time: the tables, or a `kind: List` in
/// JSON or YAML written as its header, each item, and its end (the same bytes as serialising
/// the whole list at once). Only the summary table keeps something per resource (its row, a
/// few dozen bytes, since the label column is as wide as the longest label).
#[derive(Debug)]
pub struct Renderer {
    format: Format,
    style: Style,
    /// Items written so far.
    items: usize,
    /// The summary table's rows.
    rows: Vec<SummaryRow>,
    /// YAML of the scans' controls already printed.
    yaml_scan: YamlControls<ScannedControl>,
    /// YAML of the summaries' controls already printed.
    yaml_summary: YamlControls<ControlSummary>,
    /// One JSON item, reused from item to item (its capacity is kept).
    buf: Vec<u8>,
    /// One YAML item or scan-table resource, reused likewise.
    text: String,
}

/// YAML of result objects, with each control's entry rendered once per distinct content:
/// most controls pass on most resources, and their entries are the same text every time (the
/// YAML emitter costs about 20 times the JSON serialiser). An entry is found by the control's
/// ID and then compared field by field with the controls rendered before under that ID, which
/// costs far less than serialising the control to get a key. At most
/// [`YamlControls::PER_ID`] contents are kept per ID (the list starts again when full), so
/// the cache stays small whatever the input.
#[derive(Debug)]
struct YamlControls<C> {
    /// Control ID to the contents rendered, each with its YAML lines as they appear in a
    /// list item (indented under the item's `spec.controls`).
    cache: HashMap<CatalogText, Vec<(C, String)>>,
}

impl<C> Default for YamlControls<C> {
    fn default() -> Self {
        YamlControls {
            cache: HashMap::new(),
        }
    }
}

/// Appends `text`'s lines to `out` as lines of a YAML list item: the very first line of the
/// item (`first`) after `- `, the others after two spaces.
fn push_item_lines(out: &mut String, text: &str, first: &mut bool) {
    for line in text.lines() {
        out.push_str(if std::mem::take(first) { "- " } else { "  " });
        out.push_str(line);
        out.push('\n');
    }
}

impl<C: Serialize + PartialEq + Clone> YamlControls<C> {
    const PER_ID: usize = 32;

    /// Appends `head` (an object whose `spec.controls` is empty) as a YAML list item to `out`,
    /// with `controls` put back in. The same text as serialising the whole object and
    /// indenting each of its lines for the list.
    fn item<H: Serialize>(
        &mut self,
        head: &H,
        controls: &BTreeMap<CatalogText, C>,
        out: &mut String,
    ) -> Result<(), serde_norway::Error> {
        let text = serde_norway::to_string(head)?;
        let mut first = true;
        const EMPTY: &str = "\n  controls: {}\n";
        let (Some(at), false) = (text.find(EMPTY), controls.is_empty()) else {
            push_item_lines(out, &text, &mut first);
            return Ok(());
        };
        // `at` is the end of a line, so the lines before it are the same lines on their own.
        push_item_lines(out, &text[..at], &mut first);
        out.push_str("    controls:\n");
        for (id, control) in controls {
            // Control IDs (`C-0057`) are plain YAML scalars.
            out.push_str("      ");
            out.push_str(id);
            out.push_str(":\n");
            let seen = self.cache.entry(id.clone()).or_default();
            if let Some((_, entry)) = seen.iter().find(|(c, _)| c == control) {
                out.push_str(entry);
                continue;
            }
            let mut entry = String::new();
            for line in serde_norway::to_string(control)?.lines() {
                // Six spaces under the control's key, two more for the list item.
                entry.push_str("        ");
                entry.push_str(line);
                entry.push('\n');
            }
            out.push_str(&entry);
            if seen.len() >= Self::PER_ID {
                seen.clear();
            }
            seen.push((control.clone(), entry));
        }
        push_item_lines(out, &text[at + EMPTY.len()..], &mut first);
        Ok(())
    }
}

/// serde_json's pretty layout (two spaces per level) for a value that sits `depth` levels deep
/// in an enclosing pretty document: every line after the first starts `2 * depth` spaces
/// further right. Written straight into the output, this replaces serialising to a string and
/// then inserting spaces after each of its newlines (the same bytes, as JSON strings hold no
/// raw newline).
struct NestedPretty {
    /// Levels of the enclosing document plus those opened so far.
    depth: usize,
    /// Whether the innermost open array or object has an element yet.
    has_value: bool,
}

impl NestedPretty {
    /// An array or object opens: one level deeper, nothing in it yet.
    fn open<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    /// An array or object closes, on its own line when it held anything.
    fn close<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(bracket)
    }

    /// An array value or object key starts: after a comma unless it is the first, on a new line.
    fn next_entry<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn newline<W: ?Sized + Write>(&self, w: &mut W) -> std::io::Result<()> {
        const SPACES: &[u8; 64] = &[b' '; 64];
        w.write_all(b"\n")?;
        let mut n = self.depth * 2;
        while n > 0 {
            let k = n.min(SPACES.len());
            w.write_all(SPACES.get(..k).unwrap_or_default())?;
            n -= k;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for NestedPretty {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.next_entry(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.next_entry(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Appends `value` to `out` as serde_json's pretty layout nested `depth` levels deep.
fn push_nested_json<T: Serialize>(
    out: &mut Vec<u8>,
    value: &T,
    depth: usize,
) -> serde_json::Result<()> {
    let formatter = NestedPretty {
        depth,
        has_value: false,
    };
    value.serialize(&mut serde_json::Serializer::with_formatter(out, formatter))
}

/// The start of a List, as `serde_json::to_string_pretty` writes it.
const JSON_HEAD: &str =
    "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"metadata\": {},\n  \"items\": [";
/// The start of a List, as `serde_norway::to_string` writes it.
const YAML_HEAD: &str = "apiVersion: v1\nkind: List\nmetadata: {}\nitems:";

impl Renderer {
    /// A renderer for `format`.
    pub fn new(format: Format, style: Style) -> Self {
        Renderer {
            format,
            style,
            items: 0,
            rows: Vec::new(),
            yaml_scan: YamlControls::default(),
            yaml_summary: YamlControls::default(),
            buf: Vec::new(),
            text: String::new(),
        }
    }

    /// Writes what comes before the first resource.
    pub fn begin(&mut self, w: &mut dyn Write) -> std::io::Result<()> {
        match self.format {
            Format::Json { .. } => w.write_all(JSON_HEAD.as_bytes()),
            Format::Yaml { .. } => w.write_all(YAML_HEAD.as_bytes()),
            Format::ScanTable | Format::SummaryTable => Ok(()),
        }
    }

    /// Writes one resource (the summary table only notes its row).
    pub fn item(&mut self, w: &mut dyn Write, r: &ScannedResource) -> std::io::Result<()> {
        let first = self.items == 0;
        self.items += 1;
        match self.format {
            Format::ScanTable => {
                // One resource's text, in a buffer reused from item to item.
                let mut out = std::mem::take(&mut self.text);
                out.clear();
                push_header(&mut out, r, self.style);
                for c in failed_controls(r) {
                    push_failed_control(&mut out, c, self.style);
                }
                out.push('\n');
                let result = w.write_all(out.as_bytes());
                self.text = out;
                result
            }
            Format::SummaryTable => {
                let s = &r.objects.summary.spec;
                self.rows.push([
                    target_label(&r.target),
                    percent(s.compliance_score),
                    s.severities.critical.to_string(),
                    s.severities.high.to_string(),
                    s.severities.medium.to_string(),
                    s.severities.low.to_string(),
                ]);
                Ok(())
            }
            Format::Json { summary } => {
                // An item of the List's `items`: two levels deep.
                let buf = &mut self.buf;
                buf.clear();
                buf.extend_from_slice(if first { b"\n    " } else { b",\n    " });
                if summary {
                    push_nested_json(buf, &r.objects.summary, 2)
                } else {
                    push_nested_json(buf, &r.objects.scan, 2)
                }
                .map_err(std::io::Error::other)?;
                w.write_all(buf)
            }
            Format::Yaml { summary } => {
                let mut out = std::mem::take(&mut self.text);
                out.clear();
                if first {
                    out.push('\n');
                }
                // The object without its controls (cheap to copy: no control is), then the
                // controls put back in from the cache.
                let written = if summary {
                    let s = &r.objects.summary;
                    let head = WorkloadConfigurationScanSummary {
                        metadata: s.metadata.clone(),
                        spec: WorkloadConfigurationScanSummarySpec {
                            severities: s.spec.severities,
                            controls: BTreeMap::new(),
                            compliance_score: s.spec.compliance_score,
                        },
                    };
                    self.yaml_summary.item(&head, &s.spec.controls, &mut out)
                } else {
                    let s = &r.objects.scan;
                    let head = WorkloadConfigurationScan {
                        metadata: s.metadata.clone(),
                        spec: WorkloadConfigurationScanSpec {
                            controls: BTreeMap::new(),
                            related_objects: s.spec.related_objects.clone(),
                            evaluated_controls: s.spec.evaluated_controls,
                        },
                    };
                    self.yaml_scan.item(&head, &s.spec.controls, &mut out)
                };
                let result = written
                    .map_err(std::io::Error::other)
                    .and_then(|()| w.write_all(out.as_bytes()));
                self.text = out;
                result
            }
        }
    }

    /// Writes what comes after the last resource: the end of the list, or the totals.
    pub fn end(&mut self, w: &mut dyn Write, totals: &Totals) -> std::io::Result<()> {
        let empty = self.items == 0;
        match self.format {
            Format::Json { .. } => w.write_all(if empty { b"]\n}\n" } else { b"\n  ]\n}\n" }),
            Format::Yaml { .. } => w.write_all(if empty { b" []\n" } else { b"" }),
            Format::ScanTable => {
                let mut out = String::new();
                push_totals(&mut out, totals, self.style);
                w.write_all(out.as_bytes())
            }
            Format::SummaryTable => {
                let out = summary_rows(&std::mem::take(&mut self.rows), totals, self.style);
                w.write_all(out.as_bytes())
            }
        }
    }
}

/// The summary table of the rows, then the totals.
fn summary_rows(rows: &[SummaryRow], totals: &Totals, style: Style) -> String {
    let headers = ["RESOURCE", "SCORE", "CRITICAL", "HIGH", "MEDIUM", "LOW"];
    let numbers: usize = 8 + 2 + 8 + 2 + 4 + 2 + 6 + 2 + 3;
    let label_width = rows
        .iter()
        .map(|r| r[0].chars().count())
        .chain(std::iter::once(headers[0].len()))
        .max()
        .unwrap_or(0)
        .min(WIDTH - numbers - 2);
    let mut out = String::new();
    let line = |cells: [&str; 6]| {
        let text = format!(
            "{:<lw$}  {:>8}  {:>8}  {:>4}  {:>6}  {:>3}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            lw = label_width
        );
        text.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", style.bold(&line(headers)));
    for r in rows {
        let mut label = wrap_label(&r[0], label_width).into_iter();
        let first = label.next().unwrap_or_default();
        let _ = writeln!(out, "{}", line([&first, &r[1], &r[2], &r[3], &r[4], &r[5]]));
        for more in label {
            let _ = writeln!(out, "  {more}");
        }
    }
    out.push('\n');
    push_totals(&mut out, totals, style);
    out
}

/// What a control needs besides the objects, as the catalog shows it.
fn needs_label(c: &dyn Control) -> &'static str {
    let m = c.meta();
    match m.needs {
        Needs::Integration => "integration",
        Needs::ManualReview => "manual review",
        Needs::Nothing if m.configuration_required => "configuration",
        Needs::Nothing => "-",
    }
}

fn applies_labels(c: &dyn Control) -> Vec<&'static str> {
    c.meta()
        .applies
        .iter()
        .map(|a| match a {
            Applies::Kind(k) => *k,
            Applies::Subjects => "RBAC subjects",
        })
        .collect()
}

/// The catalog as a table: ID, severity, base score, what it needs, name; then its frameworks
/// and kinds on wrapped lines below.
pub fn controls_table(controls: &[&dyn Control], style: Style) -> String {
    let mut out = String::new();
    let header = format!(
        "{:<8}{:<10}{:>5}  {:<15}{}",
        "ID", "SEVERITY", "SCORE", "NEEDS", "NAME"
    );
    let _ = writeln!(out, "{}", style.bold(&header));
    const INDENT: usize = 8;
    const NAME: usize = 40;
    for c in controls {
        let m = c.meta();
        let sev = format!("{:<10}", m.severity().as_str());
        let first = format!(
            "{:<8}{}{:>5.1}  {:<15}",
            m.id,
            style.severity(m.severity(), &sev),
            m.base_score,
            needs_label(*c)
        );
        push_wrapped(&mut out, &first, wrap_words(m.name, WIDTH - NAME), NAME);
        let detail = |label: &str, items: Vec<&str>| {
            let text = format!("{label}: {}", items.join(", "));
            // Continuation lines sit two columns deeper than the first.
            wrap_words(&text, WIDTH - INDENT - 2)
        };
        let mut frameworks: Vec<&str> = m.frameworks.to_vec();
        if !frameworks
            .iter()
            .any(|f| f.eq_ignore_ascii_case("AllControls"))
        {
            frameworks.push("AllControls");
        }
        let indent = " ".repeat(INDENT);
        push_wrapped(
            &mut out,
            &indent,
            detail("frameworks", frameworks),
            INDENT + 2,
        );
        push_wrapped(
            &mut out,
            &indent,
            detail("applies to", applies_labels(*c)),
            INDENT + 2,
        );
    }
    let _ = writeln!(
        out,
        "\n{} control{}.",
        controls.len(),
        if controls.len() == 1 { "" } else { "s" }
    );
    out
}

/// One control's full catalog entry, as `scan-job controls -o json` prints it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlInfo {
    /// Control ID.
    #[serde(rename = "controlID")]
    pub control_id: &'static str,
    /// Name.
    pub name: &'static str,
    /// What it checks and why.
    pub description: &'static str,
    /// How to fix a failure.
    pub remediation: &'static str,
    /// Base score, 0 to 10.
    pub base_score: f64,
    /// Severity derived from the base score.
    pub severity: Severity,
    /// Frameworks that include it (`AllControls` included).
    pub frameworks: Vec<&'static str>,
    /// Kinds it evaluates.
    pub kinds: Vec<&'static str>,
    /// Whether it evaluates RBAC (subject, role, binding) triplets.
    pub rbac_subjects: bool,
    /// Its regolibrary rules.
    pub rules: &'static [&'static str],
    /// The configuration inputs it reads.
    pub inputs: &'static [&'static str],
    /// Whether it is skipped (sub-status `configuration`) when its inputs are all empty.
    pub configuration_required: bool,
    /// Whether it needs data from outside the cluster (always skipped, `integration`).
    pub integration_required: bool,
    /// Whether it can only be checked by hand (always skipped, `manual review`).
    pub manual_review: bool,
}

/// The catalog entries of `controls`, in order.
pub fn controls_info(controls: &[&dyn Control]) -> Vec<ControlInfo> {
    controls
        .iter()
        .map(|c| {
            let m = c.meta();
            let mut frameworks: Vec<&'static str> = m.frameworks.to_vec();
            if !frameworks
                .iter()
                .any(|f| f.eq_ignore_ascii_case("AllControls"))
            {
                frameworks.push("AllControls");
            }
            ControlInfo {
                control_id: m.id,
                name: m.name,
                description: m.description,
                remediation: m.remediation,
                base_score: m.base_score,
                severity: m.severity(),
                frameworks,
                kinds: m
                    .applies
                    .iter()
                    .filter_map(|a| match a {
                        Applies::Kind(k) => Some(*k),
                        Applies::Subjects => None,
                    })
                    .collect(),
                rbac_subjects: m.applies_to_subjects(),
                rules: m.rules,
                inputs: m.inputs,
                configuration_required: m.configuration_required,
                integration_required: m.needs == Needs::Integration,
                manual_review: m.needs == Needs::ManualReview,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert_eq!(wrap_words("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
        assert_eq!(wrap_words("", 6), vec![""]);
        assert_eq!(
            wrap_label("Pod ns/abcdefghij-klm", 8),
            vec!["Pod ns/", "abcdefgh", "ij-klm"]
        );
        assert_eq!(
            wrap_path("spec.template.spec.containers[0].image", 20),
            vec!["spec.template.spec", ".containers[0].image"]
        );
        assert_eq!(
            wrap_path("spec.template.spec.containers[0].image", 14),
            vec!["spec.template", ".spec", ".containers[0]", ".image"]
        );
        assert_eq!(
            wrap_path("averyverylongsegment.x", 5),
            vec!["avery", "veryl", "ongse", "gment", ".x"]
        );
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(100.0), "100%");
        assert_eq!(percent(66.67), "66.67%");
        assert_eq!(percent(12.5), "12.5%");
        assert_eq!(percent(0.0), "0%");
    }
}
