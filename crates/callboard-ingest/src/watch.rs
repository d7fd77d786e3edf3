//! File watching: changes to files a location's last scan read (or new files in a discovery
//! folder) are sent to the writer, which rescans the affected locations — so saving a
//! `catalog-info.yaml` becomes an event within a second.

use std::collections::BTreeSet;
use std::path::PathBuf;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// Keeps an OS file watcher alive and forwards changed paths.
pub struct FileWatcher {
    watcher: RecommendedWatcher,
    watched: BTreeSet<(PathBuf, bool)>,
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcher")
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

impl FileWatcher {
    /// A watcher sending changed paths to the returned receiver.
    pub fn new() -> notify::Result<(Self, mpsc::Receiver<PathBuf>)> {
        let (sender, receiver) = mpsc::channel(1024);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            for path in event.paths {
                // A full channel means a rescan is pending anyway.
                let _ = sender.try_send(path);
            }
        })?;
        Ok((
            Self {
                watcher,
                watched: BTreeSet::new(),
            },
            receiver,
        ))
    }

    /// Watches the folders of `files` (editors replace files, so the folder is watched, not the
    /// file) and `folders` recursively. Already watched paths are skipped.
    pub fn watch(&mut self, files: &[PathBuf], folders: &[PathBuf]) {
        let wanted: BTreeSet<(PathBuf, bool)> = files
            .iter()
            .filter_map(|f| f.parent().map(|p| (p.to_path_buf(), false)))
            .chain(folders.iter().map(|f| (f.clone(), true)))
            .collect();
        for (path, recursive) in wanted {
            if self.watched.contains(&(path.clone(), recursive)) {
                continue;
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match self.watcher.watch(&path, mode) {
                Ok(()) => {
                    self.watched.insert((path, recursive));
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot watch"),
            }
        }
    }
}
