//! The [`Source`] trait, its request and outcome types, and the errors every source reports.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::artifact::{Artifact, ArtifactError, Recycle};
use crate::select::SelectError;

/// A revision of a source, such as `main@sha1:0123…`, `v1.2.3@sha1:0123…`, `sha1:0123…` for a
/// pinned commit, or `sha256:…` for a local directory (its content digest).
///
/// Two fetches saw the same content when their revisions are equal.
///
/// ```
/// use gitops_source::Revision;
///
/// let revision = Revision::git("main", "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
/// assert_eq!(revision.as_str(), "main@sha1:4b825dc642cb6eb9a060e54bf8d69288fbee4904");
/// assert_eq!(revision.sha1(), Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(String);

impl Revision {
    /// A revision of a Git commit reached through `name` (a branch or tag name, or a full ref name),
    /// written `<name>@sha1:<hash>`; with an empty name it is just `sha1:<hash>`.
    #[must_use]
    pub fn git(name: &str, sha1_hex: &str) -> Self {
        if name.is_empty() {
            Self(format!("sha1:{sha1_hex}"))
        } else {
            Self(format!("{name}@sha1:{sha1_hex}"))
        }
    }

    /// Wrap a revision string as produced by a source (for example one read back from storage).
    #[must_use]
    pub fn from_string(revision: impl Into<String>) -> Self {
        Self(revision.into())
    }

    /// The revision as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hexadecimal SHA-1 of the commit, for Git revisions.
    #[must_use]
    pub fn sha1(&self) -> Option<&str> {
        let (_, hash) = self.0.rsplit_once("sha1:")?;
        (hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A step of a fetch, reported to the callback set with [`FetchRequest::with_progress`].
///
/// A Git fetch reports [`ListingRefs`](Self::ListingRefs), then either
/// [`Unchanged`](Self::Unchanged), or [`Downloading`](Self::Downloading) (repeatedly, only when
/// the commit is not in the cache yet), [`SelectingFiles`](Self::SelectingFiles),
/// [`WritingFiles`](Self::WritingFiles) (repeatedly) and [`Done`](Self::Done). A pinned commit
/// that was seen last reports only `Unchanged`. A local directory reports
/// [`ScanningDirectory`](Self::ScanningDirectory) (which selects the files too), then either
/// `Unchanged`, or `WritingFiles` (repeatedly) and `Done`. When a damaged cache is rebuilt, the steps start again from `ListingRefs`.
/// Failures are not reported here: they are the fetch's error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchProgress {
    /// Asking the remote which commits its references point to.
    ListingRefs,
    /// Reading a local directory to compute its revision.
    ScanningDirectory,
    /// The revision seen last is still current; nothing more happens.
    Unchanged {
        /// The current (unchanged) revision.
        revision: Revision,
    },
    /// Receiving objects from the remote. Reported when the download starts and then as data
    /// arrives (at most every 50 ms), and once more with the totals when it ends.
    Downloading {
        /// Objects received and indexed so far.
        received_objects: u64,
        /// Bytes of pack data received so far.
        received_bytes: u64,
    },
    /// Choosing the files of the subpath that the ignore rules leave in.
    SelectingFiles,
    /// Writing the selected files to the destination. Reported with 0 files written, then at most
    /// every 50 ms, and once more when all are written.
    WritingFiles {
        /// Files written so far.
        files_written: usize,
        /// Files to write in all.
        files_total: usize,
    },
    /// The artifact is complete.
    Done {
        /// The revision written.
        revision: Revision,
    },
}

/// A callback receiving the [`FetchProgress`] of a fetch. It runs on the fetching thread (a
/// blocking thread for Git), so it should return quickly.
pub type ProgressCallback = Arc<dyn Fn(FetchProgress) + Send + Sync>;

/// The progress callback of a request, if any, with throttling for frequent updates.
#[derive(Clone, Default)]
pub(crate) struct ProgressReporter {
    callback: Option<ProgressCallback>,
    last_frequent: Arc<Mutex<Option<Instant>>>,
}

/// The least time between two frequent updates of one kind.
const FREQUENT_UPDATE_INTERVAL: Duration = Duration::from_millis(50);

impl ProgressReporter {
    /// Report `progress`.
    pub(crate) fn report(&self, progress: FetchProgress) {
        if let Some(callback) = &self.callback {
            callback(progress);
        }
    }

    /// Report a frequent update, unless one was reported less than 50 ms ago. `make` is called
    /// only when the update is reported.
    pub(crate) fn report_frequent(&self, make: impl FnOnce() -> FetchProgress) {
        if self.callback.is_none() {
            return;
        }
        // Another thread reporting right now is as good as reporting.
        let Ok(mut last) = self.last_frequent.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|last| now.duration_since(last) < FREQUENT_UPDATE_INTERVAL) {
            return;
        }
        *last = Some(now);
        drop(last);
        self.report(make());
    }

    /// Report writing `files_total` files: now with none written, then through the returned
    /// function (called with the number written so far) at most every 50 ms and when all are.
    pub(crate) fn writing_files(&self, files_total: usize) -> impl FnMut(usize) + '_ {
        self.report(FetchProgress::WritingFiles {
            files_written: 0,
            files_total,
        });
        move |files_written| {
            let progress = move || FetchProgress::WritingFiles {
                files_written,
                files_total,
            };
            if files_written == files_total {
                self.report(progress());
            } else {
                self.report_frequent(progress);
            }
        }
    }

    /// Whether anyone listens.
    pub(crate) fn is_enabled(&self) -> bool {
        self.callback.is_some()
    }
}

impl fmt::Debug for ProgressReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.callback.is_some() {
            "Some(<progress callback>)"
        } else {
            "None"
        })
    }
}

/// What [`Source::fetch`] should do: where to write a new artifact, what was seen last, when to
/// give up, and whom to tell how it goes.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use gitops_source::{FetchProgress, FetchRequest, Revision};
/// use tokio_util::sync::CancellationToken;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let record = Arc::clone(&seen);
/// let request = FetchRequest::new("/tmp/out")
///     .with_last_revision(Revision::from_string("main@sha1:4b825dc642cb6eb9a060e54bf8d69288fbee4904"))
///     .with_cancellation(CancellationToken::new())
///     .with_progress(move |progress: FetchProgress| {
///         if let FetchProgress::WritingFiles { files_written, files_total } = &progress {
///             println!("{files_written}/{files_total} files written");
///         }
///         record.lock().unwrap().push(progress);
///     });
/// assert!(request.last_revision().is_some());
/// ```
#[derive(Clone, Debug)]
pub struct FetchRequest {
    destination: PathBuf,
    last_revision: Option<Revision>,
    previous: Option<Artifact>,
    recycle: Option<Recycle>,
    sparse: Option<Sparse>,
    cancellation: CancellationToken,
    progress: ProgressReporter,
}

impl FetchRequest {
    /// A request that writes a new artifact into `destination`, a directory that must be absent or
    /// empty. Nothing is written there when the outcome is [`FetchOutcome::Unchanged`].
    #[must_use]
    pub fn new(destination: impl Into<PathBuf>) -> Self {
        Self {
            destination: destination.into(),
            last_revision: None,
            previous: None,
            recycle: None,
            sparse: None,
            cancellation: CancellationToken::new(),
            progress: ProgressReporter::default(),
        }
    }

    /// Call `callback` with each step of the fetch ([`FetchProgress`]). It runs on the fetching
    /// thread, so it should return quickly (send to a channel, update a gauge).
    #[must_use]
    pub fn with_progress(
        mut self,
        callback: impl Fn(FetchProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = ProgressReporter {
            callback: Some(Arc::new(callback)),
            last_frequent: Arc::default(),
        };
        self
    }

    /// The progress callback, if one was set.
    pub(crate) fn progress(&self) -> &ProgressReporter {
        &self.progress
    }

    /// The revision seen by the previous fetch: when the source still has it, the fetch answers
    /// [`FetchOutcome::Unchanged`] without downloading the content.
    #[must_use]
    pub fn with_last_revision(mut self, revision: Revision) -> Self {
        self.last_revision = Some(revision);
        self
    }

    /// The artifact of the previous fetch, still on disk: a new artifact takes over its files
    /// whose content and mode did not change (hard links, or copies where linking fails) and
    /// writes only the others. The previous artifact is never modified (a new artifact never
    /// writes into a file it shares), and a file of it that was changed or replaced since it was
    /// written is not reused. Its revision also becomes the
    /// [`last_revision`](Self::with_last_revision) unless one was set.
    ///
    /// ```no_run
    /// use gitops_source::{FetchOutcome, FetchRequest, LocalDirectorySource, Source};
    /// # async fn run() -> Result<(), gitops_source::SourceError> {
    /// let source = LocalDirectorySource::new("./deploy");
    /// let FetchOutcome::Fetched(first) = source.fetch(FetchRequest::new("/tmp/a/1")).await? else {
    ///     return Ok(());
    /// };
    /// if let FetchOutcome::Fetched(next) =
    ///     source.fetch(FetchRequest::new("/tmp/a/2").with_previous(first.clone())).await?
    /// {
    ///     println!("{} of {} files reused", next.reused_files(), next.file_count());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_previous(mut self, previous: Artifact) -> Self {
        if self.last_revision.is_none() {
            self.last_revision = Some(previous.revision().clone());
        }
        self.previous = Some(previous);
        self
    }

    /// A retired artifact to update in place into the new one ([`Recycle`]): its files whose
    /// (mode, blob) are those of the new revision and whose inode is unchanged since written are
    /// kept, the others removed, and the new ones hard-linked from the
    /// [`previous`](Self::with_previous) artifact or written. The tree is renamed out of its
    /// place first and renamed to the destination when complete, so a reader never sees it
    /// half-made; the previous artifact is never touched. When recycling fails, the retired tree
    /// is removed and the artifact is written as without it.
    ///
    /// ```no_run
    /// use gitops_source::{FetchOutcome, FetchRequest, LocalDirectorySource, Recycle, Source};
    /// # async fn run(current: gitops_source::Artifact, retired: gitops_source::Artifact) -> Result<(), gitops_source::SourceError> {
    /// let source = LocalDirectorySource::new("./deploy");
    /// let mut request = FetchRequest::new("/tmp/a/3").with_previous(current);
    /// let recycle = Recycle::new(retired).ok();
    /// if let Some(recycle) = &recycle {
    ///     request = request.with_recycle(recycle.clone());
    /// }
    /// let outcome = source.fetch(request).await?;
    /// // Not used (unchanged revision): still there, untouched.
    /// let _retired = recycle.and_then(|recycle| recycle.take_back());
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_recycle(mut self, recycle: Recycle) -> Self {
        self.recycle = Some(recycle);
        self
    }

    /// The retired artifact to update in place, if given.
    #[must_use]
    pub fn recycle(&self) -> Option<&Recycle> {
        self.recycle.as_ref()
    }

    /// Write only part of the selected files ([`Sparse`]): a path and what its files reference.
    #[must_use]
    pub fn with_sparse(mut self, sparse: Sparse) -> Self {
        self.sparse = Some(sparse);
        self
    }

    /// The artifact of the previous fetch, if given.
    #[must_use]
    pub fn previous(&self) -> Option<&Artifact> {
        self.previous.as_ref()
    }

    /// What part of the selected files is written, if only a part.
    #[must_use]
    pub fn sparse(&self) -> Option<&Sparse> {
        self.sparse.as_ref()
    }

    /// A token that aborts the fetch with [`SourceError::Cancelled`] when cancelled.
    #[must_use]
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancellation = token;
        self
    }

    /// The directory a new artifact is written to.
    #[must_use]
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// The revision seen last, if any.
    #[must_use]
    pub fn last_revision(&self) -> Option<&Revision> {
        self.last_revision.as_ref()
    }

    /// The cancellation token of this fetch.
    #[must_use]
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancellation
    }
}

/// Finds the paths a file of an artifact needs besides itself, for [`Sparse`]: a renderer
/// knows that a `kustomization.yaml` names its resources, bases and patches; this crate does not.
///
/// ```
/// use gitops_source::References;
///
/// /// Every line `- <path>` of a kustomization.yaml is a reference.
/// struct Kustomizations;
///
/// impl References for Kustomizations {
///     fn reads(&self, path: &str) -> bool {
///         path.rsplit('/').next() == Some("kustomization.yaml")
///     }
///     fn references(&self, _path: &str, content: &[u8]) -> Vec<String> {
///         String::from_utf8_lossy(content)
///             .lines()
///             .filter_map(|line| line.trim().strip_prefix("- "))
///             .map(str::to_owned)
///             .collect()
///     }
/// }
/// assert_eq!(Kustomizations.references("a/kustomization.yaml", b"resources:\n- ../base\n"), ["../base"]);
/// ```
pub trait References: Send + Sync {
    /// Whether the file at `path` (relative to the artifact's root) may reference others: only
    /// then is its content read and passed to [`references`](Self::references).
    fn reads(&self, path: &str) -> bool;

    /// The paths (files or directories) the file at `path` references, each relative to the
    /// directory holding the file (`../base`, `patch.yaml`). A path that leaves the artifact's
    /// root, is absolute or does not exist is ignored; what it names is included with everything
    /// below it, and its own files are asked in turn.
    fn references(&self, path: &str, content: &[u8]) -> Vec<String>;
}

/// Which part of the selected files a fetch writes: the files below some paths (relative to the
/// artifact's root, which is the source's subpath), and, transitively, the paths their files
/// reference ([`References`]). A small folder of a large repository then costs little to write;
/// the revision is still the whole commit's, and the artifact's digest is that of the files
/// written. A path that is absolute, leaves the root or holds a control character is refused,
/// by the Git and the local-directory source alike, with [`SourceError::Select`] holding
/// [`SelectError::InvalidSubpath`](crate::SelectError::InvalidSubpath) naming the path
/// (escaped): `subpath "../etc" must be relative and stay inside the source`.
///
/// ```
/// use gitops_source::{FetchRequest, Sparse};
/// let request = FetchRequest::new("/tmp/out").with_sparse(Sparse::new(["apps/prod"]));
/// assert_eq!(request.sparse().unwrap().paths(), ["apps/prod"]);
/// ```
#[derive(Clone)]
pub struct Sparse {
    paths: Vec<String>,
    references: Option<Arc<dyn References>>,
}

impl Sparse {
    /// Only the files below `paths` (and files named exactly so); `""` or `.` is the whole root.
    #[must_use]
    pub fn new(paths: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
            references: None,
        }
    }

    /// Also the paths that `references` finds in the files included.
    #[must_use]
    pub fn with_references(mut self, references: impl References + 'static) -> Self {
        self.references = Some(Arc::new(references));
        self
    }

    /// The paths asked for.
    #[must_use]
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// Whether a reference finder was given ([`with_references`](Self::with_references)).
    ///
    /// ```
    /// assert!(!gitops_source::Sparse::new(["apps/prod"]).has_references());
    /// ```
    #[must_use]
    pub fn has_references(&self) -> bool {
        self.references.is_some()
    }

    /// The reference finder, if any.
    pub(crate) fn references(&self) -> Option<&dyn References> {
        self.references.as_deref()
    }

    /// Refuses a path that is absolute, leaves the root or holds a control character: every
    /// source checks this when a fetch starts, before it looks at the revision, so that an
    /// unchanged revision does not hide a bad request.
    pub(crate) fn check_paths(&self) -> Result<(), crate::SelectError> {
        match self
            .paths
            .iter()
            .find(|path| crate::select::resolve_relative("", path).is_none())
        {
            Some(path) => Err(crate::SelectError::InvalidSubpath {
                subpath: path.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Sparse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sparse")
            .field("paths", &self.paths)
            .field(
                "references",
                &self.references.as_ref().map(|_| "<references>"),
            )
            .finish()
    }
}

/// The answer of [`Source::fetch`].
#[derive(Debug)]
pub enum FetchOutcome {
    /// The source still has the revision seen last; nothing was downloaded or written.
    Unchanged(Revision),
    /// A new revision, written to the request's destination.
    Fetched(Artifact),
}

impl FetchOutcome {
    /// The revision the source has now.
    #[must_use]
    pub fn revision(&self) -> &Revision {
        match self {
            FetchOutcome::Unchanged(revision) => revision,
            FetchOutcome::Fetched(artifact) => artifact.revision(),
        }
    }
}

/// A place configuration comes from: a Git repository, a local directory, later an OCI registry or
/// a bucket.
///
/// Implementations must not download content when the revision is unchanged, must write new
/// artifacts only into the request's destination, and must honour the request's cancellation.
#[async_trait]
pub trait Source: Send + Sync {
    /// A short description of where the content comes from, for logs (never with credentials).
    fn location(&self) -> String;

    /// Fetch the current revision, or answer that the revision seen last is still current.
    async fn fetch(&self, request: FetchRequest) -> Result<FetchOutcome, SourceError>;
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The host could not be reached (name resolution, refused connection, network down).
    #[error("cannot reach {location}: check the URL, the host name and that the server is running")]
    UnreachableHost {
        /// The location, without credentials.
        location: String,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// The server refused the credentials, or asked for credentials none of which were configured.
    #[error("{location} refused authentication: check the credentials ({detail})")]
    AuthenticationRefused {
        /// The location, without credentials.
        location: String,
        /// What was tried, without secrets.
        detail: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The SSH server's host key is not in the configured known hosts.
    #[error(
        "the host key of {location} does not match the configured known_hosts: add the server's key to known_hosts"
    )]
    HostKeyRejected {
        /// The location, without credentials.
        location: String,
    },
    /// The requested branch, tag, ref or commit does not exist in the repository.
    #[error("{reference} does not exist in {location}")]
    UnknownReference {
        /// The reference as requested.
        reference: String,
        /// The location, without credentials.
        location: String,
    },
    /// No tag matches the semver range.
    #[error(
        "no tag of {location} matches the semver range {range:?} ({tags_seen} tags seen, {semver_tags} of them semver versions)"
    )]
    NoMatchingTag {
        /// The range as requested.
        range: String,
        /// The location, without credentials.
        location: String,
        /// How many tags the remote listed.
        tags_seen: usize,
        /// How many of them parsed as semver versions.
        semver_tags: usize,
    },
    /// The local cache was damaged or belonged to something else, and rebuilding it failed too.
    #[error(
        "the cache at {} is corrupt and could not be rebuilt: {reason}",
        gitops_core::escape::EscapedPath(path)
    )]
    CorruptCache {
        /// The cache directory.
        path: PathBuf,
        /// What was found wrong.
        reason: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A step took longer than the configured timeout.
    #[error("{operation} of {location} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The location, without credentials.
        location: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The fetch was cancelled by its caller.
    #[error("fetching {location} was cancelled")]
    Cancelled {
        /// The location, without credentials.
        location: String,
    },
    /// Credentials would be sent over an unencrypted connection.
    #[error(
        "refusing to send credentials to {location} over plain http: use https, or opt in to insecure http"
    )]
    InsecureCredentials {
        /// The location, without credentials.
        location: String,
    },
    /// The server redirected to another origin (scheme, host or port) than the one the
    /// credentials were configured for. The credentials were not sent there, and the redirect
    /// is refused: if the repository moved, configure its new URL.
    #[error(
        "{location} redirected to another origin, {target}: the credentials are only sent to the origin they were given for, so the redirect was refused (configure the new URL if the repository moved)"
    )]
    CrossOriginRedirect {
        /// The location, without credentials.
        location: String,
        /// The origin the redirect led to.
        target: String,
    },
    /// The source is configured wrongly.
    #[error("invalid source configuration: {message}")]
    InvalidConfiguration {
        /// What is wrong and where.
        message: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The destination directory is not usable.
    #[error(
        "destination {} must be an absent or empty directory",
        gitops_core::escape::EscapedPath(path)
    )]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// Selecting files failed (subpath, ignore files, reading).
    #[error(transparent)]
    Select(#[from] SelectError),
    /// Writing the artifact failed.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// Another Git failure.
    #[error("{operation} of {location} failed")]
    Git {
        /// What was being done.
        operation: &'static str,
        /// The location, without credentials.
        location: String,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// A failure of another kind of source.
    #[error("{location}: {message}")]
    Other {
        /// The location, without credentials.
        location: String,
        /// What failed.
        message: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<BoxError>,
    },
}

/// A boxed error, for sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Make sure `destination` is an absent or empty directory, and create it.
pub(crate) fn prepare_destination(destination: &Path) -> Result<(), SourceError> {
    match std::fs::read_dir(destination) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SourceError::DestinationNotEmpty {
                    path: destination.to_owned(),
                });
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(destination).map_err(|source| {
                ArtifactError::Io {
                    path: destination.to_owned(),
                    source,
                }
                .into()
            })
        }
        Err(_) => Err(SourceError::DestinationNotEmpty {
            path: destination.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_formats_and_parses_sha1() {
        let hash = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            Revision::git("v1.2.3", hash).as_str(),
            format!("v1.2.3@sha1:{hash}")
        );
        assert_eq!(Revision::git("", hash).as_str(), format!("sha1:{hash}"));
        assert_eq!(Revision::git("", hash).sha1(), Some(hash));
        assert_eq!(Revision::from_string("sha256:abcd").sha1(), None);
        assert_eq!(Revision::from_string("main@sha1:abc").sha1(), None);
    }

    #[test]
    fn destination_must_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        prepare_destination(&dir.path().join("new")).unwrap();
        assert!(dir.path().join("new").is_dir());
        std::fs::write(dir.path().join("new/file"), "x").unwrap();
        assert!(matches!(
            prepare_destination(&dir.path().join("new")),
            Err(SourceError::DestinationNotEmpty { .. })
        ));
    }
}
