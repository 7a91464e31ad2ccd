//! A [`Source`] fetching from Git repositories with gitoxide, with a persistent cache per source.
//!
//! Every fetch first lists the remote's references (annotated tags peeled). When the resolved
//! revision equals the one seen last, the answer is [`FetchOutcome::Unchanged`] and nothing is
//! downloaded. Otherwise the commit is fetched with depth 1 over the same connection (as `git
//! fetch` does; a semver range, which lists every tag, fetches its tag over a second one) into a
//! bare cache repository (only the missing objects travel when the cache already has older ones)
//! and the selected files are read straight from the Git tree, without a checkout: with the
//! previous artifact given ([`FetchRequest::with_previous`](crate::FetchRequest::with_previous)),
//! only the blobs that changed are read and written, the others are hard-linked from it; with a
//! [`Sparse`](crate::Sparse) request only the trees on the way to its paths are read. Each
//! download adds a pack to the cache;
//! once it holds more than [`GitSourceBuilder::max_cache_packs`], the next download starts from an
//! empty cache, so the cache stays bounded however long the source runs.
//!
//! The conversation with the remote runs on gitoxide's protocol layer (`wire`): the received pack
//! is stored by our own receiver (`pack`), which never maps the pack into memory and hashes whole
//! objects as they inflate, and the files are written by streaming each blob from its pack file
//! (`blob`): a fetch's memory follows the number of objects and the largest delta chain, not
//! the repository's bytes (a cold fetch of 200 MB costs about 10 MB).
//!
//! gitoxide is blocking; it runs in [`tokio::task::spawn_blocking`]. The timeout covers the whole
//! fetch; cancellation and timeout both interrupt the transfer.

mod blob;
mod cache;
mod pack;
mod progress;
mod transport;
mod tree;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gitops_core::escape::{Escaped, EscapedPath};
use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::protocol::handshake::Ref;

use crate::artifact::{Artifact, Planned, write_artifact};
use crate::secret::Secret;
use crate::select::{IgnoreRules, select, select_sparse, warn_skipped};
use crate::source::{
    BoxError, FetchOutcome, FetchProgress, FetchRequest, ProgressReporter, Revision, Source,
    SourceError, prepare_destination,
};

use self::cache::Cache;
use self::transport::{Settings, classify, connect};
use self::wire::Session;

/// The local ref that fetched commits are stored under in the cache repository.
const TARGET_REF: &str = "refs/gitops/target";

/// Which revision of the repository to fetch. Precedence follows Flux: a commit wins over a full
/// ref name, which wins over a semver range, a tag and a branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitReference {
    /// The remote's default branch (what its `HEAD` points to).
    DefaultBranch,
    /// A branch, such as `main`.
    Branch(String),
    /// A tag, such as `v1.2.3` (annotated or lightweight).
    Tag(String),
    /// The highest tag matching a semver range, such as `>=1.2.0, <2.0.0` or `^1`; tags may carry
    /// a leading `v`.
    SemverRange(String),
    /// A full ref name such as `refs/pull/1/head`.
    RefName(String),
    /// A commit, given by its full hexadecimal SHA-1, optionally reached from a branch (which then
    /// names the revision: `main@sha1:<hash>`).
    Commit {
        /// The 40-character hexadecimal SHA-1.
        sha1: String,
        /// The branch the commit belongs to, if known.
        branch: Option<String>,
    },
}

impl std::fmt::Display for GitReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitReference::DefaultBranch => f.write_str("the default branch"),
            GitReference::Branch(name) => write!(f, "branch \"{}\"", Escaped(name)),
            GitReference::Tag(name) => write!(f, "tag \"{}\"", Escaped(name)),
            GitReference::SemverRange(range) => write!(f, "semver range \"{}\"", Escaped(range)),
            GitReference::RefName(name) => write!(f, "ref \"{}\"", Escaped(name)),
            GitReference::Commit { sha1, .. } => write!(f, "commit {}", Escaped(sha1)),
        }
    }
}

/// Credentials for a Git remote. Their `Debug` output hides the secrets.
#[derive(Clone, Debug)]
pub enum GitCredentials {
    /// HTTP basic authentication (https, or http when opted in).
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: Secret,
    },
    /// An HTTP bearer token, sent as `Authorization: Bearer <token>`.
    BearerToken(Secret),
    /// An SSH private key in OpenSSH or PEM format.
    SshKey {
        /// The private key.
        private_key: Secret,
        /// The key's passphrase, if it is encrypted.
        passphrase: Option<Secret>,
    },
}

/// Builds a [`GitSource`].
///
/// ```no_run
/// use std::time::Duration;
/// use gitops_source::{GitCredentials, GitReference, GitSource, Secret};
///
/// let source = GitSource::builder("https://git.example.com/team/config.git", "/var/cache/gitops/config")
///     .reference(GitReference::SemverRange(">=1.0.0, <2.0.0".into()))
///     .credentials(GitCredentials::BearerToken(Secret::new("token")))
///     .subpath("clusters/prod")
///     .timeout(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// ```
#[derive(Clone)]
#[must_use]
pub struct GitSourceBuilder {
    url: String,
    cache_dir: PathBuf,
    reference: GitReference,
    subpath: String,
    rules: IgnoreRules,
    credentials: Option<GitCredentials>,
    known_hosts: Option<String>,
    accept_new_host_keys: bool,
    ca_bundle_pem: Option<Vec<u8>>,
    allow_insecure_http: bool,
    timeout: Duration,
    max_cache_packs: usize,
    max_delta_memory: u64,
}

/// Shows the URL redacted ([`crate::redact_url`]) and no secret.
impl std::fmt::Debug for GitSourceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSourceBuilder")
            .field("url", &crate::redact_url(&self.url))
            .field("cache_dir", &self.cache_dir)
            .field("reference", &self.reference)
            .field("subpath", &self.subpath)
            .field("rules", &self.rules)
            .field("credentials", &self.credentials)
            .field("known_hosts", &self.known_hosts.as_ref().map(|_| "<set>"))
            .field("accept_new_host_keys", &self.accept_new_host_keys)
            .field(
                "ca_bundle_pem",
                &self.ca_bundle_pem.as_ref().map(|_| "<set>"),
            )
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("timeout", &self.timeout)
            .field("max_cache_packs", &self.max_cache_packs)
            .field("max_delta_memory", &self.max_delta_memory)
            .finish()
    }
}

/// The default of [`GitSourceBuilder::max_cache_packs`].
pub const DEFAULT_MAX_CACHE_PACKS: usize = 16;

/// The default of [`GitSourceBuilder::max_delta_memory`]: 512 MiB.
pub const DEFAULT_MAX_DELTA_MEMORY: u64 = 512 * 1024 * 1024;

impl GitSourceBuilder {
    /// Which revision to fetch; the remote's default branch unless set.
    pub fn reference(mut self, reference: GitReference) -> Self {
        self.reference = reference;
        self
    }

    /// Only files below `subpath` go into the artifact.
    pub fn subpath(mut self, subpath: impl Into<String>) -> Self {
        self.subpath = subpath.into();
        self
    }

    /// The rules that leave files out of the artifact.
    pub fn ignore_rules(mut self, rules: IgnoreRules) -> Self {
        self.rules = rules;
        self
    }

    /// Credentials for the remote.
    pub fn credentials(mut self, credentials: GitCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The known_hosts lines the SSH server's host key must match (required for ssh URLs unless
    /// [`accept_new_host_keys`](Self::accept_new_host_keys) is set).
    pub fn known_hosts(mut self, known_hosts: impl Into<String>) -> Self {
        self.known_hosts = Some(known_hosts.into());
        self
    }

    /// Trust an SSH host key not listed in known_hosts (trust on first use). Off by default; keys
    /// that contradict a listed one are still refused.
    pub fn accept_new_host_keys(mut self, accept: bool) -> Self {
        self.accept_new_host_keys = accept;
        self
    }

    /// Extra certificate authorities (PEM) trusted for https, in addition to the system's.
    pub fn ca_bundle_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_bundle_pem = Some(pem.into());
        self
    }

    /// Allow sending credentials over plain http (off by default).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The longest a whole fetch may take (default 2 minutes).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most pack files the cache may hold before it is rebuilt (default
    /// [`DEFAULT_MAX_CACHE_PACKS`]).
    ///
    /// Every fetch of a new commit adds a pack to the cache and nothing removes them, so a cache
    /// that is never rebuilt grows without bound. When the cache holds more than this many packs,
    /// the next fetch that has to download anyway starts from an empty cache: a depth-1 fetch of
    /// one commit, about as cheap as the incremental one. Polls that find the revision unchanged
    /// never rebuild. Values below 1 are treated as 1.
    pub fn max_cache_packs(mut self, max_packs: usize) -> Self {
        self.max_cache_packs = max_packs.max(1);
        self
    }

    /// The most bytes of objects a fetch may hold in memory at once while it resolves the deltas
    /// of the pack it receives (default [`DEFAULT_MAX_DELTA_MEMORY`]).
    ///
    /// A received pack is stored without holding whole objects, except where deltas are resolved:
    /// an object that other objects are deltas of is rebuilt in memory, with the bases above it
    /// on its chain. A few bytes of delta can declare, and really produce, gigabytes, so the
    /// server would decide how much memory the fetch takes; past this limit the fetch fails
    /// instead, naming the entry. Raise it for repositories whose large files change by deltas.
    ///
    /// ```
    /// let source = gitops_source::GitSource::builder("https://example.com/repo.git", "/tmp/cache")
    ///     .max_delta_memory(64 * 1024 * 1024)
    ///     .build()?;
    /// # Ok::<(), gitops_source::SourceError>(())
    /// ```
    pub fn max_delta_memory(mut self, bytes: u64) -> Self {
        self.max_delta_memory = bytes;
        self
    }

    /// Check the configuration and build the source.
    pub fn build(self) -> Result<GitSource, SourceError> {
        let invalid = |message: String| SourceError::InvalidConfiguration {
            message,
            source: None,
        };
        let settings = Settings::new(
            &self.url,
            self.credentials,
            self.known_hosts,
            self.accept_new_host_keys,
            self.ca_bundle_pem,
            self.allow_insecure_http,
            self.timeout,
        )?;
        let reference = match self.reference {
            GitReference::SemverRange(range) => {
                semver::VersionReq::parse(&range).map_err(|error| {
                    SourceError::InvalidConfiguration {
                        message: format!("semver range {range:?} is invalid"),
                        source: Some(Box::new(error)),
                    }
                })?;
                GitReference::SemverRange(range)
            }
            GitReference::Commit { sha1, branch } => {
                if sha1.len() != 40 || !sha1.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(format!(
                        "commit {sha1:?} must be a full 40-character hexadecimal SHA-1"
                    )));
                }
                GitReference::Commit {
                    sha1: sha1.to_ascii_lowercase(),
                    branch,
                }
            }
            GitReference::RefName(name) if !name.starts_with("refs/") => {
                return Err(invalid(format!("ref name {name:?} must start with refs/")));
            }
            GitReference::Branch(name) | GitReference::Tag(name) if name.is_empty() => {
                return Err(invalid("branch and tag names must not be empty".to_owned()));
            }
            other => other,
        };
        crate::select::subpath_components(&self.subpath)?;
        Ok(GitSource {
            inner: Arc::new(Inner {
                cache: Cache::new(self.cache_dir, settings.location().to_owned()),
                settings,
                reference,
                subpath: self.subpath,
                rules: self.rules,
                max_cache_packs: self.max_cache_packs,
                max_delta_memory: self.max_delta_memory,
            }),
            lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }
}

/// A Git repository as a [`Source`], with a persistent cache directory of its own.
///
/// One `GitSource` per cache directory: fetches of one source run one at a time.
#[derive(Clone, Debug)]
pub struct GitSource {
    inner: Arc<Inner>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    cache: Cache,
    reference: GitReference,
    subpath: String,
    rules: IgnoreRules,
    max_cache_packs: usize,
    max_delta_memory: u64,
}

impl GitSource {
    /// Start building a source for `url` (`file://`, `git://`, `http(s)://`, `ssh://` or
    /// `user@host:path`) that keeps its cache in `cache_dir`, a directory used by nothing else.
    pub fn builder(url: impl Into<String>, cache_dir: impl Into<PathBuf>) -> GitSourceBuilder {
        GitSourceBuilder {
            url: url.into(),
            cache_dir: cache_dir.into(),
            reference: GitReference::DefaultBranch,
            subpath: String::new(),
            rules: IgnoreRules::default(),
            credentials: None,
            known_hosts: None,
            accept_new_host_keys: false,
            ca_bundle_pem: None,
            allow_insecure_http: false,
            timeout: Duration::from_secs(120),
            max_cache_packs: DEFAULT_MAX_CACHE_PACKS,
            max_delta_memory: DEFAULT_MAX_DELTA_MEMORY,
        }
    }

    /// The reference this source follows.
    #[must_use]
    pub fn reference(&self) -> &GitReference {
        &self.inner.reference
    }
}

#[async_trait]
impl Source for GitSource {
    fn location(&self) -> String {
        self.inner.settings.location().to_owned()
    }

    async fn fetch(&self, request: FetchRequest) -> Result<FetchOutcome, SourceError> {
        // Before the revision is looked at: an unchanged revision must not hide a bad request.
        if let Some(sparse) = request.sparse() {
            sparse.check_paths()?;
        }
        let timeout = self.inner.settings.timeout;
        let location = self.location();
        let timed_out = || SourceError::Timeout {
            operation: "fetch",
            location: location.clone(),
            after: timeout,
        };
        let cancelled = || SourceError::Cancelled {
            location: location.clone(),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let cancellation = request.cancellation().clone();
        // A fetch still running in the background (after a timeout) keeps the lock until it ends.
        let guard = tokio::select! {
            biased;
            () = cancellation.cancelled() => return Err(cancelled()),
            guard = tokio::time::timeout_at(deadline, self.lock.clone().lock_owned()) => {
                guard.map_err(|_| timed_out())?
            }
        };
        let interrupt = Arc::new(AtomicBool::new(false));
        let inner = Arc::clone(&self.inner);
        let task_interrupt = Arc::clone(&interrupt);
        let task = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            inner.fetch_blocking(&request, &task_interrupt)
        });
        let result = tokio::select! {
            biased;
            () = cancellation.cancelled() => Err(cancelled()),
            () = tokio::time::sleep_until(deadline) => Err(timed_out()),
            joined = task => joined.map_err(|error| SourceError::Other {
                location: location.clone(),
                message: "the fetch task panicked".to_owned(),
                source: Some(Box::new(error)),
            })?,
        };
        if result.is_err() {
            interrupt.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// Why one fetch attempt failed: either for good, or because the cache cannot be trusted.
enum Failure {
    Source(SourceError),
    Corrupt {
        reason: String,
        source: Option<BoxError>,
    },
}

impl From<SourceError> for Failure {
    fn from(error: SourceError) -> Self {
        Failure::Source(error)
    }
}

/// What a reference resolved to on the remote.
struct Resolved {
    /// The name used in the revision string (branch or tag name, full ref name, or empty).
    name: String,
    /// The commit.
    commit: ObjectId,
    /// The object to ask the server for: the commit, or the annotated tag leading to it.
    want: ObjectId,
}

impl Inner {
    fn fetch_blocking(
        &self,
        request: &FetchRequest,
        interrupt: &AtomicBool,
    ) -> Result<FetchOutcome, SourceError> {
        match self.attempt(request, interrupt) {
            Ok(outcome) => Ok(outcome),
            Err(Failure::Source(error)) => Err(error),
            Err(Failure::Corrupt { reason, source }) => {
                let error = source
                    .as_deref()
                    .map(|source| gitops_core::error_chain(source));
                tracing::warn!(
                    cache = %EscapedPath(self.cache.path()),
                    %reason,
                    error = error.as_deref().unwrap_or(""),
                    "the git cache is damaged; rebuilding it"
                );
                self.cache.wipe()?;
                match self.attempt(request, interrupt) {
                    Ok(outcome) => Ok(outcome),
                    Err(Failure::Source(error)) => Err(error),
                    Err(Failure::Corrupt {
                        reason,
                        source: again,
                    }) => Err(SourceError::CorruptCache {
                        path: self.cache.path().to_owned(),
                        reason,
                        source: again.or(source),
                    }),
                }
            }
        }
    }

    fn attempt(
        &self,
        request: &FetchRequest,
        interrupt: &AtomicBool,
    ) -> Result<FetchOutcome, Failure> {
        let location = self.settings.location();
        // A pinned commit never changes: no need to ask the remote.
        let progress = request.progress();
        let unchanged = |revision: Revision| {
            progress.report(FetchProgress::Unchanged {
                revision: revision.clone(),
            });
            Ok(FetchOutcome::Unchanged(revision))
        };
        if let GitReference::Commit { sha1, branch } = &self.reference {
            let revision = Revision::git(branch.as_deref().unwrap_or(""), sha1);
            if request.last_revision() == Some(&revision) {
                return unchanged(revision);
            }
        }
        let repo = self.cache.open()?;
        let Some((refspec, wanted)) = self.listing_refspec() else {
            // A pinned commit: nothing to list.
            let resolved = self.resolve_commit()?;
            let revision = Revision::git(&resolved.name, &resolved.commit.to_hex().to_string());
            if request.last_revision() == Some(&revision) {
                return unchanged(revision);
            }
            if repo.has_object(resolved.commit) {
                return self.finish(&repo, resolved.commit, &resolved, request, interrupt);
            }
            drop(repo);
            return self.download_and_write(&resolved, request, interrupt);
        };
        progress.report(FetchProgress::ListingRefs);
        let started = std::time::Instant::now();
        // One connection lists the references and, when the commit is new, downloads it, as
        // `git fetch` does: the refs are not listed twice.
        let mut session = self.greet(&repo)?;
        if interrupt.load(Ordering::Relaxed) {
            return Err(SourceError::Cancelled {
                location: location.to_owned(),
            }
            .into());
        }
        let remote_refs = session.list_refs(&refspec).map_err(|error| {
            classify(
                &self.settings,
                session.diagnostics(),
                "listing references",
                error,
            )
        })?;
        tracing::debug!(location, elapsed = ?started.elapsed(), "listed the references");
        let resolved = self.resolve(&remote_refs, wanted)?;
        let revision = Revision::git(&resolved.name, &resolved.commit.to_hex().to_string());
        if request.last_revision() == Some(&revision) {
            return unchanged(revision);
        }
        if repo.has_object(resolved.commit) {
            drop(session);
            return self.finish(&repo, resolved.commit, &resolved, request, interrupt);
        }
        // A semver range listed every tag (the chosen one is fetched on its own), and a cache
        // over its pack limit is rebuilt first: both download over a new connection.
        if matches!(self.reference, GitReference::SemverRange(_))
            || self.cache.pack_count() > self.max_cache_packs
        {
            drop(session);
            drop(repo);
            return self.download_and_write(&resolved, request, interrupt);
        }
        let started = std::time::Instant::now();
        let commit = self.receive(&repo, session, &resolved, progress, interrupt)?;
        tracing::debug!(location, elapsed = ?started.elapsed(), "downloaded the commit");
        self.finish(&repo, commit, &resolved, request, interrupt)
    }

    /// Download the resolved commit over a new connection (rebuilding a cache over its pack
    /// limit first) and write it.
    fn download_and_write(
        &self,
        resolved: &Resolved,
        request: &FetchRequest,
        interrupt: &AtomicBool,
    ) -> Result<FetchOutcome, Failure> {
        let mut repo = self.cache.open()?;
        let packs = self.cache.pack_count();
        if packs > self.max_cache_packs {
            tracing::info!(
                cache = %EscapedPath(self.cache.path()),
                packs,
                max_packs = self.max_cache_packs,
                "the git cache holds too many packs; rebuilding it with this fetch"
            );
            drop(repo);
            self.cache.wipe()?;
            repo = self.cache.open()?;
        }
        let commit = self.download(&repo, resolved, request.progress(), interrupt)?;
        self.finish(&repo, commit, resolved, request, interrupt)
    }

    /// Write `commit` (the one `resolved` led to) unless the fetch was interrupted.
    fn finish(
        &self,
        repo: &gix::Repository,
        commit: ObjectId,
        resolved: &Resolved,
        request: &FetchRequest,
        interrupt: &AtomicBool,
    ) -> Result<FetchOutcome, Failure> {
        let revision = Revision::git(&resolved.name, &commit.to_hex().to_string());
        if interrupt.load(Ordering::Relaxed) {
            return Err(SourceError::Cancelled {
                location: self.settings.location().to_owned(),
            }
            .into());
        }
        self.write(repo, commit, revision, request)
    }

    /// The refspec that lists the references, and the full name of the one wanted (none for a
    /// semver range); `None` for a pinned commit.
    fn listing_refspec(&self) -> Option<(String, Option<String>)> {
        let (spec, wanted): (String, Option<String>) = match &self.reference {
            GitReference::Commit { .. } => return None,
            GitReference::DefaultBranch => ("HEAD".to_owned(), Some("HEAD".to_owned())),
            GitReference::Branch(name) => (
                format!("refs/heads/{name}"),
                Some(format!("refs/heads/{name}")),
            ),
            GitReference::Tag(name) => (
                format!("refs/tags/{name}"),
                Some(format!("refs/tags/{name}")),
            ),
            GitReference::RefName(name) => (name.clone(), Some(name.clone())),
            GitReference::SemverRange(_) => ("refs/tags/*".to_owned(), None),
        };
        let refspec = if spec.ends_with('*') {
            format!("+{spec}:refs/gitops/listed/*")
        } else {
            format!("+{spec}:{TARGET_REF}")
        };
        Some((refspec, wanted))
    }

    /// The pinned commit as a resolved reference.
    fn resolve_commit(&self) -> Result<Resolved, SourceError> {
        let GitReference::Commit { sha1, branch } = &self.reference else {
            unreachable!("only called for a pinned commit")
        };
        let commit = ObjectId::from_hex(sha1.as_bytes()).map_err(|error| {
            SourceError::InvalidConfiguration {
                message: format!("commit {sha1:?} is not a SHA-1"),
                source: Some(Box::new(error)),
            }
        })?;
        Ok(Resolved {
            name: branch.clone().unwrap_or_default(),
            commit,
            want: commit,
        })
    }

    /// Pick the commit the reference points to among the remote's references.
    fn resolve(&self, remote_refs: &[Ref], wanted: Option<String>) -> Result<Resolved, Failure> {
        let location = self.settings.location();
        let unknown = || SourceError::UnknownReference {
            reference: self.reference.to_string(),
            location: location.to_owned(),
        };
        match (&self.reference, wanted) {
            (GitReference::SemverRange(range), _) => Ok(self.pick_semver(range, remote_refs)?),
            (_, Some(wanted)) => {
                let found = remote_refs
                    .iter()
                    .find(|remote_ref| ref_name(remote_ref) == wanted.as_bytes())
                    .ok_or_else(unknown)?;
                let Some((want, commit)) = ref_targets(found) else {
                    return Err(unknown().into());
                };
                let name = match found {
                    Ref::Symbolic { target, .. } => {
                        // The remote names the branch its HEAD points to: it goes into the
                        // revision, which is printed, so it is escaped.
                        let target = target.to_str_lossy();
                        let branch = target.strip_prefix("refs/heads/").unwrap_or(&target);
                        Escaped(branch).to_string()
                    }
                    _ => short_name(&self.reference, &wanted),
                };
                Ok(Resolved { name, commit, want })
            }
            (_, None) => Err(unknown().into()),
        }
    }

    fn pick_semver(&self, range: &str, remote_refs: &[Ref]) -> Result<Resolved, SourceError> {
        let requirement = semver::VersionReq::parse(range).map_err(|error| {
            SourceError::InvalidConfiguration {
                message: format!("semver range {range:?} is invalid"),
                source: Some(Box::new(error)),
            }
        })?;
        let mut tags_seen = 0;
        let mut semver_tags = 0;
        let mut best: Option<(semver::Version, String, (ObjectId, ObjectId))> = None;
        for remote_ref in remote_refs {
            let name = ref_name(remote_ref).to_str_lossy();
            let Some(tag) = name.strip_prefix("refs/tags/") else {
                continue;
            };
            let Some(targets) = ref_targets(remote_ref) else {
                continue;
            };
            tags_seen += 1;
            let Ok(version) = semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)) else {
                continue;
            };
            semver_tags += 1;
            if requirement.matches(&version)
                && best.as_ref().is_none_or(|(best, _, _)| version > *best)
            {
                best = Some((version, tag.to_owned(), targets));
            }
        }
        let (_, tag, (want, commit)) = best.ok_or_else(|| SourceError::NoMatchingTag {
            range: range.to_owned(),
            location: self.settings.location().to_owned(),
            tags_seen,
            semver_tags,
        })?;
        Ok(Resolved {
            name: tag,
            commit,
            want,
        })
    }

    /// Connect to the remote and greet it.
    fn greet(&self, repo: &gix::Repository) -> Result<Session, Failure> {
        let link = connect(&self.settings, repo)?;
        Session::greet(link).map_err(|(error, diagnostics)| {
            classify(&self.settings, &diagnostics, "listing references", error)
        })
    }

    /// Fetch the resolved commit with depth 1 over a new connection and return it.
    fn download(
        &self,
        repo: &gix::Repository,
        resolved: &Resolved,
        progress: &ProgressReporter,
        interrupt: &AtomicBool,
    ) -> Result<ObjectId, Failure> {
        let session = self.greet(repo)?;
        self.receive(repo, session, resolved, progress, interrupt)
    }

    /// Receive the depth-1 pack of the resolved commit over a greeted connection, remember the
    /// commit in the cache (the next fetch offers it to the server), and return it.
    fn receive(
        &self,
        repo: &gix::Repository,
        session: Session,
        resolved: &Resolved,
        progress: &ProgressReporter,
        interrupt: &AtomicBool,
    ) -> Result<ObjectId, Failure> {
        let location = self.settings.location();
        let store = || -> wire::StorePack<'_> {
            Box::new(|pack, pack_dir, progress, interrupt| {
                store_received_pack(
                    repo,
                    pack,
                    pack_dir,
                    self.max_delta_memory,
                    progress,
                    interrupt,
                )
            })
        };
        let received = if progress.is_enabled() {
            let download_progress = progress::DownloadProgress::start(progress);
            let totals = download_progress.totals();
            let received =
                session.fetch(repo, resolved.want, store(), download_progress, interrupt);
            if received.is_ok() {
                totals.report();
            }
            received
        } else {
            session.fetch(
                repo,
                resolved.want,
                store(),
                gix::progress::Discard,
                interrupt,
            )
        };
        received
            .map_err(|(error, diagnostics)| self.fetch_failure(error, &diagnostics, interrupt))?;
        if !repo.has_object(resolved.commit) {
            if let GitReference::Commit { .. } = self.reference {
                return Err(SourceError::UnknownReference {
                    reference: self.reference.to_string(),
                    location: location.to_owned(),
                }
                .into());
            }
            return Err(Failure::Corrupt {
                reason: format!(
                    "commit {} is missing after the fetch",
                    resolved.commit.to_hex()
                ),
                source: None,
            });
        }
        repo.reference(
            TARGET_REF,
            resolved.commit,
            gix::refs::transaction::PreviousValue::Any,
            "fetch",
        )
        .map_err(|error| Failure::Corrupt {
            reason: format!("{TARGET_REF} cannot be written after the fetch"),
            source: Some(Box::new(error)),
        })?;
        Ok(resolved.commit)
    }

    /// What a failed fetch of the pack means: a cancellation, a pinned commit the server
    /// refuses, a damaged cache, or a failure of the remote.
    fn fetch_failure(
        &self,
        error: gix::Error,
        diagnostics: &transport::Diagnostics,
        interrupt: &AtomicBool,
    ) -> Failure {
        let location = self.settings.location();
        if interrupt.load(Ordering::Relaxed) {
            return Failure::Source(SourceError::Cancelled {
                location: location.to_owned(),
            });
        }
        match classify_fetch(&self.settings, diagnostics, error) {
            // The handshake and ref listing worked: a server that then aborts while negotiating
            // a pinned commit refuses that `want` ("not our ref"; some transports only show the
            // closed pipe).
            Failure::Source(SourceError::Git { .. })
                if matches!(self.reference, GitReference::Commit { .. }) =>
            {
                Failure::Source(SourceError::UnknownReference {
                    reference: self.reference.to_string(),
                    location: location.to_owned(),
                })
            }
            other => other,
        }
    }

    /// Write the selected files of `commit` to the request's destination.
    fn write(
        &self,
        repo: &gix::Repository,
        commit: ObjectId,
        revision: Revision,
        request: &FetchRequest,
    ) -> Result<FetchOutcome, Failure> {
        let progress = request.progress();
        progress.report(FetchProgress::SelectingFiles);
        let started = std::time::Instant::now();
        let tree = tree::GitTree::for_commit(repo, commit)?;
        let selected = match request.sparse() {
            Some(sparse) => select_sparse(&tree, &self.subpath, &self.rules, sparse),
            None => select(&tree, &self.subpath, &self.rules),
        };
        let (files, skipped) = match selected {
            Ok(selection) => (selection.files, selection.skipped),
            Err(error) if tree.damaged() => {
                return Err(Failure::Corrupt {
                    reason: "objects of the fetched tree cannot be read".to_owned(),
                    source: Some(Box::new(error)),
                });
            }
            Err(error) => return Err(SourceError::from(error).into()),
        };
        tracing::debug!(files = files.len(), elapsed = ?started.elapsed(), "selected the files");
        let started = std::time::Instant::now();
        prepare_destination(request.destination())?;
        let total = files.len();
        let planned = files
            .into_iter()
            .map(|file| Planned {
                blob: Some(file.handle),
                sha256: None,
                file,
            })
            .collect();
        match write_artifact(
            &tree,
            planned,
            request.destination(),
            request.previous(),
            request.recycle(),
            progress.writing_files(total),
        ) {
            Ok(written) => {
                tracing::debug!(
                    files = written.entries.len(),
                    reused = written.reused,
                    elapsed = ?started.elapsed(),
                    "wrote the artifact"
                );
                warn_skipped(self.settings.location(), revision.as_str(), &skipped);
                progress.report(FetchProgress::Done {
                    revision: revision.clone(),
                });
                Ok(FetchOutcome::Fetched(
                    Artifact::new(revision, request.destination().to_owned(), written.entries)
                        .with_reused(written.reused)
                        .with_skipped(skipped),
                ))
            }
            Err(error) => {
                // The destination stays empty: the files were staged beside it.
                if tree.damaged() {
                    Err(Failure::Corrupt {
                        reason: "blobs of the fetched tree cannot be read".to_owned(),
                        source: Some(Box::new(error)),
                    })
                } else {
                    Err(SourceError::from(error).into())
                }
            }
        }
    }
}

/// [`pack::store_pack`] over a whole stream in memory, with no base outside it (for the fuzz
/// targets).
#[cfg(feature = "fuzzing")]
pub(crate) fn store_pack_stream(
    mut stream: &[u8],
    pack_dir: &std::path::Path,
) -> Result<u32, String> {
    pack::store_pack(
        &mut stream,
        pack_dir,
        64 * 1024 * 1024,
        &mut |_, _| None,
        &mut |_, _| {},
        &AtomicBool::new(false),
    )
    .map(|stored| stored.objects)
    .map_err(|error| error.to_string())
}

/// Store a received pack in the cache's pack directory with [`pack::store_pack`] (memory bounded
/// by the largest object, not the pack), the bases of a thin pack taken from the cache.
fn store_received_pack(
    repo: &gix::Repository,
    input: &mut dyn std::io::BufRead,
    pack_dir: &std::path::Path,
    max_delta_memory: u64,
    progress: &mut dyn gix::progress::DynNestedProgress,
    interrupt: &AtomicBool,
) -> gix::Result<()> {
    use gix::prelude::Find as _;
    use gix::progress::Count as _;
    let read_bytes = progress.add_child_with_id(
        "read pack".into(),
        gix::odb::pack::bundle::write::ProgressId::ReadPackBytes.into(),
    );
    let indexed = progress.add_child_with_id(
        "index objects".into(),
        gix::odb::pack::index::write::ProgressId::IndexObjects.into(),
    );
    let mut on_progress = |bytes: u64, objects: u64| {
        read_bytes.set(usize::try_from(bytes).unwrap_or(usize::MAX));
        indexed.set(usize::try_from(objects).unwrap_or(usize::MAX));
    };
    let mut base_of = |id: &gix::oid, buffer: &mut Vec<u8>| {
        repo.objects
            .try_find(id, buffer)
            .ok()
            .flatten()
            .map(|object| object.kind)
    };
    let stored = pack::store_pack(
        input,
        pack_dir,
        max_delta_memory,
        &mut base_of,
        &mut on_progress,
        interrupt,
    )
    .map_err(gix::Error::from_error)?;
    tracing::debug!(
        pack = %EscapedPath(&stored.pack),
        index = %EscapedPath(&stored.index),
        objects = stored.objects,
        "stored the received pack"
    );
    Ok(())
}

fn classify_fetch(
    settings: &Settings,
    diagnostics: &transport::Diagnostics,
    error: gix::Error,
) -> Failure {
    // Objects that cannot be stored or read back point at a damaged cache, not at the remote.
    if error.classify().is_corrupted() {
        return Failure::Corrupt {
            reason: "the fetched objects could not be stored in the cache".to_owned(),
            source: Some(settings.redact(&error)),
        };
    }
    classify(settings, diagnostics, "fetching", error)
}

/// What to ask the server for to get a reference (the annotated tag itself, if it is one) and
/// the object it finally points to; `None` for an unborn branch.
fn ref_targets(remote_ref: &Ref) -> Option<(ObjectId, ObjectId)> {
    match remote_ref {
        Ref::Peeled { tag, object, .. } => Some((*tag, *object)),
        Ref::Direct { object, .. } => Some((*object, *object)),
        Ref::Symbolic { tag, object, .. } => Some((tag.unwrap_or(*object), *object)),
        Ref::Unborn { .. } => None,
    }
}

fn ref_name(remote_ref: &Ref) -> &[u8] {
    match remote_ref {
        Ref::Peeled { full_ref_name, .. }
        | Ref::Direct { full_ref_name, .. }
        | Ref::Symbolic { full_ref_name, .. }
        | Ref::Unborn { full_ref_name, .. } => full_ref_name.as_slice(),
    }
}

/// The name a revision string uses: branch and tag names without their prefix, full ref names as is.
fn short_name(reference: &GitReference, full: &str) -> String {
    match reference {
        GitReference::Branch(name) | GitReference::Tag(name) => name.clone(),
        _ => full.to_owned(),
    }
}
