//! [`DemoRepository`]: the demo's Git repository, in a temporary directory, driven with the `git`
//! command as a developer would.

use std::path::Path;

use super::app::{DemoFile, REVISION_1};
use crate::git_repo::{GitRepository, GitRepositoryError};

pub use crate::git_repo::Commit;

/// The errors of the demo repository: those of its [`GitRepository`].
pub type RepositoryError = GitRepositoryError;

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
    repository: GitRepository,
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
        let repository = GitRepository::builder()
            .prefix("gitops-demo-repo-")
            .author("gitops-rs demo", "demo@gitops.rs.invalid")
            .create()
            .await?;
        let repository = Self {
            repository,
            namespace: namespace.to_owned(),
        };
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
        self.repository.path()
    }

    /// The `file://` URL a Git source fetches from.
    #[must_use]
    pub fn url(&self) -> String {
        self.repository.url()
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
        let contents: Vec<(&str, String)> = files
            .iter()
            .map(|file| (file.path, file.contents_for(&self.namespace)))
            .collect();
        let changes: Vec<(&str, Option<&str>)> = contents
            .iter()
            .map(|(path, contents)| (*path, Some(contents.as_str())))
            .chain(removed.iter().map(|path| (*path, None)))
            .collect();
        self.repository.commit(message, &changes).await
    }

    /// The commit `main` points to.
    ///
    /// # Errors
    /// When `git` fails.
    pub async fn head(&self) -> Result<Commit, RepositoryError> {
        self.repository.head().await
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
        self.repository.git(args).await
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
