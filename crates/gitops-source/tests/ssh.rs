//! Git sources over ssh against a real `sshd` on 127.0.0.1 with key authentication and a strict
//! known_hosts check.

mod common;

use common::{SshServer, TestRepo, ssh_keygen};
use gitops_source::{
    FetchOutcome, FetchRequest, GitCredentials, GitSource, Secret, Source, SourceError,
};

const PASSPHRASE: &str = "open sesame 42";

/// The tests of this file run one at a time, so that the check for leftover key files sees only
/// its own fetches.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Fixture {
    dir: tempfile::TempDir,
    repo: TestRepo,
    head: String,
    key: String,
    server: SshServer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(dir.path(), "repo");
    let head = repo.commit(&[("app.yaml", "app: 1\n")], "one");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (key, public) = ssh_keygen(&keys, "client", PASSPHRASE);
    let server = SshServer::start(&public);
    Fixture {
        dir,
        repo,
        head,
        key,
        server,
    }
}

impl Fixture {
    fn credentials(&self, passphrase: &str) -> GitCredentials {
        GitCredentials::SshKey {
            private_key: Secret::new(self.key.clone()),
            passphrase: Some(Secret::new(passphrase)),
        }
    }

    async fn fetch(&self, source: &GitSource, out: &str) -> Result<FetchOutcome, SourceError> {
        source
            .fetch(FetchRequest::new(self.dir.path().join("out").join(out)))
            .await
    }

    fn cache(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("caches").join(name)
    }
}

#[tokio::test]
async fn key_with_passphrase_and_known_hosts() {
    let _serial = SERIAL.lock().await;
    let fx = fixture();
    let source = GitSource::builder(fx.server.url(&fx.repo.path), fx.cache("ok"))
        .credentials(fx.credentials(PASSPHRASE))
        .known_hosts(fx.server.known_hosts.clone())
        .build()
        .unwrap();
    let outcome = fx.fetch(&source, "ok").await.unwrap();
    assert_eq!(
        outcome.revision().as_str(),
        format!("main@sha1:{}", fx.head)
    );
    let unchanged = source
        .fetch(
            FetchRequest::new(fx.dir.path().join("out/ok2"))
                .with_last_revision(outcome.revision().clone()),
        )
        .await
        .unwrap();
    assert!(matches!(unchanged, FetchOutcome::Unchanged(_)));

    // No key material is left on disk: not in the cache, not in the temporary directory.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("gitops-source-ssh-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let rendered = format!("{source:?}");
    assert!(
        !rendered.contains(PASSPHRASE) && !rendered.contains("PRIVATE KEY"),
        "{rendered}"
    );
}

#[tokio::test]
async fn wrong_host_key_is_refused() {
    let _serial = SERIAL.lock().await;
    let fx = fixture();
    let (_, other_host) = ssh_keygen(&fx.dir.path().join("keys"), "other_host", "");
    let other = other_host
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let source = GitSource::builder(fx.server.url(&fx.repo.path), fx.cache("host"))
        .credentials(fx.credentials(PASSPHRASE))
        .known_hosts(format!("[127.0.0.1]:{} {other}\n", fx.server.port))
        .build()
        .unwrap();
    let error = fx.fetch(&source, "host").await.unwrap_err();
    assert!(
        matches!(error, SourceError::HostKeyRejected { .. }),
        "{error:?}"
    );

    // An empty known_hosts refuses too, unless new keys are explicitly accepted.
    let strict = GitSource::builder(fx.server.url(&fx.repo.path), fx.cache("empty"))
        .credentials(fx.credentials(PASSPHRASE))
        .known_hosts("")
        .build()
        .unwrap();
    let error = fx.fetch(&strict, "empty").await.unwrap_err();
    assert!(
        matches!(error, SourceError::HostKeyRejected { .. }),
        "{error:?}"
    );
    let trusting = GitSource::builder(fx.server.url(&fx.repo.path), fx.cache("tofu"))
        .credentials(fx.credentials(PASSPHRASE))
        .accept_new_host_keys(true)
        .build()
        .unwrap();
    fx.fetch(&trusting, "tofu").await.unwrap();
}

#[tokio::test]
async fn wrong_key_or_passphrase_is_refused() {
    let _serial = SERIAL.lock().await;
    let fx = fixture();
    let wrong_passphrase = "not the passphrase";
    let source = GitSource::builder(fx.server.url(&fx.repo.path), fx.cache("pass"))
        .credentials(fx.credentials(wrong_passphrase))
        .known_hosts(fx.server.known_hosts.clone())
        .build()
        .unwrap();
    let error = fx.fetch(&source, "pass").await.unwrap_err();
    assert!(
        matches!(error, SourceError::AuthenticationRefused { .. }),
        "{error:?}"
    );
    assert!(!format!("{error} {error:?}").contains(wrong_passphrase));

    let (stranger, _) = ssh_keygen(&fx.dir.path().join("keys"), "stranger", "");
    let source = GitSource::builder(fx.server.url(&fx.repo.path), fx.cache("stranger"))
        .credentials(GitCredentials::SshKey {
            private_key: Secret::new(stranger),
            passphrase: None,
        })
        .known_hosts(fx.server.known_hosts.clone())
        .build()
        .unwrap();
    let error = fx.fetch(&source, "stranger").await.unwrap_err();
    assert!(
        matches!(error, SourceError::AuthenticationRefused { .. }),
        "{error:?}"
    );
}

#[test]
fn scp_like_urls_need_known_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let error = GitSource::builder("git@example.com:team/config.git", dir.path())
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("known_hosts"), "{error}");
    let source = GitSource::builder("git@example.com:team/config.git", dir.path())
        .known_hosts("example.com ssh-ed25519 AAAA")
        .build()
        .unwrap();
    assert!(
        source.location().contains("example.com"),
        "{}",
        source.location()
    );
}
