//! Artifacts: the selected files of a revision on disk, their content digest over the sorted
//! (path, mode, blob digest) list, a reproducible tar.gz export made on request, and a safe
//! unpacker.
//!
//! A new revision is written incrementally: a file whose blob (Git object id, or content digest
//! for a directory source) and mode are those of a file of the previous artifact is hard-linked
//! from it (copied when linking fails), only the other files are written, each to a new inode.
//! The tree is built in a temporary sibling directory and renamed into place when complete, so a
//! reader never sees a half-made tree and the previous artifact is never touched.
//!
//! An older, retired artifact that no one holds any more can be given up ([`Recycle`]): its tree
//! is then renamed into the staging place and updated there, touching only the paths whose
//! (mode, blob) differ from its recorded file list or whose inode changed since it was written,
//! so a one-commit change costs a few file operations instead of a link per file.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gitops_core::escape::{Escaped, EscapedPath};
use gix::ObjectId;
use sha2::{Digest as _, Sha256};

use crate::path::{PathError, check_relative_path};

use crate::select::{
    DiskTree, FileTree, IgnoreRules, SelectError, SelectedFile, SkippedEntry, select_files,
};
use crate::source::Revision;

/// Mode of regular files in archives and on disk.
const FILE_MODE: u32 = 0o644;
/// Mode of executable files in archives and on disk.
const EXECUTABLE_MODE: u32 = 0o755;

/// Why writing, exporting, verifying or unpacking an artifact failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// A file system operation failed.
    #[error("cannot write or read {}", EscapedPath(path))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// Writing the archive stream failed.
    #[error("cannot write the archive")]
    Archive(#[source] io::Error),
    /// Reading the files back from disk failed.
    #[error("cannot read the artifact's files back")]
    Select(#[source] SelectError),
    /// The files on disk no longer match the artifact's digest.
    #[error(
        "the files under {} were changed: expected digest {expected}, found {actual}",
        EscapedPath(root)
    )]
    DigestMismatch {
        /// The artifact's directory.
        root: PathBuf,
        /// The digest recorded when the artifact was written.
        expected: Digest,
        /// The digest of what is on disk now.
        actual: Digest,
    },
    /// An archive entry or an artifact file has a path that [`check_relative_path`] refuses: it
    /// would be written outside the target directory, into git's metadata, or under a name that
    /// cannot be printed safely. Nothing was written for it.
    #[error("path \"{}\" is refused", Escaped(path))]
    PathEscapes {
        /// The entry's path (lossily converted when it is not UTF-8).
        path: String,
        /// Why it is refused.
        #[source]
        source: PathError,
    },
    /// An archive entry is a link, device or other special file.
    #[error(
        "archive entry \"{}\" is not a regular file or directory (links are refused)",
        Escaped(path)
    )]
    UnsupportedEntry {
        /// The entry's path.
        path: String,
    },
    /// The archive is larger than allowed.
    #[error("archive is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The archive is not a valid gzip-compressed tar stream.
    #[error("archive is not a valid tar.gz stream")]
    Corrupt(#[source] io::Error),
}

/// A content digest, `sha256:<hex>`, of an artifact's files.
///
/// Definition (version 1, stable): the SHA-256 of the manifest text that has one line per
/// regular file, sorted by the bytes of the path,
///
/// ```text
/// <mode> <sha256 of the file's content, lowercase hex> <path>\n
/// ```
///
/// where `<mode>` is `100644`, or `100755` for a file with an executable bit, and `<path>` is the
/// `/`-separated UTF-8 path relative to the artifact's root (never holding a control character,
/// so a line is never ambiguous). Directories, owners and times take no part. An artifact with
/// no file has the digest of the empty text. The same files give the same digest whatever the
/// source: a Git checkout and a directory on disk agree, and a Git source hashes only the blobs
/// it has not hashed for the previous artifact.
///
/// The same value, computed with standard tools in an artifact's directory:
///
/// ```sh
/// find . -type f | LC_ALL=C sort | while read -r f; do
///   m=100644; [ -x "$f" ] && m=100755
///   printf '%s %s %s\n' "$m" "$(sha256sum < "$f" | cut -c1-64)" "${f#./}"
/// done | sha256sum
/// ```
///
/// ```
/// use gitops_source::Digest;
/// // No file: the digest of the empty text.
/// assert_eq!(
///     Digest::of_files(std::iter::empty::<(&str, bool, [u8; 32])>()).to_string(),
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The raw SHA-256 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The lowercase hexadecimal SHA-256.
    #[must_use]
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The digest of files given as (path, executable, SHA-256 of the content), sorted by the
    /// bytes of their paths (see the definition above).
    ///
    /// ```
    /// use gitops_source::Digest;
    /// use sha2::{Digest as _, Sha256};
    /// let blob: [u8; 32] = Sha256::digest(b"a: 1\n").into();
    /// let digest = Digest::of_files([("a.yaml", false, blob)]);
    /// assert_eq!(digest.hex().len(), 64);
    /// ```
    #[must_use]
    pub fn of_files<'a>(files: impl IntoIterator<Item = (&'a str, bool, [u8; 32])>) -> Digest {
        let mut hasher = Sha256::new();
        for (path, executable, blob) in files {
            hasher.update(if executable { b"100755 " } else { b"100644 " });
            let mut line = [0; 64];
            hasher.update(hex_into(&blob, &mut line));
            hasher.update(b" ");
            hasher.update(path.as_bytes());
            hasher.update(b"\n");
        }
        Digest(hasher.finalize().into())
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    let mut out = [0; 64];
    String::from_utf8_lossy(hex_into(bytes, &mut out)).into_owned()
}

/// The lowercase hexadecimal form of `bytes`, written into `out` (a table lookup per nibble:
/// the digest of a 5,000-file artifact formats 5,000 of these).
fn hex_into<'a>(bytes: &[u8; 32], out: &'a mut [u8; 64]) -> &'a [u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    out
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What identifies an inode as the one a file of an artifact was written to: a file whose
/// identity, size, mode and modification time are unchanged was not replaced or rewritten (the
/// same test git's index makes). Hard links do not change any of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    #[cfg(unix)]
    fn of(metadata: &std::fs::Metadata) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        metadata.file_type().is_file().then(|| Stamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mode: metadata.mode(),
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec(),
        })
    }

    #[cfg(not(unix))]
    fn of(_metadata: &std::fs::Metadata) -> Option<Stamp> {
        None
    }
}

/// One file of an artifact, as written.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Path relative to the artifact's root, `/`-separated.
    pub(crate) path: String,
    pub(crate) executable: bool,
    /// The Git blob it was written from, if it came from Git.
    pub(crate) blob: Option<ObjectId>,
    /// SHA-256 of the content.
    pub(crate) sha256: [u8; 32],
    pub(crate) size: u64,
    /// The inode written, to recognise it unchanged when a later revision reuses it.
    pub(crate) stamp: Option<Stamp>,
}

/// A writer that hashes and counts everything written through it, then passes it on.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}

/// The SHA-256 and size of a file's content, streamed (never the whole file in memory).
pub(crate) fn hash_file(path: &Path) -> io::Result<([u8; 32], u64)> {
    let mut hashing = HashingWriter {
        inner: io::sink(),
        hasher: Sha256::new(),
        written: 0,
    };
    io::copy(&mut std::fs::File::open(path)?, &mut hashing)?;
    Ok((hashing.hasher.finalize().into(), hashing.written))
}

/// The SHA-256 of `content`.
#[cfg(test)]
pub(crate) fn sha256(content: &[u8]) -> [u8; 32] {
    Sha256::digest(content).into()
}

/// The digest of entries sorted by path.
pub(crate) fn digest_of(entries: &[Entry]) -> Digest {
    Digest::of_files(
        entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry.executable, entry.sha256)),
    )
}

/// The files of a directory on disk (regular files only, no ignore rules), sorted by path, hashed.
fn scan_disk(root: &Path) -> Result<Vec<Entry>, ArtifactError> {
    let tree = DiskTree {
        root: root.to_owned(),
    };
    let rules = IgnoreRules::default()
        .with_defaults(false)
        .with_source_ignore_files(false);
    let files = select_files(&tree, "", &rules).map_err(ArtifactError::Select)?;
    files
        .into_iter()
        .map(|file| {
            let (sha256, size) = hash_file(&file.handle).map_err(|source| ArtifactError::Io {
                path: file.handle.clone(),
                source,
            })?;
            Ok(Entry {
                path: file.path,
                executable: file.executable,
                blob: None,
                sha256,
                size,
                stamp: None,
            })
        })
        .collect()
}

/// The previous artifact's files, found by blob id or by content digest, with their mode.
struct Reusable<'a> {
    root: &'a Path,
    by_blob: HashMap<(ObjectId, bool), &'a Entry>,
    by_sha256: HashMap<([u8; 32], bool), &'a Entry>,
}

impl<'a> Reusable<'a> {
    fn new(previous: Option<&'a Artifact>) -> Self {
        let mut reusable = Reusable {
            root: previous.map_or(Path::new(""), |artifact| artifact.root.as_path()),
            by_blob: HashMap::new(),
            by_sha256: HashMap::new(),
        };
        for entry in previous.iter().flat_map(|artifact| artifact.entries.iter()) {
            if entry.stamp.is_none() {
                continue;
            }
            if let Some(blob) = entry.blob {
                reusable.by_blob.insert((blob, entry.executable), entry);
            }
            reusable
                .by_sha256
                .insert((entry.sha256, entry.executable), entry);
        }
        reusable
    }

    fn find(
        &self,
        blob: Option<ObjectId>,
        sha256: Option<[u8; 32]>,
        executable: bool,
    ) -> Option<&'a Entry> {
        blob.and_then(|blob| self.by_blob.get(&(blob, executable)).copied())
            .or_else(|| {
                sha256.and_then(|sha256| self.by_sha256.get(&(sha256, executable)).copied())
            })
    }
}

/// How a file was put into a new artifact.
enum Reused {
    /// Hard-linked or copied from the previous artifact: its entry.
    Yes(Entry),
    /// Not reused: it must be written from the source.
    No,
}

/// Put `old`'s file at `target` by a hard link (or a copy where linking is not possible), and
/// check that what arrived is exactly what the previous artifact recorded. Anything else (the old
/// file was replaced or rewritten, removed, or the copy differs) removes `target` and answers
/// [`Reused::No`]: the file is then written from the source.
fn reuse(old: &Entry, old_root: &Path, target: &Path, path: &str) -> Reused {
    let Some(expected) = old.stamp else {
        return Reused::No;
    };
    if check_relative_path(&old.path).is_err() {
        return Reused::No;
    }
    let source = old_root.join(&old.path);
    let reused = |stamp| {
        Reused::Yes(Entry {
            path: path.to_owned(),
            stamp: Some(stamp),
            ..old.clone()
        })
    };
    // A hard link shares the inode: the new artifact's file is checked to be the very inode the
    // old artifact wrote, unchanged. The link is never opened for writing afterwards.
    if std::fs::hard_link(&source, target).is_ok() {
        if std::fs::symlink_metadata(target)
            .ok()
            .and_then(|metadata| Stamp::of(&metadata))
            == Some(expected)
        {
            return reused(expected);
        }
        let _ = std::fs::remove_file(target);
        return Reused::No;
    }
    // Linking failed (another file system, a link limit): copy to a new inode, checking the
    // content's digest on the way.
    match std::fs::symlink_metadata(&source) {
        Ok(metadata) if Stamp::of(&metadata) == Some(expected) => {}
        _ => return Reused::No,
    }
    let copied = (|| -> io::Result<Option<Stamp>> {
        let mut reader = HashingReader {
            inner: std::fs::File::open(&source)?,
            hasher: Sha256::new(),
        };
        let mut file = new_file(target, old.executable)?;
        io::copy(&mut reader, &mut file)?;
        let sha256: [u8; 32] = reader.hasher.finalize().into();
        if sha256 != old.sha256 {
            return Ok(None);
        }
        Ok(Stamp::of(&file.metadata()?))
    })();
    match copied {
        Ok(Some(stamp)) => reused(stamp),
        _ => {
            let _ = std::fs::remove_file(target);
            Reused::No
        }
    }
}

/// A file to write into a new artifact: a selected file and what is known of its content.
pub(crate) struct Planned<H> {
    pub(crate) file: SelectedFile<H>,
    /// The Git blob, when the tree is a Git tree.
    pub(crate) blob: Option<ObjectId>,
    /// The SHA-256 of the content, when it is already known (a directory source hashed it).
    pub(crate) sha256: Option<[u8; 32]>,
}

/// What [`write_artifact`] made.
pub(crate) struct Written {
    pub(crate) entries: Vec<Entry>,
    /// How many files were reused from the previous artifact.
    pub(crate) reused: usize,
}

/// Write each planned file (sorted by path) into a new directory that becomes `root` when
/// complete (`root` must be absent or an empty directory). Files of `previous` with the same blob
/// (or content) and mode are hard-linked (or copied), the others written to new files with mode
/// 0644 or 0755. `files_written` is called after each file with the number done so far.
pub(crate) fn write_artifact<T: FileTree>(
    tree: &T,
    files: Vec<Planned<T::Handle>>,
    root: &Path,
    previous: Option<&Artifact>,
    recycle: Option<&Recycle>,
    mut files_written: impl FnMut(usize),
) -> Result<Written, ArtifactError> {
    if let Some(retired) = recycle.and_then(Recycle::take) {
        let retired_root = retired.root.clone();
        match recycle_into(tree, &files, root, previous, retired, &mut files_written) {
            Ok(written) => return Ok(written),
            Err(error) => {
                // The retired tree is gone (removed with its staging directory): the new
                // artifact is made from scratch, the previous one is untouched.
                tracing::debug!(
                    retired = %EscapedPath(&retired_root),
                    error = %error,
                    "recycling the retired artifact failed, writing a new one"
                );
            }
        }
    }
    let staging = staging_beside(root)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(io_error(staging.path()))?;
    }
    let mut stage = Stage::new(tree, staging, previous);
    for (index, planned) in files.iter().enumerate() {
        stage.place(planned)?;
        files_written(index + 1);
    }
    let (entries, reused) = stage.into_place(root)?;
    Ok(Written { entries, reused })
}

/// A closure making an [`ArtifactError::Io`] about `path`.
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + use<> {
    let path = path.to_owned();
    move |source| ArtifactError::Io { path, source }
}

/// A new temporary directory beside `root` (on the same file system, so that the final rename
/// is atomic), removed when dropped.
fn staging_beside(root: &Path) -> Result<tempfile::TempDir, ArtifactError> {
    let parent = match root.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    tempfile::Builder::new()
        .prefix(".gitops-artifact-")
        .tempdir_in(parent)
        .map_err(io_error(parent))
}

/// A new artifact's tree while it is built in its staging directory: each planned file is
/// hard-linked (or copied) from the previous artifact when its content and mode are unchanged,
/// or written to a new inode.
struct Stage<'a, T: FileTree> {
    tree: &'a T,
    staging: tempfile::TempDir,
    reusable: Reusable<'a>,
    created: std::collections::HashSet<PathBuf>,
    entries: Vec<Entry>,
    reused: usize,
}

impl<'a, T: FileTree> Stage<'a, T> {
    fn new(tree: &'a T, staging: tempfile::TempDir, previous: Option<&'a Artifact>) -> Self {
        Self {
            tree,
            staging,
            reusable: Reusable::new(previous),
            created: std::collections::HashSet::new(),
            entries: Vec::new(),
            reused: 0,
        }
    }

    /// Puts one planned file into the staging directory.
    fn place(&mut self, planned: &Planned<T::Handle>) -> Result<(), ArtifactError> {
        let file = &planned.file;
        // Every source checks its entries while listing them; this is the last line of defence
        // before a path is joined to the destination.
        check_relative_path(&file.path).map_err(|source| ArtifactError::PathEscapes {
            path: file.path.clone(),
            source,
        })?;
        let target = self.staging.path().join(&file.path);
        if let Some(dir) = target.parent()
            && !self.created.contains(dir)
        {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            self.created.insert(dir.to_owned());
        }
        let old = self
            .reusable
            .find(planned.blob, planned.sha256, file.executable);
        let entry = match old.map_or(Reused::No, |old| {
            reuse(old, self.reusable.root, &target, &file.path)
        }) {
            Reused::Yes(entry) => {
                self.reused += 1;
                entry
            }
            Reused::No => {
                let (sha256, size, stamp) = copy_new_file(
                    self.tree,
                    &file.handle,
                    &file.path,
                    &target,
                    file.executable,
                )?;
                Entry {
                    path: file.path.clone(),
                    executable: file.executable,
                    blob: planned.blob,
                    sha256,
                    size,
                    stamp,
                }
            }
        };
        self.entries.push(entry);
        Ok(())
    }

    /// Renames the staging directory to `root` (which must be absent or an empty directory:
    /// `rename` replaces an empty directory atomically); returns the entries and how many files
    /// were reused.
    fn into_place(self, root: &Path) -> Result<(Vec<Entry>, usize), ArtifactError> {
        let staged = self.staging.keep();
        if let Err(source) = std::fs::rename(&staged, root) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(ArtifactError::Io {
                path: root.to_owned(),
                source,
            });
        }
        Ok((self.entries, self.reused))
    }
}

/// Whether the file `old` recorded is the one `planned` wants: the same blob (or content when
/// no blob is known) and the same mode.
fn same_content<H>(planned: &Planned<H>, old: &Entry) -> bool {
    planned.file.executable == old.executable
        && match (planned.blob, old.blob) {
            (Some(new), Some(old)) => new == old,
            _ => planned.sha256 == Some(old.sha256),
        }
}

/// Update the retired artifact's tree in place into the artifact of `files`, then rename it to
/// `root`. The tree is first renamed into a staging directory beside `root` (so no one reads it
/// half-made); there, only what differs from the retired artifact's recorded file list is
/// touched: a file whose (mode, blob) is unchanged and whose inode still has the recorded stamp
/// is kept, every other file (changed, tampered with, unknown, a link) is removed, emptied
/// directories are removed, and the missing files are hard-linked from `previous` (see
/// [`reuse`]) or written to new inodes. A file is never opened for writing once it exists: it
/// may be hard-linked into `previous`. On failure the staging directory is removed.
fn recycle_into<T: FileTree>(
    tree: &T,
    files: &[Planned<T::Handle>],
    root: &Path,
    previous: Option<&Artifact>,
    retired: Artifact,
    files_written: &mut impl FnMut(usize),
) -> Result<Written, ArtifactError> {
    let staging = staging_beside(root)?;
    // A directory renames over an empty one atomically.
    std::fs::rename(&retired.root, staging.path()).map_err(io_error(&retired.root))?;
    // The retired artifact is not shared (see `Recycle::new`): its entries move into the new one.
    let recorded = Arc::try_unwrap(retired.entries).unwrap_or_else(|shared| (*shared).clone());
    // Per path, its index among the planned files and among the recorded entries: one lookup
    // per file on disk.
    let mut slots: HashMap<&str, Slot> = HashMap::with_capacity(files.len().max(recorded.len()));
    for (index, planned) in files.iter().enumerate() {
        slots.entry(planned.file.path.as_str()).or_default().planned = Some(index);
    }
    for (index, entry) in recorded.iter().enumerate() {
        slots.entry(entry.path.as_str()).or_default().recorded = Some(index);
    }
    // For each planned file, the recorded entry whose file is kept.
    let mut kept: Vec<Option<usize>> = vec![None; files.len()];
    let mut retired_tree = RetiredTree {
        files,
        recorded: &recorded,
        slots: &slots,
        kept: &mut kept,
    };
    retired_tree.prune(staging.path(), &mut String::new())?;
    drop(slots);
    let mut recorded: Vec<Option<Entry>> = recorded.into_iter().map(Some).collect();
    let mut stage = Stage::new(tree, staging, previous);
    let mut recycled = 0;
    for (index, planned) in files.iter().enumerate() {
        if let Some(entry) = kept[index].and_then(|old| recorded[old].take()) {
            recycled += 1;
            stage.entries.push(entry);
        } else {
            stage.place(planned)?;
        }
        files_written(index + 1);
    }
    let (entries, reused) = stage.into_place(root)?;
    tracing::debug!(
        kept = recycled,
        linked = reused,
        written = entries.len() - recycled - reused,
        "updated the retired artifact in place"
    );
    Ok(Written {
        entries,
        reused: reused + recycled,
    })
}

/// Where a path of the retired tree stands: its index among the planned files and among the
/// retired artifact's recorded entries.
#[derive(Clone, Copy, Default)]
struct Slot {
    planned: Option<usize>,
    recorded: Option<usize>,
}

/// The retired tree being pruned: what is planned, what was recorded, and what is kept.
struct RetiredTree<'a, H> {
    files: &'a [Planned<H>],
    recorded: &'a [Entry],
    slots: &'a HashMap<&'a str, Slot>,
    /// For each planned file, the recorded entry whose file is kept.
    kept: &'a mut [Option<usize>],
}

impl<H> RetiredTree<'_, H> {
    /// Walk the retired tree below `dir` (`prefix` is its path in the artifact, empty or ending
    /// in `/`; it is restored on return): keep the files planned with their recorded content and
    /// an unchanged stamp, remove every other entry, and remove the directories left empty.
    fn prune(&mut self, dir: &Path, prefix: &mut String) -> Result<(), ArtifactError> {
        for item in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let item = item.map_err(io_error(dir))?;
            let kind = item.file_type().map_err(|source| ArtifactError::Io {
                path: item.path(),
                source,
            })?;
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                // Never planned (every planned path is UTF-8): removed.
                let path = item.path();
                let removed = if kind.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(io_error(&path))?;
                continue;
            };
            let length = prefix.len();
            prefix.push_str(name);
            if kind.is_dir() {
                prefix.push('/');
                let path = item.path();
                let pruned = self.prune(&path, prefix);
                prefix.truncate(length);
                pruned?;
                // Fails while something is left in it: then it is still needed.
                let _ = std::fs::remove_dir(&path);
                continue;
            }
            let keep = kind.is_file() && self.keeps(prefix, &item);
            prefix.truncate(length);
            if !keep {
                let path = item.path();
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        Ok(())
    }

    /// Whether the regular file `item` at `path` is kept: planned, recorded with the same
    /// (mode, blob) and a stamp its inode still has. Records it as kept.
    fn keeps(&mut self, path: &str, item: &std::fs::DirEntry) -> bool {
        let Some(Slot {
            planned: Some(planned),
            recorded: Some(recorded),
        }) = self.slots.get(path).copied()
        else {
            return false;
        };
        let old = &self.recorded[recorded];
        let unchanged = old.stamp.is_some()
            && same_content(&self.files[planned], old)
            // Relative to the open directory (no path walk), not following a link.
            && item
                .metadata()
                .ok()
                .and_then(|metadata| Stamp::of(&metadata))
                == old.stamp;
        if unchanged {
            self.kept[planned] = Some(recorded);
        }
        unchanged
    }
}

/// A retired artifact handed to a fetch to be updated in place into the new one
/// ([`FetchRequest::with_recycle`](crate::FetchRequest::with_recycle)) instead of writing a new
/// tree: only the files whose (mode, blob) changed are touched. It holds the last handle to the
/// artifact (so no reader has it); a fetch that does not use it (an unchanged revision, a
/// failure before writing) leaves it here for [`take_back`](Self::take_back). Clones share the
/// one artifact.
///
/// ```
/// use gitops_source::{Artifact, Recycle, Revision};
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("cm.yaml"), "kind: ConfigMap\n")?;
/// let artifact = Artifact::from_dir(Revision::from_string("v1"), dir.path())?;
/// let held = artifact.clone();
/// // Someone else holds it: it cannot be recycled.
/// let artifact = Recycle::new(artifact).unwrap_err();
/// drop(held);
/// let recycle = Recycle::new(artifact).unwrap();
/// assert!(recycle.take_back().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Recycle(Arc<std::sync::Mutex<Option<Artifact>>>);

impl Recycle {
    /// Give up `artifact` for recycling; it is handed back as the error when another handle to
    /// it (a clone) still exists, since someone may be reading its files.
    ///
    /// ```
    /// use gitops_source::{Artifact, Recycle, Revision};
    /// let dir = tempfile::tempdir()?;
    /// let artifact = Artifact::from_dir(Revision::from_string("v1"), dir.path())?;
    /// assert!(Recycle::new(artifact).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The artifact itself when it is shared.
    #[allow(clippy::result_large_err)]
    pub fn new(artifact: Artifact) -> Result<Self, Artifact> {
        if Arc::strong_count(&artifact.entries) > 1 {
            return Err(artifact);
        }
        Ok(Self(Arc::new(std::sync::Mutex::new(Some(artifact)))))
    }

    /// The artifact, when no fetch used it (its directory is then untouched); `None` once a fetch
    /// took it (its directory became the new artifact, or was removed when that failed).
    ///
    /// ```
    /// use gitops_source::{Artifact, Recycle, Revision};
    /// let dir = tempfile::tempdir()?;
    /// let recycle = Recycle::new(Artifact::from_dir(Revision::from_string("v1"), dir.path())?).unwrap();
    /// assert!(recycle.take_back().is_some());
    /// assert!(recycle.take_back().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn take_back(&self) -> Option<Artifact> {
        self.take()
    }

    pub(crate) fn take(&self) -> Option<Artifact> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Open a new file for writing with its mode (the directory must exist). An existing file or link
/// at `target` is an error: nothing is ever overwritten or written through a link, so a file
/// shared with an older artifact is never changed.
fn new_file(target: &Path, executable: bool) -> io::Result<std::fs::File> {
    let mode = if executable {
        EXECUTABLE_MODE
    } else {
        FILE_MODE
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let file = options.open(target)?;
    // The process umask may have removed bits: set them exactly where it did.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let actual = file.metadata()?.permissions().mode() & 0o777;
        if actual != mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(file)
}

/// A new file being written from a tree: everything written is hashed and counted, and the
/// first write failure is kept, so that it is reported as the file's, not the tree's.
struct FileSink {
    file: std::fs::File,
    hasher: Sha256,
    written: u64,
    failure: Option<io::Error>,
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(error) = self.file.write_all(buf) {
            let kind = error.kind();
            self.failure.get_or_insert(error);
            return Err(io::Error::new(kind, "writing the artifact's file failed"));
        }
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Create `target` (see [`new_file`]) with the content of `handle` from `tree`, streamed where
/// the tree can (a large Git blob never is whole in memory); returns its SHA-256, size and stamp.
fn copy_new_file<T: FileTree>(
    tree: &T,
    handle: &T::Handle,
    path: &str,
    target: &Path,
    executable: bool,
) -> Result<([u8; 32], u64, Option<Stamp>), ArtifactError> {
    let io_error = |source| ArtifactError::Io {
        path: target.to_owned(),
        source,
    };
    let mut sink = FileSink {
        file: new_file(target, executable).map_err(io_error)?,
        hasher: Sha256::new(),
        written: 0,
        failure: None,
    };
    if let Err(error) = tree.copy_to(handle, path, &mut sink) {
        // The tree could not be read or the file not written; nothing half-written stays.
        let _ = std::fs::remove_file(target);
        return Err(match sink.failure.take() {
            Some(source) => io_error(source),
            None => ArtifactError::Select(error),
        });
    }
    let stamp = Stamp::of(&sink.file.metadata().map_err(io_error)?);
    Ok((sink.hasher.finalize().into(), sink.written, stamp))
}

/// Create a new file with its content and mode (see [`new_file`]) and return its stamp.
fn create_file(
    target: &Path,
    content: &[u8],
    executable: bool,
) -> Result<Option<Stamp>, ArtifactError> {
    let io_error = |source| ArtifactError::Io {
        path: target.to_owned(),
        source,
    };
    let mut file = new_file(target, executable).map_err(io_error)?;
    file.write_all(content).map_err(io_error)?;
    Ok(Stamp::of(&file.metadata().map_err(io_error)?))
}

fn write_file(target: &Path, content: &[u8], executable: bool) -> Result<(), ArtifactError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ArtifactError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    create_file(target, content, executable).map(|_| ())
}

#[cfg(all(unix, test))]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The files of one revision of a source, written to a directory, with their digest.
///
/// ```no_run
/// # async fn run(artifact: gitops_source::Artifact) -> Result<(), gitops_source::ArtifactError> {
/// artifact.verify()?; // recompute the digest from disk
/// let mut archive = Vec::new();
/// artifact.write_tar_gz(&mut archive)?; // reproducible: same files, same bytes
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Artifact {
    revision: Revision,
    digest: Digest,
    root: PathBuf,
    total_bytes: u64,
    entries: Arc<Vec<Entry>>,
    reused: usize,
    skipped: Vec<SkippedEntry>,
}

impl Artifact {
    /// The artifact of `entries` (sorted by path) written below `root`.
    pub(crate) fn new(revision: Revision, root: PathBuf, entries: Vec<Entry>) -> Self {
        Self {
            revision,
            digest: digest_of(&entries),
            root,
            total_bytes: entries.iter().map(|entry| entry.size).sum(),
            entries: Arc::new(entries),
            reused: 0,
            skipped: Vec::new(),
        }
    }

    /// The same artifact, listing `skipped` as the entries left out of it.
    pub(crate) fn with_skipped(mut self, skipped: Vec<SkippedEntry>) -> Self {
        self.skipped = skipped;
        self
    }

    /// The same artifact under another revision.
    pub(crate) fn with_revision(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    /// The same artifact, recording that `reused` files came from the previous one.
    pub(crate) fn with_reused(mut self, reused: usize) -> Self {
        self.reused = reused;
        self
    }

    /// The revision the files come from.
    #[must_use]
    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// The content digest of the files ([`Digest`] has its definition).
    #[must_use]
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The directory holding the files.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many files the artifact has.
    #[must_use]
    pub fn file_count(&self) -> usize {
        self.entries.len()
    }

    /// How many of its files were taken over from the previous artifact (hard-linked, or copied
    /// where linking was not possible) or kept from a recycled one instead of written from the
    /// source: see [`FetchRequest::with_previous`](crate::FetchRequest::with_previous) and
    /// [`FetchRequest::with_recycle`](crate::FetchRequest::with_recycle).
    ///
    /// ```no_run
    /// # fn show(artifact: &gitops_source::Artifact) {
    /// println!("{} of {} files reused", artifact.reused_files(), artifact.file_count());
    /// # }
    /// ```
    #[must_use]
    pub fn reused_files(&self) -> usize {
        self.reused
    }

    /// The paths of the files, sorted by their bytes, `/`-separated and relative to
    /// [`root`](Self::root), with whether each is executable.
    ///
    /// ```no_run
    /// # fn show(artifact: &gitops_source::Artifact) {
    /// for (path, executable) in artifact.files() {
    ///     println!("{path}{}", if executable { " (executable)" } else { "" });
    /// }
    /// # }
    /// ```
    pub fn files(&self) -> impl Iterator<Item = (&str, bool)> {
        self.entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry.executable))
    }

    /// The total size of the files' contents in bytes.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The entries of the source that were left out of the artifact although no ignore rule
    /// excluded them: symbolic links, submodules and special files, sorted by path (relative to
    /// the subpath). Each was also logged as a warning when the artifact was written.
    ///
    /// ```no_run
    /// # fn show(artifact: &gitops_source::Artifact) {
    /// for entry in artifact.skipped() {
    ///     eprintln!("warning: {entry} was left out of {}", artifact.revision());
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn skipped(&self) -> &[SkippedEntry] {
        &self.skipped
    }

    /// The artifact of the files a source of another crate wrote below `root` for `revision`
    /// (every regular file is part of it; links are left out): what an implementation of
    /// [`Source`](crate::Source) outside this crate returns in
    /// [`FetchOutcome::Fetched`](crate::FetchOutcome::Fetched).
    ///
    /// ```
    /// use gitops_source::{Artifact, Revision};
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("cm.yaml"), "kind: ConfigMap\n")?;
    /// let artifact = Artifact::from_dir(Revision::from_string("v1"), dir.path())?;
    /// assert_eq!((artifact.file_count(), artifact.total_bytes()), (1, 16));
    /// artifact.verify()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ArtifactError`] when the files cannot be read.
    pub fn from_dir(revision: Revision, root: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let root = root.into();
        // Not recorded for reuse (no stamps): these files were written by someone else.
        let entries = scan_disk(&root)?;
        Ok(Self::new(revision, root, entries))
    }

    /// Recompute the digest from the files on disk and compare it with the recorded one.
    ///
    /// # Errors
    /// [`ArtifactError::DigestMismatch`] when the files changed, [`ArtifactError`] when they
    /// cannot be read.
    pub fn verify(&self) -> Result<(), ArtifactError> {
        let actual = digest_of(&scan_disk(&self.root)?);
        self.check(actual)
    }

    fn check(&self, actual: Digest) -> Result<(), ArtifactError> {
        if actual != self.digest {
            return Err(ArtifactError::DigestMismatch {
                root: self.root.clone(),
                expected: self.digest,
                actual,
            });
        }
        Ok(())
    }

    /// Stream a reproducible tar.gz of the files (sorted, owner 0, time 0, modes 0644/0755, no
    /// links, gzip without name or time) into `writer`, reading each file from disk once; it is
    /// made only when asked for, never while fetching. Fails with
    /// [`ArtifactError::DigestMismatch`] (after the stream was written) when the files on disk
    /// were changed since the artifact was written.
    ///
    /// # Errors
    /// [`ArtifactError::DigestMismatch`], or [`ArtifactError`] when reading or writing fails.
    pub fn write_tar_gz<W: Write>(&self, writer: W) -> Result<(), ArtifactError> {
        let mut encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(writer, flate2::Compression::default());
        let actual = write_tar(&self.root, &mut encoder)?;
        encoder.finish().map_err(ArtifactError::Archive)?;
        self.check(actual)
    }
}

/// Write the deterministic tar of the regular files below `root` into `sink`, streaming each
/// file, and return the digest of what was archived.
fn write_tar<W: Write>(root: &Path, sink: W) -> Result<Digest, ArtifactError> {
    let tree = DiskTree {
        root: root.to_owned(),
    };
    let rules = IgnoreRules::default()
        .with_defaults(false)
        .with_source_ignore_files(false);
    let files = select_files(&tree, "", &rules).map_err(ArtifactError::Select)?;
    let mut builder = tar::Builder::new(sink);
    let mut entries = Vec::with_capacity(files.len());
    for file in files {
        let io_error = |source| ArtifactError::Io {
            path: file.handle.clone(),
            source,
        };
        let opened = std::fs::File::open(&file.handle).map_err(io_error)?;
        let size = opened.metadata().map_err(io_error)?.len();
        let mut reader = HashingReader {
            inner: opened.take(size),
            hasher: Sha256::new(),
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(if file.executable {
            EXECUTABLE_MODE
        } else {
            FILE_MODE
        });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(size);
        builder
            .append_data(&mut header, &file.path, &mut reader)
            .map_err(ArtifactError::Archive)?;
        entries.push(Entry {
            path: file.path,
            executable: file.executable,
            blob: None,
            sha256: reader.hasher.finalize().into(),
            size,
            stamp: None,
        });
    }
    builder.into_inner().map_err(ArtifactError::Archive)?;
    Ok(digest_of(&entries))
}

/// Limits for [`unpack_tar_gz`].
#[derive(Clone, Copy, Debug)]
pub struct UnpackLimits {
    max_total_bytes: u64,
}

impl Default for UnpackLimits {
    /// 100 MiB of uncompressed archive.
    fn default() -> Self {
        Self {
            max_total_bytes: 100 * 1024 * 1024,
        }
    }
}

impl UnpackLimits {
    /// Refuse archives whose uncompressed tar stream is larger than `bytes`.
    #[must_use]
    pub fn with_max_total_bytes(mut self, bytes: u64) -> Self {
        self.max_total_bytes = bytes;
        self
    }
}

/// A reader that fails once more than `limit` bytes went through it.
struct LimitedReader<R> {
    inner: R,
    remaining: u64,
    limit: u64,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if read as u64 > self.remaining {
            return Err(io::Error::other(LimitExceeded(self.limit)));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("more than {0} bytes")]
struct LimitExceeded(u64);

/// Unpack a tar.gz artifact into `target` (an absent or empty directory) and return the digest
/// of what was written, recomputed from disk, for comparison with the digest the producer announced.
///
/// Entries whose path is absolute or leaves the target, links, devices and archives larger than the
/// limit are refused; directory entries are created, file modes become 0644 or 0755.
///
/// ```no_run
/// use gitops_source::{UnpackLimits, unpack_tar_gz};
///
/// let archive = std::fs::File::open("artifact.tar.gz").unwrap();
/// let digest = unpack_tar_gz(archive, "/tmp/unpacked".as_ref(), UnpackLimits::default()).unwrap();
/// println!("{digest}");
/// ```
pub fn unpack_tar_gz<R: Read>(
    reader: R,
    target: &Path,
    limits: UnpackLimits,
) -> Result<Digest, ArtifactError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ArtifactError::Io { path, source }
    };
    std::fs::create_dir_all(target).map_err(io_error(target))?;
    let limited = LimitedReader {
        inner: flate2::read::GzDecoder::new(reader),
        remaining: limits.max_total_bytes,
        limit: limits.max_total_bytes,
    };
    let classify = |error: io::Error| {
        if error
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<LimitExceeded>().is_some())
        {
            ArtifactError::TooLarge {
                limit: limits.max_total_bytes,
            }
        } else {
            ArtifactError::Corrupt(error)
        }
    };
    let mut archive = tar::Archive::new(limited);
    for entry in archive.entries().map_err(classify)? {
        let mut entry = entry.map_err(classify)?;
        let raw_path = entry.path_bytes();
        let display = String::from_utf8_lossy(&raw_path).into_owned();
        let relative = safe_relative_path(&raw_path)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            if let Some(relative) = relative {
                let path = target.join(relative);
                std::fs::create_dir_all(&path).map_err(io_error(&path))?;
            }
            continue;
        }
        if !kind.is_file() {
            return Err(ArtifactError::UnsupportedEntry { path: display });
        }
        let Some(relative) = relative else {
            return Err(ArtifactError::UnsupportedEntry { path: display });
        };
        let executable = entry.header().mode().map_err(classify)? & 0o111 != 0;
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(classify)?;
        write_file(&target.join(relative), &content, executable)?;
    }
    // Drain the rest so that oversized trailing data is noticed too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(classify)?;
    Ok(digest_of(&scan_disk(target)?))
}

/// The relative path of an archive entry, checked by [`check_relative_path`]; `None` for the
/// archive root itself. Leading `./` and one trailing `/` (directories) are accepted.
fn safe_relative_path(raw: &[u8]) -> Result<Option<PathBuf>, ArtifactError> {
    let refused = |source| ArtifactError::PathEscapes {
        path: String::from_utf8_lossy(raw).into_owned(),
        source,
    };
    let path = std::str::from_utf8(raw).map_err(|_| {
        refused(PathError::NotUtf8 {
            name: crate::path::printable(raw),
        })
    })?;
    let mut path = path.strip_suffix('/').unwrap_or(path);
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    if path.is_empty() || path == "." {
        return Ok(None);
    }
    check_relative_path(path).map_err(refused)?;
    Ok(Some(PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, content: &str) {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    fn artifact_of(source: &Path, target: &Path) -> Artifact {
        artifact_after(source, target, None)
    }

    fn artifact_after(source: &Path, target: &Path, previous: Option<&Artifact>) -> Artifact {
        let (tree, planned) = plan(source);
        let written = write_artifact(&tree, planned, target, previous, None, |_| {}).unwrap();
        let entries = written.entries;
        Artifact::new(
            Revision::from_string(digest_of(&entries).to_string()),
            target.to_owned(),
            entries,
        )
        .with_reused(written.reused)
    }

    /// The digest's definition, pinned: any change here breaks every recorded digest.
    #[cfg(unix)]
    #[test]
    fn digest_of_a_fixed_tree_is_pinned() {
        let source = tempfile::tempdir().unwrap();
        write(source.path(), "a.yaml", "a: 1\n");
        write(source.path(), "b/run.sh", "#!/bin/sh\n");
        write(source.path(), "b/c.yaml", "c: 3\n");
        set_mode(&source.path().join("b/run.sh"), 0o755).unwrap();
        let out = tempfile::tempdir().unwrap();
        let artifact = artifact_of(source.path(), &out.path().join("a"));
        // `find . -type f | LC_ALL=C sort | ... | sha256sum`, as in the docs of `Digest`.
        let golden = "sha256:6bde312c96977e4eb4e758781bc1b0faf979cdb91b796fb92af262821d5b8fd9";
        assert_eq!(artifact.digest().to_string(), golden);
        assert_eq!(
            Artifact::from_dir(Revision::from_string("x"), source.path())
                .unwrap()
                .digest()
                .to_string(),
            golden
        );
        let mut archive = Vec::new();
        artifact.write_tar_gz(&mut archive).unwrap();
        let unpacked = out.path().join("unpacked");
        let digest = unpack_tar_gz(archive.as_slice(), &unpacked, UnpackLimits::default()).unwrap();
        assert_eq!(digest.to_string(), golden);
    }

    #[cfg(unix)]
    #[test]
    fn a_new_revision_links_unchanged_files_and_writes_changed_ones() {
        use std::os::unix::fs::MetadataExt;
        let ino = |path: &Path| std::fs::metadata(path).unwrap().ino();
        let source = tempfile::tempdir().unwrap();
        write(source.path(), "same.yaml", "same: 1\n");
        write(source.path(), "dir/changed.yaml", "changed: 1\n");
        write(source.path(), "run.sh", "#!/bin/sh\n");
        let out = tempfile::tempdir().unwrap();
        let old_root = out.path().join("1");
        let old = artifact_of(source.path(), &old_root);
        assert_eq!(old.reused_files(), 0);

        write(source.path(), "dir/changed.yaml", "changed: 2\n");
        // Same content, new mode: not the same file.
        set_mode(&source.path().join("run.sh"), 0o755).unwrap();
        let new_root = out.path().join("2");
        std::fs::create_dir(&new_root).unwrap(); // an empty destination is replaced
        let new = artifact_after(source.path(), &new_root, Some(&old));
        assert_eq!(new.reused_files(), 1);
        assert_eq!(
            ino(&old_root.join("same.yaml")),
            ino(&new_root.join("same.yaml"))
        );
        assert_ne!(
            ino(&old_root.join("dir/changed.yaml")),
            ino(&new_root.join("dir/changed.yaml"))
        );
        assert_ne!(ino(&old_root.join("run.sh")), ino(&new_root.join("run.sh")));
        // The old artifact is unchanged, the new one has the new content.
        old.verify().unwrap();
        new.verify().unwrap();
        assert_eq!(
            std::fs::read_to_string(old_root.join("dir/changed.yaml")).unwrap(),
            "changed: 1\n"
        );
        assert_eq!(
            std::fs::read_to_string(new_root.join("dir/changed.yaml")).unwrap(),
            "changed: 2\n"
        );
        assert_eq!(
            new.digest(),
            artifact_of(source.path(), &out.path().join("3")).digest()
        );
        // No staging directory is left beside the artifacts.
        let mut names: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["1", "2", "3"]);

        // A file of the previous artifact that was changed in place is not taken over.
        std::fs::write(new_root.join("same.yaml"), "tampered: true\n").unwrap();
        let after_tamper = artifact_after(source.path(), &out.path().join("4"), Some(&new));
        assert_eq!(after_tamper.reused_files(), 2, "only the untouched files");
        assert_eq!(
            std::fs::read_to_string(out.path().join("4/same.yaml")).unwrap(),
            "same: 1\n"
        );
        after_tamper.verify().unwrap();
        // A removed previous artifact is no error: everything is written.
        std::fs::remove_dir_all(&old_root).unwrap();
        let without = artifact_after(source.path(), &out.path().join("5"), Some(&old));
        assert_eq!(without.reused_files(), 0);
        assert_eq!(without.digest(), new.digest());
    }

    #[test]
    fn a_failed_write_leaves_no_partial_tree() {
        let source = tempfile::tempdir().unwrap();
        write(source.path(), "a.yaml", "a: 1\n");
        let out = tempfile::tempdir().unwrap();
        let tree = DiskTree {
            root: source.path().to_owned(),
        };
        let mut files = select_files(&tree, "", &IgnoreRules::default()).unwrap();
        files.push(SelectedFile {
            path: "../escape.yaml".to_owned(),
            executable: false,
            handle: source.path().join("a.yaml"),
        });
        let planned = files
            .into_iter()
            .map(|file| Planned {
                file,
                blob: None,
                sha256: None,
            })
            .collect();
        let target = out.path().join("t");
        let error = write_artifact(&tree, planned, &target, None, None, |_| {})
            .err()
            .unwrap();
        assert!(
            matches!(error, ArtifactError::PathEscapes { .. }),
            "{error:?}"
        );
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }

    fn plan(source: &Path) -> (DiskTree, Vec<Planned<PathBuf>>) {
        let tree = DiskTree {
            root: source.to_owned(),
        };
        let files = select_files(&tree, "", &IgnoreRules::default()).unwrap();
        let planned = files
            .into_iter()
            .map(|file| Planned {
                sha256: Some(sha256(&std::fs::read(&file.handle).unwrap())),
                file,
                blob: None,
            })
            .collect();
        (tree, planned)
    }

    fn recycled(
        source: &Path,
        target: &Path,
        previous: &Artifact,
        recycle: &Recycle,
    ) -> Result<Artifact, ArtifactError> {
        let (tree, planned) = plan(source);
        let written = write_artifact(
            &tree,
            planned,
            target,
            Some(previous),
            Some(recycle),
            |_| {},
        )?;
        let entries = written.entries;
        Ok(Artifact::new(
            Revision::from_string(digest_of(&entries).to_string()),
            target.to_owned(),
            entries,
        )
        .with_reused(written.reused))
    }

    #[cfg(unix)]
    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).unwrap().ino()
    }

    /// Revisions 1 and 2 of a tree (2 changes `b/c.yaml`), then the source changed for
    /// revision 3 (`a.yaml` changed, `gone/x.yaml` removed, `new/n.yaml` added).
    fn two_revisions(source: &Path, out: &Path) -> (Artifact, Artifact) {
        write(source, "a.yaml", "a: 1\n");
        write(source, "b/c.yaml", "c: 1\n");
        write(source, "d/e.yaml", "e: 1\n");
        write(source, "gone/x.yaml", "x: 1\n");
        let first = artifact_of(source, &out.join("1"));
        write(source, "b/c.yaml", "c: 2\n");
        let second = artifact_after(source, &out.join("2"), Some(&first));
        write(source, "a.yaml", "a: 3\n");
        std::fs::remove_dir_all(source.join("gone")).unwrap();
        write(source, "new/n.yaml", "n: 3\n");
        (first, second)
    }

    #[cfg(unix)]
    #[test]
    fn recycling_touches_only_changed_paths_and_not_the_current_artifact() {
        let source = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (first, second) = two_revisions(source.path(), out.path());
        let kept_inode = inode(&out.path().join("1/d/e.yaml"));
        let old_a = inode(&out.path().join("1/a.yaml"));
        let current_c = inode(&out.path().join("2/b/c.yaml"));
        let second_files: Vec<_> = ["a.yaml", "b/c.yaml", "d/e.yaml", "gone/x.yaml"]
            .iter()
            .map(|path| (inode(&out.path().join("2").join(path)), *path))
            .collect();
        let recycle = Recycle::new(first).unwrap();
        let third = recycled(source.path(), &out.path().join("3"), &second, &recycle).unwrap();
        assert!(
            recycle.take_back().is_none(),
            "the retired artifact was used"
        );
        assert!(
            !out.path().join("1").exists(),
            "renamed into the new artifact"
        );
        let root = out.path().join("3");
        assert_eq!(inode(&root.join("d/e.yaml")), kept_inode, "unchanged: kept");
        assert_ne!(inode(&root.join("a.yaml")), old_a, "changed: a new inode");
        assert_eq!(
            inode(&root.join("b/c.yaml")),
            current_c,
            "linked from current"
        );
        assert!(!root.join("gone").exists(), "emptied directory removed");
        assert_eq!(
            std::fs::read_to_string(root.join("a.yaml")).unwrap(),
            "a: 3\n"
        );
        assert_eq!(third.reused_files(), 2);
        third.verify().unwrap();
        let fresh = artifact_of(source.path(), &out.path().join("fresh"));
        assert_eq!(third.digest(), fresh.digest());
        // The artifact in use was not touched: same inodes, same content.
        second.verify().unwrap();
        for (ino, path) in second_files {
            assert_eq!(inode(&out.path().join("2").join(path)), ino, "{path}");
        }
        assert_eq!(
            std::fs::read_to_string(out.path().join("2/a.yaml")).unwrap(),
            "a: 1\n"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_tampered_with_in_the_retired_tree_is_rewritten() {
        let source = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (first, second) = two_revisions(source.path(), out.path());
        // Replaced (a new inode, same size) and a file added.
        let tampered = out.path().join("1/d/e.yaml");
        std::fs::remove_file(&tampered).unwrap();
        std::fs::write(&tampered, "e: 9\n").unwrap();
        write(&out.path().join("1"), "extra.yaml", "extra: 1\n");
        let recycle = Recycle::new(first).unwrap();
        let third = recycled(source.path(), &out.path().join("3"), &second, &recycle).unwrap();
        let root = out.path().join("3");
        assert_eq!(
            std::fs::read_to_string(root.join("d/e.yaml")).unwrap(),
            "e: 1\n"
        );
        assert!(!root.join("extra.yaml").exists());
        third.verify().unwrap();
        second.verify().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_file_rewritten_in_place_in_the_retired_tree_and_foreign_names_do_not_survive() {
        use std::io::Write as _;
        use std::os::unix::ffi::OsStrExt as _;
        let source = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (first, second) = two_revisions(source.path(), out.path());
        // The same inode, the same size, another content (only its modification time tells).
        let rewritten = out.path().join("1/d/e.yaml");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&rewritten)
            .unwrap()
            .write_all(b"e: 9\n")
            .unwrap();
        // A name that is not UTF-8 (never planned), a file and a directory.
        let odd = std::ffi::OsStr::from_bytes(b"odd-\xff");
        std::fs::write(out.path().join("1/d").join(odd), "x").unwrap();
        std::fs::create_dir(out.path().join("1").join(odd)).unwrap();
        std::fs::write(out.path().join("1").join(odd).join("x.yaml"), "x").unwrap();
        let recycle = Recycle::new(first).unwrap();
        let third = recycled(source.path(), &out.path().join("3"), &second, &recycle).unwrap();
        let root = out.path().join("3");
        assert_eq!(
            std::fs::read_to_string(root.join("d/e.yaml")).unwrap(),
            "e: 1\n"
        );
        assert!(!root.join("d").join(odd).exists());
        assert!(!root.join(odd).exists());
        third.verify().unwrap();
        let fresh = artifact_of(source.path(), &out.path().join("fresh"));
        assert_eq!(third.digest(), fresh.digest());
        // (`second` shares that inode with the retired tree: the rewrite changed it too, and its
        // own verification would say so.)
    }

    #[cfg(unix)]
    #[test]
    fn a_failure_halfway_leaves_the_current_artifact_and_the_next_fetch_is_right() {
        let source = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (first, second) = two_revisions(source.path(), out.path());
        let (tree, planned) = plan(source.path());
        // The changed file cannot be read any more when it is written (after the pruning).
        std::fs::remove_file(source.path().join("a.yaml")).unwrap();
        let recycle = Recycle::new(first).unwrap();
        let target = out.path().join("3");
        let error = write_artifact(
            &tree,
            planned,
            &target,
            Some(&second),
            Some(&recycle),
            |_| {},
        )
        .err()
        .unwrap();
        assert!(matches!(error, ArtifactError::Select(_)), "{error:?}");
        assert!(!target.exists());
        second.verify().unwrap();
        // Only the artifact in use is left (no staging directory, the retired tree is gone).
        let left: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left, ["2"]);
        write(source.path(), "a.yaml", "a: 3\n");
        let next = artifact_after(source.path(), &target, Some(&second));
        next.verify().unwrap();
        let fresh = artifact_of(source.path(), &out.path().join("fresh"));
        assert_eq!(next.digest(), fresh.digest());
    }

    #[cfg(unix)]
    #[test]
    fn a_retired_artifact_still_held_is_not_recycled() {
        let source = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (first, second) = two_revisions(source.path(), out.path());
        let reader = first.clone();
        let first = Recycle::new(first).unwrap_err();
        // The store's fallback: a new tree with links from the artifact in use.
        let third = artifact_after(source.path(), &out.path().join("3"), Some(&second));
        assert_eq!(third.reused_files(), 2);
        third.verify().unwrap();
        first.verify().unwrap();
        reader.verify().unwrap();
    }

    #[test]
    fn digest_is_deterministic_and_content_sensitive() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        for dir in [one.path(), two.path()] {
            write(dir, "b/x.yaml", "x: 1\n");
            write(dir, "a.yaml", "a: 1\n");
        }
        let out = tempfile::tempdir().unwrap();
        let first = artifact_of(one.path(), &out.path().join("1"));
        let second = artifact_of(two.path(), &out.path().join("2"));
        assert_eq!(first.digest(), second.digest());
        assert_eq!(first.file_count(), 2);
        assert_eq!(first.total_bytes(), 10);
        assert!(first.digest().to_string().starts_with("sha256:"));
        assert_eq!(first.digest().to_string().len(), 7 + 64);

        write(two.path(), "a.yaml", "a: 2\n");
        let third = artifact_of(two.path(), &out.path().join("3"));
        assert_ne!(first.digest(), third.digest());
    }

    #[cfg(unix)]
    #[test]
    fn executable_bit_changes_digest_and_survives_round_trip() {
        use std::os::unix::fs::PermissionsExt;
        let source = tempfile::tempdir().unwrap();
        write(source.path(), "run.sh", "#!/bin/sh\n");
        let out = tempfile::tempdir().unwrap();
        let plain = artifact_of(source.path(), &out.path().join("plain"));
        set_mode(&source.path().join("run.sh"), 0o700).unwrap();
        let executable = artifact_of(source.path(), &out.path().join("exec"));
        assert_ne!(plain.digest(), executable.digest());
        let mode = std::fs::metadata(out.path().join("exec/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);

        let mut archive = Vec::new();
        executable.write_tar_gz(&mut archive).unwrap();
        let unpacked = out.path().join("unpacked");
        let digest = unpack_tar_gz(archive.as_slice(), &unpacked, UnpackLimits::default()).unwrap();
        assert_eq!(digest, executable.digest());
        let mode = std::fs::metadata(unpacked.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn tar_gz_is_reproducible_and_verified() {
        let source = tempfile::tempdir().unwrap();
        let long_name = format!("{}/file.yaml", "d".repeat(150));
        write(source.path(), &long_name, "long: path\n");
        write(source.path(), "top.yaml", "top: 1\n");
        let out = tempfile::tempdir().unwrap();
        let artifact = artifact_of(source.path(), &out.path().join("a"));
        let mut first = Vec::new();
        artifact.write_tar_gz(&mut first).unwrap();
        let mut second = Vec::new();
        artifact.write_tar_gz(&mut second).unwrap();
        assert_eq!(first, second);
        artifact.verify().unwrap();

        let unpacked = out.path().join("unpacked");
        let digest = unpack_tar_gz(first.as_slice(), &unpacked, UnpackLimits::default()).unwrap();
        assert_eq!(digest, artifact.digest());
        assert_eq!(
            std::fs::read_to_string(unpacked.join(&long_name)).unwrap(),
            "long: path\n"
        );

        write(&out.path().join("a"), "top.yaml", "tampered: true\n");
        assert!(matches!(
            artifact.verify(),
            Err(ArtifactError::DigestMismatch { .. })
        ));
        assert!(matches!(
            artifact.write_tar_gz(Vec::new()),
            Err(ArtifactError::DigestMismatch { .. })
        ));
    }

    /// A raw tar.gz with one entry, bypassing the tar crate's own path checks.
    fn raw_archive(path: &str, kind: tar::EntryType, content: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        {
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        if kind == tar::EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, content).unwrap();
        let tar = builder.into_inner().unwrap();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&tar).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn unpack_refuses_escaping_paths_links_and_oversize() {
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("t");
        for path in [
            "../evil.yaml",
            "/etc/evil.yaml",
            "a/../../evil.yaml",
            ".git/config",
            "a/.GIT/hooks/pre-commit",
            "a/git~1/config",
            "a\\..\\..\\evil.yaml",
            "forged\nERROR line.yaml",
        ] {
            let archive = raw_archive(path, tar::EntryType::Regular, b"x");
            let error =
                unpack_tar_gz(archive.as_slice(), &target, UnpackLimits::default()).unwrap_err();
            assert!(
                matches!(error, ArtifactError::PathEscapes { .. }),
                "{path}: {error:?}"
            );
            assert!(!error.to_string().contains('\n'), "{error}");
        }
        assert!(!out.path().join("evil.yaml").exists());
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

        // A second entry for the same path never overwrites the first.
        let mut builder = tar::Builder::new(Vec::new());
        for content in [&b"first"[..], b"second"] {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(content.len() as u64);
            builder
                .append_data(&mut header, "twice.yaml", content)
                .unwrap();
        }
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&builder.into_inner().unwrap()).unwrap();
        let archive = encoder.finish().unwrap();
        let twice = out.path().join("twice");
        let error = unpack_tar_gz(archive.as_slice(), &twice, UnpackLimits::default()).unwrap_err();
        assert!(matches!(error, ArtifactError::Io { .. }), "{error:?}");
        assert_eq!(std::fs::read(twice.join("twice.yaml")).unwrap(), b"first");

        // A leading `./` is harmless.
        let archive = raw_archive("./ok.yaml", tar::EntryType::Regular, b"x");
        unpack_tar_gz(
            archive.as_slice(),
            &out.path().join("dot"),
            UnpackLimits::default(),
        )
        .unwrap();
        assert!(out.path().join("dot/ok.yaml").is_file());

        let archive = raw_archive("link.yaml", tar::EntryType::Symlink, b"");
        let error =
            unpack_tar_gz(archive.as_slice(), &target, UnpackLimits::default()).unwrap_err();
        assert!(
            matches!(error, ArtifactError::UnsupportedEntry { .. }),
            "{error:?}"
        );

        let archive = raw_archive("big.yaml", tar::EntryType::Regular, &vec![b'a'; 64 * 1024]);
        let error = unpack_tar_gz(
            archive.as_slice(),
            &out.path().join("big"),
            UnpackLimits::default().with_max_total_bytes(16 * 1024),
        )
        .unwrap_err();
        assert!(
            matches!(error, ArtifactError::TooLarge { limit: 16384 }),
            "{error:?}"
        );

        let error = unpack_tar_gz(
            &b"not gzip at all"[..],
            &out.path().join("bad"),
            UnpackLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(error, ArtifactError::Corrupt(_)), "{error:?}");
    }
}
