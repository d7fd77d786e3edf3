//! Locations (`<type>:<target>`) and how relative targets resolve against them.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use url::Url;

/// A location reference, e.g. `url:https://github.com/o/r/blob/main/catalog-info.yaml` or
/// `file:/srv/catalog/all.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationRef {
    /// `url`, `file`, or another type a provider understands.
    pub location_type: String,
    /// Where it points.
    pub target: String,
}

impl LocationRef {
    /// A `url` location.
    pub fn url(url: &Url) -> Self {
        Self {
            location_type: "url".into(),
            target: url.to_string(),
        }
    }

    /// A `file` location (the path should be absolute).
    pub fn file(path: &Path) -> Self {
        Self {
            location_type: "file".into(),
            target: path.display().to_string(),
        }
    }

    /// Parses `<type>:<target>`, splitting at the first colon.
    pub fn parse(text: &str) -> Option<Self> {
        let (location_type, target) = text.split_once(':')?;
        (!location_type.is_empty() && !target.is_empty()).then(|| Self {
            location_type: location_type.into(),
            target: target.into(),
        })
    }

    /// The base that relative targets of this location resolve against.
    pub fn base(&self) -> Option<Base> {
        match self.location_type.as_str() {
            "url" => Url::parse(&self.target).ok().map(Base::Url),
            "file" => Some(Base::File(PathBuf::from(&self.target))),
            _ => None,
        }
    }
}

impl fmt::Display for LocationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.location_type, self.target)
    }
}

/// What a relative reference (a placeholder or a Location target) resolves against: the file
/// the document was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Base {
    /// A document read from a URL.
    Url(Url),
    /// A document read from a local file.
    File(PathBuf),
}

/// Something to read: a URL or a local file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// An absolute URL.
    Url(Url),
    /// A local path (absolute when the base was).
    File(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Url(url) => f.write_str(url.as_str()),
            Target::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why a reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The base and the reference do not form a URL.
    #[error("could not form a URL out of {base} and {reference}")]
    NotAUrl {
        /// The base.
        base: String,
        /// The reference.
        reference: String,
    },
    /// A placeholder named a file in another repository on the same host (upstream forbids it
    /// since catalog-backend 3.9, so a descriptor cannot pull arbitrary content into the catalog).
    #[error(
        "could not form a URL out of {base} and {reference}: placeholders may only reference files from the same repository as the entity"
    )]
    OtherRepository {
        /// The base.
        base: String,
        /// The reference.
        reference: String,
    },
}

/// Resolves a placeholder reference: like [`resolve`], but an absolute URL into a different
/// repository on the base's (GitHub) host is refused.
pub fn resolve_placeholder(reference: &str, base: &Base) -> Result<Target, ResolveError> {
    let target = resolve(reference, base)?;
    if let (Base::Url(base_url), Target::Url(url)) = (base, &target) {
        let same_host = base_url.host_str() == url.host_str();
        if same_host && base_url.host_str().is_some_and(is_github_host) && repository(base_url) != repository(url) {
            return Err(ResolveError::OtherRepository {
                base: base_url.to_string(),
                reference: reference.to_owned(),
            });
        }
    }
    Ok(target)
}

/// `owner/repo` of a GitHub URL, lowercased (GitHub names are case-insensitive).
fn repository(url: &Url) -> Option<(String, String)> {
    let mut segments = url.path_segments()?;
    Some((segments.next()?.to_lowercase(), segments.next()?.to_lowercase()))
}

/// Hosts whose URLs follow GitHub's `/<owner>/<repo>/<blob|tree|edit>/<ref>/<path>` layout.
/// Backstage's default integration covers github.com; deployments may add GitHub Enterprise hosts.
pub fn is_github_host(host: &str) -> bool {
    host == "github.com"
}

/// Resolves `reference` against `base` the way Backstage's `ScmIntegrations.resolveUrl` does
/// for URL bases (absolute references pass through; `/x` is relative to the repository root;
/// GitHub URLs are rewritten to `tree/`, which GitHub redirects to files and folders alike), and
/// relative to the file's folder for file bases.
pub fn resolve(reference: &str, base: &Base) -> Result<Target, ResolveError> {
    match base {
        Base::Url(base) => resolve_url(reference, base).map(Target::Url),
        Base::File(file) => {
            if let Ok(url) = Url::parse(reference)
                && matches!(url.scheme(), "http" | "https")
            {
                return Ok(Target::Url(url));
            }
            let folder = file.parent().unwrap_or(Path::new(""));
            Ok(Target::File(normalize(&folder.join(reference))))
        }
    }
}

fn resolve_url(reference: &str, base: &Url) -> Result<Url, ResolveError> {
    let github = base.host_str().is_some_and(is_github_host);
    let not_a_url = || ResolveError::NotAUrl {
        base: base.to_string(),
        reference: reference.to_owned(),
    };
    let resolved = if let Ok(absolute) = Url::parse(reference) {
        absolute
    } else {
        let mut updated = if let (true, Some(root)) = (reference.starts_with('/'), repo_root(base)) {
            let mut u = base.clone();
            u.set_path(&format!("{root}{reference}"));
            u
        } else {
            base.join(reference).map_err(|_| not_a_url())?
        };
        updated.set_query(base.query());
        updated
    };
    if github {
        Ok(github_url_type(&resolved, "tree"))
    } else {
        Ok(resolved)
    }
}

/// `/<owner>/<repo>/<type>/<ref>` of a GitHub file URL.
fn repo_root(url: &Url) -> Option<String> {
    if !url.host_str().is_some_and(is_github_host) {
        return None;
    }
    let segments: Vec<&str> = url.path_segments()?.collect();
    if segments.len() >= 4 && matches!(segments[2], "blob" | "tree" | "edit") {
        Some(format!("/{}", segments[..4].join("/")))
    } else {
        None
    }
}

/// Replaces the `blob`/`tree`/`edit` segment of a GitHub URL.
pub fn github_url_type(url: &Url, kind: &str) -> Url {
    let Some(segments) = url.path_segments() else {
        return url.clone();
    };
    let mut segments: Vec<String> = segments.map(str::to_owned).collect();
    if segments.len() >= 4 && matches!(segments[2].as_str(), "blob" | "tree" | "edit") {
        segments[2] = kind.to_owned();
        let mut u = url.clone();
        u.set_path(&segments.join("/"));
        u
    } else {
        url.clone()
    }
}

/// Removes `.` and resolves `..` lexically, so allowlist checks see the real target.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The annotations an entity read from `location` (registered as `origin`) receives, as
/// Backstage's `AnnotateLocationEntityProcessor` sets them. Authors' own values win.
pub fn location_annotations(location: &LocationRef, origin: &LocationRef) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("backstage.io/managed-by-location", location.to_string()),
        ("backstage.io/managed-by-origin-location", origin.to_string()),
    ];
    if location.location_type == "url"
        && let Ok(url) = Url::parse(&location.target)
    {
        out.push(("backstage.io/view-url", location.target.clone()));
        if url.host_str().is_some_and(is_github_host) {
            out.push(("backstage.io/edit-url", github_url_type(&url, "edit").to_string()));
        }
        if let Ok(folder) = resolve_url("./", &url) {
            out.push(("backstage.io/source-location", format!("url:{folder}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(u: &str) -> Base {
        Base::Url(Url::parse(u).unwrap())
    }

    #[test]
    fn github_relative_references() {
        let b = base("https://github.com/o/r/blob/abc/docs/catalog-info.yaml");
        assert_eq!(
            resolve("./api.yaml", &b).unwrap().to_string(),
            "https://github.com/o/r/tree/abc/docs/api.yaml"
        );
        assert_eq!(
            resolve("../x.yaml", &b).unwrap().to_string(),
            "https://github.com/o/r/tree/abc/x.yaml"
        );
        assert_eq!(
            resolve("/spec/y.json", &b).unwrap().to_string(),
            "https://github.com/o/r/tree/abc/spec/y.json"
        );
        assert_eq!(
            resolve("https://github.com/a/b/blob/main/z.yaml", &b)
                .unwrap()
                .to_string(),
            "https://github.com/a/b/tree/main/z.yaml"
        );
        assert_eq!(
            resolve("https://example.com/x.json", &b).unwrap().to_string(),
            "https://example.com/x.json"
        );
    }

    #[test]
    fn file_references() {
        let b = Base::File(PathBuf::from("/srv/cat/a/catalog-info.yaml"));
        assert_eq!(
            resolve("../api.yaml", &b).unwrap(),
            Target::File(PathBuf::from("/srv/cat/api.yaml"))
        );
        assert_eq!(
            resolve("./x/y.json", &b).unwrap(),
            Target::File(PathBuf::from("/srv/cat/a/x/y.json"))
        );
        assert!(matches!(resolve("https://github.com/o/r", &b).unwrap(), Target::Url(_)));
    }

    #[test]
    fn annotations_for_url_locations() {
        let loc = LocationRef::parse("url:https://github.com/o/r/blob/main/catalog-info.yaml").unwrap();
        let a = location_annotations(&loc, &loc);
        assert!(a.contains(&(
            "backstage.io/edit-url",
            "https://github.com/o/r/edit/main/catalog-info.yaml".into()
        )));
        assert!(a.contains(&(
            "backstage.io/source-location",
            "url:https://github.com/o/r/tree/main/".into()
        )));
    }
}
