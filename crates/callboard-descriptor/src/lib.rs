//! Reading descriptor files as Backstage reads them.
//!
//! [`yaml`] splits and parses a YAML stream with Backstage's parser semantics, [`placeholder`]
//! resolves `$text`/`$json`/`$yaml`, [`location`] knows how references resolve against the
//! location a file came from, and [`process`] runs the whole pipeline for each document,
//! producing [`Report`]s whose problems carry a line and column.
//!
//! Architecture invariant: no I/O. Callers read files and URLs (through an allowlist) and hand
//! the bytes in; see `callboard-reader`.

pub mod locate;
pub mod location;
pub mod placeholder;
pub mod process;
pub mod yaml;

pub use location::{Base, LocationRef, Target};
pub use placeholder::{ReadError, Reads};
pub use process::{Outcome, ParsedFile, Problem, Report, Source, annotate, parse_file, process_bytes};
pub use yaml::{Limits, YamlError, read_stream};
