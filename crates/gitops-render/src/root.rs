//! [`SourceRoot`]: the directory a render is jailed to, and the checks that keep it so.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The errors of this module: a path that would leave the root, or a file that is too large.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The root itself could not be opened.
    #[error("source root {root}: {source}", root = gitops_core::escape::EscapedPath(root))]
    OpenRoot {
        /// The root as given.
        root: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
    /// The root is a file, not a directory.
    #[error("source root {root} is not a directory", root = gitops_core::escape::EscapedPath(root))]
    RootNotADirectory {
        /// The root as given.
        root: PathBuf,
    },
    /// An absolute path was given where a path relative to the root is required.
    #[error("{path}: absolute paths are refused; give a path relative to the source root", path = gitops_core::escape::EscapedPath(path))]
    AbsolutePath {
        /// The path as given.
        path: PathBuf,
    },
    /// A path climbs out of the root with `..`.
    #[error("{path}: the path leaves the source root", path = gitops_core::escape::EscapedPath(path))]
    EscapesRoot {
        /// The path as given (relative to the root, or to the file that referenced it).
        path: PathBuf,
    },
    /// A symbolic link points outside the root.
    #[error("{link}: symbolic link points outside the source root (to {target})", link = gitops_core::escape::EscapedPath(link), target = gitops_core::escape::EscapedPath(target))]
    SymlinkEscapes {
        /// The link, relative to the root.
        link: PathBuf,
        /// Where it points, resolved.
        target: PathBuf,
    },
    /// A symbolic link whose target does not exist.
    #[error("{link}: dangling symbolic link", link = gitops_core::escape::EscapedPath(link))]
    DanglingSymlink {
        /// The link, relative to the root.
        link: PathBuf,
    },
    /// A path that does not exist.
    #[error("{path}: not found in the source root", path = gitops_core::escape::EscapedPath(path))]
    NotFound {
        /// The path, relative to the root.
        path: PathBuf,
    },
    /// A directory was expected.
    #[error("{path}: not a directory", path = gitops_core::escape::EscapedPath(path))]
    NotADirectory {
        /// The path, relative to the root.
        path: PathBuf,
    },
    /// A file is larger than the limit.
    #[error("{file}: {size} bytes is more than the limit of {limit} bytes", file = gitops_core::escape::EscapedPath(file))]
    FileTooLarge {
        /// The file, relative to the root.
        file: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The files to render add up to more than the limit.
    #[error("{dir}: the files add up to more than the limit of {limit} bytes", dir = gitops_core::escape::EscapedPath(dir))]
    TotalTooLarge {
        /// The rendered directory, relative to the root.
        dir: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A file is not UTF-8 text.
    #[error("{file}: not UTF-8 text", file = gitops_core::escape::EscapedPath(file))]
    NotUtf8 {
        /// The file, relative to the root.
        file: PathBuf,
    },
    /// Reading a file or directory failed.
    #[error("{path}: {source}", path = gitops_core::escape::EscapedPath(path))]
    Io {
        /// The path, relative to the root.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A directory that a render may read and nothing outside it: paths are checked lexically (no
/// absolute paths, no `..` above the root) and after resolving symbolic links.
///
/// ```
/// use gitops_render::SourceRoot;
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir(dir.path().join("apps"))?;
/// let root = SourceRoot::new(dir.path())?;
/// assert!(root.resolve_dir("apps").is_ok());
/// assert!(root.resolve_dir("../etc").is_err());
/// assert!(root.resolve_dir("/etc").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRoot {
    root: PathBuf,
}

impl SourceRoot {
    /// Opens a root directory (resolving symbolic links in its own path).
    pub fn new(root: impl AsRef<Path>) -> Result<Self, RootError> {
        let given = root.as_ref();
        let root = fs::canonicalize(given).map_err(|source| RootError::OpenRoot {
            root: given.to_owned(),
            source,
        })?;
        if !root.is_dir() {
            return Err(RootError::RootNotADirectory {
                root: given.to_owned(),
            });
        }
        Ok(Self { root })
    }

    /// The root, absolute and with symbolic links resolved.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `absolute` relative to the root (for messages and origins); `absolute` itself when it is
    /// not inside.
    #[must_use]
    pub fn relative<'a>(&self, absolute: &'a Path) -> &'a Path {
        absolute.strip_prefix(&self.root).unwrap_or(absolute)
    }

    /// Resolves a path relative to the root (`""` or `"."` is the root itself) to an absolute,
    /// canonical path inside the root. Refuses absolute paths, `..` above the root and symbolic
    /// links that lead outside.
    pub fn resolve(&self, relative: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        let relative = relative.as_ref();
        let normal = normalize_relative(relative)?;
        self.resolve_normalized(&normal, relative)
    }

    /// Resolves `reference`, found in a file inside directory `base_dir` (absolute, inside the
    /// root), the way tools resolve relative references: relative to `base_dir`. Refuses absolute
    /// references and any that would leave the root.
    pub fn resolve_from(&self, base_dir: &Path, reference: &str) -> Result<PathBuf, RootError> {
        let reference_path = Path::new(reference);
        if reference_path.is_absolute() {
            return Err(RootError::AbsolutePath {
                path: reference_path.to_owned(),
            });
        }
        let base = self.relative(base_dir).to_owned();
        let joined = base.join(reference_path);
        let normal = normalize_relative(&joined).map_err(|_| RootError::EscapesRoot {
            path: joined.clone(),
        })?;
        self.resolve_normalized(&normal, &joined)
    }

    fn resolve_normalized(&self, normal: &Path, shown: &Path) -> Result<PathBuf, RootError> {
        let joined = self.root.join(normal);
        let canonical = match fs::canonicalize(&joined) {
            Ok(path) => path,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if fs::symlink_metadata(&joined).is_ok() {
                    return Err(RootError::DanglingSymlink {
                        link: shown.to_owned(),
                    });
                }
                return Err(RootError::NotFound {
                    path: shown.to_owned(),
                });
            }
            Err(source) => {
                return Err(RootError::Io {
                    path: shown.to_owned(),
                    source,
                });
            }
        };
        if !canonical.starts_with(&self.root) {
            return Err(RootError::SymlinkEscapes {
                link: shown.to_owned(),
                target: canonical,
            });
        }
        Ok(canonical)
    }

    /// Like [`SourceRoot::resolve`], and the result must be a directory.
    pub fn resolve_dir(&self, relative: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        let relative = relative.as_ref();
        let dir = self.resolve(relative)?;
        if !dir.is_dir() {
            return Err(RootError::NotADirectory {
                path: relative.to_owned(),
            });
        }
        Ok(dir)
    }

    /// Reads a file inside the root as UTF-8 text, refusing files larger than `limit` bytes
    /// (checked before and while reading, so a growing file cannot get past it).
    pub fn read_to_string(&self, file: &Path, limit: u64) -> Result<String, RootError> {
        let shown = self.relative(file).to_owned();
        let io = |source| RootError::Io {
            path: shown.clone(),
            source,
        };
        let opened = fs::File::open(file).map_err(io)?;
        let size = opened.metadata().map_err(io)?.len();
        if size > limit {
            return Err(RootError::FileTooLarge {
                file: shown,
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
        opened
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > limit {
            return Err(RootError::FileTooLarge {
                file: shown,
                size: bytes.len() as u64,
                limit,
            });
        }
        String::from_utf8(bytes).map_err(|_| RootError::NotUtf8 { file: shown })
    }

    /// Checks a whole tree under `dir` (absolute, inside the root) before an external tool reads
    /// it: every symbolic link must resolve inside the root and every file must be at most
    /// `file_limit` bytes. Tools such as kustomize and helm follow links on their own, so this is
    /// what keeps them inside.
    pub fn check_tree(&self, dir: &Path, file_limit: u64) -> Result<(), RootError> {
        let mut visited = HashSet::new();
        self.check_tree_inner(dir, file_limit, &mut visited)
    }

    fn check_tree_inner(
        &self,
        dir: &Path,
        file_limit: u64,
        visited: &mut HashSet<PathBuf>,
    ) -> Result<(), RootError> {
        if !visited.insert(dir.to_owned()) {
            return Ok(());
        }
        for entry in self.sorted_entries(dir)? {
            match entry.kind {
                EntryKind::Dir => self.check_tree_inner(&entry.resolved, file_limit, visited)?,
                EntryKind::File { size } if size > file_limit => {
                    return Err(RootError::FileTooLarge {
                        file: entry.relative,
                        size,
                        limit: file_limit,
                    });
                }
                EntryKind::File { .. } | EntryKind::Other => {}
            }
        }
        Ok(())
    }

    /// The entries of a directory inside the root, sorted by name, with symbolic links resolved
    /// and checked.
    pub(crate) fn sorted_entries(&self, dir: &Path) -> Result<Vec<Entry>, RootError> {
        let shown = self.relative(dir).to_owned();
        let read = fs::read_dir(dir).map_err(|source| RootError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut entries = Vec::new();
        for entry in read {
            let entry = entry.map_err(|source| RootError::Io {
                path: shown.clone(),
                source,
            })?;
            let path = entry.path();
            let relative = self.relative(&path).to_owned();
            let io = |source| RootError::Io {
                path: relative.clone(),
                source,
            };
            let file_type = entry.file_type().map_err(io)?;
            let (resolved, metadata) = if file_type.is_symlink() {
                let target = match fs::canonicalize(&path) {
                    Ok(target) => target,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(RootError::DanglingSymlink { link: relative });
                    }
                    Err(source) => {
                        return Err(RootError::Io {
                            path: relative,
                            source,
                        });
                    }
                };
                if !target.starts_with(&self.root) {
                    return Err(RootError::SymlinkEscapes {
                        link: relative,
                        target,
                    });
                }
                let metadata = fs::metadata(&target).map_err(io)?;
                (target, metadata)
            } else {
                (path.clone(), entry.metadata().map_err(io)?)
            };
            let kind = if metadata.is_dir() {
                EntryKind::Dir
            } else if metadata.is_file() {
                EntryKind::File {
                    size: metadata.len(),
                }
            } else {
                EntryKind::Other
            };
            entries.push(Entry {
                name: entry.file_name().to_string_lossy().into_owned(),
                path,
                resolved,
                relative,
                kind,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}

/// One directory entry, see [`SourceRoot::sorted_entries`].
#[derive(Debug)]
pub(crate) struct Entry {
    /// The file name.
    pub(crate) name: String,
    /// The path as listed (a link's own path for a link).
    pub(crate) path: PathBuf,
    /// The path with links resolved (inside the root).
    pub(crate) resolved: PathBuf,
    /// The listed path relative to the root.
    pub(crate) relative: PathBuf,
    /// What it is, after following links.
    pub(crate) kind: EntryKind,
}

/// What an [`Entry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    File { size: u64 },
    Other,
}

/// Removes `.` and resolves `..` lexically; refuses absolute paths and `..` above the start.
fn normalize_relative(path: &Path) -> Result<PathBuf, RootError> {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => {
                return Err(RootError::AbsolutePath {
                    path: path.to_owned(),
                });
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    return Err(RootError::EscapesRoot {
                        path: path.to_owned(),
                    });
                }
            }
            Component::Normal(part) => normal.push(part),
        }
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_escapes() {
        assert_eq!(
            normalize_relative(Path::new("a/./b/../c")).unwrap(),
            Path::new("a/c")
        );
        assert!(matches!(
            normalize_relative(Path::new("a/../../b")),
            Err(RootError::EscapesRoot { .. })
        ));
        assert!(matches!(
            normalize_relative(Path::new("/etc")),
            Err(RootError::AbsolutePath { .. })
        ));
        assert_eq!(normalize_relative(Path::new("")).unwrap(), Path::new(""));
    }

    #[test]
    fn refuses_symlinks_that_leave_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("apps")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("apps/out")).unwrap();
        std::os::unix::fs::symlink("../apps", dir.path().join("apps/inside")).unwrap();
        let root = SourceRoot::new(dir.path()).unwrap();
        let err = root.resolve_dir("apps/out").unwrap_err();
        assert!(matches!(err, RootError::SymlinkEscapes { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("apps/out: symbolic link points outside")
        );
        assert!(root.resolve_dir("apps/inside").is_ok());
        let err = root.check_tree(root.path(), 1024).unwrap_err();
        assert!(matches!(err, RootError::SymlinkEscapes { .. }), "{err}");
    }

    #[test]
    fn refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("big.yaml"), vec![b'a'; 2000]).unwrap();
        let root = SourceRoot::new(dir.path()).unwrap();
        let err = root
            .read_to_string(&root.path().join("big.yaml"), 1000)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "big.yaml: 2000 bytes is more than the limit of 1000 bytes"
        );
        assert!(root.check_tree(root.path(), 1000).is_err());
        assert!(root.check_tree(root.path(), 2000).is_ok());
    }

    #[test]
    fn resolves_references_relative_to_their_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("base")).unwrap();
        fs::create_dir_all(dir.path().join("overlays/prod")).unwrap();
        let root = SourceRoot::new(dir.path()).unwrap();
        let prod = root.path().join("overlays/prod");
        assert_eq!(
            root.resolve_from(&prod, "../../base").unwrap(),
            root.path().join("base")
        );
        assert!(matches!(
            root.resolve_from(&prod, "../../../etc"),
            Err(RootError::EscapesRoot { .. })
        ));
        assert!(matches!(
            root.resolve_from(&prod, "/etc/passwd"),
            Err(RootError::AbsolutePath { .. })
        ));
    }
}
