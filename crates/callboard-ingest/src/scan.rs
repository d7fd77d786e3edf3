//! Reading a registered location completely: the file or URL itself, every Location entity's
//! targets recursively (with cycle detection), or — for a discovery location — every descriptor
//! below a folder matching a glob. The result is a [`SyncBatch`] for the decider.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use callboard_descriptor::location::resolve;
use callboard_descriptor::{Base, Limits, LocationRef, Outcome, Reads, Source, Target, parse_file};
use callboard_events::hash::content_hash_object;
use callboard_events::types::{LocationRecord, ProblemRecord};
use callboard_model::{Entity, Spec, validate};
use callboard_reader::Reader;
use futures::StreamExt;
use globset::{Glob, GlobMatcher};
use serde_json::json;
use tokio::sync::mpsc;

use crate::decide::{Scanned, SyncBatch, generated_location_ref};

/// The default glob for discovery locations.
pub const DEFAULT_DISCOVERY_GLOB: &str = "**/catalog-info.{yaml,yml}";

/// Scans locations.
#[derive(Debug, Clone)]
pub struct Scanner {
    reader: Arc<Reader>,
    limits: Limits,
    discovery: GlobMatcher,
    /// Files read so far by this scanner, for progress displays.
    files_read: Arc<AtomicUsize>,
}

/// A scan's outcome: the batch, and what to watch for changes.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// What the location holds now.
    pub batch: SyncBatch,
    /// Local files read (to watch).
    pub files: Vec<PathBuf>,
    /// Local folders searched (to watch for new files).
    pub folders: Vec<PathBuf>,
    /// How many files were read.
    pub files_read: usize,
}

/// Locations read per wave, and how many at a time.
const WAVE: usize = 256;
const CONCURRENCY: usize = 8;
/// Documents a sink receives at a time (about the writer's chunk of events).
const SEND_AT: usize = 1_000;

/// What reading one location gave.
enum Loaded {
    /// An optional location that does not exist.
    Skipped,
    /// It could not be read: why.
    Unreadable(String),
    /// Its documents (and its path, for local files).
    Read {
        path: Option<PathBuf>,
        documents: Vec<Scanned>,
    },
}

/// Turns a file's reports into scanned documents, hashing each accepted entity. CPU work: it runs
/// where the file was parsed, off the async threads and beside the other files of the wave.
fn to_scanned(reports: Vec<callboard_descriptor::Report>, location: &str) -> Vec<Scanned> {
    reports
        .into_iter()
        .filter_map(|report| match report.outcome {
            Outcome::Empty => None,
            Outcome::Accepted(entity) => Some(Scanned::Accepted {
                hash: Some(content_hash_object(entity.raw())),
                entity,
                location: location.to_owned(),
                index: Some(report.index as u32),
            }),
            Outcome::Rejected(problems) => Some(Scanned::Rejected {
                entity_ref: report.entity_ref,
                location: location.to_owned(),
                index: Some(report.index as u32),
                problems: problems
                    .into_iter()
                    .map(|p| ProblemRecord {
                        rule: p.diagnostic.rule.code().to_owned(),
                        field: if p.diagnostic.path.is_root() {
                            String::new()
                        } else {
                            p.diagnostic.path.to_string()
                        },
                        message: p.diagnostic.message,
                        hint: p.diagnostic.hint,
                        line: Some(p.line as u32),
                        column: Some(p.column as u32),
                    })
                    .collect(),
            }),
        })
        .collect()
}

/// Sends the scan's documents to the sink, if there is one and it holds at least `at`. False
/// when the receiver gave up (an append failed): the scan stops reading, incomplete.
async fn hand_on(sink: Option<&mpsc::Sender<Vec<Scanned>>>, scan: &mut Scan, at: usize) -> bool {
    let Some(sink) = sink else { return true };
    if scan.batch.documents.len() < at.max(1) {
        return true;
    }
    let documents = std::mem::take(&mut scan.batch.documents);
    if sink.send(documents).await.is_err() {
        scan.batch.complete = false;
        return false;
    }
    true
}

/// A location to read, and the Location entity (and its file) that pointed at it.
#[derive(Clone)]
struct Pending {
    location: LocationRef,
    presence_optional: bool,
    referrer: Option<(String, String, String)>,
    /// A file glob (`/srv/catalog/**/catalog-info.yaml`) to expand when its turn comes, rather
    /// than a file to read.
    glob: bool,
}

fn problem(rule: &str, field: &str, message: String, hint: Option<&str>) -> ProblemRecord {
    ProblemRecord {
        rule: rule.into(),
        field: field.into(),
        message,
        hint: hint.map(str::to_owned),
        line: None,
        column: None,
    }
}

impl Scanner {
    /// A scanner reading through `reader`.
    pub fn new(reader: Arc<Reader>) -> Self {
        Self::with_glob(reader, DEFAULT_DISCOVERY_GLOB)
            .unwrap_or_else(|e| unreachable!("the default glob is valid: {e}"))
    }

    /// A scanner whose discovery locations look for files matching `glob`.
    pub fn with_glob(reader: Arc<Reader>, glob: &str) -> Result<Self, globset::Error> {
        let discovery = Glob::new(glob)?.compile_matcher();
        Ok(Self {
            reader,
            limits: Limits::default(),
            discovery,
            files_read: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The reader.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// A counter of the files this scanner has read, for progress displays.
    pub fn files_read(&self) -> Arc<AtomicUsize> {
        self.files_read.clone()
    }

    /// Reads everything `root` holds, returning it all at once.
    pub async fn scan(&self, root: &LocationRecord, actor: &str) -> Scan {
        self.scan_into(root, actor, None).await
    }

    /// Reads everything `root` holds. With a `sink`, each file's documents are sent as soon as
    /// the file is read (and the returned batch holds no documents), so the caller can decide
    /// and append while the scan goes on.
    #[tracing::instrument(skip(self, sink), fields(location = %root.key()))]
    pub async fn scan_into(
        &self,
        root: &LocationRecord,
        actor: &str,
        sink: Option<mpsc::Sender<Vec<Scanned>>>,
    ) -> Scan {
        let origin = root.key();
        let origin_ref = LocationRef {
            location_type: root.location_type.clone(),
            target: root.target.clone(),
        };
        let mut scan = Scan {
            batch: SyncBatch {
                origin: origin.clone(),
                actor: actor.to_owned(),
                complete: true,
                ..SyncBatch::default()
            },
            ..Scan::default()
        };
        if let Some(generated) = generated_location(root) {
            scan.batch.documents.push(Scanned::Accepted {
                entity: Box::new(generated),
                location: origin.clone(),
                index: None,
                hash: None,
            });
        }

        // Every file a discovery finds is read before anything Location entities point at, in
        // the order of its paths; the files stream in while the search goes on, so reading starts
        // at once instead of after a walk of the whole tree.
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut discovered: Option<mpsc::Receiver<Result<Vec<PathBuf>, String>>> = None;
        let mut discovered_files: VecDeque<Pending> = VecDeque::new();
        match root.location_type.as_str() {
            "discovery" => {
                let folder = PathBuf::from(&root.target);
                scan.folders.push(folder.clone());
                discovered = Some(self.discover(&folder));
            }
            _ => queue.push_back(Pending {
                location: origin_ref.clone(),
                presence_optional: false,
                referrer: None,
                glob: false,
            }),
        }

        let mut visited: HashSet<String> = HashSet::new();
        loop {
            if !hand_on(sink.as_ref(), &mut scan, 1).await {
                return scan;
            }
            // Read the next wave of pending locations concurrently, then handle the results in
            // queue order, so what is "first" (for conflicts) does not depend on timing.
            while discovered_files.len() < WAVE
                && let Some(stream) = &mut discovered
            {
                match stream.recv().await {
                    Some(Ok(files)) => discovered_files.extend(files.into_iter().map(|file| Pending {
                        location: LocationRef::file(&file),
                        presence_optional: true,
                        referrer: None,
                        glob: false,
                    })),
                    Some(Err(e)) => {
                        scan.batch.complete = false;
                        let p = problem(
                            "location.unreadable",
                            "",
                            format!("cannot search {}: {e}", root.target),
                            None,
                        );
                        scan.batch.documents.push(Scanned::Rejected {
                            entity_ref: None,
                            location: origin.clone(),
                            index: None,
                            problems: vec![p],
                        });
                        discovered = None;
                    }
                    None => discovered = None,
                }
            }
            let mut wave = Vec::new();
            while wave.len() < WAVE {
                let Some(pending) = discovered_files.pop_front().or_else(|| queue.pop_front()) else {
                    break;
                };
                if pending.glob {
                    // Its files take its place in the queue, in path order.
                    match self.expand(&pending.location.target).await {
                        Ok(files) => {
                            for file in files.into_iter().rev() {
                                queue.push_front(Pending {
                                    location: LocationRef::file(&file),
                                    presence_optional: true,
                                    referrer: pending.referrer.clone(),
                                    glob: false,
                                });
                            }
                        }
                        Err(e) => self.unreadable(&mut scan, &pending, &pending.location.to_string(), e),
                    }
                    continue;
                }
                if visited.insert(pending.location.to_string()) {
                    wave.push(pending);
                } // else: a cycle, or two Locations naming the same file.
            }
            if wave.is_empty() {
                break;
            }
            // Files are read CONCURRENCY at a time and handled as they complete, in queue order;
            // their documents go to the sink every SEND_AT documents, so what is held at once is
            // bounded by documents, not files (a wave of 256 files of 100 documents each held
            // 25,600 parsed entities, three waves at once: 1.5 GiB at 100,000 entities).
            let mut loads = futures::stream::iter(wave.into_iter().map(|pending| {
                let (scanner, origin) = (self.clone(), origin_ref.clone());
                async move {
                    let loaded = scanner.load(&pending, &origin).await;
                    (pending, loaded)
                }
            }))
            .buffered(CONCURRENCY);
            while let Some((pending, loaded)) = loads.next().await {
                if !hand_on(sink.as_ref(), &mut scan, SEND_AT).await {
                    return scan;
                }
                let key = pending.location.to_string();
                match loaded {
                    Loaded::Skipped => {}
                    Loaded::Unreadable(message) => self.unreadable(&mut scan, &pending, &key, message),
                    Loaded::Read { path, documents } => {
                        scan.files_read += 1;
                        self.files_read.fetch_add(1, Ordering::Relaxed);
                        scan.files.extend(path);
                        for document in documents {
                            if let Scanned::Accepted { entity, .. } = &document
                                && let Spec::Location(spec) = entity.spec()
                            {
                                self.enqueue_targets(&mut queue, &mut scan, entity, spec, &pending.location);
                            }
                            scan.batch.documents.push(document);
                        }
                    }
                }
            }
        }
        scan
    }

    /// Reads and parses one location.
    async fn load(&self, pending: &Pending, origin: &LocationRef) -> Loaded {
        let key = pending.location.to_string();
        let source = Source {
            location: pending.location.clone(),
            origin: origin.clone(),
        };
        let bytes = match pending.location.location_type.as_str() {
            "file" => {
                let path = PathBuf::from(&pending.location.target);
                // Read and parse in one trip to the blocking pool: most files need nothing else.
                let reader = self.reader.clone();
                let limits = self.limits;
                let target = Target::File(path.clone());
                let first = tokio::task::spawn_blocking(move || {
                    let bytes = reader.read_offline(&target)?;
                    let parsed = parse_file(&bytes, &limits);
                    let targets = parsed.read_targets(&source);
                    Ok::<_, callboard_descriptor::ReadError>(if targets.is_empty() {
                        Ok(to_scanned(
                            parsed.process(&source, &Reads::new()),
                            &source.location.to_string(),
                        ))
                    } else {
                        Err(bytes)
                    })
                })
                .await;
                match first {
                    Ok(Ok(Ok(documents))) => {
                        return Loaded::Read {
                            path: Some(path),
                            documents,
                        };
                    }
                    Ok(Ok(Err(bytes))) => {
                        let documents = self
                            .read_documents(
                                bytes,
                                Source {
                                    location: pending.location.clone(),
                                    origin: origin.clone(),
                                },
                            )
                            .await;
                        return Loaded::Read {
                            path: Some(path),
                            documents,
                        };
                    }
                    Ok(Err(e)) if e.not_found && pending.presence_optional => return Loaded::Skipped,
                    Ok(Err(e)) => return Loaded::Unreadable(e.message),
                    Err(e) => return Loaded::Unreadable(format!("read task failed: {e}")),
                }
            }
            "url" => match url::Url::parse(&pending.location.target) {
                Ok(url) => match self.reader.fetch(&Target::Url(url)).await {
                    Ok(bytes) => bytes,
                    Err(e) if e.not_found && pending.presence_optional => return Loaded::Skipped,
                    Err(e) => return Loaded::Unreadable(e.message),
                },
                Err(e) => return Loaded::Unreadable(format!("{key} is not a valid URL: {e}")),
            },
            other => return Loaded::Unreadable(format!("locations of type {other:?} cannot be read")),
        };
        Loaded::Read {
            path: None,
            documents: self.read_documents(bytes, source).await,
        }
    }

    /// Parses a file and reads its placeholders. Files without placeholders (nearly all) are
    /// parsed once; the others are parsed again after their reads.
    async fn read_documents(&self, bytes: Vec<u8>, source: Source) -> Vec<Scanned> {
        let limits = self.limits;
        let location = source.location.to_string();
        // Parsing and validation are CPU work: keep them off the async threads.
        let first = {
            let source = source.clone();
            tokio::task::spawn_blocking(move || {
                let parsed = parse_file(&bytes, &limits);
                let targets = parsed.read_targets(&source);
                if targets.is_empty() {
                    Ok(to_scanned(
                        parsed.process(&source, &Reads::new()),
                        &source.location.to_string(),
                    ))
                } else {
                    Err((bytes, targets))
                }
            })
            .await
        };
        match first {
            Ok(Ok(documents)) => documents,
            Ok(Err((bytes, targets))) => {
                let mut reads = Reads::new();
                for target in targets {
                    let result = self.reader.fetch(&target).await;
                    reads.insert(target, result);
                }
                tokio::task::spawn_blocking(move || {
                    to_scanned(parse_file(&bytes, &limits).process(&source, &reads), &location)
                })
                .await
                .unwrap_or_default()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Queues a Location entity's targets, resolved against the file it was read from.
    fn enqueue_targets(
        &self,
        queue: &mut VecDeque<Pending>,
        scan: &mut Scan,
        entity: &Entity,
        spec: &callboard_model::entity::LocationSpec,
        from: &LocationRef,
    ) {
        let location_type = spec.location_type.clone().unwrap_or_else(|| from.location_type.clone());
        let optional = spec.presence == callboard_model::entity::Presence::Optional;
        let referrer = Some((entity.entity_ref().to_string(), from.to_string(), String::new()));
        for (i, raw) in spec.all_targets().enumerate() {
            let field = if spec.target.is_some() && i == 0 {
                "spec.target".to_owned()
            } else {
                format!("spec.targets[{}]", if spec.target.is_some() { i - 1 } else { i })
            };
            let referrer = referrer.clone().map(|(r, l, _)| (r, l, field.clone()));
            let resolved = if location_type == from.location_type {
                from.base().map(|base| resolve(raw, &base))
            } else {
                None
            };
            let target = match resolved {
                Some(Ok(Target::File(path))) => LocationRef::file(&path),
                Some(Ok(Target::Url(url))) => LocationRef::url(&url),
                Some(Err(e)) => {
                    let pending = Pending {
                        location: from.clone(),
                        presence_optional: optional,
                        referrer,
                        glob: false,
                    };
                    self.unreadable(scan, &pending, raw, e.to_string());
                    continue;
                }
                None => LocationRef {
                    location_type: location_type.clone(),
                    target: raw.to_owned(),
                },
            };
            let glob = target.location_type == "file" && target.target.contains(['*', '?', '[']);
            queue.push_back(Pending {
                location: target,
                presence_optional: optional,
                referrer,
                glob,
            });
        }
    }

    /// Records a location that could not be read: the scan is incomplete (nothing is deleted on
    /// its account), and the problem is reported on the Location entity that named it.
    fn unreadable(&self, scan: &mut Scan, pending: &Pending, what: &str, message: String) {
        scan.batch.complete = false;
        scan.batch.protected.insert(pending.location.to_string());
        let (entity_ref, location, field) = match &pending.referrer {
            Some((r, l, f)) => (Some(r.clone()), l.clone(), f.clone()),
            None => (None, pending.location.to_string(), String::new()),
        };
        let p = problem(
            "location.unreadable",
            &field,
            format!("cannot read {what}: {message}"),
            Some("fix the target, or mark the Location `presence: optional` if it may be missing"),
        );
        scan.batch.documents.push(Scanned::Rejected {
            entity_ref,
            location,
            index: None,
            problems: vec![p],
        });
    }

    /// Expands a Location's file glob on the blocking pool (a walk of a large tree must not hold
    /// an async thread), after checking that the folder it walks from is one the reader allows:
    /// a glob must not list folders its files could not be read from.
    async fn expand(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let reader = self.reader.clone();
        let pattern = PathBuf::from(pattern);
        tokio::task::spawn_blocking(move || expand_glob(&reader, &pattern))
            .await
            .map_err(|e| format!("the search failed: {e}"))?
    }

    /// Searches `folder` for descriptor files, sending them in path order (a directory's entries
    /// sorted by name, depth first: the order of sorted `Path`s) in chunks as they are found; an
    /// error ends the stream.
    fn discover(&self, folder: &Path) -> mpsc::Receiver<Result<Vec<PathBuf>, String>> {
        const CHUNK: usize = 64;
        let (sender, receiver) = mpsc::channel(16);
        let folder = folder.to_path_buf();
        let matcher = self.discovery.clone();
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = reader.file_allowed(&folder) {
                let _ = sender.blocking_send(Err(e.message));
                return;
            }
            let mut found = Vec::with_capacity(CHUNK);
            let walker = walkdir::WalkDir::new(&folder)
                .follow_links(false)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    let name = e.file_name().to_string_lossy();
                    e.depth() == 0 || !(name.starts_with('.') || name == "node_modules" || name == "target")
                });
            for entry in walker {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        let _ = sender.blocking_send(Ok(std::mem::take(&mut found)));
                        let _ = sender.blocking_send(Err(e.to_string()));
                        return;
                    }
                };
                if entry.file_type().is_file() {
                    let relative = entry.path().strip_prefix(&folder).unwrap_or(entry.path());
                    if matcher.is_match(relative) {
                        found.push(entry.path().to_path_buf());
                    }
                }
                if found.len() == CHUNK && sender.blocking_send(Ok(std::mem::take(&mut found))).is_err() {
                    // The scan stopped.
                    return;
                }
            }
            if !found.is_empty() {
                let _ = sender.blocking_send(Ok(found));
            }
        });
        receiver
    }
}

/// Expands a file glob (`/srv/catalog/**/catalog-info.yaml`) from its longest literal prefix,
/// which must be a folder the reader allows.
fn expand_glob(reader: &Reader, pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let text = pattern.to_string_lossy();
    let literal_end = text.find(['*', '?', '[']).unwrap_or(text.len());
    let base = match text[..literal_end].rfind('/') {
        Some(i) => PathBuf::from(&text[..i.max(1)]),
        None => PathBuf::from("."),
    };
    let matcher = Glob::new(&text).map_err(|e| e.to_string())?.compile_matcher();
    reader.file_allowed(&base).map_err(|e| e.message)?;
    let mut found: Vec<PathBuf> = walkdir::WalkDir::new(&base)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && matcher.is_match(e.path()))
        .map(|e| e.path().to_path_buf())
        .collect();
    found.sort();
    Ok(found)
}

/// The Location entity Backstage generates for a registered location.
fn generated_location(root: &LocationRecord) -> Option<Entity> {
    let entity_ref = generated_location_ref(root);
    let name = entity_ref.rsplit('/').next()?.to_owned();
    let key = root.key();
    let document = json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {
                "backstage.io/managed-by-location": key,
                "backstage.io/managed-by-origin-location": key,
            },
        },
        "spec": {"type": root.location_type, "target": root.target},
    });
    validate(document).ok()
}

/// The base a registered location's relative references resolve against.
pub fn base_of(root: &LocationRecord) -> Option<Base> {
    LocationRef {
        location_type: root.location_type.clone(),
        target: root.target.clone(),
    }
    .base()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Discovery streams files in the order of their sorted paths (which decides the first claim
    /// when two files define one entity), skipping hidden and build folders.
    #[tokio::test]
    async fn discovery_streams_files_in_path_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mut expected = Vec::new();
        for (i, folder) in ["a", "a-b", "a.c", "a/z", "b", "B", "a/b/c", "é", "n"]
            .iter()
            .enumerate()
        {
            let path = root.join(folder);
            std::fs::create_dir_all(&path).expect("mkdir");
            std::fs::write(path.join("catalog-info.yaml"), format!("# {i}")).expect("write");
            expected.push(path.join("catalog-info.yaml"));
        }
        for skipped in [".git", "node_modules", "n/target"] {
            std::fs::create_dir_all(root.join(skipped)).expect("mkdir");
            std::fs::write(root.join(skipped).join("catalog-info.yaml"), "#").expect("write");
        }
        // Enough files for several chunks.
        for i in 0..150 {
            let path = root.join("many").join(format!("{i:03}"));
            std::fs::create_dir_all(&path).expect("mkdir");
            std::fs::write(path.join("catalog-info.yml"), "#").expect("write");
            expected.push(path.join("catalog-info.yml"));
        }
        expected.sort();
        let scanner = Scanner::new(Arc::new(Reader::default().allow_root(root)));
        let mut stream = scanner.discover(root);
        let mut found = Vec::new();
        while let Some(chunk) = stream.recv().await {
            found.extend(chunk.expect("no error"));
        }
        assert_eq!(found, expected);

        let mut outside = scanner.discover(Path::new("/"));
        assert!(
            matches!(outside.recv().await, Some(Err(_))),
            "folders outside the roots are refused"
        );
    }

    /// A Location's file glob expands only inside the allowed folders: one reaching out of them
    /// is reported on the Location, and lists nothing.
    #[tokio::test]
    async fn location_globs_expand_only_inside_the_allowed_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inside = dir.path().join("inside");
        std::fs::create_dir_all(inside.join("svc")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("outside")).expect("mkdir");
        let component = |name: &str| {
            format!(
                "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n\
                 spec:\n  type: service\n  lifecycle: production\n  owner: team-a\n"
            )
        };
        std::fs::write(inside.join("svc/a.yaml"), component("a")).expect("write");
        std::fs::write(dir.path().join("outside/b.yaml"), component("b")).expect("write");
        std::fs::write(
            inside.join("catalog-info.yaml"),
            "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: all\n\
             spec:\n  targets: [./svc/*.yaml, ../outside/*.yaml]\n",
        )
        .expect("write");
        let scanner = Scanner::new(Arc::new(Reader::default().allow_root(&inside)));
        let root = LocationRecord {
            location_type: "file".into(),
            target: inside.join("catalog-info.yaml").display().to_string(),
        };
        let scan = scanner.scan(&root, "user:default/guest").await;
        let accepted: Vec<String> = scan
            .batch
            .documents
            .iter()
            .filter_map(|d| match d {
                Scanned::Accepted { entity, .. } => Some(entity.entity_ref().to_string()),
                Scanned::Rejected { .. } => None,
            })
            .collect();
        assert!(accepted.contains(&"component:default/a".to_owned()), "{accepted:?}");
        assert!(!accepted.contains(&"component:default/b".to_owned()), "{accepted:?}");
        let problems: Vec<&ProblemRecord> = scan
            .batch
            .documents
            .iter()
            .flat_map(|d| match d {
                Scanned::Rejected { problems, .. } => problems.iter().collect(),
                Scanned::Accepted { .. } => Vec::new(),
            })
            .collect();
        assert!(
            problems
                .iter()
                .any(|p| p.field == "spec.targets[1]" && p.message.contains("not allowed")),
            "{problems:?}"
        );
        assert!(!scan.batch.complete, "an unreadable target leaves the scan incomplete");
    }
}
