//! Git sources over git:// against a real `git daemon` on 127.0.0.1, plus network failures.

mod common;

use std::time::Duration;

use common::{GitDaemon, TestRepo, free_port, list_files};
use gitops_source::{FetchOutcome, FetchRequest, GitReference, GitSource, Source, SourceError};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn git_daemon_fetch_unchanged_and_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let repo = TestRepo::new(&repos, "config");
    repo.commit(&[("a.yaml", "a: 1\n")], "one");
    repo.tag_annotated("v1.0.0");
    let second = repo.commit(&[("b.yaml", "b: 1\n")], "two");
    repo.tag_annotated("v1.1.0");
    let daemon = GitDaemon::start(&repos);

    let git = GitSource::builder(daemon.url("config"), dir.path().join("cache"))
        .reference(GitReference::SemverRange("~1".into()))
        .build()
        .unwrap();
    let FetchOutcome::Fetched(first) = git
        .fetch(FetchRequest::new(dir.path().join("out1")))
        .await
        .unwrap()
    else {
        panic!("first fetch must produce an artifact");
    };
    assert_eq!(first.revision().as_str(), format!("v1.1.0@sha1:{second}"));
    assert_eq!(list_files(first.root()), ["a.yaml", "b.yaml"]);

    let unchanged = git
        .fetch(
            FetchRequest::new(dir.path().join("out2")).with_last_revision(first.revision().clone()),
        )
        .await
        .unwrap();
    assert!(matches!(unchanged, FetchOutcome::Unchanged(_)));

    let third = repo.commit(&[("c.yaml", "c: 1\n")], "three");
    repo.tag_lightweight("v1.2.0");
    let next = git
        .fetch(
            FetchRequest::new(dir.path().join("out3")).with_last_revision(first.revision().clone()),
        )
        .await
        .unwrap();
    assert_eq!(next.revision().as_str(), format!("v1.2.0@sha1:{third}"));
    assert_eq!(
        list_files(&dir.path().join("out3")),
        ["a.yaml", "b.yaml", "c.yaml"]
    );

    let branch = GitSource::builder(daemon.url("config"), dir.path().join("cache-main"))
        .build()
        .unwrap();
    let outcome = branch
        .fetch(FetchRequest::new(dir.path().join("out4")))
        .await
        .unwrap();
    assert_eq!(outcome.revision().as_str(), format!("main@sha1:{third}"));
}

#[tokio::test]
async fn closed_port_is_an_unreachable_host() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let error = GitSource::builder(
        format!("git://127.0.0.1:{port}/none"),
        dir.path().join("cache"),
    )
    .build()
    .unwrap()
    .fetch(FetchRequest::new(dir.path().join("out")))
    .await
    .unwrap_err();
    assert!(
        matches!(error, SourceError::UnreachableHost { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}

#[tokio::test]
async fn closed_port_over_http_and_ssh_is_an_unreachable_host() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for (name, url) in [
        ("http", format!("http://127.0.0.1:{port}/repo")),
        ("ssh", format!("ssh://git@127.0.0.1:{port}/repo")),
    ] {
        let error = GitSource::builder(url, dir.path().join(name))
            .accept_new_host_keys(true)
            .build()
            .unwrap()
            .fetch(FetchRequest::new(dir.path().join("out")))
            .await
            .unwrap_err();
        assert!(
            matches!(error, SourceError::UnreachableHost { .. }),
            "{name}: {error:?}"
        );
    }
}

/// A server that accepts connections and never answers.
fn silent_server() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[tokio::test]
async fn silent_server_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_listener, port) = silent_server();
    let git = GitSource::builder(
        format!("git://127.0.0.1:{port}/x"),
        dir.path().join("cache"),
    )
    .timeout(Duration::from_millis(500))
    .build()
    .unwrap();
    let started = std::time::Instant::now();
    let error = git
        .fetch(FetchRequest::new(dir.path().join("out")))
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn cancellation_stops_a_hanging_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (_listener, port) = silent_server();
    let git = GitSource::builder(
        format!("git://127.0.0.1:{port}/x"),
        dir.path().join("cache"),
    )
    .build()
    .unwrap();
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let error = git
        .fetch(FetchRequest::new(dir.path().join("out")).with_cancellation(token))
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Cancelled { .. }), "{error:?}");
}
