//! Git sources over http(s) against `git http-backend` behind lighttpd on 127.0.0.1, with basic
//! authentication, a bearer token and a private CA.

mod common;

use common::{GitHttpServer, HTTP_PASSWORD, HTTP_TOKEN, HTTP_USER, TestRepo, generate_pki};
use gitops_source::{
    FetchOutcome, FetchRequest, GitCredentials, GitSource, GitSourceBuilder, Secret, Source,
    SourceError,
};

struct Fixture {
    dir: tempfile::TempDir,
    server: GitHttpServer,
    head: String,
    ca_pem: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let repo = TestRepo::new(&root, "config");
    let head = repo.commit(&[("app.yaml", "app: 1\n")], "one");
    let pki = generate_pki();
    let server = GitHttpServer::start(&root, &pki);
    Fixture {
        dir,
        server,
        head,
        ca_pem: pki.ca_pem,
    }
}

impl Fixture {
    fn builder(&self, url: String, cache: &str) -> GitSourceBuilder {
        GitSource::builder(url, self.dir.path().join("caches").join(cache))
    }

    async fn fetch(&self, source: GitSource, out: &str) -> Result<FetchOutcome, SourceError> {
        source
            .fetch(FetchRequest::new(self.dir.path().join("out").join(out)))
            .await
    }
}

fn basic(password: &str) -> GitCredentials {
    GitCredentials::Basic {
        username: HTTP_USER.to_owned(),
        password: Secret::new(password),
    }
}

#[tokio::test]
async fn public_basic_and_bearer_over_http() {
    let fx = fixture();
    let expected = format!("main@sha1:{}", fx.head);

    let public = fx
        .builder(fx.server.url("public", "config"), "public")
        .build()
        .unwrap();
    let outcome = fx.fetch(public.clone(), "public").await.unwrap();
    assert_eq!(outcome.revision().as_str(), expected);
    let unchanged = public
        .fetch(
            FetchRequest::new(fx.dir.path().join("out/public2"))
                .with_last_revision(outcome.revision().clone()),
        )
        .await
        .unwrap();
    assert!(matches!(unchanged, FetchOutcome::Unchanged(_)));

    let basic_source = fx
        .builder(fx.server.url("basic", "config"), "basic")
        .credentials(basic(HTTP_PASSWORD))
        .allow_insecure_http(true)
        .build()
        .unwrap();
    assert_eq!(
        fx.fetch(basic_source, "basic")
            .await
            .unwrap()
            .revision()
            .as_str(),
        expected
    );

    let bearer = fx
        .builder(fx.server.url("bearer", "config"), "bearer")
        .credentials(GitCredentials::BearerToken(Secret::new(HTTP_TOKEN)))
        .allow_insecure_http(true)
        .build()
        .unwrap();
    assert_eq!(
        fx.fetch(bearer, "bearer")
            .await
            .unwrap()
            .revision()
            .as_str(),
        expected
    );
}

#[tokio::test]
async fn refused_and_missing_credentials() {
    let fx = fixture();
    let wrong_password = "wrong-password-123";
    let wrong = fx
        .builder(fx.server.url("basic", "config"), "wrong")
        .credentials(basic(wrong_password))
        .allow_insecure_http(true)
        .build()
        .unwrap();
    let error = fx.fetch(wrong, "wrong").await.unwrap_err();
    assert!(
        matches!(error, SourceError::AuthenticationRefused { .. }),
        "{error:?}"
    );
    let rendered = format!("{error} {error:?}");
    assert!(!rendered.contains(wrong_password), "{rendered}");

    let none = fx
        .builder(fx.server.url("basic", "config"), "none")
        .build()
        .unwrap();
    let error = fx.fetch(none, "none").await.unwrap_err();
    assert!(
        matches!(error, SourceError::AuthenticationRefused { .. }),
        "{error:?}"
    );

    let wrong_token = "not-the-token-456";
    let bearer = fx
        .builder(fx.server.url("bearer", "config"), "bad-token")
        .credentials(GitCredentials::BearerToken(Secret::new(wrong_token)))
        .allow_insecure_http(true)
        .build()
        .unwrap();
    let error = fx.fetch(bearer.clone(), "bad-token").await.unwrap_err();
    assert!(
        matches!(error, SourceError::AuthenticationRefused { .. }),
        "{error:?}"
    );
    let rendered = format!("{error} {error:?} {bearer:?}");
    assert!(!rendered.contains(wrong_token), "{rendered}");

    // Credentials over plain http need an explicit opt-in.
    let error = fx
        .builder(fx.server.url("basic", "config"), "insecure")
        .credentials(basic(HTTP_PASSWORD))
        .build()
        .unwrap_err();
    assert!(
        matches!(error, SourceError::InsecureCredentials { .. }),
        "{error:?}"
    );

    // Nothing secret is left in the cache.
    for cache in ["wrong", "bad-token"] {
        let config = std::fs::read_to_string(
            fx.dir
                .path()
                .join("caches")
                .join(cache)
                .join("repository.git/config"),
        )
        .unwrap();
        assert!(
            !config.contains(wrong_password) && !config.contains(wrong_token),
            "{config}"
        );
    }
}

#[tokio::test]
async fn https_with_private_ca() {
    let fx = fixture();
    let trusted = fx
        .builder(fx.server.tls_url("basic", "config"), "tls")
        .credentials(basic(HTTP_PASSWORD))
        .ca_bundle_pem(fx.ca_pem.clone())
        .build()
        .unwrap();
    let outcome = fx.fetch(trusted, "tls").await.unwrap();
    assert_eq!(
        outcome.revision().as_str(),
        format!("main@sha1:{}", fx.head)
    );

    let refused = fx
        .builder(fx.server.tls_url("basic", "config"), "tls-refused")
        .credentials(basic("wrong-over-tls"))
        .ca_bundle_pem(fx.ca_pem.clone())
        .build()
        .unwrap();
    let error = fx.fetch(refused, "tls-refused").await.unwrap_err();
    assert!(
        matches!(error, SourceError::AuthenticationRefused { .. }),
        "{error:?}"
    );
    assert!(!format!("{error:?}").contains("wrong-over-tls"));

    let untrusted = fx
        .builder(fx.server.tls_url("public", "config"), "untrusted")
        .build()
        .unwrap();
    let error = fx.fetch(untrusted, "untrusted").await.unwrap_err();
    let chain = format!("{error:?}");
    assert!(
        chain.to_lowercase().contains("certificate"),
        "an unknown CA must be refused: {chain}"
    );

    let error = fx
        .builder(fx.server.tls_url("public", "config"), "bad-ca")
        .ca_bundle_pem("not pem")
        .build()
        .unwrap_err();
    assert!(
        matches!(error, SourceError::InvalidConfiguration { .. }),
        "{error:?}"
    );
}
