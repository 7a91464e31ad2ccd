//! [`HelmRenderer`]: `helm template` of a chart directory inside the source root, offline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gitops_core::{Document, Manifest, Origin, ParseError};
use serde_json::Value;

use crate::process::{ProcessError, ToolLimits, ToolRun, clean_message};
use crate::root::{RootError, SourceRoot};
use crate::substitute::plain_scalars;
use crate::{ProgressScope, RenderError, RenderRequest, Renderer};

/// The errors of the Helm renderer.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// The directory has no `Chart.yaml`.
    #[error("{dir}: not a Helm chart (no Chart.yaml)", dir = dir.display())]
    NotAChart {
        /// The directory, relative to the root.
        dir: PathBuf,
    },
    /// `Chart.yaml` is not valid YAML.
    #[error("{0}")]
    ChartYaml(#[source] ParseError),
    /// A dependency listed in `Chart.yaml` is not vendored under `charts/`; rendering never
    /// downloads.
    #[error("{chart_yaml}: dependency {name:?} (from {repository:?}) is not vendored in charts/; run `helm dependency build` and commit charts/, rendering never downloads", chart_yaml = chart_yaml.display())]
    DependencyNotVendored {
        /// The `Chart.yaml`, relative to the root.
        chart_yaml: PathBuf,
        /// The dependency's name.
        name: String,
        /// Its repository, as written.
        repository: String,
    },
    /// A values file is outside the root, missing, or too large.
    #[error("values file {path}: {source}", path = path.display())]
    ValuesFile {
        /// The path as given.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: RootError,
    },
    /// The inline values could not be written for helm.
    #[error("cannot write inline values: {0}")]
    InlineValues(#[source] std::io::Error),
    /// `helm template` failed; the message is helm's own, with root paths made relative.
    #[error("helm template {release} {chart}: {message}", chart = chart.display())]
    Template {
        /// The release name.
        release: String,
        /// The chart directory, relative to the root.
        chart: PathBuf,
        /// helm's error output.
        message: String,
        /// The process error.
        #[source]
        source: ProcessError,
    },
    /// helm's output is not a valid set of objects.
    #[error(transparent)]
    Output(ParseError),
}

/// Runs the real `helm template` on a chart directory of the source root.
///
/// - Release name and namespace, values files (paths relative to the source root, checked to
///   stay inside it) and inline values (applied after the files, in order), CRDs included by
///   default (`--include-crds`), `--kube-version` and `--api-versions` for `Capabilities`.
/// - No network: dependencies must be vendored under `charts/` (checked first, with a clear
///   error), nothing is downloaded, no plugins, no cluster contact; a clean environment with a
///   private `HELM_*_HOME`, a timeout and cancellation.
/// - The chart directory is checked for symbolic links that leave the root and oversized files.
///
/// Each object's origin is the template that produced it (from helm's `# Source:` comments),
/// relative to the source root, such as `charts/web/templates/deployment.yaml (document 2)`.
///
/// ```no_run
/// use gitops_render::{HelmRenderer, RenderRequest, Renderer, SourceRoot};
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let renderer = HelmRenderer::new("/usr/local/bin/helm", "web")
///     .namespace("shop")
///     .values_file("env/prod/values.yaml")
///     .values(serde_json::json!({"replicaCount": 3}))
///     .kube_version("1.37.2");
/// let root = SourceRoot::new("/srv/checkout")?;
/// let objects = renderer.render(&RenderRequest::new(root, "charts/web")).await?;
/// # let _ = objects;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HelmRenderer {
    binary: PathBuf,
    release: String,
    namespace: Option<String>,
    values_files: Vec<PathBuf>,
    values: Vec<Value>,
    include_crds: bool,
    skip_tests: bool,
    kube_version: Option<String>,
    api_versions: Vec<String>,
    limits: ToolLimits,
}

impl HelmRenderer {
    /// Uses the helm binary at `binary` to render release `release`. Defaults: CRDs included,
    /// tests included, the default [`ToolLimits`].
    #[must_use]
    pub fn new(binary: impl Into<PathBuf>, release: impl Into<String>) -> Self {
        Self {
            binary: binary.into(),
            release: release.into(),
            namespace: None,
            values_files: Vec::new(),
            values: Vec::new(),
            include_crds: true,
            skip_tests: false,
            kube_version: None,
            api_versions: Vec::new(),
            limits: ToolLimits::new(),
        }
    }

    /// The release namespace (`.Release.Namespace`).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Adds a values file, relative to the source root.
    #[must_use]
    pub fn values_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.values_files.push(path.into());
        self
    }

    /// Adds inline values (a mapping), applied after the values files.
    #[must_use]
    pub fn values(mut self, values: Value) -> Self {
        self.values.push(values);
        self
    }

    /// Whether to render the chart's `crds/` directory (default true).
    #[must_use]
    pub fn include_crds(mut self, include: bool) -> Self {
        self.include_crds = include;
        self
    }

    /// Whether to leave out the chart's test hooks (default false).
    #[must_use]
    pub fn skip_tests(mut self, skip: bool) -> Self {
        self.skip_tests = skip;
        self
    }

    /// The Kubernetes version templates see as `.Capabilities.KubeVersion`.
    #[must_use]
    pub fn kube_version(mut self, version: impl Into<String>) -> Self {
        self.kube_version = Some(version.into());
        self
    }

    /// Adds an API version (`group/version` or `group/version/Kind`) to
    /// `.Capabilities.APIVersions`.
    #[must_use]
    pub fn api_version(mut self, api_version: impl Into<String>) -> Self {
        self.api_versions.push(api_version.into());
        self
    }

    /// The timeout of one `helm template`, its output limit, and the largest file allowed in
    /// the chart or as a values file.
    #[must_use]
    pub fn limits(mut self, limits: ToolLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks the chart before helm sees it; returns the chart's name.
    fn check_chart(&self, root: &SourceRoot, chart: &Path) -> Result<String, RenderError> {
        let chart_yaml = chart.join("Chart.yaml");
        let shown = root.relative(&chart_yaml).to_owned();
        if !chart_yaml.is_file() {
            return Err(HelmError::NotAChart {
                dir: root.relative(chart).to_owned(),
            }
            .into());
        }
        root.check_tree(chart, self.limits.max_file_size())?;
        let text = root.read_to_string(&chart_yaml, self.limits.max_file_size())?;
        let documents = gitops_core::parse_yaml_documents(&text, shown.clone())
            .map_err(HelmError::ChartYaml)?;
        let metadata = documents
            .into_iter()
            .next()
            .map(|d| d.value)
            .unwrap_or_default();
        let name = metadata
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let vendored = vendored_charts(&chart.join("charts"));
        for dependency in metadata
            .get("dependencies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(dep_name) = dependency.get("name").and_then(Value::as_str) else {
                continue;
            };
            if !vendored.iter().any(|v| v == dep_name) {
                return Err(HelmError::DependencyNotVendored {
                    chart_yaml: shown,
                    name: dep_name.to_owned(),
                    repository: dependency
                        .get("repository")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                }
                .into());
            }
        }
        Ok(name)
    }
}

/// The names of the charts vendored in a `charts/` directory: unpacked directories (by their
/// `Chart.yaml` name, or directory name) and archives `<name>-<version>.tgz`.
fn vendored_charts(charts: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(charts) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if path.join("Chart.yaml").is_file() {
            let declared = std::fs::read_to_string(path.join("Chart.yaml"))
                .ok()
                .and_then(|text| gitops_core::parse_yaml_documents(&text, "Chart.yaml").ok())
                .and_then(|docs| docs.into_iter().next())
                .and_then(|doc| {
                    doc.value
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
            names.extend(declared);
            names.push(file_name);
        } else if let Some(stem) = file_name.strip_suffix(".tgz") {
            // `<name>-<version>`: the version starts after the last '-' followed by a digit.
            let cut = stem
                .match_indices('-')
                .filter(|(i, _)| stem[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
                .map(|(i, _)| i)
                .next_back();
            names.push(cut.map_or(stem, |i| &stem[..i]).to_owned());
        }
    }
    names
}

/// Gives each document of helm's output the template it came from, from the `# Source:` comment
/// before it: `<chart name>/<path>` becomes `<chart dir>/<path>` relative to the root.
fn assign_sources(output: &str, documents: &mut [Document], chart_name: &str, chart_dir: &Path) {
    let sources: Vec<(u64, &str)> = output
        .lines()
        .enumerate()
        .filter_map(|(i, line)| Some((i as u64 + 1, line.strip_prefix("# Source: ")?.trim())))
        .collect();
    let mut per_file: HashMap<PathBuf, usize> = HashMap::new();
    for document in documents {
        let Some((_, source)) = sources
            .iter()
            .take_while(|(line, _)| *line < document.origin.line)
            .last()
        else {
            continue;
        };
        let inside_chart = source
            .strip_prefix(chart_name)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(source);
        let file = chart_dir.join(inside_chart);
        let index = per_file.entry(file.clone()).or_default();
        // The line inside the template is unknown: helm's output lines are not template lines.
        document.origin = Origin::new(file).with_document(*index);
        *index += 1;
    }
}

#[async_trait::async_trait]
impl Renderer for HelmRenderer {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let progress = ProgressScope::start(request, "helm");
        let root = request.root();
        let chart = request.resolve_dir()?;
        let chart_relative = root.relative(&chart).to_owned();
        let chart_name = {
            let this = self.clone();
            let root = root.clone();
            let chart = chart.clone();
            tokio::task::spawn_blocking(move || this.check_chart(&root, &chart))
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?
        };
        let mut args: Vec<std::ffi::OsString> = vec![
            "template".into(),
            self.release.clone().into(),
            chart.clone().into_os_string(),
        ];
        if let Some(namespace) = &self.namespace {
            args.extend(["--namespace".into(), namespace.into()]);
        }
        if self.include_crds {
            args.push("--include-crds".into());
        }
        if self.skip_tests {
            args.push("--skip-tests".into());
        }
        if let Some(version) = &self.kube_version {
            args.extend(["--kube-version".into(), version.into()]);
        }
        for api_version in &self.api_versions {
            args.extend(["--api-versions".into(), api_version.into()]);
        }
        for file in &self.values_files {
            let resolved = root
                .resolve(file)
                .and_then(|path| {
                    root.read_to_string(&path, self.limits.max_file_size())?;
                    Ok(path)
                })
                .map_err(|source| HelmError::ValuesFile {
                    path: file.clone(),
                    source,
                })?;
            args.extend(["--values".into(), resolved.into_os_string()]);
        }
        let inline_dir = tempfile::Builder::new()
            .prefix("gitops-render-values-")
            .tempdir()
            .map_err(HelmError::InlineValues)?;
        for (index, values) in self.values.iter().enumerate() {
            let path = inline_dir.path().join(format!("inline-{index}.json"));
            std::fs::write(&path, values.to_string()).map_err(HelmError::InlineValues)?;
            args.extend(["--values".into(), path.into_os_string()]);
        }
        let output = ToolRun {
            program: &self.binary,
            args,
            cwd: root.path(),
            timeout: self.limits.timeout(),
            max_output: self.limits.max_output(),
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
                return Err(HelmError::Template {
                    release: self.release.clone(),
                    chart: chart_relative,
                    message,
                    source,
                }
                .into());
            }
        };
        let mut documents =
            gitops_core::parse_yaml_documents(&output, format!("helm template {}", self.release))
                .map_err(HelmError::Output)?;
        // Scalar styles are found by the output's lines, before the origins become templates.
        let plain = request
            .substitution()
            .map(|_| plain_scalars(&output, &documents))
            .unwrap_or_default();
        assign_sources(&output, &mut documents, &chart_name, &chart_relative);
        progress.finish_documents(documents, &plain, HelmError::Output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_vendored_charts() {
        let dir = tempfile::tempdir().unwrap();
        let charts = dir.path().join("charts");
        std::fs::create_dir_all(charts.join("redis")).unwrap();
        std::fs::write(
            charts.join("redis/Chart.yaml"),
            "name: redis-ha\nversion: 1.0.0\n",
        )
        .unwrap();
        std::fs::write(charts.join("common-2.1.0.tgz"), "").unwrap();
        std::fs::write(charts.join("my-lib-0.1.0-rc.1.tgz"), "").unwrap();
        let mut names = vendored_charts(&charts);
        names.sort();
        assert_eq!(names, ["common", "my-lib", "redis", "redis-ha"]);
    }

    #[test]
    fn maps_source_comments_to_template_files() {
        let output = "---\n# Source: web/crds/crd.yaml\napiVersion: v1\nkind: A\nmetadata:\n  name: a\n---\n# Source: web/templates/all.yaml\napiVersion: v1\nkind: B\nmetadata:\n  name: b\n---\napiVersion: v1\nkind: C\nmetadata:\n  name: c\n";
        let mut docs = gitops_core::parse_yaml_documents(output, "helm template r").unwrap();
        assign_sources(output, &mut docs, "web", Path::new("charts/web"));
        let origins: Vec<String> = docs.iter().map(|d| d.origin.to_string()).collect();
        assert_eq!(
            origins,
            [
                "charts/web/crds/crd.yaml",
                "charts/web/templates/all.yaml",
                "charts/web/templates/all.yaml (document 2)"
            ]
        );
    }
}
