//! The JSON Schemas in `schema/entities/` (for editors, through yaml-language-server) must give
//! the same verdict as Callboard's validator. This test runs both over every corpus document and
//! over systematic mutations of the valid ones, and fails on any disagreement, except for rules a
//! JSON Schema cannot express (whether a location type can be read).

use std::path::PathBuf;

use callboard_descriptor::{Limits, read_stream};
use callboard_model::{Rule, validate};
use jsonschema::{Retrieve, Uri};
use serde_json::{Value, json};

fn corpus() -> PathBuf {
    if let Some(dir) = std::env::var_os("CALLBOARD_CORPUS") {
        return PathBuf::from(dir);
    }
    let mut dir = callboard_testkit::workspace_root();
    loop {
        if dir.join("shared/corpus/expected.jsonl").is_file() {
            return dir.join("shared/corpus");
        }
        assert!(dir.pop(), "the conformance corpus was not found; set CALLBOARD_CORPUS");
    }
}

/// Serves `https://callboard.dev/schema/entities/<file>` from the repository.
struct LocalSchemas(PathBuf);

impl Retrieve for LocalSchemas {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or_default();
        let text = std::fs::read_to_string(self.0.join(name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn schema_validator() -> jsonschema::Validator {
    let dir = callboard_testkit::workspace_root().join("schema/entities");
    let root: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("catalog-info.schema.json")).expect("schema"))
            .expect("schema JSON");
    jsonschema::options()
        .with_retriever(LocalSchemas(dir))
        .with_pattern_options(jsonschema::PatternOptions::fancy_regex())
        .build(&root)
        .expect("schemas compile")
}

fn has_placeholder(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            (map.len() == 1 && map.keys().any(|k| matches!(k.as_str(), "$text" | "$json" | "$yaml")))
                || map.values().any(has_placeholder)
        }
        Value::Array(items) => items.iter().any(has_placeholder),
        _ => false,
    }
}

/// Our verdict, or `None` when the rule is one a JSON Schema cannot decide.
fn ours(document: &Value) -> Option<bool> {
    match validate(document.clone()) {
        Ok(_) => Some(true),
        Err(rejection) => {
            let inexpressible = rejection
                .diagnostics
                .iter()
                .all(|d| d.rule == Rule::UnsupportedLocationType);
            (!inexpressible).then_some(false)
        }
    }
}

fn mutations(document: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut push = |what: String, f: &dyn Fn(&mut Value)| {
        let mut copy = document.clone();
        f(&mut copy);
        out.push((what, copy));
    };
    push("extra root field".into(), &|d| d["status2"] = json!(1));
    push("bad name".into(), &|d| d["metadata"]["name"] = json!("Bad Name"));
    push("long name".into(), &|d| d["metadata"]["name"] = json!("x".repeat(64)));
    push("numeric name".into(), &|d| d["metadata"]["name"] = json!(42));
    push("bad namespace".into(), &|d| {
        d["metadata"]["namespace"] = json!("Team_A")
    });
    push("dashed namespace".into(), &|d| {
        d["metadata"]["namespace"] = json!("team--a")
    });
    push("bad tag".into(), &|d| d["metadata"]["tags"] = json!(["Upper"]));
    push("colon tag".into(), &|d| d["metadata"]["tags"] = json!(["lang:go"]));
    push("empty tag".into(), &|d| d["metadata"]["tags"] = json!([""]));
    push("bad annotation key".into(), &|d| {
        d["metadata"]["annotations"] = json!({"a/b/c": "x"})
    });
    push("numeric annotation".into(), &|d| {
        d["metadata"]["annotations"] = json!({"a": 1})
    });
    push("bad label value".into(), &|d| {
        d["metadata"]["labels"] = json!({"a": "b c"})
    });
    push("empty label value".into(), &|d| {
        d["metadata"]["labels"] = json!({"a": ""})
    });
    push("bad link".into(), &|d| {
        d["metadata"]["links"] = json!([{"url": "not a url"}])
    });
    push("blank link title".into(), &|d| {
        d["metadata"]["links"] = json!([{"url": "https://x.io", "title": " "}])
    });
    push("lowercase kind".into(), &|d| {
        let kind = d["kind"].as_str().unwrap_or_default().to_lowercase();
        d["kind"] = json!(kind);
    });
    push("odd apiVersion".into(), &|d| d["apiVersion"] = json!("backstage.io/v2"));
    push("no spec".into(), &|d| {
        d.as_object_mut().map(|o| o.remove("spec"));
    });
    push("null title".into(), &|d| d["metadata"]["title"] = json!(null));
    if let Some(spec) = document.get("spec").and_then(Value::as_object) {
        for key in spec.keys() {
            let k = key.clone();
            push(format!("without spec.{key}"), &|d| {
                d["spec"].as_object_mut().map(|o| o.remove(&k));
            });
            let k = key.clone();
            push(format!("null spec.{key}"), &|d| d["spec"][&k] = json!(null));
            let k = key.clone();
            push(format!("numeric spec.{key}"), &|d| d["spec"][&k] = json!(7));
            let k = key.clone();
            push(format!("empty spec.{key}"), &|d| d["spec"][&k] = json!(""));
            let k = key.clone();
            push(format!("list spec.{key}"), &|d| {
                d["spec"][&k] = json!(["component:x", "y"])
            });
        }
    }
    push("kindless dependency".into(), &|d| {
        d["spec"]["dependsOn"] = json!(["no-kind"])
    });
    push("kinded dependency".into(), &|d| {
        d["spec"]["dependsOn"] = json!(["resource:db"])
    });
    out
}

#[test]
fn schemas_agree_with_the_validator() {
    let validator = schema_validator();
    let real = corpus().join("real");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&real)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let (mut compared, mut disagreements) = (0, Vec::new());
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        for document in read_stream(&bytes, &Limits::default()).0 {
            let Ok(Some(value)) = document.content else {
                continue;
            };
            if !value.is_object() || has_placeholder(&value) {
                continue;
            }
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut cases = vec![("as written".to_owned(), value.clone())];
            if validate(value.clone()).is_ok() {
                cases.extend(mutations(&value));
            }
            for (what, case) in cases {
                let Some(our_verdict) = ours(&case) else {
                    continue;
                };
                compared += 1;
                let schema_verdict = validator.is_valid(&case);
                if schema_verdict != our_verdict {
                    let first_error = validator.iter_errors(&case).next().map(|e| e.to_string());
                    disagreements.push(format!(
                        "{name}#{} ({what}): validator says {our_verdict}, schema says {schema_verdict} {first_error:?} {:?}",
                        document.index,
                        validate(case.clone()).err().map(|r| r.diagnostics[0].message.clone())
                    ));
                }
            }
        }
    }
    assert!(compared > 3000, "only {compared} cases compared");
    assert!(
        disagreements.is_empty(),
        "{} disagreements of {compared}:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
