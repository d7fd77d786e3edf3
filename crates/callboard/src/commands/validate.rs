//! `callboard validate`: parse and validate descriptor files as Backstage would, offline.
//!
//! The contract is fixed in `../shared/design.md` §3: text or jsonl output, `--origin-map` and
//! `--url-map`, exit status 0 (all valid), 1 (any invalid) or 2 (usage error).

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use callboard_descriptor::{Limits, LocationRef, Outcome, Report, Source, process_bytes};
use callboard_reader::{Reader, read_tsv};
use serde_json::json;
use url::Url;

use crate::output::{ColorChoice, Style};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line:column`, the rule and a hint, for people.
    Text,
    /// One JSON object per non-empty document, for tools.
    Jsonl,
}

/// Arguments of `callboard validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Descriptor files, or folders to search for `*.yaml` and `*.yml` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, env = "CALLBOARD_FORMAT", value_enum, default_value_t = Format::Text)]
    format: Format,
    /// TSV (header `file`, `origin`) naming the URL each file was registered from; relative
    /// placeholders then resolve against that URL.
    #[arg(long, env = "CALLBOARD_ORIGIN_MAP", value_name = "FILE")]
    origin_map: Option<PathBuf>,
    /// TSV (header `url`, `file`) answering URL reads from local files instead of the network.
    #[arg(long, env = "CALLBOARD_URL_MAP", value_name = "FILE")]
    url_map: Option<PathBuf>,
    /// Also allow reading from this host (repeatable; `*.example.com` allows subdomains).
    #[arg(long, env = "CALLBOARD_ALLOW_HOST", value_delimiter = ',', value_name = "HOST")]
    allow_host: Vec<String>,
    /// Also allow reading local files below this folder (repeatable).
    #[arg(long, env = "CALLBOARD_ALLOW_PATH", value_delimiter = ',', value_name = "DIR")]
    allow_path: Vec<PathBuf>,
    /// Also read hidden files and folders (`.env`, `.git/…`) below the allowed folders.
    #[arg(long, env = "CALLBOARD_ALLOW_HIDDEN_FILES")]
    allow_hidden_files: bool,
    /// When to use colour in text output.
    #[arg(long, env = "CALLBOARD_COLOR", value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
}

/// Largest file `validate` reads; larger documents inside it are still rejected one by one by
/// the per-document limit.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    let files = collect_files(&args.paths)?;
    let origins = match &args.origin_map {
        Some(path) => read_tsv(path, "file", "origin")?.into_iter().collect(),
        None => HashMap::new(),
    };
    let mut reader = Reader::default().allow_hidden_files(args.allow_hidden_files);
    for host in &args.allow_host {
        reader = reader.allow_host(host.clone());
    }
    if let Some(map) = &args.url_map {
        reader = reader.load_url_map(map)?;
    }
    let cwd = std::env::current_dir().context("cannot determine the current folder")?;
    reader = reader.allow_root(&cwd);
    for root in args.allow_path.iter().chain(args.paths.iter()) {
        let root = if root.is_dir() {
            root.as_path()
        } else {
            root.parent().unwrap_or(Path::new("."))
        };
        reader = reader.allow_root(&cwd.join(root));
    }

    let style = Style::for_stdout(args.color);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let limits = Limits::default();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for file in &files {
        let bytes = read_file(file)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = match origins.get(&name).or_else(|| origins.get(&file.display().to_string())) {
            Some(origin) => {
                let url = Url::parse(origin).with_context(|| format!("origin of {name} is not a URL: {origin}"))?;
                Source::new(LocationRef::url(&url))
            }
            None => Source::new(LocationRef::file(&cwd.join(file))),
        };
        let reports = process_bytes(&bytes, &source, &limits, |target| reader.read_offline(target));
        for report in &reports {
            match &report.outcome {
                Outcome::Empty => continue,
                Outcome::Accepted(_) => valid += 1,
                Outcome::Rejected(_) => invalid += 1,
            }
            let written = match args.format {
                Format::Jsonl => write_jsonl(&mut out, &name, report),
                Format::Text => write_text(&mut out, file, report, style),
            };
            if let Err(e) = written {
                // A closed pipe (`| head`) is not an error worth reporting.
                if e.kind() == io::ErrorKind::BrokenPipe {
                    return Ok(exit_code(invalid));
                }
                return Err(e).context("cannot write output");
            }
        }
    }
    if args.format == Format::Text {
        let total = valid + invalid;
        let summary = format!(
            "{} document{} in {} file{}: {valid} valid, {invalid} invalid",
            total,
            if total == 1 { "" } else { "s" },
            files.len(),
            if files.len() == 1 { "" } else { "s" },
        );
        let summary = if invalid == 0 {
            style.ok(&summary)
        } else {
            style.error(&summary)
        };
        let _ = writeln!(out, "{summary}");
    }
    let _ = out.flush();
    Ok(exit_code(invalid))
}

fn exit_code(invalid: usize) -> ExitCode {
    if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.len() > MAX_FILE_BYTES {
        bail!(
            "{} is {} bytes, larger than the {MAX_FILE_BYTES}-byte limit",
            path.display(),
            metadata.len()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Expands folders into the descriptor files below them, sorted for stable output.
fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if metadata.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found).with_context(|| format!("cannot list {}", path.display()))?;
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let file_type = entry.file_type()?;
        let hidden_or_vendored = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.') || n == "node_modules");
        if file_type.is_dir() && !hidden_or_vendored {
            walk(&path, found)?;
        } else if file_type.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(path);
        }
    }
    Ok(())
}

fn write_jsonl(out: &mut impl Write, name: &str, report: &Report) -> io::Result<()> {
    let (valid, error, relations) = match &report.outcome {
        Outcome::Accepted(entity) => (true, None, entity.relations().to_vec()),
        Outcome::Rejected(problems) => {
            let first = &problems[0];
            let error = format!(
                "line {}, column {}: {} [{}]",
                first.line,
                first.column,
                first.diagnostic.message,
                first.diagnostic.rule.code()
            );
            (false, Some(error), Vec::new())
        }
        Outcome::Empty => return Ok(()),
    };
    let line = json!({
        "file": name,
        "index": report.index,
        "kind": report.kind,
        "valid": valid,
        "error": error,
        "entityRef": report.entity_ref,
        "relations": relations,
    });
    writeln!(out, "{line}")
}

fn write_text(out: &mut impl Write, file: &Path, report: &Report, style: Style) -> io::Result<()> {
    let Outcome::Rejected(problems) = &report.outcome else {
        return Ok(());
    };
    let what = match (&report.entity_ref, &report.kind) {
        (Some(r), _) => format!(" ({r}, document {})", report.index + 1),
        (None, _) => format!(" (document {})", report.index + 1),
    };
    for problem in problems {
        let position = format!("{}:{}:{}", file.display(), problem.line, problem.column);
        writeln!(
            out,
            "{}: {}{}: {}",
            style.bold(&position),
            style.error(&format!("error[{}]", problem.diagnostic.rule.code())),
            what,
            problem.diagnostic.message
        )?;
        if let Some(hint) = &problem.diagnostic.hint {
            writeln!(out, "  {} {hint}", style.hint("= hint:"))?;
        }
    }
    Ok(())
}
