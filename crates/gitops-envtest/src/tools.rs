//! Pinned binaries built from Go modules: the control plane (kube-apiserver, etcd,
//! kube-controller-manager, kubectl) and the renderers' helm and kustomize.
//!
//! Each binary is built once with the machine's Go into a cache directory outside the checkout,
//! keyed by the pinned version and the Go module files, and rebuilt only when those change.
//! Binaries report their pinned version, stamped as their own releases stamp it; helm also
//! renders for the Kubernetes minor of its client-go (1.37 for helm v3.22.0), not v1.20.0.
//! Builds hold a file lock, so parallel test processes wait for one build instead of racing.
//!
//! - `GITOPS_ENVTEST_BIN_DIR`: use prebuilt binaries from this directory; nothing is built.
//! - `GITOPS_ENVTEST_CACHE`: the cache root (default `$XDG_CACHE_HOME/gitops-rs/envtest`, or
//!   `$HOME/.cache/gitops-rs/envtest`).

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The pinned Kubernetes release of the control plane (k8s-openapi's `v1_37`).
pub const KUBERNETES_VERSION: &str = "v1.37.2";
/// The pinned etcd release, the one Kubernetes [`KUBERNETES_VERSION`] is built against.
pub const ETCD_VERSION: &str = "v3.7.0";
/// The pinned helm release.
pub const HELM_VERSION: &str = "v3.22.0";
/// The pinned kustomize release.
pub const KUSTOMIZE_VERSION: &str = "v5.8.1";
/// The oldest Go that builds the pinned modules.
pub const MINIMUM_GO: (u32, u32) = (1, 26);

const KUBERNETES_GO_MOD: &str = include_str!("../go/kubernetes/go.mod");
const KUBERNETES_GO_SUM: &str = include_str!("../go/kubernetes/go.sum");
const ETCD_GO_MOD: &str = include_str!("../go/etcd/go.mod");
const ETCD_GO_SUM: &str = include_str!("../go/etcd/go.sum");
const ETCD_MAIN_GO: &str = include_str!("../go/etcd/main.go");

/// The Go variables helm's own release build (its Makefile) stamps with `-X`, besides the
/// version: without them `helm version` prints no release and `helm template` takes the cluster
/// for Kubernetes v1.20.0 (`.Capabilities.KubeVersion`, and `kubeVersion:` constraints of charts).
///
/// The Kubernetes version is the one of the `k8s.io/client-go` that helm's `go.mod` requires
/// (`v0.37.x` gives `1` and `37`), as helm's Makefile derives it. Part of helm's cache key, so
/// that changing the recipe rebuilds helm once.
const HELM_STAMPED_VARIABLES: &[&str] = &[
    "helm.sh/helm/v3/internal/version.version",
    "helm.sh/helm/v3/internal/version.metadata",
    "helm.sh/helm/v3/internal/version.gitTreeState",
    "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor",
    "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor",
    "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor",
    "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor",
];

/// The command that builds every tool ahead of time, named in error messages.
pub const INSTALL_COMMAND: &str = "cargo run -p gitops-envtest --features cli -- install";

/// The errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// No `go` on PATH.
    #[error(
        "building {tool} needs Go {}.{} or newer on PATH, and none was found; install Go, or set \
         GITOPS_ENVTEST_BIN_DIR to a directory with prebuilt binaries, then run `{INSTALL_COMMAND}`",
        MINIMUM_GO.0, MINIMUM_GO.1
    )]
    GoMissing {
        /// The tool that was to be built.
        tool: Tool,
    },
    /// `go` is too old for the pinned modules.
    #[error(
        "building {tool} needs Go {}.{} or newer, found {found:?}; upgrade Go, then run \
         `{INSTALL_COMMAND}`",
        MINIMUM_GO.0, MINIMUM_GO.1
    )]
    GoTooOld {
        /// The tool that was to be built.
        tool: Tool,
        /// What `go env GOVERSION` printed.
        found: String,
    },
    /// The Go build failed.
    #[error(
        "building {tool} failed: `{command}` exited with {status}:\n{output_tail}\nrun \
         `{INSTALL_COMMAND}` to try again and see the whole output"
    )]
    BuildFailed {
        /// The tool.
        tool: Tool,
        /// The command line that failed.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last lines it printed.
        output_tail: String,
    },
    /// `GITOPS_ENVTEST_BIN_DIR` is set but lacks the binary.
    #[error(
        "GITOPS_ENVTEST_BIN_DIR is {dir:?}, which has no {} binary; put it there or unset the \
         variable to have it built",
        tool.binary_name()
    )]
    NotInBinDir {
        /// The tool.
        tool: Tool,
        /// The directory.
        dir: PathBuf,
    },
    /// The Kubernetes version helm is stamped with could not be read from helm's `go.mod`.
    #[error(
        "building {} needs the k8s.io/client-go version of helm's go.mod {path:?}: {reason}",
        Tool::Helm
    )]
    HelmGoMod {
        /// The `go.mod` file (or the command output) read.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Neither `GITOPS_ENVTEST_CACHE`, `XDG_CACHE_HOME` nor `HOME` is set.
    #[error("cannot choose a cache directory: set GITOPS_ENVTEST_CACHE (or HOME)")]
    NoCacheDir,
    /// A file operation in the cache failed.
    #[error("{action} {path:?}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ToolError {
    let path = path.to_owned();
    move |source| ToolError::Io {
        action,
        path,
        source,
    }
}

/// A pinned binary that this crate can provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `kube-apiserver` of [`KUBERNETES_VERSION`].
    KubeApiserver,
    /// `kube-controller-manager` of [`KUBERNETES_VERSION`].
    KubeControllerManager,
    /// `kubectl` of [`KUBERNETES_VERSION`].
    Kubectl,
    /// `etcd` of [`ETCD_VERSION`].
    Etcd,
    /// `helm` of [`HELM_VERSION`].
    Helm,
    /// `kustomize` of [`KUSTOMIZE_VERSION`].
    Kustomize,
}

impl Tool {
    /// Every tool, in the order `install` builds them.
    pub const ALL: [Tool; 6] = [
        Tool::KubeApiserver,
        Tool::KubeControllerManager,
        Tool::Etcd,
        Tool::Kubectl,
        Tool::Helm,
        Tool::Kustomize,
    ];

    /// The file name of the binary.
    #[must_use]
    pub fn binary_name(self) -> &'static str {
        match self {
            Tool::KubeApiserver => "kube-apiserver",
            Tool::KubeControllerManager => "kube-controller-manager",
            Tool::Kubectl => "kubectl",
            Tool::Etcd => "etcd",
            Tool::Helm => "helm",
            Tool::Kustomize => "kustomize",
        }
    }

    /// The pinned version.
    #[must_use]
    pub fn version(self) -> &'static str {
        match self {
            Tool::KubeApiserver | Tool::KubeControllerManager | Tool::Kubectl => KUBERNETES_VERSION,
            Tool::Etcd => ETCD_VERSION,
            Tool::Helm => HELM_VERSION,
            Tool::Kustomize => KUSTOMIZE_VERSION,
        }
    }

    /// The Go package that builds it.
    fn package(self) -> &'static str {
        match self {
            Tool::KubeApiserver => "k8s.io/kubernetes/cmd/kube-apiserver",
            Tool::KubeControllerManager => "k8s.io/kubernetes/cmd/kube-controller-manager",
            Tool::Kubectl => "k8s.io/kubernetes/cmd/kubectl",
            Tool::Etcd => ".",
            Tool::Helm => "helm.sh/helm/v3/cmd/helm",
            Tool::Kustomize => "sigs.k8s.io/kustomize/kustomize/v5",
        }
    }

    /// The cache directory name: the version and, for tools built from our Go modules, a digest
    /// of those modules (for helm, of the variables its build stamps), so that a changed pin or
    /// build recipe builds anew.
    fn cache_key(self) -> String {
        let modules: &[&str] = match self {
            Tool::KubeApiserver | Tool::KubeControllerManager | Tool::Kubectl => {
                &[KUBERNETES_GO_MOD, KUBERNETES_GO_SUM]
            }
            Tool::Etcd => &[ETCD_GO_MOD, ETCD_GO_SUM, ETCD_MAIN_GO],
            Tool::Helm => HELM_STAMPED_VARIABLES,
            Tool::Kustomize => &[],
        };
        let family = match self {
            Tool::KubeApiserver | Tool::KubeControllerManager | Tool::Kubectl => "kubernetes",
            other => other.binary_name(),
        };
        if modules.is_empty() {
            return format!("{family}-{}", self.version());
        }
        let mut hasher = Sha256::new();
        for m in modules {
            hasher.update(m.as_bytes());
            hasher.update([0]);
        }
        let digest = hasher.finalize();
        let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{family}-{}-{short}", self.version())
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.binary_name(), self.version())
    }
}

/// The cache root: `GITOPS_ENVTEST_CACHE`, else `$XDG_CACHE_HOME/gitops-rs/envtest`, else
/// `$HOME/.cache/gitops-rs/envtest`.
pub fn cache_root() -> Result<PathBuf, ToolError> {
    if let Some(dir) = std::env::var_os("GITOPS_ENVTEST_CACHE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("gitops-rs/envtest"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".cache/gitops-rs/envtest"))
        .ok_or(ToolError::NoCacheDir)
}

/// Where the pinned tools are found or built: a cache directory, or a directory of prebuilt
/// binaries, and the `go` command that builds them.
///
/// ```no_run
/// use gitops_envtest::{Tool, tools::Toolbox};
/// let toolbox = Toolbox::new("/var/cache/my-ci/envtest").go("/usr/local/go/bin/go");
/// let kubectl = toolbox.ensure(Tool::Kubectl)?;
/// # Ok::<(), gitops_envtest::tools::ToolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Toolbox {
    cache_root: PathBuf,
    bin_dir: Option<PathBuf>,
    go: PathBuf,
}

impl Toolbox {
    /// A toolbox that builds into `cache_root` with the `go` on PATH.
    pub fn new(cache_root: impl Into<PathBuf>) -> Self {
        Self {
            cache_root: cache_root.into(),
            bin_dir: None,
            go: PathBuf::from("go"),
        }
    }

    /// The toolbox the environment asks for: `GITOPS_ENVTEST_BIN_DIR` for prebuilt binaries,
    /// else the cache of [`cache_root`].
    pub fn from_env() -> Result<Self, ToolError> {
        let bin_dir = std::env::var_os("GITOPS_ENVTEST_BIN_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let toolbox = match &bin_dir {
            // With prebuilt binaries no cache is needed, so HOME may be unset.
            Some(_) => Self::new(cache_root().unwrap_or_default()),
            None => Self::new(cache_root()?),
        };
        Ok(match bin_dir {
            Some(dir) => toolbox.prebuilt(dir),
            None => toolbox,
        })
    }

    /// Uses the binaries in `dir` and builds nothing.
    pub fn prebuilt(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// The `go` command to build with (default: `go` on PATH).
    pub fn go(mut self, go: impl Into<PathBuf>) -> Self {
        self.go = go.into();
        self
    }

    /// Where `tool` is (or will be) in the cache, without building it.
    #[must_use]
    pub fn cached_path(&self, tool: Tool) -> PathBuf {
        self.cache_root
            .join(tool.cache_key())
            .join("bin")
            .join(tool.binary_name())
    }

    /// The path of `tool` if it is already there, without building anything: in the directory
    /// of prebuilt binaries when one is set ([`Toolbox::prebuilt`]), else in the cache.
    ///
    /// ```
    /// use gitops_envtest::{Tool, tools::Toolbox};
    /// let empty = std::env::temp_dir().join("no-tools-here");
    /// assert_eq!(Toolbox::new("/nonexistent").prebuilt(&empty).installed(Tool::Helm), None);
    /// ```
    #[must_use]
    pub fn installed(&self, tool: Tool) -> Option<PathBuf> {
        let path = match &self.bin_dir {
            Some(dir) => dir.join(tool.binary_name()),
            None => self.cached_path(tool),
        };
        path.is_file().then_some(path)
    }

    /// The path of `tool`, building it first when it is missing. Blocking: a cold build of the
    /// control plane takes minutes. Call it from `spawn_blocking` in async code.
    pub fn ensure(&self, tool: Tool) -> Result<PathBuf, ToolError> {
        if let Some(dir) = &self.bin_dir {
            let path = dir.join(tool.binary_name());
            return if path.is_file() {
                Ok(path)
            } else {
                Err(ToolError::NotInBinDir {
                    tool,
                    dir: dir.clone(),
                })
            };
        }
        let path = self.cached_path(tool);
        if path.is_file() {
            return Ok(path);
        }
        let key_dir = self.cache_root.join(tool.cache_key());
        fs::create_dir_all(&key_dir).map_err(io_error("creating", &key_dir))?;
        let lock_path = key_dir.join(".lock");
        let lock = fs::File::create(&lock_path).map_err(io_error("creating", &lock_path))?;
        lock.lock().map_err(io_error("locking", &lock_path))?;
        // Another process may have built it while we waited for the lock.
        if path.is_file() {
            return Ok(path);
        }
        build(&self.go, tool, &key_dir)?;
        Ok(path)
    }
}

/// Where `tool` is (or will be) in the cache of [`Toolbox::from_env`], without building it.
pub fn cached_path(tool: Tool) -> Result<PathBuf, ToolError> {
    Ok(Toolbox::from_env()?.cached_path(tool))
}

/// The path of `tool` in the [`Toolbox::from_env`] if it is already there
/// (`GITOPS_ENVTEST_BIN_DIR` when set, else the cache), without building anything; `None` when it
/// is missing or no cache directory can be chosen.
///
/// ```
/// if let Some(kustomize) = gitops_envtest::tools::installed(gitops_envtest::Tool::Kustomize) {
///     assert!(kustomize.ends_with("kustomize"));
/// }
/// ```
#[must_use]
pub fn installed(tool: Tool) -> Option<PathBuf> {
    Toolbox::from_env().ok()?.installed(tool)
}

/// The path of `tool` from the [`Toolbox::from_env`], building it first when it is missing.
/// Blocking: a cold build of the control plane takes minutes. Call it from `spawn_blocking` in
/// async code.
///
/// ```no_run
/// let helm = gitops_envtest::tools::ensure(gitops_envtest::Tool::Helm)?;
/// assert!(helm.ends_with("helm"));
/// # Ok::<(), gitops_envtest::tools::ToolError>(())
/// ```
pub fn ensure(tool: Tool) -> Result<PathBuf, ToolError> {
    Toolbox::from_env()?.ensure(tool)
}

fn go_version(go: &Path, tool: Tool) -> Result<String, ToolError> {
    let output = Command::new(go)
        .args(["env", "GOVERSION"])
        .output()
        .map_err(|_| ToolError::GoMissing { tool })?;
    let found = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let numbers: Vec<u32> = found
        .trim_start_matches("go")
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers.as_slice() {
        [major, minor] if (*major, *minor) >= MINIMUM_GO => Ok(found),
        _ => Err(ToolError::GoTooOld { tool, found }),
    }
}

fn build(go: &Path, tool: Tool, key_dir: &Path) -> Result<(), ToolError> {
    go_version(go, tool)?;
    let bin_dir = key_dir.join("bin");
    fs::create_dir_all(&bin_dir).map_err(io_error("creating", &bin_dir))?;
    let staging = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(key_dir)
        .map_err(io_error("creating a build directory in", key_dir))?;
    let out_dir = staging.path().join("out");
    fs::create_dir_all(&out_dir).map_err(io_error("creating", &out_dir))?;

    eprintln!("gitops-envtest: building {tool} with Go, once; this can take minutes");
    tracing::info!(%tool, dir = %key_dir.display(), "building a pinned tool");

    let mut command = Command::new(go);
    command
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .env("CGO_ENABLED", "0");
    match tool {
        Tool::KubeApiserver | Tool::KubeControllerManager | Tool::Kubectl => {
            let module = staging.path().join("module");
            write_files(
                &module,
                &[("go.mod", KUBERNETES_GO_MOD), ("go.sum", KUBERNETES_GO_SUM)],
            )?;
            // The version the binaries report (kubectl version, /version).
            let minor = KUBERNETES_VERSION.split('.').nth(1).unwrap_or_default();
            let ldflags = format!(
                "-s -w -X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION} \
                 -X k8s.io/component-base/version.gitMajor=1 \
                 -X k8s.io/component-base/version.gitMinor={minor} \
                 -X k8s.io/client-go/pkg/version.gitVersion={KUBERNETES_VERSION}"
            );
            command
                .current_dir(&module)
                .args(["build", "-trimpath", "-ldflags", &ldflags, "-o"]);
            command.arg(&out_dir);
            // The apiserver and controller-manager share most packages: build them together.
            match tool {
                Tool::Kubectl => command.arg(Tool::Kubectl.package()),
                _ => command.args([
                    Tool::KubeApiserver.package(),
                    Tool::KubeControllerManager.package(),
                ]),
            };
        }
        Tool::Etcd => {
            let module = staging.path().join("module");
            write_files(
                &module,
                &[
                    ("go.mod", ETCD_GO_MOD),
                    ("go.sum", ETCD_GO_SUM),
                    ("main.go", ETCD_MAIN_GO),
                ],
            )?;
            command
                .current_dir(&module)
                .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
                .arg(out_dir.join("etcd"))
                .arg(".");
        }
        Tool::Helm | Tool::Kustomize => {
            // kustomize stamps its version from the module's build information; helm needs the
            // `-X` flags of its release build.
            let ldflags = match tool {
                Tool::Helm => helm_ldflags(go, staging.path())?,
                _ => "-s -w".to_owned(),
            };
            // `go install module@version` resolves the module's own pinned dependencies.
            command
                .current_dir(staging.path())
                .env("GOBIN", &out_dir)
                .env("GOFLAGS", "-buildvcs=false")
                .args(["install", "-trimpath", "-ldflags", &ldflags])
                .arg(format!("{}@{}", tool.package(), tool.version()));
        }
    }
    run(&mut command, tool)?;
    // Move every binary the build made into place; a rename within one file system is atomic,
    // so a reader never sees a half-written binary.
    let entries = fs::read_dir(&out_dir).map_err(io_error("reading", &out_dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error("reading", &out_dir))?;
        let target = bin_dir.join(entry.file_name());
        fs::rename(entry.path(), &target).map_err(io_error("moving a binary to", &target))?;
    }
    let stamp = key_dir.join("BUILT");
    let mut file = fs::File::create(&stamp).map_err(io_error("writing", &stamp))?;
    writeln!(file, "{tool}").map_err(io_error("writing", &stamp))?;
    Ok(())
}

/// Runs a Go command of the build of `tool`, returning its standard output; a failure carries
/// the command line and the last lines it printed.
fn run(command: &mut Command, tool: Tool) -> Result<Vec<u8>, ToolError> {
    let command_line = format!("{command:?}");
    let output = command
        .output()
        .map_err(|_| ToolError::GoMissing { tool })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        let lines: Vec<&str> = text.lines().collect();
        let output_tail = lines[lines.len().saturating_sub(25)..].join("\n");
        return Err(ToolError::BuildFailed {
            tool,
            command: command_line,
            status: output.status,
            output_tail,
        });
    }
    Ok(output.stdout)
}

/// The `-ldflags` of helm's release build ([`HELM_STAMPED_VARIABLES`]): the pinned version, a
/// clean tree of a tagged release (no metadata), and the Kubernetes version of the client-go that
/// helm's `go.mod` requires, read from the module Go downloads for the build anyway.
///
/// The git commit is not stamped: the module proxy serves the tagged tree without it.
fn helm_ldflags(go: &Path, work_dir: &Path) -> Result<String, ToolError> {
    let tool = Tool::Helm;
    let module = tool.package().trim_end_matches("/cmd/helm");
    let stdout = run(
        Command::new(go)
            .current_dir(work_dir)
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-buildvcs=false")
            .args(["mod", "download", "-json"])
            .arg(format!("{module}@{HELM_VERSION}")),
        tool,
    )?;
    let download: serde_json::Value =
        serde_json::from_slice(&stdout).map_err(|source| ToolError::HelmGoMod {
            path: PathBuf::from("(output of go mod download -json)"),
            reason: source.to_string(),
        })?;
    let go_mod_path = PathBuf::from(download["GoMod"].as_str().unwrap_or_default());
    let go_mod = fs::read_to_string(&go_mod_path).map_err(|source| ToolError::HelmGoMod {
        path: go_mod_path.clone(),
        reason: source.to_string(),
    })?;
    let (major, minor) =
        kubernetes_version_of_client_go(&go_mod).ok_or_else(|| ToolError::HelmGoMod {
            path: go_mod_path.clone(),
            reason: "it requires no k8s.io/client-go v0.<minor>.<patch>".to_owned(),
        })?;
    let values = [
        HELM_VERSION.to_owned(),
        String::new(),
        "clean".to_owned(),
        major.to_string(),
        minor.to_string(),
        major.to_string(),
        minor.to_string(),
    ];
    let mut ldflags = "-s -w".to_owned();
    for (variable, value) in HELM_STAMPED_VARIABLES.iter().zip(values) {
        ldflags.push_str(&format!(" -X {variable}={value}"));
    }
    Ok(ldflags)
}

/// The Kubernetes version `(1, minor)` of the `k8s.io/client-go v0.<minor>.<patch>` a `go.mod`
/// requires, as helm's Makefile derives it; `None` when it requires none.
fn kubernetes_version_of_client_go(go_mod: &str) -> Option<(u32, u32)> {
    go_mod
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .filter(|line| !line.contains("=>"))
        .find_map(|line| {
            let mut words = line
                .split_whitespace()
                .skip_while(|w| *w != "k8s.io/client-go");
            words.next()?;
            let version = words.next()?.strip_prefix("v0.")?;
            let minor = version.split('.').next()?.parse().ok()?;
            Some((1, minor))
        })
}

fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<(), ToolError> {
    fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    for (name, text) in files {
        let path = dir.join(name);
        fs::write(&path, text).map_err(io_error("writing", &path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A stand-in `go` for the error paths: a shell script that prints a version and fails builds.
    fn fake_go(dir: &Path, version: &str) -> PathBuf {
        let path = dir.join("go");
        fs::write(
            &path,
            format!(
                "#!/bin/sh\nif [ \"$1\" = env ]; then echo {version}; exit 0; fi\n\
                 echo 'cmd/helm: cannot find module providing package' >&2\nexit 1\n"
            ),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn names_the_install_command_when_go_is_missing() {
        let cache = tempfile::tempdir().unwrap();
        let err = Toolbox::new(cache.path())
            .go(cache.path().join("no-such-go"))
            .ensure(Tool::Helm)
            .unwrap_err();
        assert!(
            matches!(err, ToolError::GoMissing { tool: Tool::Helm }),
            "{err}"
        );
        assert!(err.to_string().contains(INSTALL_COMMAND), "{err}");
    }

    #[test]
    fn refuses_an_old_go() {
        let cache = tempfile::tempdir().unwrap();
        let go = fake_go(cache.path(), "go1.21.4");
        let err = Toolbox::new(cache.path())
            .go(go)
            .ensure(Tool::Kustomize)
            .unwrap_err();
        assert!(
            matches!(err, ToolError::GoTooOld { ref found, .. } if found == "go1.21.4"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_build_shows_the_output_and_leaves_no_binary() {
        let cache = tempfile::tempdir().unwrap();
        let go = fake_go(cache.path(), "go1.26.8");
        let toolbox = Toolbox::new(cache.path().join("cache")).go(go);
        let err = toolbox.ensure(Tool::Helm).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ToolError::BuildFailed { .. }), "{text}");
        assert!(
            text.contains("cannot find module providing package"),
            "{text}"
        );
        assert!(text.contains(INSTALL_COMMAND), "{text}");
        assert!(!toolbox.cached_path(Tool::Helm).exists());
    }

    #[test]
    fn prebuilt_binaries_are_used_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("kubectl"), "").unwrap();
        let toolbox = Toolbox::new("/nonexistent").prebuilt(dir.path());
        assert_eq!(
            toolbox.ensure(Tool::Kubectl).unwrap(),
            dir.path().join("kubectl")
        );
        assert!(matches!(
            toolbox.ensure(Tool::Etcd),
            Err(ToolError::NotInBinDir {
                tool: Tool::Etcd,
                ..
            })
        ));
    }

    #[test]
    fn installed_looks_where_ensure_would_and_builds_nothing() {
        let prebuilt = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let cached = Toolbox::new(cache.path());
        // The cache has helm; a toolbox of prebuilt binaries does not look there.
        let helm = cached.cached_path(Tool::Helm);
        fs::create_dir_all(helm.parent().unwrap()).unwrap();
        fs::write(&helm, "").unwrap();
        assert_eq!(cached.installed(Tool::Helm), Some(helm));
        assert_eq!(cached.installed(Tool::Kustomize), None);
        let toolbox = cached.clone().prebuilt(prebuilt.path());
        assert_eq!(toolbox.installed(Tool::Helm), None);
        fs::write(prebuilt.path().join("helm"), "").unwrap();
        assert_eq!(
            toolbox.installed(Tool::Helm),
            Some(prebuilt.path().join("helm"))
        );
        // Nothing was built or created.
        assert!(!cache.path().join(Tool::Kustomize.cache_key()).exists());
    }

    #[test]
    fn cache_keys_name_the_version_and_the_modules() {
        let apiserver = Tool::KubeApiserver.cache_key();
        assert!(apiserver.starts_with("kubernetes-v1.37.2-"), "{apiserver}");
        // Tools of one module share a directory, so one build serves them all.
        assert_eq!(apiserver, Tool::KubeControllerManager.cache_key());
        // helm's key changed when its build began stamping the version: the unstamped binary of
        // the old key is never used again.
        let helm = Tool::Helm.cache_key();
        assert!(helm.starts_with("helm-v3.22.0-"), "{helm}");
        assert_eq!(Tool::Kustomize.cache_key(), "kustomize-v5.8.1");
        assert_ne!(Tool::Etcd.cache_key(), apiserver);
    }

    #[test]
    fn helm_is_stamped_with_the_kubernetes_minor_of_its_client_go() {
        let go_mod = "module helm.sh/helm/v3\n\ngo 1.25.0\n\nrequire (\n\
                      \tk8s.io/api v0.37.0\n\tk8s.io/client-go v0.37.1 // indirect\n)\n";
        assert_eq!(kubernetes_version_of_client_go(go_mod), Some((1, 37)));
        assert_eq!(
            kubernetes_version_of_client_go("require k8s.io/client-go v0.34.2\n"),
            Some((1, 34))
        );
        // A replacement is not the requirement; a module without client-go has no version.
        assert_eq!(
            kubernetes_version_of_client_go("replace k8s.io/client-go => ../client-go\n"),
            None
        );
        assert_eq!(kubernetes_version_of_client_go("module x\n"), None);
    }

    #[test]
    fn the_kubernetes_module_pins_the_release_and_its_staging_modules() {
        assert!(KUBERNETES_GO_MOD.contains(&format!("k8s.io/kubernetes {KUBERNETES_VERSION}")));
        let staging_version = KUBERNETES_VERSION.replacen("v1.", "v0.", 1);
        for module in [
            "k8s.io/api",
            "k8s.io/apimachinery",
            "k8s.io/apiserver",
            "k8s.io/client-go",
        ] {
            assert!(
                KUBERNETES_GO_MOD.contains(&format!("{module} => {module} {staging_version}")),
                "{module} is not replaced with {staging_version}"
            );
        }
        assert!(ETCD_GO_MOD.contains(&format!("go.etcd.io/etcd/server/v3 {ETCD_VERSION}")));
    }
}
