//! Selecting the files of an artifact: a subpath, `.sourceignore` files, caller patterns and
//! default rules, applied the same way to a directory on disk and to a Git tree.

use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use gitops_core::escape::Escaped;

use crate::path::{MAX_DEPTH, MAX_PATH_BYTES, PathError, check_entry_name};
use crate::source::{BoxError, Sparse};

/// The name of the ignore files read from every selected directory.
pub const SOURCE_IGNORE_FILE: &str = ".sourceignore";

/// Default exclusions: version control metadata, CI configuration, archives and images, except
/// the archives of vendored Helm dependencies.
const DEFAULT_PATTERNS: &[&str] = &[
    // Version control metadata.
    ".git/",
    ".gitignore",
    ".gitmodules",
    ".gitattributes",
    ".hg/",
    ".svn/",
    // Continuous integration configuration.
    ".github/",
    ".gitlab-ci.yml",
    ".circleci/",
    ".travis.yml",
    ".drone.yml",
    "appveyor.yml",
    "Jenkinsfile",
    "cloudbuild.yaml",
    ".buildkite/",
    // Archives and images, which are never configuration.
    "*.tar",
    "*.tar.gz",
    "*.tgz",
    "*.zip",
    "*.jpg",
    "*.jpeg",
    "*.png",
    "*.gif",
    "*.ico",
    "*.webp",
    // Except vendored Helm dependencies: `helm dependency build` writes each one as an archive
    // directly in the chart's `charts/` directory, and a chart that commits them needs them.
    // Any `charts/` directory qualifies, whether or not a `Chart.yaml` sits beside it: helm
    // only looks there inside a chart, and the rule stays the same for every subpath.
    "!**/charts/*.tgz",
    "!**/charts/*.tar.gz",
];

/// Which files of a source go into its artifact, in gitignore syntax.
///
/// Precedence, strongest first: the caller's patterns, `.sourceignore` files (a deeper file before
/// the ones above it), then the defaults (VCS metadata, CI files, archives and images). A later
/// `!pattern` can re-include what an earlier rule of the same file excluded, as in git.
///
/// The defaults keep the archives of vendored Helm dependencies: a `*.tgz` or `*.tar.gz` directly
/// in a directory named `charts` (what `helm dependency build` writes) stays, while other
/// archives are left out. A caller pattern or a `.sourceignore` file can still exclude them.
///
/// ```
/// use gitops_source::IgnoreRules;
///
/// let rules = IgnoreRules::default()
///     .with_pattern("*.md")
///     .with_pattern("!README.md");
/// assert_eq!(rules.patterns().len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct IgnoreRules {
    defaults: bool,
    read_source_ignore_files: bool,
    patterns: Vec<String>,
}

impl Default for IgnoreRules {
    fn default() -> Self {
        Self {
            defaults: true,
            read_source_ignore_files: true,
            patterns: Vec::new(),
        }
    }
}

impl IgnoreRules {
    /// Add one caller pattern (gitignore syntax, relative to the selected subpath's repository root).
    #[must_use]
    pub fn with_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Add caller patterns, one per line, as in a `.gitignore` file.
    #[must_use]
    pub fn with_patterns_text(mut self, text: &str) -> Self {
        self.patterns.extend(text.lines().map(str::to_owned));
        self
    }

    /// Whether the default exclusions apply (they do unless turned off).
    #[must_use]
    pub fn with_defaults(mut self, enabled: bool) -> Self {
        self.defaults = enabled;
        self
    }

    /// Whether `.sourceignore` files are read (they are unless turned off).
    #[must_use]
    pub fn with_source_ignore_files(mut self, enabled: bool) -> Self {
        self.read_source_ignore_files = enabled;
        self
    }

    /// The caller patterns.
    #[must_use]
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// Why selecting files failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// The subpath does not exist or is not a directory.
    #[error(
        "subpath \"{}\" does not exist or is not a directory in the source",
        Escaped(subpath)
    )]
    SubpathNotFound {
        /// The subpath as requested.
        subpath: String,
    },
    /// The subpath is absolute or leaves the source with `..`.
    #[error(
        "subpath \"{}\" must be relative and stay inside the source",
        Escaped(subpath)
    )]
    InvalidSubpath {
        /// The subpath as requested.
        subpath: String,
    },
    /// A pattern in an ignore file or in the caller's rules is invalid.
    #[error(
        "{}:{line}: invalid ignore pattern \"{}\"",
        Escaped(origin),
        Escaped(pattern)
    )]
    InvalidPattern {
        /// The file holding the pattern, or `caller patterns`.
        origin: String,
        /// The line number, starting at 1.
        line: usize,
        /// The pattern.
        pattern: String,
        /// The parser's complaint.
        #[source]
        source: ignore::Error,
    },
    /// Reading a directory, a file or a Git object failed.
    #[error("cannot read {}", Escaped(path))]
    Read {
        /// The path inside the source.
        path: String,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// A path in the source is not valid UTF-8 (artifacts use UTF-8 paths).
    #[error("path \"{}\" is not valid UTF-8", Escaped(path))]
    NonUtf8Path {
        /// The path, lossily converted.
        path: String,
    },
    /// A tree or directory holds an entry whose name could write outside the artifact or into
    /// git's metadata ([`crate::path::check_entry_name`]). Nothing was written.
    #[error("{origin}: refusing entry \"{entry}\" (nothing was written)")]
    UnsafeEntry {
        /// Where the entry comes from: `commit <sha1>` or `directory <path>`, escaped for printing.
        origin: String,
        /// The entry's path inside the tree, escaped for printing.
        entry: String,
        /// Why the name is refused.
        #[source]
        source: PathError,
    },
}

/// Why an entry of a source was left out of its artifact although no ignore rule excluded it.
///
/// Artifacts hold regular files and directories only, as Flux's do: a symbolic link is neither
/// followed nor copied, and a submodule's commit (which lives in another repository) is not
/// fetched. Such entries are listed by [`Artifact::skipped`](crate::Artifact::skipped) and logged
/// as warnings, so that a repository relying on them does not lose files silently.
///
/// ```
/// use gitops_source::SkipReason;
///
/// assert_eq!(SkipReason::Symlink.to_string(), "symbolic link");
/// assert_eq!(SkipReason::Submodule.to_string(), "submodule");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// A symbolic link (a Git tree entry of mode 120000, or a link on disk).
    Symlink,
    /// A Git submodule: a tree entry of mode 160000 naming a commit of another repository.
    Submodule,
    /// On disk, an entry that is neither a file, a directory nor a link: a FIFO, a socket, a
    /// device.
    Special,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::Symlink => "symbolic link",
            SkipReason::Submodule => "submodule",
            SkipReason::Special => "special file",
        })
    }
}

/// An entry of a source left out of its artifact, and why ([`SkipReason`]).
///
/// Its [`Display`](std::fmt::Display) form prints the path escaped
/// ([`gitops_core::escape::Escaped`]), as it comes from the repository.
///
/// ```no_run
/// use gitops_source::{FetchOutcome, FetchRequest, LocalDirectorySource, Source};
///
/// # async fn run() -> Result<(), gitops_source::SourceError> {
/// let source = LocalDirectorySource::new("./deploy");
/// if let FetchOutcome::Fetched(artifact) = source.fetch(FetchRequest::new("/tmp/out")).await? {
///     for entry in artifact.skipped() {
///         eprintln!("left out: {entry}"); // e.g. `app/config.yaml (symbolic link)`
///         let _ = (entry.path(), entry.reason());
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SkippedEntry {
    path: String,
    reason: SkipReason,
}

impl SkippedEntry {
    /// The entry's path relative to the selected subpath, `/`-separated, as in the artifact
    /// (unescaped: print it through [`gitops_core::escape::Escaped`] or this type's `Display`).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Why it was left out.
    #[must_use]
    pub fn reason(&self) -> SkipReason {
        self.reason
    }
}

impl std::fmt::Display for SkippedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", Escaped(&self.path), self.reason)
    }
}

/// At most this many skipped entries are logged one by one; the rest are counted in one line.
const MAX_SKIPPED_WARNINGS: usize = 20;

/// Log a warning for each entry of `skipped` (up to [`MAX_SKIPPED_WARNINGS`], then a count),
/// naming `source` (already printable: a redacted URL or an escaped path) and `revision`.
pub(crate) fn warn_skipped(source: &str, revision: &str, skipped: &[SkippedEntry]) {
    for entry in skipped.iter().take(MAX_SKIPPED_WARNINGS) {
        tracing::warn!(
            %source,
            %revision,
            path = %Escaped(&entry.path),
            reason = %entry.reason,
            "entry left out of the artifact: artifacts hold only regular files and directories"
        );
    }
    if skipped.len() > MAX_SKIPPED_WARNINGS {
        tracing::warn!(
            %source,
            %revision,
            more = skipped.len() - MAX_SKIPPED_WARNINGS,
            "more entries left out of the artifact (links, submodules or special files); \
             Artifact::skipped lists them all"
        );
    }
}

/// The kind of an entry of a [`FileTree`] directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file.
    File {
        /// Whether any executable bit is set.
        executable: bool,
    },
    /// A directory.
    Directory,
    /// Something that never goes into an artifact: a symlink, a submodule, a device.
    Skipped(SkipReason),
}

/// One entry of a [`FileTree`] directory.
#[derive(Clone, Debug)]
pub(crate) struct TreeEntry<H> {
    pub(crate) name: String,
    pub(crate) kind: EntryKind,
    pub(crate) handle: H,
}

/// A tree of files: a directory on disk or a Git tree.
pub(crate) trait FileTree {
    /// How entries are found again (a path, an object id).
    type Handle: Clone;
    /// The root directory.
    fn root(&self) -> Self::Handle;
    /// The entries of a directory; `path` is its path inside the tree, for error messages.
    fn list(
        &self,
        dir: &Self::Handle,
        path: &str,
    ) -> Result<Vec<TreeEntry<Self::Handle>>, SelectError>;
    /// The content of a file.
    fn read(&self, file: &Self::Handle, path: &str) -> Result<Vec<u8>, SelectError>;
    /// Write the content of a file to `out` (a tree that can stream a large file does so in
    /// bounded memory; by default it is read whole). A failure of `out` is reported as an error
    /// too, but the caller, which owns `out`, knows it for what it is.
    fn copy_to(
        &self,
        file: &Self::Handle,
        path: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<(), SelectError> {
        let content = self.read(file, path)?;
        out.write_all(&content).map_err(|source| SelectError::Read {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }
    /// Where the tree comes from, for errors: `commit <sha1>`, `directory <path>`.
    fn origin(&self) -> String;

    /// The error for an entry `name` (raw bytes) of the directory at `dir_path` that
    /// [`check_entry_name`] refused.
    fn unsafe_entry(&self, dir_path: &str, name: &[u8], source: PathError) -> SelectError {
        let name = crate::path::printable(name);
        SelectError::UnsafeEntry {
            origin: self.origin(),
            entry: if dir_path.is_empty() {
                name
            } else {
                format!("{}/{name}", Escaped(dir_path))
            },
            source,
        }
    }
}

/// A file chosen for an artifact.
#[derive(Clone, Debug)]
pub(crate) struct SelectedFile<H> {
    /// Path relative to the subpath, `/`-separated.
    pub(crate) path: String,
    pub(crate) executable: bool,
    pub(crate) handle: H,
}

/// Matchers in increasing precedence; each knows its directory (`/`-rooted virtual path).
struct RuleStack {
    layers: Vec<(String, Gitignore)>,
}

impl RuleStack {
    /// Whether `path` (tree-relative, no leading slash) is excluded.
    fn is_ignored(&self, path: &str, is_dir: bool) -> bool {
        let virtual_path = format!("/{path}");
        for (dir, matcher) in self.layers.iter().rev() {
            let inside = dir == "/" || virtual_path.starts_with(&format!("{dir}/"));
            if !inside {
                continue;
            }
            match matcher.matched(&virtual_path, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }
}

fn build_matcher(
    dir: &str,
    origin: &str,
    lines: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<Gitignore, SelectError> {
    let mut builder = GitignoreBuilder::new(dir);
    for (index, line) in lines.into_iter().enumerate() {
        let line = line.as_ref();
        builder
            .add_line(None, line)
            .map_err(|source| SelectError::InvalidPattern {
                origin: origin.to_owned(),
                line: index + 1,
                pattern: line.to_owned(),
                source,
            })?;
    }
    builder
        .build()
        .map_err(|source| SelectError::InvalidPattern {
            origin: origin.to_owned(),
            line: 0,
            pattern: String::new(),
            source,
        })
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Split a subpath into normal components, refusing absolute paths and `..`.
pub(crate) fn subpath_components(subpath: &str) -> Result<Vec<String>, SelectError> {
    let mut components = Vec::new();
    for component in Path::new(subpath).components() {
        match component {
            std::path::Component::Normal(name) => {
                let name = name.to_str().ok_or_else(|| SelectError::NonUtf8Path {
                    path: subpath.to_owned(),
                })?;
                components.push(name.to_owned());
            }
            std::path::Component::CurDir => {}
            _ => {
                return Err(SelectError::InvalidSubpath {
                    subpath: subpath.to_owned(),
                });
            }
        }
    }
    Ok(components)
}

/// The files chosen for an artifact, and the entries left out that no rule excluded.
#[derive(Debug)]
pub(crate) struct Selection<H> {
    /// The files, sorted by path.
    pub(crate) files: Vec<SelectedFile<H>>,
    /// Links, submodules and special files, sorted by path (relative to the subpath).
    pub(crate) skipped: Vec<SkippedEntry>,
}

/// Select the files of `tree` below `subpath`, sorted by path.
pub(crate) fn select_files<T: FileTree>(
    tree: &T,
    subpath: &str,
    rules: &IgnoreRules,
) -> Result<Vec<SelectedFile<T::Handle>>, SelectError> {
    select(tree, subpath, rules).map(|selection| selection.files)
}

/// Select the files of `tree` below `subpath`, and list the entries left out because they are
/// links, submodules or special files.
pub(crate) fn select<T: FileTree>(
    tree: &T,
    subpath: &str,
    rules: &IgnoreRules,
) -> Result<Selection<T::Handle>, SelectError> {
    select_within(tree, subpath, rules, None)
}

/// [`select`], walking only the directories on the way to or below `only` (paths inside the
/// tree, not relative to the subpath) and selecting only the files below them.
fn select_within<T: FileTree>(
    tree: &T,
    subpath: &str,
    rules: &IgnoreRules,
    only: Option<&[String]>,
) -> Result<Selection<T::Handle>, SelectError> {
    let mut stack = RuleStack { layers: Vec::new() };
    if rules.defaults {
        stack.layers.push((
            "/".to_owned(),
            build_matcher("/", "default patterns", DEFAULT_PATTERNS)?,
        ));
    }
    // Walk down to the subpath, collecting `.sourceignore` files on the way.
    let mut dir = tree.root();
    let mut dir_path = String::new();
    let components = subpath_components(subpath)?;
    let mut entries = tree.list(&dir, &dir_path)?;
    for component in &components {
        push_source_ignore(tree, rules, &entries, &dir_path, &mut stack)?;
        let next = entries
            .iter()
            .find(|entry| &entry.name == component && entry.kind == EntryKind::Directory)
            .ok_or_else(|| SelectError::SubpathNotFound {
                subpath: subpath.to_owned(),
            })?;
        dir = next.handle.clone();
        dir_path = join(&dir_path, component);
        entries = tree.list(&dir, &dir_path)?;
    }
    let caller = build_matcher("/", "caller patterns", &rules.patterns)?;
    let mut selected = Selection {
        files: Vec::new(),
        skipped: Vec::new(),
    };
    let walker = Walker {
        tree,
        rules,
        caller: &caller,
        only,
    };
    walker.walk(&mut stack, &dir_path, entries, &mut selected)?;
    let prefix_len = if dir_path.is_empty() {
        0
    } else {
        dir_path.len() + 1
    };
    for file in &mut selected.files {
        file.path = file.path[prefix_len..].to_owned();
    }
    for entry in &mut selected.skipped {
        entry.path = entry.path[prefix_len..].to_owned();
    }
    selected
        .files
        .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    selected
        .skipped
        .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(selected)
}

fn push_source_ignore<T: FileTree>(
    tree: &T,
    rules: &IgnoreRules,
    entries: &[TreeEntry<T::Handle>],
    dir_path: &str,
    stack: &mut RuleStack,
) -> Result<bool, SelectError> {
    if !rules.read_source_ignore_files {
        return Ok(false);
    }
    let Some(entry) = entries.iter().find(|entry| {
        entry.name == SOURCE_IGNORE_FILE && matches!(entry.kind, EntryKind::File { .. })
    }) else {
        return Ok(false);
    };
    let path = join(dir_path, SOURCE_IGNORE_FILE);
    let content = tree.read(&entry.handle, &path)?;
    let text = String::from_utf8_lossy(&content);
    let root = format!("/{dir_path}");
    stack
        .layers
        .push((root.clone(), build_matcher(&root, &path, text.lines())?));
    Ok(true)
}

/// What a walk of a tree needs besides its position.
struct Walker<'a, T: FileTree> {
    tree: &'a T,
    rules: &'a IgnoreRules,
    caller: &'a Gitignore,
    /// Only these paths (inside the tree) and what is below them, when set.
    only: Option<&'a [String]>,
}

impl<T: FileTree> Walker<'_, T> {
    /// Whether `path` is wanted: below (or at) a path of `only`, or, for a directory, on the
    /// way to one.
    fn wanted(&self, path: &str, is_dir: bool) -> bool {
        let Some(only) = self.only else {
            return true;
        };
        only.iter().any(|wanted| {
            wanted.is_empty()
                || path == wanted
                || (path.len() > wanted.len()
                    && path.starts_with(wanted.as_str())
                    && path.as_bytes()[wanted.len()] == b'/')
                || (is_dir
                    && wanted.len() > path.len()
                    && wanted.starts_with(path)
                    && wanted.as_bytes()[path.len()] == b'/')
        })
    }

    fn walk(
        &self,
        stack: &mut RuleStack,
        dir_path: &str,
        entries: Vec<TreeEntry<T::Handle>>,
        selected: &mut Selection<T::Handle>,
    ) -> Result<(), SelectError> {
        let (tree, rules, caller) = (self.tree, self.rules, self.caller);
        let pushed = push_source_ignore(tree, rules, &entries, dir_path, stack)?;
        for entry in entries {
            let path = join(dir_path, &entry.name);
            let is_dir = entry.kind == EntryKind::Directory;
            let ignored = match caller.matched(format!("/{path}"), is_dir) {
                Match::Ignore(_) => true,
                Match::Whitelist(_) => false,
                Match::None => stack.is_ignored(&path, is_dir),
            };
            if ignored || !self.wanted(&path, is_dir) {
                continue;
            }
            match entry.kind {
                EntryKind::File { executable } => selected.files.push(SelectedFile {
                    path,
                    executable,
                    handle: entry.handle,
                }),
                EntryKind::Directory => {
                    // A hostile tree nested thousands of levels deep would exhaust the stack of
                    // this recursive walk: depth and length are bounded before descending.
                    let depth = path.bytes().filter(|byte| *byte == b'/').count() + 1;
                    if depth >= MAX_DEPTH || path.len() > MAX_PATH_BYTES {
                        return Err(tree.unsafe_entry(
                            dir_path,
                            entry.name.as_bytes(),
                            PathError::TooDeep {
                                depth,
                                max: MAX_DEPTH,
                            },
                        ));
                    }
                    let children = tree.list(&entry.handle, &path)?;
                    self.walk(stack, &path, children, selected)?;
                }
                EntryKind::Skipped(reason) => selected.skipped.push(SkippedEntry { path, reason }),
            }
        }
        if pushed {
            stack.layers.pop();
        }
        Ok(())
    }
}

/// `relative` (`/`-separated) resolved against the directory `base` of the artifact, lexically:
/// `None` when it is absolute, leaves the root or is not a path [`check_relative_path`] accepts.
/// The root itself is `""`.
pub(crate) fn resolve_relative(base: &str, relative: &str) -> Option<String> {
    if relative.starts_with('/') || relative.contains('\\') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|part| !part.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    let path = parts.join("/");
    if !path.is_empty() && crate::path::check_relative_path(&path).is_err() {
        return None;
    }
    Some(path)
}

/// The files of `tree` below `subpath` that `sparse` asks for (those below its paths, and
/// transitively below the paths their files reference), sorted by path: only the directories on
/// the way to them are read, so a small folder of a large tree costs little.
pub(crate) fn select_sparse<T: FileTree>(
    tree: &T,
    subpath: &str,
    rules: &IgnoreRules,
    sparse: &Sparse,
) -> Result<Selection<T::Handle>, SelectError> {
    let base = subpath_components(subpath)?.join("/");
    let mut queue = Vec::with_capacity(sparse.paths().len());
    for path in sparse.paths() {
        queue.push(
            resolve_relative("", path).ok_or_else(|| SelectError::InvalidSubpath {
                subpath: path.clone(),
            })?,
        );
    }
    let mut walked = std::collections::HashSet::new();
    let mut paths = std::collections::HashSet::new();
    let mut skipped_paths = std::collections::HashSet::new();
    let mut result = Selection {
        files: Vec::new(),
        skipped: Vec::new(),
    };
    loop {
        let batch: Vec<String> = queue
            .drain(..)
            .filter(|prefix| walked.insert(prefix.clone()))
            .map(|prefix| match (base.is_empty(), prefix.is_empty()) {
                (true, _) => prefix,
                (false, true) => base.clone(),
                (false, false) => format!("{base}/{prefix}"),
            })
            .collect();
        if batch.is_empty() {
            break;
        }
        let selection = select_within(tree, subpath, rules, Some(&batch))?;
        for file in selection.files {
            if !paths.insert(file.path.clone()) {
                continue;
            }
            if let Some(references) = sparse.references()
                && references.reads(&file.path)
            {
                let content = tree.read(&file.handle, &file.path)?;
                let dir = file.path.rsplit_once('/').map_or("", |(dir, _)| dir);
                for reference in references.references(&file.path, &content) {
                    match resolve_relative(dir, &reference) {
                        Some(path) => queue.push(path),
                        None => tracing::debug!(
                            file = %Escaped(&file.path),
                            reference = %Escaped(&reference),
                            "a reference outside the artifact is not materialised"
                        ),
                    }
                }
            }
            result.files.push(file);
        }
        for entry in selection.skipped {
            if skipped_paths.insert(entry.path.clone()) {
                result.skipped.push(entry);
            }
        }
    }
    result
        .files
        .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    result
        .skipped
        .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(result)
}

/// A directory on disk as a [`FileTree`].
pub(crate) struct DiskTree {
    pub(crate) root: PathBuf,
}

impl FileTree for DiskTree {
    type Handle = PathBuf;

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn list(&self, dir: &PathBuf, path: &str) -> Result<Vec<TreeEntry<PathBuf>>, SelectError> {
        let read_error = |source: std::io::Error| SelectError::Read {
            path: if path.is_empty() {
                ".".to_owned()
            } else {
                path.to_owned()
            },
            source: Box::new(source),
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let file_type = entry.file_type().map_err(read_error)?;
            let raw_name = entry.file_name();
            let name = match check_entry_name(raw_name.as_encoded_bytes()) {
                Ok(name) => name.to_owned(),
                // A checkout's own metadata directory is never part of an artifact, whatever the
                // ignore rules say: leave it out instead of refusing the whole directory.
                Err(PathError::GitDirectory { .. }) => {
                    tracing::debug!(
                        directory = %Escaped(path),
                        name = %crate::path::printable(raw_name.as_encoded_bytes()),
                        "leaving git metadata out of the artifact"
                    );
                    continue;
                }
                Err(error) => {
                    return Err(self.unsafe_entry(path, raw_name.as_encoded_bytes(), error));
                }
            };
            let kind = if file_type.is_dir() {
                EntryKind::Directory
            } else if file_type.is_file() {
                EntryKind::File {
                    executable: is_executable(&entry.metadata().map_err(read_error)?),
                }
            } else if file_type.is_symlink() {
                EntryKind::Skipped(SkipReason::Symlink)
            } else {
                EntryKind::Skipped(SkipReason::Special)
            };
            entries.push(TreeEntry {
                name,
                kind,
                handle: entry.path(),
            });
        }
        Ok(entries)
    }

    fn read(&self, file: &PathBuf, path: &str) -> Result<Vec<u8>, SelectError> {
        std::fs::read(file).map_err(|source| SelectError::Read {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    fn origin(&self) -> String {
        format!("directory {}", gitops_core::escape::EscapedPath(&self.root))
    }
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_metadata: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, content: &str) {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    fn selected(root: &Path, subpath: &str, rules: &IgnoreRules) -> Vec<String> {
        let tree = DiskTree {
            root: root.to_owned(),
        };
        select_files(&tree, subpath, rules)
            .unwrap()
            .into_iter()
            .map(|file| file.path)
            .collect()
    }

    #[test]
    fn sparse_selection_reads_only_the_directories_it_needs() {
        struct Bases;
        impl crate::References for Bases {
            fn reads(&self, path: &str) -> bool {
                path.ends_with("kustomization.yaml")
            }
            fn references(&self, _path: &str, content: &[u8]) -> Vec<String> {
                String::from_utf8_lossy(content)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            }
        }
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "repo/apps/prod/kustomization.yaml",
            "../base\n../.github\n",
        );
        write(dir.path(), "repo/apps/base/cm.yaml", "cm");
        write(dir.path(), "repo/apps/.github/ci.yaml", "ci");
        write(dir.path(), "repo/apps/prod-x/other.yaml", "x");
        // A directory a full walk refuses: a sparse one never lists it.
        write(dir.path(), "repo/other/forged\nname.yaml", "x");
        let tree = DiskTree {
            root: dir.path().to_owned(),
        };
        assert!(select(&tree, "repo", &IgnoreRules::default()).is_err());
        let sparse = Sparse::new(["apps/prod"]).with_references(Bases);
        let selection = select_sparse(&tree, "repo", &IgnoreRules::default(), &sparse).unwrap();
        let paths: Vec<_> = selection
            .files
            .iter()
            .map(|file| file.path.as_str())
            .collect();
        // The default rules still leave `.github/` out when a reference names it.
        assert_eq!(paths, ["apps/base/cm.yaml", "apps/prod/kustomization.yaml"]);
        // A path leaving the root is refused.
        let error = select_sparse(
            &tree,
            "repo",
            &IgnoreRules::default(),
            &Sparse::new(["../x"]),
        )
        .unwrap_err();
        assert!(
            matches!(error, SelectError::InvalidSubpath { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn references_resolve_inside_the_root_only() {
        assert_eq!(resolve_relative("a/b", "../c").as_deref(), Some("a/c"));
        assert_eq!(
            resolve_relative("a/b", "./d//e/").as_deref(),
            Some("a/b/d/e")
        );
        assert_eq!(resolve_relative("a", "..").as_deref(), Some(""));
        assert_eq!(resolve_relative("", "."), Some(String::new()));
        for refused in [
            "../x",
            "/etc",
            "a/../../x",
            "a\\..\\x",
            ".git/config",
            "x\ny",
        ] {
            assert_eq!(resolve_relative("", refused), None, "{refused:?}");
        }
        assert_eq!(resolve_relative("a/b", "../../../x"), None);
    }

    #[test]
    fn defaults_exclude_vcs_ci_and_images() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "app/deploy.yaml", "a");
        write(dir.path(), ".git/config", "x");
        write(dir.path(), ".github/workflows/ci.yaml", "x");
        write(dir.path(), "logo.png", "x");
        write(dir.path(), "nested/.gitlab-ci.yml", "x");
        assert_eq!(
            selected(dir.path(), "", &IgnoreRules::default()),
            ["app/deploy.yaml"]
        );
        // Without the defaults everything else is selected, but never git's metadata directory.
        let all = selected(dir.path(), "", &IgnoreRules::default().with_defaults(false));
        assert_eq!(all.len(), 4, "{all:?}");
        assert!(all.iter().all(|path| !path.starts_with(".git/")), "{all:?}");
    }

    #[test]
    fn defaults_keep_vendored_helm_dependencies_only() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "app/Chart.yaml", "name: app");
        write(dir.path(), "app/charts/redis-1.2.3.tgz", "x");
        write(dir.path(), "app/charts/legacy-0.1.0.tar.gz", "x");
        write(dir.path(), "charts/top-1.0.0.tgz", "x");
        // Not directly in `charts/`, or not a chart archive: left out as before.
        write(dir.path(), "app/charts/sub/deeper.tgz", "x");
        write(dir.path(), "app/charts/bundle.zip", "x");
        write(dir.path(), "app/release.tgz", "x");
        write(dir.path(), "backup.tar.gz", "x");
        write(dir.path(), "mycharts/x.tgz", "x");
        assert_eq!(
            selected(dir.path(), "", &IgnoreRules::default()),
            [
                "app/Chart.yaml",
                "app/charts/legacy-0.1.0.tar.gz",
                "app/charts/redis-1.2.3.tgz",
                "charts/top-1.0.0.tgz"
            ]
        );
        // The chart as the subpath keeps them too.
        assert_eq!(
            selected(dir.path(), "app", &IgnoreRules::default()),
            [
                "Chart.yaml",
                "charts/legacy-0.1.0.tar.gz",
                "charts/redis-1.2.3.tgz"
            ]
        );
        // A caller pattern still excludes them.
        let rules = IgnoreRules::default().with_pattern("*.tgz");
        assert_eq!(
            selected(dir.path(), "app", &rules),
            ["Chart.yaml", "charts/legacy-0.1.0.tar.gz"]
        );
    }

    #[test]
    fn source_ignore_files_apply_to_their_directory_and_below() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            ".sourceignore",
            "*.txt\n# comment\n/top-only.yaml\n",
        );
        write(dir.path(), "a.txt", "x");
        write(dir.path(), "top-only.yaml", "x");
        write(
            dir.path(),
            "sub/top-only.yaml",
            "kept: anchored pattern applies to the root only",
        );
        write(dir.path(), "sub/.sourceignore", "!keep.txt\nlocal.yaml\n");
        write(dir.path(), "sub/keep.txt", "x");
        write(dir.path(), "sub/drop.txt", "x");
        write(dir.path(), "sub/local.yaml", "x");
        write(dir.path(), "other/local.yaml", "x");
        assert_eq!(
            selected(dir.path(), "", &IgnoreRules::default()),
            [
                ".sourceignore",
                "other/local.yaml",
                "sub/.sourceignore",
                "sub/keep.txt",
                "sub/top-only.yaml"
            ]
        );
    }

    #[test]
    fn caller_patterns_win_over_source_ignore() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".sourceignore", "*.yaml\n");
        write(dir.path(), "a.yaml", "x");
        write(dir.path(), "b.json", "x");
        let rules = IgnoreRules::default().with_patterns_text("!a.yaml\n*.json\n.sourceignore");
        assert_eq!(selected(dir.path(), "", &rules), ["a.yaml"]);
    }

    #[test]
    fn subpath_selects_and_inherits_parent_ignore_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".sourceignore", "secret.yaml\n");
        write(dir.path(), "clusters/prod/app.yaml", "x");
        write(dir.path(), "clusters/prod/secret.yaml", "x");
        write(dir.path(), "clusters/prod/deep/x.yaml", "x");
        write(dir.path(), "clusters/dev/app.yaml", "x");
        assert_eq!(
            selected(dir.path(), "./clusters/prod/", &IgnoreRules::default()),
            ["app.yaml", "deep/x.yaml"]
        );
        let tree = DiskTree {
            root: dir.path().to_owned(),
        };
        assert!(matches!(
            select_files(&tree, "clusters/none", &IgnoreRules::default()),
            Err(SelectError::SubpathNotFound { .. })
        ));
        assert!(matches!(
            select_files(&tree, "../etc", &IgnoreRules::default()),
            Err(SelectError::InvalidSubpath { .. })
        ));
        assert!(matches!(
            select_files(&tree, "/etc", &IgnoreRules::default()),
            Err(SelectError::InvalidSubpath { .. })
        ));
    }

    #[test]
    fn ignored_directory_is_pruned() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".sourceignore", "build/\n");
        write(dir.path(), "build/out.yaml", "x");
        write(dir.path(), "src/build", "a file named build stays");
        assert_eq!(
            selected(dir.path(), "", &IgnoreRules::default()),
            [".sourceignore", "src/build"]
        );
    }

    #[test]
    fn trees_nested_too_deep_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let deep = "d/".repeat(MAX_DEPTH + 1);
        write(dir.path(), &format!("{deep}x.yaml"), "x");
        let tree = DiskTree {
            root: dir.path().to_owned(),
        };
        let error = select_files(&tree, "", &IgnoreRules::default()).unwrap_err();
        assert!(
            matches!(
                error,
                SelectError::UnsafeEntry {
                    source: PathError::TooDeep { .. },
                    ..
                }
            ),
            "{error:?}"
        );
        // Just below the limit is fine.
        let dir = tempfile::tempdir().unwrap();
        let deep = "d/".repeat(MAX_DEPTH - 1);
        write(dir.path(), &format!("{deep}x.yaml"), "x");
        let tree = DiskTree {
            root: dir.path().to_owned(),
        };
        assert_eq!(
            select_files(&tree, "", &IgnoreRules::default())
                .unwrap()
                .len(),
            1
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_and_special_files_are_left_out_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sub/real.yaml", "x");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("sub/link.yaml")).unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("sub/up")).unwrap();
        let _socket =
            std::os::unix::net::UnixListener::bind(dir.path().join("sub/control.sock")).unwrap();
        std::os::unix::fs::symlink("real.yaml", dir.path().join("sub/ignored.md")).unwrap();
        std::os::unix::fs::symlink("sub", dir.path().join("outside")).unwrap();
        let tree = DiskTree {
            root: dir.path().to_owned(),
        };
        let rules = IgnoreRules::default().with_pattern("*.md");
        let selection = select(&tree, "sub", &rules).unwrap();
        let files: Vec<_> = selection.files.iter().map(|file| &file.path).collect();
        assert_eq!(files, ["real.yaml"]);
        let skipped: Vec<_> = selection
            .skipped
            .iter()
            .map(|entry| (entry.path(), entry.reason()))
            .collect();
        assert_eq!(
            skipped,
            [
                ("control.sock", SkipReason::Special),
                ("link.yaml", SkipReason::Symlink),
                ("up", SkipReason::Symlink),
            ]
        );
    }

    #[test]
    fn skipped_entries_print_escaped_and_warnings_name_them() {
        let entry = SkippedEntry {
            path: "a\u{1b}[31m\u{202e}b\\c\nd".to_owned(),
            reason: SkipReason::Symlink,
        };
        let shown = entry.to_string();
        assert!(shown.ends_with(" (symbolic link)"), "{shown}");
        assert!(
            !shown.contains(['\u{1b}', '\u{202e}', '\n']),
            "control characters must be escaped: {shown:?}"
        );
        assert!(shown.contains(&Escaped(&entry.path).to_string()), "{shown}");

        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let writer = std::sync::Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || SharedWriter(std::sync::Arc::clone(&writer)))
            .finish();
        let many: Vec<SkippedEntry> = (0..MAX_SKIPPED_WARNINGS + 5)
            .map(|index| SkippedEntry {
                path: format!("link-{index:02}"),
                reason: SkipReason::Submodule,
            })
            .chain(std::iter::once(entry.clone()))
            .collect();
        tracing::subscriber::with_default(subscriber, || {
            warn_skipped(
                "file:///repo",
                "main@sha1:0",
                &many[MAX_SKIPPED_WARNINGS + 5..],
            );
            warn_skipped("file:///repo", "main@sha1:1", &many);
        });
        let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // One line for the single entry, then 20 lines and a count for the 26.
        assert_eq!(lines.len(), 1 + MAX_SKIPPED_WARNINGS + 1, "{text}");
        assert!(lines.iter().all(|line| line.contains(" WARN ")), "{text}");
        assert!(
            !text.contains(['\u{1b}', '\u{202e}']),
            "control characters must be escaped: {text:?}"
        );
        assert!(
            lines[0].contains(&format!("path={}", Escaped(&entry.path))),
            "{text}"
        );
        assert!(lines[0].contains("revision=main@sha1:0"), "{text}");
        assert!(lines[1].contains("path=link-00 reason=submodule"), "{text}");
        assert!(lines.last().unwrap().contains("more=6"), "{text}");
    }

    struct SharedWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SharedWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
