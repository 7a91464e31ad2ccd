//! Recycling a retired artifact ([`Recycle`]) with a Git source over git:// against a real
//! `git daemon` on 127.0.0.1: only the changed paths are touched, the artifact in use never.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{GitDaemon, TestRepo, run_git};
use gitops_source::{Artifact, FetchOutcome, FetchRequest, GitSource, Recycle, Source};

fn ino(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

async fn fetch(git: &GitSource, request: FetchRequest) -> Artifact {
    match git.fetch(request).await.unwrap() {
        FetchOutcome::Fetched(artifact) => artifact,
        FetchOutcome::Unchanged(revision) => panic!("{revision} is unchanged"),
    }
}

/// Revisions 1 and 2 fetched into `out/1` and `out/2` (2 changes `b/c.yaml`), then a third
/// commit: `a.yaml` changed, `gone/x.yaml` deleted, `new/n.yaml` added.
async fn two_revisions(repo: &TestRepo, git: &GitSource, out: &Path) -> (Artifact, Artifact) {
    repo.commit(
        &[
            ("a.yaml", "a: 1\n"),
            ("b/c.yaml", "c: 1\n"),
            ("d/e.yaml", "e: 1\n"),
            ("gone/x.yaml", "x: 1\n"),
        ],
        "one",
    );
    let first = fetch(git, FetchRequest::new(out.join("1"))).await;
    repo.commit(&[("b/c.yaml", "c: 2\n")], "two");
    let second = fetch(
        git,
        FetchRequest::new(out.join("2")).with_previous(first.clone()),
    )
    .await;
    run_git(&repo.path, &["rm", "-q", "gone/x.yaml"]);
    repo.commit(&[("a.yaml", "a: 3\n"), ("new/n.yaml", "n: 3\n")], "three");
    (first, second)
}

#[tokio::test]
async fn a_retired_artifact_is_updated_in_place_touching_only_changed_paths() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let repo = TestRepo::new(&repos, "config");
    let daemon = GitDaemon::start(&repos);
    let git = GitSource::builder(daemon.url("config"), dir.path().join("cache"))
        .build()
        .unwrap();
    let out = dir.path().join("out");
    let (first, second) = two_revisions(&repo, &git, &out).await;
    let kept = ino(&out.join("1/d/e.yaml"));
    let old_a = ino(&out.join("1/a.yaml"));
    let current: Vec<_> = ["a.yaml", "b/c.yaml", "d/e.yaml", "gone/x.yaml"]
        .iter()
        .map(|path| (*path, ino(&out.join("2").join(path))))
        .collect();
    // Tampered with in the retired tree: replaced by a file of the same size.
    let tampered = out.join("1/gone/x.yaml");
    std::fs::remove_file(&tampered).unwrap();
    std::fs::write(&tampered, "x: 9\n").unwrap();
    let first_dir = ino(&out.join("1"));

    let recycle = Recycle::new(first).unwrap();
    let third = fetch(
        &git,
        FetchRequest::new(out.join("3"))
            .with_previous(second.clone())
            .with_recycle(recycle.clone()),
    )
    .await;
    assert!(recycle.take_back().is_none());
    let root = out.join("3");
    assert_eq!(
        ino(&root),
        first_dir,
        "the retired tree was renamed into place"
    );
    assert!(!out.join("1").exists());
    assert_eq!(ino(&root.join("d/e.yaml")), kept, "unchanged file kept");
    assert_ne!(
        ino(&root.join("a.yaml")),
        old_a,
        "changed file: a new inode"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("a.yaml")).unwrap(),
        "a: 3\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("b/c.yaml")).unwrap(),
        "c: 2\n"
    );
    assert!(!root.join("gone").exists());
    assert_eq!(third.file_count(), 4);
    third.verify().unwrap();
    // The artifact in use is untouched.
    second.verify().unwrap();
    for (path, inode) in current {
        assert_eq!(ino(&out.join("2").join(path)), inode, "{path}");
    }
    // Written from scratch, the same commit has the same digest.
    let fresh = GitSource::builder(daemon.url("config"), dir.path().join("cache2"))
        .build()
        .unwrap();
    let scratch = fetch(&fresh, FetchRequest::new(out.join("scratch"))).await;
    assert_eq!(scratch.digest(), third.digest());

    // Unchanged: the retired artifact is not used and comes back untouched.
    let recycle = Recycle::new(second).unwrap();
    let unchanged = git
        .fetch(
            FetchRequest::new(out.join("4"))
                .with_previous(third.clone())
                .with_recycle(recycle.clone()),
        )
        .await
        .unwrap();
    assert!(matches!(unchanged, FetchOutcome::Unchanged(_)));
    let second = recycle.take_back().expect("handed back");
    second.verify().unwrap();
    assert!(!out.join("4").exists());
}

#[tokio::test]
async fn a_held_or_vanished_retired_artifact_falls_back_to_a_new_tree() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let repo = TestRepo::new(&repos, "config");
    let daemon = GitDaemon::start(&repos);
    let git = GitSource::builder(daemon.url("config"), dir.path().join("cache"))
        .build()
        .unwrap();
    let out = dir.path().join("out");
    let (first, second) = two_revisions(&repo, &git, &out).await;

    // Held by a reader: refused, and the fetch links from the artifact in use instead.
    let reader = first.clone();
    let first = Recycle::new(first).unwrap_err();
    let third = fetch(
        &git,
        FetchRequest::new(out.join("3")).with_previous(second.clone()),
    )
    .await;
    assert_eq!(third.reused_files(), 2);
    reader.verify().unwrap();
    third.verify().unwrap();
    drop(reader);

    // Its directory vanished (recycling fails at once): the artifact is written anew.
    std::fs::rename(out.join("1"), dir.path().join("elsewhere")).unwrap();
    repo.commit(&[("d/e.yaml", "e: 4\n")], "four");
    let recycle = Recycle::new(first).unwrap();
    let fourth = fetch(
        &git,
        FetchRequest::new(out.join("4"))
            .with_previous(third.clone())
            .with_recycle(recycle.clone()),
    )
    .await;
    assert!(recycle.take_back().is_none());
    assert_eq!(
        std::fs::read_to_string(fourth.root().join("d/e.yaml")).unwrap(),
        "e: 4\n"
    );
    fourth.verify().unwrap();
    third.verify().unwrap();
    second.verify().unwrap();
}
