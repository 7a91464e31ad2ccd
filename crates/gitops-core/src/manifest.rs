//! [`Manifest`]: one Kubernetes object as written in a source, with its [`Origin`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{GroupKind, ObjectId, split_api_version};

/// Argo CD's hook annotation (`PreSync`, `Sync`, `PostSync`, `SyncFail`, `Skip`): an object
/// carrying it is a hook, run in a sync phase instead of being applied as a resource.
///
/// ```
/// assert_eq!(gitops_core::ARGO_HOOK_ANNOTATION, "argocd.argoproj.io/hook");
/// ```
pub const ARGO_HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";

/// Helm's hook annotation (`pre-install`, `post-upgrade`, `test`, ...).
///
/// ```
/// assert_eq!(gitops_core::HELM_HOOK_ANNOTATION, "helm.sh/hook");
/// ```
pub const HELM_HOOK_ANNOTATION: &str = "helm.sh/hook";

/// Where an object came from: a file (relative to the source root where there is one), the index
/// of the YAML document in it, and the line on which that document starts.
///
/// ```
/// use gitops_core::Origin;
/// let origin = Origin::new("apps/web.yaml").with_document(1).with_line(12);
/// assert_eq!(origin.to_string(), "apps/web.yaml:12 (document 2)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    /// The file, or a description such as `helm template web` for generated output.
    pub file: Arc<Path>,
    /// The 0-based index of the document in the file.
    pub document: usize,
    /// The 1-based line on which the object starts; 0 when unknown.
    pub line: u64,
}

impl Origin {
    /// The start of a file.
    #[must_use]
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self {
            file: Arc::from(file.into()),
            document: 0,
            line: 0,
        }
    }

    /// The same file, another document.
    #[must_use]
    pub fn with_document(mut self, document: usize) -> Self {
        self.document = document;
        self
    }

    /// The same file, another line.
    #[must_use]
    pub fn with_line(mut self, line: u64) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", crate::escape::EscapedPath(&self.file))?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if self.document > 0 {
            write!(f, " (document {})", self.document + 1)?;
        }
        Ok(())
    }
}

/// Why an object is not a valid Kubernetes manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidManifest {
    /// The document is a list, a string or a number, not a mapping.
    #[error("expected a mapping (an object), found {found}")]
    NotAMapping {
        /// What was found: `a sequence`, `a string`, ...
        found: &'static str,
    },
    /// A required field is absent or empty.
    #[error("missing {field}")]
    Missing {
        /// The field: `apiVersion`, `kind` or `metadata.name`.
        field: &'static str,
    },
    /// `metadata.generateName` without `metadata.name` on an object that is not a hook: only
    /// hooks are created anew with a server-generated name; a resource needs a name of its own
    /// to be updated and pruned.
    #[error(
        "metadata.generateName \"{}\" is only allowed for hooks (objects annotated {ARGO_HOOK_ANNOTATION} or {HELM_HOOK_ANNOTATION}): set metadata.name",
        crate::escape::Escaped(generate_name)
    )]
    GenerateNameWithoutHook {
        /// The `generateName` prefix found.
        generate_name: String,
    },
    /// A field has the wrong type.
    #[error("{field} must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be: `a string`, `a mapping`, ...
        expected: &'static str,
    },
    /// A field's value does not follow Kubernetes' rules.
    #[error("{field} \"{}\" is invalid: {reason}", crate::escape::Escaped(value))]
    Malformed {
        /// The field.
        field: &'static str,
        /// The value found.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value of a Secret's `data` or `stringData` is not a string. The message names the
    /// key and the type found, never the value.
    #[error(
        "{field}.{} must be a string, found {found} (the value is not shown: this is a Secret)",
        crate::escape::Escaped(key)
    )]
    SecretValue {
        /// `data` or `stringData`.
        field: &'static str,
        /// The key.
        key: String,
        /// What was found: `a number`, `a mapping`, ...
        found: &'static str,
    },
}

/// One Kubernetes object as rendered from a source, with where it came from.
///
/// The object is kept as JSON (`serde_json::Value`, always a mapping), which is what the API
/// server speaks; `serde_json::from_value` turns it into `kube`'s `DynamicObject`. Creating one
/// validates `apiVersion`, `kind` and `metadata.name`, so the accessors below cannot fail.
///
/// ```
/// use gitops_core::{Manifest, Origin};
/// let object = serde_json::json!({
///     "apiVersion": "apps/v1",
///     "kind": "Deployment",
///     "metadata": {"name": "web", "namespace": "shop"}
/// });
/// let manifest = Manifest::new(object, Origin::new("web.yaml")).unwrap();
/// assert_eq!(manifest.kind(), "Deployment");
/// assert_eq!(manifest.group(), "apps");
/// assert_eq!(manifest.id().to_string(), "shop_web_apps_Deployment");
/// ```
///
/// Its `Debug` form masks the values of a Secret (see [`crate::secret`]).
///
/// The checks hold for every `Manifest` there is: it is made by [`Manifest::new`], deserialized
/// (which runs the same checks), or changed through methods that keep them ([`Manifest::edit`]
/// checks the object again and keeps the old one when the change breaks them).
///
/// ```
/// use gitops_core::Manifest;
/// let text = r#"{"object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": null},
///                "origin": {"file": "a.yaml", "document": 0, "line": 1}}"#;
/// let err = serde_json::from_str::<Manifest>(text).unwrap_err();
/// assert!(err.to_string().contains("missing metadata.name"), "{err}");
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedManifest")]
pub struct Manifest {
    object: Value,
    origin: Origin,
}

/// A manifest as serialized, before its checks: what [`Manifest`]'s `Deserialize` reads first.
#[derive(Deserialize)]
struct UncheckedManifest {
    object: Value,
    origin: Origin,
}

impl TryFrom<UncheckedManifest> for Manifest {
    type Error = InvalidManifest;

    fn try_from(unchecked: UncheckedManifest) -> Result<Self, Self::Error> {
        Manifest::new(unchecked.object, unchecked.origin)
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("object", &crate::secret::MaskedDebug(&self.object))
            .field("origin", &self.origin)
            .finish()
    }
}

impl Manifest {
    /// Validates `object` and wraps it with its origin.
    pub fn new(object: Value, origin: Origin) -> Result<Self, InvalidManifest> {
        validate(&object)?;
        Ok(Self { object, origin })
    }

    /// Where the object came from.
    #[must_use]
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Replaces the origin (for example after a post-render step moved the object).
    pub fn set_origin(&mut self, origin: Origin) {
        self.origin = origin;
    }

    /// The object as JSON: always a mapping.
    #[must_use]
    pub fn object(&self) -> &Value {
        &self.object
    }

    /// Changes the object with `change`, then checks it again as [`Manifest::new`] does. When the
    /// changed object fails the checks, the manifest keeps the object it had and the error says
    /// why, so a `Manifest` is always valid.
    ///
    /// ```
    /// use gitops_core::{InvalidManifest, Manifest, Origin};
    /// let object = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
    ///     "metadata": {"name": "a"}});
    /// let mut manifest = Manifest::new(object, Origin::new("a.yaml")).unwrap();
    /// manifest.edit(|object| object["data"] = serde_json::json!({"k": "v"})).unwrap();
    /// assert_eq!(manifest.object()["data"]["k"], "v");
    ///
    /// let err = manifest.edit(|object| object["metadata"] = serde_json::Value::Null).unwrap_err();
    /// assert_eq!(err, InvalidManifest::Missing { field: "metadata.name" });
    /// assert_eq!(manifest.name(), "a");
    /// ```
    pub fn edit(&mut self, change: impl FnOnce(&mut Value)) -> Result<(), InvalidManifest> {
        let mut object = self.object.clone();
        change(&mut object);
        validate(&object)?;
        self.object = object;
        Ok(())
    }

    /// Consumes the manifest, giving the JSON object.
    #[must_use]
    pub fn into_object(self) -> Value {
        self.object
    }

    fn str_at(&self, a: &str, b: Option<&str>) -> Option<&str> {
        let mut v = self.object.get(a)?;
        if let Some(b) = b {
            v = v.get(b)?;
        }
        v.as_str()
    }

    /// `apiVersion`, such as `apps/v1`.
    #[must_use]
    pub fn api_version(&self) -> &str {
        self.str_at("apiVersion", None).unwrap_or_default()
    }

    /// The API group (empty for the core group).
    #[must_use]
    pub fn group(&self) -> &str {
        split_api_version(self.api_version()).0
    }

    /// The API version without the group, such as `v1`.
    #[must_use]
    pub fn version(&self) -> &str {
        split_api_version(self.api_version()).1
    }

    /// `kind`.
    #[must_use]
    pub fn kind(&self) -> &str {
        self.str_at("kind", None).unwrap_or_default()
    }

    /// The group and kind.
    #[must_use]
    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(self.group(), self.kind())
    }

    /// `metadata.name`; for a hook that has only `metadata.generateName`, that prefix (see
    /// [`Manifest::generate_name`]).
    #[must_use]
    pub fn name(&self) -> &str {
        match self.str_at("metadata", Some("name")) {
            Some(name) if !name.is_empty() => name,
            _ => self.generate_name().unwrap_or_default(),
        }
    }

    /// `metadata.generateName` when the object has no `metadata.name`: the server then creates
    /// it under a new name made of this prefix and random characters, on every create. Only
    /// hooks (objects annotated [`ARGO_HOOK_ANNOTATION`] or [`HELM_HOOK_ANNOTATION`]) may do
    /// so: [`Manifest::new`] refuses it on any other object, which must be found again by name
    /// to be updated and pruned. `None` when the object has a name (the server ignores
    /// `generateName` then).
    ///
    /// For such an object, [`Manifest::name`] and the name in [`Manifest::id`] are the prefix:
    /// the id stands for the hook as written in the source, not for an object in the cluster,
    /// and an applier must create it (`POST`) rather than apply it by that name.
    ///
    /// ```
    /// use gitops_core::{InvalidManifest, Manifest, Origin};
    /// let job = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {
    ///     "generateName": "migrate-", "namespace": "shop",
    ///     "annotations": {"argocd.argoproj.io/hook": "PreSync"}}});
    /// let hook = Manifest::new(job.clone(), Origin::new("job.yaml")).unwrap();
    /// assert_eq!(hook.generate_name(), Some("migrate-"));
    /// assert_eq!(hook.id().to_string(), "shop_migrate-_batch_Job");
    ///
    /// let mut plain = job;
    /// plain["metadata"]["annotations"] = serde_json::json!({});
    /// let err = Manifest::new(plain, Origin::new("job.yaml")).unwrap_err();
    /// assert!(matches!(err, InvalidManifest::GenerateNameWithoutHook { .. }));
    /// assert!(err.to_string().contains("only allowed for hooks"), "{err}");
    /// ```
    #[must_use]
    pub fn generate_name(&self) -> Option<&str> {
        if self
            .str_at("metadata", Some("name"))
            .is_some_and(|name| !name.is_empty())
        {
            return None;
        }
        self.str_at("metadata", Some("generateName"))
            .filter(|prefix| !prefix.is_empty())
    }

    /// `metadata.namespace`, if set and not empty.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("metadata", Some("namespace"))
            .filter(|ns| !ns.is_empty())
    }

    /// Sets `metadata.namespace`, or removes it with `None`.
    pub fn set_namespace(&mut self, namespace: Option<&str>) {
        let metadata = self.metadata_mut();
        match namespace {
            Some(ns) => {
                metadata.insert("namespace".into(), Value::String(ns.to_owned()));
            }
            None => {
                metadata.remove("namespace");
            }
        }
    }

    /// Whether the object is a Secret, whose values no output may show
    /// ([`crate::secret::is_secret_kind`]).
    ///
    /// ```
    /// let object = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
    ///     "metadata": {"name": "db"}, "stringData": {"password": "hunter2"}});
    /// let manifest = gitops_core::Manifest::new(object, gitops_core::Origin::new("s.yaml")).unwrap();
    /// assert!(manifest.is_secret());
    /// assert!(!format!("{manifest:?}").contains("hunter2"));
    /// ```
    #[must_use]
    pub fn is_secret(&self) -> bool {
        crate::secret::is_secret_kind(self.group(), self.kind())
    }

    /// The object's identity.
    #[must_use]
    pub fn id(&self) -> ObjectId {
        ObjectId::new(self.group(), self.kind(), self.namespace(), self.name())
    }

    /// `metadata.labels` (empty when absent; values that are not strings are left out).
    #[must_use]
    pub fn labels(&self) -> BTreeMap<&str, &str> {
        self.string_map("labels")
    }

    /// `metadata.annotations` (empty when absent; values that are not strings are left out).
    #[must_use]
    pub fn annotations(&self) -> BTreeMap<&str, &str> {
        self.string_map("annotations")
    }

    /// One annotation.
    #[must_use]
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.object
            .get("metadata")?
            .get("annotations")?
            .get(key)?
            .as_str()
    }

    /// One label.
    #[must_use]
    pub fn label(&self, key: &str) -> Option<&str> {
        self.object
            .get("metadata")?
            .get("labels")?
            .get(key)?
            .as_str()
    }

    /// Sets a label, creating `metadata.labels` when needed.
    pub fn set_label(&mut self, key: &str, value: &str) {
        self.set_in_metadata_map("labels", key, value);
    }

    /// Sets an annotation, creating `metadata.annotations` when needed.
    pub fn set_annotation(&mut self, key: &str, value: &str) {
        self.set_in_metadata_map("annotations", key, value);
    }

    fn string_map(&self, field: &str) -> BTreeMap<&str, &str> {
        self.object
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        let root = self
            .object
            .as_object_mut()
            .expect("a validated manifest is a mapping");
        root.entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("a validated manifest has a mapping as metadata")
    }

    fn set_in_metadata_map(&mut self, field: &str, key: &str, value: &str) {
        let metadata = self.metadata_mut();
        let entry = metadata
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        entry
            .as_object_mut()
            .expect("made a mapping just above")
            .insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.id().display_name(), self.origin)
    }
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

fn required_string<'a>(
    parent: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<&'a str, InvalidManifest> {
    match parent.get(key) {
        None | Some(Value::Null) => Err(InvalidManifest::Missing { field }),
        Some(Value::String(s)) if s.is_empty() => Err(InvalidManifest::Missing { field }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(InvalidManifest::WrongType {
            field,
            expected: "a string",
        }),
    }
}

/// Whether `s` is a DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters,
/// starting and ending with an alphanumeric.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn validate(object: &Value) -> Result<(), InvalidManifest> {
    let Value::Object(root) = object else {
        return Err(InvalidManifest::NotAMapping {
            found: value_kind(object),
        });
    };
    let group = validate_api_version(root)?;
    let kind = validate_kind(root)?;
    let metadata = required_metadata(root)?;
    let (name, name_field) = name_or_hook_generate_name(metadata)?;
    validate_name(name, name_field)?;
    validate_namespace(metadata)?;
    validate_labels_and_annotations(metadata)?;
    if crate::secret::is_secret_kind(group, kind) {
        validate_secret_values(root)?;
    }
    validate_inventory_round_trip(group, kind, metadata, name, name_field)
}

/// Checks `apiVersion` (`<version>` or `<group>/<version>`) and returns its group.
fn validate_api_version(root: &Map<String, Value>) -> Result<&str, InvalidManifest> {
    let api_version = required_string(root, "apiVersion", "apiVersion")?;
    let (group, version) = split_api_version(api_version);
    if version.is_empty()
        || version.contains('/')
        || !version.bytes().all(|c| c.is_ascii_alphanumeric())
        || (!group.is_empty() && !is_dns_subdomain(group))
    {
        return Err(InvalidManifest::Malformed {
            field: "apiVersion",
            value: api_version.to_owned(),
            reason: "expected <version> or <group>/<version>, such as v1 or apps/v1",
        });
    }
    Ok(group)
}

/// Checks `kind`: a word of letters and digits starting with a letter.
fn validate_kind(root: &Map<String, Value>) -> Result<&str, InvalidManifest> {
    let kind = required_string(root, "kind", "kind")?;
    if !kind.starts_with(|c: char| c.is_ascii_alphabetic())
        || !kind.bytes().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(InvalidManifest::Malformed {
            field: "kind",
            value: kind.to_owned(),
            reason: "a kind is a word of letters and digits, such as Deployment",
        });
    }
    Ok(kind)
}

/// The `metadata` mapping; a missing one is reported as a missing `metadata.name`.
fn required_metadata(root: &Map<String, Value>) -> Result<&Map<String, Value>, InvalidManifest> {
    match root.get("metadata") {
        None | Some(Value::Null) => Err(InvalidManifest::Missing {
            field: "metadata.name",
        }),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(InvalidManifest::WrongType {
            field: "metadata",
            expected: "a mapping",
        }),
    }
}

/// The object's name and the field it came from: `metadata.name`, or `metadata.generateName`
/// on an Argo CD or Helm hook (the only objects that may be created under a generated name).
fn name_or_hook_generate_name(
    metadata: &Map<String, Value>,
) -> Result<(&str, &'static str), InvalidManifest> {
    match required_string(metadata, "name", "metadata.name") {
        Ok(name) => Ok((name, "metadata.name")),
        Err(missing @ InvalidManifest::Missing { .. }) => {
            let generate_name = match metadata.get("generateName") {
                None | Some(Value::Null) => return Err(missing),
                Some(Value::String(prefix)) if prefix.is_empty() => return Err(missing),
                Some(_) => required_string(metadata, "generateName", "metadata.generateName")?,
            };
            let is_hook = metadata
                .get("annotations")
                .and_then(Value::as_object)
                .is_some_and(|a| {
                    a.contains_key(ARGO_HOOK_ANNOTATION) || a.contains_key(HELM_HOOK_ANNOTATION)
                });
            if !is_hook {
                return Err(InvalidManifest::GenerateNameWithoutHook {
                    generate_name: generate_name.to_owned(),
                });
            }
            Ok((generate_name, "metadata.generateName"))
        }
        Err(other) => Err(other),
    }
}

/// The rules every kind shares for a name (path segment names); kinds add their own, which the
/// server checks.
fn validate_name(name: &str, name_field: &'static str) -> Result<(), InvalidManifest> {
    if name == "." || name == ".." || name.contains('/') || name.contains('%') || name.len() > 253 {
        return Err(InvalidManifest::Malformed {
            field: name_field,
            value: name.to_owned(),
            reason: "a name may not be '.' or '..', contain '/' or '%', or be longer than 253",
        });
    }
    Ok(())
}

/// Checks that `name` can name a namespace (a DNS label: 1 to 63 lower-case letters, digits and
/// '-', starting and ending with a letter or digit), as the API server would; for a namespace
/// that comes from configuration rather than from a manifest (a target namespace).
///
/// ```
/// use gitops_core::check_namespace_name;
///
/// assert!(check_namespace_name("team-a").is_ok());
/// assert!(check_namespace_name("Team_A").is_err());
/// assert!(check_namespace_name("").is_err());
/// ```
///
/// # Errors
/// [`InvalidManifest::Malformed`] naming the value when it is not a DNS label.
pub fn check_namespace_name(name: &str) -> Result<(), InvalidManifest> {
    if is_dns_label(name) {
        return Ok(());
    }
    Err(InvalidManifest::Malformed {
        field: "namespace",
        value: name.to_owned(),
        reason: "a namespace is a DNS label: lower-case letters, digits and '-'",
    })
}

/// `metadata.namespace`, when present and not empty, is a DNS label.
fn validate_namespace(metadata: &Map<String, Value>) -> Result<(), InvalidManifest> {
    match metadata.get("namespace") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(ns)) if ns.is_empty() || is_dns_label(ns) => Ok(()),
        Some(Value::String(ns)) => Err(InvalidManifest::Malformed {
            field: "metadata.namespace",
            value: ns.clone(),
            reason: "a namespace is a DNS label: lower-case letters, digits and '-'",
        }),
        Some(_) => Err(InvalidManifest::WrongType {
            field: "metadata.namespace",
            expected: "a string",
        }),
    }
}

/// `metadata.labels` and `metadata.annotations`, when present, are mappings of strings.
fn validate_labels_and_annotations(metadata: &Map<String, Value>) -> Result<(), InvalidManifest> {
    for (field, values_field, map_field) in [
        ("labels", "metadata.labels values", "metadata.labels"),
        (
            "annotations",
            "metadata.annotations values",
            "metadata.annotations",
        ),
    ] {
        match metadata.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                if map.values().any(|v| !v.is_string()) {
                    return Err(InvalidManifest::WrongType {
                        field: values_field,
                        expected: "strings (quote numbers and booleans)",
                    });
                }
            }
            Some(_) => {
                return Err(InvalidManifest::WrongType {
                    field: map_field,
                    expected: "a mapping",
                });
            }
        }
    }
    Ok(())
}

/// The inventory records objects in the string form of their ids, which writes ':' as "__":
/// a name holding "__" would read back as another object and never be pruned (found by the
/// `manifests` fuzz target). Namespaces, groups and kinds cannot hold '_'.
fn validate_inventory_round_trip(
    group: &str,
    kind: &str,
    metadata: &Map<String, Value>,
    name: &str,
    name_field: &'static str,
) -> Result<(), InvalidManifest> {
    let namespace = metadata.get("namespace").and_then(Value::as_str);
    let id = ObjectId::new(group, kind, namespace, name);
    if id.to_string().parse::<ObjectId>().ok().as_ref() != Some(&id) {
        return Err(InvalidManifest::Malformed {
            field: name_field,
            value: name.to_owned(),
            reason: "a name may not contain \"__\": an inventory records ':' as \"__\"",
        });
    }
    Ok(())
}

/// A Secret's `data` and `stringData` are mappings of strings (a null value is empty, as on
/// the server). The errors name the field and the key, never a value.
fn validate_secret_values(root: &Map<String, Value>) -> Result<(), InvalidManifest> {
    for field in crate::secret::SECRET_VALUE_FIELDS {
        match root.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                if let Some((key, value)) = map
                    .iter()
                    .find(|(_, v)| !matches!(v, Value::String(_) | Value::Null))
                {
                    return Err(InvalidManifest::SecretValue {
                        field,
                        key: key.clone(),
                        found: value_kind(value),
                    });
                }
            }
            Some(_) => {
                return Err(InvalidManifest::WrongType {
                    field,
                    expected: "a mapping of keys to strings",
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(object: Value) -> Result<Manifest, InvalidManifest> {
        Manifest::new(object, Origin::new("t.yaml"))
    }

    #[test]
    fn accepts_a_core_object() {
        let m = check(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}})).unwrap();
        assert_eq!(m.group(), "");
        assert_eq!(m.version(), "v1");
        assert_eq!(m.namespace(), Some("ns"));
    }

    #[test]
    fn names_each_missing_field() {
        let e = check(json!({"kind": "ConfigMap", "metadata": {"name": "a"}})).unwrap_err();
        assert_eq!(e.to_string(), "missing apiVersion");
        let e = check(json!({"apiVersion": "v1", "metadata": {"name": "a"}})).unwrap_err();
        assert_eq!(e.to_string(), "missing kind");
        let e = check(json!({"apiVersion": "v1", "kind": "ConfigMap"})).unwrap_err();
        assert_eq!(e.to_string(), "missing metadata.name");
        let e = check(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ""}}))
            .unwrap_err();
        assert_eq!(e.to_string(), "missing metadata.name");
    }

    #[test]
    fn refuses_malformed_values() {
        assert!(matches!(
            check(json!({"apiVersion": "apps/", "kind": "X", "metadata": {"name": "a"}})),
            Err(InvalidManifest::Malformed {
                field: "apiVersion",
                ..
            })
        ));
        assert!(matches!(
            check(json!({"apiVersion": "v1", "kind": "Config Map", "metadata": {"name": "a"}})),
            Err(InvalidManifest::Malformed { field: "kind", .. })
        ));
        assert!(matches!(
            check(json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a/b"}})),
            Err(InvalidManifest::Malformed {
                field: "metadata.name",
                ..
            })
        ));
        assert!(matches!(
            check(
                json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "namespace": "Bad_NS"}})
            ),
            Err(InvalidManifest::Malformed {
                field: "metadata.namespace",
                ..
            })
        ));
        assert!(matches!(
            check(
                json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"n": 1}}})
            ),
            Err(InvalidManifest::WrongType { .. })
        ));
        assert!(matches!(
            check(json!(["a"])),
            Err(InvalidManifest::NotAMapping {
                found: "a sequence"
            })
        ));
    }

    /// Found by the `manifests` fuzz target: a name holding "__" read back from the inventory
    /// as another object (":" is written "__" there).
    #[test]
    fn names_must_survive_the_inventory_form() {
        let object = |name: &str| {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": name}})
        };
        assert!(matches!(
            check(object("a===__________")),
            Err(InvalidManifest::Malformed {
                field: "metadata.name",
                ..
            })
        ));
        for fine in ["system:view", "a_b", "_a", "a_", "x:y_z"] {
            let manifest = Manifest::new(object(fine), Origin::new("f.yaml")).unwrap();
            let id = manifest.id();
            assert_eq!(id.to_string().parse::<ObjectId>().unwrap(), id, "{fine}");
        }
    }

    fn job(metadata: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata})
    }

    #[test]
    fn generate_name_is_allowed_for_argo_and_helm_hooks_only() {
        for annotation in [ARGO_HOOK_ANNOTATION, HELM_HOOK_ANNOTATION] {
            let m = check(job(json!({"generateName": "migrate-", "namespace": "shop",
                "annotations": {annotation: "PreSync"}})))
            .unwrap();
            assert_eq!(m.generate_name(), Some("migrate-"));
            assert_eq!(m.name(), "migrate-");
            assert_eq!(
                m.id(),
                ObjectId::new("batch", "Job", Some("shop"), "migrate-")
            );
        }
        let e = check(job(json!({"generateName": "migrate-",
            "annotations": {"note": "PreSync"}})))
        .unwrap_err();
        assert_eq!(
            e,
            InvalidManifest::GenerateNameWithoutHook {
                generate_name: "migrate-".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "metadata.generateName \"migrate-\" is only allowed for hooks (objects annotated \
             argocd.argoproj.io/hook or helm.sh/hook): set metadata.name"
        );
        assert!(matches!(
            check(job(json!({"generateName": "migrate-"}))),
            Err(InvalidManifest::GenerateNameWithoutHook { .. })
        ));
    }

    #[test]
    fn a_name_wins_over_generate_name() {
        let m = check(job(json!({"name": "fixed", "generateName": "migrate-"}))).unwrap();
        assert_eq!(m.generate_name(), None);
        assert_eq!(m.name(), "fixed");
    }

    #[test]
    fn generate_name_follows_the_name_rules() {
        let hook = json!({ARGO_HOOK_ANNOTATION: "PreSync"});
        // Empty or null: the name is missing, as before.
        for prefix in [json!(""), Value::Null] {
            assert_eq!(
                check(job(
                    json!({"generateName": prefix, "annotations": hook.clone()})
                )),
                Err(InvalidManifest::Missing {
                    field: "metadata.name"
                })
            );
        }
        assert_eq!(
            check(job(json!({"generateName": 3, "annotations": hook.clone()}))),
            Err(InvalidManifest::WrongType {
                field: "metadata.generateName",
                expected: "a string"
            })
        );
        for bad in ["a/b-", "..", "a__b-"] {
            assert!(
                matches!(
                    check(job(
                        json!({"generateName": bad, "annotations": hook.clone()})
                    )),
                    Err(InvalidManifest::Malformed {
                        field: "metadata.generateName",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        // The hook annotation's value must still be a string.
        assert!(matches!(
            check(job(
                json!({"generateName": "m-", "annotations": {ARGO_HOOK_ANNOTATION: 1}})
            )),
            Err(InvalidManifest::WrongType { .. })
        ));
        // Removing the hook annotation by an edit is refused, the manifest unchanged.
        let mut m = check(job(json!({"generateName": "m-", "annotations": hook}))).unwrap();
        let before = m.clone();
        assert!(
            m.edit(|o| o["metadata"]["annotations"] = json!({}))
                .is_err()
        );
        assert_eq!(m, before);
    }

    #[test]
    fn edits_metadata() {
        let mut m =
            check(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}))
                .unwrap();
        m.set_namespace(Some("ns"));
        m.set_label("app", "web");
        m.set_annotation("note", "x");
        assert_eq!(m.namespace(), Some("ns"));
        assert_eq!(m.label("app"), Some("web"));
        assert_eq!(m.annotations().get("note"), Some(&"x"));
        m.set_namespace(None);
        assert_eq!(m.namespace(), None);
        assert!(validate(m.object()).is_ok());
    }

    /// Issue #12 item 3: a manifest could be made without its checks, by `Deserialize` or
    /// `object_mut`, and a null `metadata` then panicked in the applier.
    #[test]
    fn no_way_to_a_manifest_that_breaks_the_checks() {
        let mut m =
            check(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}))
                .unwrap();
        let before = m.clone();
        for change in [
            (|o: &mut Value| o["metadata"] = Value::Null) as fn(&mut Value),
            |o| o["metadata"] = json!("text"),
            |o| o["kind"] = json!(3),
            |o| o["metadata"]["name"] = json!(""),
            |o| *o = json!([]),
        ] {
            assert!(m.edit(change).is_err());
            assert_eq!(m, before);
            // The accessors that assume the checks still work.
            m.set_label("a", "b");
            m = before.clone();
        }
        let serialized = serde_json::to_value(&m).unwrap();
        let back: Manifest = serde_json::from_value(serialized.clone()).unwrap();
        assert_eq!(back, m);
        let mut broken = serialized;
        broken["object"]["metadata"] = Value::Null;
        let err = serde_json::from_value::<Manifest>(broken).unwrap_err();
        assert!(err.to_string().contains("missing metadata.name"), "{err}");
    }
}
