//! [`HelmRenderer`]: `helm template` of a chart directory inside the source root, offline.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use gitops_core::escape::{Escaped, EscapedPath};
use gitops_core::{Document, Manifest, Origin, ParseError};
use serde_json::Value;

use crate::process::{ProcessError, ToolLimits, ToolRun, failure_message};
use crate::root::{RootError, SourceRoot};
use crate::substitute::{PlainScalars, plain_scalars};
use crate::{ProgressScope, RenderError, RenderRequest, Renderer};

/// The errors of the Helm renderer.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// The directory has no `Chart.yaml`.
    #[error("{dir}: not a Helm chart (no Chart.yaml)", dir = EscapedPath(dir))]
    NotAChart {
        /// The directory, relative to the root.
        dir: PathBuf,
    },
    /// The directory is a chart, but no helm renderer was configured ([`crate::AutoRenderer`]).
    #[error("{dir}: is a Helm chart (it has Chart.yaml), but no helm binary is configured", dir = EscapedPath(dir))]
    NoBinary {
        /// The directory as requested.
        dir: PathBuf,
    },
    /// The directory is a chart, and helm was searched for
    /// ([`AutoRenderer::with_located_tools`](crate::AutoRenderer::with_located_tools)) but not
    /// found; the source says how to give it.
    #[error("{dir}: is a Helm chart (it has Chart.yaml), but helm was not found", dir = EscapedPath(dir))]
    NotFound {
        /// The directory as requested.
        dir: PathBuf,
        /// Where it was searched, and how to give it.
        #[source]
        source: crate::tool::LocateError,
    },
    /// `Chart.yaml` is not valid YAML.
    #[error("{0}")]
    ChartYaml(#[source] ParseError),
    /// A dependency listed in `Chart.yaml` is not vendored under `charts/`; rendering never
    /// downloads.
    #[error("{chart_yaml}: dependency {name:?} (from {repository:?}) is not vendored in charts/; run `helm dependency build` and commit charts/, rendering never downloads", chart_yaml = EscapedPath(chart_yaml))]
    DependencyNotVendored {
        /// The `Chart.yaml`, relative to the root.
        chart_yaml: PathBuf,
        /// The dependency's name.
        name: String,
        /// Its repository, as written.
        repository: String,
    },
    /// A values file is outside the root, missing, or too large.
    #[error("values file {path}: {source}", path = EscapedPath(path))]
    ValuesFile {
        /// The path as given.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: RootError,
    },
    /// The Kubernetes version given with [`HelmRenderer::with_kube_version`] is not a version
    /// such as `v1.37.2` or `1.37`.
    #[error("kube version \"{version}\" is not a Kubernetes version such as v1.37.2 or 1.37", version = Escaped(version))]
    InvalidKubeVersion {
        /// The version as given.
        version: String,
    },
    /// An API version given with [`HelmRenderer::with_api_versions`] is not `version`,
    /// `group/version` or `group/version/Kind`.
    #[error("API version \"{api_version}\" is not an API version such as apps/v1 or batch/v1/Job", api_version = Escaped(api_version))]
    InvalidApiVersion {
        /// The API version as given.
        api_version: String,
    },
    /// The inline values could not be written for helm.
    #[error("cannot write inline values: {0}")]
    InlineValues(#[source] std::io::Error),
    /// `helm template` failed; the message is helm's own, with root paths made relative.
    #[error("helm template {release} {chart}: {message}", release = Escaped(release), chart = EscapedPath(chart), message = Escaped(message))]
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
    /// A values schema of the chart or of a subchart refers outside itself: helm would load the
    /// reference over the network (`http://`, `https://`) or from the host (`file://`, and any
    /// relative reference, which helm resolves against `file:///`).
    #[error(
        "{file}: {keyword} {reference:?} refused: a values schema may only refer inside itself (\"#...\") and to the JSON Schema drafts helm embeds; rendering never reads the network or files outside the chart",
        file = EscapedPath(file)
    )]
    SchemaReference {
        /// The schema file, relative to the root (inside an archive: the archive's path, then
        /// the file's path inside it).
        file: PathBuf,
        /// `$ref`, `$dynamicRef`, `$recursiveRef` or `$schema`.
        keyword: String,
        /// The reference as written.
        reference: String,
    },
    /// A values schema is not JSON (helm would refuse it too).
    #[error("{file}: values schema is not valid JSON: {source}", file = EscapedPath(file))]
    Schema {
        /// The schema file, relative to the root.
        file: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A vendored chart archive in `charts/` cannot be read, or is larger than the limit.
    #[error("{file}: cannot read the chart archive: {source}", file = EscapedPath(file))]
    Archive {
        /// The archive, relative to the root.
        file: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// The JSON Schema drafts whose meta-schemas helm's schema library embeds; a `$schema` naming
/// another would be fetched. The library reads `http://` as `https://` and ignores a trailing
/// `#` or `#/`.
const EMBEDDED_DRAFTS: [&str; 5] = [
    "json-schema.org/draft-04/schema",
    "json-schema.org/draft-06/schema",
    "json-schema.org/draft-07/schema",
    "json-schema.org/draft/2019-09/schema",
    "json-schema.org/draft/2020-12/schema",
];

/// Whether `uri`, the value of `$schema`, names a draft helm embeds.
fn is_embedded_draft(uri: &str) -> bool {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"));
    let rest = rest.map(|r| {
        r.strip_suffix("#/")
            .or_else(|| r.strip_suffix('#'))
            .unwrap_or(r)
    });
    rest.is_some_and(|r| EMBEDDED_DRAFTS.contains(&r))
}

/// The keywords by which a JSON schema loads another document.
const REFERENCE_KEYWORDS: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];

/// Checks one values schema: every `$ref`, `$dynamicRef` and `$recursiveRef` must be a fragment
/// of the same document (`#...`) and every `$schema` an embedded draft. `file` names it in
/// errors.
///
/// ```
/// use std::path::Path;
/// use gitops_render::{HelmError, check_values_schema};
/// let file = Path::new("chart/values.schema.json");
/// check_values_schema(br##"{"properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {}}}"##, file)?;
/// let err = check_values_schema(br#"{"$ref": "https://example.com/s.json"}"#, file).unwrap_err();
/// assert!(matches!(err, HelmError::SchemaReference { .. }));
/// # Ok::<(), HelmError>(())
/// ```
// The same error type as the renderer's, for callers that match on it; it is not a hot path.
#[allow(clippy::result_large_err)]
pub fn check_values_schema(text: &[u8], file: &Path) -> Result<(), HelmError> {
    let schema: Value = serde_json::from_slice(text).map_err(|source| HelmError::Schema {
        file: file.to_owned(),
        source,
    })?;
    let refused = |keyword: &str, reference: &str| HelmError::SchemaReference {
        file: file.to_owned(),
        keyword: keyword.to_owned(),
        reference: reference.to_owned(),
    };
    // Iterative: a schema may nest deeper than the stack would like.
    let mut pending = vec![&schema];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    if let Value::String(reference) = item {
                        if REFERENCE_KEYWORDS.contains(&key.as_str()) && !reference.starts_with('#')
                        {
                            return Err(refused(key, reference));
                        }
                        if key == "$schema" && !is_embedded_draft(reference) {
                            return Err(refused(key, reference));
                        }
                    }
                    pending.push(item);
                }
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    Ok(())
}

/// The name of a chart's values schema.
const SCHEMA_FILE: &str = "values.schema.json";

/// Deepest archive nesting searched for schemas.
const MAX_CHART_DEPTH: usize = 32;

/// Most directories of one chart searched for schemas.
const MAX_CHART_DIRS: usize = 100_000;

/// Most bytes unpacked from one vendored archive (with the archives inside it).
const MAX_ARCHIVE_BYTES: u64 = 256 << 20;

/// Checks every values schema helm would load for the chart in `dir` (absolute, inside the
/// root): its own, and those of its subcharts in `charts/`, unpacked or `.tgz`, at any depth
/// (any file named `values.schema.json` under the chart counts).
fn check_chart_schemas(
    root: &SourceRoot,
    dir: &Path,
    max_file_size: u64,
    visited: &mut HashSet<PathBuf>,
) -> Result<(), RenderError> {
    // Each directory once: links may make cycles (the tree check keeps them inside the root).
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    if !visited.insert(canonical) || visited.len() > MAX_CHART_DIRS {
        return Ok(());
    }
    let shown = root.relative(dir).to_owned();
    let entries = std::fs::read_dir(dir).map_err(|source| RootError::Io {
        path: shown.clone(),
        source,
    })?;
    let in_charts = dir.file_name().is_some_and(|n| n == "charts");
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        // Symbolic links are followed: the tree check has kept them inside the root.
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            check_chart_schemas(root, &path, max_file_size, visited)?;
        } else if name == SCHEMA_FILE {
            let text = root.read_to_string(&path, max_file_size)?;
            check_values_schema(text.as_bytes(), root.relative(&path))?;
        } else if in_charts && name.to_string_lossy().ends_with(".tgz") {
            let shown = root.relative(&path).to_owned();
            let file = std::fs::File::open(&path).map_err(|source| HelmError::Archive {
                file: shown.clone(),
                source,
            })?;
            let mut budget = MAX_ARCHIVE_BYTES;
            check_archive_schemas(file, &shown, max_file_size, &mut budget, 0)?;
        }
    }
    Ok(())
}

/// Checks the values schemas inside a chart archive (gzip'd tar), and those of the archives
/// in its `charts/` directories, spending at most `budget` unpacked bytes.
#[allow(clippy::result_large_err)]
fn check_archive_schemas(
    archive: impl std::io::Read,
    shown: &Path,
    max_file_size: u64,
    budget: &mut u64,
    depth: usize,
) -> Result<(), HelmError> {
    use std::io::Read as _;
    let failed = |source| HelmError::Archive {
        file: shown.to_owned(),
        source,
    };
    if depth > MAX_CHART_DEPTH {
        return Ok(());
    }
    let start = *budget;
    let mut unpacked = flate2::read::GzDecoder::new(archive).take(start);
    let mut tar = tar::Archive::new(&mut unpacked);
    for entry in tar.entries().map_err(failed)? {
        let entry = entry.map_err(failed)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let inner = entry.path().map_err(failed)?.into_owned();
        let name = inner.file_name().unwrap_or_default().to_string_lossy();
        let in_charts = inner
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "charts");
        let is_schema = name == SCHEMA_FILE;
        let is_archive = in_charts && name.ends_with(".tgz");
        if !(is_schema || is_archive) {
            continue;
        }
        let size = entry.header().size().map_err(failed)?;
        let limit = if is_schema { max_file_size } else { *budget };
        if size > limit {
            return Err(failed(std::io::Error::other(format!(
                "{} is larger than {limit} bytes",
                EscapedPath(&inner)
            ))));
        }
        let mut bytes = Vec::new();
        entry.take(limit).read_to_end(&mut bytes).map_err(failed)?;
        let file = shown.join(&inner);
        if is_schema {
            check_values_schema(&bytes, &file)?;
        } else {
            check_archive_schemas(bytes.as_slice(), &file, max_file_size, budget, depth + 1)?;
        }
    }
    // Read to the end, so that an archive cut at the budget is an error, not a partial check.
    let mut rest = Vec::new();
    tar.into_inner().read_to_end(&mut rest).map_err(failed)?;
    let used = start - unpacked.limit();
    if unpacked.limit() == 0 {
        return Err(failed(std::io::Error::other(format!(
            "unpacks to more than {start} bytes"
        ))));
    }
    *budget = budget.saturating_sub(used);
    Ok(())
}

/// What [`HelmRenderer`] does with the chart's hooks: objects carrying the `helm.sh/hook`
/// annotation, which `helm install` runs around the release instead of keeping as release
/// objects.
///
/// Test hooks (`test`, `test-success`, `test-failure`) are never returned: they are run by
/// `helm test`, not installed, and often have random names. Other hooks (`pre-install`,
/// `post-upgrade`, ...) are left out by default and reported, never silently applied as
/// ordinary objects.
///
/// ```
/// use gitops_render::HookPolicy;
/// assert_eq!(HookPolicy::default(), HookPolicy::Skip);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HookPolicy {
    /// Leaves hooks out of the rendered set, each reported by a warning and a
    /// [`RenderProgress::HookSkipped`](crate::RenderProgress::HookSkipped) event.
    #[default]
    Skip,
    /// Keeps hooks other than tests as objects, their annotations intact, for a step that runs
    /// them in their phases: gitops-apply's sync runs `pre-install` and `pre-upgrade` hooks
    /// before the resources and `post-install` and `post-upgrade` hooks after them (as Argo CD
    /// maps them), never records them in its inventory, and never applies delete or rollback
    /// hooks. A hook may then use `metadata.generateName` instead of a name.
    Include,
}

/// The annotation that makes an object a Helm hook.
pub const HOOK_ANNOTATION: &str = "helm.sh/hook";

/// The hook kinds of `helm test`.
const TEST_HOOKS: [&str; 3] = ["test", "test-success", "test-failure"];

/// The hook kinds of a document, lowercased and trimmed as helm reads them; `None` when it is
/// not a hook.
fn hook_kinds(document: &Value) -> Option<Vec<String>> {
    let value = document
        .get("metadata")?
        .get("annotations")?
        .get(HOOK_ANNOTATION)?;
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    Some(
        text.split(',')
            .map(|kind| kind.trim().to_ascii_lowercase())
            .filter(|kind| !kind.is_empty())
            .collect(),
    )
}

/// A document's kind and name for messages (`Job migrate`), or its `generateName`.
fn document_name(document: &Value) -> String {
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or("?");
    let metadata = document.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            metadata
                .and_then(|m| m.get("generateName"))
                .and_then(Value::as_str)
                .map(|prefix| format!("{prefix}*"))
        })
        .unwrap_or_else(|| "?".to_owned());
    format!("{kind} {name}")
}

/// Removes hooks from helm's output according to `policy` (tests always), keeping `plain` (the
/// scalar styles per document, empty when not needed) in step, and reports each hook skipped.
fn filter_hooks(
    request: &RenderRequest,
    policy: HookPolicy,
    documents: Vec<Document>,
    plain: Vec<PlainScalars>,
) -> (Vec<Document>, Vec<PlainScalars>) {
    let mut plain = plain.into_iter();
    let mut kept_documents = Vec::with_capacity(documents.len());
    let mut kept_plain = Vec::new();
    for document in documents {
        let styles = plain.next();
        let keep = match hook_kinds(&document.value) {
            None => true,
            Some(kinds) if kinds.iter().any(|k| TEST_HOOKS.contains(&k.as_str())) => false,
            Some(_) if policy == HookPolicy::Include => true,
            Some(kinds) => {
                let event = crate::RenderProgress::HookSkipped {
                    path: request.path().to_owned(),
                    object: document_name(&document.value),
                    hooks: kinds,
                    origin: document.origin.clone(),
                };
                tracing::warn!("{event}");
                request.report(&event);
                false
            }
        };
        if keep {
            kept_documents.push(document);
            kept_plain.extend(styles);
        }
    }
    (kept_documents, kept_plain)
}

/// Whether `version` is a Kubernetes version helm accepts: `[v]MAJOR.MINOR[.PATCH]`, then an
/// optional `-prerelease` and `+build` of letters, digits, `.` and `-`.
fn is_kube_version(version: &str) -> bool {
    let rest = version.strip_prefix('v').unwrap_or(version);
    let (core, suffix) = match rest.find(['-', '+']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let numbers_ok = (2..=3).contains(&numbers.len())
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()));
    let suffix_ok = suffix.len() <= 128
        && suffix
            .bytes()
            .skip(1)
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        && (suffix.is_empty() || suffix.len() > 1);
    numbers_ok && suffix_ok
}

/// Whether `api_version` is `version`, `group/version`, `version/Kind` or
/// `group/version/Kind`: segments of letters, digits, `.` and `-` (no commas: helm would split
/// the flag's value on them).
fn is_api_version(api_version: &str) -> bool {
    let segments: Vec<&str> = api_version.split('/').collect();
    api_version.len() <= 317
        && (1..=3).contains(&segments.len())
        && segments.iter().all(|s| {
            !s.is_empty()
                && !s.starts_with(['-', '.'])
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        })
}

/// `path` (relative to a root) with `.` and `..` resolved lexically; `None` when it is absolute
/// or leaves the root.
fn inside_root(path: &Path) -> Option<PathBuf> {
    let mut resolved = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::Normal(part) => resolved.push(part),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !resolved.pop() {
                    return None;
                }
            }
            std::path::Component::RootDir | std::path::Component::Prefix(_) => return None,
        }
    }
    Some(resolved)
}

/// Whether helm accepts `name` as a release name.
fn is_release_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 53
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Runs the real `helm template` on a chart directory of the source root.
///
/// - Release name (by default the chart directory's name, see [`HelmRenderer::with_binary`]) and
///   namespace, values files (paths relative to the chart directory as in Argo CD and Flux,
///   checked to stay inside the source root) and inline values (applied after the files, in
///   order), CRDs included by default (`--include-crds`), the cluster's version and API versions
///   for `.Capabilities` ([`HelmRenderer::with_kube_version`],
///   [`HelmRenderer::with_api_versions`]; the caller reads them from the cluster's discovery).
/// - Hooks (objects annotated `helm.sh/hook`) are not release objects: test hooks are never
///   returned, others are left out and reported unless [`HookPolicy::Include`] keeps them.
/// - No network: dependencies must be vendored under `charts/` (checked first, with a clear
///   error), nothing is downloaded, no plugins, no cluster contact; every values schema of the
///   chart and its subcharts (unpacked or `.tgz`) may refer only inside itself and to the drafts
///   helm embeds (see [`check_values_schema`]), since helm loads other references over HTTP or
///   from the host's files; a clean environment with a private `HELM_*_HOME`, an unreachable
///   proxy, a timeout and cancellation.
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
///     .values_file("../../env/prod/values.yaml")
///     .values(serde_json::json!({"replicaCount": 3}))
///     .with_kube_version("v1.37.2")
///     .with_api_versions(["apps/v1", "policy/v1/PodDisruptionBudget"]);
/// let root = SourceRoot::new("/srv/checkout")?;
/// let objects = renderer.render(&RenderRequest::new(root, "charts/web")).await?;
/// # let _ = objects;
/// # Ok(())
/// # }
/// ```
///
/// Its `Debug` output leaves out the inline values (they often hold credentials): it shows how
/// many there are.
///
/// ```
/// use gitops_render::HelmRenderer;
/// let renderer = HelmRenderer::new("helm", "web").values(serde_json::json!({"password": "hunter2"}));
/// assert!(!format!("{renderer:?}").contains("hunter2"));
/// ```
#[derive(Clone)]
pub struct HelmRenderer {
    binary: PathBuf,
    release: Option<String>,
    namespace: Option<String>,
    values_files: Vec<PathBuf>,
    values: Vec<Value>,
    include_crds: bool,
    skip_tests: bool,
    hooks: HookPolicy,
    kube_version: Option<String>,
    api_versions: Vec<String>,
    limits: ToolLimits,
}

impl std::fmt::Debug for HelmRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelmRenderer")
            .field("binary", &self.binary)
            .field("release", &self.release)
            .field("namespace", &self.namespace)
            .field("values_files", &self.values_files)
            .field(
                "inline_values",
                &format!("{} (not shown)", self.values.len()),
            )
            .field("include_crds", &self.include_crds)
            .field("skip_tests", &self.skip_tests)
            .field("hooks", &self.hooks)
            .field("kube_version", &self.kube_version)
            .field("api_versions", &self.api_versions)
            .field("limits", &self.limits)
            .finish()
    }
}

impl HelmRenderer {
    /// Uses the helm binary at `binary` to render release `release`. Defaults: CRDs included,
    /// hooks left out ([`HookPolicy::Skip`]), the default [`ToolLimits`].
    ///
    /// ```
    /// use gitops_render::HelmRenderer;
    /// let renderer = HelmRenderer::new("helm", "web");
    /// assert_eq!(renderer.release_name(), Some("web"));
    /// ```
    #[must_use]
    pub fn new(binary: impl Into<PathBuf>, release: impl Into<String>) -> Self {
        Self::with_binary(binary).release(release)
    }

    /// Uses the helm binary at `binary`, with the release named after the chart's directory
    /// (as Argo CD names it after the application): `charts/web` renders release `web`. When
    /// the chart is the source root itself, or its directory's name is not a valid release name
    /// (lowercase letters, digits, `-` and `.`, at most 53 characters), the chart's own name
    /// (from `Chart.yaml`) is used. [`HelmRenderer::release`] sets a name.
    ///
    /// ```
    /// use gitops_render::HelmRenderer;
    /// let renderer = HelmRenderer::with_binary("helm");
    /// assert_eq!(renderer.release_name(), None);
    /// assert_eq!(renderer.release("shop").release_name(), Some("shop"));
    /// ```
    #[must_use]
    pub fn with_binary(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            release: None,
            namespace: None,
            values_files: Vec::new(),
            values: Vec::new(),
            include_crds: true,
            skip_tests: false,
            hooks: HookPolicy::Skip,
            kube_version: None,
            api_versions: Vec::new(),
            limits: ToolLimits::new(),
        }
    }

    /// Uses the helm binary `explicit` if given, else the one `GITOPS_HELM` names, else the
    /// first on `PATH` (see [`crate::tool`]), with the release named after the chart's
    /// directory (as [`HelmRenderer::with_binary`]).
    ///
    /// ```no_run
    /// use gitops_render::HelmRenderer;
    /// # fn example() -> Result<(), gitops_render::tool::LocateError> {
    /// let renderer = HelmRenderer::locate(None)?.release("web").namespace("shop");
    /// # let _ = renderer;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`LocateError`](crate::tool::LocateError): not found, or the path given is not an
    /// executable file.
    pub fn locate(explicit: Option<&Path>) -> Result<Self, crate::tool::LocateError> {
        crate::tool::locate(crate::tool::Tool::Helm, explicit).map(Self::with_binary)
    }

    /// The binary this renderer runs.
    ///
    /// ```
    /// let renderer = gitops_render::HelmRenderer::with_binary("/usr/local/bin/helm");
    /// assert_eq!(renderer.binary(), std::path::Path::new("/usr/local/bin/helm"));
    /// ```
    #[must_use]
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The release name (`.Release.Name`).
    #[must_use]
    pub fn release(mut self, release: impl Into<String>) -> Self {
        self.release = Some(release.into());
        self
    }

    /// The release name set, if any (else it comes from the chart's directory).
    #[must_use]
    pub fn release_name(&self) -> Option<&str> {
        self.release.as_deref()
    }

    /// The release namespace (`.Release.Namespace`).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Adds a values file, relative to the chart directory (as in Argo CD and Flux):
    /// `values-prod.yaml` is beside `Chart.yaml`, `../../env/prod.yaml` is above it. The file
    /// must still be inside the source root.
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

    /// Whether helm should not even render the chart's test hooks (`--skip-tests`, default
    /// false). Test hooks are never returned either way (see [`HookPolicy`]).
    #[must_use]
    pub fn skip_tests(mut self, skip: bool) -> Self {
        self.skip_tests = skip;
        self
    }

    /// What to do with the chart's hooks other than tests (default [`HookPolicy::Skip`]).
    ///
    /// ```
    /// use gitops_render::{HelmRenderer, HookPolicy};
    /// let renderer = HelmRenderer::new("helm", "web").with_hooks(HookPolicy::Include);
    /// assert_eq!(renderer.hooks(), HookPolicy::Include);
    /// ```
    #[must_use]
    pub fn with_hooks(mut self, policy: HookPolicy) -> Self {
        self.hooks = policy;
        self
    }

    /// The hook policy.
    #[must_use]
    pub fn hooks(&self) -> HookPolicy {
        self.hooks
    }

    /// The cluster's Kubernetes version, which templates see as `.Capabilities.KubeVersion` and
    /// a chart's `kubeVersion` constraint is checked against (helm's `--kube-version`): `v1.37.2`,
    /// `1.37`, or a provider's version such as `v1.37.2-gke.100`. Checked when rendering
    /// ([`HelmError::InvalidKubeVersion`]). Without it, helm uses the version it was built with.
    ///
    /// ```
    /// use gitops_render::HelmRenderer;
    /// let renderer = HelmRenderer::new("helm", "web")
    ///     .with_kube_version("v1.37.2")
    ///     .with_api_versions(["apps/v1", "policy/v1/PodDisruptionBudget"]);
    /// # let _ = renderer;
    /// ```
    #[must_use]
    pub fn with_kube_version(mut self, version: impl Into<String>) -> Self {
        self.kube_version = Some(version.into());
        self
    }

    /// Adds API versions the cluster serves to `.Capabilities.APIVersions` (helm's
    /// `--api-versions`, once each): `v1`, `group/version` (`apps/v1`) or
    /// `group/version/Kind` (`batch/v1/Job`). Checked when rendering
    /// ([`HelmError::InvalidApiVersion`]).
    #[must_use]
    pub fn with_api_versions(
        mut self,
        api_versions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.api_versions
            .extend(api_versions.into_iter().map(Into::into));
        self
    }

    /// The same as [`HelmRenderer::with_kube_version`].
    #[must_use]
    pub fn kube_version(self, version: impl Into<String>) -> Self {
        self.with_kube_version(version)
    }

    /// Adds one API version, as [`HelmRenderer::with_api_versions`] does.
    #[must_use]
    pub fn api_version(self, api_version: impl Into<String>) -> Self {
        self.with_api_versions([api_version])
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
        check_chart_schemas(
            root,
            chart,
            self.limits.max_file_size(),
            &mut HashSet::new(),
        )?;
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
    /// The values files, relative to the root (they are relative to the chart, and may be
    /// outside it); one that would leave the root is left out (the render refuses it).
    fn reads_besides(&self, path: &Path) -> Vec<PathBuf> {
        self.values_files
            .iter()
            .filter_map(|file| inside_root(&path.join(file)))
            .collect()
    }

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
        self.check_capabilities()?;
        let release = self.release_for(&chart_relative, &chart_name);
        let mut args = self.template_args(root, &chart, &chart_relative, &release)?;
        let _inline_values = self.write_inline_values(&mut args)?;
        let output = self
            .template(request, args, &release, &chart_relative)
            .await?;
        let mut documents = gitops_core::parse_yaml_documents_with(
            &output,
            format!("helm template {release}"),
            request.parse_limits(),
        )
        .map_err(HelmError::Output)?;
        // Scalar styles are found by the output's lines, before the origins become templates.
        let plain = request
            .substitution()
            .map(|_| plain_scalars(&output, &documents))
            .unwrap_or_default();
        assign_sources(&output, &mut documents, &chart_name, &chart_relative);
        let (documents, plain) = filter_hooks(request, self.hooks, documents, plain);
        progress.finish_documents(documents, &plain, HelmError::Output)
    }
}

impl HelmRenderer {
    /// Checks the Kubernetes version and the API versions given for `.Capabilities`.
    fn check_capabilities(&self) -> Result<(), RenderError> {
        if let Some(version) = &self.kube_version
            && !is_kube_version(version)
        {
            return Err(HelmError::InvalidKubeVersion {
                version: version.clone(),
            }
            .into());
        }
        if let Some(bad) = self.api_versions.iter().find(|a| !is_api_version(a)) {
            return Err(HelmError::InvalidApiVersion {
                api_version: bad.clone(),
            }
            .into());
        }
        Ok(())
    }

    /// The release: the one given, else the chart's directory when it is a valid release name,
    /// else the chart's name.
    fn release_for(&self, chart_relative: &Path, chart_name: &str) -> String {
        self.release.clone().unwrap_or_else(|| {
            chart_relative
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .filter(|name| is_release_name(name))
                .unwrap_or_else(|| chart_name.to_owned())
        })
    }

    /// The arguments of `helm template`, the values files included (each resolved inside the
    /// root and read once to check it).
    fn template_args(
        &self,
        root: &SourceRoot,
        chart: &Path,
        chart_relative: &Path,
        release: &str,
    ) -> Result<Vec<std::ffi::OsString>, RenderError> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "template".into(),
            release.into(),
            chart.as_os_str().to_owned(),
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
            // Relative to the chart, as in Argo CD and Flux; the jail is the root's.
            let resolved = root
                .resolve(chart_relative.join(file))
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
        Ok(args)
    }

    /// Writes the inline values to files of a new temporary directory, adds them to `args`
    /// and returns the directory (kept until helm has run).
    fn write_inline_values(
        &self,
        args: &mut Vec<std::ffi::OsString>,
    ) -> Result<tempfile::TempDir, RenderError> {
        let inline_dir = tempfile::Builder::new()
            .prefix("gitops-render-values-")
            .tempdir()
            .map_err(HelmError::InlineValues)?;
        for (index, values) in self.values.iter().enumerate() {
            let path = inline_dir.path().join(format!("inline-{index}.json"));
            std::fs::write(&path, values.to_string()).map_err(HelmError::InlineValues)?;
            args.extend(["--values".into(), path.into_os_string()]);
        }
        Ok(inline_dir)
    }

    /// Runs `helm template`; its failure keeps helm's message, the inline values masked.
    async fn template(
        &self,
        request: &RenderRequest,
        args: Vec<std::ffi::OsString>,
        release: &str,
        chart_relative: &Path,
    ) -> Result<String, RenderError> {
        let root = request.root();
        let output = ToolRun::within(&self.binary, args, root.path(), &self.limits)
            .run(request.cancellation())
            .await;
        match output {
            Ok(output) => Ok(output),
            Err(ProcessError::Cancelled { .. }) => Err(RenderError::Cancelled),
            Err(mut source) => {
                // Inline values often hold credentials, and helm quotes values in its errors
                // (`fail`, `required`, template errors): mask them in everything kept.
                if let ProcessError::Failed { stderr, .. } = &mut source {
                    *stderr = mask_inline_values(stderr, &self.values);
                }
                let message = failure_message(root, &source);
                Err(HelmError::Template {
                    release: release.to_owned(),
                    chart: chart_relative.to_owned(),
                    message,
                    source,
                }
                .into())
            }
        }
    }
}

/// Inline values shorter than this are not masked in helm's messages: they would garble them
/// (`true`, `80`, `v1`) and are unlikely to be credentials.
const MIN_MASKED_VALUE_CHARS: usize = 4;

/// `text` with every string (and number) of the inline `values` that is at least
/// [`MIN_MASKED_VALUE_CHARS`] long replaced by `***`, longest first so that a value containing
/// another is masked whole.
fn mask_inline_values(text: &str, values: &[Value]) -> String {
    fn leaves(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|item| leaves(item, out)),
            Value::Object(map) => map.values().for_each(|item| leaves(item, out)),
            Value::Null | Value::Bool(_) => {}
        }
    }
    let mut secrets = Vec::new();
    for value in values {
        leaves(value, &mut secrets);
    }
    secrets.retain(|s| s.chars().count() >= MIN_MASKED_VALUE_CHARS);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let mut masked = text.to_owned();
    for secret in &secrets {
        if masked.contains(secret.as_str()) {
            masked = masked.replace(secret.as_str(), gitops_core::secret::SECRET_MASK);
        }
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_files_are_read_besides_the_chart_relative_to_the_root() {
        let helm = HelmRenderer::with_binary("helm")
            .values_file("values-prod.yaml")
            .values_file("./../../env/prod.yaml")
            .values_file("../../../outside.yaml")
            .values_file("/etc/passwd");
        assert_eq!(
            helm.reads_besides(Path::new("./charts/web")),
            [
                PathBuf::from("charts/web/values-prod.yaml"),
                PathBuf::from("env/prod.yaml")
            ]
        );
        // At the root, `..` leaves it: left out for the render to refuse.
        assert_eq!(
            helm.reads_besides(Path::new(".")),
            [PathBuf::from("values-prod.yaml")]
        );
        let auto = crate::AutoRenderer::new(crate::PlainRenderer::new());
        assert!(auto.reads_besides(Path::new("charts/web")).is_empty());
        assert_eq!(
            auto.with_helm(helm)
                .reads_besides(Path::new("charts/web"))
                .len(),
            2
        );
    }

    #[test]
    fn inline_values_are_masked_in_helm_messages() {
        let values = [serde_json::json!({
            "db": {"password": "hunter2-secret", "port": 5432, "user": "app"},
            "tokens": ["tok-abcdef", "tok-abcdef-longer"],
        })];
        let text = "execution error at (c/templates/x.yaml:1:4): hunter2-secret and \
                    tok-abcdef-longer, tok-abcdef on 5432 as app";
        let masked = mask_inline_values(text, &values);
        for secret in ["hunter2-secret", "tok-abcdef", "5432"] {
            assert!(!masked.contains(secret), "{masked}");
        }
        // Too short to mask without garbling the message.
        assert!(masked.contains(" as app"), "{masked}");
        assert!(masked.starts_with("execution error at (c/templates/x.yaml:1:4): "));
    }

    #[test]
    fn validates_capabilities_and_release_names() {
        for ok in [
            "v1.37.2",
            "1.37",
            "1.37.0",
            "v1.27.4+k3s1",
            "v1.27.3-gke.100",
            "v1.30.0-rc.1",
        ] {
            assert!(is_kube_version(ok), "{ok}");
        }
        for bad in [
            "",
            "v",
            "1",
            "v1.",
            "1..2",
            "1.2.3.4",
            "latest",
            "--help",
            "1.2-",
            "1.2 ",
            "1.2\n",
            "v1.2/x",
            "1.2.3-a,b",
            "1234567890.1",
        ] {
            assert!(!is_kube_version(bad), "{bad:?}");
        }
        for ok in [
            "v1",
            "apps/v1",
            "batch/v1/Job",
            "v1/Pod",
            "policy/v1/PodDisruptionBudget",
            "example.com/v1alpha1/Widget",
        ] {
            assert!(is_api_version(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "apps/",
            "/v1",
            "a/b/c/d",
            "apps/v1,batch/v1",
            "-v1",
            "apps/v1 ",
            "apps/v1\n",
        ] {
            assert!(!is_api_version(bad), "{bad:?}");
        }
        for ok in ["web", "web-1", "a.b", "x"] {
            assert!(is_release_name(ok), "{ok}");
        }
        for bad in ["", "Web", "my_app", "-web", "web-", "a..b", &"a".repeat(54)] {
            assert!(!is_release_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn reads_hook_kinds_as_helm_does() {
        let doc = |annotations: Value| serde_json::json!({"kind": "Job", "metadata": {"name": "j", "annotations": annotations}});
        assert_eq!(hook_kinds(&doc(serde_json::json!({}))), None);
        assert_eq!(
            hook_kinds(&doc(
                serde_json::json!({"helm.sh/hook": " Pre-Install, post-upgrade ,"})
            )),
            Some(vec!["pre-install".to_owned(), "post-upgrade".to_owned()])
        );
        assert_eq!(
            hook_kinds(&doc(serde_json::json!({"helm.sh/hook": ""}))),
            Some(vec![])
        );
        assert_eq!(document_name(&doc(serde_json::json!({}))), "Job j");
        assert_eq!(
            document_name(&serde_json::json!({"kind": "Pod", "metadata": {"generateName": "t-"}})),
            "Pod t-*"
        );
    }

    #[test]
    fn skipped_hooks_are_reported_escaped() {
        let event = crate::RenderProgress::HookSkipped {
            path: "charts/w\u{1b}[2Jeb".into(),
            object: "Job a\nINFO forged".into(),
            hooks: vec!["pre-install\u{202e}".into()],
            origin: Origin::new("charts/web/templates/\u{1b}x.yaml"),
        };
        let text = event.to_string();
        assert!(!text.contains(['\u{1b}', '\n', '\u{202e}']), "{text}");
        assert!(text.contains("left out helm hook Job a"), "{text}");
    }

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
    fn schemas_may_refer_only_inside_themselves() {
        let file = Path::new("c/values.schema.json");
        for ok in [
            r##"{"$schema": "http://json-schema.org/draft-07/schema#", "properties": {"a": {"$ref": "#/definitions/a"}, "$ref": {"type": "string"}}, "definitions": {"a": {}}}"##,
            r##"{"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": {"x": {"$dynamicRef": "#meta"}}}"##,
            r#"{"$schema": "http://json-schema.org/draft-04/schema#/"}"#,
            "true",
        ] {
            check_values_schema(ok.as_bytes(), file).expect(ok);
        }
        for (bad, keyword) in [
            (r#"{"$ref": "http://127.0.0.1:1/s.json"}"#, "$ref"),
            (
                r#"{"properties": {"a": {"$ref": "other.json#/a"}}}"#,
                "$ref",
            ),
            (r#"{"items": [{"$ref": "file:///etc/passwd"}]}"#, "$ref"),
            (r#"{"$ref": "/etc/passwd"}"#, "$ref"),
            (r#"{"$dynamicRef": "https://x/y"}"#, "$dynamicRef"),
            (r#"{"$recursiveRef": "x.json"}"#, "$recursiveRef"),
            (r#"{"$schema": "https://127.0.0.1:1/meta"}"#, "$schema"),
            (r#"{"$schema": "file:///etc/passwd"}"#, "$schema"),
        ] {
            match check_values_schema(bad.as_bytes(), file) {
                Err(HelmError::SchemaReference { keyword: k, .. }) => {
                    assert_eq!(k, keyword, "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            check_values_schema(b"{", file),
            Err(HelmError::Schema { .. })
        ));
    }

    /// A gzip'd tar holding `files` (path, content).
    fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn finds_schemas_of_subcharts_unpacked_and_archived() {
        let dir = tempfile::tempdir().unwrap();
        let root = SourceRoot::new(dir.path()).unwrap();
        let chart = root.path().join("chart");
        let write = |path: &str, content: &[u8]| {
            let path = chart.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        };
        let check = || check_chart_schemas(&root, &chart, 1 << 20, &mut HashSet::new());
        let remote = br#"{"$ref": "http://127.0.0.1:1/s.json"}"#;
        write("values.schema.json", br##"{"$ref": "#/x", "x": {}}"##);
        write("charts/a/values.schema.json", b"{}");
        check().unwrap();
        write("charts/a/charts/b/values.schema.json", remote);
        let err = check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "chart/charts/a/charts/b/values.schema.json: $ref \"http://127.0.0.1:1/s.json\" refused: a values schema may only refer inside itself (\"#...\") and to the JSON Schema drafts helm embeds; rendering never reads the network or files outside the chart"
        );
        std::fs::remove_dir_all(chart.join("charts/a/charts")).unwrap();
        // A vendored archive holding an archive holding the schema.
        let inner = tgz(&[
            ("c/Chart.yaml", b"name: c\n"),
            ("c/values.schema.json", remote),
        ]);
        let outer = tgz(&[
            ("b/Chart.yaml", b"name: b\n"),
            ("b/values.schema.json", b"{}"),
            ("b/charts/c-1.0.0.tgz", &inner),
        ]);
        write("charts/b-1.0.0.tgz", &outer);
        let err = check().unwrap_err();
        assert!(
            err.to_string().starts_with(
                "chart/charts/b-1.0.0.tgz/b/charts/c-1.0.0.tgz/c/values.schema.json: $ref"
            ),
            "{err}"
        );
        // Links that make cycles are walked once.
        std::fs::remove_file(chart.join("charts/b-1.0.0.tgz")).unwrap();
        std::os::unix::fs::symlink(&chart, chart.join("charts/a/loop")).unwrap();
        std::os::unix::fs::symlink(&chart, chart.join("charts/a/loop2")).unwrap();
        check().unwrap();
        write("charts/b-1.0.0.tgz", b"not gzip");
        assert!(matches!(
            check(),
            Err(RenderError::Helm(e)) if matches!(*e, HelmError::Archive { .. })
        ));
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
