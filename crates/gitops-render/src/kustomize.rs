//! [`KustomizeRenderer`]: `kustomize build` of a kustomization inside the source root, jailed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gitops_core::{Manifest, ParseError};
use serde_json::Value;

use crate::process::{ProcessError, ToolRun, clean_message};
use crate::root::{RootError, SourceRoot};
use crate::{RenderError, RenderRequest, Renderer, check_unique};

/// The kustomize version this crate is built and tested against.
pub const PINNED_KUSTOMIZE_VERSION: &str = "v5.8.1";

/// The names kustomize accepts for a kustomization file, in its order of preference.
pub(crate) const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The errors of the Kustomize renderer.
#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    /// The directory has no kustomization file.
    #[error("{dir}: no kustomization.yaml, kustomization.yml or Kustomization", dir = dir.display())]
    NotAKustomization {
        /// The directory, relative to the root.
        dir: PathBuf,
    },
    /// The directory is a kustomization, but no kustomize binary was configured.
    #[error("{dir}: is a kustomization, but no kustomize binary is configured", dir = dir.display())]
    NoBinary {
        /// The directory as requested.
        dir: PathBuf,
    },
    /// A kustomization file is not valid YAML or not a mapping.
    #[error("{0}")]
    Kustomization(#[source] ParseError),
    /// A kustomization file is not a mapping.
    #[error("{file}: a kustomization must be a mapping", file = file.display())]
    NotAMapping {
        /// The kustomization file, relative to the root.
        file: PathBuf,
    },
    /// A kustomization refers to a remote base or file; only the source root is rendered.
    #[error("{file}: {field}: remote reference {reference:?} refused: only files inside the source root are rendered", file = file.display())]
    Remote {
        /// The kustomization file, relative to the root.
        file: PathBuf,
        /// The field, such as `resources`.
        field: String,
        /// The reference.
        reference: String,
    },
    /// A kustomization refers to a path outside the source root, or to one that does not exist.
    #[error("{file}: {field}: {source}", file = file.display())]
    Reference {
        /// The kustomization file, relative to the root.
        file: PathBuf,
        /// The field, such as `resources`.
        field: String,
        /// What is wrong with the path.
        #[source]
        source: RootError,
    },
    /// A kustomization uses `helmCharts`, which needs `--enable-helm`, which stays off.
    #[error("{file}: helmCharts is not supported (kustomize runs without --enable-helm); render the chart with the Helm renderer", file = file.display())]
    HelmCharts {
        /// The kustomization file, relative to the root.
        file: PathBuf,
    },
    /// `kustomize build` failed; the message is kustomize's own, with root paths made relative.
    #[error("kustomize build {dir}: {message}", dir = dir.display())]
    Build {
        /// The directory, relative to the root.
        dir: PathBuf,
        /// kustomize's error output.
        message: String,
        /// The process error.
        #[source]
        source: ProcessError,
    },
    /// The kustomize binary reports another version than the pinned one.
    #[error("kustomize {found} found, {expected} expected")]
    Version {
        /// The version found.
        found: String,
        /// The version expected.
        expected: &'static str,
    },
    /// kustomize's output is not a valid set of objects.
    #[error(transparent)]
    Output(ParseError),
}

/// Runs the real `kustomize build` on a directory of the source root.
///
/// Safety, beyond what kustomize does itself:
/// - the kustomization graph is walked first: every `resources`, `components`, `patches`,
///   generator file and so on must be a path that exists inside the source root (remote bases
///   and URLs are refused, so kustomize never reaches the network);
/// - the whole root is checked for symbolic links that leave it and for oversized files;
/// - kustomize runs with `--load-restrictor LoadRestrictionsRootOnly`, without `--enable-helm`,
///   `--enable-exec` or `--enable-alpha-plugins` (no exec or KRM function plugins), with a clean
///   environment and private home, a timeout and cancellation.
///
/// Objects keep kustomize's order; their origin is `kustomize build <dir>` with the line in its
/// output.
///
/// ```no_run
/// use gitops_render::{KustomizeRenderer, RenderRequest, Renderer, SourceRoot};
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let renderer = KustomizeRenderer::new("/usr/local/bin/kustomize")
///     .timeout(std::time::Duration::from_secs(30));
/// let root = SourceRoot::new("/srv/checkout")?;
/// let objects = renderer.render(&RenderRequest::new(root, "overlays/prod")).await?;
/// # let _ = objects;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KustomizeRenderer {
    binary: PathBuf,
    timeout: Duration,
    max_output: usize,
    max_file_size: u64,
}

impl KustomizeRenderer {
    /// Uses the kustomize binary at `binary`; a 60 s timeout, 256 MiB of output, 8 MiB files.
    #[must_use]
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            timeout: Duration::from_secs(60),
            max_output: 256 << 20,
            max_file_size: 8 << 20,
        }
    }

    /// How long one build may take.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most output accepted from one build, in bytes.
    #[must_use]
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// The largest file allowed anywhere in the source root, in bytes.
    #[must_use]
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Checks that the binary is the pinned version ([`PINNED_KUSTOMIZE_VERSION`]).
    pub async fn check_version(&self) -> Result<(), KustomizeError> {
        let cwd = std::env::temp_dir();
        let out = ToolRun {
            program: &self.binary,
            args: vec!["version".into()],
            cwd: &cwd,
            timeout: self.timeout,
            max_output: 4096,
        }
        .run(&tokio_util::sync::CancellationToken::new())
        .await
        .map_err(|source| KustomizeError::Build {
            dir: PathBuf::from("."),
            message: source.to_string(),
            source,
        })?;
        let found = out.trim();
        if found != PINNED_KUSTOMIZE_VERSION {
            return Err(KustomizeError::Version {
                found: found.to_owned(),
                expected: PINNED_KUSTOMIZE_VERSION,
            });
        }
        Ok(())
    }
}

/// The kustomization file in `dir`, if any.
pub(crate) fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Walks the kustomization graph from `dir`, checking every referenced path.
struct ReferenceCheck<'a> {
    root: &'a SourceRoot,
    max_file_size: u64,
    visited: HashSet<PathBuf>,
}

impl ReferenceCheck<'_> {
    fn check_dir(&mut self, dir: &Path) -> Result<(), KustomizeError> {
        if !self.visited.insert(dir.to_owned()) {
            return Ok(());
        }
        let Some(file) = kustomization_file(dir) else {
            return Err(KustomizeError::NotAKustomization {
                dir: self.root.relative(dir).to_owned(),
            });
        };
        let shown = self.root.relative(&file).to_owned();
        let text = self
            .root
            .read_to_string(&file, self.max_file_size)
            .map_err(|source| KustomizeError::Reference {
                file: shown.clone(),
                field: "kustomization".into(),
                source,
            })?;
        let documents = gitops_core::parse_yaml_documents(&text, shown.clone())
            .map_err(KustomizeError::Kustomization)?;
        let Some(document) = documents.into_iter().next() else {
            return Ok(());
        };
        let Value::Object(kustomization) = document.value else {
            return Err(KustomizeError::NotAMapping { file: shown });
        };
        if kustomization.contains_key("helmCharts")
            || kustomization.contains_key("helmChartInflationGenerator")
        {
            return Err(KustomizeError::HelmCharts { file: shown });
        }
        let strings = |field: &str| -> Vec<String> {
            match kustomization.get(field) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        let objects = |field: &str| -> Vec<serde_json::Map<String, Value>> {
            match kustomization.get(field) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_object().cloned())
                    .collect(),
                Some(Value::Object(map)) => vec![map.clone()],
                _ => Vec::new(),
            }
        };
        let mut references: Vec<(String, String, bool)> = Vec::new();
        for field in ["resources", "bases", "components"] {
            for reference in strings(field) {
                references.push((field.to_owned(), reference, true));
            }
        }
        for field in [
            "crds",
            "configurations",
            "generators",
            "transformers",
            "validators",
            "patchesStrategicMerge",
        ] {
            for reference in strings(field) {
                // Inline configurations and patches are YAML text, not paths.
                if !reference.contains('\n') {
                    references.push((field.to_owned(), reference, false));
                }
            }
        }
        for field in ["patches", "patchesJson6902", "replacements", "openapi"] {
            for item in objects(field) {
                if let Some(Value::String(path)) = item.get("path") {
                    references.push((format!("{field}.path"), path.clone(), false));
                }
            }
        }
        for field in ["configMapGenerator", "secretGenerator"] {
            for item in objects(field) {
                for (key, list) in [("files", true), ("envs", true), ("env", false)] {
                    let values: Vec<&str> = match item.get(key) {
                        Some(Value::Array(items)) if list => {
                            items.iter().filter_map(Value::as_str).collect()
                        }
                        Some(Value::String(s)) => vec![s.as_str()],
                        _ => Vec::new(),
                    };
                    for value in values {
                        // `files` entries may be `key=path`.
                        let path = if key == "files" {
                            value.split_once('=').map_or(value, |(_, p)| p)
                        } else {
                            value
                        };
                        references.push((format!("{field}.{key}"), path.to_owned(), false));
                    }
                }
            }
        }
        for (field, reference, may_be_kustomization) in references {
            if is_remote(&reference) {
                return Err(KustomizeError::Remote {
                    file: shown,
                    field,
                    reference,
                });
            }
            let resolved = self.root.resolve_from(dir, &reference).map_err(|source| {
                KustomizeError::Reference {
                    file: shown.clone(),
                    field: field.clone(),
                    source,
                }
            })?;
            if may_be_kustomization && resolved.is_dir() {
                self.check_dir(&resolved)?;
            }
        }
        Ok(())
    }
}

/// Whether a kustomization reference names something remote (a URL, a git address, a go-getter
/// style `host/org/repo//path?ref=`).
fn is_remote(reference: &str) -> bool {
    reference.contains("://")
        || reference.starts_with("git@")
        || reference.starts_with("git::")
        || reference.contains("?ref=")
        || reference.contains("?version=")
        || reference.contains("?timeout=")
        || reference.contains(".git//")
        || ["github.com/", "gitlab.com/", "bitbucket.org/"]
            .iter()
            .any(|host| reference.starts_with(host))
}

#[async_trait::async_trait]
impl Renderer for KustomizeRenderer {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let root = request.root();
        let dir = request.resolve_dir()?;
        let relative = root.relative(&dir).to_owned();
        let shown_dir = if relative.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            relative.clone()
        };
        {
            let root = root.clone();
            let dir = dir.clone();
            let max_file_size = self.max_file_size;
            tokio::task::spawn_blocking(move || -> Result<(), RenderError> {
                ReferenceCheck {
                    root: &root,
                    max_file_size,
                    visited: HashSet::new(),
                }
                .check_dir(&dir)?;
                root.check_tree(root.path(), max_file_size)?;
                Ok(())
            })
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?;
        }
        let output = ToolRun {
            program: &self.binary,
            args: vec![
                "build".into(),
                dir.clone().into_os_string(),
                "--load-restrictor".into(),
                "LoadRestrictionsRootOnly".into(),
            ],
            cwd: root.path(),
            timeout: self.timeout,
            max_output: self.max_output,
        }
        .run(request.cancellation())
        .await;
        let output = match output {
            Ok(output) => output,
            Err(ProcessError::Cancelled { .. }) => return Err(RenderError::Cancelled),
            Err(source) => {
                let message = match &source {
                    ProcessError::Failed { stderr, .. } => clean_message(root, stderr),
                    other => other.to_string(),
                };
                return Err(KustomizeError::Build {
                    dir: shown_dir,
                    message,
                    source,
                }
                .into());
            }
        };
        let origin = PathBuf::from(format!("kustomize build {}", shown_dir.display()));
        let manifests = gitops_core::parse_yaml_documents(&output, origin)
            .and_then(gitops_core::documents_to_manifests)
            .map_err(KustomizeError::Output)?;
        check_unique(&manifests)?;
        Ok(manifests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_remote_references() {
        for remote in [
            "https://github.com/org/repo//base?ref=v1",
            "github.com/org/repo/base?ref=main",
            "git@github.com:org/repo.git",
            "ssh://git@host/repo.git",
            "example.com/org/repo.git//base",
        ] {
            assert!(is_remote(remote), "{remote}");
        }
        for local in ["../base", "deployment.yaml", "components/ha", "a.git.yaml"] {
            assert!(!is_remote(local), "{local}");
        }
    }

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn check(dir: &Path, start: &str) -> Result<(), KustomizeError> {
        let root = SourceRoot::new(dir).unwrap();
        let start = root.resolve_dir(start).unwrap();
        ReferenceCheck {
            root: &root,
            max_file_size: 1 << 20,
            visited: HashSet::new(),
        }
        .check_dir(&start)
    }

    #[test]
    fn walks_the_kustomization_graph() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "base/kustomization.yaml", "resources:\n- cm.yaml\n");
        write(d, "base/cm.yaml", "");
        write(
            d,
            "prod/kustomization.yaml",
            "resources:\n- ../base\npatches:\n- path: p.yaml\nconfigMapGenerator:\n- name: g\n  files:\n  - key=data.txt\n",
        );
        write(d, "prod/p.yaml", "");
        write(d, "prod/data.txt", "");
        check(d, "prod").unwrap();

        write(d, "bad/kustomization.yaml", "resources:\n- ../../outside\n");
        let err = check(d, "bad").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad/kustomization.yaml: resources: bad/../../outside: the path leaves the source root"
        );
        write(d, "abs/kustomization.yaml", "resources:\n- /etc/passwd\n");
        let err = check(d, "abs").unwrap_err();
        assert!(
            err.to_string().contains("absolute paths are refused"),
            "{err}"
        );
        write(
            d,
            "remote/kustomization.yaml",
            "resources:\n- https://example.com/x.yaml\n",
        );
        let err = check(d, "remote").unwrap_err();
        assert!(matches!(err, KustomizeError::Remote { .. }), "{err}");
        write(d, "deep/kustomization.yaml", "resources:\n- ../bad\n");
        let err = check(d, "deep").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad/kustomization.yaml: resources:"),
            "{err}"
        );
        write(
            d,
            "gen/kustomization.yaml",
            "secretGenerator:\n- name: s\n  envs:\n  - ../../../etc/env\n",
        );
        let err = check(d, "gen").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("gen/kustomization.yaml: secretGenerator.envs: "),
            "{err}"
        );
        write(d, "missing/kustomization.yaml", "resources:\n- nope.yaml\n");
        let err = check(d, "missing").unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing/kustomization.yaml: resources: missing/nope.yaml: not found in the source root"
        );
        write(d, "helm/kustomization.yaml", "helmCharts:\n- name: x\n");
        assert!(matches!(
            check(d, "helm"),
            Err(KustomizeError::HelmCharts { .. })
        ));
    }
}
