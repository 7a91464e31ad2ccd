//! A sparse path that leaves the root, is absolute or holds a control character is refused by
//! the Git source and the local-directory source with the same error: the variant and the
//! wording that `Sparse`'s docs promise (issue #17), also when the revision is unchanged.

mod common;

use std::time::Duration;

use common::TestRepo;
use gitops_source::{
    FetchOutcome, FetchRequest, GitSource, LocalDirectorySource, SelectError, Source, SourceError,
    Sparse,
};

#[tokio::test]
async fn git_and_local_sources_refuse_a_bad_sparse_path_alike() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(dir.path(), "repo");
    repo.commit(&[("apps/prod/cm.yaml", "a: 1\n")], "tree");
    let git = GitSource::builder(repo.file_url(), dir.path().join("cache"))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let local = LocalDirectorySource::new(dir.path().join("repo"));
    for (index, bad) in ["../etc", "/etc", "apps/\u{1b}[2Jx"]
        .into_iter()
        .enumerate()
    {
        let request = |name: &str| {
            FetchRequest::new(dir.path().join(format!("{name}-{index}")))
                .with_sparse(Sparse::new(["apps/prod", bad]))
        };
        let from_git = git.fetch(request("git")).await.unwrap_err();
        let from_local = local.fetch(request("local")).await.unwrap_err();
        for error in [&from_git, &from_local] {
            assert!(
                matches!(
                    error,
                    SourceError::Select(SelectError::InvalidSubpath { subpath }) if subpath == bad
                ),
                "{bad:?}: {error:?}"
            );
        }
        assert_eq!(from_git.to_string(), from_local.to_string());
        assert!(!from_git.to_string().contains('\u{1b}'), "{from_git}");
    }
    // An unchanged revision does not hide a bad path: both refuse it before looking.
    let fetched = |outcome: FetchOutcome| match outcome {
        FetchOutcome::Fetched(artifact) => artifact.revision().clone(),
        FetchOutcome::Unchanged(revision) => panic!("a first fetch is new, not {revision}"),
    };
    let git_revision = fetched(
        git.fetch(FetchRequest::new(dir.path().join("g")))
            .await
            .unwrap(),
    );
    let local_revision = fetched(
        local
            .fetch(FetchRequest::new(dir.path().join("l")))
            .await
            .unwrap(),
    );
    for (source, revision, name) in [
        (&git as &dyn Source, git_revision, "g2"),
        (&local as &dyn Source, local_revision, "l2"),
    ] {
        let request = FetchRequest::new(dir.path().join(name))
            .with_last_revision(revision)
            .with_sparse(Sparse::new(["../etc"]));
        let error = source.fetch(request).await.unwrap_err();
        assert!(
            matches!(
                error,
                SourceError::Select(SelectError::InvalidSubpath { .. })
            ),
            "{}: {error:?}",
            source.location()
        );
    }
    assert_eq!(
        local
            .fetch(FetchRequest::new(dir.path().join("x")).with_sparse(Sparse::new(["../etc"])))
            .await
            .unwrap_err()
            .to_string(),
        "subpath \"../etc\" must be relative and stay inside the source"
    );
}
