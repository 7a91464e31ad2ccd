//! [`KustomizeRenderer`]: `kustomize build` of a kustomization inside the source root, jailed.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use gitops_core::escape::{Escaped, EscapedPath};
use gitops_core::{Document, Manifest, Origin, ParseError};
use serde_json::{Map, Value};

use crate::process::{ProcessError, ToolLimits, ToolRun, failure_message};
use crate::root::{RootError, SourceRoot};
use crate::substitute::{next_node, plain_scalars, scan_node};
use crate::{ProgressScope, RenderError, RenderRequest, Renderer};
use granit_parser::Event;
use rayon::prelude::*;

/// The kustomize version this crate is built and tested against.
pub const PINNED_KUSTOMIZE_VERSION: &str = "v5.8.1";

/// The names kustomize accepts for a kustomization file, in its order of preference.
pub(crate) const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The errors of the Kustomize renderer.
#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    /// The directory has no kustomization file.
    #[error("{dir}: no kustomization.yaml, kustomization.yml or Kustomization", dir = EscapedPath(dir))]
    NotAKustomization {
        /// The directory, relative to the root.
        dir: PathBuf,
    },
    /// The directory is a kustomization, but no kustomize binary was configured.
    #[error("{dir}: is a kustomization, but no kustomize binary is configured", dir = EscapedPath(dir))]
    NoBinary {
        /// The directory as requested.
        dir: PathBuf,
    },
    /// The directory is a kustomization, and kustomize was searched for
    /// ([`AutoRenderer::with_located_tools`](crate::AutoRenderer::with_located_tools)) but not
    /// found; the source says how to give it.
    #[error("{dir}: is a kustomization, but kustomize was not found", dir = EscapedPath(dir))]
    NotFound {
        /// The directory as requested.
        dir: PathBuf,
        /// Where it was searched, and how to give it.
        #[source]
        source: crate::tool::LocateError,
    },
    /// A kustomization file is not valid YAML or not a mapping.
    #[error("{0}")]
    Kustomization(#[source] ParseError),
    /// A kustomization file is not a mapping.
    #[error("{file}: a kustomization must be a mapping", file = EscapedPath(file))]
    NotAMapping {
        /// The kustomization file, relative to the root.
        file: PathBuf,
    },
    /// A kustomization refers to a remote base or file; only the source root is rendered.
    #[error("{file}: {field}: remote reference {reference:?} refused: only files inside the source root are rendered", file = EscapedPath(file))]
    Remote {
        /// The kustomization file, relative to the root.
        file: PathBuf,
        /// The field, such as `resources`.
        field: String,
        /// The reference.
        reference: String,
    },
    /// A kustomization refers to a path outside the source root, or to one that does not exist.
    #[error("{file}: {field}: {source}", file = EscapedPath(file))]
    Reference {
        /// The kustomization file, relative to the root.
        file: PathBuf,
        /// The field, such as `resources`.
        field: String,
        /// What is wrong with the path.
        #[source]
        source: RootError,
    },
    /// A kustomization holds a key that is not exactly one of kustomize's field names. kustomize
    /// matches field names ignoring case (Go's JSON decoder, with its Unicode folding), so
    /// `RESOURCES` or `reſources` would be read as `resources` past the reference check: only
    /// exact names are accepted.
    #[error(
        "{file}{line}: {place}unknown field {key:?}: kustomize reads field names ignoring case, so only its exact field names are accepted",
        file = EscapedPath(file),
        line = line.map(|l| format!(":{l}")).unwrap_or_default(),
        place = if place.is_empty() { String::new() } else { format!("{place}: ") }
    )]
    UnknownField {
        /// The kustomization file, relative to the root.
        file: PathBuf,
        /// The line of the key, when known (not for a key reached through an alias).
        line: Option<u64>,
        /// Where the key is: empty at the top, else such as `patches[0]`.
        place: String,
        /// The key as written.
        key: String,
    },
    /// A kustomization uses a YAML merge key (`<<`): kustomize's YAML reader and ours merge
    /// differently, so the keys it brings could escape the reference check.
    #[error(
        "{file}{line}: YAML merge keys (<<) are refused in a kustomization; write the fields out",
        file = EscapedPath(file),
        line = line.map(|l| format!(":{l}")).unwrap_or_default()
    )]
    MergeKey {
        /// The kustomization file, relative to the root.
        file: PathBuf,
        /// The line of the merge key.
        line: Option<u64>,
    },
    /// A directory holds more than one kustomization file (kustomize refuses it too).
    #[error("{dir}: more than one of kustomization.yaml, kustomization.yml and Kustomization", dir = EscapedPath(dir))]
    MultipleKustomizations {
        /// The directory, relative to the root.
        dir: PathBuf,
    },
    /// A kustomization uses `helmCharts`, which needs `--enable-helm`, which stays off.
    #[error("{file}: {field} is not supported (kustomize runs without --enable-helm); render the chart with the Helm renderer", file = EscapedPath(file))]
    HelmCharts {
        /// The kustomization file, relative to the root.
        file: PathBuf,
        /// The field: `helmCharts`, `helmGlobals` or `helmChartInflationGenerator`.
        field: &'static str,
    },
    /// `kustomize build` failed; the message is kustomize's own, with root paths made relative.
    #[error("kustomize build {dir}: {message}", dir = EscapedPath(dir), message = Escaped(message))]
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
    /// The temporary kustomization that asks kustomize for origin annotations could not be
    /// written.
    #[error("cannot write the temporary kustomization for origin annotations: {0}")]
    Wrapper(#[source] std::io::Error),
}

/// Runs the real `kustomize build` on a directory of the source root.
///
/// Safety, beyond what kustomize does itself:
/// - the kustomization graph is walked first: every `resources`, `components`, `patches`,
///   generator file and so on must be a path that exists inside the source root (remote bases
///   and URLs are refused, so kustomize never reaches the network); every key must be exactly
///   one of kustomize's field names, since kustomize reads `RESOURCES` as `resources`, and YAML
///   merge keys are refused (see [`kustomization_references`], the check of one file);
/// - the whole root is checked for symbolic links that leave it and for oversized files;
/// - kustomize runs with `--load-restrictor LoadRestrictionsRootOnly`, without `--enable-helm`,
///   `--enable-exec` or `--enable-alpha-plugins` (no exec or KRM function plugins), with a clean
///   environment and private home, a timeout and cancellation.
///
/// Objects keep kustomize's order. Their origin is the file they come from, relative to the
/// source root: the resource file (with the document and line when the object can be matched to
/// one document of it by kind and name), or the kustomization whose generator made it (with the
/// line of the generator's entry). To learn
/// it, kustomize builds a temporary kustomization outside the source root that lists the
/// directory as its only resource (or component, for a `kind: Component`) and asks for origin annotations
/// (`buildMetadata: [originAnnotations]`, the `config.kubernetes.io/origin` annotation), which
/// are removed again unless the directory's own kustomization asks for them; its `sortOptions`
/// are carried over. Nothing is written into the source. When that build fails, the directory is
/// built directly: a failure then gives kustomize's error about the user's files only, and a
/// success (a kustomization that cannot be another's resource) keeps output lines as origins.
/// An object kustomize gives no origin (or an origin outside the root) keeps
/// `kustomize build <dir>` with the line in kustomize's output.
///
/// ```no_run
/// use gitops_render::{KustomizeRenderer, RenderRequest, Renderer, SourceRoot, ToolLimits};
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let renderer = KustomizeRenderer::new("/usr/local/bin/kustomize")
///     .limits(ToolLimits::new().with_timeout(std::time::Duration::from_secs(30)));
/// let root = SourceRoot::new("/srv/checkout")?;
/// let objects = renderer.render(&RenderRequest::new(root, "overlays/prod")).await?;
/// # let _ = objects;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KustomizeRenderer {
    binary: PathBuf,
    limits: ToolLimits,
}

impl KustomizeRenderer {
    /// Uses the kustomize binary at `binary`, with the default [`ToolLimits`].
    #[must_use]
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            limits: ToolLimits::new(),
        }
    }

    /// Uses the kustomize binary `explicit` if given, else the one `GITOPS_KUSTOMIZE` names,
    /// else the first on `PATH` (see [`crate::tool`]).
    ///
    /// ```no_run
    /// use gitops_render::KustomizeRenderer;
    /// # fn example(flag: Option<std::path::PathBuf>) -> Result<(), gitops_render::tool::LocateError> {
    /// let renderer = KustomizeRenderer::locate(flag.as_deref())?;
    /// # let _ = renderer;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`LocateError`](crate::tool::LocateError): not found, or the path given is not an
    /// executable file.
    pub fn locate(explicit: Option<&Path>) -> Result<Self, crate::tool::LocateError> {
        crate::tool::locate(crate::tool::Tool::Kustomize, explicit).map(Self::new)
    }

    /// The binary this renderer runs.
    ///
    /// ```
    /// let renderer = gitops_render::KustomizeRenderer::new("/usr/local/bin/kustomize");
    /// assert_eq!(renderer.binary(), std::path::Path::new("/usr/local/bin/kustomize"));
    /// ```
    #[must_use]
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The timeout of one build, its output limit, and the largest file allowed anywhere in the
    /// source root.
    #[must_use]
    pub fn limits(mut self, limits: ToolLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks that the binary is the pinned version ([`PINNED_KUSTOMIZE_VERSION`]).
    pub async fn check_version(&self) -> Result<(), KustomizeError> {
        let cwd = std::env::temp_dir();
        let out = ToolRun {
            max_output: 4096,
            ..ToolRun::within(&self.binary, vec!["version".into()], &cwd, &self.limits)
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

/// The kustomization file in `dir`, if any: the one kustomize reads. kustomize refuses a
/// directory with more than one, and so does the reference check.
pub(crate) fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// The fields of kustomize's `Kustomization` (kustomize v5.8, `api/types/kustomization.go`),
/// deprecated ones included (`bases`, `patchesJson6902`, `patchesStrategicMerge`, `imageTags`,
/// `vars`, `commonLabels`, `helmChartInflationGenerator`), which kustomize still reads.
const KUSTOMIZATION_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "openapi",
    "namePrefix",
    "nameSuffix",
    "namespace",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "patchesStrategicMerge",
    "patchesJson6902",
    "patches",
    "images",
    "imageTags",
    "replacements",
    "replicas",
    "vars",
    "sortOptions",
    "resources",
    "components",
    "crds",
    "bases",
    "configMapGenerator",
    "secretGenerator",
    "helmGlobals",
    "helmCharts",
    "helmChartInflationGenerator",
    "generatorOptions",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "buildMetadata",
];

/// The fields that need `--enable-helm` (and may name charts on the network).
const HELM_FIELDS: [&str; 3] = ["helmCharts", "helmGlobals", "helmChartInflationGenerator"];

/// The fields of the nested objects that name paths or URLs: `Patch` (of `patches` and
/// `patchesJson6902`), `ReplacementField`, `ConfigMapArgs`, `SecretArgs`, and the keys of
/// `openapi` that kustomize reads.
const NESTED_FIELDS: [(&str, &[&str]); 6] = [
    ("patches", &["path", "patch", "target", "options"]),
    ("patchesJson6902", &["path", "patch", "target", "options"]),
    (
        "replacements",
        &["path", "source", "targets", "sourceValue"],
    ),
    (
        "configMapGenerator",
        &[
            "namespace",
            "name",
            "behavior",
            "literals",
            "files",
            "envs",
            "env",
            "options",
        ],
    ),
    (
        "secretGenerator",
        &[
            "namespace",
            "name",
            "behavior",
            "literals",
            "files",
            "envs",
            "env",
            "options",
            "type",
        ],
    ),
    ("openapi", &["path", "version"]),
];

/// A path or URL that a kustomization refers to, found by [`kustomization_references`].
///
/// ```
/// use gitops_render::KustomizationReference;
/// let reference = KustomizationReference {
///     field: "resources".into(),
///     reference: "../base".into(),
///     may_be_kustomization: true,
/// };
/// assert_eq!(reference.to_string(), "resources: ../base");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KustomizationReference {
    /// The field it is in: `resources`, `patches.path`, `configMapGenerator.files`, ...
    pub field: String,
    /// The reference as written (for `files` entries `key=path`, the path).
    pub reference: String,
    /// Whether kustomize may read it as a directory holding a kustomization of its own
    /// (`resources`, `bases`, `components`, `generators`, `transformers`, `validators`).
    pub may_be_kustomization: bool,
}

impl std::fmt::Display for KustomizationReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, Escaped(&self.reference))
    }
}

/// A kustomization read and checked by [`parse_kustomization`].
struct ParsedKustomization {
    /// Its fields (`None` for an empty file).
    fields: Option<Map<String, Value>>,
    /// The paths and URLs it refers to; remote ones are refused before.
    references: Vec<KustomizationReference>,
}

/// Reads one kustomization file's text the way the reference check does, without touching the
/// filesystem: parses it, checks that every key is exactly one of kustomize's field names (at the
/// top and in the nested objects whose fields name paths or URLs: `patches`, `patchesJson6902`,
/// `replacements`, `configMapGenerator`, `secretGenerator`, `openapi`), refuses YAML merge keys,
/// the Helm fields and remote references (in inline plugin configurations of `generators`,
/// `transformers` and `validators` too), and returns every local path it refers to with its
/// field. `file` names the file in errors.
///
/// kustomize decodes a kustomization with Go's JSON decoder, which matches keys to fields
/// ignoring case (with Unicode folding: `ſ` is `s`, the Kelvin sign is `k`), so a key such as
/// `RESOURCES` is read as `resources`: any key that is not exactly a field name is refused.
///
/// ```
/// use std::path::Path;
/// use gitops_render::{KustomizeError, kustomization_references};
/// let file = Path::new("apps/kustomization.yaml");
/// let references = kustomization_references("resources: [../base, cm.yaml]\n", file)?;
/// assert_eq!(references[0].reference, "../base");
/// assert!(references[0].may_be_kustomization);
///
/// let err = kustomization_references("RESOURCES: [http://example.com/x.yaml]\n", file).unwrap_err();
/// assert!(matches!(err, KustomizeError::UnknownField { .. }));
/// assert_eq!(
///     err.to_string(),
///     "apps/kustomization.yaml:1: unknown field \"RESOURCES\": kustomize reads field names ignoring case, so only its exact field names are accepted"
/// );
/// # Ok::<(), KustomizeError>(())
/// ```
pub fn kustomization_references(
    text: &str,
    file: &Path,
) -> Result<Vec<KustomizationReference>, KustomizeError> {
    parse_kustomization(text, file).map(|parsed| parsed.references)
}

fn parse_kustomization(text: &str, file: &Path) -> Result<ParsedKustomization, KustomizeError> {
    let documents =
        gitops_core::parse_yaml_documents(text, file).map_err(KustomizeError::Kustomization)?;
    let Some(document) = documents.into_iter().next() else {
        return Ok(ParsedKustomization {
            fields: None,
            references: Vec::new(),
        });
    };
    if let Some(line) = first_merge_key(text) {
        return Err(KustomizeError::MergeKey {
            file: file.to_owned(),
            line: Some(line),
        });
    }
    let keys = KeyLines::scan(text);
    let Value::Object(kustomization) = document.value else {
        return Err(KustomizeError::NotAMapping {
            file: file.to_owned(),
        });
    };
    let unknown = |pointer: &str, place: String, key: &str| KustomizeError::UnknownField {
        file: file.to_owned(),
        line: keys.lines.get(pointer).copied(),
        place,
        key: key.to_owned(),
    };
    for key in kustomization.keys() {
        if !KUSTOMIZATION_FIELDS.contains(&key.as_str()) {
            return Err(unknown(&pointer_of(&[key]), String::new(), key));
        }
    }
    if let Some(field) = HELM_FIELDS
        .iter()
        .find(|field| kustomization.contains_key(**field))
    {
        return Err(KustomizeError::HelmCharts {
            file: file.to_owned(),
            field,
        });
    }
    for (field, allowed) in NESTED_FIELDS {
        let items: Vec<(Option<usize>, &Map<String, Value>)> = match kustomization.get(field) {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((Some(i), v.as_object()?)))
                .collect(),
            Some(Value::Object(map)) => vec![(None, map)],
            _ => Vec::new(),
        };
        for (index, item) in items {
            for key in item.keys() {
                if !allowed.contains(&key.as_str()) {
                    let (pointer, place) = match index {
                        Some(i) => (
                            pointer_of(&[field, &i.to_string(), key]),
                            format!("{field}[{i}]"),
                        ),
                        None => (pointer_of(&[field, key]), field.to_owned()),
                    };
                    return Err(unknown(&pointer, place, key));
                }
            }
        }
    }
    let references = references(&kustomization);
    if let Some(remote) = references.iter().find(|r| is_remote(&r.reference)) {
        return Err(KustomizeError::Remote {
            file: file.to_owned(),
            field: remote.field.clone(),
            reference: remote.reference.clone(),
        });
    }
    // Inline plugin configurations: their paths are loaded too.
    for field in PLUGIN_FIELDS {
        let inline: Vec<&str> = match kustomization.get(field) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(text)) => vec![text.as_str()],
            _ => Vec::new(),
        };
        for text in inline.into_iter().filter(|text| text.contains('\n')) {
            check_plugin_config(text, file, field)?;
        }
    }
    Ok(ParsedKustomization {
        fields: Some(kustomization),
        references,
    })
}

/// The paths and URLs of a kustomization whose keys are checked.
fn references(kustomization: &Map<String, Value>) -> Vec<KustomizationReference> {
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
    let objects = |field: &str| -> Vec<&Map<String, Value>> {
        match kustomization.get(field) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
            Some(Value::Object(map)) => vec![map],
            _ => Vec::new(),
        }
    };
    let mut references = Vec::new();
    let mut push = |field: String, reference: String, may_be_kustomization: bool| {
        references.push(KustomizationReference {
            field,
            reference,
            may_be_kustomization,
        });
    };
    for field in ["resources", "bases", "components"] {
        for reference in strings(field) {
            push(field.to_owned(), reference, true);
        }
    }
    // kustomize accumulates generators, transformers and validators as resources: files,
    // directories of kustomizations, or inline configurations (YAML text, not paths).
    for (field, may_be_kustomization) in [
        ("crds", false),
        ("configurations", false),
        ("generators", true),
        ("transformers", true),
        ("validators", true),
        ("patchesStrategicMerge", false),
    ] {
        for reference in strings(field) {
            if !reference.contains('\n') {
                push(field.to_owned(), reference, may_be_kustomization);
            }
        }
    }
    for field in ["patches", "patchesJson6902", "replacements"] {
        for item in objects(field) {
            if let Some(Value::String(path)) = item.get("path") {
                push(format!("{field}.path"), path.clone(), false);
            }
        }
    }
    if let Some(Value::String(path)) = kustomization.get("openapi").and_then(|o| o.get("path")) {
        push("openapi.path".to_owned(), path.clone(), false);
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
                    push(format!("{field}.{key}"), path.to_owned(), false);
                }
            }
        }
    }
    references
}

/// Every local path a kustomization's text may make kustomize read, for materialising a sparse
/// artifact: unlike [`kustomization_references`], nothing is refused. Keys are matched the way
/// kustomize matches them (ignoring case, with Go's folding), every document counts, inline
/// plugin configurations add the files they name, and the Helm fields add their chart home and
/// values files; remote references are left out. A text that is not YAML names nothing (the
/// render then fails on that file, which is materialised).
pub(crate) fn lenient_references(text: &str, file: &Path) -> Vec<String> {
    let Ok(documents) = gitops_core::parse_yaml_documents(text, file) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for document in documents {
        let Value::Object(map) = document.value else {
            continue;
        };
        let folded = fold_fields(&map, KUSTOMIZATION_FIELDS.iter().chain(&HELM_FIELDS));
        let mut kustomization = Map::new();
        for (field, value) in folded {
            let value = match NESTED_FIELDS.iter().find(|(nested, _)| *nested == field) {
                Some((_, allowed)) => fold_nested(value, allowed),
                None => value,
            };
            kustomization.insert(field.to_owned(), value);
        }
        found.extend(references(&kustomization).into_iter().map(|r| r.reference));
        for field in PLUGIN_FIELDS {
            let inline: Vec<&str> = match kustomization.get(field) {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(text)) => vec![text.as_str()],
                _ => Vec::new(),
            };
            for text in inline.into_iter().filter(|text| text.contains('\n')) {
                found.extend(plugin_config_paths(text, file));
            }
        }
        found.extend(helm_paths(&kustomization));
    }
    found.retain(|reference| !is_remote(reference));
    found.sort();
    found.dedup();
    found
}

/// The fields of `map` whose keys fold (Go's way) to one of `fields`, under that field's name;
/// values of keys folding to the same field are gathered into one list, so that none is lost.
fn fold_fields<'a>(
    map: &Map<String, Value>,
    fields: impl Iterator<Item = &'a &'a str> + Clone,
) -> Vec<(&'a str, Value)> {
    let mut folded: Vec<(&'a str, Value)> = Vec::new();
    for (key, value) in map {
        let key = go_fold(key);
        let Some(field) = fields.clone().find(|field| go_fold(field) == key) else {
            continue;
        };
        match folded.iter_mut().find(|(name, _)| name == field) {
            Some((_, existing)) => {
                let mut items = match std::mem::take(existing) {
                    Value::Array(items) => items,
                    other => vec![other],
                };
                match value.clone() {
                    Value::Array(more) => items.extend(more),
                    other => items.push(other),
                }
                *existing = Value::Array(items);
            }
            None => folded.push((field, value.clone())),
        }
    }
    folded
}

/// A nested object (or list of them) with its keys folded to the `allowed` field names.
fn fold_nested(value: Value, allowed: &[&str]) -> Value {
    let fold = |item: Value| match item {
        Value::Object(map) => Value::Object(
            fold_fields(&map, allowed.iter())
                .into_iter()
                .map(|(field, value)| (field.to_owned(), value))
                .collect(),
        ),
        other => other,
    };
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(fold).collect()),
        other => fold(other),
    }
}

/// The local paths an inline plugin configuration names (its fields that name files, keys
/// folded as kustomize folds them; `key=path` entries give the path).
fn plugin_config_paths(text: &str, file: &Path) -> Vec<String> {
    let Ok(documents) = gitops_core::parse_yaml_documents(text, file) else {
        return Vec::new();
    };
    plugin_path_values(&documents)
        .into_iter()
        .map(|(_, value)| value.split_once('=').map_or(value, |(_, p)| p).to_owned())
        .collect()
}

/// Every value of a plugin configuration's fields that name files (keys folded as kustomize
/// folds them), at any depth, with its key.
fn plugin_path_values(documents: &[Document]) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut pending: Vec<&Value> = documents.iter().map(|d| &d.value).collect();
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    if PLUGIN_PATH_FIELDS.contains(&go_fold(key).as_str()) {
                        match item {
                            Value::String(s) => found.push((key.as_str(), s.as_str())),
                            Value::Array(items) => found.extend(
                                items
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .map(|v| (key.as_str(), v)),
                            ),
                            _ => {}
                        }
                    }
                    pending.push(item);
                }
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    found
}

/// The paths kustomize's Helm fields read: the chart home (`helmGlobals.chartHome`, else
/// `charts`) and the charts' values files. The renderer refuses these fields; they are still
/// materialised, so that the render fails on the field, not on a missing file.
fn helm_paths(kustomization: &Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    let has_charts = kustomization.contains_key("helmCharts")
        || kustomization.contains_key("helmChartInflationGenerator");
    let mut home = None;
    for globals in as_objects(kustomization.get("helmGlobals")) {
        for (key, value) in globals {
            if go_fold(key) == "charthome"
                && let Value::String(path) = value
            {
                home = Some(path.clone());
            }
        }
    }
    if let Some(home) = home {
        found.push(home);
    } else if has_charts {
        found.push("charts".to_owned());
    }
    for field in ["helmCharts", "helmChartInflationGenerator"] {
        for chart in as_objects(kustomization.get(field)) {
            for (key, value) in chart {
                if ["valuesfile", "additionalvaluesfiles", "charthome"]
                    .contains(&go_fold(key).as_str())
                {
                    match value {
                        Value::String(path) => found.push(path.clone()),
                        Value::Array(items) => {
                            found.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    found
}

/// An object, or the objects of a list.
fn as_objects(value: Option<&Value>) -> Vec<&Map<String, Value>> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        Some(Value::Object(map)) => vec![map],
        _ => Vec::new(),
    }
}

/// The fields whose entries are plugin configurations (files, directories of kustomizations
/// whose resources are configurations, or inline YAML).
const PLUGIN_FIELDS: [&str; 3] = ["generators", "transformers", "validators"];

/// The fields of kustomize's builtin plugin configurations that name files kustomize loads
/// (and would fetch, given a URL), compared after Go's case folding: `PatchTransformer.path`,
/// `PatchStrategicMergeTransformer.paths`, the generators' `files`, `envs` and `env`,
/// `ReplacementTransformer.replacements[].path`, the Helm generator's values files.
const PLUGIN_PATH_FIELDS: [&str; 7] = [
    "path",
    "paths",
    "files",
    "envs",
    "env",
    "valuesfile",
    "additionalvaluesfiles",
];

/// `key` folded the way Go's JSON decoder compares field names (`appendFoldedName`: ASCII
/// upper-cased, any other rune through `ToUpper(ToLower(r))`), then ASCII lower-cased, so that
/// it compares with the lower-case names here. Four non-ASCII letters fold into ASCII: `ſ` to
/// `s`, the Kelvin sign to `k`, `İ` and the dotless `ı` to `i`.
pub(crate) fn go_fold(key: &str) -> String {
    // Go maps rune to rune: where Rust's full mapping gives more than one character, the
    // simple one is meant (`İ` lower-cases to `i` alone).
    fn single(mut chars: impl Iterator<Item = char>, otherwise: char) -> char {
        match (chars.next(), chars.next()) {
            (Some(c), None) => c,
            _ => otherwise,
        }
    }
    key.chars()
        .map(|c| {
            if c.is_ascii() {
                return c.to_ascii_lowercase();
            }
            let lower = if c == '\u{130}' {
                'i'
            } else {
                single(c.to_lowercase(), c)
            };
            single(lower.to_uppercase(), lower).to_ascii_lowercase()
        })
        .collect()
}

/// Checks one plugin configuration (the text of a `generators`, `transformers` or
/// `validators` entry, or of a resource of a kustomization listed there): kustomize reads its
/// fields ignoring case and loads the files they name, fetching URLs, so every value of a field
/// that names files must not be remote, and merge keys are refused. Local paths are left to
/// kustomize's load restrictor.
fn check_plugin_config(text: &str, file: &Path, field: &str) -> Result<(), KustomizeError> {
    if let Some(line) = first_merge_key(text) {
        return Err(KustomizeError::MergeKey {
            file: file.to_owned(),
            line: Some(line),
        });
    }
    let documents =
        gitops_core::parse_yaml_documents(text, file).map_err(KustomizeError::Kustomization)?;
    for (key, value) in plugin_path_values(&documents) {
        let path = value.split_once('=').map_or(value, |(_, p)| p);
        if is_remote(value) || is_remote(path) {
            return Err(KustomizeError::Remote {
                file: file.to_owned(),
                field: format!("{field} configuration: {}", Escaped(key)),
                reference: value.to_owned(),
            });
        }
    }
    Ok(())
}

/// The line of the first YAML merge key (`<<`) of any document of `text`.
fn first_merge_key(text: &str) -> Option<u64> {
    // Each open collection: for a mapping, whether its next node is a key; `None` for a
    // sequence.
    let mut open: Vec<Option<bool>> = Vec::new();
    for (event, span) in granit_parser::Parser::new_from_str(text).map_while(Result::ok) {
        match event {
            Event::Scalar(..)
            | Event::Alias(..)
            | Event::MappingStart(..)
            | Event::SequenceStart(..) => {
                if let Some(Some(is_key)) = open.last_mut() {
                    if *is_key && matches!(&event, Event::Scalar(key, ..) if key == "<<") {
                        return Some(span.start.line() as u64);
                    }
                    *is_key = !*is_key;
                }
                match event {
                    Event::MappingStart(..) => open.push(Some(true)),
                    Event::SequenceStart(..) => open.push(None),
                    _ => {}
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                open.pop();
            }
            _ => {}
        }
    }
    None
}

/// A JSON pointer of keys, escaped as RFC 6901 says.
fn pointer_of(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("/{}", key.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// The lines of the keys of a YAML file's first document, by JSON pointer, read with the event
/// parser.
#[derive(Default)]
struct KeyLines {
    lines: HashMap<String, u64>,
}

/// Deepest nesting whose keys are recorded.
const MAX_KEY_DEPTH: usize = 64;

impl KeyLines {
    fn scan(text: &str) -> Self {
        let mut found = Self::default();
        let mut events = granit_parser::Parser::new_from_str(text).map_while(Result::ok);
        if !events.any(|(event, _)| matches!(event, Event::DocumentStart(..))) {
            return found;
        }
        if let Some((root, _)) = next_node(&mut events) {
            let mut pointer = String::new();
            found.node(&mut events, root, &mut pointer, 0);
        }
        found
    }

    /// Reads the node that starts with `event`; `None` when the stream ends first.
    fn node<'a>(
        &mut self,
        events: &mut impl Iterator<Item = (Event<'a>, granit_parser::Span)>,
        event: Event<'a>,
        pointer: &mut String,
        depth: usize,
    ) -> Option<()> {
        if depth > MAX_KEY_DEPTH {
            return skip_node(events, event);
        }
        match event {
            Event::SequenceStart(..) => {
                let mut index = 0usize;
                loop {
                    let (item, _) = next_node(events)?;
                    if matches!(item, Event::SequenceEnd) {
                        break;
                    }
                    let len = pointer.len();
                    pointer.push_str(&format!("/{index}"));
                    self.node(events, item, pointer, depth + 1)?;
                    pointer.truncate(len);
                    index += 1;
                }
            }
            Event::MappingStart(..) => loop {
                let (key, span) = next_node(events)?;
                let key = match key {
                    Event::MappingEnd => break,
                    Event::Scalar(text, ..) => Some(text.into_owned()),
                    other => {
                        skip_node(events, other)?;
                        None
                    }
                };
                let line = span.start.line() as u64;
                let (value, _) = next_node(events)?;
                let len = pointer.len();
                if let Some(key) = &key {
                    pointer.push_str(&pointer_of(&[key]));
                    self.lines.entry(pointer.clone()).or_insert(line);
                }
                self.node(events, value, pointer, depth + 1)?;
                pointer.truncate(len);
            },
            _ => {}
        }
        Some(())
    }
}

/// Walks the kustomization graph from `dir`, checking every referenced path.
struct ReferenceCheck<'a> {
    root: &'a SourceRoot,
    max_file_size: u64,
    /// The directories checked, and whether as a source of plugin configurations.
    visited: HashSet<(PathBuf, bool)>,
    /// The first kustomization read: the one built.
    top: Option<Map<String, Value>>,
}

impl ReferenceCheck<'_> {
    /// Checks the kustomization in `dir`; `plugins`: its resources are plugin configurations
    /// (it is listed under `generators`, `transformers` or `validators`).
    fn check_dir(&mut self, dir: &Path, plugins: bool) -> Result<(), KustomizeError> {
        if !self.visited.insert((dir.to_owned(), plugins)) {
            return Ok(());
        }
        let shown_dir = self.root.relative(dir).to_owned();
        let found: Vec<PathBuf> = KUSTOMIZATION_FILES
            .iter()
            .map(|name| dir.join(name))
            .filter(|path| path.is_file())
            .collect();
        let file = match found.as_slice() {
            [] => return Err(KustomizeError::NotAKustomization { dir: shown_dir }),
            [file] => file,
            _ => return Err(KustomizeError::MultipleKustomizations { dir: shown_dir }),
        };
        let shown = self.root.relative(file).to_owned();
        let text = self
            .root
            .read_to_string(file, self.max_file_size)
            .map_err(|source| KustomizeError::Reference {
                file: shown.clone(),
                field: "kustomization".into(),
                source,
            })?;
        let parsed = parse_kustomization(&text, &shown)?;
        let Some(fields) = parsed.fields else {
            return Ok(());
        };
        if self.top.is_none() {
            self.top = Some(fields);
        }
        for reference in parsed.references {
            let resolved = self
                .root
                .resolve_from(dir, &reference.reference)
                .map_err(|source| KustomizeError::Reference {
                    file: shown.clone(),
                    field: reference.field.clone(),
                    source,
                })?;
            let configures = PLUGIN_FIELDS.contains(&reference.field.as_str())
                || (plugins && ["resources", "bases"].contains(&reference.field.as_str()));
            if reference.may_be_kustomization && resolved.is_dir() {
                self.check_dir(&resolved, configures)?;
            } else if configures && resolved.is_file() {
                let config = self.root.relative(&resolved).to_owned();
                let text = self
                    .root
                    .read_to_string(&resolved, self.max_file_size)
                    .map_err(|source| KustomizeError::Reference {
                        file: shown.clone(),
                        field: reference.field.clone(),
                        source,
                    })?;
                check_plugin_config(&text, &config, &reference.field)?;
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

/// The annotation kustomize writes with `buildMetadata: [originAnnotations]`.
const ORIGIN_ANNOTATION: &str = "config.kubernetes.io/origin";

/// What the reference check learnt of the kustomization that is built.
struct TopKustomization {
    /// Its `sortOptions`, carried over to the temporary kustomization.
    sort_options: Option<Value>,
    /// Whether it asks for origin annotations itself (then they are kept).
    wants_origins: bool,
    /// Whether it is a `kind: Component` (listed under `components`, not `resources`).
    is_component: bool,
}

impl TopKustomization {
    fn new(top: Option<&Map<String, Value>>) -> Self {
        let wants_origins = top
            .and_then(|k| k.get("buildMetadata"))
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(|i| i == "originAnnotations"));
        Self {
            sort_options: top.and_then(|k| k.get("sortOptions")).cloned(),
            wants_origins,
            is_component: top.and_then(|k| k.get("kind")).and_then(Value::as_str)
                == Some("Component"),
        }
    }
}

/// A temporary kustomization, outside the source root, that builds `dir` with origin
/// annotations.
struct Wrapper {
    dir: tempfile::TempDir,
    /// Its path with symbolic links resolved (kustomize's origin paths are relative to it).
    path: PathBuf,
}

impl Wrapper {
    fn new(dir: &Path, top: &TopKustomization) -> Result<Self, KustomizeError> {
        let temp = tempfile::Builder::new()
            .prefix("gitops-render-kustomize-")
            .tempdir()
            .map_err(KustomizeError::Wrapper)?;
        let path = std::fs::canonicalize(temp.path()).map_err(KustomizeError::Wrapper)?;
        // kustomize refuses absolute resource directories; a relative one may leave the
        // kustomization's directory (as overlays do).
        let resource = relative_path(&path, dir);
        let field = if top.is_component {
            "components"
        } else {
            "resources"
        };
        let mut kustomization = serde_json::json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "buildMetadata": ["originAnnotations"],
        });
        kustomization[field] = serde_json::json!([resource.to_string_lossy()]);
        if let Some(sort_options) = &top.sort_options {
            kustomization["sortOptions"] = sort_options.clone();
        }
        // JSON is YAML.
        std::fs::write(path.join("kustomization.yaml"), kustomization.to_string())
            .map_err(KustomizeError::Wrapper)?;
        Ok(Self { dir: temp, path })
    }
}

/// The path from directory `from` to `to`, both absolute: `..` up to their common ancestor,
/// then down.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for component in &to[common..] {
        path.push(component);
    }
    path
}

/// `base.join(relative)` with `.` and `..` resolved lexically.
fn join_lexically(base: &Path, relative: &Path) -> PathBuf {
    let mut path = base.to_owned();
    for component in relative.components() {
        match component {
            Component::ParentDir => {
                path.pop();
            }
            Component::CurDir => {}
            other => path.push(other),
        }
    }
    path
}

/// Gives each document of kustomize's output the file it comes from, from its origin
/// annotation, and removes the annotation unless `keep`.
struct OriginMapper<'a> {
    root: &'a SourceRoot,
    wrapper: &'a Path,
    max_file_size: u64,
    keep: bool,
    /// The text of each file read so far (`None`: unreadable).
    texts: HashMap<PathBuf, Option<String>>,
    /// The documents of each resource file parsed so far (`None`: not YAML or JSON).
    files: HashMap<PathBuf, Option<Vec<Document>>>,
}

/// One entry of a kustomization's `configMapGenerator` or `secretGenerator`.
#[derive(Debug, PartialEq)]
struct GeneratorEntry {
    field: String,
    name: String,
    line: u64,
}

/// Reads past the node that starts with `event`; `None` when the stream ends first.
fn skip_node<'a>(
    events: &mut impl Iterator<Item = (Event<'a>, granit_parser::Span)>,
    event: Event<'a>,
) -> Option<()> {
    scan_node(
        events,
        event,
        &mut String::new(),
        false,
        &mut HashSet::new(),
        0,
    )
}

/// The generator entries of a kustomization, with the lines they start on.
fn generator_entries(text: &str) -> Vec<GeneratorEntry> {
    let mut events = granit_parser::Parser::new_from_str(text).map_while(Result::ok);
    let mut entries = Vec::new();
    if !events.any(|(event, _)| matches!(event, Event::MappingStart(..))) {
        return entries;
    }
    while let Some((key, _)) = next_node(&mut events) {
        let key = match key {
            Event::Scalar(key, ..) => key.into_owned(),
            Event::MappingEnd => break,
            other => {
                if skip_node(&mut events, other).is_none() {
                    break;
                }
                String::new()
            }
        };
        let Some((value, _)) = next_node(&mut events) else {
            break;
        };
        let is_generator = key == "configMapGenerator" || key == "secretGenerator";
        if !(is_generator && matches!(value, Event::SequenceStart(..))) {
            if skip_node(&mut events, value).is_none() {
                break;
            }
            continue;
        }
        while let Some((item, span)) = next_node(&mut events) {
            match item {
                Event::SequenceEnd => break,
                Event::MappingStart(..) => {
                    let mut name = String::new();
                    while let Some((entry_key, _)) = next_node(&mut events) {
                        if matches!(entry_key, Event::MappingEnd) {
                            break;
                        }
                        let is_name = matches!(&entry_key, Event::Scalar(k, ..) if k == "name");
                        if !matches!(entry_key, Event::Scalar(..))
                            && skip_node(&mut events, entry_key).is_none()
                        {
                            return entries;
                        }
                        let Some((entry_value, _)) = next_node(&mut events) else {
                            return entries;
                        };
                        match entry_value {
                            Event::Scalar(value, ..) if is_name => name = value.into_owned(),
                            other => {
                                if skip_node(&mut events, other).is_none() {
                                    return entries;
                                }
                            }
                        }
                    }
                    entries.push(GeneratorEntry {
                        field: key.clone(),
                        name,
                        line: span.start.line() as u64,
                    });
                }
                other => {
                    if skip_node(&mut events, other).is_none() {
                        return entries;
                    }
                }
            }
        }
    }
    entries
}

/// An object's origin annotation, parsed.
struct OriginAnnotation {
    /// The annotation as YAML.
    value: Value,
    /// The file it names (`path`, else `configuredIn`), joined to the wrapper's directory.
    absolute: PathBuf,
    /// Whether it names a resource file (`path`), not the kustomization of a generator.
    is_resource: bool,
}

impl OriginMapper<'_> {
    /// Gives each document its origin. The resource files the annotations name are read and
    /// parsed first, each once and in parallel on rayon's pool: that parse is most of the
    /// mapping's own cost.
    fn map_all(&mut self, documents: &mut [Document]) {
        let annotations: Vec<Option<OriginAnnotation>> = documents
            .iter_mut()
            .map(|document| self.annotation(&mut document.value))
            .collect();
        let mut resources: Vec<&Path> = annotations
            .iter()
            .flatten()
            .filter(|a| a.is_resource && !self.files.contains_key(&a.absolute))
            .map(|a| a.absolute.as_path())
            .collect();
        resources.sort_unstable();
        resources.dedup();
        let (root, max_file_size) = (self.root, self.max_file_size);
        let parsed: Vec<(PathBuf, Option<Vec<Document>>)> = resources
            .into_par_iter()
            .map(|absolute| {
                let text = root.read_to_string(absolute, max_file_size).ok();
                let documents = text
                    .as_deref()
                    .and_then(|text| parse_resource(root, absolute, text));
                (absolute.to_owned(), documents)
            })
            .collect();
        self.files.extend(parsed);
        for (document, annotation) in documents.iter_mut().zip(annotations) {
            if let Some(annotation) = annotation {
                self.map(document, &annotation);
            }
        }
    }

    /// The origin annotation of `object`, parsed (removed from the object unless kept).
    fn annotation(&self, object: &mut Value) -> Option<OriginAnnotation> {
        let annotation = self.take_annotation(object)?;
        let value = serde_saphyr::from_str::<Value>(&annotation).ok()?;
        let (reference, is_resource) = match (
            value.get("path").and_then(Value::as_str),
            value.get("configuredIn").and_then(Value::as_str),
        ) {
            (Some(path), _) => (path, true),
            (None, Some(kustomization)) => (kustomization, false),
            (None, None) => return None,
        };
        let absolute = join_lexically(self.wrapper, Path::new(reference));
        Some(OriginAnnotation {
            value,
            absolute,
            is_resource,
        })
    }

    fn map(&mut self, document: &mut Document, annotation: &OriginAnnotation) {
        let OriginAnnotation {
            value: origin,
            absolute,
            is_resource,
        } = annotation;
        let Ok(relative) = absolute.strip_prefix(self.root.path()) else {
            return;
        };
        let mut mapped = Origin::new(relative);
        if *is_resource {
            if let Some((index, line)) = self.locate(absolute, &document.value) {
                mapped = mapped.with_document(index).with_line(line);
            }
        } else if let Some(line) = self.generator_line(absolute, origin, &document.value) {
            mapped = mapped.with_line(line);
        }
        document.origin = mapped;
    }

    /// The line of the generator entry (in the kustomization `file`) that made `object`: the
    /// entry of the generator kind the origin names whose `name` is the longest part of the
    /// object's name (kustomize adds prefixes, suffixes and a hash).
    fn generator_line(&mut self, file: &Path, origin: &Value, object: &Value) -> Option<u64> {
        let field = match origin
            .pointer("/configuredBy/kind")
            .and_then(Value::as_str)?
        {
            "ConfigMapGenerator" => "configMapGenerator",
            "SecretGenerator" => "secretGenerator",
            _ => return None,
        };
        let name = object.pointer("/metadata/name").and_then(Value::as_str)?;
        let text = self.text(file)?;
        generator_entries(text)
            .into_iter()
            .filter(|entry| entry.field == field && !entry.name.is_empty())
            .filter(|entry| name.contains(entry.name.as_str()))
            .max_by_key(|entry| entry.name.len())
            .map(|entry| entry.line)
    }

    /// The text of a file of the root, read once (`None`: unreadable or too large).
    fn text(&mut self, file: &Path) -> Option<&str> {
        let root = self.root;
        let max_file_size = self.max_file_size;
        self.texts
            .entry(file.to_owned())
            .or_insert_with(|| root.read_to_string(file, max_file_size).ok())
            .as_deref()
    }

    /// The origin annotation's text; removed from the object unless kept.
    fn take_annotation(&self, object: &mut Value) -> Option<String> {
        let annotations = object
            .get_mut("metadata")?
            .get_mut("annotations")?
            .as_object_mut()?;
        let text = annotations.get(ORIGIN_ANNOTATION)?.as_str()?.to_owned();
        if !self.keep {
            annotations.remove(ORIGIN_ANNOTATION);
            if annotations.is_empty() {
                object["metadata"]
                    .as_object_mut()
                    .expect("found metadata above")
                    .remove("annotations");
            }
        }
        Some(text)
    }

    /// The document of `file` that `object` was built from: the only one of the same kind and
    /// API group whose name is the object's name or a part of it (kustomize adds prefixes,
    /// suffixes and hashes). `None` when there is not exactly one.
    fn locate(&mut self, absolute: &Path, object: &Value) -> Option<(usize, u64)> {
        if !self.files.contains_key(absolute) {
            let root = self.root;
            let documents = self
                .text(absolute)
                .and_then(|text| parse_resource(root, absolute, text));
            self.files.insert(absolute.to_owned(), documents);
        }
        let documents = self.files.get(absolute)?.as_ref()?;
        let text = |value: &Value, pointer: &str| {
            value
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let group = |value: &Value| {
            text(value, "/apiVersion").map(|v| gitops_core::split_api_version(&v).0.to_owned())
        };
        let kind = text(object, "/kind");
        let name = text(object, "/metadata/name").unwrap_or_default();
        let same_kind: Vec<&Document> = documents
            .iter()
            .filter(|d| text(&d.value, "/kind") == kind && group(&d.value) == group(object))
            .collect();
        let pick = |candidates: Vec<&Document>| match candidates.as_slice() {
            [only] => Some((only.origin.document, only.origin.line)),
            _ => None,
        };
        let exact: Vec<&Document> = same_kind
            .iter()
            .copied()
            .filter(|d| text(&d.value, "/metadata/name").as_deref() == Some(name.as_str()))
            .collect();
        if !exact.is_empty() {
            return pick(exact);
        }
        let contained: Vec<&Document> = same_kind
            .iter()
            .copied()
            .filter(|d| {
                text(&d.value, "/metadata/name").is_some_and(|n| !n.is_empty() && name.contains(&n))
            })
            .collect();
        if !contained.is_empty() {
            return pick(contained);
        }
        pick(same_kind)
    }
}

/// The documents of a resource file (`text`, read from `absolute`) of the root: JSON for a
/// `.json` file, else YAML. `None` when outside the root or not valid.
fn parse_resource(root: &SourceRoot, absolute: &Path, text: &str) -> Option<Vec<Document>> {
    let relative = absolute.strip_prefix(root.path()).ok()?.to_owned();
    let is_json = relative
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        gitops_core::parse_json_documents(text, relative).ok()
    } else {
        gitops_core::parse_yaml_documents(text, relative).ok()
    }
}

impl KustomizeRenderer {
    /// Runs `kustomize build` on `target`; errors name `shown_dir`.
    async fn build(
        &self,
        request: &RenderRequest,
        target: &Path,
        shown_dir: &Path,
    ) -> Result<String, RenderError> {
        let root = request.root();
        let args = vec![
            "build".into(),
            target.to_owned().into_os_string(),
            "--load-restrictor".into(),
            "LoadRestrictionsRootOnly".into(),
        ];
        let output = ToolRun::within(&self.binary, args, root.path(), &self.limits)
            .run(request.cancellation())
            .await;
        match output {
            Ok(output) => Ok(output),
            Err(ProcessError::Cancelled { .. }) => Err(RenderError::Cancelled),
            Err(source) => {
                let message = failure_message(root, &source);
                Err(KustomizeError::Build {
                    dir: shown_dir.to_owned(),
                    message,
                    source,
                }
                .into())
            }
        }
    }
}

#[async_trait::async_trait]
impl Renderer for KustomizeRenderer {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let progress = ProgressScope::start(request, "kustomize");
        let root = request.root();
        let dir = request.resolve_dir()?;
        let relative = root.relative(&dir).to_owned();
        let shown_dir = if relative.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            relative.clone()
        };
        let top = {
            let root = root.clone();
            let dir = dir.clone();
            let max_file_size = self.limits.max_file_size();
            tokio::task::spawn_blocking(move || -> Result<TopKustomization, RenderError> {
                let mut check = ReferenceCheck {
                    root: &root,
                    max_file_size,
                    visited: HashSet::new(),
                    top: None,
                };
                check.check_dir(&dir, false)?;
                root.check_tree(root.path(), max_file_size)?;
                Ok(TopKustomization::new(check.top.as_ref()))
            })
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?
        };
        let wrapper = Wrapper::new(&dir, &top)?;
        let (output, with_origins) = match self.build(request, &wrapper.path, &shown_dir).await {
            Ok(output) => (output, true),
            Err(RenderError::Kustomize(error))
                if matches!(
                    &*error,
                    KustomizeError::Build {
                        source: ProcessError::Failed { .. },
                        ..
                    }
                ) =>
            {
                // Build the directory itself: its error is about the user's files only. Should it
                // build (a kustomization that cannot be a resource of another), its objects
                // keep the lines of kustomize's output as origins.
                let output = self.build(request, &dir, &shown_dir).await?;
                tracing::debug!(dir = %EscapedPath(&shown_dir), %error, "built without origin annotations");
                (output, false)
            }
            Err(error) => return Err(error),
        };
        let origin = PathBuf::from(format!("kustomize build {}", shown_dir.display()));
        let mut documents =
            gitops_core::parse_yaml_documents_with(&output, origin, request.parse_limits())
                .map_err(KustomizeError::Output)?;
        let plain = request
            .substitution()
            .map(|_| plain_scalars(&output, &documents))
            .unwrap_or_default();
        let mut mapper = OriginMapper {
            root,
            wrapper: &wrapper.path,
            max_file_size: self.limits.max_file_size(),
            keep: top.wants_origins,
            texts: HashMap::new(),
            files: HashMap::new(),
        };
        if with_origins {
            mapper.map_all(&mut documents);
        }
        drop(wrapper.dir);
        progress.finish_documents(documents, &plain, KustomizeError::Output)
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

    #[test]
    fn folds_keys_as_go_does() {
        assert_eq!(go_fold("Resources"), "resources");
        assert_eq!(go_fold("\u{17f}ecret"), "secret");
        assert_eq!(go_fold("\u{212a}ind"), "kind");
        assert_eq!(go_fold("f\u{130}les"), "files");
        assert_eq!(go_fold("f\u{131}les"), "files");
        assert_ne!(go_fold("f\u{e9}les"), "feles");
        // A plugin configuration field spelt so is read by kustomize as `valuesFile`: refused
        // when it is remote.
        let error = check_plugin_config(
            "kind: HelmChartInflationGenerator\nvaluesF\u{130}le: https://example.com/v.yaml\n",
            Path::new("kustomization.yaml"),
            "generators",
        )
        .unwrap_err();
        assert!(matches!(error, KustomizeError::Remote { .. }), "{error}");
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
            top: None,
        }
        .check_dir(&start, false)
    }

    #[test]
    fn finds_generator_entries_with_their_lines() {
        let text = "# c\nresources: [a.yaml]\nconfigMapGenerator:\n- name: web\n  literals: [a=b]\n- literals: [c=d]\n  name: web-config\n- {name: flow}\nsecretGenerator:\n- options: {labels: {a: b}}\n  name: s\nimages:\n- name: x\n";
        let entry = |field: &str, name: &str, line| GeneratorEntry {
            field: field.into(),
            name: name.into(),
            line,
        };
        assert_eq!(
            generator_entries(text),
            [
                entry("configMapGenerator", "web", 4),
                entry("configMapGenerator", "web-config", 6),
                entry("configMapGenerator", "flow", 8),
                entry("secretGenerator", "s", 10),
            ]
        );
        assert!(generator_entries("- a\n").is_empty());
        assert!(generator_entries("configMapGenerator: [").is_empty());
    }

    fn refused(text: &str) -> KustomizeError {
        kustomization_references(text, Path::new("k/kustomization.yaml")).expect_err(text)
    }

    #[test]
    fn refuses_keys_that_are_not_exact_field_names() {
        for (text, place, key, line) in [
            (
                "RESOURCES:\n- http://127.0.0.1:1/x.yaml\n",
                "",
                "RESOURCES",
                Some(1),
            ),
            (
                "kind: Kustomization\nResources: [../../outside]\n",
                "",
                "Resources",
                Some(2),
            ),
            // Go's folding: the long s and the Kelvin sign match `s` and `k`.
            ("re\u{17f}ources: [x]\n", "", "re\u{17f}ources", Some(1)),
            ("\u{212a}ind: Kustomization\n", "", "\u{212a}ind", Some(1)),
            (
                "patches:\n- path: a.yaml\n- PATH: ../../x\n",
                "patches[1]",
                "PATH",
                Some(3),
            ),
            (
                "patchesJson6902:\n- Path: x\n",
                "patchesJson6902[0]",
                "Path",
                Some(2),
            ),
            (
                "replacements:\n- pAth: x\n",
                "replacements[0]",
                "pAth",
                Some(2),
            ),
            (
                "configMapGenerator:\n- name: a\n  FILES: [../../etc/passwd]\n",
                "configMapGenerator[0]",
                "FILES",
                Some(3),
            ),
            (
                "secretGenerator:\n- Envs: [x]\n",
                "secretGenerator[0]",
                "Envs",
                Some(2),
            ),
            ("openapi:\n  PATH: x.json\n", "openapi", "PATH", Some(2)),
            ("HelmCharts:\n- name: x\n", "", "HelmCharts", Some(1)),
            ("inventory: {}\n", "", "inventory", Some(1)),
            // Through an alias: the key has no line of its own at the place it is used.
            (
                "commonAnnotations: &p {a: b}\nnamePrefix: x\npatches:\n- *p\n",
                "patches[0]",
                "a",
                None,
            ),
        ] {
            match refused(text) {
                KustomizeError::UnknownField {
                    place: p,
                    key: k,
                    line: l,
                    ..
                } => assert_eq!((p.as_str(), k.as_str(), l), (place, key, line), "{text}"),
                other => panic!("{text}: {other}"),
            }
        }
        // Printed escaped: a key cannot forge a line.
        let err = refused("\"a\\nERROR forged\": 1\n");
        assert!(!err.to_string().contains('\n'), "{err}");
        // Exact names, deprecated ones included, pass.
        let ok = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nbases: [b]\npatchesStrategicMerge: [p.yaml]\npatchesJson6902:\n- path: j.yaml\n  target: {kind: A, name: b}\nimageTags: []\nvars: []\ncommonLabels: {a: b}\nopenapi: {path: s.json}\nconfigMapGenerator:\n- name: c\n  files: [k=f.txt]\n  env: e.env\n  options: {disableNameSuffixHash: true}\n";
        let references = kustomization_references(ok, Path::new("k")).unwrap();
        let shown: Vec<String> = references.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "bases: b",
                "patchesStrategicMerge: p.yaml",
                "patchesJson6902.path: j.yaml",
                "openapi.path: s.json",
                "configMapGenerator.files: f.txt",
                "configMapGenerator.env: e.env"
            ]
        );
    }

    #[test]
    fn refuses_merge_keys_and_helm_fields() {
        for text in [
            "<<: {resources: [http://127.0.0.1:1/x.yaml]}\n",
            "base: &b {resources: [../../outside]}\n<<: *b\n",
            "patches:\n- <<: {path: ../../x}\n",
            "\"<<\": {}\n",
        ] {
            assert!(
                matches!(refused(text), KustomizeError::MergeKey { .. }),
                "{text}"
            );
        }
        for field in HELM_FIELDS {
            assert!(matches!(
                refused(&format!("{field}: {{}}\n")),
                KustomizeError::HelmCharts { .. }
            ));
        }
        assert!(matches!(
            refused("generators: [http://127.0.0.1:1/g]\n"),
            KustomizeError::Remote { .. }
        ));
        // Aliases are resolved as kustomize resolves them: the reference is seen where used.
        assert!(matches!(
            refused("nameSuffix: &u http://127.0.0.1:1/x.yaml\nresources: [*u]\n"),
            KustomizeError::Remote { .. }
        ));
        assert!(matches!(
            refused("metadata: {annotations: &p {path: http://127.0.0.1:1/p}}\npatches: [*p]\n"),
            KustomizeError::Remote { .. }
        ));
    }

    #[test]
    fn plugin_configurations_may_not_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let patch = "apiVersion: builtin\nkind: PatchTransformer\nmetadata:\n  name: p\n";
        write(d, "ok/kustomization.yaml", "transformers: [t.yaml]\n");
        write(d, "ok/t.yaml", &format!("{patch}path: p.yaml\n"));
        write(d, "ok/p.yaml", "");
        check(d, "ok").unwrap();
        // A file, an inline configuration, and the resources of a kustomization listed as a
        // transformer, with the field in any case.
        write(d, "file/kustomization.yaml", "transformers: [t.yaml]\n");
        write(
            d,
            "file/t.yaml",
            &format!("{patch}PATH: http://127.0.0.1:1/p\n"),
        );
        write(
            d,
            "inline/kustomization.yaml",
            "generators:\n- |\n  apiVersion: builtin\n  kind: ConfigMapGenerator\n  metadata: {name: c}\n  fIles: [k=https://127.0.0.1:1/x]\n",
        );
        write(d, "dir/kustomization.yaml", "validators: [../tdir]\n");
        write(d, "tdir/kustomization.yaml", "resources: [t.yaml]\n");
        write(
            d,
            "tdir/t.yaml",
            &format!("{patch}path\u{17f}: [http://127.0.0.1:1/p]\n"),
        );
        write(d, "merge/kustomization.yaml", "transformers: [t.yaml]\n");
        write(d, "merge/t.yaml", &format!("{patch}<<: {{path: x}}\n"));
        for (start, expected) in [
            (
                "file",
                "file/t.yaml: transformers configuration: PATH: remote reference",
            ),
            (
                "inline",
                "inline/kustomization.yaml: generators configuration: fIles: remote reference",
            ),
            (
                "dir",
                "tdir/t.yaml: resources configuration: path\u{17f}: remote reference",
            ),
            ("merge", "merge/t.yaml:5: YAML merge keys"),
        ] {
            let err = check(d, start).expect_err(start);
            assert!(err.to_string().starts_with(expected), "{start}: {err}");
        }
        // The resources of an ordinary kustomization are objects, not configurations.
        write(d, "plain/kustomization.yaml", "resources: [cm.yaml]\n");
        write(
            d,
            "plain/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  path: http://example.com\n",
        );
        check(d, "plain").unwrap();
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
        write(d, "twice/kustomization.yaml", "resources: []\n");
        write(d, "twice/Kustomization", "resources: []\n");
        assert!(matches!(
            check(d, "twice"),
            Err(KustomizeError::MultipleKustomizations { .. })
        ));
        // A transformer may be a kustomization of its own: it is checked too.
        write(d, "tr/kustomization.yaml", "transformers:\n- ../bad\n");
        let err = check(d, "tr").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad/kustomization.yaml: resources:"),
            "{err}"
        );
        write(d, "helm/kustomization.yaml", "helmCharts:\n- name: x\n");
        assert!(matches!(
            check(d, "helm"),
            Err(KustomizeError::HelmCharts { .. })
        ));
    }
}
