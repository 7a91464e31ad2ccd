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

/// Issue #11 item 6: basic credentials go only to the origin they were given for. A redirect
/// within the origin is followed with them; a redirect to another origin (another port of the same
/// lighttpd, which accepts the same user) is refused, and the access log shows that no request to
/// the other origin carried an `Authorization` header.
#[tokio::test]
async fn basic_credentials_stay_with_their_origin_across_redirects() {
    let Fixture {
        dir,
        server,
        head,
        ca_pem,
    } = fixture();
    let builder = |url: String, cache: &str| {
        GitSource::builder(url, dir.path().join("caches").join(cache))
            .credentials(basic(HTTP_PASSWORD))
            .ca_bundle_pem(ca_pem.clone())
    };

    let here = builder(server.tls_url("redirect-here", "config"), "here")
        .build()
        .unwrap();
    let outcome = here
        .fetch(FetchRequest::new(dir.path().join("out/here")))
        .await
        .unwrap();
    assert_eq!(outcome.revision().as_str(), format!("main@sha1:{head}"));

    let other = server.other_tls_port;
    let tls = server.tls_port;
    // Redirected before authenticating, and after: the credentials were accepted by the
    // configured origin, which then redirects elsewhere (gitoxide follows only the first
    // redirect of a fetch, so that one fails with its own error).
    for area in ["redirect-away", "auth-then-away"] {
        let away = builder(server.tls_url(area, "config"), area)
            .build()
            .unwrap();
        let error = away
            .fetch(FetchRequest::new(dir.path().join("out").join(area)))
            .await
            .unwrap_err();
        if area == "redirect-away" {
            assert!(
                matches!(
                    &error,
                    SourceError::CrossOriginRedirect { target, .. }
                        if target == &format!("https://127.0.0.1:{other}")
                ),
                "{area}: {error:?}"
            );
            assert!(error.to_string().contains(&other.to_string()), "{error}");
        }
        assert!(!dir.path().join("out").join(area).exists());
    }

    let log = server.stop_and_read_access_log();
    let requests = |port: u16| {
        log.lines()
            .filter(|line| line.starts_with(&format!("port={port} ")))
            .collect::<Vec<_>>()
    };
    // The log records the header when it is there: the same-origin fetch authenticated, and
    // so did the first request of the one redirected after authenticating.
    for area in ["/basic/", "/auth-then-away/"] {
        assert!(
            requests(tls)
                .iter()
                .any(|line| line.contains(area) && !line.ends_with("authorization=-")),
            "{area}: {log}"
        );
    }
    let at_other = requests(other);
    assert!(!at_other.is_empty(), "the redirect was not followed: {log}");
    assert!(
        at_other
            .iter()
            .all(|line| line.ends_with("authorization=-")),
        "credentials reached the other origin: {log}"
    );
}

/// Every message of an error's `source()` chain, and its `Debug`.
fn everything_printed(error: &SourceError) -> String {
    let mut printed = format!("{error:?}\n");
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        printed.push_str(&current.to_string());
        printed.push('\n');
        next = current.source();
    }
    printed
}

/// Issue #11 item 5: user info and query values of a URL never appear in an error, its whole
/// `source()` chain or its `Debug`, whether the URL parses or not.
#[tokio::test]
async fn url_secrets_never_appear_in_errors() {
    let fx = fixture();
    let password = "pw-s3cret-9876";
    let token = "tok-s3cret-5432";
    // URLs that fail to parse: a bad port, a bad %-escape in the password.
    for url in [
        format!("https://alice:{password}@127.0.0.1:99999/r.git"),
        format!(
            "https://alice:{password}%zz@127.0.0.1:{}/public/config",
            fx.server.tls_port
        ),
        format!(
            "https://alice:{password}@127.0.0.1:{}:{}/public/config",
            fx.server.tls_port, fx.server.tls_port
        ),
    ] {
        let error = fx.builder(url.clone(), "bad").build().unwrap_err();
        let printed = everything_printed(&error);
        assert!(
            !printed.contains(password) && !printed.contains("alice"),
            "{url}: {printed}"
        );
    }
    // A token in the query, against the real server: a repository that does not exist, a
    // closed port, and a server whose certificate is not trusted.
    let closed = common::free_port();
    for (url, cache) in [
        (
            format!(
                "{}?access_token={token}",
                fx.server.tls_url("public", "absent")
            ),
            "absent",
        ),
        (
            format!("https://127.0.0.1:{closed}/r.git?access_token={token}"),
            "closed",
        ),
        (
            format!(
                "{}?access_token={token}",
                fx.server.tls_url("public", "config")
            ),
            "untrusted",
        ),
        (
            format!(
                "https://{token}@127.0.0.1:{}/basic/config",
                fx.server.tls_port
            ),
            "token-user",
        ),
    ] {
        let mut builder = fx.builder(url.clone(), cache);
        if cache != "untrusted" {
            builder = builder.ca_bundle_pem(fx.ca_pem.clone());
        }
        let source = builder.build().unwrap();
        assert!(!format!("{source:?}").contains(token), "{source:?}");
        assert!(!source.location().contains(token), "{}", source.location());
        let error = fx.fetch(source, cache).await.unwrap_err();
        let printed = everything_printed(&error);
        assert!(!printed.contains(token), "{cache}: {printed}");
        assert!(
            printed.contains("access_token=<redacted>") || cache == "token-user",
            "{cache}: {printed}"
        );
    }
}

/// Issue #17: one connection lists the references and downloads the new commit, as `git fetch`
/// does (the refs were listed twice, each time with its own handshake).
#[tokio::test]
async fn a_fetch_of_a_new_commit_lists_the_references_once() {
    let fx = fixture();
    let source = fx
        .builder(fx.server.url("public", "config"), "once")
        .build()
        .unwrap();
    let outcome = fx.fetch(source, "once").await.unwrap();
    assert!(matches!(outcome, FetchOutcome::Fetched(_)));
    let log = fx.server.stop_and_read_access_log();
    let handshakes = log
        .lines()
        .filter(|line| line.contains("/public/") && line.contains("info/refs"))
        .count();
    assert_eq!(handshakes, 1, "{log}");
}
