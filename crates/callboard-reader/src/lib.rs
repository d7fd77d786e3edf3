//! Allowlisted reading of descriptor files and placeholder targets.
//!
//! Everything Callboard reads on behalf of a descriptor goes through a [`Reader`]: URLs only on
//! allowed hosts, local files only below allowed roots (after resolving `..` and symlinks), and
//! never more than a size limit. A URL map can answer URL reads from local files, which is how
//! the conformance corpus is read offline and how tests avoid the network.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use callboard_descriptor::{ReadError, Target};
use url::Url;

/// Hosts of Backstage's default SCM integrations, which it may read without further
/// configuration: GitHub, GitLab, Bitbucket Cloud and Azure DevOps.
pub const DEFAULT_ALLOWED_HOSTS: [&str; 4] = ["github.com", "gitlab.com", "bitbucket.org", "dev.azure.com"];

/// Problems loading reader configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A map file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A map file has the wrong shape.
    #[error("{path}:{line}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// What may be read.
#[derive(Debug, Clone)]
pub struct Reader {
    allowed_hosts: Vec<String>,
    file_roots: Vec<PathBuf>,
    url_map: HashMap<String, PathBuf>,
    max_bytes: u64,
    hidden_files: bool,
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            allowed_hosts: DEFAULT_ALLOWED_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            file_roots: Vec::new(),
            url_map: HashMap::new(),
            max_bytes: 16 << 20,
            hidden_files: false,
        }
    }
}

fn refused(message: String) -> ReadError {
    ReadError::refused(message)
}

fn failed(message: String) -> ReadError {
    ReadError::failed(message)
}

fn io_failed(path: &Path, e: &std::io::Error) -> ReadError {
    let message = format!("cannot read {}: {e}", path.display());
    if e.kind() == std::io::ErrorKind::NotFound {
        ReadError::not_found(message)
    } else {
        ReadError::failed(message)
    }
}

impl Reader {
    /// Allows URLs on `host` (exact host name, or `*.example.com` for subdomains).
    #[must_use]
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// Replaces the host allowlist.
    #[must_use]
    pub fn with_hosts(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.allowed_hosts = hosts.into_iter().collect();
        self
    }

    /// Allows local files at or below `root`.
    #[must_use]
    pub fn allow_root(mut self, root: &Path) -> Self {
        let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        if !self.file_roots.contains(&root) {
            self.file_roots.push(root);
        }
        self
    }

    /// Also allows hidden files and folders below the roots (names starting with `.`), which are
    /// refused by default: a descriptor's folder is often a repository's root, where `.env`,
    /// `.git/config` or `.npmrc` hold secrets that a `$text: ./.env` placeholder would publish.
    #[must_use]
    pub fn allow_hidden_files(mut self, allow: bool) -> Self {
        self.hidden_files = allow;
        self
    }

    /// Caps the size of anything read.
    #[must_use]
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Answers reads of the listed URLs from local files: a TSV with header `url` and `file`,
    /// files relative to the TSV's folder. Mapped files are readable regardless of file roots;
    /// the host allowlist still applies to the URLs.
    pub fn load_url_map(mut self, tsv: &Path) -> Result<Self, ConfigError> {
        let folder = tsv.parent().unwrap_or(Path::new("."));
        for (url, file) in read_tsv(tsv, "url", "file")? {
            self.url_map.insert(url, folder.join(file));
        }
        Ok(self)
    }

    /// Is this URL's host on the allowlist?
    pub fn host_allowed(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        matches!(url.scheme(), "http" | "https")
            && self
                .allowed_hosts
                .iter()
                .any(|allowed| match allowed.strip_prefix("*.") {
                    Some(suffix) => host.ends_with(&format!(".{suffix}")),
                    None => allowed == host,
                })
    }

    /// Is this file below an allowed root (following symlinks), and not hidden below it?
    pub fn file_allowed(&self, path: &Path) -> Result<PathBuf, ReadError> {
        let real = fs::canonicalize(path).map_err(|e| io_failed(path, &e))?;
        let Some(root) = self.file_roots.iter().find(|root| real.starts_with(root)) else {
            return Err(refused(format!(
                "reading {} is not allowed: it is outside the allowed folders",
                path.display()
            )));
        };
        // The real path is checked, so a visible symlink to `.env` is refused too.
        let hidden = real
            .strip_prefix(root)
            .unwrap_or(&real)
            .components()
            .any(|c| matches!(c, std::path::Component::Normal(name) if name.to_string_lossy().starts_with('.')));
        if hidden && !self.hidden_files {
            return Err(refused(format!(
                "reading {} is not allowed: hidden files and folders (such as .env or .git) are not \
                 read unless hidden files are allowed",
                path.display()
            )));
        }
        Ok(real)
    }

    /// Reads a target without the network: local files, and URLs through the URL map.
    /// `None` means the target is an allowed URL that only the network could answer.
    pub fn read_local(&self, target: &Target) -> Option<Result<Vec<u8>, ReadError>> {
        match target {
            Target::File(path) => Some(self.file_allowed(path).and_then(|real| self.read_file(&real))),
            Target::Url(url) => {
                if !self.host_allowed(url) {
                    return Some(Err(refused(format!(
                        "reading from {url} is not allowed; add its host to the allowed hosts"
                    ))));
                }
                self.url_map.get(url.as_str()).map(|file| self.read_file(file))
            }
        }
    }

    /// Reads a target without the network, failing for URLs the URL map does not answer.
    pub fn read_offline(&self, target: &Target) -> Result<Vec<u8>, ReadError> {
        self.read_local(target)
            .unwrap_or_else(|| Err(failed(format!("{target} is not available offline (no URL map entry)"))))
    }

    fn read_file(&self, path: &Path) -> Result<Vec<u8>, ReadError> {
        let file = fs::File::open(path).map_err(|e| io_failed(path, &e))?;
        let mut bytes = Vec::new();
        file.take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_failed(path, &e))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(failed(format!(
                "{} is larger than {} bytes",
                path.display(),
                self.max_bytes
            )));
        }
        Ok(bytes)
    }
}

/// Reads a two-column TSV with the given header, skipping blank lines.
pub fn read_tsv(path: &Path, first: &str, second: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines().enumerate();
    let format = |line: usize, message: String| ConfigError::Format {
        path: path.to_path_buf(),
        line,
        message,
    };
    match lines.next() {
        Some((_, header)) if header.trim_end_matches('\r').split('\t').take(2).eq([first, second]) => {}
        _ => {
            return Err(format(1, format!("expected the header line {first}<TAB>{second}")));
        }
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut cells = line.split('\t');
        match (cells.next(), cells.next()) {
            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => rows.push((a.to_owned(), b.to_owned())),
            _ => return Err(format(i + 1, "expected two tab-separated columns".into())),
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("a.yaml");
        fs::write(&inside, "x").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        let reader = Reader::default().allow_root(dir.path()).allow_host("*.example.com");
        assert_eq!(reader.read_offline(&Target::File(inside.clone())).unwrap(), b"x");
        assert!(
            reader
                .read_offline(&Target::File(outside.path().to_path_buf()))
                .unwrap_err()
                .not_allowed
        );
        let escape = dir.path().join("..").join(outside.path().file_name().unwrap());
        assert!(reader.read_offline(&Target::File(escape)).is_err());
        assert!(reader.host_allowed(&Url::parse("https://api.example.com/x").unwrap()));
        assert!(!reader.host_allowed(&Url::parse("https://example.com.evil.net/x").unwrap()));
        assert!(!reader.host_allowed(&Url::parse("file:///etc/passwd").unwrap()));
        let refused = reader.read_offline(&Target::Url(Url::parse("https://petstore.swagger.io/v2").unwrap()));
        assert!(refused.unwrap_err().not_allowed);
    }

    /// `$text: ./.env` beside a descriptor, a link to it, or anything under `.git` is refused
    /// unless hidden files are allowed; a root that is itself hidden (a temporary folder) is fine.
    #[test]
    fn hidden_files_below_a_root_are_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".env"), "SECRET=1").unwrap();
        fs::create_dir(dir.path().join(".git")).unwrap();
        fs::write(dir.path().join(".git/config"), "[core]").unwrap();
        fs::write(dir.path().join("README.md"), "hello").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join(".env"), dir.path().join("env.txt")).unwrap();
        let reader = Reader::default().allow_root(dir.path());
        for hidden in [".env", ".git/config", ".git/../.env"] {
            let error = reader.read_offline(&Target::File(dir.path().join(hidden))).unwrap_err();
            assert!(
                error.not_allowed && error.message.contains("hidden"),
                "{hidden}: {}",
                error.message
            );
        }
        #[cfg(unix)]
        assert!(
            reader
                .read_offline(&Target::File(dir.path().join("env.txt")))
                .unwrap_err()
                .not_allowed
        );
        assert_eq!(
            reader
                .read_offline(&Target::File(dir.path().join("README.md")))
                .unwrap(),
            b"hello"
        );
        let open = reader.allow_hidden_files(true);
        assert_eq!(
            open.read_offline(&Target::File(dir.path().join(".env"))).unwrap(),
            b"SECRET=1"
        );
    }

    #[test]
    fn url_map() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("spec.json"), "{}").unwrap();
        let tsv = dir.path().join("urls.tsv");
        fs::write(
            &tsv,
            "url\tfile\nhttps://github.com/o/r/tree/main/spec.json\tspec.json\n",
        )
        .unwrap();
        let reader = Reader::default().load_url_map(&tsv).unwrap();
        let url = Url::parse("https://github.com/o/r/tree/main/spec.json").unwrap();
        assert_eq!(reader.read_offline(&Target::Url(url)).unwrap(), b"{}");
        let missing = Url::parse("https://github.com/o/r/tree/main/other.json").unwrap();
        assert!(!reader.read_offline(&Target::Url(missing)).unwrap_err().not_allowed);
    }
}

/// Network reads.
mod http {
    use std::sync::OnceLock;
    use std::time::Duration;

    use callboard_descriptor::ReadError;
    use url::Url;

    use super::{Reader, failed, refused};

    /// One HTTP client per process (it pools connections). Redirects are followed only to
    /// allowed hosts, which `fetch_url` checks per hop.
    fn client() -> Result<&'static reqwest::Client, ReadError> {
        static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
        CLIENT
            .get_or_init(|| {
                // rustls needs a process-wide crypto provider; ring is the one we build.
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(Duration::from_secs(10))
                    .timeout(Duration::from_secs(30))
                    .user_agent(concat!("callboard/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| failed(format!("cannot create the HTTP client: {e}")))
    }

    impl Reader {
        pub(crate) async fn fetch_url(&self, url: &Url) -> Result<Vec<u8>, ReadError> {
            let client = client()?;
            let mut current = url.clone();
            for _ in 0..5 {
                if !self.host_allowed(&current) {
                    return Err(refused(format!(
                        "reading from {current} is not allowed; add its host to the allowed hosts"
                    )));
                }
                let mut response = client
                    .get(current.clone())
                    .send()
                    .await
                    .map_err(|e| failed(format!("cannot read {current}: {e}")))?;
                let status = response.status();
                if status.is_redirection() {
                    let location = response
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .and_then(|l| current.join(l).ok())
                        .ok_or_else(|| failed(format!("{current} redirected without a usable Location header")))?;
                    current = location;
                    continue;
                }
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Err(ReadError::not_found(format!("{current} was not found (404)")));
                }
                if !status.is_success() {
                    return Err(failed(format!("cannot read {current}: HTTP {status}")));
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|e| failed(format!("cannot read {current}: {e}")))?
                {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() as u64 > self.max_bytes {
                        return Err(failed(format!("{current} is larger than {} bytes", self.max_bytes)));
                    }
                }
                return Ok(bytes);
            }
            Err(failed(format!("{url} redirected too many times")))
        }
    }
}

impl Reader {
    /// Reads a target: local files (off the async threads), URLs through the URL map or, when
    /// not mapped, over HTTP — in every case only where the allowlists permit.
    pub async fn fetch(&self, target: &Target) -> Result<Vec<u8>, ReadError> {
        match target {
            Target::File(_) => {
                let reader = self.clone();
                let target = target.clone();
                tokio::task::spawn_blocking(move || reader.read_offline(&target))
                    .await
                    .unwrap_or_else(|e| Err(failed(format!("read task failed: {e}"))))
            }
            Target::Url(url) => match self.read_local(target) {
                Some(result) => result,
                None => self.fetch_url(url).await,
            },
        }
    }
}
