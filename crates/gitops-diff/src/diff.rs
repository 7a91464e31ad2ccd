//! The comparison: desired against live, with what we last applied, producing field-level
//! changes and the RFC 6902 operations that bring live in line.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use gitops_core::escape::Escaped;
use gitops_core::{Manifest, ObjectId};
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::fieldpath::{FieldSet, FieldsV1Error, canonical_json, item_key};
use crate::ignore::{IgnoreRule, PathPattern, PathStep};
use crate::normalise::{NormaliseError, Normaliser, SecretStringData, Side};
use crate::quantity::Quantity;
use crate::schema::{FieldSchema, ListKey, ListType, Schema};

/// The annotation `kubectl apply` (client side) records the applied configuration in; the
/// mask shown instead of Secret values.
pub use gitops_core::secret::{LAST_APPLIED_ANNOTATION, SECRET_MASK};

/// An error while diffing one object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// Neither a desired nor a live object was given.
    #[error("nothing to compare: neither a desired nor a live object")]
    NothingToCompare,
    /// The object is not a JSON object with apiVersion, kind and metadata.name.
    #[error("{side:?} object is not a Kubernetes object: {message}")]
    NotAnObject {
        /// Which side.
        side: Side,
        /// What is missing.
        message: &'static str,
    },
    /// The desired and live objects are not the same object.
    #[error("desired {desired} and live {live} are different objects")]
    DifferentObjects {
        /// The desired object's id.
        desired: String,
        /// The live object's id.
        live: String,
    },
    /// A normaliser failed.
    #[error("normalising {id}")]
    Normalise {
        /// The object.
        id: String,
        /// The normaliser's error.
        #[source]
        source: NormaliseError,
    },
    /// A managedFields entry has a bad fieldsV1 tree.
    #[error(
        "{id}: managedFields of manager \"{}\"",
        gitops_core::escape::Escaped(manager)
    )]
    ManagedFields {
        /// The object.
        id: String,
        /// The field manager of the entry.
        manager: String,
        /// The parse error.
        #[source]
        source: FieldsV1Error,
    },
    /// The last-applied-configuration annotation is not JSON.
    #[error("{id}: annotation {LAST_APPLIED_ANNOTATION} is not JSON")]
    LastAppliedAnnotation {
        /// The object.
        id: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Diffing a rendered manifest failed; says where the manifest came from.
    #[error("manifest from {origin}")]
    Manifest {
        /// The manifest's origin: file, document and line.
        origin: String,
        /// The error.
        #[source]
        source: Box<DiffError>,
    },
    /// The work was cancelled.
    #[error("diff cancelled after {done} of {total} objects")]
    Cancelled {
        /// Objects diffed before cancellation.
        done: usize,
        /// Objects asked for.
        total: usize,
    },
}

/// Where "what we last applied" comes from, for detecting fields desired no longer sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LastApplied {
    /// The fields our manager owns through an `Apply` entry of `metadata.managedFields`; if there
    /// is none, the `kubectl.kubernetes.io/last-applied-configuration` annotation.
    #[default]
    ManagedFieldsOrAnnotation,
    /// Only the `Apply` entry of our manager in `metadata.managedFields`.
    ManagedFields,
    /// Only the last-applied-configuration annotation.
    Annotation,
    /// Nothing: fields desired no longer sets are not reported.
    Nothing,
}

/// The state of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffStatus {
    /// Live matches desired.
    InSync,
    /// Desired exists, live does not.
    Create,
    /// Live differs from desired.
    Update,
    /// Live exists, desired does not.
    Delete,
}

/// What happened to one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// Desired sets a field live lacks.
    Added,
    /// Desired and live hold different values.
    Modified,
    /// We applied the field before; desired no longer sets it.
    Removed,
}

/// One field-level difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// A readable path: `spec.template.spec.containers[name=web].image`.
    pub path: String,
    /// The JSON pointer of the field in the live object (`/-` for an item appended to a list).
    pub pointer: String,
    /// Added, modified or removed.
    pub kind: ChangeKind,
    /// The live value (masked for Secret data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The desired value (masked for Secret data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// The diff of one object. Its `Debug` form, like every output, masks a Secret's values.
#[derive(Clone, PartialEq, Serialize)]
pub struct ObjectDiff {
    /// The object.
    pub id: ObjectId,
    /// In sync, create, update or delete.
    pub status: DiffStatus,
    /// The field-level changes (empty unless the status is update).
    pub changes: Vec<Change>,
    #[serde(skip)]
    pub(crate) operations: Vec<PatchOperation>,
    #[serde(skip)]
    pub(crate) secret: bool,
}

impl std::fmt::Debug for ObjectDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let operations: Vec<Value> = self
            .operations
            .iter()
            .map(|op| {
                let mut op = serde_json::to_value(op).unwrap_or(Value::Null);
                let pointer = op
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if self.secret
                    && let Some(value) = op.get_mut("value")
                {
                    *value = mask_secret_at(&pointer, value, None);
                }
                op
            })
            .collect();
        f.debug_struct("ObjectDiff")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("changes", &self.changes)
            .field("operations", &operations)
            .field("secret", &self.secret)
            .finish()
    }
}

impl ObjectDiff {
    /// Whether live matches desired.
    #[must_use]
    pub fn is_in_sync(&self) -> bool {
        self.status == DiffStatus::InSync
    }

    /// Whether the object is a core Secret (whose values every output masks).
    #[must_use]
    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

/// Compares desired with live objects.
///
/// ```
/// use gitops_diff::{DiffStatus, Differ};
/// use serde_json::json;
///
/// let differ = Differ::builder("gitops-rs").build();
/// let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
///     "metadata": {"name": "web", "namespace": "shop"},
///     "spec": {"replicas": 2, "template": {"spec": {"containers": [
///         {"name": "web", "image": "nginx:1.27", "resources": {"requests": {"cpu": "1"}}}]}}}});
/// // Live as the server returns it: defaults added, the quantity rewritten.
/// let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
///     "metadata": {"name": "web", "namespace": "shop", "uid": "1", "generation": 1},
///     "spec": {"replicas": 2, "revisionHistoryLimit": 10, "template": {"spec": {
///         "restartPolicy": "Always",
///         "containers": [{"name": "web", "image": "nginx:1.27",
///             "imagePullPolicy": "IfNotPresent", "resources": {"requests": {"cpu": "1000m"}}}]}}}});
/// let diff = differ.diff(Some(&desired), Some(&live))?;
/// assert_eq!(diff.status, DiffStatus::InSync);
/// assert!(!differ.needs_apply(&desired, Some(&live))?);
///
/// let mut drifted = live.clone();
/// drifted["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
/// let diff = differ.diff(Some(&desired), Some(&drifted))?;
/// assert_eq!(diff.changes[0].path, "spec.template.spec.containers[name=web].image");
/// assert_eq!(diff.changes[0].before, Some(json!("nginx:1.26")));
/// # Ok::<(), gitops_diff::DiffError>(())
/// ```
#[derive(Clone)]
pub struct Differ {
    pub(crate) schema: Arc<Schema>,
    field_manager: String,
    pub(crate) ignore_rules: Vec<IgnoreRule>,
    normalisers: Vec<Arc<dyn Normaliser>>,
    last_applied: LastApplied,
}

impl std::fmt::Debug for Differ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Differ")
            .field("field_manager", &self.field_manager)
            .field("ignore_rules", &self.ignore_rules)
            .field(
                "normalisers",
                &self
                    .normalisers
                    .iter()
                    .map(|n| n.name())
                    .collect::<Vec<_>>(),
            )
            .field("last_applied", &self.last_applied)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Differ`].
#[must_use]
pub struct DifferBuilder {
    differ: Differ,
}

impl DifferBuilder {
    /// Uses this schema instead of the embedded one (for example with CRDs or a cluster's
    /// OpenAPI documents added).
    pub fn schema(mut self, schema: Arc<Schema>) -> Self {
        self.differ.schema = schema;
        self
    }

    /// Adds an ignore rule.
    pub fn ignore(mut self, rule: IgnoreRule) -> Self {
        self.differ.ignore_rules.push(rule);
        self
    }

    /// Adds a normaliser (after the default [`SecretStringData`]).
    pub fn normaliser(mut self, normaliser: impl Normaliser + 'static) -> Self {
        self.differ.normalisers.push(Arc::new(normaliser));
        self
    }

    /// Removes every normaliser, including the defaults.
    pub fn without_normalisers(mut self) -> Self {
        self.differ.normalisers.clear();
        self
    }

    /// Compares for this field manager instead (the one the applier uses for server-side
    /// apply).
    ///
    /// ```
    /// let differ = gitops_diff::Differ::builder("a").field_manager("b").build();
    /// assert_eq!(differ.field_manager(), "b");
    /// ```
    pub fn field_manager(mut self, field_manager: impl Into<String>) -> Self {
        self.differ.field_manager = field_manager.into();
        self
    }

    /// Where the last applied state comes from.
    pub fn last_applied(mut self, source: LastApplied) -> Self {
        self.differ.last_applied = source;
        self
    }

    /// The differ.
    pub fn build(self) -> Differ {
        self.differ
    }
}

/// The identity of an object read from its JSON.
pub(crate) fn object_id(object: &Value, side: Side) -> Result<ObjectId, DiffError> {
    let not = |message| DiffError::NotAnObject { side, message };
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| not("apiVersion is missing"))?;
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| not("kind is missing"))?;
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or_else(|| not("metadata.name is missing"))?;
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let (group, _) = gitops_core::split_api_version(api_version);
    Ok(ObjectId::new(group, kind, namespace, name))
}

impl Differ {
    /// A builder for a differ that compares for the given field manager (the one the applier
    /// uses for server-side apply, such as `gitops-rs`), with the embedded schema and the
    /// default normalisers.
    pub fn builder(field_manager: impl Into<String>) -> DifferBuilder {
        DifferBuilder {
            differ: Differ {
                schema: Schema::embedded(),
                field_manager: field_manager.into(),
                ignore_rules: Vec::new(),
                normalisers: vec![Arc::new(SecretStringData)],
                last_applied: LastApplied::default(),
            },
        }
    }

    /// A builder holding this differ's settings (schema, field manager, ignore rules,
    /// normalisers, last-applied source), to change some of them: an applier sets the schema
    /// and field manager per run and keeps the user's rules and normalisers.
    ///
    /// ```
    /// use gitops_diff::{Differ, IgnoreRule, Schema, Selector};
    ///
    /// let user = Differ::builder("me")
    ///     .ignore(IgnoreRule::new(Selector::default().kind("Deployment")).manager("hpa"))
    ///     .build();
    /// let per_run = user.to_builder().field_manager("gitops-rs").schema(Schema::embedded()).build();
    /// assert_eq!(per_run.field_manager(), "gitops-rs");
    /// assert_eq!(per_run.ignore_rules(), user.ignore_rules());
    /// ```
    pub fn to_builder(&self) -> DifferBuilder {
        DifferBuilder {
            differ: self.clone(),
        }
    }

    /// The ignore rules, in the order they were added.
    #[must_use]
    pub fn ignore_rules(&self) -> &[IgnoreRule] {
        &self.ignore_rules
    }

    /// The schema in use.
    #[must_use]
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The field manager whose applied fields count as "last applied".
    #[must_use]
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// Diffs a rendered manifest against its live object (if any).
    ///
    /// ```
    /// let manifests = gitops_core::parse_manifests(
    ///     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    ///     "config.yaml",
    /// )?;
    /// let other = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
    ///     "metadata": {"name": "b"}});
    /// let differ = gitops_diff::Differ::builder("gitops-rs").build();
    /// let err = differ.diff_manifest(&manifests[0], Some(&other)).unwrap_err();
    /// assert!(err.to_string().starts_with("manifest from config.yaml"), "{err}");
    /// # Ok::<(), gitops_core::ParseError>(())
    /// ```
    ///
    /// # Errors
    /// See [`Differ::diff`]; the error is wrapped in [`DiffError::Manifest`] with the manifest's
    /// origin.
    pub fn diff_manifest(
        &self,
        desired: &Manifest,
        live: Option<&Value>,
    ) -> Result<ObjectDiff, DiffError> {
        self.diff(Some(desired.object()), live)
            .map_err(|source| DiffError::Manifest {
                origin: desired.origin().to_string(),
                source: Box::new(source),
            })
    }

    /// Whether our field manager has an `Apply` entry in the live object's managedFields. An
    /// object in sync that we do not manage yet (created by another tool with the same values)
    /// still needs one apply for us to take ownership, so that later removals are detected.
    ///
    /// ```
    /// let differ = gitops_diff::Differ::builder("gitops-rs").build();
    /// let live = serde_json::json!({"metadata": {"managedFields": [
    ///     {"manager": "kubectl-client-side-apply", "operation": "Update"}]}});
    /// assert!(!differ.is_managed(&live));
    /// ```
    #[must_use]
    pub fn is_managed(&self, live: &Value) -> bool {
        live.pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .is_some_and(|entries| {
                entries.iter().any(|entry| {
                    entry.get("manager").and_then(Value::as_str)
                        == Some(self.field_manager.as_str())
                        && entry.get("operation").and_then(Value::as_str) == Some("Apply")
                })
            })
    }

    /// Whether applying `desired` would change `live`: the applier's no-op check. Stops at the
    /// first difference; `true` when there is no live object.
    ///
    /// # Errors
    /// See [`Differ::diff`].
    pub fn needs_apply(&self, desired: &Value, live: Option<&Value>) -> Result<bool, DiffError> {
        let Some(live) = live else {
            object_id(desired, Side::Desired)?;
            return Ok(true);
        };
        let diff = self.compare(desired, live, true)?;
        Ok(!diff.changes.is_empty())
    }

    /// Diffs one object. `desired` without `live` is a create, `live` without `desired` a
    /// delete.
    ///
    /// Read `live` at the `apiVersion` of `desired` (the apiserver converts between versions):
    /// the schema of the desired version is used for both. `metadata` is compared for labels,
    /// annotations (without the last-applied annotation), finalizers and owner references;
    /// identity and bookkeeping fields (`name`, `uid`, `resourceVersion`, `managedFields`, ...)
    /// and `status` are not compared.
    ///
    /// Empty values and nulls are compared as server-side apply stores them, which the fields
    /// of our manager's `Apply` entry in `metadata.managedFields` tell:
    ///
    /// - A desired empty value (`""`, `0`, `false`, `[]`, `{}`) that live lacks is in sync when
    ///   that entry owns it (the apiserver drops it: `hostNetwork: false`, `nodeSelector: {}`),
    ///   and drift when it does not (another writer removed it, which takes it from its owners,
    ///   as `kubectl patch` removing `automountServiceAccountToken: false` does; or it was never
    ///   applied). An empty associative list or set is in sync (it is never owned).
    /// - A desired `null` sets the field to its zero value and owns it: a zero live value is in
    ///   sync, as is any value in a field the entry owns (a default, such as `replicas: 1`);
    ///   another writer's value is drift (to the zero value), and so is a null map entry
    ///   (stored as `""` or `"0"`) that live lacks and the entry does not own.
    ///
    /// Without such an entry (an object we have not applied yet, or whose every field other
    /// writers took) nothing is owned: applying stores the empty values and nulls, or at least
    /// makes the entry, so they are drift. An object not applied by us yet needs that one apply
    /// anyway (see [`Differ::is_managed`]).
    ///
    /// ```
    /// use gitops_diff::{ChangeKind, Differ};
    /// use serde_json::json;
    ///
    /// let differ = Differ::builder("gitops-rs").build();
    /// let desired = json!({"apiVersion": "v1", "kind": "ServiceAccount",
    ///     "metadata": {"name": "robot", "labels": {"app": "web"}},
    ///     "automountServiceAccountToken": false});
    /// // Another writer removed the field, and with it our ownership of it.
    /// let live = json!({"apiVersion": "v1", "kind": "ServiceAccount",
    ///     "metadata": {"name": "robot", "labels": {"app": "web"}, "managedFields": [
    ///         {"manager": "gitops-rs", "operation": "Apply", "fieldsType": "FieldsV1",
    ///          "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}]}});
    /// let diff = differ.diff(Some(&desired), Some(&live))?;
    /// assert_eq!(diff.changes[0].path, "automountServiceAccountToken");
    /// assert_eq!(diff.changes[0].kind, ChangeKind::Added);
    /// # Ok::<(), gitops_diff::DiffError>(())
    /// ```
    ///
    /// # Errors
    /// When neither is given, when they are not Kubernetes objects or not the same object, when
    /// a normaliser fails, or when the live object's managedFields or last-applied annotation
    /// cannot be read.
    pub fn diff(
        &self,
        desired: Option<&Value>,
        live: Option<&Value>,
    ) -> Result<ObjectDiff, DiffError> {
        match (desired, live) {
            (None, None) => Err(DiffError::NothingToCompare),
            (Some(desired), None) => {
                let id = object_id(desired, Side::Desired)?;
                let normalised = self.normalise(desired, Side::Desired, &id)?;
                Ok(ObjectDiff {
                    secret: is_secret(&id),
                    id,
                    status: DiffStatus::Create,
                    changes: Vec::new(),
                    operations: vec![PatchOperation::Add(AddOperation {
                        path: json_patch::jsonptr::PointerBuf::new(),
                        value: normalised.into_owned(),
                    })],
                })
            }
            (None, Some(live)) => {
                let id = object_id(live, Side::Live)?;
                Ok(ObjectDiff {
                    secret: is_secret(&id),
                    id,
                    status: DiffStatus::Delete,
                    changes: Vec::new(),
                    operations: vec![PatchOperation::Remove(RemoveOperation {
                        path: json_patch::jsonptr::PointerBuf::new(),
                    })],
                })
            }
            (Some(desired), Some(live)) => self.compare(desired, live, false),
        }
    }

    /// Diffs a set of objects: pairs of desired and live (either may be absent). Checks the
    /// cancellation token between objects.
    ///
    /// # Errors
    /// The first object's error, or [`DiffError::Cancelled`].
    pub fn diff_all<'v>(
        &self,
        pairs: impl IntoIterator<Item = (Option<&'v Value>, Option<&'v Value>)>,
        cancel: &CancellationToken,
    ) -> Result<crate::DiffReport, DiffError> {
        let pairs: Vec<_> = pairs.into_iter().collect();
        let total = pairs.len();
        let mut objects = Vec::with_capacity(total);
        for (done, (desired, live)) in pairs.into_iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(DiffError::Cancelled { done, total });
            }
            objects.push(self.diff(desired, live)?);
        }
        Ok(crate::DiffReport::new(objects))
    }

    fn normalise<'v>(
        &self,
        object: &'v Value,
        side: Side,
        id: &ObjectId,
    ) -> Result<Cow<'v, Value>, DiffError> {
        let mut result = Cow::Borrowed(object);
        if self.normalisers.is_empty() {
            return Ok(result);
        }
        let kind = id.group_kind();
        for normaliser in &self.normalisers {
            if normaliser.applies_to(&kind) {
                normaliser
                    .normalise(result.to_mut(), side)
                    .map_err(|source| DiffError::Normalise {
                        id: id.display_name(),
                        source,
                    })?;
            }
        }
        Ok(result)
    }

    /// The fields of the managedFields entries matching `wanted`, united.
    pub(crate) fn managed_set(
        live: &Value,
        id: &ObjectId,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<Option<FieldSet>, DiffError> {
        let Some(entries) = live
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
        else {
            return Ok(None);
        };
        let mut united: Option<FieldSet> = None;
        for entry in entries.iter().filter(|e| wanted(e)) {
            let Some(fields) = entry.get("fieldsV1") else {
                continue;
            };
            let set =
                FieldSet::from_fields_v1(fields).map_err(|source| DiffError::ManagedFields {
                    id: id.display_name(),
                    manager: entry
                        .get("manager")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    source,
                })?;
            match &mut united {
                Some(u) => u.union(&set),
                None => united = Some(set),
            }
        }
        Ok(united)
    }

    /// The fields of our manager's `Apply` entry in managedFields (not a subresource's).
    pub(crate) fn applied_set(
        &self,
        live: &Value,
        id: &ObjectId,
    ) -> Result<Option<FieldSet>, DiffError> {
        Self::managed_set(live, id, |entry| self.is_our_apply_entry(entry))
    }

    /// Whether a managedFields entry is our manager's `Apply` entry (not a subresource's).
    pub(crate) fn is_our_apply_entry(&self, entry: &Value) -> bool {
        entry.get("manager").and_then(Value::as_str) == Some(self.field_manager.as_str())
            && entry.get("operation").and_then(Value::as_str) == Some("Apply")
            && entry
                .get("subresource")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
    }

    /// The fields of the last-applied-configuration annotation, if there is one.
    fn annotation_set(
        &self,
        live: &Value,
        id: &ObjectId,
        root: &FieldSchema,
    ) -> Result<Option<FieldSet>, DiffError> {
        let Some(text) = live
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
            .and_then(Value::as_str)
        else {
            return Ok(None);
        };
        let applied: Value =
            serde_json::from_str(text).map_err(|source| DiffError::LastAppliedAnnotation {
                id: id.display_name(),
                source,
            })?;
        Ok(Some(FieldSet::from_applied_object(
            &self.schema,
            root,
            &applied,
        )))
    }

    fn compare(
        &self,
        desired: &Value,
        live: &Value,
        first_only: bool,
    ) -> Result<ObjectDiff, DiffError> {
        let id = object_id(desired, Side::Desired)?;
        let live_id = object_id(live, Side::Live)?;
        // The namespace of a desired object may be left to the applier's default.
        if id.group != live_id.group
            || id.kind != live_id.kind
            || id.name != live_id.name
            || (id.namespace.is_some() && id.namespace != live_id.namespace)
        {
            return Err(DiffError::DifferentObjects {
                desired: id.display_name(),
                live: live_id.display_name(),
            });
        }
        let desired = self.normalise(desired, Side::Desired, &id)?;
        let live = self.normalise(live, Side::Live, &live_id)?;
        let api_version = desired
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let schema = &*self.schema;
        let root = schema
            .kind(api_version, &id.kind)
            .unwrap_or(&FieldSchema::Deduced);
        // What our manager's last apply holds (server-side apply), whatever the source of
        // "last applied": it tells a value the apiserver dropped (an empty value of a field
        // without a pointer type, still owned) from one removed by hand (its owner is gone).
        let applied = self.applied_set(&live, &id)?;
        let annotation = match (self.last_applied, &applied) {
            (LastApplied::Annotation, _) | (LastApplied::ManagedFieldsOrAnnotation, None) => {
                self.annotation_set(&live, &id, root)?
            }
            _ => None,
        };
        let owned = match self.last_applied {
            LastApplied::ManagedFieldsOrAnnotation => applied.as_ref().or(annotation.as_ref()),
            LastApplied::ManagedFields => applied.as_ref(),
            LastApplied::Annotation => annotation.as_ref(),
            LastApplied::Nothing => None,
        };
        // The last-applied annotation is never compared (it is kubectl's bookkeeping, and on a
        // Secret a plaintext copy of it): without it on either side, no change can carry it.
        let desired = without_last_applied(desired);
        let live = without_last_applied(live);

        let mut patterns: Vec<&PathPattern> = Vec::new();
        let mut ignored_managers: Vec<&str> = Vec::new();
        for rule in &self.ignore_rules {
            if rule.selector.matches(&desired) {
                patterns.extend(rule.paths.iter());
                ignored_managers.extend(rule.managers.iter().map(String::as_str));
            }
        }
        let ignored_sets = if ignored_managers.is_empty() {
            Vec::new()
        } else {
            Self::managed_set(&live, &id, |entry| {
                entry
                    .get("manager")
                    .and_then(Value::as_str)
                    .is_some_and(|m| ignored_managers.contains(&m))
            })?
            .into_iter()
            .collect()
        };
        let meta_schema = schema.object_meta().unwrap_or(FieldSchema::Deduced);
        let mut walk = Walk {
            schema,
            applied: applied.as_ref().unwrap_or(&EMPTY_SET),
            live: &live,
            patterns,
            first_only,
            path: Vec::new(),
            changes: Vec::new(),
            operations: Vec::new(),
        };
        let ignored: Vec<&FieldSet> = ignored_sets.iter().collect();
        walk.root(root, &meta_schema, &desired, &live, owned, &ignored);
        let secret = is_secret(&id);
        let mut changes = walk.changes;
        if secret {
            for change in &mut changes {
                mask_change(change);
            }
        }
        Ok(ObjectDiff {
            status: if changes.is_empty() {
                DiffStatus::InSync
            } else {
                DiffStatus::Update
            },
            id,
            changes,
            operations: walk.operations,
            secret,
        })
    }
}

fn is_secret(id: &ObjectId) -> bool {
    id.is_secret()
}

/// Masks the Secret values in a change: under `data` and `stringData`, and the last-applied
/// annotation (a plaintext copy of the Secret) wherever the change holds it. A modified value
/// shows as `*** (before)` and `*** (after)`, so that a change still shows.
fn mask_change(change: &mut Change) {
    let (before, after) = match change.kind {
        ChangeKind::Modified => (Some("before"), Some("after")),
        _ => (None, None),
    };
    if let Some(value) = &mut change.before {
        *value = mask_secret_at(&change.pointer, value, before);
    }
    if let Some(value) = &mut change.after {
        *value = mask_secret_at(&change.pointer, value, after);
    }
}

/// A copy of `value`, found at `pointer` in a Secret, with what is secret in it masked; a
/// single masked value gets `mark` (`*** (before)`).
pub(crate) fn mask_secret_at(pointer: &str, value: &Value, mark: Option<&str>) -> Value {
    let masked_leaf = || {
        Value::String(match mark {
            Some(mark) => format!("{SECRET_MASK} ({mark})"),
            None => SECRET_MASK.to_owned(),
        })
    };
    let steps: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|step| step.replace("~1", "/").replace("~0", "~"))
        .collect();
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    match steps.as_slice() {
        [] => gitops_core::secret::masked_secret(value),
        [field] if gitops_core::secret::SECRET_VALUE_FIELDS.contains(field) => mask_values(value),
        [field, ..] if gitops_core::secret::SECRET_VALUE_FIELDS.contains(field) => masked_leaf(),
        ["metadata"] => {
            let mut copy = value.clone();
            gitops_core::secret::mask_last_applied_in_metadata(&mut copy);
            copy
        }
        ["metadata", "annotations"] => {
            let mut copy = value.clone();
            gitops_core::secret::mask_last_applied_in_annotations(&mut copy);
            copy
        }
        ["metadata", "annotations", LAST_APPLIED_ANNOTATION, ..] => masked_leaf(),
        _ => value.clone(),
    }
}

/// Every value of a map replaced by the mask.
pub(crate) fn mask_values(value: &Value) -> Value {
    gitops_core::secret::mask_values(value)
}

/// The object without the last-applied annotation (and without `annotations` when that was the
/// only one).
fn without_last_applied(object: Cow<'_, Value>) -> Cow<'_, Value> {
    let has = object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(LAST_APPLIED_ANNOTATION));
    if !has {
        return object;
    }
    let mut object = object;
    if let Some(metadata) = object
        .to_mut()
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        let now_empty = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
            .is_some_and(|a| {
                a.remove(LAST_APPLIED_ANNOTATION);
                a.is_empty()
            });
        if now_empty {
            metadata.remove("annotations");
        }
    }
    object
}

static EMPTY_MAP: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);
static EMPTY_SET: LazyLock<FieldSet> = LazyLock::new(FieldSet::new);

/// Fields of the root object that are not compared.
fn skip_root_field(name: &str) -> bool {
    matches!(name, "apiVersion" | "kind" | "status")
}

/// Fields of metadata that are identity or server bookkeeping.
fn skip_metadata_field(name: &str) -> bool {
    matches!(
        name,
        "name"
            | "namespace"
            | "uid"
            | "resourceVersion"
            | "generation"
            | "creationTimestamp"
            | "deletionTimestamp"
            | "deletionGracePeriodSeconds"
            | "managedFields"
            | "selfLink"
    )
}

/// The zero value of a value's JSON type, as the apiserver stores a null there.
fn zero_like(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Bool(_) => Value::Bool(false),
        Value::Number(_) => Value::from(0),
        Value::String(_) => Value::String(String::new()),
        Value::Array(_) => Value::Array(Vec::new()),
        Value::Object(_) => Value::Object(Map::new()),
    }
}

/// The zero value of a map's values, as the apiserver stores a null entry.
fn zero_of(values: &FieldSchema) -> Value {
    match values {
        FieldSchema::Quantity => Value::String("0".to_owned()),
        FieldSchema::Object(_) | FieldSchema::Map(_) => Value::Object(Map::new()),
        FieldSchema::List { .. } => Value::Array(Vec::new()),
        _ => Value::String(String::new()),
    }
}

/// What our last apply owns at a node of the walk.
#[derive(Clone, Copy)]
enum Applied<'a> {
    /// No apply of ours holds the node.
    Nothing,
    /// The node's subtree of our apply's field set.
    Node(&'a FieldSet),
    /// Everything under an owned leaf (an atomic map, struct or list).
    All,
}

impl<'a> Applied<'a> {
    fn owns(self) -> bool {
        match self {
            Applied::Nothing => false,
            Applied::Node(set) => set.owns_self(),
            Applied::All => true,
        }
    }

    /// The child node. Under an owned leaf, `stored` says whether live holds a value that is
    /// not empty there: then the leaf is an atomic map, struct or list and owns all of it; else
    /// it is an empty value we applied (`labels: {}`), which owns no entries.
    fn child(self, get: impl FnOnce(&'a FieldSet) -> Option<&'a FieldSet>, stored: bool) -> Self {
        match self {
            Applied::Nothing => Applied::Nothing,
            Applied::All => Applied::All,
            Applied::Node(set) if set.owns_self() && !set.has_children() => {
                if stored {
                    Applied::All
                } else {
                    Applied::Nothing
                }
            }
            Applied::Node(set) => get(set).map_or(Applied::Nothing, Applied::Node),
        }
    }

    /// A field under a node live lacks.
    fn field(self, name: &str) -> Self {
        self.child(|set| set.field(name), false)
    }
}

/// Whether an empty desired value live lacks is what the apiserver keeps of our last apply:
/// see `Walk::absent_in_sync`.
fn empty_value_kept(
    schema: &Schema,
    node: &FieldSchema,
    desired: &Value,
    applied: Applied<'_>,
) -> bool {
    match desired {
        Value::Null => true,
        Value::Array(items) => {
            items.is_empty()
                && (matches!(
                    node,
                    FieldSchema::List {
                        list_type: ListType::Map | ListType::Set,
                        ..
                    }
                ) || applied.owns())
        }
        // A null map entry is stored (as `""`, `"0"`): see `Walk::object`.
        Value::Object(map) if !map.is_empty() => map.iter().all(|(name, value)| match value {
            Value::Null => !matches!(node, FieldSchema::Map(_)) || applied.field(name).owns(),
            _ => empty_value_kept(schema, schema.field(node, name), value, applied.field(name)),
        }),
        _ => applied.owns(),
    }
}

/// Whether Kubernetes treats the value like an absent field: null, false, 0, "", [], {} (and
/// objects of such values).
pub(crate) fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(is_empty_value),
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_u64(), b.as_u64()) {
            (Some(x), Some(y)) => x == y,
            _ => a.as_f64() == b.as_f64(),
        },
    }
}

/// Whether two scalars are equal under the field's schema.
pub(crate) fn scalars_equal(schema: &FieldSchema, desired: &Value, live: &Value) -> bool {
    if desired == live {
        return true;
    }
    match (desired, live) {
        (Value::Number(a), Value::Number(b)) if numbers_equal(a, b) => return true,
        _ => {}
    }
    match schema {
        FieldSchema::Quantity => match (Quantity::from_json(desired), Quantity::from_json(live)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        FieldSchema::IntOrString => match (desired, live) {
            (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
                n.as_i64().is_some_and(|n| s.parse::<i64>() == Ok(n))
            }
            _ => false,
        },
        _ => false,
    }
}

/// Whether `desired` holds in `live`: every field desired sets has an equal value in live
/// (live may have more fields); lists have the same items (by key for associative lists, in any
/// order for sets, in order otherwise).
pub(crate) fn subset_equal(
    schema: &Schema,
    node: &FieldSchema,
    desired: &Value,
    live: &Value,
) -> bool {
    match (desired, live) {
        (Value::Null, _) => true,
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            None | Some(Value::Null) => is_empty_value(dv),
            Some(lv) => subset_equal(schema, schema.field(node, k), dv, lv),
        }),
        (Value::Array(d), Value::Array(l)) => {
            if d.len() != l.len() {
                return false;
            }
            match node {
                FieldSchema::List {
                    list_type: ListType::Map,
                    keys,
                    items,
                } => {
                    let dk: Vec<String> = d.iter().map(|v| item_key(keys, v)).collect();
                    let lk: Vec<String> = l.iter().map(|v| item_key(keys, v)).collect();
                    let (d_index, l_index) = (KeyIndex::new(&dk), KeyIndex::new(&lk));
                    d.iter().enumerate().all(|(i, dv)| {
                        l_index
                            .nth(&dk[i], d_index.occurrence(i))
                            .is_some_and(|j| subset_equal(schema, items, dv, &l[j]))
                    })
                }
                FieldSchema::List {
                    list_type: ListType::Set,
                    items,
                    ..
                } => d
                    .iter()
                    .all(|dv| l.iter().any(|lv| scalars_equal(items, dv, lv))),
                FieldSchema::List { items, .. } => d
                    .iter()
                    .zip(l)
                    .all(|(dv, lv)| subset_equal(schema, items, dv, lv)),
                _ => d
                    .iter()
                    .zip(l)
                    .all(|(dv, lv)| subset_equal(schema, &FieldSchema::Deduced, dv, lv)),
            }
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        _ => scalars_equal(node, desired, live),
    }
}

/// Finds list items by key: a linear scan for short lists, a hash map for long ones. Items with
/// the same key (invalid in Kubernetes, but possible in input) pair up in order: the second such
/// item of desired with the second of live.
struct KeyIndex<'k> {
    keys: &'k [String],
    /// The first index of each key, for long lists.
    map: Option<std::collections::HashMap<&'k str, usize>>,
}

impl<'k> KeyIndex<'k> {
    const SCAN_UP_TO: usize = 16;

    fn new(keys: &'k [String]) -> Self {
        if keys.len() <= Self::SCAN_UP_TO {
            return KeyIndex { keys, map: None };
        }
        let mut map = std::collections::HashMap::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            // The first item wins, as in the scan.
            map.entry(key.as_str()).or_insert(i);
        }
        KeyIndex {
            keys,
            map: Some(map),
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.map {
            None => self.keys.iter().position(|k| k == key),
            Some(map) => map.get(key).copied(),
        }
    }

    /// The index of the `n`-th item (from 0) with this key.
    fn nth(&self, key: &str, n: usize) -> Option<usize> {
        let first = self.position(key)?;
        if n == 0 {
            return Some(first);
        }
        self.keys
            .iter()
            .enumerate()
            .skip(first + 1)
            .filter(|(_, k)| *k == key)
            .nth(n - 1)
            .map(|(i, _)| i)
    }

    /// How many items before `index` have the same key as it.
    fn occurrence(&self, index: usize) -> usize {
        let key = &self.keys[index];
        match self.position(key) {
            Some(first) if first < index => {
                self.keys[first..index].iter().filter(|k| *k == key).count()
            }
            _ => 0,
        }
    }
}

/// One step of the current path.
#[derive(Clone, Copy)]
enum Step<'a> {
    Field(&'a str),
    /// A list item: its index in live (`None`: appended), and what names it.
    Item {
        index: Option<usize>,
        label: Label<'a>,
    },
}

#[derive(Clone, Copy)]
enum Label<'a> {
    Keyed(&'a [ListKey], &'a Value),
    Value(&'a Value),
}

/// A field name in double quotes, with `"` escaped and control characters escaped as by
/// [`Escaped`] (which also doubles backslashes, so `\"` cannot be forged).
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_char('"')?;
        for (i, part) in self.0.split('"').enumerate() {
            if i > 0 {
                f.write_str("\\\"")?;
            }
            write!(f, "{}", Escaped(part))?;
        }
        f.write_char('"')
    }
}

/// A JSON value as JSON text; when the text still holds characters JSON leaves raw (DEL, C1
/// controls, bidirectional overrides), the whole text escaped as by [`Escaped`].
struct EscapedJson<'a>(&'a Value);

impl std::fmt::Display for EscapedJson<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.to_string();
        if gitops_core::escape::needs_escaping(&text.replace('\\', "")) {
            write!(f, "{}", Escaped(&text))
        } else {
            f.write_str(&text)
        }
    }
}

/// Whether a field name can be shown bare in a dotted path.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

struct Walk<'a> {
    schema: &'a Schema,
    /// The fields of our manager's `Apply` entry (none when it has none: not applied by us
    /// yet, or every field it had taken by other writers).
    applied: &'a FieldSet,
    /// The live object (normalised), for `applied_here`.
    live: &'a Value,
    patterns: Vec<&'a PathPattern>,
    first_only: bool,
    path: Vec<Step<'a>>,
    changes: Vec<Change>,
    operations: Vec<PatchOperation>,
}

impl<'a> Walk<'a> {
    fn done(&self) -> bool {
        self.first_only && !self.changes.is_empty()
    }

    fn pointer(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            out.push('/');
            match step {
                Step::Field(name) => {
                    out.push_str(&name.replace('~', "~0").replace('/', "~1"));
                }
                Step::Item { index: Some(i), .. } => {
                    let _ = write!(out, "{i}");
                }
                Step::Item { index: None, .. } => out.push('-'),
            }
        }
        out
    }

    fn display_path(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            match step {
                Step::Field(name) if plain_name(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Step::Field(name) => {
                    let _ = write!(out, "[{}]", Quoted(name));
                }
                Step::Item {
                    label: Label::Keyed(keys, item),
                    ..
                } => {
                    out.push('[');
                    for (i, key) in keys.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let value = item.get(&key.name).or(key.default.as_ref());
                        let name = Escaped(&key.name);
                        match value {
                            Some(Value::String(s)) => {
                                let _ = write!(out, "{name}={}", Escaped(s));
                            }
                            Some(other) => {
                                let _ = write!(out, "{name}={}", EscapedJson(other));
                            }
                            None => {
                                let _ = write!(out, "{name}=null");
                            }
                        }
                    }
                    out.push(']');
                }
                Step::Item {
                    label: Label::Value(value),
                    ..
                } => {
                    let _ = write!(out, "[{}]", EscapedJson(value));
                }
            }
        }
        out
    }

    fn ignored(&self, ignored: &[&FieldSet]) -> bool {
        if ignored.iter().any(|set| set.owns_self()) {
            return true;
        }
        if self.patterns.is_empty() {
            return false;
        }
        let texts: Vec<Cow<'_, str>> = self
            .path
            .iter()
            .map(|step| match step {
                Step::Field(name) => Cow::Borrowed(*name),
                Step::Item { index: Some(i), .. } => Cow::Owned(i.to_string()),
                Step::Item { index: None, .. } => Cow::Borrowed("-"),
            })
            .collect();
        let steps: Vec<PathStep<'_>> = self
            .path
            .iter()
            .zip(&texts)
            .map(|(step, text)| PathStep {
                text,
                item: match step {
                    Step::Field(_) => None,
                    Step::Item {
                        label: Label::Keyed(_, item) | Label::Value(item),
                        ..
                    } => Some(*item),
                },
            })
            .collect();
        self.patterns.iter().any(|p| p.matches_items(&steps))
    }

    fn record(&mut self, kind: ChangeKind, before: Option<&Value>, after: Option<&Value>) {
        let pointer = self.pointer();
        let path = json_patch::jsonptr::PointerBuf::parse(pointer.clone())
            .expect("pointers built from escaped segments are valid");
        self.operations.push(match kind {
            ChangeKind::Added => PatchOperation::Add(AddOperation {
                path,
                value: after.cloned().unwrap_or(Value::Null),
            }),
            ChangeKind::Modified => PatchOperation::Replace(ReplaceOperation {
                path,
                value: after.cloned().unwrap_or(Value::Null),
            }),
            ChangeKind::Removed => PatchOperation::Remove(RemoveOperation { path }),
        });
        self.changes.push(Change {
            path: self.display_path(),
            pointer,
            kind,
            before: before.cloned(),
            after: after.cloned(),
        });
    }

    fn root(
        &mut self,
        root: &'a FieldSchema,
        meta_schema: &'a FieldSchema,
        desired: &'a Value,
        live: &'a Value,
        owned: Option<&'a FieldSet>,
        ignored: &[&'a FieldSet],
    ) {
        let (Value::Object(d), Value::Object(l)) = (desired, live) else {
            return;
        };
        self.object(
            root,
            d,
            l,
            owned,
            ignored,
            &|name| skip_root_field(name),
            |walk, name, child_schema, dv, lv, child_owned, child_ignored| {
                if name == "metadata" {
                    walk.metadata(meta_schema, dv, lv, child_owned, child_ignored);
                } else {
                    walk.node(child_schema, dv, lv, child_owned, child_ignored);
                }
            },
        );
    }

    fn metadata(
        &mut self,
        meta_schema: &'a FieldSchema,
        desired: Option<&'a Value>,
        live: Option<&'a Value>,
        owned: Option<&'a FieldSet>,
        ignored: &[&'a FieldSet],
    ) {
        let d = desired.and_then(Value::as_object);
        let l = live.and_then(Value::as_object);
        let (d, l) = match (d, l) {
            (None, None) => return,
            (d, l) => (d.unwrap_or(&EMPTY_MAP), l.unwrap_or(&EMPTY_MAP)),
        };
        self.object(
            meta_schema,
            d,
            l,
            owned,
            ignored,
            &|name| skip_metadata_field(name),
            |walk, name, child_schema, dv, lv, child_owned, child_ignored| {
                if name == "annotations" {
                    walk.annotations(child_schema, dv, lv, child_owned, child_ignored);
                } else {
                    walk.node(child_schema, dv, lv, child_owned, child_ignored);
                }
            },
        );
    }

    fn annotations(
        &mut self,
        schema: &'a FieldSchema,
        desired: Option<&'a Value>,
        live: Option<&'a Value>,
        owned: Option<&'a FieldSet>,
        ignored: &[&'a FieldSet],
    ) {
        match (desired, live) {
            (Some(Value::Object(d)), Some(Value::Object(l))) => {
                self.object(
                    schema,
                    d,
                    l,
                    owned,
                    ignored,
                    &|name| name == LAST_APPLIED_ANNOTATION,
                    |walk, _, child_schema, dv, lv, child_owned, child_ignored| {
                        walk.node(child_schema, dv, lv, child_owned, child_ignored);
                    },
                );
            }
            _ => self.node(schema, desired, live, owned, ignored),
        }
    }

    /// Walks the fields of two objects: every field desired sets, then every owned field
    /// desired no longer sets.
    #[allow(clippy::too_many_arguments)]
    fn object(
        &mut self,
        schema: &'a FieldSchema,
        desired: &'a Map<String, Value>,
        live: &'a Map<String, Value>,
        owned: Option<&'a FieldSet>,
        ignored: &[&'a FieldSet],
        skip: &dyn Fn(&str) -> bool,
        mut visit: impl FnMut(
            &mut Self,
            &'a str,
            &'a FieldSchema,
            Option<&'a Value>,
            Option<&'a Value>,
            Option<&'a FieldSet>,
            &[&'a FieldSet],
        ),
    ) {
        for (name, dv) in desired {
            if self.done() {
                return;
            }
            // A null is compared as server-side apply stores it (see `Walk::null_against`).
            if skip(name) {
                continue;
            }
            let child_ignored: Vec<&FieldSet> =
                ignored.iter().filter_map(|s| s.field(name)).collect();
            self.path.push(Step::Field(name));
            if dv.is_null() && live.get(name).is_none() {
                // A null map entry is stored as the zero value of the map's values (`""`,
                // `"0"`), owned by us: if we do not own it, another writer removed it. A null
                // field of an object is stored as nothing.
                if let FieldSchema::Map(values) = schema
                    && !self.applied_here().owns()
                    && !self.ignored(&child_ignored)
                {
                    let zero = zero_of(values);
                    self.record(ChangeKind::Added, None, Some(&zero));
                }
                self.path.pop();
                continue;
            }
            visit(
                self,
                name,
                self.schema.field(schema, name),
                Some(dv),
                live.get(name),
                owned.and_then(|o| o.field(name)),
                &child_ignored,
            );
            self.path.pop();
        }
        let Some(owned) = owned else { return };
        let mut removed: Vec<(&'a str, &'a Value)> = owned
            .field_names()
            .filter(|name| !skip(name) && desired.get(*name).is_none())
            .filter_map(|name| live.get_key_value(name).map(|(k, v)| (k.as_str(), v)))
            .collect();
        removed.sort_by(|a, b| a.0.cmp(b.0));
        for (name, lv) in removed {
            if self.done() {
                return;
            }
            let child_ignored: Vec<&FieldSet> =
                ignored.iter().filter_map(|s| s.field(name)).collect();
            self.path.push(Step::Field(name));
            visit(
                self,
                name,
                self.schema.field(schema, name),
                None,
                Some(lv),
                owned.field(name),
                &child_ignored,
            );
            self.path.pop();
        }
    }

    fn node(
        &mut self,
        schema: &'a FieldSchema,
        desired: Option<&'a Value>,
        live: Option<&'a Value>,
        owned: Option<&'a FieldSet>,
        ignored: &[&'a FieldSet],
    ) {
        let live = live.filter(|v| !v.is_null());
        if self.done() || self.ignored(ignored) {
            return;
        }
        match (desired, live) {
            (None | Some(Value::Null), None) => {}
            (Some(Value::Null), Some(l)) => self.null_against(schema, l),
            (Some(d), None) => {
                if !self.absent_in_sync(schema, d) {
                    self.record(ChangeKind::Added, None, Some(d));
                }
            }
            (None, Some(l)) => self.removal(schema, l, owned, ignored),
            (Some(d), Some(l)) => self.both(schema, d, l, owned, ignored),
        }
    }

    /// What our last apply owns at the current path.
    fn applied_here(&self) -> Applied<'a> {
        let mut node = Applied::Node(self.applied);
        let mut live = Some(self.live);
        for step in &self.path {
            let stored = live.is_some_and(|v| !is_empty_value(v));
            node = match step {
                Step::Field(name) => node.child(|set| set.field(name), stored),
                Step::Item {
                    label: Label::Keyed(keys, item),
                    ..
                } => node.child(|set| set.key(&item_key(keys, item)), stored),
                Step::Item {
                    label: Label::Value(item),
                    ..
                } => node.child(|set| set.value(&canonical_json(item)), stored),
            };
            live = match step {
                Step::Field(name) => live.and_then(|v| v.get(*name)),
                Step::Item { index: Some(i), .. } => live.and_then(|v| v.get(*i)),
                Step::Item { index: None, .. } => None,
            };
            if matches!(node, Applied::Nothing) {
                break;
            }
        }
        node
    }

    /// Whether a desired value live lacks needs no write. A value that is not empty does. An
    /// empty one (`false`, `0`, `""`, `[]`, `{}`, or an object of such) does not when our last
    /// apply owns it: the apiserver dropped it (a typed field without a pointer type, such as
    /// `hostNetwork: false`, is not stored), and applying it again changes nothing. When we do
    /// not own it, it was removed by hand (a write that removes a field takes it from its
    /// owners) or never applied: the apply stores it again (`automountServiceAccountToken:
    /// false`). An empty associative list or set is never owned (server-side apply records
    /// only its items), so it is in sync.
    fn absent_in_sync(&self, schema: &FieldSchema, desired: &Value) -> bool {
        if !is_empty_value(desired) {
            return false;
        }
        empty_value_kept(self.schema, schema, desired, self.applied_here())
    }

    /// A desired null against a live value. Server-side apply treats a null as setting the
    /// field to the zero value of its type, and owns it: a string map entry becomes `""`, a
    /// quantity `"0"`, a pointer field is unset and may then be defaulted (`replicas: null`
    /// becomes 1). So a zero live value is in sync, and so is any value in a field our last
    /// apply owns (the apiserver put it there); another value, set by another writer, is
    /// drift, and the patch sets the zero value.
    fn null_against(&mut self, schema: &FieldSchema, live: &'a Value) {
        let zero = is_empty_value(live)
            || (matches!(schema, FieldSchema::Quantity)
                && Quantity::from_json(live).is_ok_and(|q| q.nanos() == 0));
        if zero || self.applied_here().owns() {
            return;
        }
        let zero = zero_like(live);
        self.record(ChangeKind::Modified, Some(live), Some(&zero));
    }

    /// A live value desired does not set: removed if we own it, else left alone.
    fn removal(
        &mut self,
        schema: &'a FieldSchema,
        live: &'a Value,
        owned: Option<&'a FieldSet>,
        ignored: &[&'a FieldSet],
    ) {
        let Some(owned) = owned else { return };
        if owned.owns_self() {
            self.record(ChangeKind::Removed, Some(live), None);
            return;
        }
        match live {
            Value::Object(l) => {
                self.object(
                    schema,
                    &EMPTY_MAP,
                    l,
                    Some(owned),
                    ignored,
                    &|_| false,
                    |walk, _, child_schema, dv, lv, child_owned, child_ignored| {
                        walk.node(child_schema, dv, lv, child_owned, child_ignored);
                    },
                );
            }
            Value::Array(l) => {
                // Owned parts of items: highest index first, so earlier indices stay valid.
                for (index, item) in l.iter().enumerate().rev() {
                    if self.done() {
                        return;
                    }
                    let (child, label, child_ignored) = match schema {
                        FieldSchema::List {
                            list_type: ListType::Map,
                            keys,
                            ..
                        } => {
                            let key = item_key(keys, item);
                            (
                                owned.key(&key),
                                Label::Keyed(keys, item),
                                ignored
                                    .iter()
                                    .filter_map(|s| s.key(&key))
                                    .collect::<Vec<_>>(),
                            )
                        }
                        FieldSchema::List {
                            list_type: ListType::Set,
                            ..
                        } => {
                            let value = canonical_json(item);
                            (
                                owned.value(&value),
                                Label::Value(item),
                                ignored.iter().filter_map(|s| s.value(&value)).collect(),
                            )
                        }
                        _ => continue,
                    };
                    let Some(child) = child else { continue };
                    let items = match schema {
                        FieldSchema::List { items, .. } => &**items,
                        _ => &FieldSchema::Deduced,
                    };
                    self.path.push(Step::Item {
                        index: Some(index),
                        label,
                    });
                    self.node(items, None, Some(item), Some(child), &child_ignored);
                    self.path.pop();
                }
            }
            _ => {}
        }
    }

    fn both(
        &mut self,
        schema: &'a FieldSchema,
        desired: &'a Value,
        live: &'a Value,
        owned: Option<&'a FieldSet>,
        ignored: &[&'a FieldSet],
    ) {
        match (schema, desired, live) {
            (
                FieldSchema::List {
                    list_type: ListType::Map,
                    keys,
                    items,
                },
                Value::Array(d),
                Value::Array(l),
            ) => self.map_list(keys, items, d, l, owned, ignored),
            (
                FieldSchema::List {
                    list_type: ListType::Set,
                    items,
                    ..
                },
                Value::Array(d),
                Value::Array(l),
            ) => self.set_list(items, d, l, owned),
            (_, Value::Array(_), Value::Array(_)) => {
                if !subset_equal(self.schema, schema, desired, live) {
                    self.record(ChangeKind::Modified, Some(live), Some(desired));
                }
            }
            (_, Value::Object(d), Value::Object(l)) => {
                self.object(
                    schema,
                    d,
                    l,
                    owned,
                    ignored,
                    &|_| false,
                    |walk, _, child_schema, dv, lv, child_owned, child_ignored| {
                        walk.node(child_schema, dv, lv, child_owned, child_ignored);
                    },
                );
            }
            (_, Value::Object(_) | Value::Array(_), _)
            | (_, _, Value::Object(_) | Value::Array(_)) => {
                self.record(ChangeKind::Modified, Some(live), Some(desired));
            }
            _ => {
                if !scalars_equal(schema, desired, live) {
                    self.record(ChangeKind::Modified, Some(live), Some(desired));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn map_list(
        &mut self,
        keys: &'a [ListKey],
        items: &'a FieldSchema,
        desired: &'a [Value],
        live: &'a [Value],
        owned: Option<&'a FieldSet>,
        ignored: &[&'a FieldSet],
    ) {
        let live_keys: Vec<String> = live.iter().map(|item| item_key(keys, item)).collect();
        let desired_keys: Vec<String> = desired.iter().map(|item| item_key(keys, item)).collect();
        let live_index = KeyIndex::new(&live_keys);
        let desired_index = KeyIndex::new(&desired_keys);
        let mut appended = Vec::new();
        for (position, (item, key)) in desired.iter().zip(&desired_keys).enumerate() {
            if self.done() {
                return;
            }
            let Some(index) = live_index.nth(key, desired_index.occurrence(position)) else {
                appended.push((item, key));
                continue;
            };
            let child_ignored: Vec<&FieldSet> = ignored.iter().filter_map(|s| s.key(key)).collect();
            self.path.push(Step::Item {
                index: Some(index),
                label: Label::Keyed(keys, item),
            });
            self.node(
                items,
                Some(item),
                Some(&live[index]),
                owned.and_then(|o| o.key(key)),
                &child_ignored,
            );
            self.path.pop();
        }
        if let Some(owned) = owned {
            for (index, key) in live_keys.iter().enumerate().rev() {
                if self.done() {
                    return;
                }
                if desired_index
                    .nth(key, live_index.occurrence(index))
                    .is_some()
                {
                    continue;
                }
                let Some(child) = owned.key(key) else {
                    continue;
                };
                let child_ignored: Vec<&FieldSet> =
                    ignored.iter().filter_map(|s| s.key(key)).collect();
                self.path.push(Step::Item {
                    index: Some(index),
                    label: Label::Keyed(keys, &live[index]),
                });
                self.node(items, None, Some(&live[index]), Some(child), &child_ignored);
                self.path.pop();
            }
        }
        for (item, key) in appended {
            if self.done() {
                return;
            }
            let child_ignored: Vec<&FieldSet> = ignored.iter().filter_map(|s| s.key(key)).collect();
            self.path.push(Step::Item {
                index: None,
                label: Label::Keyed(keys, item),
            });
            self.node(items, Some(item), None, None, &child_ignored);
            self.path.pop();
        }
    }

    fn set_list(
        &mut self,
        items: &'a FieldSchema,
        desired: &'a [Value],
        live: &'a [Value],
        owned: Option<&'a FieldSet>,
    ) {
        let contains =
            |list: &[Value], value: &Value| list.iter().any(|v| scalars_equal(items, value, v));
        if let Some(owned) = owned {
            for (index, item) in live.iter().enumerate().rev() {
                if self.done() {
                    return;
                }
                if contains(desired, item) || owned.value(&canonical_json(item)).is_none() {
                    continue;
                }
                self.path.push(Step::Item {
                    index: Some(index),
                    label: Label::Value(item),
                });
                self.record(ChangeKind::Removed, Some(item), None);
                self.path.pop();
            }
        }
        for item in desired {
            if self.done() {
                return;
            }
            if item.is_null() || contains(live, item) {
                continue;
            }
            self.path.push(Step::Item {
                index: None,
                label: Label::Value(item),
            });
            self.record(ChangeKind::Added, None, Some(item));
            self.path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Differ, LastApplied};

    /// Found by fuzzing (three_way_diff): items of an associative list with the same key (here
    /// no `port`, so `port=0,protocol=TCP`) all paired with the first live one, so an object
    /// differed from itself. They now pair in order.
    #[test]
    fn items_with_the_same_key_pair_in_order() {
        let object = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
            "spec": {"ports": [-1.5e-102, {}, {"image": null}]}});
        for mode in [LastApplied::ManagedFieldsOrAnnotation, LastApplied::Nothing] {
            let differ = Differ::builder("gitops-fuzz").last_applied(mode).build();
            let diff = differ.diff(Some(&object), Some(&object)).unwrap();
            assert!(diff.is_in_sync(), "{:?}", diff.changes);
            assert!(!differ.needs_apply(&object, Some(&object)).unwrap());
        }
        // Inside an atomic list too (compared whole).
        let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"ephemeralContainers": [], "unknown": [{"ports": [1, {}]}]}});
        let differ = Differ::builder("gitops-fuzz").build();
        assert!(
            differ
                .diff(Some(&object), Some(&object))
                .unwrap()
                .is_in_sync()
        );
        // A second item with a key is matched with the second live one.
        let desired = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
            "spec": {"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]}});
        let mut live = desired.clone();
        live["spec"]["ports"][1]["name"] = json!("c");
        let diff = differ.diff(Some(&desired), Some(&live)).unwrap();
        assert_eq!(diff.changes.len(), 1, "{:?}", diff.changes);
        assert_eq!(diff.changes[0].pointer, "/spec/ports/1/name");
    }
}
