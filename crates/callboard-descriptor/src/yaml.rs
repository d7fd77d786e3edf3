//! YAML streams read the way Backstage's parser (the `yaml` npm package 2.x, in
//! `parseEntityYaml`) reads them.
//!
//! * A stream is split into documents at `---` and `...` marker lines first, so a broken
//!   document never hides the ones after it; each document then parses on its own.
//! * The bytes are decoded as `Buffer.toString('utf8')` decodes them upstream: a byte sequence
//!   that is not UTF-8 becomes U+FFFD and the document is read on.
//! * Only `\n` (or `\r\n`) ends a line. A bare `\r` is ordinary text, as in the yaml package's
//!   lexer: it stays in the value it is written in, and a file with only `\r` line ends is one
//!   long line.
//! * Scalars resolve by the YAML 1.2 core schema (`yes` stays a string, `0o17` is 15), or by
//!   upstream's YAML 1.1 schema once a `%YAML 1.1` directive is seen (see [`schema`]); tags are
//!   resolved as upstream resolves them; merge keys (`<<`) are ordinary keys under 1.2 and merge
//!   under 1.1.
//! * Duplicate keys are errors ("Map keys must be unique" upstream).
//! * Tabs may separate tokens but never indent a block collection ("Tabs are not allowed as
//!   indentation" upstream).
//! * Aliases are limited like upstream's `maxAliasCount` (100), plus a hard cap on expanded
//!   nodes, so alias bombs fail fast; nesting depth and document size are limited too.
//! * A leading byte-order mark is skipped and CRLF line ends are accepted.

mod schema;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use callboard_model::Rule;
use saphyr_parser::{Event, Parser, ScalarStyle, Tag};
use serde_json::{Map, Value};

use schema::{Schema, resolve_scalar, tagged_mapping, tagged_sequence};

/// Limits that keep hostile input cheap to reject.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest document, in bytes.
    pub max_document_bytes: usize,
    /// Deepest nesting of collections.
    pub max_depth: usize,
    /// Upstream's `maxAliasCount`: how often one anchor may be used, weighted by the aliases
    /// nested in it.
    pub max_alias_count: usize,
    /// Most nodes that alias expansion may add to one document.
    pub max_alias_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_document_bytes: 4 << 20,
            max_depth: 256,
            max_alias_count: 100,
            max_alias_nodes: 100_000,
        }
    }
}

/// A problem reading one document, with its position in the file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}, column {column}")]
pub struct YamlError {
    /// The broken rule.
    pub rule: Rule,
    /// What went wrong.
    pub message: String,
    /// 1-based line in the file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One document of a stream.
#[derive(Debug, Clone)]
pub struct RawDocument {
    /// Position in the stream, counting empty documents (upstream's document index).
    pub index: usize,
    /// 1-based line where the document's text starts.
    pub first_line: usize,
    /// Byte range of the document's text in the (BOM-stripped) file.
    pub range: std::ops::Range<usize>,
    /// The document's value: `Ok(None)` for an empty document, which upstream skips.
    pub content: Result<Option<Value>, YamlError>,
}

/// Splits and parses a YAML stream. Never panics; every problem is reported on its document.
pub fn read_stream(bytes: &[u8], limits: &Limits) -> (Vec<RawDocument>, usize) {
    let (bytes, bom) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, 3),
        None => (bytes, 0),
    };
    let mut directives = Directives::default();
    let documents = split(bytes)
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| {
            let text = &bytes[chunk.start..chunk.end];
            let schema = directives.document(text);
            let content = parse_chunk(text, chunk.line, limits, schema);
            RawDocument {
                index,
                first_line: chunk.line,
                range: chunk.start..chunk.end,
                content,
            }
        })
        .collect();
    (documents, bom)
}

/// The `%YAML` state of a stream, kept as upstream's `Directives` keeps it. A document is read
/// with the 1.1 schema when a `%YAML` directive is in force whose version is 1.1: its own, or the
/// one of the document before when it has no directives of its own (`%YAML 1.1` carries over).
/// Any directive after a 1.1 document first resets the state to "1.1, not explicit", which reads
/// as 1.2 unless a `%YAML` directive follows.
#[derive(Debug, Default)]
struct Directives {
    /// A `%YAML` directive is in force (upstream's `yaml.explicit`).
    explicit: bool,
    /// Its version (upstream's `yaml.version`).
    version: Schema,
    /// Upstream's `atNextDocument`: the next directive starts again from 1.1 defaults.
    at_next_document: bool,
}

impl Directives {
    /// Reads the directive lines heading a document and returns the schema it is read with.
    fn document(&mut self, text: &[u8]) -> Schema {
        for line in text.split(|&b| b == b'\n') {
            if is_marker(line, b"---") {
                break;
            }
            match first_visible(line) {
                None | Some(b'#') => {}
                Some(_) if line[0] == b'%' => self.directive(line),
                Some(_) => break,
            }
        }
        let schema = if self.explicit { self.version } else { Schema::Core };
        match self.version {
            Schema::Yaml11 => self.at_next_document = true,
            Schema::Core => *self = Self::default(),
        }
        schema
    }

    fn directive(&mut self, line: &[u8]) {
        if self.at_next_document {
            *self = Self {
                explicit: false,
                version: Schema::Yaml11,
                at_next_document: false,
            };
        }
        let line = String::from_utf8_lossy(line);
        // The directive ends at a `#` that follows a blank, as in upstream's lexer.
        let end = line
            .match_indices('#')
            .find(|(i, _)| *i > 0 && matches!(line.as_bytes()[i - 1], b' ' | b'\t'))
            .map_or(line.len(), |(i, _)| i);
        let parts: Vec<&str> = line[..end].split([' ', '\t', '\r']).filter(|p| !p.is_empty()).collect();
        if parts.first() != Some(&"%YAML") {
            return; // `%TAG` is saphyr's business; unknown directives are ignored (a warning upstream)
        }
        self.explicit = true;
        // `%YAML 1.3` is a warning upstream and keeps the version; malformed ones are syntax
        // errors, which saphyr reports too.
        match parts.as_slice() {
            [_, "1.1"] => self.version = Schema::Yaml11,
            [_, "1.2"] => self.version = Schema::Core,
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    start: usize,
    end: usize,
    line: usize,
}

/// The first byte of a line that is not a blank or a line end. A bare `\r` is text upstream.
fn first_visible(line: &[u8]) -> Option<u8> {
    line.iter().enumerate().find_map(|(i, &b)| match b {
        b' ' | b'\t' | b'\n' => None,
        b'\r' if line.get(i + 1) == Some(&b'\n') => None,
        _ => Some(b),
    })
}

fn is_marker(line: &[u8], marker: &[u8; 3]) -> bool {
    line.starts_with(marker) && matches!(line.get(3), None | Some(b' ' | b'\t' | b'\r' | b'\n'))
}

/// Cuts the stream at document markers. Text before the first `---` that holds only comments,
/// blank lines and directives belongs to the next document, as in the YAML grammar.
fn split(bytes: &[u8]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut explicit = false;
    let mut content = false;
    let mut directive = false;
    let mut pos = 0;
    let mut line_no = 1;
    while pos < bytes.len() {
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| pos + i + 1);
        let line = &bytes[pos..end];
        if is_marker(line, b"---") {
            if explicit || content {
                chunks.push(Chunk {
                    start,
                    end: pos,
                    line: start_line,
                });
                start = pos;
                start_line = line_no;
            }
            explicit = true;
            content = false;
            directive = false;
        } else if is_marker(line, b"...") {
            if explicit || content || directive {
                chunks.push(Chunk {
                    start,
                    end,
                    line: start_line,
                });
            }
            start = end;
            start_line = line_no + 1;
            explicit = false;
            content = false;
            directive = false;
        } else {
            match first_visible(line) {
                None | Some(b'#') => {}
                Some(b'%') if !content && line[0] == b'%' => directive = true,
                Some(_) => content = true,
            }
        }
        pos = end;
        line_no += 1;
    }
    if explicit || content || directive {
        chunks.push(Chunk {
            start,
            end: bytes.len(),
            line: start_line,
        });
    }
    chunks
}

fn error(rule: Rule, message: impl Into<String>, line: usize, column: usize) -> YamlError {
    YamlError {
        rule,
        message: message.into(),
        line,
        column,
    }
}

/// How much text the retries of [`parse_chunk`] may parse again, so a document full of
/// `key:<tab>value` lines cannot make parsing quadratic beyond this.
const RETRY_BUDGET_BYTES: usize = 16 << 20;

fn parse_chunk(bytes: &[u8], first_line: usize, limits: &Limits, schema: Schema) -> Result<Option<Value>, YamlError> {
    if bytes.len() > limits.max_document_bytes {
        return Err(error(
            Rule::YamlSizeLimit,
            format!(
                "document is {} bytes, more than the limit of {} bytes",
                bytes.len(),
                limits.max_document_bytes
            ),
            first_line,
            1,
        ));
    }
    // As `Buffer.toString('utf8')` upstream: bytes that are not UTF-8 become U+FFFD. A `\n` is
    // never part of a broken sequence, so decoding document by document equals decoding the file.
    let text = String::from_utf8_lossy(bytes);
    let (text, cr) = mask_bare_cr(text);
    let compose =
        |text: &str, guard: Option<&[usize]>| Composer::new(limits, first_line - 1, schema, cr, text, guard).compose();
    // saphyr refuses `key:<tab>value` (only tabs after the `:`, then a letter or `-`); the yaml
    // package, like the YAML spec, takes tabs as separation there. Such tabs carry no meaning, so
    // they are read as spaces: first all at once, guarded against any that sat inside a scalar
    // (`"a:<tab>b"`), then, if one did, one by one where saphyr stops, within a budget.
    let first = compose(&text, None);
    if !matches!(first, Err(Stop::TabAfterColon(..))) {
        return finish(first).map_err(|mut e| {
            if cr.is_some() && e.rule == Rule::YamlSyntax {
                // The usual cause: a file saved with old Mac line ends reads as one long line.
                e.message
                    .push_str(" (the document has bare carriage returns, which do not end lines for Backstage either)");
            }
            e
        });
    }
    let (spaced, replaced) = untab_after_colons(&text);
    match compose(&spaced, Some(&replaced)) {
        Err(Stop::Guard) => {}
        other => return finish(other),
    }
    let mut text = text.into_owned();
    let mut budget = RETRY_BUDGET_BYTES;
    loop {
        match compose(&text, None) {
            Err(Stop::TabAfterColon(at, e)) => {
                if budget < text.len() || !untab_after_colon(&mut text, at) {
                    return Err(e);
                }
                budget -= text.len();
            }
            other => return finish(other),
        }
    }
}

fn finish(result: Result<Option<Value>, Stop>) -> Result<Option<Value>, YamlError> {
    result.map_err(|stop| match stop {
        Stop::Error(e) | Stop::TabAfterColon(_, e) => e,
        // Only the guarded run stops so, and `parse_chunk` falls back from it.
        Stop::Guard => error(Rule::YamlSyntax, "a tab after ':' could not be read", 1, 1),
    })
}

/// Turns every run of blanks that follows a `:` and starts with a tab into spaces, returning the
/// byte offsets of the tabs it replaced.
fn untab_after_colons(text: &str) -> (String, Vec<usize>) {
    let mut bytes = text.as_bytes().to_vec();
    let mut replaced = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'\t' && bytes[i - 1] == b':' {
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                if bytes[i] == b'\t' {
                    bytes[i] = b' ';
                    replaced.push(i);
                }
                i += 1;
            }
        }
        i += 1;
    }
    // Only ASCII tabs became ASCII spaces, so the bytes are still UTF-8.
    (String::from_utf8(bytes).unwrap_or_else(|_| text.to_owned()), replaced)
}

/// A document's text as the composer hands it to saphyr (invalid UTF-8 replaced, bare `\r`s
/// masked, tabs after `:` turned into spaces), for re-reading it to locate a field. Lines and
/// columns are those of the original text, except one column after a masked `\r` that follows an
/// indicator.
pub(crate) fn text_for_locating(bytes: &[u8]) -> String {
    let (text, _) = mask_bare_cr(String::from_utf8_lossy(bytes));
    untab_after_colons(&text).0
}

/// Characters that can stand in for a bare `\r` while saphyr reads a document: noncharacters
/// first, then the private use area. The first two the document does not contain are used.
fn sentinels() -> impl Iterator<Item = char> {
    ('\u{FDD0}'..='\u{FDEF}').chain('\u{E000}'..='\u{F8FF}')
}

/// The characters standing for bare `\r`s in a masked document (see [`mask_bare_cr`]).
#[derive(Debug, Clone, Copy)]
struct CrMask {
    /// Stands for a bare `\r` in text.
    plain: char,
    /// Stands for a bare `\r` right after an indicator; it follows an inserted space.
    after_indicator: char,
}

impl CrMask {
    /// Puts the `\r`s back into a scalar's text (with the space inserted before the second kind
    /// when it is still there, inside quotes or block scalars).
    fn unmask<'a>(&self, text: Cow<'a, str>) -> Cow<'a, str> {
        if !text.contains([self.plain, self.after_indicator]) {
            return text;
        }
        let spaced: String = [' ', self.after_indicator].iter().collect();
        Cow::Owned(
            text.replace(&spaced, "\r")
                .replace([self.after_indicator, self.plain], "\r"),
        )
    }
}

/// Replaces every bare `\r` (one not followed by `\n`) with a character saphyr reads as ordinary
/// text, so it does not end a line there; the composer puts the `\r` back into the values. The
/// yaml package never ends a line at a bare `\r` (only at `\n`): `a: x\ry` is `"x\ry"`, and a
/// file with old Mac line ends is one line. Upstream's lexer does count a `\r` as the blank that
/// must follow an indicator (`a:\ry` is `{a: "\ry"}`, `-\ry` an item), so after `:`, a `-` or `?`
/// that starts a token, and `---`/`...` at a line start, a space goes in before the stand-in.
fn mask_bare_cr(text: Cow<'_, str>) -> (Cow<'_, str>, Option<CrMask>) {
    let bytes = text.as_bytes();
    let bare = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
    if !(0..bytes.len()).any(bare) {
        return (text, None);
    }
    let mut used = HashSet::new();
    for c in text.chars() {
        if matches!(c, '\u{FDD0}'..='\u{FDEF}' | '\u{E000}'..='\u{F8FF}') {
            used.insert(c);
        }
    }
    let mut free = sentinels().filter(|c| !used.contains(c));
    // A document holding all 6,432 candidates keeps its bare `\r`s as line ends.
    let (Some(plain), Some(after_indicator)) = (free.next(), free.next()) else {
        return (text, None);
    };
    let mut masked = String::with_capacity(text.len() + 16);
    for (i, c) in text.char_indices() {
        if !(c == '\r' && bare(i)) {
            masked.push(c);
        } else if after_indicator_at(bytes, i) {
            masked.push(' ');
            masked.push(after_indicator);
        } else {
            masked.push(plain);
        }
    }
    let mask = CrMask { plain, after_indicator };
    (Cow::Owned(masked), Some(mask))
}

/// Whether the bytes before `i` end an indicator that upstream would take as complete there.
fn after_indicator_at(bytes: &[u8], i: usize) -> bool {
    let token_start = |at: usize| at == 0 || matches!(bytes[at - 1], b' ' | b'\t' | b'\n');
    let line_marker = i >= 3 && (i == 3 || bytes[i - 4] == b'\n') && matches!(&bytes[i - 3..i], b"---" | b"...");
    match i.checked_sub(1).map(|j| bytes[j]) {
        Some(b':') => true,
        Some(b'-' | b'?') => token_start(i - 1) || line_marker,
        Some(b'.') => line_marker,
        _ => false,
    }
}

/// Turns the tabs between a `:` and the character at char index `at` into spaces. False when
/// the text there is not `:` followed by blanks.
fn untab_after_colon(text: &mut String, at: usize) -> bool {
    let Some(pos) = text.char_indices().nth(at).map(|(i, _)| i) else {
        return false;
    };
    let bytes = text.as_bytes();
    let mut start = pos;
    while start > 0 && matches!(bytes[start - 1], b' ' | b'\t') {
        start -= 1;
    }
    if start == 0 || bytes[start - 1] != b':' || !bytes[start..pos].contains(&b'\t') {
        return false;
    }
    let spaces = " ".repeat(pos - start);
    text.replace_range(start..pos, &spaces);
    true
}

/// Why composing stopped.
enum Stop {
    /// The document is broken.
    Error(YamlError),
    /// saphyr refused tabs after a `:` at this char index; worth one more try with spaces.
    TabAfterColon(usize, YamlError),
    /// A tab that [`untab_after_colons`] replaced was inside a scalar.
    Guard,
}

impl From<YamlError> for Stop {
    fn from(e: YamlError) -> Self {
        Stop::Error(e)
    }
}

/// A mapping key waiting for its value.
struct Key {
    name: String,
    line: usize,
    column: usize,
    /// A YAML 1.1 merge key (`<<`): its value is merged into the mapping.
    merge: bool,
}

/// A collection under construction.
enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        tag: Option<String>,
        metric: usize,
        depth_below: usize,
        line: usize,
        column: usize,
    },
    Map {
        map: Map<String, Value>,
        key: Option<Key>,
        /// Keys that only merges put here; one explicit key may still replace each of them.
        merged: HashSet<String>,
        anchor: usize,
        tag: Option<String>,
        metric: usize,
        depth_below: usize,
        line: usize,
        column: usize,
    },
}

struct Anchor {
    value: Value,
    /// Upstream's `aliasCount` of the anchored node.
    alias_count: usize,
    /// How many times it was aliased so far.
    uses: usize,
    /// Its nesting depth, so an alias cannot smuggle in depth beyond the limit.
    depth: usize,
}

/// A finished node on its way into its parent.
struct Node {
    value: Value,
    anchor: usize,
    /// Upstream's alias-count metric of the node.
    metric: usize,
    /// How many collections deep the node is.
    depth: usize,
    line: usize,
    column: usize,
    /// A plain, untagged `<<` under YAML 1.1.
    merge_key: bool,
}

struct Composer<'l, 't> {
    limits: &'l Limits,
    line_offset: usize,
    schema: Schema,
    /// The characters standing for bare `\r`s in `text` (see [`mask_bare_cr`]).
    cr: Option<CrMask>,
    text: &'t str,
    /// Sorted byte offsets of tabs turned into spaces; no scalar may contain one.
    guard: Option<&'t [usize]>,
    /// Whether `text` is ASCII, so char indices are byte offsets.
    ascii: bool,
    /// Whether `text` has a tab at all; without one there is no tab to check.
    tabs: bool,
    /// Byte offset of every char of `text`, built the first time a non-ASCII text needs one
    /// (documents are far below 4 GiB).
    offsets: OnceCell<Vec<u32>>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchor>,
    alias_nodes: usize,
    root: Option<Value>,
}

/// The full name of a tag as upstream names it: `tag:yaml.org,2002:str` for `!!str`, `!foo` for a
/// local tag, `!` for the non-specific tag, the URI of a verbatim tag.
fn tag_name(tag: &Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

impl<'l, 't> Composer<'l, 't> {
    fn new(
        limits: &'l Limits,
        line_offset: usize,
        schema: Schema,
        cr: Option<CrMask>,
        text: &'t str,
        guard: Option<&'t [usize]>,
    ) -> Self {
        Self {
            limits,
            line_offset,
            schema,
            cr,
            text,
            guard,
            ascii: text.is_ascii(),
            tabs: text.contains('\t'),
            offsets: OnceCell::new(),
            stack: Vec::new(),
            anchors: HashMap::new(),
            alias_nodes: 0,
            root: None,
        }
    }

    fn compose(mut self) -> Result<Option<Value>, Stop> {
        let mut parser = Parser::new_from_str(self.text);
        let mut documents = 0;
        loop {
            let (event, span) = match parser.next_event() {
                None => break,
                Some(Ok(pair)) => pair,
                Some(Err(e)) => {
                    let m = e.marker();
                    let (line, column) = (m.line() + self.line_offset, m.col() + 1);
                    let info = e.info();
                    let e = if info.contains("unknown anchor") {
                        error(Rule::YamlUnknownAnchor, info, line, column)
                    } else if info == "recursion limit exceeded" {
                        // saphyr counts flow levels in a byte.
                        let message = "flow collections nest deeper than 255 levels";
                        error(Rule::YamlDepthLimit, message, line, column)
                    } else {
                        error(Rule::YamlSyntax, info, line, column)
                    };
                    if info == "':' must be followed by a valid YAML whitespace" {
                        return Err(Stop::TabAfterColon(m.index(), e));
                    }
                    return Err(Stop::Error(e));
                }
            };
            let (line, column) = (span.start.line() + self.line_offset, span.start.col() + 1);
            match event {
                Event::StreamStart | Event::Nothing => {}
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(error(
                            Rule::YamlSyntax,
                            "unexpected second document in one document block",
                            line,
                            column,
                        )
                        .into());
                    }
                }
                Event::DocumentEnd => {}
                Event::Scalar(text, style, anchor, tag) => {
                    if let Some(guard) = self.guard {
                        let (start, end) = (self.byte_offset(span.start.index()), self.byte_offset(span.end.index()));
                        if guard
                            .get(guard.partition_point(|&p| p < start))
                            .is_some_and(|&p| p < end)
                        {
                            return Err(Stop::Guard);
                        }
                    }
                    let text = match self.cr {
                        Some(mask) => mask.unmask(text),
                        None => text,
                    };
                    if self.cr.is_some() && style == ScalarStyle::Plain && text.contains("\r#") {
                        // Upstream ends a plain scalar at a blank before `#`, and a bare `\r`
                        // counts as one, but keeps the `\r` in the scalar: the comment then
                        // touches the scalar, which is an error.
                        let message = "comments must be separated from other tokens by white space characters";
                        return Err(error(Rule::YamlSyntax, message, line, column).into());
                    }
                    if anchor != 0 || tag.is_some() {
                        self.check_tab_indentation(span.start.index(), line)?;
                    }
                    let tag = tag.as_deref().map(tag_name);
                    let merge_key = self.schema == Schema::Yaml11
                        && style == ScalarStyle::Plain
                        && tag.is_none()
                        && text == "<<"
                        && self.expecting_key();
                    let value = resolve_scalar(&text, style, tag.as_deref(), self.schema)
                        .map_err(|message| error(Rule::YamlSyntax, message, line, column))?;
                    self.add(Node {
                        value,
                        anchor,
                        metric: 1,
                        depth: 0,
                        line,
                        column,
                        merge_key,
                    })?;
                }
                Event::SequenceStart(anchor, tag) => {
                    self.open(span.start.index(), line, column)?;
                    self.stack.push(Frame::Seq {
                        items: Vec::new(),
                        anchor,
                        tag: tag.as_deref().map(tag_name),
                        metric: 0,
                        depth_below: 1,
                        line,
                        column,
                    });
                }
                Event::MappingStart(anchor, tag) => {
                    self.open(span.start.index(), line, column)?;
                    self.stack.push(Frame::Map {
                        map: Map::new(),
                        key: None,
                        merged: HashSet::new(),
                        anchor,
                        tag: tag.as_deref().map(tag_name),
                        metric: 0,
                        depth_below: 1,
                        line,
                        column,
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (value, anchor, metric, depth, at) = match self.stack.pop() {
                        Some(Frame::Seq {
                            items,
                            anchor,
                            tag,
                            metric,
                            depth_below,
                            line,
                            column,
                        }) => (
                            tagged_sequence(items, tag.as_deref()),
                            anchor,
                            metric,
                            depth_below,
                            (line, column),
                        ),
                        Some(Frame::Map {
                            map,
                            anchor,
                            tag,
                            metric,
                            depth_below,
                            line,
                            column,
                            ..
                        }) => (
                            tagged_mapping(map, tag.as_deref()),
                            anchor,
                            metric,
                            depth_below,
                            (line, column),
                        ),
                        None => {
                            return Err(error(Rule::YamlSyntax, "unbalanced collection end", line, column).into());
                        }
                    };
                    let value = value.map_err(|message| error(Rule::YamlSyntax, message, at.0, at.1))?;
                    self.add(Node {
                        value,
                        anchor,
                        metric,
                        depth,
                        line: at.0,
                        column: at.1,
                        merge_key: false,
                    })?;
                }
                Event::Alias(id) => self.alias(id, line, column)?,
            }
        }
        Ok(self.root.take().filter(|v| !v.is_null()))
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// Checks a collection that starts at char `index` of the text.
    fn open(&self, index: usize, line: usize, column: usize) -> Result<(), YamlError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(error(
                Rule::YamlDepthLimit,
                format!("collections nest deeper than {} levels", self.limits.max_depth),
                line,
                column,
            ));
        }
        self.check_tab_indentation(index, line)
    }

    /// The yaml package rejects a tab in the blanks before a block collection when those blanks
    /// are indentation: at the start of a line, or after a `-`, `?` or `:` indicator (`-<tab>key:
    /// value`), and before an anchor or tag except after a `:`. saphyr accepts some of these, so
    /// the text before each collection and each scalar with properties is checked.
    fn check_tab_indentation(&self, index: usize, line: usize) -> Result<(), YamlError> {
        if !self.tabs {
            return Ok(());
        }
        let bytes = self.text.as_bytes();
        let pos = self.byte_offset(index);
        let property = matches!(bytes.get(pos), Some(b'&' | b'!'));
        if matches!(bytes.get(pos), None | Some(b'[' | b'{')) {
            return Ok(()); // flow collections are not indented
        }
        let mut start = pos;
        while start > 0 && matches!(bytes[start - 1], b' ' | b'\t') {
            start -= 1;
        }
        let Some(tab) = bytes[start..pos].iter().position(|&b| b == b'\t').map(|i| start + i) else {
            return Ok(());
        };
        match start.checked_sub(1).map(|i| bytes[i]) {
            None | Some(b'\n' | b'-' | b'?') => {}
            // `key:<tab>&anchor` is fine upstream: after a `:` only a collection itself may not
            // follow a tab on its line.
            Some(b':') if !property => {}
            _ => return Ok(()),
        }
        let line_start = bytes[..tab].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..tab].chars().count() + 1;
        Err(error(
            Rule::YamlSyntax,
            "tabs are not allowed as indentation",
            line,
            column,
        ))
    }

    /// The byte offset of char `index` of the text (saphyr's markers count chars).
    fn byte_offset(&self, index: usize) -> usize {
        if self.ascii {
            return index.min(self.text.len());
        }
        let offsets = self.offsets.get_or_init(|| {
            let offset = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
            self.text.char_indices().map(|(i, _)| offset(i)).collect()
        });
        offsets
            .get(index)
            .and_then(|&i| usize::try_from(i).ok())
            .map_or(self.text.len(), |i| i.min(self.text.len()))
    }

    fn alias(&mut self, id: usize, line: usize, column: usize) -> Result<(), YamlError> {
        let limits = *self.limits;
        let depth_here = self.stack.len();
        let Some(anchor) = self.anchors.get_mut(&id) else {
            return Err(error(
                Rule::YamlUnknownAnchor,
                "alias refers to an unknown anchor",
                line,
                column,
            ));
        };
        anchor.uses += 1;
        if anchor.uses.saturating_mul(anchor.alias_count) > limits.max_alias_count {
            return Err(error(
                Rule::YamlAliasLimit,
                "excessive alias count indicates a resource exhaustion attack",
                line,
                column,
            ));
        }
        if depth_here + anchor.depth > limits.max_depth {
            return Err(error(
                Rule::YamlDepthLimit,
                format!(
                    "alias expands to collections nested deeper than {} levels",
                    limits.max_depth
                ),
                line,
                column,
            ));
        }
        let nodes = count_nodes(&anchor.value, limits.max_alias_nodes.saturating_add(1));
        self.alias_nodes = self.alias_nodes.saturating_add(nodes);
        if self.alias_nodes > limits.max_alias_nodes {
            return Err(error(
                Rule::YamlAliasLimit,
                format!("aliases expand to more than {} nodes", limits.max_alias_nodes),
                line,
                column,
            ));
        }
        let metric = anchor.uses * anchor.alias_count;
        let (value, depth) = (anchor.value.clone(), anchor.depth);
        self.add(Node {
            value,
            anchor: 0,
            metric,
            depth,
            line,
            column,
            merge_key: false,
        })
    }

    /// Adds a finished node to its parent (or makes it the root), registering its anchor.
    fn add(&mut self, node: Node) -> Result<(), YamlError> {
        let Node {
            value,
            anchor,
            metric,
            depth,
            line,
            column,
            merge_key,
        } = node;
        if anchor != 0 {
            let anchored = Anchor {
                value: value.clone(),
                alias_count: metric,
                uses: 0,
                depth,
            };
            self.anchors.insert(anchor, anchored);
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq {
                items,
                metric: m,
                depth_below,
                ..
            }) => {
                *m = (*m).max(metric);
                *depth_below = (*depth_below).max(depth + 1);
                items.push(value);
            }
            Some(Frame::Map {
                map,
                key,
                merged,
                metric: m,
                depth_below,
                ..
            }) => {
                *m = (*m).max(metric);
                *depth_below = (*depth_below).max(depth + 1);
                match key.take() {
                    None => {
                        *key = Some(Key {
                            name: if merge_key { String::new() } else { key_string(value) },
                            line,
                            column,
                            merge: merge_key,
                        });
                    }
                    Some(k) if k.merge => merge(map, merged, value)
                        .map_err(|message| error(Rule::YamlSyntax, message, k.line, k.column))?,
                    Some(k) => {
                        if !merged.remove(&k.name) && map.contains_key(&k.name) {
                            return Err(error(
                                Rule::YamlDuplicateKey,
                                format!("map keys must be unique; {:?} is repeated", k.name),
                                k.line,
                                k.column,
                            ));
                        }
                        map.insert(k.name, value);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A YAML 1.1 merge (`<<: *base` or `<<: [*a, *b]`), as upstream's `addMergeToJSMap`: keys the
/// mapping already has win, then earlier sources win over later ones; keys written after the
/// merge replace merged ones.
fn merge(map: &mut Map<String, Value>, merged: &mut HashSet<String>, value: Value) -> Result<(), String> {
    let sources = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    for source in sources {
        let Value::Object(source) = source else {
            return Err("merge sources must be mappings or aliases of mappings".to_owned());
        };
        for (k, v) in source {
            if !map.contains_key(&k) {
                merged.insert(k.clone());
                map.insert(k, v);
            }
        }
    }
    Ok(())
}

/// Counts nodes up to `cap` without recursing (values can be deep).
fn count_nodes(value: &Value, cap: usize) -> usize {
    let mut count = 0;
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        count += 1;
        if count >= cap {
            return count;
        }
        match v {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    count
}

/// How a mapping key becomes a JSON object key (upstream's `stringifyKey`).
fn key_string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs(text: &str) -> Vec<(usize, Result<Option<Value>, YamlError>)> {
        read_stream(text.as_bytes(), &Limits::default())
            .0
            .into_iter()
            .map(|d| (d.index, d.content))
            .collect()
    }

    fn one(text: &str) -> Value {
        match docs(text).remove(0).1 {
            Ok(Some(v)) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn core_schema_scalars() {
        let v = one(
            "a: yes\nb: no\nc: on\nd: true\ne: 0o17\nf: 0x1f\ng: 1.0\nh: ~\ni: '1'\nj: 1e3\nk: 007\nl: .5\nm: 1.5\n",
        );
        assert_eq!(
            v,
            json!({"a":"yes","b":"no","c":"on","d":true,"e":15,"f":31,"g":1,"h":null,"i":"1","j":1000,"k":7,"l":0.5,"m":1.5})
        );
        assert_eq!(
            one("a: !!str 12\nb: !Ref x\nc: <<\n"),
            json!({"a":"12","b":"x","c":"<<"})
        );
        assert_eq!(one("1: a\ntrue: b\n~: c\n"), json!({"1":"a","true":"b","":"c"}));
    }

    #[test]
    fn splits_documents_and_counts_empty_ones() {
        let d = docs("# head\n---\na: 1\n---\n---\nb: 2\n...\n");
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].1, Ok(Some(json!({"a":1}))));
        assert_eq!(d[1].1, Ok(None));
        assert_eq!(d[2].1, Ok(Some(json!({"b":2}))));
        assert_eq!(docs("a: 1\n---\nb: 2\n").len(), 2);
        assert!(docs("# only a comment\n").is_empty());
        assert!(docs("").is_empty());
    }

    #[test]
    fn errors_stay_in_their_document() {
        let d = docs("a: 1\n---\nb: {% x %}\n---\nc: 3\n");
        assert_eq!(d.len(), 3);
        let e = d[1].1.clone().unwrap_err();
        assert_eq!((e.rule, e.line), (Rule::YamlSyntax, 3));
        assert_eq!(d[2].1, Ok(Some(json!({"c":3}))));
    }

    #[test]
    fn duplicate_keys() {
        let e = docs("a: 1\nb:\n  c: 1\n  c: 2\n").remove(0).1.unwrap_err();
        assert_eq!((e.rule, e.line, e.column), (Rule::YamlDuplicateKey, 4, 3));
    }

    #[test]
    fn bom_and_crlf() {
        assert_eq!(one("\u{feff}a: 1\r\nb: x\r\n"), json!({"a":1,"b":"x"}));
    }

    #[test]
    fn anchors_and_aliases() {
        assert_eq!(one("a: &x {k: v}\nb: *x\n"), json!({"a":{"k":"v"},"b":{"k":"v"}}));
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n";
        let e = docs(bomb).remove(0).1.unwrap_err();
        assert_eq!(e.rule, Rule::YamlAliasLimit);
    }

    #[test]
    fn depth_limit() {
        let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        let e = docs(&deep).remove(0).1.unwrap_err();
        assert!(matches!(e.rule, Rule::YamlDepthLimit | Rule::YamlSyntax), "{e:?}");
        // 10,000 levels of block sequences on one line: `- - - ... x`.
        let block = format!("{}x\n", "- ".repeat(10_000));
        let e = docs(&block).remove(0).1.unwrap_err();
        assert_eq!(e.rule, Rule::YamlDepthLimit);
    }

    fn error_of(text: &str) -> YamlError {
        match docs(text).remove(0).1 {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        // Upstream decodes the file with `Buffer.toString('utf8')` before parsing, so a Latin-1
        // byte or a cut-off sequence becomes U+FFFD and the document is read on.
        let d = read_stream(
            b"a: 1\n---\nb: caf\xe9 \xe2\x82\n# \xff\xfe\n---\nc: 2\n",
            &Limits::default(),
        )
        .0;
        assert_eq!(d.len(), 3);
        assert_eq!(d[1].content, Ok(Some(json!({"b": "caf\u{FFFD} \u{FFFD}"}))));
        assert_eq!(d[2].content, Ok(Some(json!({"c": 2}))));
    }

    #[test]
    fn a_bare_carriage_return_is_text() {
        // The yaml package ends lines only at `\n` (or `\r\n`); a `\r` alone stays in the value.
        assert_eq!(
            one("a: x\ry\nb: 'q\rr'\nc: |\n  s\rt\n"),
            json!({"a": "x\ry", "b": "q\rr", "c": "s\rt\n"})
        );
        assert_eq!(one("a: one\rtwo\r\nb: c\r\n"), json!({"a": "one\rtwo", "b": "c"}));
        assert_eq!(one("owner: team-a\r"), json!({"owner": "team-a\r"}));
        // A file with old Mac line ends is one line: `x\rb` is one plain scalar, then `: ` makes a
        // nested mapping on the same line, an error upstream too.
        assert_eq!(error_of("a: x\rb: 2\r").rule, Rule::YamlSyntax);
        assert!(error_of("a: x\rb: 2\r").message.contains("bare carriage returns"));
        // ...and when its first line is a comment, the whole file is a comment.
        assert!(docs("# head\rkind: Component\r").is_empty());
        assert_eq!(docs("\r").len(), 1);
        // A `\r` is the blank an indicator needs, and stays in the node after it.
        assert_eq!(one("a:\rvalue\n"), json!({"a": "\rvalue"}));
        assert_eq!(one("- \rx\n-\ry\n"), json!(["\rx", "\ry"]));
        assert_eq!(one("k: 'x:\ry'\n"), json!({"k": "x:\ry"}));
        // A plain scalar ends at a blank before `#` but keeps the `\r`; the comment then touches
        // it, which upstream rejects.
        assert_eq!(error_of("a: b\r# c\n").rule, Rule::YamlSyntax);
    }

    #[test]
    fn explicit_core_tags_apply_only_when_their_test_passes() {
        // As `findScalarTagByName`: a core tag whose test fails leaves the text (a warning).
        assert_eq!(
            one("a: !!int \"42\"\nb: !!int three\nc: !!float 3\nd: !!float '.5'\ne: !!bool 'true'\nf: !!bool yes\n"),
            json!({"a": 42, "b": "three", "c": "3", "d": 0.5, "e": true, "f": "yes"})
        );
        assert_eq!(
            one("a: !!null ''\nb: !!null x\nc: !!str 12\nd: ! 12\ne: !<tag:yaml.org,2002:int> '7'\n"),
            json!({"a": null, "b": "x", "c": "12", "d": "12", "e": 7})
        );
        // A tag made for another kind of node is ignored (a warning upstream).
        assert_eq!(
            one("a: !!map [1, 2]\nb: !!seq {x: 1}\nc: !!str {x: 1}\nd: !!map x\n"),
            json!({"a": [1, 2], "b": {"x": 1}, "c": {"x": 1}, "d": "x"})
        );
    }

    #[test]
    fn local_and_unknown_tags_are_not_resolved() {
        // `!Ref`, `!Sub` (CloudFormation style) and any `!foo`: upstream warns and keeps the node.
        assert_eq!(
            one("a: !Ref x\nb: !foo 12\nc: !list [1]\nd: !meta {k: v}\n"),
            json!({"a": "x", "b": "12", "c": [1], "d": {"k": "v"}})
        );
        assert_eq!(
            one("%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n"),
            json!({"a": "1"})
        );
        // A named handle without a `%TAG` is an error ("Could not resolve tag" upstream).
        assert_eq!(error_of("a: !e!x 1\n").rule, Rule::YamlSyntax);
    }

    #[test]
    fn values_that_are_not_json_become_what_to_json_gives() {
        // `!!binary` is a Node.js Buffer, `!!timestamp` a Date, `!!set`/`!!omap` a Set/Map: the
        // entity holds what `toJSON()` makes of them.
        assert_eq!(
            one("a: !!binary aGVsbG8=\nb: !!binary |\n  aG Vs\n  bG8=\n"),
            json!({"a": {"type": "Buffer", "data": [104, 101, 108, 108, 111]},
                   "b": {"type": "Buffer", "data": [104, 101, 108, 108, 111]}})
        );
        assert_eq!(
            one("a: !!timestamp 2001-12-14\nb: !!timestamp 2001-12-14 21:59:43.10 -5\n"),
            json!({"a": "2001-12-14T00:00:00.000Z", "b": "2001-12-15T02:59:43.100Z"})
        );
        assert_eq!(error_of("a: !!timestamp soon\n").rule, Rule::YamlSyntax);
        assert_eq!(
            one("a: !!set {x, y}\nb: !!omap [{x: 1}, {y: 2}]\nc: !!pairs [{x: 1}, y]\n"),
            json!({"a": {}, "b": {}, "c": [{"x": 1}, {"y": null}]})
        );
        assert_eq!(error_of("a: !!set {x: 1}\n").rule, Rule::YamlSyntax);
        assert_eq!(error_of("a: !!omap [{x: 1}, {x: 2}]\n").rule, Rule::YamlSyntax);
    }

    #[test]
    fn yaml_1_1_directive_selects_the_1_1_schema() {
        // Upstream reads a `%YAML 1.1` document with its yaml-1.1 schema.
        assert_eq!(
            one("%YAML 1.1\n---\na: yes\nb: Off\nc: 0755\nd: 0b101\ne: 1_000\nf: 1:30\ng: 2001-12-14\nh: y\n"),
            json!({"a": true, "b": false, "c": 493, "d": 5, "e": 1000, "f": 90,
                   "g": "2001-12-14T00:00:00.000Z", "h": true})
        );
        assert_eq!(one("%YAML 1.2\n---\na: yes\nb: 0755\n"), json!({"a": "yes", "b": 755}));
        // 1.1 carries over to the documents after it until a directive changes it; any directive
        // resets to "not explicit" (1.2) unless it is a `%YAML`.
        let d = docs("%YAML 1.1\n---\na: on\n---\nb: on\n...\n%TAG !e! tag:e:\n---\nc: on\n");
        let values: Vec<_> = d.into_iter().map(|(_, v)| v.unwrap().unwrap()).collect();
        assert_eq!(values, [json!({"a": true}), json!({"b": true}), json!({"c": "on"})]);
        let d = docs("%YAML 1.1\n---\na: on\n...\n%YAML 1.2\n---\nb: on\n");
        assert_eq!(d[1].1, Ok(Some(json!({"b": "on"}))));
        // An unsupported version is a warning upstream: the schema stays.
        assert_eq!(one("%YAML 1.3\n---\na: on\n"), json!({"a": "on"}));
    }

    #[test]
    fn merge_keys_merge_only_under_yaml_1_1() {
        // The 1.1 schema has the merge tag even with `merge: false`: explicit keys win, earlier
        // sources win over later ones.
        assert_eq!(
            one("%YAML 1.1\n---\nb: &b {p: 1, q: 2}\nm:\n  z: 0\n  <<: [*b, {w: 3, p: 9}]\n  q: 5\n"),
            json!({"b": {"p": 1, "q": 2}, "m": {"z": 0, "p": 1, "q": 5, "w": 3}})
        );
        assert_eq!(error_of("%YAML 1.1\n---\nm:\n  <<: 1\n").rule, Rule::YamlSyntax);
        assert_eq!(
            error_of("%YAML 1.1\n---\nm:\n  <<: {x: 1}\n  x: 2\n  x: 3\n").rule,
            Rule::YamlDuplicateKey
        );
        // Under 1.2 (and quoted under 1.1) `<<` is an ordinary key.
        assert_eq!(one("m:\n  <<: {x: 1}\n"), json!({"m": {"<<": {"x": 1}}}));
        assert_eq!(
            one("%YAML 1.1\n---\nm:\n  '<<': {x: 1}\n"),
            json!({"m": {"<<": {"x": 1}}})
        );
    }

    #[test]
    fn tabs_separate_but_never_indent() {
        // Upstream takes tabs as separation after `:` (saphyr does not, so we retry with spaces)
        // and inside values.
        assert_eq!(
            one("a:\tb\nc:\t\"q\"\nd: x\ty\ne: [1,\t2]\n"),
            json!({"a": "b", "c": "q", "d": "x\ty", "e": [1, 2]})
        );
        assert_eq!(one("? a\n:\tb\n"), json!({"a": "b"}));
        assert_eq!(one("a:\t&x\n  b: 1\n"), json!({"a": {"b": 1}}));
        assert_eq!(one("- a\n-\tb\n"), json!(["a", "b"]));
        // "Tabs are not allowed as indentation": before a block collection at a line start or
        // after `-`, and before an anchor or tag after `-`.
        for text in ["\ta: 1\n", "-\ta: 1\n", "a:\n  -\tb: 1\n", "-\t&a x\n", "a:\n\tb: 1\n"] {
            assert_eq!(error_of(text).rule, Rule::YamlSyntax, "{text:?}");
        }
        let e = error_of("x: 1\nl:\n  -\turl: u\n");
        assert_eq!((e.line, e.column), (3, 4));
        // Many `key:<tab>value` lines stay cheap.
        let many: String = (0..2000).map(|i| format!("k{i}:\tv\n")).collect();
        assert_eq!(one(&many).as_object().map(Map::len), Some(2000));
        // A tab after a `:` inside quotes is content, not separation.
        assert_eq!(
            one("a:\tb\nc: \"x:\ty\"\nd:\te\n"),
            json!({"a": "b", "c": "x:\ty", "d": "e"})
        );
    }

    #[test]
    fn deep_flow_nesting_is_refused_without_recursion() {
        let flow = |depth: usize| format!("x: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
        assert!(one(&flow(200)).is_object());
        for depth in [300, 10_000, 1_000_000] {
            assert_eq!(error_of(&flow(depth)).rule, Rule::YamlDepthLimit, "{depth}");
        }
        // saphyr counts flow levels in a byte; its refusal is a depth limit too.
        let limits = Limits {
            max_depth: 100_000,
            ..Limits::default()
        };
        let d = read_stream(flow(1000).as_bytes(), &limits).0;
        let e = d[0].content.clone().unwrap_err();
        assert_eq!(
            (e.rule, e.message.as_str()),
            (Rule::YamlDepthLimit, "flow collections nest deeper than 255 levels")
        );
        let maps = format!("x: {}1{}\n", "{a: ".repeat(5000), "}".repeat(5000));
        assert_eq!(error_of(&maps).rule, Rule::YamlDepthLimit);
    }

    #[test]
    fn mappings_as_string_map_values_stay_mappings() {
        // `annotations: {x: {y: z}}` reaches validation as a nested object (which rejects it).
        assert_eq!(
            one("annotations: {x: {y: z}}\n"),
            json!({"annotations": {"x": {"y": "z"}}})
        );
    }
}
