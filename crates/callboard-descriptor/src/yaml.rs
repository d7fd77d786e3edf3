//! YAML streams read the way Backstage's parser (the `yaml` npm package, YAML 1.2 core schema)
//! reads them.
//!
//! * A stream is split into documents at `---` and `...` marker lines first, so a broken
//!   document never hides the ones after it; each document then parses on its own.
//! * Scalars resolve by the YAML 1.2 core schema: `yes`, `no`, `on`, `off` stay strings;
//!   `0o17` and `0x1f` are integers; merge keys (`<<`) are ordinary keys.
//! * Duplicate keys are errors ("Map keys must be unique" upstream).
//! * Aliases are limited like upstream's `maxAliasCount` (100), plus a hard cap on expanded
//!   nodes, so alias bombs fail fast; nesting depth and document size are limited too.
//! * A leading byte-order mark is skipped and CRLF line ends are accepted.

use std::collections::HashMap;

use callboard_model::Rule;
use saphyr_parser::{Event, Parser, ScalarStyle, Tag};
use serde_json::{Map, Number, Value};

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
    let documents = split(bytes)
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| {
            let text = &bytes[chunk.start..chunk.end];
            let content = parse_chunk(text, chunk.line, limits);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    start: usize,
    end: usize,
    line: usize,
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
            match line.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
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

fn parse_chunk(text: &[u8], first_line: usize, limits: &Limits) -> Result<Option<Value>, YamlError> {
    if text.len() > limits.max_document_bytes {
        return Err(error(
            Rule::YamlSizeLimit,
            format!(
                "document is {} bytes, more than the limit of {} bytes",
                text.len(),
                limits.max_document_bytes
            ),
            first_line,
            1,
        ));
    }
    let text = match std::str::from_utf8(text) {
        Ok(text) => text,
        Err(e) => {
            let valid = &text[..e.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count();
            let column = valid.len() - valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
            return Err(error(
                Rule::InvalidUtf8,
                format!("invalid UTF-8 (byte offset {} of the document)", e.valid_up_to()),
                first_line + line,
                column,
            ));
        }
    };
    Composer::new(limits, first_line - 1).compose(text)
}

/// A collection under construction.
enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        metric: usize,
        depth_below: usize,
    },
    Map {
        map: Map<String, Value>,
        key: Option<(String, usize, usize)>,
        anchor: usize,
        metric: usize,
        depth_below: usize,
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

struct Composer<'l> {
    limits: &'l Limits,
    line_offset: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchor>,
    alias_nodes: usize,
    root: Option<Value>,
}

impl<'l> Composer<'l> {
    fn new(limits: &'l Limits, line_offset: usize) -> Self {
        Self {
            limits,
            line_offset,
            stack: Vec::new(),
            anchors: HashMap::new(),
            alias_nodes: 0,
            root: None,
        }
    }

    fn compose(mut self, text: &str) -> Result<Option<Value>, YamlError> {
        let mut parser = Parser::new_from_str(text);
        let mut documents = 0;
        loop {
            let (event, span) = match parser.next_event() {
                None => break,
                Some(Ok(pair)) => pair,
                Some(Err(e)) => {
                    let m = e.marker();
                    let rule = if e.info().contains("unknown anchor") {
                        Rule::YamlUnknownAnchor
                    } else {
                        Rule::YamlSyntax
                    };
                    return Err(error(
                        rule,
                        e.info().to_owned(),
                        m.line() + self.line_offset,
                        m.col() + 1,
                    ));
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
                        ));
                    }
                }
                Event::DocumentEnd => {}
                Event::Scalar(text, style, anchor, tag) => {
                    let value = resolve_scalar(&text, style, tag.as_deref());
                    self.add(value, anchor, 1, 0, line, column)?;
                }
                Event::SequenceStart(anchor, _) => {
                    self.open(line, column)?;
                    self.stack.push(Frame::Seq {
                        items: Vec::new(),
                        anchor,
                        metric: 0,
                        depth_below: 1,
                    });
                }
                Event::MappingStart(anchor, _) => {
                    self.open(line, column)?;
                    self.stack.push(Frame::Map {
                        map: Map::new(),
                        key: None,
                        anchor,
                        metric: 0,
                        depth_below: 1,
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (value, anchor, metric, depth) = match self.stack.pop() {
                        Some(Frame::Seq {
                            items,
                            anchor,
                            metric,
                            depth_below,
                        }) => (Value::Array(items), anchor, metric, depth_below),
                        Some(Frame::Map {
                            map,
                            anchor,
                            metric,
                            depth_below,
                            ..
                        }) => (Value::Object(map), anchor, metric, depth_below),
                        None => {
                            return Err(error(Rule::YamlSyntax, "unbalanced collection end", line, column));
                        }
                    };
                    self.add(value, anchor, metric, depth, line, column)?;
                }
                Event::Alias(id) => self.alias(id, line, column)?,
            }
        }
        Ok(self.root.take().filter(|v| !v.is_null()))
    }

    fn open(&self, line: usize, column: usize) -> Result<(), YamlError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(error(
                Rule::YamlDepthLimit,
                format!("collections nest deeper than {} levels", self.limits.max_depth),
                line,
                column,
            ));
        }
        Ok(())
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
        self.add(value, 0, metric, depth, line, column)
    }

    /// Adds a finished node to its parent (or makes it the root), registering its anchor.
    fn add(
        &mut self,
        value: Value,
        anchor: usize,
        metric: usize,
        depth: usize,
        line: usize,
        column: usize,
    ) -> Result<(), YamlError> {
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
                metric: m,
                depth_below,
                ..
            }) => {
                *m = (*m).max(metric);
                *depth_below = (*depth_below).max(depth + 1);
                match key.take() {
                    None => *key = Some((key_string(value), line, column)),
                    Some((k, key_line, key_column)) => {
                        if map.contains_key(&k) {
                            return Err(error(
                                Rule::YamlDuplicateKey,
                                format!("map keys must be unique; {k:?} is repeated"),
                                key_line,
                                key_column,
                            ));
                        }
                        map.insert(k, value);
                    }
                }
            }
        }
        Ok(())
    }
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

const CORE: &str = "tag:yaml.org,2002:";

/// Resolves a scalar by the YAML 1.2 core schema. Only plain scalars are typed implicitly.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        if tag.handle == CORE || tag.handle == "!!" {
            match tag.suffix.as_str() {
                "str" | "binary" | "timestamp" => return Value::String(text.to_string()),
                "null" => return Value::Null,
                "bool" => {
                    return core_bool(text).map_or_else(|| Value::String(text.to_string()), Value::Bool);
                }
                "int" => return core_int(text).unwrap_or_else(|| Value::String(text.to_string())),
                "float" => {
                    return core_float(text)
                        .or_else(|| core_int(text))
                        .unwrap_or_else(|| Value::String(text.to_string()));
                }
                _ => {}
            }
        } else {
            // Local and unknown tags (`!Ref`, `!`) are not resolved upstream: the text stays a string.
            return Value::String(text.to_string());
        }
    }
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    let t = text;
    // Fast path: most plain scalars are words, which no core-schema type can start with.
    match t.as_bytes().first() {
        Some(b'0'..=b'9' | b'.' | b'+' | b'-' | b'~' | b'n' | b'N' | b't' | b'T' | b'f' | b'F') | None => {}
        Some(_) => return Value::String(t.to_owned()),
    }
    if matches!(t, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = core_bool(t) {
        return Value::Bool(b);
    }
    core_int(t)
        .or_else(|| core_float(t))
        .unwrap_or_else(|| Value::String(t.to_owned()))
}

fn core_bool(t: &str) -> Option<bool> {
    match t {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn core_int(t: &str) -> Option<Value> {
    let (digits, radix) = if let Some(rest) = t.strip_prefix("0o") {
        (rest, 8)
    } else if let Some(rest) = t.strip_prefix("0x") {
        (rest, 16)
    } else {
        let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
        if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return Some(match t.parse::<i64>() {
            Ok(n) => Value::Number(n.into()),
            // Upstream yields a lossy JavaScript number for integers this large.
            Err(_) => t
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map_or(Value::Null, Value::Number),
        });
    };
    let valid = !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    if !valid {
        return None;
    }
    Some(match i64::from_str_radix(digits, radix) {
        Ok(n) => Value::Number(n.into()),
        Err(_) => Value::Null,
    })
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `.inf`, `.nan` (JSON has no
/// infinities or NaN; they become null, as `JSON.stringify` makes them).
fn core_float(t: &str) -> Option<Value> {
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(t, ".nan" | ".NaN" | ".NAN") {
        return Some(Value::Null);
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && (!int.is_empty() || !frac.is_empty())
                && !(int.is_empty() && frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    // `.5` is allowed; `5.` is allowed; a bare `.` is not.
    let mantissa_ok = mantissa_ok && mantissa != ".";
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    let f: f64 = t.parse().ok()?;
    // JavaScript has one number type: 1.0 prints as 1. Keep integral values integral.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Value::Number((f as i64).into()));
    }
    Number::from_f64(f).map(Value::Number).or(Some(Value::Null))
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

    #[test]
    fn invalid_utf8_names_the_line() {
        let d = read_stream(b"a: 1\n---\nb: \xff\n---\nc: 2\n", &Limits::default()).0;
        let e = d[1].content.clone().unwrap_err();
        assert_eq!((e.rule, e.line, e.column), (Rule::InvalidUtf8, 3, 4));
        assert!(d[2].content.is_ok());
    }
}
