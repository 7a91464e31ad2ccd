//! Fetch revisions of configuration from Git repositories and local directories as verified,
//! reproducible artifacts.
//!
//! A [`Source`] answers one question per call of [`Source::fetch`]: given the revision it saw last,
//! is there something new? Either the answer is [`FetchOutcome::Unchanged`] (nothing was downloaded
//! or written), or a new [`Artifact`] was written to the requested destination directory.
//!
//! An artifact carries
//! - a revision string such as `main@sha1:<hash>` or `v1.2.3@sha1:<hash>`,
//! - a content digest `sha256:<hex>`: the SHA-256 of the sorted list of (mode, SHA-256 of the
//!   content, path) lines of its files, defined once and for all in [`Digest`] (version 1: the same
//!   files always give the same digest, from Git or from a directory), which
//!   [`Artifact::verify`] recomputes from disk, and
//! - a reproducible tar.gz export ([`Artifact::write_tar_gz`]), streamed only when a caller asks
//!   for it, that [`unpack_tar_gz`] reads back safely (no path escapes the target, no links, total
//!   size capped).
//!
//! Artifacts are written incrementally: given the previous artifact
//! ([`FetchRequest::with_previous`]), a new revision hard-links the files whose blob and mode did
//! not change (copying them where linking fails) and writes only the others, each to a new
//! inode, so the previous artifact is never modified; the tree is staged beside the destination
//! and renamed into place when complete, so no reader sees a half-made tree. A fetch can write
//! only part of the files ([`Sparse`]): a subpath, and the paths its files reference, found by a
//! [`References`] that the caller (who knows the renderer) provides.
//!
//! Files are selected from a subpath with `.sourceignore` files (gitignore syntax), caller patterns
//! and default rules for VCS metadata, CI files, archives and images, keeping the archives of
//! vendored Helm dependencies in `charts/` ([`IgnoreRules`]). Artifacts
//! hold regular files and directories only: symbolic links and submodules are left out, logged as
//! warnings and listed by [`Artifact::skipped`] ([`SkippedEntry`]).
//!
//! A repository is untrusted input. Every entry name a source lists (a Git tree entry, a directory
//! entry, a tar entry) and every path the artifact writer creates goes through one check,
//! [`path::check_entry_name`] and [`path::check_relative_path`]: a tree holding `..`, a name with
//! `/` or `\`, an absolute name, any spelling of `.git` or a control character is refused while it
//! is read, naming the entry and the commit, and nothing is written. Names and paths are printed
//! escaped ([`gitops_core::escape`]); URLs are printed without user info or query values
//! ([`redact_url`]), in every error and its whole source chain; HTTP credentials are only ever
//! sent to the origin they were configured for (a redirect to another origin is refused).
//!
//! A fetch reports its steps ([`FetchProgress`]: listing refs, downloading, writing files, done)
//! to the callback set with [`FetchRequest::with_progress`], and stops when the request's
//! cancellation token is cancelled.
//!
//! Implementations:
//! - [`LocalDirectorySource`]: a directory on disk, for development and tests.
//! - [`GitSource`]: a Git repository over `file://`, `git://`, `http(s)://`, `ssh://` or scp-like
//!   `user@host:path` URLs, with a persistent cache for incremental fetches.
//!
//! ```no_run
//! use gitops_source::{FetchOutcome, FetchRequest, LocalDirectorySource, Source};
//!
//! # async fn run() -> Result<(), gitops_source::SourceError> {
//! let source = LocalDirectorySource::new("./deploy");
//! match source.fetch(FetchRequest::new("/tmp/artifact")).await? {
//!     FetchOutcome::Unchanged(revision) => println!("still {revision}"),
//!     FetchOutcome::Fetched(artifact) => println!("new {} {}", artifact.revision(), artifact.digest()),
//! }
//! # Ok(())
//! # }
//! ```

mod artifact;
pub mod git;
mod local;
pub mod path;
mod redact;
mod secret;
mod select;
mod source;

/// Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature); not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Store `stream` as the pack a server sent into `pack_dir`, as a fetch does, with no
    /// object outside the pack (a thin pack's bases are missing): how many objects the stored
    /// pack holds, or the error's message.
    pub fn store_pack_stream(stream: &[u8], pack_dir: &std::path::Path) -> Result<u32, String> {
        crate::git::store_pack_stream(stream, pack_dir)
    }
}

pub use artifact::{Artifact, ArtifactError, Digest, Recycle, UnpackLimits, unpack_tar_gz};
pub use git::{
    DEFAULT_MAX_CACHE_PACKS, DEFAULT_MAX_DELTA_MEMORY, GitCredentials, GitReference, GitSource,
    GitSourceBuilder,
};
pub use local::LocalDirectorySource;
pub use redact::{REDACTED, redact_url};
pub use secret::Secret;
pub use select::{IgnoreRules, SOURCE_IGNORE_FILE, SelectError, SkipReason, SkippedEntry};
pub use source::{
    BoxError, FetchOutcome, FetchProgress, FetchRequest, ProgressCallback, References, Revision,
    Source, SourceError, Sparse,
};
