//! Locations named on the command line, and what reading them may touch.

use std::path::Path;

use anyhow::{Context, Result};
use callboard_events::types::LocationRecord;
use callboard_reader::Reader;

/// Turns a command-line location into a registered location: URLs stay URLs, folders become
/// discovery locations, files become file locations (absolute paths).
pub fn location_of(text: &str) -> Result<LocationRecord> {
    if text.starts_with("http://") || text.starts_with("https://") {
        return Ok(LocationRecord {
            location_type: "url".into(),
            target: text.to_owned(),
        });
    }
    let path = std::fs::canonicalize(Path::new(text)).with_context(|| format!("cannot find {text}"))?;
    let location_type = if path.is_dir() { "discovery" } else { "file" };
    Ok(LocationRecord {
        location_type: location_type.into(),
        target: path.display().to_string(),
    })
}

/// A reader allowing the folders of the given locations and the given hosts (and hidden files
/// below those folders only when `hidden_files`).
pub fn reader_for(locations: &[LocationRecord], hosts: &[String], hidden_files: bool) -> Reader {
    let mut reader = Reader::default().allow_hidden_files(hidden_files);
    for host in hosts {
        reader = reader.allow_host(host.clone());
    }
    for location in locations {
        let path = Path::new(&location.target);
        match location.location_type.as_str() {
            "discovery" => reader = reader.allow_root(path),
            "file" => reader = reader.allow_root(path.parent().unwrap_or(path)),
            _ => {}
        }
    }
    reader
}
