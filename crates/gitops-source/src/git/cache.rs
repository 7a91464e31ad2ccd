//! The persistent cache of one Git source: a bare repository plus a marker naming its origin.
//!
//! A cache that cannot be opened, is not bare, or was made for another URL is not trusted: it is
//! wiped and created anew.

use std::path::{Path, PathBuf};

use crate::source::SourceError;

use super::Failure;
use super::pack::TEMPORARY_PREFIX;

/// The marker's first line; bump when the layout changes so old caches are rebuilt.
const MARKER_VERSION: &str = "gitops-source cache v1";
const MARKER_FILE: &str = "origin";
const REPOSITORY_DIR: &str = "repository.git";

#[derive(Debug)]
pub(super) struct Cache {
    dir: PathBuf,
    /// The remote's location without credentials, recorded in the marker.
    origin: String,
}

impl Cache {
    pub(super) fn new(dir: PathBuf, origin: String) -> Self {
        Self { dir, origin }
    }

    pub(super) fn path(&self) -> &Path {
        &self.dir
    }

    fn marker(&self) -> String {
        format!("{MARKER_VERSION}\n{}\n", self.origin)
    }

    /// Open the cache repository, rebuilding it when it is missing, foreign or unreadable.
    pub(super) fn open(&self) -> Result<gix::Repository, Failure> {
        let repository = self.dir.join(REPOSITORY_DIR);
        let marker_matches =
            std::fs::read_to_string(self.dir.join(MARKER_FILE)).is_ok_and(|m| m == self.marker());
        if marker_matches {
            match gix::open_opts(&repository, gix::open::Options::isolated()) {
                Ok(repo) if repo.is_bare() => {
                    remove_unfinished_packs(&repository);
                    return Ok(repo);
                }
                Ok(_) => {
                    tracing::warn!(cache = %gitops_core::escape::EscapedPath(&self.dir), "cache repository is not bare; rebuilding")
                }
                Err(error) => {
                    tracing::warn!(cache = %gitops_core::escape::EscapedPath(&self.dir), %error, "cache repository cannot be opened; rebuilding");
                }
            }
        } else if self.dir.exists() {
            tracing::info!(cache = %gitops_core::escape::EscapedPath(&self.dir), "cache is absent, foreign or from an older layout; creating it");
        }
        self.wipe()?;
        self.create()
    }

    fn create(&self) -> Result<gix::Repository, Failure> {
        let corrupt = |reason: &str, source: Option<crate::source::BoxError>| {
            Failure::Source(SourceError::CorruptCache {
                path: self.dir.clone(),
                reason: reason.to_owned(),
                source,
            })
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| corrupt("cannot create the cache directory", Some(Box::new(e))))?;
        let repository = self.dir.join(REPOSITORY_DIR);
        gix::ThreadSafeRepository::init_opts(
            &repository,
            gix::create::Kind::Bare,
            gix::create::Options::default(),
            gix::open::Options::isolated(),
        )
        .map_err(|e| corrupt("cannot create the cache repository", Some(Box::new(e))))?;
        // The marker goes last: an interrupted creation leaves a cache that is rebuilt next time.
        std::fs::write(self.dir.join(MARKER_FILE), self.marker())
            .map_err(|e| corrupt("cannot write the cache marker", Some(Box::new(e))))?;
        gix::open_opts(&repository, gix::open::Options::isolated())
            .map_err(|e| corrupt("cannot open the new cache repository", Some(Box::new(e))))
    }

    /// How many pack files the cache repository holds (0 when it has none or cannot be read).
    ///
    /// Every fetch of a new commit adds one pack and nothing ever removes them, so this is the
    /// measure of how much the cache has grown since it was last built.
    pub(super) fn pack_count(&self) -> usize {
        let packs = self.dir.join(REPOSITORY_DIR).join("objects").join("pack");
        std::fs::read_dir(packs).map_or(0, |entries| {
            entries
                .flatten()
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "pack"))
                .count()
        })
    }

    /// Remove everything in the cache directory (the directory itself stays).
    pub(super) fn wipe(&self) -> Result<(), SourceError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                return Err(SourceError::CorruptCache {
                    path: self.dir.clone(),
                    reason: "the cache path is not a readable directory".to_owned(),
                    source: Some(Box::new(error)),
                });
            }
        };
        for entry in entries {
            let removed = entry.and_then(|entry| {
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                }
            });
            removed.map_err(|error| SourceError::CorruptCache {
                path: self.dir.clone(),
                reason: "cannot remove the damaged cache".to_owned(),
                source: Some(Box::new(error)),
            })?;
        }
        Ok(())
    }
}

/// Remove the temporary files a pack receiver left in the pack directory when its process was
/// killed mid-fetch (their names start with [`TEMPORARY_PREFIX`]; a finished pack is renamed to
/// `pack-<checksum>.pack`). Nothing else writes to the cache.
fn remove_unfinished_packs(repository: &Path) {
    let Ok(entries) = std::fs::read_dir(repository.join("objects").join("pack")) else {
        return;
    };
    for entry in entries.flatten() {
        let unfinished = entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(TEMPORARY_PREFIX.as_bytes())
            && entry.file_type().is_ok_and(|kind| kind.is_file());
        if unfinished && let Err(error) = std::fs::remove_file(entry.path()) {
            tracing::warn!(
                file = %gitops_core::escape::EscapedPath(&entry.path()),
                %error,
                "cannot remove an unfinished pack from the cache"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_the_cache_removes_unfinished_packs_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(
            dir.path().join("cache"),
            "git://example.test/repo".to_owned(),
        );
        drop(cache.open().ok().expect("a new cache opens"));
        let packs = dir.path().join("cache/repository.git/objects/pack");
        let unfinished = packs.join(format!("{TEMPORARY_PREFIX}abc123"));
        let other = packs.join("pack-0000.keep");
        std::fs::write(&unfinished, b"half a pack").unwrap();
        std::fs::write(&other, b"").unwrap();
        drop(cache.open().ok().expect("the cache opens again"));
        assert!(!unfinished.exists(), "the unfinished pack is left behind");
        assert!(other.exists(), "another file was removed");
    }
}
