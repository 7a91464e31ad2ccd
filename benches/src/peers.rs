//! The Go peers of the benchmarks (`benches/peers/<name>`), built once with `go` into the
//! gitops-rs cache and rebuilt when their sources change.
//!
//! Every bench that compares with a Go peer gets its binary through [`Peer::ensure`] (or
//! [`Peer::require`], which panics with the way to get it): a peer is never skipped, so a run
//! cannot "pass" comparing nothing.
//!
//! The peers' `go.mod` name Go 1.27; a machine with an older `go` fetches the toolchain from the
//! Go module proxy: the build sets `GOTOOLCHAIN` to [`GO_TOOLCHAIN`] unless the environment
//! already sets it. Binaries go to `$GITOPS_PEERS_CACHE`, else `$XDG_CACHE_HOME/gitops-rs/peers`,
//! else `~/.cache/gitops-rs/peers`, one directory per peer and digest of its sources.
//!
//! ```no_run
//! use gitops_benches::peers::Peer;
//!
//! let harness = Peer::FluxSsa.ensure()?; // built on first use (minutes), then cached
//! println!("{}", harness.display());
//! # Ok::<(), gitops_benches::peers::PeerError>(())
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The Go toolchain the peers are built with when `GOTOOLCHAIN` is not set: the go command
/// fetches it from the Go module proxy (about 76 MB, once per machine).
pub const GO_TOOLCHAIN: &str = "go1.27.3";

/// The environment variable that moves the peers' cache.
pub const CACHE_ENV: &str = "GITOPS_PEERS_CACHE";

/// The errors of finding, building or describing a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// A source file of the peer could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Neither `GITOPS_PEERS_CACHE`, `XDG_CACHE_HOME` nor `HOME` is set.
    #[error("no cache directory for the Go peers: set {CACHE_ENV}, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    /// The cache directory could not be made or written.
    #[error("writing the peer cache at {path}")]
    Cache {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `go` could not be started.
    #[error(
        "running `go` to build the {peer} peer: install Go 1.26 or newer (the build fetches \
         {GO_TOOLCHAIN} from the Go module proxy)"
    )]
    GoMissing {
        /// The peer's name.
        peer: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `go build` failed.
    #[error("`go build` of the {peer} peer in {dir} (GOTOOLCHAIN={toolchain}) failed:\n{stderr}")]
    Build {
        /// The peer's name.
        peer: &'static str,
        /// Its source directory.
        dir: PathBuf,
        /// The toolchain asked for.
        toolchain: String,
        /// What go printed.
        stderr: String,
    },
    /// The peer's `go.mod` requires no version of the module asked for.
    #[error("{go_mod} requires no version of {module}")]
    NoModule {
        /// The module path.
        module: String,
        /// The `go.mod` read.
        go_mod: PathBuf,
    },
}

/// A Go peer harness under `benches/peers/`.
///
/// ```
/// use gitops_benches::peers::Peer;
/// assert_eq!(Peer::FluxSsa.name(), "flux-ssa");
/// assert!(Peer::GitopsEngineDiff.source_dir().join("go.mod").is_file());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// Flux's server-side apply engine (`github.com/fluxcd/pkg/ssa`), as kustomize-controller
    /// configures it: `benches/peers/flux-ssa`.
    FluxSsa,
    /// Argo CD's gitops-engine diff: `benches/peers/gitops-engine-diff`.
    GitopsEngineDiff,
}

impl Peer {
    /// Every peer.
    pub const ALL: [Self; 2] = [Self::FluxSsa, Self::GitopsEngineDiff];

    /// Its directory under `benches/peers/` and the name of its binary.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::FluxSsa => "flux-ssa",
            Self::GitopsEngineDiff => "gitops-engine-diff",
        }
    }

    /// The upstream Go module it measures, whose version the results record.
    ///
    /// ```
    /// use gitops_benches::peers::Peer;
    /// assert_eq!(Peer::FluxSsa.module(), "github.com/fluxcd/pkg/ssa");
    /// ```
    #[must_use]
    pub fn module(self) -> &'static str {
        match self {
            Self::FluxSsa => "github.com/fluxcd/pkg/ssa",
            Self::GitopsEngineDiff => "github.com/argoproj/argo-cd/gitops-engine/v3",
        }
    }

    /// Its source directory, `benches/peers/<name>`.
    #[must_use]
    pub fn source_dir(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("peers")
            .join(self.name())
    }

    /// The version of [`module`](Self::module) its `go.mod` requires.
    ///
    /// ```
    /// use gitops_benches::peers::Peer;
    /// assert!(Peer::FluxSsa.module_version()?.starts_with('v'));
    /// # Ok::<(), gitops_benches::peers::PeerError>(())
    /// ```
    ///
    /// # Errors
    /// [`PeerError::Read`] when `go.mod` cannot be read, [`PeerError::NoModule`] when it does
    /// not require the module.
    pub fn module_version(self) -> Result<String, PeerError> {
        let go_mod = self.source_dir().join("go.mod");
        let text = std::fs::read_to_string(&go_mod).map_err(|source| PeerError::Read {
            path: go_mod.clone(),
            source,
        })?;
        required_version(&text, self.module()).ok_or_else(|| PeerError::NoModule {
            module: self.module().to_owned(),
            go_mod,
        })
    }

    /// Where its binary is cached for the current sources:
    /// `<cache>/<name>-<digest>/<name>`, the digest taken over its `go.mod`, `go.sum` and
    /// `*.go` files and the toolchain.
    ///
    /// # Errors
    /// [`PeerError::Read`] when a source cannot be read, [`PeerError::NoCacheDir`].
    pub fn cached_path(self) -> Result<PathBuf, PeerError> {
        let digest = self.source_digest()?;
        Ok(cache_root()?
            .join(format!("{}-{}", self.name(), &digest[..16]))
            .join(self.name()))
    }

    /// Its binary, built with `go build` into the cache when missing (minutes on first use).
    ///
    /// # Errors
    /// [`PeerError`] when the sources cannot be read, `go` is missing or the build fails.
    pub fn ensure(self) -> Result<PathBuf, PeerError> {
        let binary = self.cached_path()?;
        if binary.is_file() {
            return Ok(binary);
        }
        let dir = binary
            .parent()
            .expect("a cached path has a directory")
            .to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| PeerError::Cache {
            path: dir.clone(),
            source,
        })?;
        let partial = dir.join(format!("{}.partial-{}", self.name(), std::process::id()));
        let toolchain = toolchain();
        eprintln!(
            "building the {} peer with GOTOOLCHAIN={toolchain} into {} (once; minutes)",
            self.name(),
            dir.display()
        );
        let output = Command::new("go")
            .args(["build", "-buildvcs=false", "-o"])
            .arg(&partial)
            .arg(".")
            .current_dir(self.source_dir())
            .env("GOTOOLCHAIN", &toolchain)
            .output()
            .map_err(|source| PeerError::GoMissing {
                peer: self.name(),
                source,
            })?;
        if !output.status.success() {
            let _ = std::fs::remove_file(&partial);
            return Err(PeerError::Build {
                peer: self.name(),
                dir: self.source_dir(),
                toolchain,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        std::fs::rename(&partial, &binary).map_err(|source| PeerError::Cache {
            path: binary.clone(),
            source,
        })?;
        self.remove_stale_builds(&dir);
        Ok(binary)
    }

    /// Its binary, built when missing; panics with what failed and how to get the peer, since
    /// a bench must never run without its peer.
    ///
    /// # Panics
    /// When [`ensure`](Self::ensure) fails.
    #[must_use]
    pub fn require(self) -> PathBuf {
        self.ensure().unwrap_or_else(|error| {
            panic!(
                "the {} peer is required and could not be built: {}\n\
                 It is built from benches/peers/{} with `go` (1.26 or newer; GOTOOLCHAIN={} is \
                 fetched from the Go module proxy) into {}; `scripts/bench` builds it.",
                self.name(),
                gitops_core::error_chain(&error),
                self.name(),
                GO_TOOLCHAIN,
                cache_root()
                    .map_or_else(|_| "the peers' cache".into(), |p| p.display().to_string()),
            )
        })
    }

    /// Removes this peer's builds of other sources (older digests) from the cache.
    fn remove_stale_builds(self, keep: &Path) {
        let Some(root) = keep.parent() else { return };
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        let prefix = format!("{}-", self.name());
        for entry in entries.flatten() {
            let path = entry.path();
            let is_ours = entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_prefix(&prefix))
                .is_some_and(|digest| {
                    digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit())
                });
            if is_ours && path != keep {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }

    fn source_digest(self) -> Result<String, PeerError> {
        let dir = self.source_dir();
        let read_dir = std::fs::read_dir(&dir).map_err(|source| PeerError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = read_dir
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| {
                        name == "go.mod" || name == "go.sum" || name.ends_with(".go")
                    })
            })
            .collect();
        files.sort();
        let mut hasher = Sha256::new();
        hasher.update(toolchain().as_bytes());
        for file in files {
            let bytes = std::fs::read(&file).map_err(|source| PeerError::Read {
                path: file.clone(),
                source,
            })?;
            hasher.update(file.file_name().unwrap_or_default().as_encoded_bytes());
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect())
    }
}

/// The `GOTOOLCHAIN` a build uses: the environment's, else [`GO_TOOLCHAIN`].
///
/// ```
/// assert!(gitops_benches::peers::toolchain().len() > 2);
/// ```
#[must_use]
pub fn toolchain() -> String {
    std::env::var("GOTOOLCHAIN")
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| GO_TOOLCHAIN.to_owned())
}

/// The directory the peers are cached in (see the [module](self) docs).
///
/// ```
/// let root = gitops_benches::peers::cache_root()?;
/// assert!(root.ends_with("peers") || std::env::var_os("GITOPS_PEERS_CACHE").is_some());
/// # Ok::<(), gitops_benches::peers::PeerError>(())
/// ```
///
/// # Errors
/// [`PeerError::NoCacheDir`] when no variable names a place.
pub fn cache_root() -> Result<PathBuf, PeerError> {
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = var(CACHE_ENV) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("gitops-rs/peers"));
    }
    var("HOME")
        .map(|home| PathBuf::from(home).join(".cache/gitops-rs/peers"))
        .ok_or(PeerError::NoCacheDir)
}

/// The version of `module` that a `go.mod` text requires (in a `require` line or block).
///
/// ```
/// let go_mod = "module x\n\nrequire (\n\tgithub.com/fluxcd/pkg/ssa v0.83.0\n)\n";
/// assert_eq!(
///     gitops_benches::peers::required_version(go_mod, "github.com/fluxcd/pkg/ssa").as_deref(),
///     Some("v0.83.0")
/// );
/// ```
#[must_use]
pub fn required_version(go_mod: &str, module: &str) -> Option<String> {
    let mut in_block = false;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        let spec = if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else if let Some(rest) = line.strip_prefix("require") {
            let rest = rest.trim();
            if rest == "(" {
                in_block = true;
                continue;
            }
            rest
        } else {
            continue;
        };
        let mut words = spec.split_whitespace();
        if words.next() == Some(module) {
            return words.next().map(str::to_owned);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_required_version_is_found_in_a_block_and_on_a_line_but_not_in_a_replace() {
        let go_mod = "module m\n\ngo 1.27.0\n\nrequire example.com/one v1.2.3\n\nrequire (\n\texample.com/two v0.1.0 // indirect\n\texample.com/three v3.0.0\n)\n\nreplace example.com/four => example.com/five v1.0.0\n";
        assert_eq!(
            required_version(go_mod, "example.com/one").as_deref(),
            Some("v1.2.3")
        );
        assert_eq!(
            required_version(go_mod, "example.com/two").as_deref(),
            Some("v0.1.0")
        );
        assert_eq!(
            required_version(go_mod, "example.com/three").as_deref(),
            Some("v3.0.0")
        );
        assert_eq!(required_version(go_mod, "example.com/four"), None);
        assert_eq!(required_version(go_mod, "example.com/on"), None);
    }

    #[test]
    fn every_peer_requires_its_module() {
        for peer in Peer::ALL {
            let version = peer.module_version().unwrap();
            assert!(version.starts_with('v'), "{peer:?}: {version}");
        }
    }

    #[test]
    fn the_cached_path_changes_with_the_sources_digest_only() {
        let first = Peer::FluxSsa.cached_path().unwrap();
        assert_eq!(first, Peer::FluxSsa.cached_path().unwrap());
        assert_ne!(first, Peer::GitopsEngineDiff.cached_path().unwrap());
        assert!(first.ends_with("flux-ssa"));
    }
}
