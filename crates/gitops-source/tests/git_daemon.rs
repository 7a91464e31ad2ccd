//! Git sources over git:// against a real `git daemon` on 127.0.0.1, plus network failures.

mod common;

use std::time::Duration;

use common::{GitDaemon, TestRepo, captured_logs, free_port, list_files, run_git};
use gitops_source::{
    FetchOutcome, FetchRequest, GitReference, GitSource, IgnoreRules, SkipReason, Source,
    SourceError,
};
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

/// A source for the git:// server on `port` that gives up after half a second.
fn impatient_source(port: u16, dir: &std::path::Path) -> GitSource {
    GitSource::builder(format!("git://127.0.0.1:{port}/x"), dir.join("cache"))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

#[tokio::test]
async fn silent_server_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_listener, port) = silent_server();
    let git = impatient_source(port, dir.path());
    let started = std::time::Instant::now();
    let error = git
        .fetch(FetchRequest::new(dir.path().join("out")))
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_server_that_stops_answering_does_not_keep_the_connection_open() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, port) = silent_server();
    // The server reads the request, then waits for the client to close the connection.
    let server = std::thread::spawn(move || {
        use std::io::Read as _;
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).map(|_| received)
    });
    let git = impatient_source(port, dir.path());
    let error = git
        .fetch(FetchRequest::new(dir.path().join("out")))
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Timeout { .. }), "{error:?}");
    // The fetch's thread gave up its read and closed the socket: the server saw the end of the
    // stream, not its own 30 s read timeout.
    let received = server
        .join()
        .unwrap()
        .expect("the client closes the connection");
    assert!(
        String::from_utf8_lossy(&received).contains("git-upload-pack /x"),
        "{received:?}"
    );
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

#[tokio::test]
async fn links_and_submodules_are_left_out_listed_and_logged() {
    let logs = captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let repo = TestRepo::new(&repos, "linked");
    // A submodule's commit: any commit id will do, the other repository is never fetched.
    let other = repo.commit(&[("app/base.yaml", "a: 1\n")], "base");
    let app = repo.path.join("app");
    std::os::unix::fs::symlink("base.yaml", app.join("alias-to-base.yaml")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", app.join("escape-link.yaml")).unwrap();
    std::fs::create_dir_all(app.join("nested")).unwrap();
    std::os::unix::fs::symlink("..", app.join("nested/parent-dir-link")).unwrap();
    // A right-to-left override is a legal name; the warning must print it escaped (log forging).
    std::os::unix::fs::symlink("base.yaml", app.join("rtl-\u{202e}lmay.exe")).unwrap();
    // A link that an ignore rule excludes is the user's choice, not a silent skip.
    std::os::unix::fs::symlink("base.yaml", app.join("ignored-link.md")).unwrap();
    // Outside the subpath: not part of this artifact at all.
    std::os::unix::fs::symlink("app/base.yaml", repo.path.join("top-link.yaml")).unwrap();
    run_git(&repo.path, &["add", "-A"]);
    run_git(
        &repo.path,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{other},app/vendored-submodule"),
        ],
    );
    run_git(&repo.path, &["commit", "-q", "-m", "links and a submodule"]);
    let tree = run_git(&repo.path, &["ls-tree", "-r", "HEAD"]);
    assert!(tree.contains("160000 commit"), "{tree}");
    assert!(tree.contains("120000 blob"), "{tree}");
    let daemon = GitDaemon::start(&repos);

    let git = GitSource::builder(daemon.url("linked"), dir.path().join("cache"))
        .subpath("app")
        .ignore_rules(IgnoreRules::default().with_pattern("*.md"))
        .build()
        .unwrap();
    let FetchOutcome::Fetched(artifact) = git
        .fetch(FetchRequest::new(dir.path().join("out")))
        .await
        .unwrap()
    else {
        panic!("the first fetch must produce an artifact");
    };
    assert_eq!(list_files(artifact.root()), ["base.yaml"]);
    let skipped: Vec<(&str, SkipReason)> = artifact
        .skipped()
        .iter()
        .map(|entry| (entry.path(), entry.reason()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("alias-to-base.yaml", SkipReason::Symlink),
            ("escape-link.yaml", SkipReason::Symlink),
            ("nested/parent-dir-link", SkipReason::Symlink),
            ("rtl-\u{202e}lmay.exe", SkipReason::Symlink),
            ("vendored-submodule", SkipReason::Submodule),
        ]
    );
    assert_eq!(
        artifact.skipped()[4].to_string(),
        "vendored-submodule (submodule)"
    );
    let rtl = artifact.skipped()[3].to_string();
    assert_eq!(rtl, "rtl-\\u{202e}lmay.exe (symbolic link)");
    artifact.verify().unwrap();

    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    for (path, reason) in [
        ("alias-to-base.yaml", "symbolic link"),
        ("escape-link.yaml", "symbolic link"),
        ("nested/parent-dir-link", "symbolic link"),
        ("vendored-submodule", "submodule"),
    ] {
        let line = logs
            .lines()
            .find(|line| line.contains(&format!("path={path} ")))
            .unwrap_or_else(|| panic!("no warning names {path}:\n{logs}"));
        assert!(line.contains(" WARN "), "{line}");
        assert!(line.contains(&format!("reason={reason}")), "{line}");
        assert!(line.contains(&daemon.url("linked")), "{line}");
    }
    let rtl_line = logs
        .lines()
        .find(|line| line.contains("path=rtl-"))
        .unwrap_or_else(|| panic!("no warning names the link with an override:\n{logs}"));
    assert!(
        rtl_line.contains("path=rtl-\\u{202e}lmay.exe reason=symbolic link"),
        "{rtl_line}"
    );
    assert!(!logs.contains('\u{202e}'), "{logs}");
    assert!(!logs.contains("ignored-link.md"), "{logs}");
    assert!(!logs.contains("top-link.yaml"), "{logs}");
}

/// A gzipped tar of a small chart, as `helm package` and `helm dependency build` write one.
fn chart_archive(name: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, content) in [
        (
            format!("{name}/Chart.yaml"),
            format!("apiVersion: v2\nname: {name}\nversion: 1.2.3\n"),
        ),
        (
            format!("{name}/templates/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dep\n".to_owned(),
        ),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, content.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[tokio::test]
async fn vendored_helm_dependencies_arrive_and_other_archives_stay_out() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let repo = TestRepo::new(&repos, "charts");
    let redis = chart_archive("redis");
    let files: [(&str, &[u8]); 6] = [
        (
            "apps/web/Chart.yaml",
            b"apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n- name: redis\n  \
              version: 1.2.3\n  repository: https://charts.example.invalid\n",
        ),
        ("apps/web/Chart.lock", b"dependencies: []\n"),
        ("apps/web/charts/redis-1.2.3.tgz", &redis),
        // Archives elsewhere are still left out by default.
        ("apps/web/release-backup.tgz", &redis),
        ("apps/web/charts/old/redis-1.0.0.tgz", &redis),
        ("dist/bundle.tar.gz", &redis),
    ];
    for (path, content) in files {
        let full = repo.path.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    repo.commit(&[], "a chart with its dependency vendored");
    let daemon = GitDaemon::start(&repos);

    let whole = GitSource::builder(daemon.url("charts"), dir.path().join("cache"))
        .build()
        .unwrap();
    let artifact = whole
        .fetch(FetchRequest::new(dir.path().join("out")))
        .await
        .unwrap();
    let FetchOutcome::Fetched(artifact) = artifact else {
        panic!("the first fetch must produce an artifact");
    };
    assert_eq!(
        list_files(artifact.root()),
        [
            "apps/web/Chart.lock",
            "apps/web/Chart.yaml",
            "apps/web/charts/redis-1.2.3.tgz"
        ]
    );
    // The archive arrives byte for byte.
    assert_eq!(
        std::fs::read(artifact.root().join("apps/web/charts/redis-1.2.3.tgz")).unwrap(),
        redis
    );
    artifact.verify().unwrap();

    // With the chart as the subpath, as a Helm renderer fetches it.
    let chart = GitSource::builder(daemon.url("charts"), dir.path().join("cache-chart"))
        .subpath("apps/web")
        .build()
        .unwrap();
    let FetchOutcome::Fetched(artifact) = chart
        .fetch(FetchRequest::new(dir.path().join("out-chart")))
        .await
        .unwrap()
    else {
        panic!("the first fetch must produce an artifact");
    };
    assert_eq!(
        list_files(artifact.root()),
        ["Chart.lock", "Chart.yaml", "charts/redis-1.2.3.tgz"]
    );
}

/// A loopback relay in front of the real git daemon that records what the client sends, one
/// entry per `read` on the relay's socket.
struct Relay {
    port: u16,
    sent: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Relay {
    fn start(daemon_port: u16) -> Self {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = std::sync::Arc::clone(&sent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut server = std::net::TcpStream::connect(("127.0.0.1", daemon_port)).unwrap();
                let (mut client_read, mut server_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let recorded = std::sync::Arc::clone(&recorded);
                std::thread::spawn(move || {
                    let mut buffer = vec![0; 1 << 16];
                    while let Ok(read) = client_read.read(&mut buffer) {
                        if read == 0 || server_write.write_all(&buffer[..read]).is_err() {
                            break;
                        }
                        recorded.lock().unwrap().push(buffer[..read].to_vec());
                    }
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { port, sent }
    }
}

/// Each request (the connection's opening line, `ls-refs`, `fetch`) leaves in one write: a
/// request whose lines were written one by one waited, with Nagle's algorithm, for the server's
/// delayed acknowledgement of its first line (40 ms on Linux), twice per fetch.
#[tokio::test]
async fn each_git_request_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let repo = TestRepo::new(&repos, "config");
    repo.commit(&[("a.yaml", "a: 1\n"), ("b/c.yaml", "c: 1\n")], "one");
    let daemon = GitDaemon::start(&repos);
    let relay = Relay::start(daemon.port);
    let git = GitSource::builder(
        format!("git://127.0.0.1:{}/config", relay.port),
        dir.path().join("cache"),
    )
    .build()
    .unwrap();
    let first = git
        .fetch(FetchRequest::new(dir.path().join("out1")))
        .await
        .unwrap();
    // The second fetch has something to negotiate: the cache holds the first commit.
    let second = repo.commit(&[("a.yaml", "a: 2\n")], "two");
    let FetchOutcome::Fetched(artifact) = git
        .fetch(
            FetchRequest::new(dir.path().join("out2")).with_last_revision(first.revision().clone()),
        )
        .await
        .unwrap()
    else {
        panic!("a new commit is fetched");
    };
    assert_eq!(artifact.revision().as_str(), format!("main@sha1:{second}"));
    assert_eq!(list_files(artifact.root()), ["a.yaml", "b/c.yaml"]);
    let sent = relay.sent.lock().unwrap().clone();
    let text: Vec<String> = sent
        .iter()
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect();
    // Two fetches: each opens the connection, lists the references and fetches.
    assert_eq!(
        text.iter()
            .filter(|chunk| chunk.contains("command="))
            .count(),
        4,
        "{text:#?}"
    );
    for chunk in &sent {
        assert!(
            whole_packet_lines(chunk),
            "a request arrived in pieces: {text:#?}"
        );
    }
    assert!(
        text.iter()
            .any(|chunk| chunk.contains("command=fetch") && chunk.contains("have ")),
        "{text:#?}"
    );
}

/// Whether `chunk` is a sequence of whole packet lines (a line's length prefix is never apart
/// from its content).
fn whole_packet_lines(mut chunk: &[u8]) -> bool {
    while !chunk.is_empty() {
        let Some(length) = chunk
            .get(..4)
            .and_then(|prefix| std::str::from_utf8(prefix).ok())
            .and_then(|prefix| usize::from_str_radix(prefix, 16).ok())
        else {
            return false;
        };
        // 0000 flush, 0001 delimiter, 0002 response end: no content.
        let length = if length < 4 { 4 } else { length };
        if chunk.len() < length {
            return false;
        }
        chunk = &chunk[length..];
    }
    true
}
