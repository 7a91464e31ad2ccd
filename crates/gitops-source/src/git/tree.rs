//! A Git tree read straight from the object database, as a [`FileTree`].

use std::cell::Cell;

use gix::ObjectId;
use gix::objs::tree::EntryKind as GitEntryKind;

use crate::path::{PathError, check_entry_name};
use crate::select::{EntryKind, FileTree, SelectError, SkipReason, TreeEntry};

use super::Failure;

pub(super) struct GitTree<'repo> {
    repo: &'repo gix::Repository,
    commit: ObjectId,
    root: ObjectId,
    /// Set when an object could not be read: the cache is then not trusted.
    damaged: Cell<bool>,
}

impl<'repo> GitTree<'repo> {
    pub(super) fn for_commit(
        repo: &'repo gix::Repository,
        commit: ObjectId,
    ) -> Result<Self, Failure> {
        let root = repo
            .find_commit(commit)
            .and_then(|commit| commit.tree_id().map(gix::Id::detach))
            .map_err(|error| Failure::Corrupt {
                reason: format!("commit {commit} cannot be read from the cache"),
                source: Some(Box::new(error)),
            })?;
        Ok(Self {
            repo,
            commit,
            root,
            damaged: Cell::new(false),
        })
    }

    pub(super) fn damaged(&self) -> bool {
        self.damaged.get()
    }

    fn read_error(&self, path: &str, error: gix::Error) -> SelectError {
        self.damaged.set(true);
        SelectError::Read {
            path: if path.is_empty() {
                ".".to_owned()
            } else {
                path.to_owned()
            },
            source: Box::new(error),
        }
    }
}

impl FileTree for GitTree<'_> {
    type Handle = ObjectId;

    fn root(&self) -> ObjectId {
        self.root
    }

    fn list(&self, dir: &ObjectId, path: &str) -> Result<Vec<TreeEntry<ObjectId>>, SelectError> {
        let tree = self
            .repo
            .find_tree(*dir)
            .map_err(|error| self.read_error(path, error))?;
        let decoded = tree
            .decode()
            .map_err(|error| self.read_error(path, error))?;
        let mut entries = Vec::with_capacity(decoded.entries.len());
        let mut seen = std::collections::HashSet::with_capacity(decoded.entries.len());
        for entry in &decoded.entries {
            // Every entry is checked, links and submodules too: a tree holding a hostile name is
            // refused as a whole, before anything is written.
            let raw: &[u8] = entry.filename;
            let name =
                check_entry_name(raw).map_err(|error| self.unsafe_entry(path, raw, error))?;
            if !seen.insert(name) {
                return Err(self.unsafe_entry(
                    path,
                    raw,
                    PathError::Duplicate {
                        name: crate::path::printable(raw),
                    },
                ));
            }
            let kind = match entry.mode.kind() {
                GitEntryKind::Tree => EntryKind::Directory,
                GitEntryKind::Blob => EntryKind::File { executable: false },
                GitEntryKind::BlobExecutable => EntryKind::File { executable: true },
                GitEntryKind::Link => EntryKind::Skipped(SkipReason::Symlink),
                GitEntryKind::Commit => EntryKind::Skipped(SkipReason::Submodule),
            };
            entries.push(TreeEntry {
                name: name.to_owned(),
                kind,
                handle: entry.oid.to_owned(),
            });
        }
        Ok(entries)
    }

    fn read(&self, file: &ObjectId, path: &str) -> Result<Vec<u8>, SelectError> {
        let mut blob = self
            .repo
            .find_blob(*file)
            .map_err(|error| self.read_error(path, error))?;
        Ok(blob.take_data())
    }

    fn origin(&self) -> String {
        format!("commit {}", self.commit)
    }
}
