//! Helpers shared by tests and benchmarks (dev-only; never a normal dependency).
//!
//! [`http::request`] is a dependency-free HTTP/1.1 client for tests of a running server.
//!
//! [`generate`] builds a deterministic, realistic catalog of any size: an organisation of groups
//! and users, domains, systems, components with APIs and resources, and optionally a share of
//! invalid documents, laid out as files of a few documents each, as in a real monorepo.

pub mod http;

use std::fmt::Write as _;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct CatalogSpec {
    /// Number of valid entity documents; invalid ones come on top.
    pub documents: usize,
    /// After every this-many valid documents, add an invalid one (0: none).
    pub invalid_every: usize,
    /// Documents per file.
    pub documents_per_file: usize,
    /// Varies names between runs that must not collide.
    pub seed: u64,
}

impl CatalogSpec {
    /// `documents` valid documents, four to a file.
    pub fn valid(documents: usize) -> Self {
        Self {
            documents,
            invalid_every: 0,
            documents_per_file: 4,
            seed: 0,
        }
    }

    /// With an invalid document after every `n` valid ones.
    #[must_use]
    pub fn invalid_every(self, n: usize) -> Self {
        Self {
            invalid_every: n,
            ..self
        }
    }

    /// With names varied by `seed`.
    #[must_use]
    pub fn seed(self, seed: u64) -> Self {
        Self { seed, ..self }
    }
}

/// A generated file: a relative path and its YAML text.
#[derive(Debug, Clone)]
pub struct GeneratedFile {
    /// Path relative to the catalog root, e.g. `teams/team-0003/catalog-info.yaml`.
    pub path: String,
    /// The YAML stream.
    pub text: String,
    /// How many documents in it are valid.
    pub valid: usize,
    /// How many are invalid.
    pub invalid: usize,
}

/// A tiny deterministic generator (SplitMix64), so catalogs are identical across runs.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const LIFECYCLES: [&str; 3] = ["production", "experimental", "deprecated"];
const LANGS: [&str; 6] = ["rust", "go", "java", "python", "typescript", "kotlin"];

/// One document of the catalog, by position: the mix is roughly 5% groups, 15% users, 1% domains,
/// 4% systems, 45% components, 15% APIs and 15% resources.
fn document(i: usize, spec: &CatalogSpec, rng: &mut Rng, out: &mut String) -> bool {
    let seed = spec.seed;
    // Targets are picked among the blocks of 100 documents that exist, so refs resolve.
    let blocks = spec.documents.div_ceil(100).max(1);
    let groups = blocks * 100;
    let systems = blocks;
    let domains = blocks;
    let invalid = spec.invalid_every > 0 && i % spec.invalid_every == spec.invalid_every - 1;
    let team = rng.below(groups).min(spec.documents.saturating_sub(1));
    let lifecycle = LIFECYCLES[rng.below(3)];
    let lang = LANGS[rng.below(LANGS.len())];
    let slot = i % 100;
    let _ = match slot {
        0..=4 => write!(
            out,
            "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: team-{seed}-{i}\n  title: Team {i}\n  description: Owns a slice of the platform.\nspec:\n  type: team\n  profile:\n    displayName: Team {i}\n    email: team-{i}@example.com\n  parent: team-{seed}-{parent}\n  children: []\n",
            parent = (i / 100) * 100,
        ),
        5..=19 => write!(
            out,
            "apiVersion: backstage.io/v1alpha1\nkind: User\nmetadata:\n  name: user-{seed}-{i}\nspec:\n  profile:\n    displayName: User {i}\n    email: user-{i}@example.com\n  memberOf: [team-{seed}-{g}]\n",
            g = (team / 100) * 100 + 4,
        ),
        20 => write!(
            out,
            "apiVersion: backstage.io/v1alpha1\nkind: Domain\nmetadata:\n  name: domain-{seed}-{i}\n  description: A business domain.\nspec:\n  owner: team-{seed}-{g}\n",
            g = (team / 100) * 100,
        ),
        21..=24 => write!(
            out,
            "apiVersion: backstage.io/v1alpha1\nkind: System\nmetadata:\n  name: system-{seed}-{i}\n  description: A system of services.\n  tags: [{lang}]\nspec:\n  owner: team-{seed}-{g}\n  domain: domain-{seed}-{d}\n",
            g = (team / 100) * 100,
            d = (rng.below(domains)) * 100 + 20,
        ),
        25..=69 => write!(
            out,
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: service-{seed}-{i}\n  title: Service {i}\n  description: Handles part of the order flow; written in {lang}.\n  tags: [{lang}, web]\n  annotations:\n    github.com/project-slug: example/service-{i}\n    backstage.io/techdocs-ref: dir:.\n  links:\n    - url: https://dashboards.example.com/d/service-{i}\n      title: Dashboard\nspec:\n  type: service\n  lifecycle: {lifecycle}\n  owner: team-{seed}-{g}\n  system: system-{seed}-{s}\n  providesApis: [api-{seed}-{a}]\n  consumesApis: [api-{seed}-{b}]\n  dependsOn: [resource:resource-{seed}-{r}, component:service-{seed}-{c}]\n",
            g = (team / 100) * 100,
            s = (rng.below(systems)) * 100 + 21,
            a = (i / 100) * 100 + 70,
            b = rng.below(blocks) * 100 + 71,
            r = (i / 100) * 100 + 85,
            c = rng.below(blocks) * 100 + 25,
        ),
        70..=84 => write!(
            out,
            "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: api-{seed}-{i}\n  description: The public interface of a service.\nspec:\n  type: openapi\n  lifecycle: {lifecycle}\n  owner: team-{seed}-{g}\n  system: system-{seed}-{s}\n  definition: |\n    openapi: 3.0.0\n    info:\n      title: API {i}\n      version: 1.0.0\n    paths: {{}}\n",
            g = (team / 100) * 100,
            s = (rng.below(systems)) * 100 + 21,
        ),
        _ => write!(
            out,
            "apiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata:\n  name: resource-{seed}-{i}\n  description: Storage for a service.\nspec:\n  type: database\n  owner: team-{seed}-{g}\n  system: system-{seed}-{s}\n",
            g = (team / 100) * 100,
            s = (rng.below(systems)) * 100 + 21,
        ),
    };
    if invalid {
        // A realistic mistake: a name with spaces, as people write titles.
        out.push_str(&format!("---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: Broken Service {seed} {i}\nspec:\n  type: service\n  lifecycle: production\n  owner: team-a\n"));
    }
    !invalid
}

/// The workspace root, from the running test's package folder (`crates/<package>`) as `cargo test`
/// sets `CARGO_MANIFEST_DIR` at run time, not as `env!` compiled it in: clones on one machine share
/// a build folder (see the README), so a test binary built in another clone may be reused here,
/// and must read this clone's files.
pub fn workspace_root() -> std::path::PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    std::path::Path::new(&package)
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Generates the catalog as files.
pub fn generate(spec: &CatalogSpec) -> Vec<GeneratedFile> {
    let mut rng = Rng(spec.seed ^ 0x00C0_FFEE);
    let mut files = Vec::new();
    let per_file = spec.documents_per_file.max(1);
    let mut i = 0;
    while i < spec.documents {
        let mut text = String::new();
        let (mut valid, mut invalid) = (0, 0);
        for j in 0..per_file {
            if i >= spec.documents {
                break;
            }
            if j > 0 {
                text.push_str("---\n");
            }
            let before = spec.invalid_every > 0 && i % spec.invalid_every == spec.invalid_every - 1;
            document(i, spec, &mut rng, &mut text);
            valid += 1;
            if before {
                invalid += 1;
            }
            i += 1;
        }
        files.push(GeneratedFile {
            path: format!("teams/part-{:05}/catalog-info.yaml", files.len()),
            text,
            valid,
            invalid,
        });
    }
    files
}

/// The whole catalog as one multi-document YAML stream.
pub fn generate_stream(spec: &CatalogSpec) -> String {
    let files = generate(spec);
    let mut out = String::new();
    for file in files {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&file.text);
    }
    out
}

/// A small catalog: a group with a member, a system, two components (one depending on the
/// other), an API, in three `catalog-info.yaml` files (what folder discovery looks for).
pub fn small_catalog(dir: &std::path::Path) {
    for sub in ["org", "apis"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::write(
        dir.join("org/catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: team-a\nspec:\n  type: team\n  children: []\n  members: [alice]\n---\n\
         apiVersion: backstage.io/v1alpha1\nkind: User\nmetadata:\n  name: alice\nspec:\n  memberOf: [team-a]\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: System\nmetadata:\n  name: shop\nspec:\n  owner: team-a\n---\n\
         apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: web\n  description: The storefront web app\n  tags: [typescript]\nspec:\n  type: website\n  lifecycle: production\n  owner: team-a\n  system: shop\n  providesApis: [orders-api]\n  dependsOn: [component:db-svc]\n---\n\
         apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: db-svc\n  description: Stores orders\nspec:\n  type: service\n  lifecycle: production\n  owner: team-a\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("apis/catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: orders-api\nspec:\n  type: openapi\n  lifecycle: production\n  owner: team-a\n  definition: 'openapi: 3.0.0'\n",
    )
    .expect("write");
}
