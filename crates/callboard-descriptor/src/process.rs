//! The per-document pipeline: YAML → envelope → location annotations → placeholders →
//! validation → location-type check, producing one [`Report`] per document.

use callboard_model::validate::kind_of;
use callboard_model::{Diagnostic, Entity, FieldPath, Rule, Spec, check_envelope, validate};
use serde_json::{Map, Value};

use crate::locate::locate;
use crate::location::{Base, LocationRef, Target, location_annotations};
use crate::placeholder::{self, Reads};
use crate::yaml::{Limits, RawDocument, read_stream, text_for_locating};

/// Where a file was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The location the file itself was read from (`backstage.io/managed-by-location`).
    pub location: LocationRef,
    /// The registered location that led here (`backstage.io/managed-by-origin-location`).
    pub origin: LocationRef,
}

impl Source {
    /// A file registered directly.
    pub fn new(location: LocationRef) -> Self {
        Self {
            origin: location.clone(),
            location,
        }
    }
}

/// A diagnostic with its position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub diagnostic: Diagnostic,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// What became of one document.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An empty document (`---` with nothing after it); Backstage skips these.
    Empty,
    /// A valid entity.
    Accepted(Box<Entity>),
    /// An invalid document, with at least one problem.
    Rejected(Vec<Problem>),
}

/// The result for one document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// 0-based position in the YAML stream (empty documents count).
    pub index: usize,
    /// 1-based line where the document starts.
    pub first_line: usize,
    /// The document's `kind`, when it is a string.
    pub kind: Option<String>,
    /// The lowercased entity ref, once the envelope is valid.
    pub entity_ref: Option<String>,
    /// Accepted, rejected or empty.
    pub outcome: Outcome,
}

/// A file split into documents, ready to process once its placeholder reads are done.
#[derive(Debug)]
pub struct ParsedFile<'b> {
    text: &'b [u8],
    documents: Vec<RawDocument>,
}

/// Splits and parses a file.
pub fn parse_file<'b>(bytes: &'b [u8], limits: &Limits) -> ParsedFile<'b> {
    let (documents, bom) = read_stream(bytes, limits);
    ParsedFile {
        text: &bytes[bom..],
        documents,
    }
}

impl ParsedFile<'_> {
    /// The documents.
    pub fn documents(&self) -> &[RawDocument] {
        &self.documents
    }

    /// Everything the placeholders of this file need read.
    pub fn read_targets(&self, source: &Source) -> Vec<Target> {
        let Some(base) = source.location.base() else {
            return Vec::new();
        };
        let mut out: Vec<Target> = self
            .documents
            .iter()
            .filter_map(|d| d.content.as_ref().ok().and_then(Option::as_ref))
            .flat_map(|v| placeholder::targets(v, &base))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Processes every document.
    pub fn process(self, source: &Source, reads: &Reads) -> Vec<Report> {
        // Computed once per file: every document of it gets the same location annotations.
        let annotations: Vec<(&'static str, Value)> = location_annotations(&source.location, &source.origin)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let base = source.location.base();
        let text = self.text;
        self.documents
            .into_iter()
            .map(|d| process_document(text, d, source, base.as_ref(), &annotations, reads))
            .collect()
    }
}

fn process_document(
    file: &[u8],
    raw: RawDocument,
    source: &Source,
    base: Option<&Base>,
    annotations: &[(&'static str, Value)],
    reads: &Reads,
) -> Report {
    {
        let mut report = Report {
            index: raw.index,
            first_line: raw.first_line,
            kind: None,
            entity_ref: None,
            outcome: Outcome::Empty,
        };
        let value = match raw.content {
            Ok(None) => return report,
            Ok(Some(value)) => value,
            Err(e) => {
                let diagnostic = Diagnostic::new(e.rule, FieldPath::root(), e.message);
                report.outcome = Outcome::Rejected(vec![Problem {
                    diagnostic,
                    line: e.line,
                    column: e.column,
                }]);
                return report;
            }
        };
        let reject = |report: &mut Report, diagnostics: Vec<Diagnostic>| {
            let text = text_for_locating(&file[raw.range.clone()]);
            let text = text.as_str();
            let problems = diagnostics
                .into_iter()
                .map(|diagnostic| {
                    let (line, column) = locate(text, &diagnostic.path, raw.first_line - 1);
                    Problem {
                        diagnostic,
                        line,
                        column,
                    }
                })
                .collect();
            report.outcome = Outcome::Rejected(problems);
        };
        if !value.is_object() {
            let kind = match &value {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            };
            let message = format!("expected a mapping at the document root, found {kind}");
            reject(
                &mut report,
                vec![Diagnostic::new(Rule::RootNotObject, FieldPath::root(), message)],
            );
            return report;
        }
        report.kind = kind_of(&value).map(str::to_owned);
        let envelope = match check_envelope(&value) {
            Ok(envelope) => envelope,
            Err(diagnostics) => {
                reject(&mut report, diagnostics);
                return report;
            }
        };
        report.entity_ref = Some(envelope.ref_string());

        let mut value = value;
        annotate(&mut value, annotations);
        if let Some(base) = base {
            value = match placeholder::substitute(value, base, reads) {
                Ok(v) => v,
                Err(diagnostic) => {
                    reject(&mut report, vec![diagnostic]);
                    return report;
                }
            };
        }
        let entity = match validate(value) {
            Ok(entity) => entity,
            Err(rejection) => {
                reject(&mut report, rejection.diagnostics);
                return report;
            }
        };
        if let Spec::Location(spec) = entity.spec() {
            let location_type = spec.location_type.as_deref().unwrap_or(&source.location.location_type);
            let field = if spec.location_type.is_some() {
                FieldPath::root().key("spec").key("type")
            } else {
                FieldPath::root().key("spec")
            };
            if !matches!(location_type, "url" | "file") {
                let targets: Vec<&str> = spec.all_targets().collect();
                if !targets.is_empty() {
                    let message = format!(
                        "no reader can handle locations of type {location_type:?} (target {:?})",
                        targets[0]
                    );
                    reject(
                        &mut report,
                        vec![Diagnostic::new(Rule::UnsupportedLocationType, field, message)],
                    );
                    return report;
                }
            }
            if location_type == "file"
                && let Some(t) = spec.all_targets().find(|t| t.ends_with('/'))
            {
                let message = format!("a file location target must name a file, not a folder: {t:?}");
                reject(
                    &mut report,
                    vec![Diagnostic::new(Rule::UnsupportedLocationType, field, message)],
                );
                return report;
            }
        }
        report.outcome = Outcome::Accepted(Box::new(entity));
        report
    }
}

/// Adds the location annotations under `metadata.annotations`, keeping authors' values.
///
/// As Backstage's processing does, `backstage.io/managed-by-location` and
/// `backstage.io/managed-by-origin-location` are always overwritten (an author cannot claim another
/// location), while authors' `view-url`, `edit-url` and `source-location` win.
pub fn annotate(document: &mut Value, annotations: &[(&'static str, Value)]) {
    let Some(Value::Object(metadata)) = document.get_mut("metadata") else {
        return;
    };
    let existing = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(existing) = existing else {
        return;
    };
    for (key, value) in annotations {
        if key.starts_with("backstage.io/managed-by-") {
            existing.insert((*key).to_owned(), value.clone());
        } else {
            existing.entry(*key).or_insert_with(|| value.clone());
        }
    }
}

/// A convenience for callers that can read synchronously (the CLI, tests, fuzzers).
pub fn process_bytes(
    bytes: &[u8],
    source: &Source,
    limits: &Limits,
    mut read: impl FnMut(&Target) -> Result<Vec<u8>, placeholder::ReadError>,
) -> Vec<Report> {
    let parsed = parse_file(bytes, limits);
    let reads: Reads = parsed
        .read_targets(source)
        .into_iter()
        .map(|t| {
            let result = read(&t);
            (t, result)
        })
        .collect();
    parsed.process(source, &reads)
}

/// Resolves the base for a file location path, for callers that do not hold a [`Base`] yet.
pub fn file_base(path: &std::path::Path) -> Base {
    Base::File(path.to_path_buf())
}
