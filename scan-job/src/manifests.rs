//! Offline input: manifest files and directories (YAML with several documents, JSON, `List`
//! kinds) turned into objects. A bad file is reported with its path and does not stop the rest.
//!
//! Files are read as streams, one document at a time: a YAML file is cut into documents at its
//! `---` lines (a document marker is only valid at the start of a line, so this is where the YAML
//! parser itself would cut) and each document is parsed alone; a JSON file is read value by
//! value. Only standard input is held in memory as text. A document is held whole while it is
//! read, so a single `List` document still costs its size.
//!
//! [`load_paths`] keeps every object ([`Loaded::objects`]). [`index_paths`] keeps, of each
//! workload, only what other objects' controls read of it ([`related_copy`]), for scans that then
//! evaluate the full objects one at a time with [`Loaded::for_each_object`]; that second reading
//! parses the YAML again, except for small inputs, whose full workloads are kept within a fixed
//! budget ([`kept`]).

use kubevigil_engine::object::type_name;
use kubevigil_engine::workload::{related_copy, template_path};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

use kubevigil_engine::K8sObject;

mod kept;

/// The path that stands for standard input.
pub const STDIN: &str = "-";

/// A file (or document in it) that could not be read, or a note about one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LoadError {
    /// The offending file.
    pub path: String,
    /// What went wrong, with the document number for multi-document files.
    pub message: String,
}

/// One input: a file, read as a stream, or text already in memory (standard input, tests).
#[derive(Debug)]
enum Input {
    File(PathBuf),
    Text(String),
}

/// Where an object was read: file, document and list item.
#[derive(Clone, Debug)]
struct Origin {
    /// Index in [`Loaded::names`].
    file: usize,
    /// Document number in the file, from 0.
    document: usize,
    /// `items[j]: ` parts of `List` documents, empty otherwise.
    items: String,
}

/// A message about a document, formatted once its file has been read (whether a file has
/// several documents decides the `document N: ` prefix).
#[derive(Debug)]
enum Note {
    /// A problem with the document (an error) or a skipped document (a warning): `text` follows
    /// the document prefix.
    Document {
        at: Origin,
        text: String,
        error: bool,
    },
    /// A message about the whole file, without document prefix.
    File { file: usize, text: String },
    /// An object defined again at `at`; the earlier definition was at `first`.
    Duplicate {
        at: Origin,
        what: String,
        first: Origin,
    },
}

/// What loading produced: every object that could be read, every error and every warning.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects, in file order (an object defined twice keeps its first place and its last
    /// definition). After [`index_paths`], workloads are only their [`related_copy`].
    pub objects: Vec<K8sObject>,
    /// One entry per unreadable file or document: the input is incomplete.
    pub errors: Vec<LoadError>,
    /// Documents skipped because they are not Kubernetes objects (no `apiVersion` and no
    /// `kind`), and objects defined more than once. Nothing scannable was lost.
    pub warnings: Vec<LoadError>,
    /// Keep only the related copies of workloads.
    related_only: bool,
    /// The inputs, in reading order, and their names.
    inputs: Vec<Input>,
    names: Vec<String>,
    /// Per input: whether it holds several documents (known once it is read).
    multi: Vec<bool>,
    /// Messages of the input being read.
    pending: Vec<Note>,
    /// Where each object was read, parallel to `objects`.
    origins: Vec<Origin>,
    /// Index in `objects` of each (apiVersion group, kind, namespace, name).
    seen: HashMap<(String, String, Option<String>, String), usize>,
    /// Objects read so far, duplicates included.
    read: usize,
    /// Read numbers of later definitions of an object already read (they are scanned at the
    /// first definition's place).
    later_definitions: HashSet<usize>,
    /// The full later definition of objects whose `objects` entry is a related copy.
    redefined: HashMap<usize, K8sObject>,
    /// The full workloads of small inputs, for the second reading.
    kept: kept::Kept,
}

impl Loaded {
    fn push_object(&mut self, obj: K8sObject, origin: Origin) {
        let read = self.read;
        self.read += 1;
        let key = (
            obj.group().to_string(),
            obj.kind.clone(),
            obj.namespace.clone(),
            obj.name.clone(),
        );
        if let Some(&i) = self.seen.get(&key) {
            if let Some(first) = self.origins.get(i).cloned() {
                self.pending.push(Note::Duplicate {
                    at: origin.clone(),
                    what: format!("{} {}", obj.kind, display_name(&obj)),
                    first,
                });
                self.later_definitions.insert(read);
                let stored = self.store(obj, i);
                if let (Some(slot), Some(first)) =
                    (self.objects.get_mut(i), self.origins.get_mut(i))
                {
                    *slot = stored;
                    *first = origin;
                }
            }
            return;
        }
        let i = self.objects.len();
        self.seen.insert(key, i);
        if self.related_only && template_path(&obj.kind).is_some() {
            self.kept.keep(read, &obj);
        }
        let stored = self.store(obj, i);
        self.objects.push(stored);
        self.origins.push(origin);
    }

    /// What is kept of `obj` at index `i`: itself, or when indexing its related copy (the full
    /// object is kept aside when it redefines an earlier one, since the scan will not meet it
    /// at that place).
    fn store(&mut self, obj: K8sObject, i: usize) -> K8sObject {
        if !self.related_only {
            return obj;
        }
        match related_copy(&obj) {
            Some(copy) => {
                if i < self.objects.len() {
                    self.redefined.insert(i, obj);
                } else {
                    self.redefined.remove(&i);
                }
                copy
            }
            None => {
                self.redefined.remove(&i);
                obj
            }
        }
    }

    /// The origin as messages name it: `path`, `path: document N`, `path: items[j]`...
    fn origin_text(&self, o: &Origin) -> String {
        let what = self.what(o);
        let path = self.names.get(o.file).map_or("", String::as_str);
        if what.is_empty() {
            path.to_string()
        } else {
            format!("{path}: {}", what.trim_end_matches(": "))
        }
    }

    /// The `document N: items[j]: ` prefix of messages about a document.
    fn what(&self, o: &Origin) -> String {
        if self.multi.get(o.file).copied().unwrap_or(false) {
            format!("document {}: {}", o.document + 1, o.items)
        } else {
            o.items.clone()
        }
    }

    /// Formats the messages of the input just read.
    fn finish_input(&mut self) {
        for note in std::mem::take(&mut self.pending) {
            match note {
                Note::Document { at, text, error } => {
                    let e = LoadError {
                        path: self.names.get(at.file).cloned().unwrap_or_default(),
                        message: format!("{}{text}", self.what(&at)),
                    };
                    if error {
                        self.errors.push(e);
                    } else {
                        self.warnings.push(e);
                    }
                }
                Note::File { file, text } => self.errors.push(LoadError {
                    path: self.names.get(file).cloned().unwrap_or_default(),
                    message: text,
                }),
                Note::Duplicate { at, what, first } => {
                    let message = format!(
                        "{what} is also defined in {}; the later definition is scanned",
                        self.origin_text(&first)
                    );
                    self.warnings.push(LoadError {
                        path: self.origin_text(&at),
                        message,
                    });
                }
            }
        }
    }

    /// Reads one input, adding its objects and messages.
    fn read_input(&mut self, name: String, input: Input) {
        let file = self.names.len();
        self.names.push(name);
        self.multi.push(false);
        if self.related_only {
            let size = match &input {
                Input::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
                Input::Text(text) => u64::try_from(text.len()).ok(),
            };
            self.kept.begin_input(file, size, self.read);
        }
        let result = match &input {
            Input::File(path) => match std::fs::File::open(path) {
                Ok(f) => match check_utf8(f) {
                    Ok(()) => std::fs::File::open(path).and_then(|f| {
                        each_document(BufReader::with_capacity(64 * 1024, f), &mut |d, v| {
                            self.push_document(file, d, v)
                        })
                    }),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Input::Text(text) => {
                each_document(text.as_bytes(), &mut |d, v| self.push_document(file, d, v))
            }
        };
        match result {
            Ok(read) => {
                self.kept.end_input(self.read);
                if let Some(m) = self.multi.get_mut(file) {
                    *m = read.documents > 1 || (read.error.is_some() && read.documents > 0);
                }
                if let Some(e) = read.error {
                    self.pending.push(Note::File {
                        file,
                        text: e.to_string(),
                    });
                }
            }
            Err(e) => {
                self.pending.clear();
                self.pending.push(Note::File {
                    file,
                    text: format!("cannot read file: {e}"),
                });
            }
        }
        self.finish_input();
        self.inputs.push(input);
    }

    fn push_document(&mut self, file: usize, document: usize, doc: Value) {
        let at = Origin {
            file,
            document,
            items: String::new(),
        };
        expand(doc, at, &mut |piece| match piece {
            Piece::Object(obj, at) => self.push_object(obj, at),
            Piece::Problem { at, text, error } => {
                self.pending.push(Note::Document { at, text, error })
            }
        });
    }

    /// Reads the inputs again and calls `f` with each object that [`index_paths`] kept, in the
    /// same order as [`Loaded::objects`] (a redefined object at its first place, with its last
    /// definition), with its index there. `f` returns `false` to stop. Inputs that cannot be
    /// read again are skipped (their errors were reported by the first reading).
    ///
    /// `kept` is [`Loaded::objects`], or what it was moved into (an inventory's objects).
    pub fn for_each_object(
        &self,
        kept: &[K8sObject],
        f: &mut dyn FnMut(usize, &K8sObject) -> bool,
    ) {
        let mut read = 0usize;
        let mut index = 0usize;
        let go = std::cell::Cell::new(true);
        // `obj` gives the object as read again; it is only asked for when the index does not
        // hold it whole.
        let mut visit = |obj: &mut dyn FnMut(usize) -> Option<K8sObject>| {
            if !go.get() {
                return;
            }
            let this = read;
            read += 1;
            if self.later_definitions.contains(&this) {
                return;
            }
            let i = index;
            index += 1;
            let read_again;
            let full = match (self.redefined.get(&i), kept.get(i)) {
                (Some(later), _) => later,
                (None, Some(kept)) if !self.related_only || template_path(&kept.kind).is_none() => {
                    kept
                }
                _ => match obj(this) {
                    Some(o) => {
                        read_again = o;
                        &read_again
                    }
                    // Not reached: a kept input keeps every workload it holds.
                    None => return,
                },
            };
            go.set(f(i, full));
        };
        for (file, input) in self.inputs.iter().enumerate() {
            if !go.get() {
                break;
            }
            if let Some(reads) = self.kept.input(file) {
                for _ in reads {
                    visit(&mut |this| self.kept.object(this));
                }
                continue;
            }
            let mut on_document = |d: usize, v: Value| {
                let at = Origin {
                    file,
                    document: d,
                    items: String::new(),
                };
                expand(v, at, &mut |piece| {
                    if let Piece::Object(obj, _) = piece {
                        let mut obj = Some(obj);
                        visit(&mut |_| obj.take());
                    }
                });
            };
            let _ = match input {
                Input::File(path) => std::fs::File::open(path).and_then(|f| {
                    each_document(BufReader::with_capacity(64 * 1024, f), &mut on_document)
                }),
                Input::Text(text) => each_document(text.as_bytes(), &mut on_document),
            };
        }
    }
}

/// What one document yields: objects, and problems (errors, or skipped documents).
enum Piece {
    Object(K8sObject, Origin),
    Problem {
        at: Origin,
        text: String,
        error: bool,
    },
}

fn display_name(obj: &K8sObject) -> String {
    match &obj.namespace {
        Some(ns) => format!("{ns}/{}", obj.name),
        None => obj.name.clone(),
    }
}

/// Whether a path looks like a manifest file.
fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>) {
    if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                errors.push(LoadError {
                    path: path.display().to_string(),
                    message: format!("cannot read directory: {e}"),
                });
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            if child.is_dir() || is_manifest(&child) {
                collect_files(&child, out, errors);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
}

/// Loads every manifest under the given files and directories (directories recursively, files
/// ending in `.yaml`, `.yml` or `.json`; a file named explicitly is read whatever its name).
/// The path `-` reads standard input.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    read_paths(paths, None)
}

/// [`load_paths`] for a streaming scan: of each workload, only its [`related_copy`] is kept in
/// [`Loaded::objects`]; [`Loaded::for_each_object`] reads the full objects again, one at a time.
pub fn index_paths(paths: &[PathBuf]) -> Loaded {
    index_paths_keeping(paths, kept::BUDGET)
}

/// [`index_paths`] keeping at most `budget` bytes of full workloads for the second reading
/// (inputs that do not fit are read twice; 0 reads every input twice).
pub fn index_paths_keeping(paths: &[PathBuf], budget: usize) -> Loaded {
    let mut loaded = read_paths(paths, Some(budget));
    // What only the first reading needs (duplicate detection, message origins) is freed
    // before the objects are evaluated.
    loaded.seen = HashMap::new();
    loaded.origins = Vec::new();
    loaded
}

/// Reads `paths`; `index`: as [`index_paths_keeping`] with that budget, else as [`load_paths`].
fn read_paths(paths: &[PathBuf], index: Option<usize>) -> Loaded {
    let mut loaded = Loaded {
        related_only: index.is_some(),
        kept: kept::Kept::with_budget(index.unwrap_or(0)),
        ..Loaded::default()
    };
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == STDIN {
            files.push(p.clone());
            continue;
        }
        if !p.exists() {
            loaded.errors.push(LoadError {
                path: p.display().to_string(),
                message: "no such file or directory".into(),
            });
            continue;
        }
        collect_files(p, &mut files, &mut loaded.errors);
    }
    for file in files {
        let name = file.display().to_string();
        if file.as_os_str() == STDIN {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => loaded.read_input(name, Input::Text(text)),
                Err(e) => loaded.errors.push(LoadError {
                    path: name,
                    message: format!("cannot read file: {e}"),
                }),
            }
        } else {
            loaded.read_input(name, Input::File(file));
        }
    }
    loaded
}

/// Fails as `read_to_string` would when the stream is not UTF-8, without holding it.
fn check_utf8(mut r: impl std::io::Read) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry = 0usize;
    loop {
        let n = r.read(buf.get_mut(carry..).unwrap_or_default())?;
        let end = carry + n;
        let chunk = buf.get(..end).unwrap_or_default();
        let valid = match std::str::from_utf8(chunk) {
            Ok(_) => end,
            Err(e) if e.error_len().is_none() && n > 0 => e.valid_up_to(),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "stream did not contain valid UTF-8",
                ));
            }
        };
        if n == 0 {
            return Ok(());
        }
        buf.copy_within(valid..end, 0);
        carry = end - valid;
    }
}

/// Whether the text is JSON rather than YAML: it starts with `{` or `[`. JSON is read with the
/// JSON parser (one or more concatenated values), so that JSON that YAML rejects (tabs) works
/// and errors point at the JSON position.
fn looks_like_json(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with(['{', '['])
}

/// A syntax error in a YAML/JSON stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The document it is in, counting from 1.
    pub document: usize,
    /// The parser's message.
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "document {}: invalid YAML/JSON: {}",
            self.document, self.message
        )
    }
}

/// Parses YAML or JSON text (possibly several documents) into values. A syntax error ends the
/// stream: the documents before it are returned with it.
pub fn parse_documents(text: &str) -> (Vec<Value>, Option<SyntaxError>) {
    let mut documents = Vec::new();
    let error = match each_document(text.as_bytes(), &mut |_, v| documents.push(v)) {
        Ok(read) => read.error,
        Err(e) => Some(SyntaxError {
            document: documents.len() + 1,
            message: e.to_string(),
        }),
    };
    (documents, error)
}

/// How reading one stream of documents ended.
#[derive(Debug)]
struct Read {
    /// Documents read (null documents included).
    documents: usize,
    /// The syntax error that ended the stream, if any.
    error: Option<SyntaxError>,
}

/// Whether a line starts a YAML document: `---` at its start, then the end of the line or a
/// space or tab.
fn is_document_start(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Whether a line holds YAML content (not blank, not a comment, not a directive).
fn is_content(line: &str) -> bool {
    let t = line.trim_start_matches('\u{feff}').trim();
    !t.is_empty() && !t.starts_with('#') && !t.starts_with('%')
}

/// Reads YAML or JSON documents from `reader`, calling `f` with each one's number (from 0) and
/// value. A syntax error ends the stream and is returned; an I/O error is returned as such.
fn each_document(
    mut reader: impl BufRead,
    f: &mut dyn FnMut(usize, Value),
) -> std::io::Result<Read> {
    // Peek past a byte-order mark and white space, without consuming: a YAML error's line
    // number counts from the stream's start.
    let mut head = Vec::new();
    let json = loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break false;
        }
        let n = buf.len();
        head.extend_from_slice(buf);
        reader.consume(n);
        let text = String::from_utf8_lossy(&head);
        let rest = text.trim_start_matches('\u{feff}').trim_start();
        if !rest.is_empty() {
            break looks_like_json(&text);
        }
    };
    let reader = std::io::Cursor::new(head).chain(reader);
    if json {
        read_json(reader, f)
    } else {
        read_yaml(reader, f)
    }
}

fn read_json(mut reader: impl BufRead, f: &mut dyn FnMut(usize, Value)) -> std::io::Result<Read> {
    // Skip a byte-order mark: the JSON parser does not.
    if reader.fill_buf()?.starts_with("\u{feff}".as_bytes()) {
        reader.consume(3);
    }
    let mut documents = 0;
    for doc in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
        match doc {
            Ok(v) => {
                f(documents, v);
                documents += 1;
            }
            Err(e) if e.is_io() => return Err(std::io::Error::other(e.to_string())),
            Err(e) => {
                return Ok(Read {
                    documents,
                    error: Some(SyntaxError {
                        document: documents + 1,
                        message: e.to_string(),
                    }),
                });
            }
        }
    }
    Ok(Read {
        documents,
        error: None,
    })
}

fn read_yaml(mut reader: impl BufRead, f: &mut dyn FnMut(usize, Value)) -> std::io::Result<Read> {
    let mut documents = 0usize;
    let mut chunk = String::new();
    let mut chunk_line = 0usize;
    let mut line_no = 0usize;
    let mut has_start = false;
    let mut has_content = false;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || is_document_start(&line) {
            if has_start || has_content {
                if let Some(error) = parse_yaml_chunk(&chunk, chunk_line, &mut documents, f) {
                    return Ok(Read {
                        documents,
                        error: Some(error),
                    });
                }
                chunk.clear();
                chunk_line = line_no;
                has_content = false;
            }
            // Lines before the first marker with no content (comments) stay with the next
            // document, as the parser would read them.
            has_start = n > 0;
        } else if !has_content && is_content(&line) {
            has_content = true;
        }
        if n == 0 {
            break;
        }
        chunk.push_str(&line);
        line_no += 1;
    }
    Ok(Read {
        documents,
        error: None,
    })
}

/// Parses one chunk of a YAML stream (one document, or several when `...` ends one without a
/// new `---`), which starts at line `first_line` (from 0) of the stream.
fn parse_yaml_chunk(
    chunk: &str,
    first_line: usize,
    documents: &mut usize,
    f: &mut dyn FnMut(usize, Value),
) -> Option<SyntaxError> {
    for (i, doc) in serde_norway::Deserializer::from_str(chunk).enumerate() {
        match Value::deserialize(doc) {
            Ok(v) => {
                f(*documents, v);
                *documents += 1;
            }
            Err(e) => {
                // Parse again with the lines before the chunk blank, so that the message's line
                // numbers are the stream's (rare: only on errors).
                let message = if first_line == 0 {
                    e.to_string()
                } else {
                    let padded = format!("{}{chunk}", "\n".repeat(first_line));
                    serde_norway::Deserializer::from_str(&padded)
                        .nth(i)
                        .and_then(|d| Value::deserialize(d).err())
                        .map_or_else(|| e.to_string(), |e| e.to_string())
                };
                return Some(SyntaxError {
                    document: *documents + 1,
                    message,
                });
            }
        }
    }
    None
}

/// Parses one file's text (YAML or JSON, possibly several documents) into `loaded`.
///
/// A syntax error ends the file: the documents before it are kept, and the error names the
/// document it is in (counting from 1).
pub fn load_str(path: &str, text: &str, loaded: &mut Loaded) {
    loaded.read_input(path.to_string(), Input::Text(text.to_string()));
}

/// Splits a document into objects (`List` items one by one) and problems.
fn expand(doc: Value, at: Origin, out: &mut dyn FnMut(Piece)) {
    if doc.is_null() {
        return;
    }
    let is_list = doc
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && doc.get("items").is_some_and(Value::is_array);
    if is_list {
        if let Value::Object(mut map) = doc
            && let Some(Value::Array(items)) = map.remove("items")
        {
            for (j, item) in items.into_iter().enumerate() {
                let item_at = Origin {
                    items: format!("{}items[{j}]: ", at.items),
                    ..at.clone()
                };
                expand(item, item_at, out);
            }
        }
        return;
    }
    let not_kubernetes = doc
        .as_object()
        .is_some_and(|m| !m.contains_key("kind") && !m.contains_key("apiVersion"));
    if not_kubernetes {
        out(Piece::Problem {
            at,
            text: "skipped: not a Kubernetes object (no apiVersion and no kind)".to_string(),
            error: false,
        });
        return;
    }
    match K8sObject::from_value(doc) {
        Ok(o) => match shape_error(&o) {
            Some(problem) => out(Piece::Problem {
                text: format!("{} {}: {problem}", o.kind, display_name(&o)),
                at,
                error: true,
            }),
            None => out(Piece::Object(o, at)),
        },
        Err(e) => out(Piece::Problem {
            at,
            text: e.to_string(),
            error: true,
        }),
    }
}

/// The type a field must have.
#[derive(Clone, Copy)]
enum Shape {
    Mapping,
    List,
    Str,
    Bool,
    Integer,
    /// A mapping whose values are strings (labels, annotations).
    StringMap,
}

impl Shape {
    fn fits(self, v: &Value) -> bool {
        match self {
            Shape::Mapping => v.is_object(),
            Shape::List => v.is_array(),
            Shape::Str => v.is_string(),
            Shape::Bool => v.is_boolean(),
            Shape::Integer => v.is_i64() || v.is_u64(),
            Shape::StringMap => v
                .as_object()
                .is_some_and(|m| m.values().all(|x| x.is_string() || x.is_null())),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Shape::Mapping => "a mapping",
            Shape::List => "a list",
            Shape::Str => "a string",
            Shape::Bool => "a boolean",
            Shape::Integer => "an integer",
            Shape::StringMap => "a mapping of strings",
        }
    }
}

/// Checks `value.field` against `shape` (an absent or null field is fine, as the API server
/// defaults it). The message names the full dotted path.
fn check(value: &Value, base: &str, field: &str, shape: Shape) -> Result<(), String> {
    let Some(v) = value.get(field).filter(|v| !v.is_null()) else {
        return Ok(());
    };
    if shape.fits(v) {
        return Ok(());
    }
    let at = if base.is_empty() {
        field.to_string()
    } else {
        format!("{base}.{field}")
    };
    let found = match (shape, v) {
        (Shape::StringMap, Value::Object(m)) => m
            .iter()
            .find(|(_, x)| !x.is_string() && !x.is_null())
            .map(|(k, x)| format!("`{k}` is {}", type_name(x)))
            .unwrap_or_default(),
        _ => format!("found {}", type_name(v)),
    };
    Err(format!(
        "field `{at}` must be {}, {found}",
        shape.describe()
    ))
}

/// The first field of a manifest whose type the API server would reject, among the fields the
/// controls read (metadata, pod template, pod spec, containers). Such an object is reported
/// rather than scanned: scanning it would silently treat the wrongly typed field as absent and
/// could pass controls that the real object (once fixed) fails.
pub fn shape_error(obj: &K8sObject) -> Option<String> {
    shape_problem(obj).err()
}

fn shape_problem(obj: &K8sObject) -> Result<(), String> {
    let root = &obj.value;
    check(root, "", "metadata", Shape::Mapping)?;
    check(root, "", "spec", Shape::Mapping)?;
    let meta = |value: &Value, base: &str| -> Result<(), String> {
        if let Some(m) = value.get("metadata") {
            let at = if base.is_empty() {
                "metadata".to_string()
            } else {
                format!("{base}.metadata")
            };
            check(m, &at, "labels", Shape::StringMap)?;
            check(m, &at, "annotations", Shape::StringMap)?;
        }
        Ok(())
    };
    meta(root, "")?;
    if let Some(spec) = root.get("spec") {
        check(spec, "spec", "replicas", Shape::Integer)?;
    }
    let Some(template) = kubevigil_engine::workload::template_path(&obj.kind) else {
        return Ok(());
    };
    // Walk down to the pod template, checking each level is a mapping.
    let mut node = root;
    let mut at = String::new();
    for part in template.split('.').filter(|p| !p.is_empty()) {
        check(node, &at, part, Shape::Mapping)?;
        match node.get(part) {
            Some(next) if next.is_object() => node = next,
            _ => return Ok(()),
        }
        at = if at.is_empty() {
            part.to_string()
        } else {
            format!("{at}.{part}")
        };
    }
    if !template.is_empty() {
        check(node, &at, "metadata", Shape::Mapping)?;
        meta(node, &at)?;
        check(node, &at, "spec", Shape::Mapping)?;
    }
    let spec_at = if at.is_empty() {
        "spec".to_string()
    } else {
        format!("{at}.spec")
    };
    let Some(pod) = node.get("spec").filter(|v| v.is_object()) else {
        return Ok(());
    };
    for field in [
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "automountServiceAccountToken",
    ] {
        check(pod, &spec_at, field, Shape::Bool)?;
    }
    check(pod, &spec_at, "serviceAccountName", Shape::Str)?;
    check(pod, &spec_at, "securityContext", Shape::Mapping)?;
    check(pod, &spec_at, "volumes", Shape::List)?;
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        check(pod, &spec_at, list, Shape::List)?;
        for (i, c) in kubevigil_engine::object::array(pod, list)
            .iter()
            .enumerate()
        {
            let c_at = format!("{spec_at}.{list}[{i}]");
            if !c.is_object() {
                return Err(format!(
                    "field `{c_at}` must be a mapping, found {}",
                    type_name(c)
                ));
            }
            check(c, &c_at, "name", Shape::Str)?;
            check(c, &c_at, "image", Shape::Str)?;
            check(c, &c_at, "securityContext", Shape::Mapping)?;
            check(c, &c_at, "resources", Shape::Mapping)?;
            check(c, &c_at, "env", Shape::List)?;
            check(c, &c_at, "ports", Shape::List)?;
            check(c, &c_at, "volumeMounts", Shape::List)?;
            check(c, &c_at, "command", Shape::List)?;
            check(c, &c_at, "args", Shape::List)?;
            if let Some(sc) = c.get("securityContext").filter(|v| v.is_object()) {
                let sc_at = format!("{c_at}.securityContext");
                for field in [
                    "privileged",
                    "allowPrivilegeEscalation",
                    "readOnlyRootFilesystem",
                    "runAsNonRoot",
                ] {
                    check(sc, &sc_at, field, Shape::Bool)?;
                }
                check(sc, &sc_at, "runAsUser", Shape::Integer)?;
                check(sc, &sc_at, "capabilities", Shape::Mapping)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_and_lists() {
        let mut l = Loaded::default();
        load_str(
            "x.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: List\nitems:\n- {kind: Pod, metadata: {name: b}}\n- {kind: Pod}\n",
            &mut l,
        );
        assert_eq!(l.objects.len(), 2);
        assert_eq!(l.errors.len(), 1);
        assert!(l.errors[0].message.contains("items[1]"), "{:?}", l.errors);
    }

    #[test]
    fn broken_yaml_is_named() {
        let mut l = Loaded::default();
        load_str("bad.yaml", "kind: [unclosed\n", &mut l);
        assert!(l.objects.is_empty());
        assert_eq!(l.errors[0].path, "bad.yaml");
        assert!(
            l.errors[0]
                .message
                .starts_with("document 1: invalid YAML/JSON: "),
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn documents_before_a_syntax_error_are_kept() {
        let mut l = Loaded::default();
        load_str(
            "x.yaml",
            "kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: [b\n---\nkind: Pod\nmetadata: {name: c}\n",
            &mut l,
        );
        assert_eq!(l.objects.len(), 1, "{:?}", l.errors);
        assert_eq!(l.objects[0].name, "a");
        assert_eq!(l.errors.len(), 1);
        assert!(
            l.errors[0]
                .message
                .starts_with("document 2: invalid YAML/JSON"),
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn json_with_tabs_and_concatenated_values() {
        let mut l = Loaded::default();
        load_str(
            "x.json",
            "{\n\t\"kind\": \"Pod\",\n\t\"metadata\": {\"name\": \"a\"}\n}\n{\"kind\": \"Pod\", \"metadata\": {\"name\": \"b\"}}",
            &mut l,
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.objects.len(), 2);
        let mut l = Loaded::default();
        load_str("bad.json", "{\"kind\": \"Pod\",", &mut l);
        assert!(l.objects.is_empty());
        assert!(
            l.errors[0]
                .message
                .starts_with("document 1: invalid YAML/JSON: "),
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn non_kubernetes_documents_are_warnings() {
        let mut l = Loaded::default();
        load_str("values.yaml", "replicas: 3\nimage: {tag: x}\n", &mut l);
        assert!(l.objects.is_empty());
        assert!(l.errors.is_empty());
        assert_eq!(l.warnings.len(), 1);
    }

    #[test]
    fn duplicates_keep_the_first_place_and_the_last_definition() {
        let mut l = Loaded::default();
        load_str(
            "a.yaml",
            "kind: Pod\nmetadata: {name: a, namespace: x, labels: {v: '1'}}\n---\nkind: Pod\nmetadata: {name: b}\n",
            &mut l,
        );
        load_str(
            "b.yaml",
            "kind: Pod\nmetadata: {name: a, namespace: x, labels: {v: '2'}}\n",
            &mut l,
        );
        assert_eq!(l.objects.len(), 2);
        assert_eq!(l.objects[0].name, "a");
        assert_eq!(
            l.objects[0].labels().and_then(|m| m.get("v")),
            Some(&Value::from("2"))
        );
        assert_eq!(l.warnings.len(), 1);
        assert!(
            l.warnings[0].message.contains("a.yaml: document 1"),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn wrongly_typed_fields_are_named_and_the_rest_is_kept() {
        let cases = [
            (
                "kind: Deployment\nmetadata: {name: a}\nspec: {template: {spec: {containers: oops}}}\n",
                "field `spec.template.spec.containers` must be a list, found a string",
            ),
            (
                "kind: Pod\nmetadata: {name: a, labels: {app: [x]}}\n",
                "field `metadata.labels` must be a mapping of strings, `app` is a list",
            ),
            (
                "kind: Deployment\nmetadata: {name: a}\nspec: {replicas: three}\n",
                "field `spec.replicas` must be an integer, found a string",
            ),
            (
                "kind: CronJob\nmetadata: {name: a}\nspec: {jobTemplate: {spec: {template: {spec: {containers: [{name: c, securityContext: {privileged: 'yes'}}]}}}}}\n",
                "field `spec.jobTemplate.spec.template.spec.containers[0].securityContext.privileged` must be a boolean, found a string",
            ),
            (
                "kind: Pod\nmetadata: {name: a}\nspec: {containers: [5]}\n",
                "field `spec.containers[0]` must be a mapping, found a number",
            ),
            (
                "kind: Pod\nmetadata: {name: a}\nspec: {hostNetwork: 1}\n",
                "field `spec.hostNetwork` must be a boolean, found a number",
            ),
            (
                "kind: Pod\nmetadata: {name: a}\nspec: [1]\n",
                "field `spec` must be a mapping, found a list",
            ),
            (
                "kind: Deployment\nmetadata: {name: a}\nspec: {template: {metadata: {labels: {app: 1}}}}\n",
                "field `spec.template.metadata.labels` must be a mapping of strings, `app` is a number",
            ),
        ];
        for (text, expected) in cases {
            let mut l = Loaded::default();
            load_str(
                "bad.yaml",
                &format!("{text}---\nkind: Pod\nmetadata: {{name: good}}\n"),
                &mut l,
            );
            assert_eq!(l.errors.len(), 1, "{text}: {:?}", l.errors);
            assert_eq!(l.errors[0].path, "bad.yaml");
            assert!(
                l.errors[0].message.contains(expected)
                    && l.errors[0].message.contains("document 1"),
                "{text}: {:?}",
                l.errors[0].message
            );
            assert_eq!(l.objects.len(), 1, "the good document is kept");
            assert_eq!(l.objects[0].name, "good");
        }
    }

    #[test]
    fn nulls_and_well_typed_fields_pass_the_shape_check() {
        let mut l = Loaded::default();
        load_str(
            "ok.yaml",
            "kind: Deployment\nmetadata: {name: a, labels: {x: y}, annotations: null}\nspec: {replicas: 2, template: {metadata: {labels: {app: a}}, spec: {hostNetwork: null, containers: [{name: c, image: i, securityContext: {privileged: false, runAsUser: 1000}}]}}}\n---\nkind: ConfigMap\nmetadata: {name: b}\ndata: {k: v}\n",
            &mut l,
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.objects.len(), 2);
    }
}
