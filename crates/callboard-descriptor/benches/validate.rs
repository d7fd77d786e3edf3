//! Throughput of the descriptor path: a generated catalog of 100,000 documents, read as YAML,
//! validated and turned into entities with relations. `docs/benchmarks.md` records the result.
//!
//! Run: `cargo bench -p callboard-descriptor --bench validate`

use std::hint::black_box;

use callboard_descriptor::{Limits, LocationRef, Outcome, Source, process_bytes};
use callboard_testkit::{CatalogSpec, generate};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const DOCUMENTS: usize = 100_000;

/// The `callboard` binary's allocator, so the figure is the one users get.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn validate_catalog(c: &mut Criterion) {
    let files = generate(&CatalogSpec::valid(DOCUMENTS));
    let total: usize = files.iter().map(|f| f.valid + f.invalid).sum();
    let bytes: usize = files.iter().map(|f| f.text.len()).sum();
    let source = Source::new(LocationRef::parse("file:/catalog/catalog-info.yaml").expect("location"));
    let limits = Limits::default();
    let mut group = c.benchmark_group("validate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(total as u64));
    group.bench_function(format!("{total}_documents_{}_MiB", bytes >> 20), |b| {
        b.iter(|| {
            let mut accepted = 0usize;
            for file in &files {
                let reports = process_bytes(black_box(file.text.as_bytes()), &source, &limits, |_| unreachable!());
                accepted += reports
                    .iter()
                    .filter(|r| matches!(r.outcome, Outcome::Accepted(_)))
                    .count();
            }
            assert_eq!(accepted, total);
            accepted
        });
    });
    group.finish();
}

criterion_group!(benches, validate_catalog);
criterion_main!(benches);
