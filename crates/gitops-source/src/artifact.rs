//! Artifacts: the selected files of a revision on disk, their content digest over a deterministic
//! tar archive, a reproducible tar.gz export, and a safe unpacker.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use gitops_core::escape::{Escaped, EscapedPath};
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

/// A content digest, `sha256:<hex>`, over the uncompressed deterministic tar archive of an
/// artifact's files (sorted paths, owner 0, time 0, modes 0644 or 0755, regular files only).
///
/// The digest does not depend on the compression, so the same files always give the same digest.
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
        use fmt::Write as _;
        self.0
            .iter()
            .fold(String::with_capacity(64), |mut out, byte| {
                let _ = write!(out, "{byte:02x}");
                out
            })
    }
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

/// Writes the deterministic archive of a sorted file list into `sink`, calling `on_file` for each
/// file with its content (to write it to disk as well), and returns the digest.
pub(crate) fn archive_files<T: FileTree, W: Write>(
    tree: &T,
    files: &[SelectedFile<T::Handle>],
    sink: W,
    mut on_file: impl FnMut(&SelectedFile<T::Handle>, &[u8]) -> Result<(), ArtifactError>,
) -> Result<(Digest, u64), ArtifactError> {
    let hashing = HashingWriter {
        inner: sink,
        hasher: Sha256::new(),
        written: 0,
    };
    let mut builder = tar::Builder::new(hashing);
    let mut total = 0u64;
    for file in files {
        let content = tree
            .read(&file.handle, &file.path)
            .map_err(ArtifactError::Select)?;
        on_file(file, &content)?;
        total += content.len() as u64;
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
        header.set_size(content.len() as u64);
        builder
            .append_data(&mut header, &file.path, content.as_slice())
            .map_err(ArtifactError::Archive)?;
    }
    let hashing = builder.into_inner().map_err(ArtifactError::Archive)?;
    let digest = Digest(hashing.hasher.finalize().into());
    Ok((digest, total))
}

/// Write each selected file below `root`, with mode 0644 or 0755, and return the digest.
/// `files_written` is called after each file with the number written so far.
pub(crate) fn write_artifact<T: FileTree>(
    tree: &T,
    files: &[SelectedFile<T::Handle>],
    root: &Path,
    mut files_written: impl FnMut(usize),
) -> Result<(Digest, u64), ArtifactError> {
    let mut created = std::collections::HashSet::new();
    let mut written = 0;
    archive_files(tree, files, io::sink(), |file, content| {
        // Every source checks its entries while listing them; this is the last line of defence
        // before a path is joined to the destination.
        check_relative_path(&file.path).map_err(|source| ArtifactError::PathEscapes {
            path: file.path.clone(),
            source,
        })?;
        let target = root.join(&file.path);
        if let Some(parent) = target.parent()
            && !created.contains(parent)
        {
            std::fs::create_dir_all(parent).map_err(|source| ArtifactError::Io {
                path: parent.to_owned(),
                source,
            })?;
            created.insert(parent.to_owned());
        }
        create_file(&target, content, file.executable)?;
        written += 1;
        files_written(written);
        Ok(())
    })
}

/// Create a new file with its content and mode (the directory must exist). An existing file or
/// link at `target` is an error: nothing is ever overwritten or written through a link.
fn create_file(target: &Path, content: &[u8], executable: bool) -> Result<(), ArtifactError> {
    let io_error = |source| ArtifactError::Io {
        path: target.to_owned(),
        source,
    };
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
    let mut file = options.open(target).map_err(io_error)?;
    file.write_all(content).map_err(io_error)?;
    // The process umask may have removed bits: set them exactly where it did.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let actual = file.metadata().map_err(io_error)?.permissions().mode() & 0o777;
        if actual != mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io_error)?;
        }
    }
    Ok(())
}

fn write_file(target: &Path, content: &[u8], executable: bool) -> Result<(), ArtifactError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ArtifactError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    create_file(target, content, executable)
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
    file_count: usize,
    total_bytes: u64,
    skipped: Vec<SkippedEntry>,
}

impl Artifact {
    pub(crate) fn new(
        revision: Revision,
        digest: Digest,
        root: PathBuf,
        file_count: usize,
        total_bytes: u64,
    ) -> Self {
        Self {
            revision,
            digest,
            root,
            file_count,
            total_bytes,
            skipped: Vec::new(),
        }
    }

    /// The same artifact, listing `skipped` as the entries left out of it.
    pub(crate) fn with_skipped(mut self, skipped: Vec<SkippedEntry>) -> Self {
        self.skipped = skipped;
        self
    }

    /// The revision the files come from.
    #[must_use]
    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// The content digest of the files.
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
        self.file_count
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
        let tree = DiskTree { root: root.clone() };
        let rules = IgnoreRules::default()
            .with_defaults(false)
            .with_source_ignore_files(false);
        let files = select_files(&tree, "", &rules).map_err(ArtifactError::Select)?;
        let (digest, total_bytes) = archive_files(&tree, &files, io::sink(), |_, _| Ok(()))?;
        Ok(Self::new(revision, digest, root, files.len(), total_bytes))
    }

    /// Recompute the digest from the files on disk and compare it with the recorded one.
    pub fn verify(&self) -> Result<(), ArtifactError> {
        self.write_archive(io::sink())
    }

    /// Write a reproducible tar.gz of the files (sorted, owner 0, time 0, modes 0644/0755, no
    /// links, gzip without name or time). Fails with [`ArtifactError::DigestMismatch`] when the
    /// files on disk were changed since the artifact was written.
    pub fn write_tar_gz<W: Write>(&self, writer: W) -> Result<(), ArtifactError> {
        let mut encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(writer, flate2::Compression::default());
        self.write_archive(&mut encoder)?;
        encoder.finish().map_err(ArtifactError::Archive)?;
        Ok(())
    }

    fn write_archive<W: Write>(&self, sink: W) -> Result<(), ArtifactError> {
        let tree = DiskTree {
            root: self.root.clone(),
        };
        let rules = IgnoreRules::default()
            .with_defaults(false)
            .with_source_ignore_files(false);
        let files = select_files(&tree, "", &rules).map_err(ArtifactError::Select)?;
        let (actual, _) = archive_files(&tree, &files, sink, |_, _| Ok(()))?;
        if actual != self.digest {
            return Err(ArtifactError::DigestMismatch {
                root: self.root.clone(),
                expected: self.digest,
                actual,
            });
        }
        Ok(())
    }
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
    let tree = DiskTree {
        root: target.to_owned(),
    };
    let rules = IgnoreRules::default()
        .with_defaults(false)
        .with_source_ignore_files(false);
    let files = select_files(&tree, "", &rules).map_err(ArtifactError::Select)?;
    let (digest, _) = archive_files(&tree, &files, io::sink(), |_, _| Ok(()))?;
    Ok(digest)
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
        let tree = DiskTree {
            root: source.to_owned(),
        };
        let files = select_files(&tree, "", &IgnoreRules::default()).unwrap();
        let (digest, bytes) = write_artifact(&tree, &files, target, |_| {}).unwrap();
        Artifact::new(
            Revision::from_string(digest.to_string()),
            digest,
            target.to_owned(),
            files.len(),
            bytes,
        )
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
