//! A Git tree read straight from the object database, as a [`FileTree`].

use std::cell::Cell;

use gix::ObjectId;
use gix::objs::tree::EntryKind as GitEntryKind;

use crate::path::{PathError, check_entry_name};
use crate::select::{EntryKind, FileTree, SelectError, SkipReason, TreeEntry};

use super::Failure;
use super::blob::{BlobError, PackedBlobs};

pub(super) struct GitTree<'repo> {
    repo: &'repo gix::Repository,
    commit: ObjectId,
    root: ObjectId,
    /// Set when an object could not be read: the cache is then not trusted.
    damaged: Cell<bool>,
    /// The cache's packs, opened when the first blob is copied.
    packs: std::cell::OnceCell<PackedBlobs>,
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
            packs: std::cell::OnceCell::new(),
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

    fn copy_to(
        &self,
        file: &ObjectId,
        path: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<(), SelectError> {
        let packs = self
            .packs
            .get_or_init(|| PackedBlobs::open(self.repo.objects.store_ref().path()));
        match packs.stream(file, out) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error @ BlobError::Write { .. }) => {
                // The destination failed, not the cache: the cache stays trusted.
                return Err(SelectError::Read {
                    path: path.to_owned(),
                    source: Box::new(error),
                });
            }
            Err(error) => {
                self.damaged.set(true);
                return Err(SelectError::Read {
                    path: path.to_owned(),
                    source: Box::new(error),
                });
            }
        }
        let content = self.read(file, path)?;
        out.write_all(&content).map_err(|source| SelectError::Read {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    fn origin(&self) -> String {
        format!("commit {}", self.commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that keeps what it is given and the largest single write.
    #[derive(Default)]
    struct Recorder {
        content: Vec<u8>,
        largest_write: usize,
    }

    impl std::io::Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.largest_write = self.largest_write.max(buf.len());
            self.content.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn git(dir: &std::path::Path, args: &[&str]) -> String {
        let output = std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?} failed: {output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn packed_blobs_large_and_small_are_copied_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        let large: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(dir.path().join("large.bin"), &large).unwrap();
        std::fs::write(dir.path().join("small.txt"), "small\n").unwrap();
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "one"]);
        git(dir.path(), &["repack", "-adq"]);
        let commit =
            ObjectId::from_hex(git(dir.path(), &["rev-parse", "HEAD"]).as_bytes()).unwrap();
        let repo = gix::open_opts(dir.path(), gix::open::Options::isolated()).unwrap();
        let Ok(tree) = GitTree::for_commit(&repo, commit) else {
            panic!("the commit cannot be read");
        };
        let entries = tree.list(&tree.root(), "").unwrap();
        let handle = |name: &str| {
            entries
                .iter()
                .find(|entry| entry.name == name)
                .unwrap()
                .handle
        };

        let mut out = Recorder::default();
        tree.copy_to(&handle("large.bin"), "large.bin", &mut out)
            .unwrap();
        assert!(out.content == large, "the content differs");
        assert!(
            out.largest_write <= 64 * 1024,
            "written in one piece of {} bytes: the blob was held whole",
            out.largest_write
        );

        let mut out = Recorder::default();
        tree.copy_to(&handle("small.txt"), "small.txt", &mut out)
            .unwrap();
        assert_eq!(out.content, b"small\n");
        assert!(!tree.damaged());
    }
}
