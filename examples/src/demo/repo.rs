//! [`DemoRepository`]: the demo's Git repository, in a temporary directory, driven with the `git`
//! command as a developer would.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::app::{DemoFile, REVISION_1};

/// The errors of the demo repository.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The temporary directory could not be made.
    #[error("creating a temporary directory for the demo repository: {0}")]
    TempDir(#[source] std::io::Error),
    /// A file could not be written or removed.
    #[error("{action} {path:?} in the demo repository: {source}")]
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

/// One commit of the demo repository.
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

/// A Git repository on branch `main` in a temporary directory (removed on drop), holding the demo
/// app with its namespace renamed as asked.
///
/// ```no_run
/// # async fn example() -> Result<(), gitops_examples::demo::RepositoryError> {
/// use gitops_examples::demo::DemoRepository;
/// let repository = DemoRepository::create("gitops-demo").await?;
/// println!("{} at {}", repository.url(), repository.head().await?.hash);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DemoRepository {
    dir: tempfile::TempDir,
    namespace: String,
}

impl DemoRepository {
    /// Creates the repository with revision 1 of the demo app ([`REVISION_1`]) committed, the
    /// namespace renamed to `namespace`. The commit author is set in the repository itself, so
    /// the user's Git configuration is neither needed nor changed.
    ///
    /// # Errors
    /// When the directory cannot be made or `git` fails.
    pub async fn create(namespace: &str) -> Result<Self, RepositoryError> {
        let dir = tempfile::Builder::new()
            .prefix("gitops-demo-repo-")
            .tempdir()
            .map_err(RepositoryError::TempDir)?;
        let repository = Self {
            dir,
            namespace: namespace.to_owned(),
        };
        repository
            .git(&["init", "--quiet", "--initial-branch=main"])
            .await?;
        for (key, value) in [
            ("user.name", "gitops-rs demo"),
            ("user.email", "demo@gitops.rs.invalid"),
            ("commit.gpgsign", "false"),
        ] {
            repository.git(&["config", "--local", key, value]).await?;
        }
        repository
            .commit(
                "Revision 1: the web app, its config, service and a Greeting",
                REVISION_1,
                &[],
            )
            .await?;
        Ok(repository)
    }

    /// The repository's directory (its work tree).
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The `file://` URL a Git source fetches from.
    #[must_use]
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    /// The namespace the app's files name.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Writes `files` (namespace renamed), deletes `removed`, and commits everything with
    /// `message` on `main`.
    ///
    /// # Errors
    /// When a file cannot be written or removed, or `git` fails.
    pub async fn commit(
        &self,
        message: &str,
        files: &[DemoFile],
        removed: &[&str],
    ) -> Result<Commit, RepositoryError> {
        for file in files {
            let path = self.dir.path().join(file.path);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(file_error("creating", parent))?;
            }
            tokio::fs::write(&path, file.contents_for(&self.namespace))
                .await
                .map_err(file_error("writing", &path))?;
        }
        for relative in removed {
            let path = self.dir.path().join(relative);
            tokio::fs::remove_file(&path)
                .await
                .map_err(file_error("removing", &path))?;
        }
        self.git(&["add", "--all"]).await?;
        self.git(&["commit", "--quiet", "--message", message])
            .await?;
        self.head().await
    }

    /// The commit `main` points to.
    ///
    /// # Errors
    /// When `git` fails.
    pub async fn head(&self) -> Result<Commit, RepositoryError> {
        let out = self.git(&["log", "-1", "--format=%H%n%s"]).await?;
        let mut lines = out.lines();
        Ok(Commit {
            hash: lines.next().unwrap_or_default().to_owned(),
            message: lines.next().unwrap_or_default().to_owned(),
        })
    }

    /// `git show --stat` of the last commit, for the narration.
    ///
    /// # Errors
    /// When `git` fails.
    pub async fn last_commit_stat(&self) -> Result<String, RepositoryError> {
        let stat = self
            .git(&["show", "--stat", "--format=%h %s", "HEAD"])
            .await?;
        Ok(stat
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// The patch of the last commit (`git show`), for the narration.
    ///
    /// # Errors
    /// When `git` fails.
    pub async fn last_commit_patch(&self) -> Result<String, RepositoryError> {
        let patch = self
            .git(&["show", "--format=%h %s", "--no-color", "HEAD"])
            .await?;
        Ok(patch
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with("index "))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    async fn git(&self, args: &[&str]) -> Result<String, RepositoryError> {
        let dir = self.dir.path();
        let output = Command::new("git")
            .args(args)
            .current_dir(dir)
            // Neither the user's nor the system's configuration (hooks, signing, templates).
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| RepositoryError::Spawn {
                args: args.join(" "),
                dir: dir.to_owned(),
                source,
            })?;
        if !output.status.success() {
            return Err(RepositoryError::Git {
                args: args.join(" "),
                dir: dir.to_owned(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn file_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RepositoryError {
    let path = path.to_owned();
    move |source| RepositoryError::File {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::app::{REVISION_2, REVISION_3_REMOVED};

    #[tokio::test]
    async fn commits_the_three_revisions_and_cleans_up() {
        let repository = DemoRepository::create("demo-unit").await.unwrap();
        let first = repository.head().await.unwrap();
        assert_eq!(first.hash.len(), 40);
        let namespace = std::fs::read_to_string(repository.path().join("app/namespace.yaml"));
        assert!(namespace.unwrap().contains("name: demo-unit"));

        let second = repository.commit("two", REVISION_2, &[]).await.unwrap();
        assert_ne!(first.hash, second.hash);
        assert_eq!(second.message, "two");
        let stat = repository.last_commit_stat().await.unwrap();
        assert!(stat.contains("app/configmap.yaml"), "{stat}");
        let patch = repository.last_commit_patch().await.unwrap();
        assert!(
            patch.contains("+  greeting: Hello from revision 2"),
            "{patch}"
        );

        repository
            .commit("three", &[], REVISION_3_REMOVED)
            .await
            .unwrap();
        assert!(!repository.path().join("app/service.yaml").exists());
        let tracked = repository.git(&["ls-files"]).await.unwrap();
        assert_eq!(tracked.lines().count(), REVISION_1.len() - 1, "{tracked}");

        let path = repository.path().to_owned();
        drop(repository);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_missing_file_is_named() {
        let repository = DemoRepository::create("demo-unit").await.unwrap();
        let error = repository
            .commit("x", &[], &["app/nope.yaml"])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("app/nope.yaml"), "{error}");
    }
}
