//! JSON Patch (RFC 6902) diffs between two versions of an entity, for history.

use serde_json::{Map, Value, json};

/// The operations that turn `from` into `to`. Arrays that differ are replaced whole, which keeps
/// diffs of reordered lists readable.
pub fn diff(from: &Value, to: &Value) -> Value {
    let mut ops = Vec::new();
    walk(from, to, &mut String::new(), &mut ops);
    Value::Array(ops)
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn walk(from: &Value, to: &Value, path: &mut String, ops: &mut Vec<Value>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => walk_objects(a, b, path, ops),
        (a, b) if a == b => {}
        (_, b) => ops.push(json!({"op": "replace", "path": path.clone(), "value": b})),
    }
}

fn walk_objects(a: &Map<String, Value>, b: &Map<String, Value>, path: &mut String, ops: &mut Vec<Value>) {
    let len = path.len();
    for (key, old) in a {
        path.push('/');
        path.push_str(&escape(key));
        match b.get(key) {
            None => ops.push(json!({"op": "remove", "path": path.clone()})),
            Some(new) => walk(old, new, path, ops),
        }
        path.truncate(len);
    }
    for (key, new) in b {
        if !a.contains_key(key) {
            path.push('/');
            path.push_str(&escape(key));
            ops.push(json!({"op": "add", "path": path.clone(), "value": new}));
            path.truncate(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs() {
        let a = json!({"metadata": {"name": "x", "tags": ["a"], "old": 1}, "spec": {"owner": "t"}});
        let b = json!({"metadata": {"name": "x", "tags": ["a", "b"], "new/key": 2}, "spec": {"owner": "u"}});
        assert_eq!(
            diff(&a, &b),
            json!([
                {"op": "replace", "path": "/metadata/tags", "value": ["a", "b"]},
                {"op": "remove", "path": "/metadata/old"},
                {"op": "add", "path": "/metadata/new~1key", "value": 2},
                {"op": "replace", "path": "/spec/owner", "value": "u"},
            ])
        );
        assert_eq!(diff(&a, &a), json!([]));
        assert_eq!(
            diff(&Value::Null, &a),
            json!([{"op": "replace", "path": "", "value": a}])
        );
    }
}
