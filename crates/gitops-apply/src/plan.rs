//! Ordering: resolving every object's kind, filling namespaces, reading per-object policies and
//! putting the set in apply order (waves, stages, kinds, then namespace and name). The reviewed
//! [`Plan`](crate::Plan) builds on this [`ApplyOrder`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use gitops_core::{GroupKind, Manifest, ObjectId, Origin};
use kube::discovery::{ApiResource, Discovery, Scope};
use serde_json::Value;

/// Our annotation for the ordering wave of an object (an integer, default 0; lower first).
pub const WAVE_ANNOTATION: &str = "apply.gitops.rs/wave";
/// Argo CD's sync-wave annotation, honoured when ours is absent.
pub const ARGO_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
/// `disabled`: the object is never written (nor pruned while it stays in the set).
pub const RECONCILE_ANNOTATION: &str = "apply.gitops.rs/reconcile";
/// Flux's equivalent of [`RECONCILE_ANNOTATION`].
pub const FLUX_RECONCILE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// `IfNotPresent`: the object is created when absent and never updated.
pub const SSA_ANNOTATION: &str = "apply.gitops.rs/ssa";
/// Flux's equivalent of [`SSA_ANNOTATION`] (`IfNotPresent`, and `Ignore` = never reconcile).
pub const FLUX_SSA_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/ssa";
/// `disabled`: the object is never pruned.
pub const PRUNE_ANNOTATION: &str = "apply.gitops.rs/prune";
/// Flux's equivalent of [`PRUNE_ANNOTATION`].
pub const FLUX_PRUNE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/prune";
/// Argo CD's sync options; `Prune=false` among them means never prune.
pub const ARGO_SYNC_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/sync-options";
/// `enabled`: take over fields other managers own (server-side apply with force).
pub const FORCE_ANNOTATION: &str = "apply.gitops.rs/force";
/// `enabled`: delete and create again when an immutable field changes.
pub const RECREATE_ANNOTATION: &str = "apply.gitops.rs/recreate";
/// Flux's `force: enabled`, which means recreate on immutable changes.
pub const FLUX_FORCE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/force";
/// Argo CD's compare options; `IgnoreExtraneous` among them on a live object that left the set
/// means it is not counted as drift (it still follows the prune rules).
pub const COMPARE_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/compare-options";

/// Whether the annotations of an object (a live one, that left the set) carry Argo CD's
/// `argocd.argoproj.io/compare-options: IgnoreExtraneous`.
///
/// ```
/// use std::collections::BTreeMap;
/// let annotations = BTreeMap::from([("argocd.argoproj.io/compare-options", "IgnoreExtraneous")]);
/// assert!(gitops_apply::ignores_extraneous(&annotations));
/// assert!(!gitops_apply::ignores_extraneous(&BTreeMap::new()));
/// ```
#[must_use]
pub fn ignores_extraneous(annotations: &BTreeMap<&str, &str>) -> bool {
    annotations
        .get(COMPARE_OPTIONS_ANNOTATION)
        .is_some_and(|options| options.split(',').any(|o| o.trim() == "IgnoreExtraneous"))
}

/// Why a set cannot be planned. Every problem of the set is listed, each with the object's
/// origin (file and line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// One or more objects are invalid; nothing was written.
    #[error("{} object(s) cannot be applied:\n{}", .problems.len(), join_lines(.problems))]
    Invalid {
        /// The problems, in the order of the set.
        problems: Vec<ObjectProblem>,
    },
    /// The target namespace the options name is not a valid namespace name; nothing was
    /// planned.
    #[error("the target namespace {} is not a valid namespace name", gitops_core::escape::Escaped(.namespace))]
    InvalidTargetNamespace {
        /// The name, as given.
        namespace: String,
        /// What is wrong with it.
        #[source]
        source: gitops_core::InvalidManifest,
    },
}

/// An object id in its inventory form, with control characters escaped: names come from the
/// repository.
fn shown(id: &ObjectId) -> String {
    gitops_core::escape::Escaped(&id.to_string()).to_string()
}

fn join_lines(problems: &[ObjectProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One object that cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectProblem {
    /// The cluster does not serve the kind and no CRD of the set defines it.
    #[error(
        "{origin}: {}: the cluster serves no kind {kind} in {api_version} and no CustomResourceDefinition of the set defines it",
        shown(.id)
    )]
    UnknownKind {
        /// The object.
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// The same object twice.
    #[error("{origin}: {} is also defined at {first}", shown(.id))]
    Duplicate {
        /// The object.
        id: ObjectId,
        /// The second definition.
        origin: Origin,
        /// The first definition.
        first: Origin,
    },
    /// A wave annotation that is not an integer.
    #[error("{origin}: {}: annotation {annotation} is {value:?}, not an integer", shown(.id))]
    InvalidWave {
        /// The object.
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
        /// The annotation read.
        annotation: &'static str,
        /// Its value.
        value: String,
    },
    /// An object with `metadata.generateName` and no name: a hook, created anew on every sync,
    /// which cannot be applied, recorded or pruned as a resource. Take the hooks out of the set
    /// first ([`crate::plan_hooks`]; [`crate::Applier::plan`] does).
    #[error(
        "{origin}: {}: an object with metadata.generateName is a hook, not a resource (take the hooks out with plan_hooks)",
        shown(.id)
    )]
    GeneratedName {
        /// The object, by its `generateName` prefix.
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
    },
}

/// How the cluster serves one kind at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindInfo {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
    /// Whether the cluster serves it now (`false` when only a CRD of the set defines it).
    pub served: bool,
}

/// The kinds a cluster serves, from discovery, plus those the CRDs of a set will add.
///
/// ```
/// use gitops_apply::{KindInfo, KindTable};
/// use kube::discovery::ApiResource;
///
/// let mut kinds = KindTable::default();
/// kinds.insert(KindInfo {
///     resource: ApiResource {
///         group: String::new(), version: "v1".into(), api_version: "v1".into(),
///         kind: "ConfigMap".into(), plural: "configmaps".into(),
///     },
///     namespaced: true,
///     served: true,
/// });
/// assert!(kinds.resolve("", "v1", "ConfigMap").is_some());
/// assert!(kinds.resolve("", "v2", "ConfigMap").is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct KindTable {
    by_version: HashMap<(String, String, String), KindInfo>,
    by_group_kind: HashMap<(String, String), KindInfo>,
}

impl KindTable {
    /// Every kind a [`Discovery`] found.
    #[must_use]
    pub fn from_discovery(discovery: &Discovery) -> Self {
        let mut table = Self::default();
        for group in discovery.groups() {
            // The preferred version first, so that it wins for lookups by group and kind.
            let preferred = group.preferred_version_or_latest().to_owned();
            let mut versions: Vec<String> = group.versions().map(str::to_owned).collect();
            versions.sort_by_key(|v| *v != preferred);
            for version in versions {
                for (resource, capabilities) in group.versioned_resources(&version) {
                    if resource.plural.contains('/') {
                        continue;
                    }
                    table.insert(KindInfo {
                        resource,
                        namespaced: capabilities.scope == Scope::Namespaced,
                        served: true,
                    });
                }
            }
        }
        table
    }

    /// Adds a kind; for lookups by group and kind, the first version added wins.
    pub fn insert(&mut self, info: KindInfo) {
        let r = &info.resource;
        self.by_group_kind
            .entry((r.group.clone(), r.kind.clone()))
            .or_insert_with(|| info.clone());
        self.by_version
            .entry((r.group.clone(), r.version.clone(), r.kind.clone()))
            .or_insert(info);
    }

    /// Adds the kinds the CustomResourceDefinitions among `manifests` define, as not served yet
    /// (kinds the cluster already serves are kept).
    pub fn add_crds<'m>(&mut self, manifests: impl IntoIterator<Item = &'m Manifest>) {
        for manifest in manifests {
            if manifest.group() != "apiextensions.k8s.io"
                || manifest.kind() != "CustomResourceDefinition"
            {
                continue;
            }
            let spec = &manifest.object()["spec"];
            let (Some(group), Some(kind), Some(plural)) = (
                spec["group"].as_str(),
                spec.pointer("/names/kind").and_then(Value::as_str),
                spec.pointer("/names/plural").and_then(Value::as_str),
            ) else {
                continue;
            };
            let namespaced = spec["scope"].as_str() != Some("Cluster");
            for version in spec["versions"].as_array().into_iter().flatten() {
                let Some(name) = version["name"].as_str() else {
                    continue;
                };
                if version["served"].as_bool() == Some(false) {
                    continue;
                }
                self.insert(KindInfo {
                    resource: ApiResource {
                        group: group.to_owned(),
                        version: name.to_owned(),
                        api_version: format!("{group}/{name}"),
                        kind: kind.to_owned(),
                        plural: plural.to_owned(),
                    },
                    namespaced,
                    served: false,
                });
            }
        }
    }

    /// Every kind the cluster serves, each at its preferred version, by group and kind.
    pub(crate) fn served_kinds(&self) -> Vec<&KindInfo> {
        let mut kinds: Vec<&KindInfo> = self.by_group_kind.values().filter(|k| k.served).collect();
        kinds.sort_by(|a, b| {
            (&a.resource.group, &a.resource.kind).cmp(&(&b.resource.group, &b.resource.kind))
        });
        kinds
    }

    /// The kind at exactly this group and version.
    #[must_use]
    pub fn resolve(&self, group: &str, version: &str, kind: &str) -> Option<&KindInfo> {
        self.by_version
            .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
    }

    /// The kind at its preferred version (for objects known only by group and kind, as in an
    /// inventory).
    #[must_use]
    pub fn resolve_group_kind(&self, group: &str, kind: &str) -> Option<&KindInfo> {
        self.by_group_kind.get(&(group.to_owned(), kind.to_owned()))
    }
}

/// The stages of an apply: each finishes (CRDs Established, Namespaces Active) before the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// CustomResourceDefinitions, Namespaces, cluster-wide RBAC and other definitions.
    Definitions,
    /// Kinds whose name ends in `Class` (StorageClass, IngressClass, custom classes).
    Classes,
    /// Everything else.
    Rest,
}

/// Decides the stage of a kind and the order of kinds within a stage; implement it to change
/// what counts as a stage.
pub trait Staging: Send + Sync {
    /// The stage of objects of `kind` (a group and kind).
    fn stage(&self, kind: &GroupKind, namespaced: bool) -> Stage;
    /// The rank of `kind` within its stage; lower first, ties broken by kind name.
    fn kind_rank(&self, kind: &GroupKind) -> usize;
}

/// The default [`Staging`]: definitions, classes, the rest; kinds in a fixed order in which each
/// kind comes after those it usually refers to.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultStaging;

/// Kinds in apply order; unknown kinds come after these.
const KIND_ORDER: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "PriorityClass",
    "NetworkPolicy",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "PodDisruptionBudget",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

impl Staging for DefaultStaging {
    fn stage(&self, kind: &GroupKind, namespaced: bool) -> Stage {
        let definition = matches!(
            (kind.group.as_str(), kind.kind.as_str()),
            ("apiextensions.k8s.io", "CustomResourceDefinition")
                | ("", "Namespace")
                | (
                    "rbac.authorization.k8s.io",
                    "ClusterRole" | "ClusterRoleBinding"
                )
        );
        if definition {
            Stage::Definitions
        } else if kind.kind.ends_with("Class") && !namespaced {
            Stage::Classes
        } else {
            Stage::Rest
        }
    }

    fn kind_rank(&self, kind: &GroupKind) -> usize {
        KIND_ORDER
            .iter()
            .position(|k| *k == kind.kind)
            .unwrap_or(KIND_ORDER.len())
    }
}

/// What an object's annotations ask of the applier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectPolicy {
    /// `false`: never written.
    pub reconcile: bool,
    /// `true`: created when absent, never updated.
    pub create_only: bool,
    /// `false`: never pruned.
    pub prune: bool,
    /// `true`: server-side apply with force (take over conflicting fields).
    pub force: bool,
    /// `true`: delete and create again when an immutable field changes.
    pub recreate: bool,
}

impl Default for ObjectPolicy {
    fn default() -> Self {
        Self {
            reconcile: true,
            create_only: false,
            prune: true,
            force: false,
            recreate: false,
        }
    }
}

impl ObjectPolicy {
    /// The policy the annotations of an object ask for (ours, Flux's and Argo CD's).
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let annotations = BTreeMap::from([("kustomize.toolkit.fluxcd.io/prune", "disabled")]);
    /// let policy = gitops_apply::ObjectPolicy::from_annotations(&annotations);
    /// assert!(!policy.prune);
    /// assert!(policy.reconcile);
    /// ```
    #[must_use]
    pub fn from_annotations(annotations: &BTreeMap<&str, &str>) -> Self {
        let get = |key: &str| annotations.get(key).copied().unwrap_or_default();
        let disabled = |key: &str| get(key).eq_ignore_ascii_case("disabled");
        let enabled = |key: &str| get(key).eq_ignore_ascii_case("enabled");
        let ssa = |value: &str| {
            get(SSA_ANNOTATION).eq_ignore_ascii_case(value)
                || get(FLUX_SSA_ANNOTATION).eq_ignore_ascii_case(value)
        };
        let argo_no_prune = get(ARGO_SYNC_OPTIONS_ANNOTATION)
            .split(',')
            .any(|o| o.trim() == "Prune=false");
        Self {
            reconcile: !(disabled(RECONCILE_ANNOTATION)
                || disabled(FLUX_RECONCILE_ANNOTATION)
                || ssa("Ignore")),
            create_only: ssa("IfNotPresent"),
            prune: !(disabled(PRUNE_ANNOTATION)
                || disabled(FLUX_PRUNE_ANNOTATION)
                || argo_no_prune),
            force: enabled(FORCE_ANNOTATION),
            recreate: enabled(RECREATE_ANNOTATION) || enabled(FLUX_FORCE_ANNOTATION),
        }
    }
}

/// One object of a plan.
#[derive(Debug, Clone)]
pub struct PlannedObject {
    /// The object as it will be applied (namespace filled in).
    pub manifest: Manifest,
    /// Its id.
    pub id: ObjectId,
    /// How the cluster serves its kind.
    pub kind: KindInfo,
    /// Its wave (annotation; default 0).
    pub wave: i64,
    /// Its stage.
    pub stage: Stage,
    /// The rank of its kind within the stage.
    pub kind_rank: usize,
    /// What its annotations ask for.
    pub policy: ObjectPolicy,
    /// Added by the applier (the target namespace it was asked to create): never labelled,
    /// never in the inventory, never pruned.
    pub synthesized: bool,
}

impl PlannedObject {
    fn order_key(&self) -> (i64, Stage, usize, &str, Option<&str>, &str) {
        (
            self.wave,
            self.stage,
            self.kind_rank,
            self.id.kind.as_str(),
            self.id.namespace.as_deref(),
            self.id.name.as_str(),
        )
    }
}

/// The namespace of a namespaced object that names none when no target namespace is given
/// ([`OrderOptions::target_namespace`]), as `kubectl apply` and Argo CD use it.
///
/// ```
/// assert_eq!(gitops_apply::DEFAULT_NAMESPACE, "default");
/// ```
pub const DEFAULT_NAMESPACE: &str = "default";

/// Options of [`order`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OrderOptions {
    /// Sets (overrides or fills in) the namespace of every namespaced object; without it, a
    /// namespaced object without a namespace goes to [`DEFAULT_NAMESPACE`].
    pub target_namespace: Option<String>,
    /// Adds the target namespace to the set when the set does not define it.
    pub create_target_namespace: bool,
}

impl OrderOptions {
    /// These options with [`OrderOptions::target_namespace`] set.
    ///
    /// ```
    /// let options = gitops_apply::OrderOptions::default().with_target_namespace("shop");
    /// assert_eq!(options.target_namespace.as_deref(), Some("shop"));
    /// ```
    #[must_use]
    pub fn with_target_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.target_namespace = Some(namespace.into());
        self
    }

    /// These options with [`OrderOptions::create_target_namespace`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::OrderOptions::default().with_create_target_namespace(true);
    /// assert!(options.create_target_namespace);
    /// ```
    #[must_use]
    pub fn with_create_target_namespace(mut self, value: bool) -> Self {
        self.create_target_namespace = value;
        self
    }
}

/// A set in apply order, split into groups (one per wave and stage) that are written one after
/// the other; objects of a group are written in parallel.
#[derive(Debug, Clone)]
pub struct ApplyOrder {
    objects: Vec<PlannedObject>,
    groups: Vec<std::ops::Range<usize>>,
}

impl ApplyOrder {
    /// Every object, in apply order.
    #[must_use]
    pub fn objects(&self) -> &[PlannedObject] {
        &self.objects
    }

    /// The groups, in order: each a slice of [`ApplyOrder::objects`] of one wave and stage.
    pub fn groups(&self) -> impl Iterator<Item = &[PlannedObject]> {
        self.groups.iter().map(|r| &self.objects[r.clone()])
    }
}

impl fmt::Display for ApplyOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.groups().enumerate() {
            let first = &group[0];
            writeln!(f, "group {i} (wave {}, {:?}):", first.wave, first.stage)?;
            for object in group {
                writeln!(f, "  {}", object.id.display_name())?;
            }
        }
        Ok(())
    }
}

/// The wave of an object, or the annotation and value that are not an integer.
fn wave_of(manifest: &Manifest) -> Result<i64, (&'static str, String)> {
    integer_annotation(manifest, &[WAVE_ANNOTATION, ARGO_WAVE_ANNOTATION])
}

/// The first of `annotations` that `manifest` has, read as an integer (0 when it has none), or
/// that annotation and its value when they are not an integer.
pub(crate) fn integer_annotation(
    manifest: &Manifest,
    annotations: &[&'static str],
) -> Result<i64, (&'static str, String)> {
    for &annotation in annotations {
        if let Some(value) = manifest.annotation(annotation) {
            return value
                .trim()
                .parse()
                .map_err(|_| (annotation, value.to_owned()));
        }
    }
    Ok(0)
}

/// Orders a set: resolves every kind through `kinds`, sets namespaces, reads policies and orders
/// the objects. Every problem of the set is reported at once.
///
/// ```
/// use gitops_apply::{DefaultStaging, KindInfo, KindTable, OrderOptions, order};
/// use kube::discovery::ApiResource;
///
/// let mut kinds = KindTable::default();
/// for (kind, plural, namespaced) in [("ConfigMap", "configmaps", true), ("Namespace", "namespaces", false)] {
///     kinds.insert(KindInfo {
///         resource: ApiResource { group: String::new(), version: "v1".into(),
///             api_version: "v1".into(), kind: kind.into(), plural: plural.into() },
///         namespaced, served: true,
///     });
/// }
/// let set = gitops_core::parse_manifests(
///     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
///      apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
///     "set.yaml",
/// )?;
/// let options = OrderOptions::default().with_target_namespace("shop");
/// let ordered = order(set, &kinds, &DefaultStaging, &options)?;
/// let ids: Vec<String> = ordered.objects().iter().map(|o| o.id.to_string()).collect();
/// assert_eq!(ids, ["_shop__Namespace", "shop_a__ConfigMap"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`PlanError::Invalid`] listing unknown kinds,
/// duplicates and invalid wave annotations; [`PlanError::InvalidTargetNamespace`] when the
/// options' target namespace is not a valid name.
pub fn order(
    manifests: Vec<Manifest>,
    kinds: &KindTable,
    staging: &dyn Staging,
    options: &OrderOptions,
) -> Result<ApplyOrder, PlanError> {
    let target_namespace = options
        .target_namespace
        .as_deref()
        .map(namespace_manifest)
        .transpose()?;
    let mut planner = ObjectPlanner {
        kinds,
        staging,
        options,
        seen: HashMap::new(),
        defines_target: false,
    };
    let mut problems = Vec::new();
    let mut objects = Vec::with_capacity(manifests.len() + 1);
    for manifest in manifests {
        match planner.plan(manifest) {
            Ok(object) => objects.push(object),
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(PlanError::Invalid { problems });
    }
    if !planner.defines_target
        && let Some(namespace) = target_namespace
            .and_then(|manifest| planner.target_namespace_object(manifest, &objects))
    {
        objects.push(namespace);
    }
    objects.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let groups = groups_by_wave_and_stage(&objects);
    Ok(ApplyOrder { objects, groups })
}

/// Turns the manifests of one set into [`PlannedObject`]s, one at a time, remembering what the
/// set holds so far.
struct ObjectPlanner<'a> {
    kinds: &'a KindTable,
    staging: &'a dyn Staging,
    options: &'a OrderOptions,
    /// Every id planned so far, with where it was first defined.
    seen: HashMap<ObjectId, Origin>,
    /// Whether the set defines the target namespace itself.
    defines_target: bool,
}

// A problem names the object and where it comes from; it is made once per bad object, never on
// a hot path.
#[allow(clippy::result_large_err)]
impl<'a> ObjectPlanner<'a> {
    /// Resolves the manifest's kind, sets its namespace, checks that it is the first of its id
    /// and reads its wave and policy.
    fn plan(&mut self, mut manifest: Manifest) -> Result<PlannedObject, ObjectProblem> {
        if manifest.generate_name().is_some() {
            return Err(ObjectProblem::GeneratedName {
                id: manifest.id(),
                origin: manifest.origin().clone(),
            });
        }
        let info = self.resolve_kind(&manifest)?;
        self.set_namespace(&mut manifest, info.namespaced);
        let id = manifest.id();
        self.check_first_of_its_id(&id, &manifest)?;
        let wave =
            wave_of(&manifest).map_err(|(annotation, value)| ObjectProblem::InvalidWave {
                id: id.clone(),
                origin: manifest.origin().clone(),
                annotation,
                value,
            })?;
        if manifest.group().is_empty()
            && manifest.kind() == "Namespace"
            && self.options.target_namespace.as_deref() == Some(manifest.name())
        {
            self.defines_target = true;
        }
        let group_kind = GroupKind::new(manifest.group(), manifest.kind());
        Ok(PlannedObject {
            stage: self.staging.stage(&group_kind, info.namespaced),
            kind_rank: self.staging.kind_rank(&group_kind),
            kind: info.clone(),
            policy: ObjectPolicy::from_annotations(&manifest.annotations()),
            manifest,
            id,
            wave,
            synthesized: false,
        })
    }

    fn resolve_kind(&self, manifest: &Manifest) -> Result<&'a KindInfo, ObjectProblem> {
        self.kinds
            .resolve(manifest.group(), manifest.version(), manifest.kind())
            .ok_or_else(|| ObjectProblem::UnknownKind {
                id: manifest.id(),
                origin: manifest.origin().clone(),
                api_version: manifest.api_version().to_owned(),
                kind: manifest.kind().to_owned(),
            })
    }

    /// A namespaced object goes to the target namespace, else to its own, else to
    /// [`DEFAULT_NAMESPACE`] (as kubectl and Argo CD do); a cluster-scoped one loses any
    /// namespace it names.
    fn set_namespace(&self, manifest: &mut Manifest, namespaced: bool) {
        if namespaced {
            if let Some(target) = &self.options.target_namespace {
                manifest.set_namespace(Some(target));
            } else if manifest.namespace().is_none_or(str::is_empty) {
                manifest.set_namespace(Some(DEFAULT_NAMESPACE));
            }
        } else if manifest.namespace().is_some() {
            manifest.set_namespace(None);
        }
    }

    fn check_first_of_its_id(
        &mut self,
        id: &ObjectId,
        manifest: &Manifest,
    ) -> Result<(), ObjectProblem> {
        if let Some(first) = self.seen.get(id) {
            return Err(ObjectProblem::Duplicate {
                id: id.clone(),
                origin: manifest.origin().clone(),
                first: first.clone(),
            });
        }
        self.seen.insert(id.clone(), manifest.origin().clone());
        Ok(())
    }

    /// The target namespace, created only (never pruned) in the first wave, when the options
    /// ask for it and the cluster serves Namespaces.
    fn target_namespace_object(
        &self,
        manifest: Manifest,
        objects: &[PlannedObject],
    ) -> Option<PlannedObject> {
        if !self.options.create_target_namespace {
            return None;
        }
        let info = self.kinds.resolve("", "v1", "Namespace")?;
        Some(PlannedObject {
            id: manifest.id(),
            kind: info.clone(),
            wave: objects.iter().map(|o| o.wave).min().unwrap_or(0).min(0),
            stage: Stage::Definitions,
            kind_rank: self.staging.kind_rank(&GroupKind::new("", "Namespace")),
            policy: ObjectPolicy {
                create_only: true,
                prune: false,
                ..ObjectPolicy::default()
            },
            synthesized: true,
            manifest,
        })
    }
}

/// The Namespace object named `name`, once the name is checked as the API server would.
fn namespace_manifest(name: &str) -> Result<Manifest, PlanError> {
    let invalid = |source| PlanError::InvalidTargetNamespace {
        namespace: name.to_owned(),
        source,
    };
    gitops_core::check_namespace_name(name).map_err(invalid)?;
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
    });
    Manifest::new(object, Origin::new("<target namespace>")).map_err(invalid)
}

/// The runs of objects (already in order) that share a wave and a stage.
fn groups_by_wave_and_stage(objects: &[PlannedObject]) -> Vec<std::ops::Range<usize>> {
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        match groups.last_mut() {
            Some(last)
                if objects[last.start].wave == object.wave
                    && objects[last.start].stage == object.stage =>
            {
                last.end = i + 1;
            }
            _ => groups.push(i..i + 1),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: if group.is_empty() {
                version.into()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    fn kinds() -> KindTable {
        let mut table = KindTable::default();
        for (group, version, kind, plural, namespaced) in [
            ("", "v1", "ConfigMap", "configmaps", true),
            ("", "v1", "Namespace", "namespaces", false),
            ("", "v1", "Service", "services", true),
            ("apps", "v1", "Deployment", "deployments", true),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                false,
            ),
            (
                "storage.k8s.io",
                "v1",
                "StorageClass",
                "storageclasses",
                false,
            ),
            (
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
            ),
        ] {
            table.insert(KindInfo {
                resource: resource(group, version, kind, plural),
                namespaced,
                served: true,
            });
        }
        table
    }

    fn parse(yaml: &str) -> Vec<Manifest> {
        gitops_core::parse_manifests(yaml, "set.yaml").unwrap()
    }

    fn ids(plan: &ApplyOrder) -> Vec<String> {
        plan.objects().iter().map(|o| o.id.display_name()).collect()
    }

    const MIXED: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b, namespace: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: shop}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
";

    #[test]
    fn orders_by_stage_then_kind_then_name() {
        let plan = order(
            parse(MIXED),
            &kinds(),
            &DefaultStaging,
            &OrderOptions::default(),
        )
        .unwrap();
        let ids: Vec<String> = plan.objects().iter().map(|o| o.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "_shop__Namespace",
                "_reader_rbac.authorization.k8s.io_ClusterRole",
                "_fast_storage.k8s.io_StorageClass",
                "shop_a__ConfigMap",
                "shop_b__ConfigMap",
                "shop_web__Service",
                "shop_web_apps_Deployment",
            ],
            "{plan}"
        );
        let stages: Vec<Vec<Stage>> = plan
            .groups()
            .map(|g| g.iter().map(|o| o.stage).collect())
            .collect();
        assert_eq!(
            stages,
            [
                vec![Stage::Definitions, Stage::Definitions],
                vec![Stage::Classes],
                vec![Stage::Rest; 4],
            ]
        );
    }

    #[test]
    fn waves_come_before_stages_and_argo_waves_are_honoured() {
        let yaml = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: late, namespace: x, annotations: {argocd.argoproj.io/sync-wave: \"2\"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: early, namespace: x, annotations: {apply.gitops.rs/wave: \"-1\", argocd.argoproj.io/sync-wave: \"5\"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: x}
";
        let plan = order(
            parse(yaml),
            &kinds(),
            &DefaultStaging,
            &OrderOptions::default(),
        )
        .unwrap();
        assert_eq!(
            ids(&plan),
            ["ConfigMap x/early", "Namespace x", "ConfigMap x/late"]
        );
        let waves: Vec<i64> = plan.groups().map(|g| g[0].wave).collect();
        assert_eq!(waves, [-1, 0, 2]);
    }

    #[test]
    fn reports_every_problem_with_its_origin() {
        let yaml = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: nons}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: x}
---
apiVersion: v1
kind: Namespace
metadata: {name: x, annotations: {argocd.argoproj.io/sync-wave: soon}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: x}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: x}
";
        let err = order(
            parse(yaml),
            &kinds(),
            &DefaultStaging,
            &OrderOptions::default(),
        )
        .unwrap_err();
        let PlanError::Invalid { problems } = &err else {
            panic!("expected invalid objects, got {err}");
        };
        assert_eq!(problems.len(), 3, "{err}");
        assert!(matches!(problems[0], ObjectProblem::UnknownKind { .. }));
        assert!(matches!(problems[1], ObjectProblem::InvalidWave { .. }));
        assert!(matches!(problems[2], ObjectProblem::Duplicate { .. }));
        let text = err.to_string();
        assert!(text.contains("set.yaml:5"), "{text}");
        assert!(text.contains("is also defined at set.yaml:13"), "{text}");
    }

    #[test]
    fn a_namespaced_object_without_namespace_goes_to_default() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nons}\n";
        let plan = order(
            parse(yaml),
            &kinds(),
            &DefaultStaging,
            &OrderOptions::default(),
        )
        .unwrap();
        assert_eq!(plan.objects()[0].id.namespace.as_deref(), Some("default"));
        assert_eq!(plan.objects()[0].manifest.namespace(), Some("default"));
    }

    #[test]
    fn an_invalid_target_namespace_is_an_error_naming_it() {
        let yaml = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n";
        for name in ["Team_A", "", "a/b", "x\u{202e}y"] {
            let options = OrderOptions::default()
                .with_target_namespace(name)
                .with_create_target_namespace(true);
            let err = order(parse(yaml), &kinds(), &DefaultStaging, &options).unwrap_err();
            assert!(
                matches!(&err, PlanError::InvalidTargetNamespace { namespace, .. } if namespace == name),
                "{err}"
            );
            let text = err.to_string();
            assert!(text.contains("target namespace"), "{text}");
            assert!(!text.contains('\u{202e}'), "the name is escaped: {text}");
        }
    }

    #[test]
    fn target_namespace_overrides_fills_and_is_created() {
        let yaml = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: elsewhere}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader, namespace: ignored}
";
        let options = OrderOptions::default()
            .with_target_namespace("team")
            .with_create_target_namespace(true);
        let plan = order(parse(yaml), &kinds(), &DefaultStaging, &options).unwrap();
        assert_eq!(
            ids(&plan),
            [
                "Namespace team",
                "ClusterRole.rbac.authorization.k8s.io reader",
                "ConfigMap team/a",
                "ConfigMap team/b"
            ]
        );
        let namespace = &plan.objects()[0];
        assert!(namespace.synthesized && namespace.policy.create_only && !namespace.policy.prune);
        assert!(plan.objects()[1].manifest.namespace().is_none());
    }

    #[test]
    fn target_namespace_defined_in_the_set_is_not_added_twice() {
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n";
        let options = OrderOptions::default()
            .with_target_namespace("team")
            .with_create_target_namespace(true);
        let plan = order(parse(yaml), &kinds(), &DefaultStaging, &options).unwrap();
        assert_eq!(plan.objects().len(), 1);
        assert!(!plan.objects()[0].synthesized);
    }

    #[test]
    fn custom_resources_of_a_crd_in_the_set_resolve() {
        let yaml = "\
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: x}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
  versions: [{name: v1, served: true, storage: true}]
";
        let manifests = parse(yaml);
        let mut table = kinds();
        table.add_crds(&manifests);
        let plan = order(manifests, &table, &DefaultStaging, &OrderOptions::default()).unwrap();
        assert_eq!(
            ids(&plan),
            [
                "CustomResourceDefinition.apiextensions.k8s.io widgets.example.com",
                "Widget.example.com x/w"
            ]
        );
        let widget = &plan.objects()[1];
        assert!(!widget.kind.served);
        assert_eq!(widget.kind.resource.plural, "widgets");
        assert_eq!(widget.stage, Stage::Rest);
    }

    #[test]
    fn policies_from_our_flux_and_argo_annotations() {
        let policy = |pairs: &[(&str, &str)]| {
            ObjectPolicy::from_annotations(&pairs.iter().copied().collect())
        };
        assert_eq!(policy(&[]), ObjectPolicy::default());
        assert!(!policy(&[(RECONCILE_ANNOTATION, "disabled")]).reconcile);
        assert!(!policy(&[(FLUX_RECONCILE_ANNOTATION, "disabled")]).reconcile);
        assert!(!policy(&[(FLUX_SSA_ANNOTATION, "Ignore")]).reconcile);
        assert!(policy(&[(SSA_ANNOTATION, "IfNotPresent")]).create_only);
        assert!(!policy(&[(PRUNE_ANNOTATION, "disabled")]).prune);
        assert!(!policy(&[(ARGO_SYNC_OPTIONS_ANNOTATION, "Replace=true, Prune=false")]).prune);
        assert!(policy(&[(FORCE_ANNOTATION, "enabled")]).force);
        assert!(policy(&[(FLUX_FORCE_ANNOTATION, "enabled")]).recreate);
        assert!(policy(&[(PRUNE_ANNOTATION, "enabled")]).prune);
    }

    #[test]
    fn a_generate_name_hook_is_never_ordered_as_a_resource() {
        let yaml = "\
apiVersion: v1
kind: ConfigMap
metadata: {generateName: report-, namespace: x, annotations: {argocd.argoproj.io/hook: PostSync}}
";
        let err = order(
            parse(yaml),
            &kinds(),
            &DefaultStaging,
            &OrderOptions::default(),
        )
        .unwrap_err();
        let PlanError::Invalid { problems } = &err else {
            panic!("expected invalid objects, got {err}");
        };
        assert!(
            matches!(problems[..], [ObjectProblem::GeneratedName { .. }]),
            "{err}"
        );
        assert!(
            err.to_string().contains(
                "set.yaml:1: x_report-__ConfigMap: an object with metadata.generateName is a hook"
            ),
            "{err}"
        );
    }
}
