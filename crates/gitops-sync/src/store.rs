//! [`ArtifactStore`]: fetches through any [`Source`], keeps what it fetched, and hands back the
//! artifact it already has when the revision did not change.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use gitops_core::escape::{Escaped, EscapedPath};
use gitops_source::{
    Artifact, FetchOutcome, FetchRequest, ProgressCallback, Recycle, Revision, Source, SourceError,
    Sparse,
};
use tokio_util::sync::CancellationToken;

/// Why the store could not hand back an artifact.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The source failed.
    #[error("fetching from {}", Escaped(.location))]
    Fetch {
        /// The source's location (never with credentials).
        location: String,
        /// The source's error.
        #[source]
        source: Box<SourceError>,
    },
    /// The store's directory could not be prepared.
    #[error("preparing the artifact directory {}", EscapedPath(path))]
    Io {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The source answered "unchanged" for a revision the store does not hold.
    #[error(
        "{} answered that {} is unchanged, but the store holds {}: the source does not honour FetchRequest::last_revision",
        Escaped(.location),
        Escaped(.revision.as_str()),
        Escaped(.held)
    )]
    UnexpectedUnchanged {
        /// The source's location.
        location: String,
        /// The revision the source named.
        revision: Revision,
        /// The revision the store holds (`nothing` when empty).
        held: String,
    },
}

impl StoreError {
    /// The source's error, when the source failed.
    ///
    /// ```
    /// use gitops_source::SourceError;
    /// use gitops_sync::StoreError;
    /// let error = StoreError::Fetch {
    ///     location: "file:///repo".into(),
    ///     source: Box::new(SourceError::Cancelled { location: "file:///repo".into() }),
    /// };
    /// assert!(matches!(error.source_error(), Some(SourceError::Cancelled { .. })));
    /// ```
    #[must_use]
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            Self::Fetch { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How much an [`ArtifactStore`] keeps. The artifact in use (the newest) is always kept; older
/// ones are removed, oldest first, while more than `max_artifacts` are kept or they take more
/// than `max_bytes` together.
///
/// ```
/// use gitops_sync::StoreLimits;
/// let limits = StoreLimits::default().max_artifacts(3).max_bytes(64 << 20);
/// assert_eq!(limits.artifacts(), 3);
/// assert_eq!(limits.bytes(), Some(64 << 20));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct StoreLimits {
    artifacts: usize,
    bytes: Option<u64>,
}

impl Default for StoreLimits {
    /// Two artifacts (the one in use and the one before it), no byte limit.
    fn default() -> Self {
        Self {
            artifacts: 2,
            bytes: None,
        }
    }
}

impl StoreLimits {
    /// Keep at most `count` artifacts (at least 1: the one in use).
    pub fn max_artifacts(mut self, count: usize) -> Self {
        self.artifacts = count.max(1);
        self
    }

    /// Keep at most `bytes` of artifact files together (the one in use is kept even when it
    /// alone is larger).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// The most artifacts kept.
    #[must_use]
    pub fn artifacts(&self) -> usize {
        self.artifacts
    }

    /// The most bytes kept, if limited.
    #[must_use]
    pub fn bytes(&self) -> Option<u64> {
        self.bytes
    }
}

/// The answer of [`ArtifactStore::fetch`]: the artifact of the source's current revision, and
/// whether it is new.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The artifact of the current revision.
    pub artifact: Artifact,
    /// Whether it was fetched now (`false`: the revision is unchanged and this is the artifact
    /// the store already had).
    pub changed: bool,
}

/// One kept artifact and the directory the store made for it.
#[derive(Debug)]
struct Kept {
    artifact: Artifact,
    dir: PathBuf,
    /// What part of the files it holds (`None`: all of them).
    sparse: Option<SparseKey>,
}

/// What makes two [`Sparse`] selections of one revision the same artifact: their paths, and
/// whether references are followed.
type SparseKey = (Vec<String>, bool);

fn sparse_key(sparse: Option<&Sparse>) -> Option<SparseKey> {
    sparse.map(|sparse| (sparse.paths().to_vec(), sparse.has_references()))
}

/// Where the store's directory is.
#[derive(Debug)]
enum StoreDir {
    Temporary(tempfile::TempDir),
    Given(PathBuf),
}

impl StoreDir {
    fn path(&self) -> &Path {
        match self {
            Self::Temporary(dir) => dir.path(),
            Self::Given(path) => path,
        }
    }
}

/// Fetches through any [`Source`] into numbered directories of its own, and keeps what it
/// fetched: an unchanged revision hands back the artifact it already has (the source downloads
/// nothing), older artifacts are removed within [`StoreLimits`], and the newest (the one in use)
/// is never removed.
///
/// A new revision reuses the files of the one in use (hard links), and when the store keeps an
/// older artifact that no one else holds (every [`Fetched`] handed out for it was dropped), that
/// retired tree is updated in place into the new artifact ([`Recycle`]): only the files that
/// changed are written, and it is renamed into place when complete.
///
/// ```
/// use gitops_source::LocalDirectorySource;
/// use gitops_sync::{ArtifactStore, StoreLimits};
/// use tokio_util::sync::CancellationToken;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let repo = tempfile::tempdir()?;
/// std::fs::write(repo.path().join("cm.yaml"), "kind: ConfigMap\n")?;
/// let source = LocalDirectorySource::new(repo.path());
/// let mut store = ArtifactStore::temporary()?.with_limits(StoreLimits::default().max_artifacts(1));
/// let cancel = CancellationToken::new();
/// let first = store.fetch(&source, &cancel, None).await?;
/// assert!(first.changed);
/// let again = store.fetch(&source, &cancel, None).await?;
/// assert!(!again.changed);
/// assert_eq!(again.artifact.root(), first.artifact.root());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ArtifactStore {
    dir: StoreDir,
    limits: StoreLimits,
    next: u64,
    /// Newest first: the first is the one in use.
    kept: VecDeque<Kept>,
}

impl ArtifactStore {
    /// A store in `dir`, a directory it owns: what an earlier run left there is removed.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = gitops_sync::ArtifactStore::new(dir.path().join("artifacts"))?;
    /// assert!(store.current().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory cannot be emptied or made.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Io { path: dir, source }),
        }
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self::with_dir(StoreDir::Given(dir)))
    }

    /// A store in a temporary directory, removed when the store is dropped.
    ///
    /// ```
    /// let store = gitops_sync::ArtifactStore::temporary()?;
    /// assert!(store.dir().is_dir());
    /// # Ok::<(), gitops_sync::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory cannot be made.
    pub fn temporary() -> Result<Self, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix("gitops-sync-")
            .tempdir()
            .map_err(|source| StoreError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        Ok(Self::with_dir(StoreDir::Temporary(dir)))
    }

    fn with_dir(dir: StoreDir) -> Self {
        Self {
            dir,
            limits: StoreLimits::default(),
            next: 0,
            kept: VecDeque::new(),
        }
    }

    /// These limits (default [`StoreLimits::default`]).
    ///
    /// ```
    /// use gitops_sync::{ArtifactStore, StoreLimits};
    /// let store = ArtifactStore::temporary()?.with_limits(StoreLimits::default().max_artifacts(5));
    /// assert_eq!(store.limits().artifacts(), 5);
    /// # Ok::<(), gitops_sync::StoreError>(())
    /// ```
    #[must_use]
    pub fn with_limits(mut self, limits: StoreLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits.
    ///
    /// ```
    /// let store = gitops_sync::ArtifactStore::temporary()?;
    /// assert_eq!(store.limits().artifacts(), 2);
    /// # Ok::<(), gitops_sync::StoreError>(())
    /// ```
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// The directory the artifacts are written to.
    ///
    /// ```
    /// let store = gitops_sync::ArtifactStore::temporary()?;
    /// assert!(store.dir().is_absolute());
    /// # Ok::<(), gitops_sync::StoreError>(())
    /// ```
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The artifact in use (the newest), if any.
    ///
    /// ```
    /// assert!(gitops_sync::ArtifactStore::temporary()?.current().is_none());
    /// # Ok::<(), gitops_sync::StoreError>(())
    /// ```
    #[must_use]
    pub fn current(&self) -> Option<&Artifact> {
        self.kept.front().map(|kept| &kept.artifact)
    }

    /// The artifacts kept, newest (in use) first.
    ///
    /// ```
    /// assert_eq!(gitops_sync::ArtifactStore::temporary()?.artifacts().count(), 0);
    /// # Ok::<(), gitops_sync::StoreError>(())
    /// ```
    pub fn artifacts(&self) -> impl Iterator<Item = &Artifact> {
        self.kept.iter().map(|kept| &kept.artifact)
    }

    /// Fetches the source's current revision: when it is the revision of the artifact in use,
    /// that artifact comes back (`changed: false`, nothing downloaded); otherwise the new one is
    /// written to a directory of its own, becomes the one in use, and older ones beyond the
    /// limits are removed. `progress` receives the source's steps.
    ///
    /// # Errors
    /// [`StoreError::Fetch`] when the source fails (what it started writing is removed; the
    /// artifact in use stays); [`StoreError::UnexpectedUnchanged`] when a source answers
    /// "unchanged" for another revision than the one in use.
    pub async fn fetch(
        &mut self,
        source: &dyn Source,
        cancel: &CancellationToken,
        progress: Option<ProgressCallback>,
    ) -> Result<Fetched, StoreError> {
        self.fetch_sparse(source, None, cancel, progress).await
    }

    /// [`fetch`](Self::fetch), writing only part of the files when `sparse` says so
    /// ([`Sparse`]: a path and what its files reference). The artifact in use comes back for an
    /// unchanged revision only when it was fetched with the same paths and the same choice of
    /// following references: a sparse artifact never stands in for a whole one, nor for
    /// another part.
    ///
    /// ```
    /// use gitops_source::{LocalDirectorySource, Sparse};
    /// use gitops_sync::ArtifactStore;
    /// use tokio_util::sync::CancellationToken;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let repo = tempfile::tempdir()?;
    /// std::fs::create_dir_all(repo.path().join("apps/prod"))?;
    /// std::fs::create_dir_all(repo.path().join("docs"))?;
    /// std::fs::write(repo.path().join("apps/prod/cm.yaml"), "kind: ConfigMap\n")?;
    /// std::fs::write(repo.path().join("docs/big.yaml"), "kind: ConfigMap\n")?;
    /// let source = LocalDirectorySource::new(repo.path());
    /// let mut store = ArtifactStore::temporary()?;
    /// let cancel = CancellationToken::new();
    /// let sparse = Sparse::new(["apps/prod"]);
    /// let part = store.fetch_sparse(&source, Some(&sparse), &cancel, None).await?;
    /// assert!(part.artifact.root().join("apps/prod/cm.yaml").is_file());
    /// assert!(!part.artifact.root().join("docs").exists());
    /// // The same revision, whole: not the sparse artifact.
    /// let whole = store.fetch(&source, &cancel, None).await?;
    /// assert!(whole.changed);
    /// assert!(whole.artifact.root().join("docs/big.yaml").is_file());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch); a sparse path that leaves the root fails the fetch (the
    /// source's error names it).
    pub async fn fetch_sparse(
        &mut self,
        source: &dyn Source,
        sparse: Option<&Sparse>,
        cancel: &CancellationToken,
        progress: Option<ProgressCallback>,
    ) -> Result<Fetched, StoreError> {
        self.next += 1;
        let destination = self.dir.path().join(self.next.to_string());
        let mut request = FetchRequest::new(&destination).with_cancellation(cancel.clone());
        let key = sparse_key(sparse);
        if let Some(current) = self.kept.front()
            && current.sparse == key
        {
            // Its unchanged files are reused (hard links) instead of written again.
            request = request.with_previous(current.artifact.clone());
        }
        if let Some(sparse) = sparse {
            request = request.with_sparse(sparse.clone());
        }
        let recycling = self.retire_oldest();
        if let Some((recycle, _, _)) = &recycling {
            request = request.with_recycle(recycle.clone());
        }
        if let Some(progress) = progress {
            request = request.with_progress(move |step| progress(step));
        }
        let result = source.fetch(request).await;
        if let Some((recycle, dir, sparse)) = recycling {
            match recycle.take_back() {
                // Not used (unchanged revision, or a failure before writing): kept as it was.
                Some(artifact) => self.kept.push_back(Kept {
                    artifact,
                    dir,
                    sparse,
                }),
                // Renamed into the new artifact, or removed when that failed.
                None => remove_quietly(&dir),
            }
        }
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => {
                remove_quietly(&destination);
                return Err(StoreError::Fetch {
                    location: source.location(),
                    source: Box::new(error),
                });
            }
        };
        match outcome {
            FetchOutcome::Unchanged(revision) => match self.kept.front() {
                Some(kept) if kept.artifact.revision() == &revision && kept.sparse == key => {
                    Ok(Fetched {
                        artifact: kept.artifact.clone(),
                        changed: false,
                    })
                }
                other => Err(StoreError::UnexpectedUnchanged {
                    location: source.location(),
                    revision,
                    held: other.map_or_else(
                        || "nothing".to_owned(),
                        |kept| kept.artifact.revision().to_string(),
                    ),
                }),
            },
            FetchOutcome::Fetched(artifact) => {
                self.kept.push_front(Kept {
                    artifact: artifact.clone(),
                    dir: destination,
                    sparse: key,
                });
                self.evict();
                Ok(Fetched {
                    artifact,
                    changed: true,
                })
            }
        }
    }

    /// The oldest kept artifact other than the one in use, given up for the next fetch to update
    /// in place ([`Recycle`]), with its directory; `None` when the store keeps only the one in
    /// use, or when someone still holds a handle to the oldest (it may be reading it: the fetch
    /// then writes a new tree with links from the one in use, and the oldest is evicted as
    /// usual).
    fn retire_oldest(&mut self) -> Option<(Recycle, PathBuf, Option<SparseKey>)> {
        if self.kept.len() < 2 {
            return None;
        }
        let oldest = self.kept.pop_back()?;
        match Recycle::new(oldest.artifact) {
            Ok(recycle) => Some((recycle, oldest.dir, oldest.sparse)),
            Err(artifact) => {
                self.kept.push_back(Kept {
                    artifact,
                    dir: oldest.dir,
                    sparse: oldest.sparse,
                });
                None
            }
        }
    }

    /// Removes the oldest artifacts beyond the limits, never the one in use.
    fn evict(&mut self) {
        let bytes =
            |kept: &VecDeque<Kept>| -> u64 { kept.iter().map(|k| k.artifact.total_bytes()).sum() };
        while self.kept.len() > 1
            && (self.kept.len() > self.limits.artifacts
                || self.limits.bytes.is_some_and(|max| bytes(&self.kept) > max))
        {
            if let Some(old) = self.kept.pop_back() {
                tracing::debug!(revision = %Escaped(old.artifact.revision().as_str()), dir = %EscapedPath(&old.dir), "removing an old artifact");
                remove_quietly(&old.dir);
            }
        }
    }
}

fn remove_quietly(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %EscapedPath(dir), %error, "removing an artifact");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitops_source::LocalDirectorySource;

    async fn fetch(store: &mut ArtifactStore, source: &LocalDirectorySource) -> Fetched {
        store
            .fetch(source, &CancellationToken::new(), None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn unchanged_hands_back_the_artifact_and_old_ones_are_removed() {
        let repo = tempfile::tempdir().unwrap();
        let file = repo.path().join("a.yaml");
        std::fs::write(&file, "one").unwrap();
        let source = LocalDirectorySource::new(repo.path());
        let mut store = ArtifactStore::temporary()
            .unwrap()
            .with_limits(StoreLimits::default().max_artifacts(2));

        let first = fetch(&mut store, &source).await;
        assert!(first.changed);
        let again = fetch(&mut store, &source).await;
        assert!(!again.changed);
        assert_eq!(again.artifact.revision(), first.artifact.revision());
        assert!(again.artifact.root().join("a.yaml").is_file());

        std::fs::write(&file, "two").unwrap();
        let second = fetch(&mut store, &source).await;
        assert!(second.changed);
        assert_eq!(store.artifacts().count(), 2);
        std::fs::write(&file, "three").unwrap();
        let third = fetch(&mut store, &source).await;
        assert_eq!(store.artifacts().count(), 2);
        assert!(!first.artifact.root().exists(), "the oldest is removed");
        assert!(second.artifact.root().exists());
        assert_eq!(
            store.current().unwrap().revision(),
            third.artifact.revision()
        );
    }

    #[cfg(unix)]
    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_retired_artifact_is_updated_in_place_unless_someone_holds_it() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("a.yaml"), "one").unwrap();
        std::fs::write(repo.path().join("b.yaml"), "b").unwrap();
        let source = LocalDirectorySource::new(repo.path());
        let mut store = ArtifactStore::temporary().unwrap();
        let first_root = fetch(&mut store, &source).await.artifact.root().to_owned();
        let first_dir = inode(&first_root);
        std::fs::write(repo.path().join("a.yaml"), "two").unwrap();
        let second = fetch(&mut store, &source).await.artifact;
        // Unchanged: the retired artifact is handed back to the store untouched.
        assert!(!fetch(&mut store, &source).await.changed);
        assert_eq!(store.artifacts().count(), 2);
        assert_eq!(inode(&first_root), first_dir);

        std::fs::write(repo.path().join("a.yaml"), "three").unwrap();
        let third = fetch(&mut store, &source).await.artifact;
        assert_eq!(
            inode(third.root()),
            first_dir,
            "the retired tree became the new one"
        );
        assert!(!first_root.exists());
        assert_eq!(
            std::fs::read_to_string(third.root().join("a.yaml")).unwrap(),
            "three"
        );
        third.verify().unwrap();
        second.verify().unwrap();
        assert_eq!(store.artifacts().count(), 2);

        // `second` is still held here: the next fetch writes a new tree and evicts it.
        let second_dir = inode(second.root());
        std::fs::write(repo.path().join("a.yaml"), "four").unwrap();
        let fourth = fetch(&mut store, &source).await.artifact;
        assert_ne!(inode(fourth.root()), second_dir);
        assert!(!second.root().exists());
        fourth.verify().unwrap();
        third.verify().unwrap();
        assert_eq!(store.artifacts().count(), 2);
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 2);
    }

    #[tokio::test]
    async fn the_artifact_in_use_is_kept_past_the_byte_limit() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("a.yaml"), "x".repeat(100)).unwrap();
        let source = LocalDirectorySource::new(repo.path());
        let mut store = ArtifactStore::temporary()
            .unwrap()
            .with_limits(StoreLimits::default().max_artifacts(10).max_bytes(10));
        let first = fetch(&mut store, &source).await;
        assert!(first.artifact.root().join("a.yaml").is_file());
        std::fs::write(repo.path().join("a.yaml"), "y".repeat(100)).unwrap();
        let second = fetch(&mut store, &source).await;
        assert_eq!(store.artifacts().count(), 1);
        assert!(!first.artifact.root().exists());
        assert!(second.artifact.root().join("a.yaml").is_file());
    }

    #[tokio::test]
    async fn a_failed_fetch_leaves_the_artifact_in_use() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("a.yaml"), "one").unwrap();
        let mut store = ArtifactStore::temporary().unwrap();
        let first = fetch(&mut store, &LocalDirectorySource::new(repo.path())).await;
        let missing = LocalDirectorySource::new(repo.path().join("missing"));
        let error = store
            .fetch(&missing, &CancellationToken::new(), None)
            .await
            .unwrap_err();
        assert!(error.source_error().is_some(), "{error}");
        assert_eq!(
            store.current().unwrap().revision(),
            first.artifact.revision()
        );
        assert!(first.artifact.root().join("a.yaml").is_file());
        // Nothing but the artifact in use is left in the store's directory.
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_sparse_artifact_never_stands_in_for_another_selection() {
        let repo = tempfile::tempdir().unwrap();
        for dir in ["apps/prod", "apps/dev", "docs"] {
            std::fs::create_dir_all(repo.path().join(dir)).unwrap();
            std::fs::write(repo.path().join(dir).join("a.yaml"), dir).unwrap();
        }
        let source = LocalDirectorySource::new(repo.path());
        let mut store = ArtifactStore::temporary()
            .unwrap()
            .with_limits(StoreLimits::default().max_artifacts(10));
        let cancel = CancellationToken::new();
        let prod = Sparse::new(["apps/prod"]);
        let mut fetch = async |sparse: Option<&Sparse>| {
            store
                .fetch_sparse(&source, sparse, &cancel, None)
                .await
                .unwrap()
        };
        let part = fetch(Some(&prod)).await;
        assert!(part.changed);
        assert!(part.artifact.root().join("apps/prod/a.yaml").is_file());
        assert!(!part.artifact.root().join("docs").exists());
        // The same selection of the same revision: the artifact in use.
        let again = fetch(Some(&prod)).await;
        assert!(!again.changed);
        assert_eq!(again.artifact.root(), part.artifact.root());
        // Whole, another path, or with references: each a new artifact of its own.
        let whole = fetch(None).await;
        assert!(whole.changed);
        assert!(whole.artifact.root().join("docs/a.yaml").is_file());
        assert!(!fetch(None).await.changed);
        let dev = fetch(Some(&Sparse::new(["apps/dev"]))).await;
        assert!(dev.changed);
        assert!(dev.artifact.root().join("apps/dev/a.yaml").is_file());
        assert!(!dev.artifact.root().join("apps/prod").exists());
        let referencing = fetch(Some(
            &Sparse::new(["apps/dev"]).with_references(crate::RenderReferences),
        ))
        .await;
        assert!(referencing.changed);
        // A path that leaves the root fails the fetch, naming it; the artifact in use stays.
        let error = store
            .fetch_sparse(&source, Some(&Sparse::new(["../x"])), &cancel, None)
            .await
            .unwrap_err();
        let chain = format!("{:?}", error.source_error());
        assert!(chain.contains("../x"), "{chain}");
        assert_eq!(
            store.current().unwrap().revision(),
            referencing.artifact.revision()
        );
    }

    #[test]
    fn a_given_directory_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        std::fs::create_dir_all(path.join("7")).unwrap();
        let store = ArtifactStore::new(&path).unwrap();
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    }
}
