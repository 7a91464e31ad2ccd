//! Hostile repositories served by a real `git daemon` on 127.0.0.1: trees crafted with
//! `git hash-object -t tree --literally` whose entry names would write outside the artifact, into
//! git's metadata, or forge log lines. Each fetch must fail naming the entry and the commit, and
//! write nothing at all.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use common::{GitDaemon, TestRepo, git, list_files, run_git};
use gitops_source::{
    FetchRequest, GitReference, GitSource, LocalDirectorySource, SelectError, Source, SourceError,
    path::PathError,
};

/// Write an object of `kind` with raw `content` into the repository at `dir`, unchecked.
fn hash_object_literally(dir: &Path, kind: &str, content: &[u8]) -> String {
    let mut child = git(dir)
        .args(["hash-object", "-t", kind, "--literally", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(content).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A raw tree object of (mode, name, object id) entries, in the given order.
fn raw_tree(dir: &Path, entries: &[(&str, &[u8], &str)]) -> String {
    let mut content = Vec::new();
    for (mode, name, id) in entries {
        content.extend_from_slice(mode.as_bytes());
        content.push(b' ');
        content.extend_from_slice(name);
        content.push(0);
        content.extend_from_slice(&hex_to_bytes(id));
    }
    hash_object_literally(dir, "tree", &content)
}

/// Commit `tree` on branch `branch` of the repository at `dir`; returns the commit.
fn commit_tree(dir: &Path, branch: &str, tree: &str) -> String {
    let commit = run_git(dir, &["commit-tree", tree, "-m", branch]);
    run_git(
        dir,
        &["update-ref", &format!("refs/heads/{branch}"), &commit],
    );
    commit
}

struct Case {
    branch: &'static str,
    /// The escaped entry path the error must name.
    entry: String,
    commit: String,
}

#[tokio::test]
async fn hostile_tree_entries_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let repo = TestRepo::new(&repos, "hostile");
    repo.commit(&[("ok.yaml", "ok: 1\n")], "a good first commit");
    let path = &repo.path;
    let blob = hash_object_literally(path, "blob", b"owned: true\n");
    let good = hash_object_literally(path, "blob", b"good: true\n");
    // A directory `sub` holding the evil blob, used under hostile names.
    let sub = raw_tree(path, &[("100644", b"evil.yaml", &blob)]);
    // Where an absolute entry name would land: inside this test's directory.
    let absolute_target = dir.path().join("absolute-target.yaml");
    let absolute = absolute_target.display().to_string();

    let mut cases = Vec::new();
    let mut case = |branch: &'static str, entries: &[(&str, &[u8], &str)], entry: &str| {
        let tree = raw_tree(path, entries);
        let commit = commit_tree(path, branch, &tree);
        cases.push(Case {
            branch,
            entry: entry.to_owned(),
            commit,
        });
    };
    case(
        "dotdot",
        &[("100644", b"a.yaml", &good), ("40000", b"..", &sub)],
        "..",
    );
    case(
        "slash",
        &[
            ("100644", b"a.yaml", &good),
            ("100644", b"a/../../../evil.yaml", &blob),
        ],
        "a/../../../evil.yaml",
    );
    case(
        "absolute",
        &[
            ("100644", absolute.as_bytes(), &blob),
            ("100644", b"z.yaml", &good),
        ],
        &absolute,
    );
    case(
        "backslash",
        &[("100644", b"..\\..\\evil.yaml", &blob)],
        "..\\\\..\\\\evil.yaml",
    );
    case("dot", &[("40000", b".", &sub)], ".");
    case("dotgit-upper", &[("40000", b".GIT", &sub)], ".GIT");
    case("dotgit-ntfs", &[("40000", b".git. ", &sub)], ".git. ");
    case("dotgit-short", &[("40000", b"GIT~1", &sub)], "GIT~1");
    case(
        "dotgit-hfs",
        &[("40000", ".g\u{200c}it".as_bytes(), &sub)],
        ".g\\u{200c}it",
    );
    // Deeper in the tree, the error names the whole path.
    let deep = raw_tree(path, &[("40000", b"..", &sub)]);
    case("deep", &[("40000", b"apps", &deep)], "apps/..");
    // Links and submodules are never written, but a hostile name is refused for them too.
    case(
        "symlink",
        &[
            ("100644", b"a.yaml", &good),
            ("120000", b"../escape", &blob),
        ],
        "../escape",
    );
    let commit_id = repo.head();
    case("submodule", &[("160000", b"..", &commit_id)], "..");
    // Log forging (issue item 7): a newline in a name.
    case(
        "newline",
        &[("100644", b"evil.yaml\nERROR forged log line", &blob)],
        "evil.yaml\\nERROR forged log line",
    );
    case(
        "duplicate",
        &[("100644", b"a.yaml", &good), ("100644", b"a.yaml", &blob)],
        "a.yaml",
    );

    let daemon = GitDaemon::start(&repos);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let before = list_files(dir.path());
    for case in &cases {
        let destination = out.join(case.branch).join("artifact");
        let source = GitSource::builder(
            daemon.url("hostile"),
            dir.path().join("caches").join(case.branch),
        )
        .reference(GitReference::Branch(case.branch.into()))
        .build()
        .unwrap();
        let error = source
            .fetch(FetchRequest::new(&destination))
            .await
            .expect_err(case.branch);
        let SourceError::Select(SelectError::UnsafeEntry {
            origin,
            entry,
            source: reason,
        }) = &error
        else {
            panic!("{}: {error:?}", case.branch);
        };
        assert_eq!(
            origin,
            &format!("commit {}", case.commit),
            "{}",
            case.branch
        );
        assert_eq!(entry, &case.entry, "{}", case.branch);
        let printed = error.to_string();
        assert!(
            printed.contains(&case.commit) && printed.contains(&case.entry),
            "{}: {printed}",
            case.branch
        );
        // Printing the error and its reason never starts a new line.
        let chain = format!("{printed}: {reason} {error:?}");
        assert!(!chain.contains('\n'), "{}: {chain}", case.branch);
        if case.branch == "duplicate" {
            assert!(matches!(reason, PathError::Duplicate { .. }), "{reason:?}");
        }
        assert!(
            !destination.exists() && !out.join(case.branch).exists(),
            "{}: an artifact was written",
            case.branch
        );
    }
    // Nothing was written anywhere but in the caches.
    let after: Vec<_> = list_files(dir.path())
        .into_iter()
        .filter(|path| !path.starts_with("caches/"))
        .collect();
    assert_eq!(after, before);
    assert!(!absolute_target.exists());
    assert!(!dir.path().join("evil.yaml").exists());
}

#[cfg(unix)]
#[tokio::test]
async fn local_directory_entries_go_through_the_same_check() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("config");
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), "[core]\n").unwrap();
    std::fs::create_dir_all(root.join(".GIT")).unwrap();
    std::fs::write(root.join(".GIT/config"), "[core]\n").unwrap();
    std::fs::write(root.join("app.yaml"), "app: 1\n").unwrap();

    // A checkout's own metadata never goes into the artifact, even without the default rules.
    let source = LocalDirectorySource::new(&root)
        .with_ignore_rules(gitops_source::IgnoreRules::default().with_defaults(false));
    let outcome = source
        .fetch(FetchRequest::new(dir.path().join("out1")))
        .await
        .unwrap();
    assert!(matches!(outcome, gitops_source::FetchOutcome::Fetched(_)));
    assert_eq!(list_files(&dir.path().join("out1")), ["app.yaml"]);

    // A name holding a newline is refused, and printed escaped.
    std::fs::write(root.join("evil.yaml\nERROR forged"), "x").unwrap();
    let error = source
        .fetch(FetchRequest::new(dir.path().join("out2")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SourceError::Select(SelectError::UnsafeEntry { ref entry, .. })
                if entry == "evil.yaml\\nERROR forged"
        ),
        "{error:?}"
    );
    assert!(!error.to_string().contains('\n'), "{error}");
    assert!(!dir.path().join("out2").exists());
}
