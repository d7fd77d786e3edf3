//! Writes a generated catalog to a folder, for load tests and benchmarks.
//!
//! `catalog-gen OUT_DIR [DOCUMENTS] [INVALID_EVERY]` — 100,000 documents, none invalid, by default.

use std::path::PathBuf;

use callboard_testkit::{CatalogSpec, generate};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: catalog-gen OUT_DIR [DOCUMENTS] [INVALID_EVERY]");
        std::process::exit(2);
    };
    let documents = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let invalid_every = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let spec = CatalogSpec {
        documents,
        invalid_every,
        documents_per_file: 4,
        seed: 1,
    };
    let files = generate(&spec);
    let (mut valid, mut invalid) = (0, 0);
    for file in &files {
        let path = out.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&path, &file.text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        valid += file.valid;
        invalid += file.invalid;
    }
    println!(
        "{} files, {valid} valid and {invalid} invalid documents in {}",
        files.len(),
        out.display()
    );
}
