//! Finds where a field lives in a document's text, so diagnostics about a JSON path can print
//! `file:line:column`. It re-reads the document only when a diagnostic needs a position, which
//! keeps the common (valid) path free of position bookkeeping.

use callboard_model::{FieldPath, Segment};
use saphyr_parser::{Event, Parser};

enum Frame {
    Seq { next: usize },
    Map { key: Option<String>, expecting_key: bool },
}

/// The 1-based line and column of the node at `path` in `text`, or of its deepest existing
/// ancestor when the field is missing. `line_offset` is added to lines (the document's first line
/// minus one).
pub fn locate(text: &str, path: &FieldPath, line_offset: usize) -> (usize, usize) {
    let target = path.segments();
    let mut best = (1 + line_offset, 1);
    let mut best_depth = 0;
    let mut stack: Vec<Frame> = Vec::new();
    let mut current: Vec<Segment> = Vec::new();
    // Inside a collection used as a mapping key (rare): its events name no field.
    let mut skip_depth = 0usize;
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let position = (span.start.line() + line_offset, span.start.col() + 1);
        let is_start = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
        let is_end = matches!(event, Event::SequenceEnd | Event::MappingEnd);
        if skip_depth > 0 {
            if is_start {
                skip_depth += 1;
            } else if is_end {
                skip_depth -= 1;
            }
            continue;
        }
        if is_end {
            stack.pop();
            current.pop();
            continue;
        }
        if !is_start && !matches!(event, Event::Scalar(..) | Event::Alias(_)) {
            continue;
        }
        let segment = match stack.last_mut() {
            None => None,
            Some(Frame::Map { key, expecting_key }) if *expecting_key => {
                *expecting_key = false;
                *key = match &event {
                    Event::Scalar(text, ..) => Some(text.to_string()),
                    _ => None,
                };
                if is_start {
                    skip_depth = 1;
                }
                continue;
            }
            Some(Frame::Map { key, expecting_key }) => {
                *expecting_key = true;
                Some(Segment::Key(key.take().unwrap_or_default()))
            }
            Some(Frame::Seq { next }) => {
                *next += 1;
                Some(Segment::Index(*next - 1))
            }
        };
        let depth = current.len() + usize::from(segment.is_some());
        let on_path = depth <= target.len()
            && current.iter().zip(target).all(|(a, b)| a == b)
            && segment.as_ref().is_none_or(|s| *s == target[depth - 1]);
        if on_path && (depth > best_depth || depth == 0) {
            best = position;
            best_depth = depth;
            if depth == target.len() {
                return best;
            }
        }
        if is_start {
            if let Some(segment) = segment {
                current.push(segment);
            }
            stack.push(match event {
                Event::SequenceStart(..) => Frame::Seq { next: 0 },
                _ => Frame::Map {
                    key: None,
                    expecting_key: true,
                },
            });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(keys: &[&str]) -> FieldPath {
        let mut path = FieldPath::root();
        for k in keys {
            path = match k.parse::<usize>() {
                Ok(i) => path.index(i),
                Err(_) => path.key(k),
            };
        }
        path
    }

    #[test]
    fn finds_fields() {
        let text =
            "apiVersion: v1\nkind: Component\nmetadata:\n  name: x\n  tags:\n    - a\n    - B\nspec:\n  owner: y\n";
        assert_eq!(locate(text, &p(&["metadata", "name"]), 0), (4, 9));
        assert_eq!(locate(text, &p(&["metadata", "tags", "1"]), 0), (7, 7));
        assert_eq!(locate(text, &p(&["spec", "lifecycle"]), 0), (9, 3));
        assert_eq!(locate(text, &p(&["spec"]), 10), (19, 3));
    }
}
