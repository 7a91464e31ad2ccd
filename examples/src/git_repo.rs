//! [`GitRepository`]: a Git repository on branch `main`, driven with the `git` command as a
//! developer would, for the demo, the tests and the benchmarks.
//!
//! Every `git` it runs reads neither the user's nor the system's configuration (hooks, signing,
//! templates) and never prompts; the commit author is set in the repository itself, so the
//! user's Git configuration is neither needed nor changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The author of the commits when [`GitRepositoryBuilder::author`] is not called.
pub const DEFAULT_AUTHOR: (&str, &str) = ("gitops-rs", "gitops@gitops.rs.invalid");

/// The errors of a [`GitRepository`].
#[derive(Debug, thiserror::Error)]
pub enum GitRepositoryError {
    /// The temporary directory could not be made.
    #[error("creating a temporary directory for a Git repository: {0}")]
    TempDir(#[source] std::io::Error),
    /// A file could not be written or removed.
    #[error("{action} {path:?} in the Git repository: {source}")]
    File {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The `git` command could not be started.
    #[error("running `git {args}` in {dir:?} (is git installed?): {source}")]
    Spawn {
        /// Its arguments.
        args: String,
        /// Where.
        dir: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The `git` command failed.
    #[error("`git {args}` in {dir:?} failed with {status}: {stderr}")]
    Git {
        /// Its arguments.
        args: String,
        /// Where.
        dir: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
}

/// One commit of a [`GitRepository`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The full commit hash.
    pub hash: String,
    /// The first line of its message.
    pub message: String,
}

impl Commit {
    /// The abbreviated hash, as `git log --oneline` shows it.
    #[must_use]
    pub fn short_hash(&self) -> &str {
        &self.hash[..self.hash.len().min(7)]
    }
}

/// A change of one file in [`GitRepository::commit`]: its path relative to the work tree, and
/// its new contents (`Some`) or its removal (`None`).
pub type FileChange<'a> = (&'a str, Option<&'a str>);

/// Sets up a [`GitRepository`]: where (a new temporary directory unless
/// [`in_dir`](Self::in_dir)) and who commits.
#[derive(Debug, Clone)]
#[must_use]
pub struct GitRepositoryBuilder {
    prefix: String,
    dir: Option<PathBuf>,
    author: (String, String),
}

impl GitRepositoryBuilder {
    /// The name prefix of the temporary directory (default `gitops-repo-`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Makes the repository in `dir`, an existing directory that is kept when the repository
    /// is dropped, instead of a temporary one.
    pub fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The author (and committer) of the commits (default [`DEFAULT_AUTHOR`]).
    pub fn author(mut self, name: impl Into<String>, email: impl Into<String>) -> Self {
        self.author = (name.into(), email.into());
        self
    }

    /// Runs `git init` on branch `main` and sets the author in the repository's own
    /// configuration.
    ///
    /// # Errors
    /// When the temporary directory cannot be made or `git` fails.
    pub async fn create(self) -> Result<GitRepository, GitRepositoryError> {
        let (path, temp) = match self.dir {
            Some(dir) => (dir, None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix(&self.prefix)
                    .tempdir()
                    .map_err(GitRepositoryError::TempDir)?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let repository = GitRepository { path, _temp: temp };
        repository
            .git(&["init", "--quiet", "--initial-branch=main"])
            .await?;
        for (key, value) in [
            ("user.name", self.author.0.as_str()),
            ("user.email", self.author.1.as_str()),
            ("commit.gpgsign", "false"),
        ] {
            repository.git(&["config", "--local", key, value]).await?;
        }
        Ok(repository)
    }
}

/// A Git repository: a new one on branch `main` (see [`GitRepository::builder`]) in a temporary
/// directory removed on drop, or an existing one ([`GitRepository::open`]).
///
/// ```no_run
/// # async fn example() -> Result<(), gitops_examples::git_repo::GitRepositoryError> {
/// use gitops_examples::git_repo::GitRepository;
/// let repository = GitRepository::create().await?;
/// let commit = repository
///     .commit("first", &[("app/a.yaml", Some("kind: ConfigMap\n"))])
///     .await?;
/// println!("{} at {}", repository.url(), commit.hash);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct GitRepository {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl GitRepository {
    /// A builder of a new repository.
    pub fn builder() -> GitRepositoryBuilder {
        GitRepositoryBuilder {
            prefix: "gitops-repo-".to_owned(),
            dir: None,
            author: (DEFAULT_AUTHOR.0.to_owned(), DEFAULT_AUTHOR.1.to_owned()),
        }
    }

    /// A new repository in a temporary directory, commits by [`DEFAULT_AUTHOR`]: the
    /// [`builder`](Self::builder) with its defaults.
    ///
    /// # Errors
    /// When the temporary directory cannot be made or `git` fails.
    pub async fn create() -> Result<Self, GitRepositoryError> {
        Self::builder().create().await
    }

    /// An existing repository (its work tree) at `path`, such as a clone; kept on drop.
    #[must_use]
    pub fn open(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            _temp: None,
        }
    }

    /// The repository's directory (its work tree).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `file://` URL a Git source fetches from.
    #[must_use]
    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// Writes or removes files (see [`FileChange`]), and commits everything with `message` on
    /// the current branch.
    ///
    /// # Errors
    /// When a file cannot be written or removed, or `git` fails.
    pub async fn commit(
        &self,
        message: &str,
        changes: &[FileChange<'_>],
    ) -> Result<Commit, GitRepositoryError> {
        for (relative, contents) in changes {
            let path = self.path.join(relative);
            match contents {
                Some(contents) => {
                    if let Some(parent) = path.parent() {
                        tokio::fs::create_dir_all(parent)
                            .await
                            .map_err(file_error("creating", parent))?;
                    }
                    tokio::fs::write(&path, contents)
                        .await
                        .map_err(file_error("writing", &path))?;
                }
                None => tokio::fs::remove_file(&path)
                    .await
                    .map_err(file_error("removing", &path))?,
            }
        }
        self.git(&["add", "--all"]).await?;
        self.git(&["commit", "--quiet", "--message", message])
            .await?;
        self.head().await
    }

    /// The commit `HEAD` points to.
    ///
    /// # Errors
    /// When `git` fails.
    pub async fn head(&self) -> Result<Commit, GitRepositoryError> {
        let out = self.git(&["log", "-1", "--format=%H%n%s"]).await?;
        let mut lines = out.lines();
        Ok(Commit {
            hash: lines.next().unwrap_or_default().to_owned(),
            message: lines.next().unwrap_or_default().to_owned(),
        })
    }

    /// Clones the repository into `destination` (which must not exist or be empty).
    ///
    /// # Errors
    /// When `git` fails.
    pub async fn clone_into(
        &self,
        destination: impl Into<PathBuf>,
    ) -> Result<GitRepository, GitRepositoryError> {
        let destination = destination.into();
        let source = self.path.to_string_lossy().into_owned();
        let target = destination.to_string_lossy().into_owned();
        self.git(&["clone", "--quiet", &source, &target]).await?;
        Ok(Self::open(destination))
    }

    /// Runs `git args` in the repository and returns what it printed on standard output; the
    /// process is killed if the future is dropped.
    ///
    /// # Errors
    /// When `git` cannot be started or fails.
    pub async fn git(&self, args: &[&str]) -> Result<String, GitRepositoryError> {
        let output = tokio::process::Command::from(self.command(args))
            .kill_on_drop(true)
            .output()
            .await;
        self.checked(args, output)
    }

    /// [`git`](Self::git), blocking the current thread: for synchronous callers (benchmarks).
    ///
    /// # Errors
    /// When `git` cannot be started or fails.
    pub fn git_blocking(&self, args: &[&str]) -> Result<String, GitRepositoryError> {
        let output = self.command(args).output();
        self.checked(args, output)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command
            .args(args)
            .current_dir(&self.path)
            // Neither the user's nor the system's configuration (hooks, signing, templates).
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0");
        command
    }

    fn checked(
        &self,
        args: &[&str],
        output: std::io::Result<Output>,
    ) -> Result<String, GitRepositoryError> {
        let output = output.map_err(|source| GitRepositoryError::Spawn {
            args: args.join(" "),
            dir: self.path.clone(),
            source,
        })?;
        if !output.status.success() {
            return Err(GitRepositoryError::Git {
                args: args.join(" "),
                dir: self.path.clone(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn file_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> GitRepositoryError {
    let path = path.to_owned();
    move |source| GitRepositoryError::File {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_writes_and_removals_and_cleans_up() {
        let repository = GitRepository::builder()
            .author("Unit", "unit@example.invalid")
            .create()
            .await
            .unwrap();
        let first = repository
            .commit(
                "first",
                &[("dir/a.txt", Some("a\n")), ("b.txt", Some("b\n"))],
            )
            .await
            .unwrap();
        assert_eq!(first.hash.len(), 40);
        assert_eq!(first.message, "first");
        let second = repository
            .commit("second", &[("b.txt", None)])
            .await
            .unwrap();
        assert_ne!(first.hash, second.hash);
        assert_eq!(repository.git(&["ls-files"]).await.unwrap(), "dir/a.txt\n");
        let author = repository.git_blocking(&["log", "-1", "--format=%an <%ae>"]);
        assert_eq!(author.unwrap(), "Unit <unit@example.invalid>\n");

        let target = tempfile::tempdir().unwrap();
        let clone = repository
            .clone_into(target.path().join("clone"))
            .await
            .unwrap();
        assert_eq!(clone.head().await.unwrap(), second);

        let path = repository.path().to_owned();
        drop(repository);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn errors_name_the_file_and_the_command() {
        let repository = GitRepository::create().await.unwrap();
        let error = repository
            .commit("x", &[("app/nope.yaml", None)])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("app/nope.yaml"), "{error}");
        let error = repository.git_blocking(&["no-such-command"]).unwrap_err();
        assert!(
            error.to_string().contains("`git no-such-command`"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_given_directory_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let repository = GitRepository::builder()
            .in_dir(dir.path())
            .create()
            .await
            .unwrap();
        repository.commit("one", &[("a", Some("a"))]).await.unwrap();
        drop(repository);
        assert!(dir.path().join(".git").is_dir());
    }
}
