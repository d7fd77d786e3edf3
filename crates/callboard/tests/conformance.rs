//! Conformance with Backstage: `callboard validate` over the real-world corpus must agree with
//! what Backstage itself computed (`../shared/corpus/expected.jsonl`): same validity, same entity
//! ref, same relation rows. At least 99% must agree, and every disagreement must be listed in
//! `docs/compatibility.md` (as `file#index`), so a new difference always fails this test.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The corpus: `$CALLBOARD_CORPUS`, or `shared/corpus` beside the checkout (or one of its parents).
fn corpus() -> PathBuf {
    if let Some(dir) = std::env::var_os("CALLBOARD_CORPUS") {
        return PathBuf::from(dir);
    }
    let mut dir = callboard_testkit::workspace_root();
    loop {
        let candidate = dir.join("shared/corpus");
        if candidate.join("expected.jsonl").is_file() {
            return candidate;
        }
        assert!(
            dir.pop(),
            "the conformance corpus was not found; set CALLBOARD_CORPUS to the folder holding expected.jsonl"
        );
    }
}

type Key = (String, u64);

#[derive(Debug, PartialEq)]
struct Verdict {
    valid: bool,
    entity_ref: Option<String>,
    relations: BTreeSet<(String, String, String)>,
}

fn verdicts(jsonl: &str) -> HashMap<Key, Verdict> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let relations = v["relations"]
                .as_array()
                .expect("relations")
                .iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().expect("relation field").to_owned();
                    (s("type"), s("targetRef"), s("sourceRef"))
                })
                .collect();
            let key = (
                v["file"].as_str().expect("file").to_owned(),
                v["index"].as_u64().expect("index"),
            );
            let verdict = Verdict {
                valid: v["valid"].as_bool().expect("valid"),
                entity_ref: v["entityRef"].as_str().map(str::to_owned),
                relations,
            };
            (key, verdict)
        })
        .collect()
}

/// `callboard validate --format jsonl` with `args` over every `*.yaml`/`*.yml` file of `dir`,
/// in name order.
fn validate_jsonl(dir: &std::path::Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Command::new(env!("CARGO_BIN_EXE_callboard"))
        .arg("validate")
        .args(["--format", "jsonl", "--color", "never"])
        .args(args)
        .args(&files)
        .output()
        .expect("run callboard validate")
}

#[test]
fn agrees_with_backstage_on_the_corpus() {
    let corpus = corpus();
    let real = corpus.join("real");
    let output = validate_jsonl(
        &real,
        &[
            "--origin-map".as_ref(),
            real.join("origins.tsv").as_os_str(),
            "--url-map".as_ref(),
            real.join("urls.tsv").as_os_str(),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "the corpus holds invalid documents, so the exit status is 1"
    );
    let ours = verdicts(&String::from_utf8(output.stdout).expect("UTF-8 output"));
    let expected = verdicts(&std::fs::read_to_string(corpus.join("expected.jsonl")).expect("expected.jsonl"));

    let documented = std::fs::read_to_string(callboard_testkit::workspace_root().join("docs/compatibility.md"))
        .expect("docs/compatibility.md");
    let mut undocumented = Vec::new();
    let mut agree = 0;
    for (key, want) in &expected {
        match ours.get(key) {
            Some(got) if got == want => agree += 1,
            got => {
                if !documented.contains(&format!("{}#{}", key.0, key.1)) {
                    undocumented.push(format!("{}#{}: expected {want:?}, got {got:?}", key.0, key.1));
                }
            }
        }
    }
    let extra: Vec<_> = ours.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(extra.is_empty(), "documents Backstage did not report: {extra:?}");
    assert!(
        undocumented.is_empty(),
        "differences not listed in docs/compatibility.md:\n{}",
        undocumented.join("\n")
    );
    let share = agree as f64 / expected.len() as f64;
    assert!(share >= 0.99, "only {agree} of {} documents agree", expected.len());
}

/// The YAML edge cases of `corpus/yaml-edge` (bare `\r` line ends, tags, `%YAML` directives,
/// tabs, bytes that are not UTF-8, deep nesting, non-string annotation values): every document
/// must get Backstage's verdict (`corpus/yaml-edge/expected.jsonl`, see its README), no tolerance.
#[test]
fn agrees_with_backstage_on_the_yaml_edge_cases() {
    let dir = callboard_testkit::workspace_root().join("corpus/yaml-edge");
    let output = validate_jsonl(&dir, &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the edge cases hold invalid documents, so the exit status is 1; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ours = verdicts(&String::from_utf8(output.stdout).expect("UTF-8 output"));
    let expected = verdicts(&std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected.jsonl"));
    assert!(
        expected.len() >= 50,
        "expected.jsonl lists {} documents",
        expected.len()
    );

    let mut differences: Vec<String> = expected
        .iter()
        .filter(|(key, want)| ours.get(*key) != Some(*want))
        .map(|(key, want)| format!("{}#{}: expected {want:?}, got {:?}", key.0, key.1, ours.get(key)))
        .collect();
    differences.extend(
        ours.keys()
            .filter(|k| !expected.contains_key(*k))
            .map(|k| format!("{}#{}: Backstage reports no such document", k.0, k.1)),
    );
    differences.sort();
    assert!(
        differences.is_empty(),
        "{} of {} documents differ from Backstage:\n{}",
        differences.len(),
        expected.len(),
        differences.join("\n")
    );
}
