//! Finding the `kustomize` and `helm` binaries: an explicit path, else an environment variable
//! (`GITOPS_KUSTOMIZE`, `GITOPS_HELM`), else a search of `PATH`; and, when asked, their version.
//!
//! The order, for [`Tool::Kustomize`] (the same for [`Tool::Helm`] with `GITOPS_HELM`):
//!
//! 1. a path given explicitly ([`ToolLocator::explicit`], such as a program's `--kustomize`
//!    flag);
//! 2. else the environment variable `GITOPS_KUSTOMIZE`, when it is set and not empty;
//! 3. else the first `kustomize` on `PATH` that is a file with an execute bit, as `which` finds
//!    it, without running a shell. Empty and relative entries of `PATH` are skipped: the current
//!    directory is never searched.
//!
//! A path given explicitly or by the variable must exist and be executable, or it is an error
//! that names it and where it came from: it is never passed over for another binary. A value
//! without a `/` (`helm3`) is a name to look up on `PATH`, as a shell would run it. The binary
//! found is an absolute path (the renderers run the tools in another working directory).
//!
//! ```
//! use gitops_render::tool::{Tool, ToolLocator};
//! # #[cfg(unix)] {
//! # use std::os::unix::fs::PermissionsExt;
//! let bin = tempfile::tempdir()?;
//! let kustomize = bin.path().join("kustomize");
//! std::fs::write(&kustomize, "#!/bin/sh\necho v5.8.1\n")?;
//! std::fs::set_permissions(&kustomize, std::fs::Permissions::from_mode(0o755))?;
//!
//! // Found on a PATH given here (`ToolLocator::new` reads the process's PATH and variable).
//! let found = ToolLocator::new(Tool::Kustomize)
//!     .without_variable()
//!     .with_search_path(bin.path().as_os_str())
//!     .locate()?;
//! assert_eq!(found.path(), kustomize);
//!
//! // Nowhere: the error says how to give it.
//! let empty = tempfile::tempdir()?;
//! let err = ToolLocator::new(Tool::Helm)
//!     .without_variable()
//!     .with_search_path(empty.path().as_os_str())
//!     .locate()
//!     .unwrap_err();
//! assert!(err.is_not_found());
//! assert!(err.to_string().starts_with("helm not found: set GITOPS_HELM"), "{err}");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use gitops_core::escape::{Escaped, EscapedPath};
use tokio_util::sync::CancellationToken;

use crate::process::{ProcessError, ToolLimits, ToolRun};

/// The helm version this crate is built and tested against.
pub const PINNED_HELM_VERSION: &str = "v3.22.0";

/// The most output `<tool> version` may write.
const MAX_VERSION_OUTPUT: usize = 4096;

/// An external tool the renderers run.
///
/// ```
/// use gitops_render::tool::Tool;
/// assert_eq!(Tool::Kustomize.binary_name(), "kustomize");
/// assert_eq!(Tool::Helm.variable(), "GITOPS_HELM");
/// assert_eq!(Tool::Helm.to_string(), "helm");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `kustomize`, for [`KustomizeRenderer`](crate::KustomizeRenderer).
    Kustomize,
    /// `helm`, for [`HelmRenderer`](crate::HelmRenderer).
    Helm,
}

impl Tool {
    /// The name of its binary, as searched on `PATH`.
    #[must_use]
    pub const fn binary_name(self) -> &'static str {
        match self {
            Self::Kustomize => "kustomize",
            Self::Helm => "helm",
        }
    }

    /// The environment variable that names its binary: `GITOPS_KUSTOMIZE` or `GITOPS_HELM`.
    #[must_use]
    pub const fn variable(self) -> &'static str {
        match self {
            Self::Kustomize => "GITOPS_KUSTOMIZE",
            Self::Helm => "GITOPS_HELM",
        }
    }

    /// The version this crate is built and tested against
    /// ([`PINNED_KUSTOMIZE_VERSION`](crate::PINNED_KUSTOMIZE_VERSION), [`PINNED_HELM_VERSION`]).
    ///
    /// ```
    /// use gitops_render::tool::Tool;
    /// assert_eq!(Tool::Kustomize.pinned_version(), gitops_render::PINNED_KUSTOMIZE_VERSION);
    /// ```
    #[must_use]
    pub const fn pinned_version(self) -> &'static str {
        match self {
            Self::Kustomize => crate::kustomize::PINNED_KUSTOMIZE_VERSION,
            Self::Helm => PINNED_HELM_VERSION,
        }
    }

    /// The arguments that make it print its version alone (`kustomize version`,
    /// `helm version --short`).
    fn version_args(self) -> &'static [&'static str] {
        match self {
            Self::Kustomize => &["version"],
            Self::Helm => &["version", "--short"],
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary_name())
    }
}

/// Where a binary was found.
///
/// ```
/// use gitops_render::tool::{Tool, FoundBy};
/// assert_eq!(FoundBy::Variable.describe(Tool::Helm), "named by GITOPS_HELM");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FoundBy {
    /// Given explicitly ([`ToolLocator::explicit`]).
    Explicit,
    /// Named by the tool's environment variable ([`Tool::variable`]).
    Variable,
    /// Found on `PATH`.
    SearchPath,
}

impl FoundBy {
    /// Where it came from, in words: `given explicitly`, `named by GITOPS_HELM`, `found on PATH`.
    #[must_use]
    pub fn describe(self, tool: Tool) -> String {
        match self {
            Self::Explicit => "given explicitly".to_owned(),
            Self::Variable => format!("named by {}", tool.variable()),
            Self::SearchPath => "found on PATH".to_owned(),
        }
    }
}

/// The errors of finding a tool and asking its version.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// Nothing was given, and the tool is not on `PATH`.
    #[error(
        "{tool} not found: set {variable}, pass its path (such as --{tool}) or put it on PATH",
        variable = tool.variable()
    )]
    NotFound {
        /// The tool.
        tool: Tool,
    },
    /// A name given without a `/` (explicitly or by the variable) is not on `PATH`.
    #[error(
        "{tool} {name} ({how}) was not found on PATH",
        name = Escaped(name),
        how = found_by.describe(*tool)
    )]
    NameNotOnPath {
        /// The tool.
        tool: Tool,
        /// The name as given.
        name: String,
        /// Where the name came from.
        found_by: FoundBy,
    },
    /// A path given (explicitly or by the variable) cannot be read: it does not exist, or a
    /// directory on the way may not be searched.
    #[error("{tool} at {path} ({how}): {error}", path = EscapedPath(path), how = found_by.describe(*tool))]
    Inaccessible {
        /// The tool.
        tool: Tool,
        /// The path as given.
        path: PathBuf,
        /// Where the path came from.
        found_by: FoundBy,
        /// Why it cannot be read.
        #[source]
        error: std::io::Error,
    },
    /// A path given (explicitly or by the variable) is a directory, or a file without an
    /// execute bit.
    #[error("{tool} at {path} ({how}) is not an executable file", path = EscapedPath(path), how = found_by.describe(*tool))]
    NotExecutable {
        /// The tool.
        tool: Tool,
        /// The path as given.
        path: PathBuf,
        /// Where the path came from.
        found_by: FoundBy,
    },
    /// The absolute form of a relative path could not be made (the current directory is gone).
    #[error("{tool} at {path}: cannot make the path absolute: {error}", path = EscapedPath(path))]
    Absolute {
        /// The tool.
        tool: Tool,
        /// The path as given.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// `<tool> version` failed.
    #[error("{tool} at {path}: asking its version failed", path = EscapedPath(path))]
    Version {
        /// The tool.
        tool: Tool,
        /// The binary.
        path: PathBuf,
        /// Why.
        #[source]
        error: ProcessError,
    },
    /// `<tool> version` printed something that is not a version.
    #[error("{tool} at {path}: `{tool} version` printed {output:?}, not a version such as v1.2.3", path = EscapedPath(path), output = Escaped(output))]
    UnreadableVersion {
        /// The tool.
        tool: Tool,
        /// The binary.
        path: PathBuf,
        /// What it printed (trimmed, at most 200 characters).
        output: String,
    },
    /// The binary is another version than the one required.
    #[error("{tool} at {path} is {found}, {expected} is required", path = EscapedPath(path), found = Escaped(found))]
    WrongVersion {
        /// The tool.
        tool: Tool,
        /// The binary.
        path: PathBuf,
        /// The version it reports.
        found: String,
        /// The version required.
        expected: String,
    },
}

impl LocateError {
    /// Whether nothing was given and the tool is not on `PATH` (as opposed to a path given that
    /// is wrong): a caller for which the tool is optional carries on without it.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// A binary found by [`ToolLocator::locate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    tool: Tool,
    path: PathBuf,
    found_by: FoundBy,
}

impl Located {
    /// The tool.
    #[must_use]
    pub fn tool(&self) -> Tool {
        self.tool
    }

    /// Its absolute path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its path, taken.
    #[must_use]
    pub fn into_path(self) -> PathBuf {
        self.path
    }

    /// Where it was found.
    #[must_use]
    pub fn found_by(&self) -> FoundBy {
        self.found_by
    }

    /// Runs `<tool> version` (`helm version --short`) the way the renderers run the tool: a
    /// clean environment, `limits`' timeout and memory bound. Returns the version it reports,
    /// such as `v5.8.1` (helm's build metadata, `+g1234abc`, is cut).
    ///
    /// ```no_run
    /// use gitops_render::ToolLimits;
    /// use gitops_render::tool::{Tool, ToolLocator};
    /// # async fn example() -> Result<(), gitops_render::tool::LocateError> {
    /// let helm = ToolLocator::new(Tool::Helm).locate()?;
    /// println!("{} {}", helm.path().display(), helm.version(&ToolLimits::new()).await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn version(&self, limits: &ToolLimits) -> Result<String, LocateError> {
        let cwd = std::env::temp_dir();
        let args = self
            .tool
            .version_args()
            .iter()
            .map(OsString::from)
            .collect();
        let out = ToolRun {
            max_output: MAX_VERSION_OUTPUT,
            ..ToolRun::within(&self.path, args, &cwd, limits)
        }
        .run(&CancellationToken::new())
        .await
        .map_err(|error| LocateError::Version {
            tool: self.tool,
            path: self.path.clone(),
            error,
        })?;
        parse_version(&out).ok_or_else(|| LocateError::UnreadableVersion {
            tool: self.tool,
            path: self.path.clone(),
            output: out.trim().chars().take(200).collect(),
        })
    }

    /// Checks that the binary reports version `expected` (such as [`Tool::pinned_version`]);
    /// a leading `v` is ignored on both sides.
    ///
    /// ```no_run
    /// use gitops_render::ToolLimits;
    /// use gitops_render::tool::{Tool, ToolLocator};
    /// # async fn example() -> Result<(), gitops_render::tool::LocateError> {
    /// let kustomize = ToolLocator::new(Tool::Kustomize).locate()?;
    /// kustomize.require_version(Tool::Kustomize.pinned_version(), &ToolLimits::new()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn require_version(
        &self,
        expected: &str,
        limits: &ToolLimits,
    ) -> Result<(), LocateError> {
        let found = self.version(limits).await?;
        let bare = |v: &str| v.strip_prefix('v').unwrap_or(v).to_owned();
        if bare(&found) == bare(expected) {
            return Ok(());
        }
        Err(LocateError::WrongVersion {
            tool: self.tool,
            path: self.path.clone(),
            found,
            expected: expected.to_owned(),
        })
    }
}

/// The version in a tool's `version` output: its first word that looks like `v1.2.3` or
/// `1.2.3`, with build metadata (`+g1234abc`) cut. kustomize prints `v5.8.1`, `helm version
/// --short` prints `v3.22.0+g1234abc`.
fn parse_version(output: &str) -> Option<String> {
    output.split_whitespace().find_map(|word| {
        let word = word.split('+').next().unwrap_or(word);
        let digits = word.strip_prefix('v').unwrap_or(word);
        let mut parts = digits.split('.');
        let numeric = parts
            .next()
            .is_some_and(|major| !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()));
        (numeric && parts.next().is_some()).then(|| word.to_owned())
    })
}

/// Finds a tool's binary: an explicit path, else its environment variable, else `PATH` (see the
/// [module documentation](self)).
///
/// [`ToolLocator::new`] takes the variable and `PATH` from the process's environment;
/// [`ToolLocator::with_variable`] and [`ToolLocator::with_search_path`] replace them (for tests,
/// or a program that keeps its own environment).
///
/// ```no_run
/// use gitops_render::tool::{Tool, ToolLocator};
/// # fn example(kustomize_flag: Option<std::path::PathBuf>) -> Result<(), gitops_render::tool::LocateError> {
/// let kustomize = ToolLocator::new(Tool::Kustomize).explicit(kustomize_flag).locate()?;
/// println!("kustomize: {} ({})", kustomize.path().display(), kustomize.found_by().describe(Tool::Kustomize));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ToolLocator {
    tool: Tool,
    explicit: Option<PathBuf>,
    variable: Option<OsString>,
    search_path: Option<OsString>,
}

impl ToolLocator {
    /// Finds `tool` with the process's environment: its variable ([`Tool::variable`]) and
    /// `PATH`.
    pub fn new(tool: Tool) -> Self {
        Self {
            tool,
            explicit: None,
            variable: std::env::var_os(tool.variable()),
            search_path: std::env::var_os("PATH"),
        }
    }

    /// The binary given explicitly, if any (such as a `--kustomize` flag's value): when set,
    /// neither the variable nor `PATH` is looked at.
    pub fn explicit(mut self, path: Option<impl Into<PathBuf>>) -> Self {
        self.explicit = path.map(Into::into);
        self
    }

    /// The value of the tool's variable to use instead of the process's.
    pub fn with_variable(mut self, value: impl Into<OsString>) -> Self {
        self.variable = Some(value.into());
        self
    }

    /// Ignores the tool's variable, as if it were not set.
    pub fn without_variable(mut self) -> Self {
        self.variable = None;
        self
    }

    /// The `PATH` to search instead of the process's.
    pub fn with_search_path(mut self, path: impl Into<OsString>) -> Self {
        self.search_path = Some(path.into());
        self
    }

    /// Finds the binary.
    ///
    /// # Errors
    /// [`LocateError::NotFound`] when nothing was given and the tool is not on `PATH`; the other
    /// variants when a path or name given is wrong (see the [module documentation](self)).
    pub fn locate(&self) -> Result<Located, LocateError> {
        let given = match (&self.explicit, &self.variable) {
            (Some(path), _) => Some((path.as_os_str(), FoundBy::Explicit)),
            (None, Some(value)) if !value.is_empty() => {
                Some((value.as_os_str(), FoundBy::Variable))
            }
            _ => None,
        };
        let Some((value, found_by)) = given else {
            let path = self
                .search(OsStr::new(self.tool.binary_name()))
                .ok_or(LocateError::NotFound { tool: self.tool })?;
            return Ok(Located {
                tool: self.tool,
                path,
                found_by: FoundBy::SearchPath,
            });
        };
        let given = Path::new(value);
        if !value.as_encoded_bytes().contains(&b'/') {
            let path = self
                .search(value)
                .ok_or_else(|| LocateError::NameNotOnPath {
                    tool: self.tool,
                    name: value.to_string_lossy().into_owned(),
                    found_by,
                })?;
            return Ok(Located {
                tool: self.tool,
                path,
                found_by,
            });
        }
        let metadata = std::fs::metadata(given).map_err(|error| LocateError::Inaccessible {
            tool: self.tool,
            path: given.to_owned(),
            found_by,
            error,
        })?;
        if !is_executable(&metadata) {
            return Err(LocateError::NotExecutable {
                tool: self.tool,
                path: given.to_owned(),
                found_by,
            });
        }
        let path = std::path::absolute(given).map_err(|error| LocateError::Absolute {
            tool: self.tool,
            path: given.to_owned(),
            error,
        })?;
        Ok(Located {
            tool: self.tool,
            path,
            found_by,
        })
    }

    /// Finds the binary when it is there: `Ok(None)` when nothing was given and it is not on
    /// `PATH`, for a caller that can do without it (as [`AutoRenderer`](crate::AutoRenderer)
    /// can, until a directory needs it). A path given that is wrong is still an error.
    ///
    /// ```
    /// use gitops_render::tool::{Tool, ToolLocator};
    /// let empty = tempfile::tempdir()?;
    /// let found = ToolLocator::new(Tool::Helm)
    ///     .without_variable()
    ///     .with_search_path(empty.path())
    ///     .locate_optional()?;
    /// assert!(found.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`ToolLocator::locate`], except [`LocateError::NotFound`].
    pub fn locate_optional(&self) -> Result<Option<Located>, LocateError> {
        match self.locate() {
            Ok(found) => Ok(Some(found)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The first executable `name` in an absolute directory of the search path.
    fn search(&self, name: &OsStr) -> Option<PathBuf> {
        let search_path = self.search_path.as_ref()?;
        std::env::split_paths(search_path)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|candidate| {
                std::fs::metadata(candidate).is_ok_and(|metadata| is_executable(&metadata))
            })
    }
}

/// Finds `tool`: `explicit` if given, else its environment variable, else `PATH` (see
/// [`ToolLocator`]); returns its absolute path.
///
/// ```no_run
/// use gitops_render::tool::{Tool, locate};
/// let helm = locate(Tool::Helm, None)?;
/// # let _ = helm;
/// # Ok::<(), gitops_render::tool::LocateError>(())
/// ```
///
/// # Errors
/// See [`ToolLocator::locate`].
pub fn locate(tool: Tool, explicit: Option<&Path>) -> Result<PathBuf, LocateError> {
    ToolLocator::new(tool)
        .explicit(explicit)
        .locate()
        .map(Located::into_path)
}

/// A regular file (links followed) with an execute bit for someone.
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// Writes an executable (or not) script `name` in `dir` that prints `output`.
    fn script(dir: &Path, name: &str, output: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho '{output}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn locator(tool: Tool, search_path: &OsStr) -> ToolLocator {
        ToolLocator::new(tool)
            .without_variable()
            .with_search_path(search_path)
    }

    fn joined(dirs: &[&Path]) -> OsString {
        std::env::join_paths(dirs).unwrap()
    }

    #[test]
    fn path_is_searched_in_order_for_an_executable_file() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let third = tempfile::tempdir().unwrap();
        // Not executable, and a directory of the name: both passed over, as `which` does.
        script(first.path(), "kustomize", "v0", 0o644);
        std::fs::create_dir(second.path().join("kustomize")).unwrap();
        let wanted = script(third.path(), "kustomize", "v5.8.1", 0o755);
        let later = tempfile::tempdir().unwrap();
        script(later.path(), "kustomize", "v1", 0o755);
        let path = joined(&[first.path(), second.path(), third.path(), later.path()]);
        let found = locator(Tool::Kustomize, &path).locate().unwrap();
        assert_eq!(found.path(), wanted);
        assert_eq!(found.found_by(), FoundBy::SearchPath);
        assert_eq!(found.tool(), Tool::Kustomize);
    }

    #[test]
    fn relative_and_empty_path_entries_are_never_searched() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "helm", "v3", 0o755);
        // The current directory holds a helm, reachable only through "." or "" entries.
        let cwd = std::env::current_dir().unwrap();
        let relative = pathdiff(dir.path(), &cwd);
        let path = OsString::from(format!(":.:{}", relative.display()));
        let err = locator(Tool::Helm, &path).locate().unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    /// `dir` relative to `base`, through `..` (both absolute).
    fn pathdiff(dir: &Path, base: &Path) -> PathBuf {
        let mut relative: PathBuf = base.components().skip(1).map(|_| "..").collect();
        relative.push(dir.strip_prefix("/").unwrap());
        relative
    }

    #[test]
    fn not_found_says_how_to_give_the_tool() {
        let empty = tempfile::tempdir().unwrap();
        for tool in [Tool::Kustomize, Tool::Helm] {
            let err = locator(tool, empty.path().as_os_str())
                .locate()
                .unwrap_err();
            assert!(err.is_not_found());
            assert_eq!(
                err.to_string(),
                format!(
                    "{tool} not found: set GITOPS_{}, pass its path (such as --{tool}) or put it on PATH",
                    tool.binary_name().to_uppercase()
                )
            );
            assert!(
                locator(tool, empty.path().as_os_str())
                    .locate_optional()
                    .unwrap()
                    .is_none()
            );
        }
        // No PATH at all.
        let no_path = ToolLocator {
            search_path: None,
            ..locator(Tool::Helm, OsStr::new(""))
        };
        assert!(no_path.locate().unwrap_err().is_not_found());
    }

    #[test]
    fn explicit_wins_over_the_variable_which_wins_over_path() {
        let on_path = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        script(on_path.path(), "helm", "v3", 0o755);
        let by_variable = script(elsewhere.path(), "helm-from-env", "v3", 0o755);
        let explicit = script(elsewhere.path(), "helm-explicit", "v3", 0o755);

        let base = locator(Tool::Helm, on_path.path().as_os_str());
        let found = base
            .clone()
            .with_variable(by_variable.as_os_str())
            .locate()
            .unwrap();
        assert_eq!(
            (found.path(), found.found_by()),
            (by_variable.as_path(), FoundBy::Variable)
        );
        let found = base
            .clone()
            .with_variable(by_variable.as_os_str())
            .explicit(Some(&explicit))
            .locate()
            .unwrap();
        assert_eq!(
            (found.path(), found.found_by()),
            (explicit.as_path(), FoundBy::Explicit)
        );
        // An empty variable counts as unset.
        let found = base.with_variable("").locate().unwrap();
        assert_eq!(found.found_by(), FoundBy::SearchPath);
    }

    #[test]
    fn a_wrong_path_given_is_an_error_naming_it_never_passed_over() {
        let on_path = tempfile::tempdir().unwrap();
        script(on_path.path(), "kustomize", "v5.8.1", 0o755);
        let dir = tempfile::tempdir().unwrap();
        let base = locator(Tool::Kustomize, on_path.path().as_os_str());

        let missing = dir.path().join("no-such-kustomize");
        let err = base.clone().explicit(Some(&missing)).locate().unwrap_err();
        assert!(
            matches!(&err, LocateError::Inaccessible { path, found_by: FoundBy::Explicit, error, .. }
                if path == &missing && error.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "kustomize at {} (given explicitly): ",
                missing.display()
            )),
            "{err}"
        );

        let not_executable = script(dir.path(), "kustomize", "v5.8.1", 0o644);
        let err = base
            .clone()
            .with_variable(not_executable.as_os_str())
            .locate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "kustomize at {} (named by GITOPS_KUSTOMIZE) is not an executable file",
                not_executable.display()
            )
        );
        let err = base
            .clone()
            .explicit(Some(dir.path()))
            .locate()
            .unwrap_err();
        assert!(matches!(err, LocateError::NotExecutable { .. }), "{err:?}");
        assert!(!err.is_not_found());
        assert!(base.explicit(Some(dir.path())).locate_optional().is_err());
    }

    #[test]
    fn a_bare_name_given_is_looked_up_on_path() {
        let on_path = tempfile::tempdir().unwrap();
        let helm3 = script(on_path.path(), "helm3", "v3", 0o755);
        let base = locator(Tool::Helm, on_path.path().as_os_str());
        let found = base.clone().explicit(Some("helm3")).locate().unwrap();
        assert_eq!(found.path(), helm3);
        assert_eq!(found.found_by(), FoundBy::Explicit);
        let err = base.with_variable("helm4").locate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "helm helm4 (named by GITOPS_HELM) was not found on PATH"
        );
    }

    #[test]
    fn names_are_escaped_in_errors() {
        let empty = tempfile::tempdir().unwrap();
        let err = locator(Tool::Helm, empty.path().as_os_str())
            .explicit(Some("/nowhere/helm\n[INFO] forged"))
            .locate()
            .unwrap_err();
        assert!(!err.to_string().contains('\n'), "{err}");
        let err = locator(Tool::Helm, empty.path().as_os_str())
            .with_variable("helm\u{202e}x")
            .locate()
            .unwrap_err();
        assert!(!err.to_string().contains('\u{202e}'), "{err}");
    }

    #[test]
    fn a_relative_path_becomes_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let helm = script(dir.path(), "helm", "v3", 0o755);
        let cwd = std::env::current_dir().unwrap();
        let relative = pathdiff(&helm, &cwd);
        assert!(relative.is_relative());
        let found = locator(Tool::Helm, OsStr::new(""))
            .explicit(Some(&relative))
            .locate()
            .unwrap();
        assert!(found.path().is_absolute(), "{}", found.path().display());
        assert!(found.path().ends_with("helm"));
        assert!(found.path().is_file());
    }

    #[test]
    fn versions_are_read_from_the_tools_output() {
        assert_eq!(parse_version("v5.8.1\n").as_deref(), Some("v5.8.1"));
        assert_eq!(
            parse_version("v3.22.0+g1234abc\n").as_deref(),
            Some("v3.22.0")
        );
        assert_eq!(
            parse_version("Version: 1.2.3 built today").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(parse_version("vX.1"), None);
        assert_eq!(parse_version("v5"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("{Version:kustomize/v5}"), None);
    }

    #[tokio::test]
    async fn version_runs_the_tool_and_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "helm", "v3.22.0+gdeadbee", 0o755);
        let limits = ToolLimits::new().with_max_memory(None);
        let helm = locator(Tool::Helm, dir.path().as_os_str())
            .locate()
            .unwrap();
        assert_eq!(helm.version(&limits).await.unwrap(), "v3.22.0");
        helm.require_version("3.22.0", &limits).await.unwrap();
        let err = helm.require_version("v3.21.0", &limits).await.unwrap_err();
        assert!(
            err.to_string().ends_with("is v3.22.0, v3.21.0 is required"),
            "{err}"
        );

        script(dir.path(), "kustomize", "not a version", 0o755);
        let kustomize = locator(Tool::Kustomize, dir.path().as_os_str())
            .locate()
            .unwrap();
        let err = kustomize.version(&limits).await.unwrap_err();
        assert!(
            matches!(&err, LocateError::UnreadableVersion { output, .. } if output == "not a version"),
            "{err:?}"
        );

        // A tool that fails: the process error is the source.
        let failing = dir.path().join("failing");
        std::fs::write(&failing, "#!/bin/sh\necho broken >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
        let failing = locator(Tool::Kustomize, OsStr::new(""))
            .explicit(Some(&failing))
            .locate()
            .unwrap();
        let err = failing.version(&limits).await.unwrap_err();
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("broken"), "{source}");
    }
}
