//! [`PlainRenderer`]: a directory of YAML and JSON manifests, read in parallel.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use gitops_core::{Manifest, ParseError};

use crate::ProgressScope;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;

use crate::KustomizeRenderer;
use crate::kustomize::{KUSTOMIZATION_FILES, kustomization_file};
use crate::root::{EntryKind, SourceRoot};
use crate::{RenderError, RenderRequest, Renderer, check_unique};

/// The errors of the plain renderer.
#[derive(Debug, thiserror::Error)]
pub enum PlainError {
    /// An include or exclude pattern is not a valid glob.
    #[error("invalid glob pattern {pattern:?}: {source}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// The glob parser's error.
        #[source]
        source: globset::Error,
    },
    /// A file is not valid YAML or JSON, or holds something that is not a Kubernetes object.
    /// The message starts with the file and line.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A subdirectory holds a kustomization, and no kustomize renderer was given to build it.
    #[error("{dir}: holds a kustomization, which the plain renderer builds with kustomize; no kustomize renderer is configured (PlainRenderer::with_kustomize)", dir = gitops_core::escape::EscapedPath(dir))]
    KustomizationWithoutKustomize {
        /// The subdirectory, relative to the root.
        dir: PathBuf,
    },
    /// A subdirectory holds a kustomization, which [`PlainRenderer::render_blocking`] cannot
    /// build (kustomize runs on the async runtime).
    #[error("{dir}: holds a kustomization, which only the async render builds (Renderer::render)", dir = gitops_core::escape::EscapedPath(dir))]
    KustomizationInBlockingRender {
        /// The subdirectory, relative to the root.
        dir: PathBuf,
    },
    /// The directory is a Helm chart: its templates are not manifests.
    #[error("{dir}: is a Helm chart (it has Chart.yaml); render it with the Helm renderer", dir = gitops_core::escape::EscapedPath(dir))]
    HelmChart {
        /// The directory, relative to the root.
        dir: PathBuf,
    },
}

/// Default limit on one file: 8 MiB.
const DEFAULT_MAX_FILE_SIZE: u64 = 8 << 20;
/// Default limit on all files of one render: 256 MiB.
const DEFAULT_MAX_TOTAL_SIZE: u64 = 256 << 20;

/// Renders a directory of plain manifests: `*.yaml`, `*.yml` and `*.json` files, recursively by
/// default, multi-document YAML, `kind: List` expanded; every object validated; two objects with
/// the same identity are an error naming both places.
///
/// What a user expects of a directory that also holds other things:
/// - hidden files and directories (`.git`, `.github`, ...) are not read;
/// - `kustomization.yaml` (`.yml`, `Kustomization`), `Chart.yaml`, `Chart.lock` and Helm values
///   files (`values.yaml`, `values-*.yaml`, `values.*.yaml`, `values_*.yaml`, and `.yml`/`.json`)
///   are not manifests and are skipped;
/// - a subdirectory holding a kustomization is built with kustomize, as Flux builds it as part of
///   the tree: with the renderer given by [`PlainRenderer::with_kustomize`] (jailed to the same
///   root like any kustomize build; without one it is an error), its objects merged in with their
///   origins, at the subdirectory's place in the order (include patterns do not apply to it,
///   exclude patterns do); an identity defined twice across the tree is still an error;
/// - a subdirectory holding a `Chart.yaml` belongs to the Helm renderer and is not descended into
///   (logged at `warn`); rendering a chart directory itself is an error;
/// - empty documents and comment-only files are skipped.
///
/// Include and exclude patterns are globs: a pattern without `/` matches a file or directory name
/// at any depth (`*.test.yaml`), one with `/` matches the path relative to the rendered directory
/// (`prod/**/*.yaml`). Excludes also prune directories. With includes, only matching files are
/// read.
///
/// Objects come out in a deterministic order: files sorted by name, depth first, and documents in
/// file order. Files are read and parsed in parallel.
///
/// ```
/// use gitops_render::{PlainRenderer, RenderRequest, SourceRoot};
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir(dir.path().join("tests"))?;
/// std::fs::write(dir.path().join("a.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n")?;
/// std::fs::write(dir.path().join("tests/t.yaml"), "not: an object\n")?;
/// let renderer = PlainRenderer::new().exclude("tests");
/// let objects = renderer.render_blocking(&RenderRequest::new(SourceRoot::new(dir.path())?, "."))?;
/// assert_eq!(objects.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PlainRenderer {
    kustomize: Option<KustomizeRenderer>,
    include: Vec<String>,
    exclude: Vec<String>,
    recursive: bool,
    max_file_size: u64,
    max_total_size: u64,
}

impl Default for PlainRenderer {
    fn default() -> Self {
        Self::new()
    }
}

/// Compiled include or exclude patterns.
struct Patterns {
    by_name: GlobSet,
    by_path: GlobSet,
    empty: bool,
}

impl Patterns {
    fn new(patterns: &[String]) -> Result<Self, PlainError> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = compile(pattern)?;
            if pattern.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        let build = |builder: GlobSetBuilder| {
            builder.build().map_err(|source| PlainError::Glob {
                pattern: patterns.join(", "),
                source,
            })
        };
        Ok(Self {
            by_name: build(by_name)?,
            by_path: build(by_path)?,
            empty: patterns.is_empty(),
        })
    }

    fn matches(&self, relative: &Path, name: &str) -> bool {
        self.by_name.is_match(name) || self.by_path.is_match(relative)
    }
}

fn compile(pattern: &str) -> Result<Glob, PlainError> {
    let trimmed = pattern.strip_prefix("./").unwrap_or(pattern);
    GlobBuilder::new(trimmed.trim_end_matches('/'))
        .literal_separator(true)
        .build()
        .map_err(|source| PlainError::Glob {
            pattern: pattern.to_owned(),
            source,
        })
}

/// A file chosen for reading.
struct FileToRead {
    absolute: PathBuf,
    relative_to_root: PathBuf,
}

/// What the walk found, in order.
enum Unit {
    /// A manifest file.
    File(FileToRead),
    /// A subdirectory holding a kustomization, relative to the root.
    Kustomization(PathBuf),
}

/// A unit, read.
enum Part {
    /// The objects of a file.
    Objects(Vec<Manifest>),
    /// A kustomization still to build, relative to the root.
    Kustomization(PathBuf),
}

impl PlainRenderer {
    /// A renderer with the defaults: recursive, no include or exclude patterns, no kustomize
    /// renderer for kustomization subdirectories, files up to 8 MiB, 256 MiB in all.
    #[must_use]
    pub fn new() -> Self {
        Self {
            kustomize: None,
            include: Vec::new(),
            exclude: Vec::new(),
            recursive: true,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_total_size: DEFAULT_MAX_TOTAL_SIZE,
        }
    }

    /// Builds subdirectories that hold a kustomization with `kustomize` (see the type's
    /// documentation).
    ///
    /// ```
    /// use gitops_render::{KustomizeRenderer, PlainRenderer};
    /// let renderer = PlainRenderer::new().with_kustomize(KustomizeRenderer::new("kustomize"));
    /// assert!(renderer.has_kustomize());
    /// ```
    #[must_use]
    pub fn with_kustomize(mut self, kustomize: KustomizeRenderer) -> Self {
        self.kustomize = Some(kustomize);
        self
    }

    /// Whether a kustomize renderer was given.
    #[must_use]
    pub fn has_kustomize(&self) -> bool {
        self.kustomize.is_some()
    }

    /// Reads only files that match `pattern` (may be given several times).
    #[must_use]
    pub fn include(mut self, pattern: impl Into<String>) -> Self {
        self.include.push(pattern.into());
        self
    }

    /// Skips files and directories that match `pattern` (may be given several times).
    #[must_use]
    pub fn exclude(mut self, pattern: impl Into<String>) -> Self {
        self.exclude.push(pattern.into());
        self
    }

    /// Whether to descend into subdirectories (default true).
    #[must_use]
    pub fn recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// The largest file read, in bytes (default 8 MiB).
    #[must_use]
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// The most bytes read in one render, all files together (default 256 MiB).
    #[must_use]
    pub fn max_total_size(mut self, bytes: u64) -> Self {
        self.max_total_size = bytes;
        self
    }

    /// Renders without an async runtime, on the calling thread and rayon's pool. The request's
    /// cancellation token is checked before each file. A subdirectory holding a kustomization is
    /// an error here ([`PlainError::KustomizationInBlockingRender`]): kustomize runs on the
    /// async runtime ([`Renderer::render`]).
    pub fn render_blocking(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let progress = ProgressScope::start(request, "plain");
        let mut manifests = Vec::new();
        for part in self.render_files(request)? {
            match part {
                Part::Objects(objects) => manifests.extend(objects),
                Part::Kustomization(dir) => return Err(self.no_kustomize(dir, true).into()),
            }
        }
        check_unique(&manifests)?;
        progress.finish(&manifests);
        Ok(manifests)
    }

    fn no_kustomize(&self, dir: PathBuf, blocking: bool) -> PlainError {
        if blocking && self.kustomize.is_some() {
            PlainError::KustomizationInBlockingRender { dir }
        } else {
            PlainError::KustomizationWithoutKustomize { dir }
        }
    }

    /// Renders on the async runtime: files on the blocking pool, kustomizations with kustomize.
    async fn render_async(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let progress = ProgressScope::start(request, "plain");
        let parts = {
            let renderer = self.clone();
            let request = request.clone();
            tokio::task::spawn_blocking(move || renderer.render_files(&request))
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?
        };
        let mut manifests = Vec::new();
        for part in parts {
            match part {
                Part::Objects(objects) => manifests.extend(objects),
                Part::Kustomization(dir) => {
                    let Some(kustomize) = &self.kustomize else {
                        return Err(self.no_kustomize(dir, false).into());
                    };
                    let sub = RenderRequest {
                        path: dir,
                        ..request.clone()
                    };
                    manifests.extend(kustomize.render(&sub).await?);
                }
            }
        }
        check_unique(&manifests)?;
        progress.finish(&manifests);
        Ok(manifests)
    }

    fn render_files(&self, request: &RenderRequest) -> Result<Vec<Part>, RenderError> {
        let root = request.root();
        let dir = request.resolve_dir()?;
        if dir.join("Chart.yaml").is_file() {
            return Err(PlainError::HelmChart {
                dir: root.relative(&dir).to_owned(),
            }
            .into());
        }
        let include = Patterns::new(&self.include)?;
        let exclude = Patterns::new(&self.exclude)?;
        let mut units = Vec::new();
        let mut visited = HashSet::new();
        let mut total = 0u64;
        self.collect(
            root,
            &dir,
            Path::new(""),
            (&include, &exclude),
            &mut visited,
            &mut units,
            &mut total,
        )?;
        if total > self.max_total_size {
            return Err(crate::RootError::TotalTooLarge {
                dir: request.path().to_owned(),
                limit: self.max_total_size,
            }
            .into());
        }
        let cancel = request.cancellation();
        units
            .into_par_iter()
            .map(|unit| match unit {
                Unit::Kustomization(dir) => Ok(Part::Kustomization(dir)),
                Unit::File(file) => {
                    if cancel.is_cancelled() {
                        return Err(RenderError::Cancelled);
                    }
                    let text = root.read_to_string(&file.absolute, self.max_file_size)?;
                    parse_file(request, &text, &file.relative_to_root).map(Part::Objects)
                }
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn collect(
        &self,
        root: &SourceRoot,
        dir: &Path,
        relative_dir: &Path,
        (include, exclude): (&Patterns, &Patterns),
        visited: &mut HashSet<PathBuf>,
        files: &mut Vec<Unit>,
        total: &mut u64,
    ) -> Result<(), RenderError> {
        if !visited.insert(dir.to_owned()) {
            return Ok(());
        }
        for entry in root.sorted_entries(dir)? {
            if entry.name.starts_with('.') {
                continue;
            }
            let relative = relative_dir.join(&entry.name);
            match entry.kind {
                EntryKind::Dir => {
                    if !self.recursive || exclude.matches(&relative, &entry.name) {
                        continue;
                    }
                    if kustomization_file(&entry.resolved).is_some() {
                        files.push(Unit::Kustomization(entry.relative));
                        continue;
                    }
                    if let Some(marker) = other_renderer_marker(&entry.resolved) {
                        tracing::warn!(
                            dir = %gitops_core::escape::EscapedPath(&entry.relative),
                            marker,
                            "skipping a directory that belongs to another renderer"
                        );
                        continue;
                    }
                    self.collect(
                        root,
                        &entry.resolved,
                        &relative,
                        (include, exclude),
                        visited,
                        files,
                        total,
                    )?;
                }
                EntryKind::File { size } => {
                    if !has_manifest_extension(&entry.name)
                        || is_not_a_manifest(&entry.name)
                        || exclude.matches(&relative, &entry.name)
                        || (!include.empty && !include.matches(&relative, &entry.name))
                    {
                        continue;
                    }
                    if size > self.max_file_size {
                        return Err(crate::RootError::FileTooLarge {
                            file: entry.relative,
                            size,
                            limit: self.max_file_size,
                        }
                        .into());
                    }
                    *total = total.saturating_add(size);
                    files.push(Unit::File(FileToRead {
                        absolute: entry.path,
                        relative_to_root: entry.relative,
                    }));
                }
                EntryKind::Other => {}
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Renderer for PlainRenderer {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        self.render_async(request).await
    }
}

/// Parses one file, substituting before validation when the request asks for it.
fn parse_file(
    request: &RenderRequest,
    text: &str,
    file: &Path,
) -> Result<Vec<Manifest>, RenderError> {
    let Some(substitution) = request.substitution() else {
        return gitops_core::parse_manifests_with(text, file, request.parse_limits())
            .map_err(|e| PlainError::Parse(e).into());
    };
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let mut documents = if is_json {
        gitops_core::parse_json_documents(text, file)
    } else {
        gitops_core::parse_yaml_documents_with(text, file, request.parse_limits())
    }
    .map_err(PlainError::Parse)?;
    if is_json {
        substitution.substitute_json(&mut documents)?;
    } else {
        substitution.substitute_yaml(text, &mut documents)?;
    }
    Ok(gitops_core::documents_to_manifests(documents).map_err(PlainError::Parse)?)
}

fn has_manifest_extension(name: &str) -> bool {
    let Some((_, extension)) = name.rsplit_once('.') else {
        return false;
    };
    ["yaml", "yml", "json"]
        .iter()
        .any(|e| extension.eq_ignore_ascii_case(e))
}

/// Files with a manifest extension that are not manifests.
fn is_not_a_manifest(name: &str) -> bool {
    if KUSTOMIZATION_FILES.contains(&name) || name == "Chart.yaml" || name == "Chart.lock" {
        return true;
    }
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    stem == "values"
        || ["values-", "values.", "values_"]
            .iter()
            .any(|prefix| stem.starts_with(prefix))
}

/// The marker file that makes `dir` a unit for Kustomize or Helm, if any.
fn other_renderer_marker(dir: &Path) -> Option<&'static str> {
    KUSTOMIZATION_FILES
        .into_iter()
        .chain(["Chart.yaml"])
        .find(|marker| dir.join(marker).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ";

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn render(renderer: &PlainRenderer, dir: &Path) -> Result<Vec<Manifest>, RenderError> {
        renderer.render_blocking(&RenderRequest::new(SourceRoot::new(dir).unwrap(), "."))
    }

    fn names(manifests: &[Manifest]) -> Vec<String> {
        manifests
            .iter()
            .map(|m| format!("{}@{}", m.name(), m.origin()))
            .collect()
    }

    #[test]
    fn reads_recursively_in_a_deterministic_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "b.yaml", &format!("{CM}b\n---\n{CM}b2\n"));
        write(d, "a/z.yml", &format!("{CM}z\n"));
        write(
            d,
            "a.json",
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}"#,
        );
        write(
            d,
            "c.yaml",
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: s\n",
        );
        write(d, "README.md", "# not read\n");
        write(d, ".github/workflows/ci.yaml", "on: push\n");
        write(d, "values-prod.yaml", "replicas: 3\n");
        write(d, "empty.yaml", "# nothing here\n---\n");
        let all = render(&PlainRenderer::new(), d).unwrap();
        assert_eq!(
            names(&all),
            [
                "z@a/z.yml:1",
                "j@a.json:1",
                "b@b.yaml:1",
                "b2@b.yaml:6 (document 2)",
                "s@c.yaml:1"
            ]
        );
        let top = render(&PlainRenderer::new().recursive(false), d).unwrap();
        assert_eq!(top.len(), 4);
    }

    #[test]
    fn include_and_exclude_globs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "app/deploy.yaml", &format!("{CM}deploy\n"));
        write(d, "app/deploy.test.yaml", &format!("{CM}test\n"));
        write(d, "prod/x.yaml", &format!("{CM}prod\n"));
        write(d, "dev/x.yaml", &format!("{CM}dev\n"));
        let r = render(
            &PlainRenderer::new().exclude("*.test.yaml").exclude("dev"),
            d,
        )
        .unwrap();
        assert_eq!(
            names(&r),
            ["deploy@app/deploy.yaml:1", "prod@prod/x.yaml:1"]
        );
        let r = render(&PlainRenderer::new().include("prod/**/*.yaml"), d).unwrap();
        assert_eq!(names(&r), ["prod@prod/x.yaml:1"]);
        let r = render(
            &PlainRenderer::new()
                .include("prod/*.yaml")
                .include("deploy.yaml"),
            d,
        )
        .unwrap();
        assert_eq!(
            names(&r),
            ["deploy@app/deploy.yaml:1", "prod@prod/x.yaml:1"]
        );
        let err = render(&PlainRenderer::new().include("a[b"), d).unwrap_err();
        assert!(
            err.to_string().contains("invalid glob pattern \"a[b\""),
            "{err}"
        );
    }

    #[test]
    fn skips_units_of_other_renderers() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "kustomization.yaml", "resources: [a.yaml]\n");
        write(d, "a.yaml", &format!("{CM}a\n"));
        write(d, "overlay/kustomization.yaml", "resources: [../a.yaml]\n");
        write(d, "overlay/patch.yaml", "metadata:\n  name: a\n");
        write(
            d,
            "chart/Chart.yaml",
            "apiVersion: v2\nname: c\nversion: 1.0.0\n",
        );
        write(d, "chart/templates/x.yaml", "{{ .Values.x }}\n");
        // A kustomization below is built with kustomize (the integration tests do): without
        // one, or without a runtime, it is an error naming it, never skipped.
        let err = render(&PlainRenderer::new(), d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "overlay: holds a kustomization, which the plain renderer builds with kustomize; no kustomize renderer is configured (PlainRenderer::with_kustomize)"
        );
        let with_kustomize =
            PlainRenderer::new().with_kustomize(crate::KustomizeRenderer::new("kustomize"));
        let err = render(&with_kustomize, d).unwrap_err();
        assert!(
            matches!(&err, RenderError::Plain(e) if matches!(**e, PlainError::KustomizationInBlockingRender { .. })),
            "{err}"
        );
        let r = render(&PlainRenderer::new().exclude("overlay"), d).unwrap();
        assert_eq!(names(&r), ["a@a.yaml:1"]);
        let err = PlainRenderer::new()
            .render_blocking(&RenderRequest::new(SourceRoot::new(d).unwrap(), "chart"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "chart: is a Helm chart (it has Chart.yaml); render it with the Helm renderer"
        );
    }

    #[test]
    fn duplicates_name_both_files_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.yaml", &format!("{CM}x\n  namespace: ns\n"));
        write(
            d,
            "b.yaml",
            &format!("# c\n{CM}other\n---\n{CM}x\n  namespace: ns\n"),
        );
        let err = render(&PlainRenderer::new(), d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap ns/x is defined twice: at a.yaml:1 and at b.yaml:7 (document 2)"
        );
    }

    #[test]
    fn refuses_oversized_files_and_totals() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.yaml", &format!("{CM}a\n"));
        write(d, "b.yaml", &format!("{CM}b\n"));
        let err = render(&PlainRenderer::new().max_file_size(10), d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.yaml: 51 bytes is more than the limit of 10 bytes"
        );
        let err = render(&PlainRenderer::new().max_total_size(60), d).unwrap_err();
        assert!(
            err.to_string()
                .contains("add up to more than the limit of 60"),
            "{err}"
        );
    }

    #[test]
    fn reports_progress() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "apps/a.yaml", &format!("{CM}a\n---\n{CM}b\n"));
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorder = events.clone();
        let request = RenderRequest::new(SourceRoot::new(dir.path()).unwrap(), "apps")
            .with_progress(move |event| recorder.lock().unwrap().push(event.clone()));
        PlainRenderer::new().render_blocking(&request).unwrap();
        let events = events.lock().unwrap();
        assert_eq!(events[0].to_string(), "rendering apps with plain");
        assert!(
            matches!(
                &events[1],
                crate::RenderProgress::Finished { objects: 2, renderer: "plain", path, .. }
                    if path == Path::new("apps")
            ),
            "{events:?}"
        );
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn cancellation_stops_the_render() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", &format!("{CM}a\n"));
        let cancel = tokio_util::sync::CancellationToken::new();
        cancel.cancel();
        let request =
            RenderRequest::new(SourceRoot::new(dir.path()).unwrap(), ".").with_cancellation(cancel);
        assert!(matches!(
            PlainRenderer::new().render_blocking(&request),
            Err(RenderError::Cancelled)
        ));
    }
}
