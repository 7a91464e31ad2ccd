//! A [`Source`] reading a directory on disk, for development and tests.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use gitops_core::escape::{Escaped, EscapedPath};

use crate::artifact::{Artifact, Digest, Planned, hash_file, write_artifact};
use crate::select::{
    DiskTree, IgnoreRules, SelectError, SelectedFile, select, select_sparse, warn_skipped,
};
use crate::source::{
    FetchOutcome, FetchProgress, FetchRequest, Revision, Source, SourceError, prepare_destination,
};

/// A directory on disk as a [`Source`]. Its revision is the content digest of the selected files
/// (`sha256:<hex>`), so an unchanged directory answers [`FetchOutcome::Unchanged`] without copying.
///
/// ```no_run
/// use gitops_source::{FetchRequest, IgnoreRules, LocalDirectorySource, Source};
///
/// # async fn run() -> Result<(), gitops_source::SourceError> {
/// let source = LocalDirectorySource::new("./config")
///     .with_subpath("clusters/dev")
///     .with_ignore_rules(IgnoreRules::default().with_pattern("*.md"));
/// let outcome = source.fetch(FetchRequest::new("/tmp/out")).await?;
/// println!("{}", outcome.revision());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LocalDirectorySource {
    root: PathBuf,
    subpath: String,
    rules: IgnoreRules,
}

impl LocalDirectorySource {
    /// A source reading `root`.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            subpath: String::new(),
            rules: IgnoreRules::default(),
        }
    }

    /// Only the files below `subpath` (relative to the root) go into the artifact.
    #[must_use]
    pub fn with_subpath(mut self, subpath: impl Into<String>) -> Self {
        self.subpath = subpath.into();
        self
    }

    /// The rules that leave files out of the artifact.
    #[must_use]
    pub fn with_ignore_rules(mut self, rules: IgnoreRules) -> Self {
        self.rules = rules;
        self
    }

    /// The directory read.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn fetch_blocking(&self, request: &FetchRequest) -> Result<FetchOutcome, SourceError> {
        let tree = DiskTree {
            root: self.root.clone(),
        };
        if !self.root.is_dir() {
            return Err(SourceError::InvalidConfiguration {
                message: format!("{} is not a directory", EscapedPath(&self.root)),
                source: None,
            });
        }
        // A sparse path that leaves the root is refused when the fetch starts, before the
        // directory is scanned, with the error the Git source gives (`select_sparse`'s).
        if let Some(sparse) = request.sparse() {
            sparse.check_paths()?;
        }
        let progress = request.progress();
        progress.report(FetchProgress::ScanningDirectory);
        let selection = select(&tree, &self.subpath, &self.rules)?;
        let hashes = hash_selection(&selection.files)?;
        let digest = Digest::of_files(
            selection
                .files
                .iter()
                .zip(&hashes)
                .map(|(file, sha256)| (file.path.as_str(), file.executable, *sha256)),
        );
        let revision = Revision::from_string(digest.to_string());
        if request.last_revision() == Some(&revision) {
            progress.report(FetchProgress::Unchanged {
                revision: revision.clone(),
            });
            return Ok(FetchOutcome::Unchanged(revision));
        }
        if request.cancellation().is_cancelled() {
            return Err(SourceError::Cancelled {
                location: self.location(),
            });
        }
        let planned: Vec<Planned<PathBuf>> = selection
            .files
            .into_iter()
            .zip(hashes)
            .map(|(file, sha256)| Planned {
                file,
                blob: None,
                sha256: Some(sha256),
            })
            .collect();
        let planned = match request.sparse() {
            Some(sparse) => self.keep_sparse(&tree, sparse, planned)?,
            None => planned,
        };
        prepare_destination(request.destination())?;
        let total = planned.len();
        let written = write_artifact(
            &tree,
            planned,
            request.destination(),
            request.previous(),
            request.recycle(),
            progress.writing_files(total),
        )?;
        let artifact = Artifact::new(revision, request.destination().to_owned(), written.entries)
            .with_reused(written.reused);
        let artifact = if request.sparse().is_none() {
            named_by_its_content(artifact)
        } else {
            artifact
        };
        warn_skipped(
            &self.location(),
            artifact.revision().as_str(),
            &selection.skipped,
        );
        progress.report(FetchProgress::Done {
            revision: artifact.revision().clone(),
        });
        Ok(FetchOutcome::Fetched(
            artifact.with_skipped(selection.skipped),
        ))
    }

    /// The planned files that `sparse` selects.
    fn keep_sparse(
        &self,
        tree: &DiskTree,
        sparse: &crate::Sparse,
        planned: Vec<Planned<PathBuf>>,
    ) -> Result<Vec<Planned<PathBuf>>, SourceError> {
        let wanted = select_sparse(tree, &self.subpath, &self.rules, sparse)?.files;
        let wanted: std::collections::HashSet<&str> =
            wanted.iter().map(|file| file.path.as_str()).collect();
        Ok(planned
            .into_iter()
            .filter(|planned| wanted.contains(planned.file.path.as_str()))
            .collect())
    }
}

#[async_trait]
impl Source for LocalDirectorySource {
    fn location(&self) -> String {
        if self.subpath.is_empty() {
            EscapedPath(&self.root).to_string()
        } else {
            format!("{}//{}", EscapedPath(&self.root), Escaped(&self.subpath))
        }
    }

    async fn fetch(&self, request: FetchRequest) -> Result<FetchOutcome, SourceError> {
        let this = self.clone();
        let cancellation = request.cancellation().clone();
        let task = tokio::task::spawn_blocking(move || this.fetch_blocking(&request));
        tokio::select! {
            biased;
            () = cancellation.cancelled() => Err(SourceError::Cancelled { location: self.location() }),
            joined = task => joined.map_err(|error| SourceError::Other {
                location: self.location(),
                message: "the fetch task panicked".to_owned(),
                source: Some(Box::new(error)),
            })?,
        }
    }
}

/// The artifact with its own digest as its revision: the directory may have changed while it
/// was copied, and the revision must name what was written.
fn named_by_its_content(artifact: Artifact) -> Artifact {
    let revision = Revision::from_string(artifact.digest().to_string());
    artifact.with_revision(revision)
}

/// The SHA-256 of each selected file, each read once, streamed: the revision is the digest of
/// the selection.
fn hash_selection(files: &[SelectedFile<PathBuf>]) -> Result<Vec<[u8; 32]>, SourceError> {
    files
        .iter()
        .map(|file| {
            hash_file(&file.handle)
                .map(|(sha256, _)| sha256)
                .map_err(|source| {
                    SelectError::Read {
                        path: file.path.clone(),
                        source: Box::new(source),
                    }
                    .into()
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unchanged_directory_is_not_copied_and_changes_are_seen() {
        let source_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(source_dir.path().join("app")).unwrap();
        std::fs::write(source_dir.path().join("app/a.yaml"), "a: 1\n").unwrap();
        std::fs::write(source_dir.path().join("README.md"), "docs\n").unwrap();
        let out = tempfile::tempdir().unwrap();
        let source = LocalDirectorySource::new(source_dir.path())
            .with_ignore_rules(IgnoreRules::default().with_pattern("*.md"));

        let FetchOutcome::Fetched(first) = source
            .fetch(FetchRequest::new(out.path().join("1")))
            .await
            .unwrap()
        else {
            panic!("first fetch must produce an artifact");
        };
        assert_eq!(first.file_count(), 1);
        assert_eq!(first.revision().as_str(), first.digest().to_string());
        assert!(out.path().join("1/app/a.yaml").is_file());
        assert!(!out.path().join("1/README.md").exists());

        let again = source
            .fetch(
                FetchRequest::new(out.path().join("2"))
                    .with_last_revision(first.revision().clone()),
            )
            .await
            .unwrap();
        assert!(matches!(again, FetchOutcome::Unchanged(ref r) if r == first.revision()));
        assert!(
            !out.path().join("2").exists(),
            "unchanged fetch must not write"
        );

        std::fs::write(source_dir.path().join("README.md"), "ignored change\n").unwrap();
        let ignored = source
            .fetch(
                FetchRequest::new(out.path().join("3"))
                    .with_last_revision(first.revision().clone()),
            )
            .await
            .unwrap();
        assert!(matches!(ignored, FetchOutcome::Unchanged(_)));

        std::fs::write(source_dir.path().join("app/a.yaml"), "a: 2\n").unwrap();
        let changed = source
            .fetch(
                FetchRequest::new(out.path().join("4"))
                    .with_last_revision(first.revision().clone()),
            )
            .await
            .unwrap();
        let FetchOutcome::Fetched(second) = changed else {
            panic!("changed content must produce an artifact");
        };
        assert_ne!(second.digest(), first.digest());
        second.verify().unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_changed_directory_reuses_the_previous_artifacts_unchanged_files() {
        use std::os::unix::fs::MetadataExt;
        let ino = |path: std::path::PathBuf| std::fs::metadata(path).unwrap().ino();
        let source_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(source_dir.path().join("app")).unwrap();
        std::fs::write(source_dir.path().join("app/a.yaml"), "a: 1\n").unwrap();
        std::fs::write(source_dir.path().join("app/b.yaml"), "b: 1\n").unwrap();
        let out = tempfile::tempdir().unwrap();
        let source = LocalDirectorySource::new(source_dir.path());
        let FetchOutcome::Fetched(first) = source
            .fetch(FetchRequest::new(out.path().join("1")))
            .await
            .unwrap()
        else {
            panic!("first fetch must produce an artifact");
        };
        std::fs::write(source_dir.path().join("app/b.yaml"), "b: 2\n").unwrap();
        let FetchOutcome::Fetched(second) = source
            .fetch(FetchRequest::new(out.path().join("2")).with_previous(first.clone()))
            .await
            .unwrap()
        else {
            panic!("a change must produce an artifact");
        };
        assert_eq!(second.reused_files(), 1);
        assert_eq!(
            ino(out.path().join("1/app/a.yaml")),
            ino(out.path().join("2/app/a.yaml"))
        );
        assert_ne!(
            ino(out.path().join("1/app/b.yaml")),
            ino(out.path().join("2/app/b.yaml"))
        );
        first.verify().unwrap();
        second.verify().unwrap();
        assert_eq!(second.revision().as_str(), second.digest().to_string());
    }

    #[tokio::test]
    async fn sparse_fetch_writes_only_the_paths_asked_for() {
        let source_dir = tempfile::tempdir().unwrap();
        for path in [
            "apps/prod/a.yaml",
            "apps/prod-x/b.yaml",
            "apps/prod.yaml",
            "other/c.yaml",
        ] {
            let full = source_dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, path).unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let source = LocalDirectorySource::new(source_dir.path());
        let FetchOutcome::Fetched(whole) = source
            .fetch(FetchRequest::new(out.path().join("whole")))
            .await
            .unwrap()
        else {
            panic!("must fetch");
        };
        let FetchOutcome::Fetched(part) = source
            .fetch(
                FetchRequest::new(out.path().join("part"))
                    .with_sparse(crate::Sparse::new(["./apps//prod"])),
            )
            .await
            .unwrap()
        else {
            panic!("must fetch");
        };
        assert_eq!(
            part.files().collect::<Vec<_>>(),
            [("apps/prod/a.yaml", false)]
        );
        // The revision is the whole directory's; the digest is that of the files written.
        assert_eq!(part.revision(), whole.revision());
        assert_ne!(part.digest(), whole.digest());
        part.verify().unwrap();
    }

    #[tokio::test]
    async fn a_sparse_path_leaving_the_root_is_refused_before_anything_is_read() {
        let source_dir = tempfile::tempdir().unwrap();
        std::fs::write(source_dir.path().join("a.yaml"), "a: 1\n").unwrap();
        let out = tempfile::tempdir().unwrap();
        let source = LocalDirectorySource::new(source_dir.path());
        let (request, seen) = recording_request(out.path().join("x"));
        let error = source
            .fetch(request.with_sparse(crate::Sparse::new(["apps", "../etc\u{1b}[2J"])))
            .await
            .unwrap_err();
        // The variant and wording of the Git source (and of `Sparse`'s docs), the path escaped.
        assert!(
            matches!(
                &error,
                SourceError::Select(SelectError::InvalidSubpath { subpath }) if subpath == "../etc\u{1b}[2J"
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "subpath \"../etc\\u{1b}[2J\" must be relative and stay inside the source"
        );
        assert!(seen.lock().unwrap().is_empty(), "nothing was scanned");
        assert!(!out.path().join("x").exists(), "nothing was written");
        // Also when the directory is unchanged: the request is wrong, whatever the revision.
        let FetchOutcome::Fetched(whole) = source
            .fetch(FetchRequest::new(out.path().join("1")))
            .await
            .unwrap()
        else {
            panic!("must fetch");
        };
        for bad in ["/etc", "apps/\u{7}x"] {
            let error = source
                .fetch(
                    FetchRequest::new(out.path().join("2"))
                        .with_last_revision(whole.revision().clone())
                        .with_sparse(crate::Sparse::new([bad])),
                )
                .await
                .unwrap_err();
            assert!(
                matches!(
                    error,
                    SourceError::Select(SelectError::InvalidSubpath { .. })
                ),
                "{bad:?}: {error:?}"
            );
        }
    }

    fn recording_request(
        destination: std::path::PathBuf,
    ) -> (
        FetchRequest,
        std::sync::Arc<std::sync::Mutex<Vec<FetchProgress>>>,
    ) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = std::sync::Arc::clone(&seen);
        let request = FetchRequest::new(destination)
            .with_progress(move |progress| record.lock().unwrap().push(progress));
        (request, seen)
    }

    #[tokio::test]
    async fn progress_reports_scan_writes_and_done_or_unchanged() {
        let source_dir = tempfile::tempdir().unwrap();
        for name in ["a", "b", "c"] {
            std::fs::write(source_dir.path().join(format!("{name}.yaml")), name).unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let source = LocalDirectorySource::new(source_dir.path());

        let (request, seen) = recording_request(out.path().join("1"));
        let outcome = source.fetch(request).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.first(), Some(&FetchProgress::ScanningDirectory));
        assert_eq!(
            seen.get(1),
            Some(&FetchProgress::WritingFiles {
                files_written: 0,
                files_total: 3
            })
        );
        assert_eq!(
            &seen[seen.len() - 2..],
            [
                FetchProgress::WritingFiles {
                    files_written: 3,
                    files_total: 3
                },
                FetchProgress::Done {
                    revision: outcome.revision().clone()
                }
            ]
        );
        assert!(
            seen[1..seen.len() - 1]
                .iter()
                .all(|p| matches!(p, FetchProgress::WritingFiles { .. })),
            "{seen:?}"
        );

        let (request, seen) = recording_request(out.path().join("2"));
        let request = request.with_last_revision(outcome.revision().clone());
        source.fetch(request).await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [
                FetchProgress::ScanningDirectory,
                FetchProgress::Unchanged {
                    revision: outcome.revision().clone()
                }
            ]
        );
    }

    #[tokio::test]
    async fn cancelled_fetch_reports_cancellation() {
        let source_dir = tempfile::tempdir().unwrap();
        std::fs::write(source_dir.path().join("a.yaml"), "a: 1\n").unwrap();
        let out = tempfile::tempdir().unwrap();
        let token = tokio_util::sync::CancellationToken::new();
        token.cancel();
        let error = LocalDirectorySource::new(source_dir.path())
            .fetch(FetchRequest::new(out.path().join("x")).with_cancellation(token))
            .await
            .unwrap_err();
        assert!(matches!(error, SourceError::Cancelled { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn missing_directory_is_a_configuration_error() {
        let out = tempfile::tempdir().unwrap();
        let error = LocalDirectorySource::new(out.path().join("absent"))
            .fetch(FetchRequest::new(out.path().join("x")))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("absent"), "{error}");
    }
}
