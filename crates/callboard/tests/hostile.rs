//! Hostile input never panics or hangs `callboard validate`: every problem is reported on its own
//! document, and the other documents of the same file are still validated.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const VALID: &str = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: neighbour-{}\nspec:\n  type: service\n  lifecycle: production\n  owner: team-a\n";

fn valid(n: usize) -> String {
    VALID.replace("{}", &n.to_string())
}

/// Runs `callboard validate --format jsonl` on `bytes`, failing if it takes longer than `limit`.
fn validate(bytes: &[u8], limit: Duration) -> (Option<i32>, Vec<Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hostile.yaml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callboard"))
        .args(["validate", "--format", "jsonl"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).expect("read stdout"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("callboard validate did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().expect("reader");
    let lines = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    (status.code(), lines)
}

/// The hostile document sits between two valid ones: it is rejected with `rule`, and both
/// neighbours are valid.
fn assert_contained(hostile: &str, rule: &str) {
    assert_contained_any(hostile, &[rule]);
}

fn assert_contained_any(hostile: &str, rules: &[&str]) {
    let file = format!("{}---\n{hostile}\n---\n{}", valid(1), valid(2));
    assert_contained_bytes_any(file.as_bytes(), rules);
}

fn assert_contained_bytes(file: &[u8], rule: &str) {
    assert_contained_bytes_any(file, &[rule]);
}

fn assert_contained_bytes_any(file: &[u8], rules: &[&str]) {
    let (code, lines) = validate(file, Duration::from_secs(60));
    assert_eq!(code, Some(1), "an invalid document makes the exit status 1");
    assert_eq!(lines.len(), 3, "three documents reported: {lines:?}");
    assert_eq!(lines[0]["valid"], true, "{:?}", lines[0]);
    assert_eq!(lines[2]["valid"], true, "{:?}", lines[2]);
    assert_eq!(lines[1]["valid"], false);
    let error = lines[1]["error"].as_str().expect("error text");
    assert!(
        rules.iter().any(|rule| error.contains(&format!("[{rule}]"))),
        "expected one of {rules:?}, got {error}"
    );
    assert!(error.starts_with("line "), "the error names the line: {error}");
}

#[test]
fn malformed_yaml() {
    assert_contained("a: [unclosed\nb: {x: }}\n", "yaml.syntax");
    assert_contained("key: `backtick`\n", "yaml.syntax");
    assert_contained("x: 1\nx: 2\n", "yaml.duplicate-key");
    assert_contained("- *nowhere\n", "yaml.unknown-anchor");
    assert_contained("just a string\n", "document.not-an-object");
}

#[test]
fn invalid_utf8() {
    // Bytes that are not UTF-8 become U+FFFD, as Backstage decodes them (`Buffer.toString`); the
    // name `caf\u{FFFD}` then breaks the name format, in that document only.
    let mut file = valid(1).into_bytes();
    file.extend_from_slice(
        b"---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: caf\xe9\n---\n",
    );
    file.extend_from_slice(valid(2).as_bytes());
    assert_contained_bytes(&file, "policy.field-format");
}

#[test]
fn fifty_megabyte_document() {
    let mut big = String::with_capacity(50 << 20);
    big.push_str("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: huge\n  description: |\n");
    let line = "    lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\n";
    while big.len() < 50 << 20 {
        big.push_str(line);
    }
    assert_contained(&big, "yaml.size-limit");
}

#[test]
fn alias_bomb() {
    let mut bomb = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (name, prev) in [
        ("b", "a"),
        ("c", "b"),
        ("d", "c"),
        ("e", "d"),
        ("f", "e"),
        ("g", "f"),
        ("h", "g"),
        ("i", "h"),
    ] {
        let items = vec![format!("*{prev}"); 9].join(",");
        bomb.push_str(&format!("{name}: &{name} [{items}]\n"));
    }
    assert_contained(&bomb, "yaml.alias-limit");
}

#[test]
fn ten_thousand_levels_of_nesting() {
    // The scanner's own flow-nesting limit or our depth limit, whichever comes first.
    let either = ["yaml.depth-limit", "yaml.syntax"];
    assert_contained_any(&format!("x: {}1{}\n", "[".repeat(10_000), "]".repeat(10_000)), &either);
    assert_contained_any(
        &format!("x: {}1{}\n", "{a: ".repeat(10_000), "}".repeat(10_000)),
        &either,
    );
    assert_contained(&format!("x:\n{}1\n", "- ".repeat(10_000)), "yaml.depth-limit");
    let indented: String = (0..10_000).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    assert_contained_any(&indented, &["yaml.depth-limit", "yaml.size-limit"]);
}
