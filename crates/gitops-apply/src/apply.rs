//! The applier: plan, validate, write in order, prune, and the change set it returns.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use gitops_core::escape::Escaped;
use gitops_core::secret::mask_quoted_values;
use gitops_core::{Manifest, ObjectId, Origin};
use gitops_diff::{DiffError, Differ, ObjectDiff, Schema, SchemaError};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PropagationPolicy,
};
use kube::discovery::{ApiResource, Discovery};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::counting::{RequestCounter, RequestCounts, counting_client};
use crate::health::{
    Health, HealthChecks, WaitError, WaitProgress, WaitTarget, wait_for_current_paged,
};
use crate::inventory::{
    Inventory, InventoryError, InventoryStore, OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL,
};
use crate::kube_error::KubeError;
use crate::plan::{
    DefaultStaging, KindInfo, KindTable, PlanError, PlanOptions, PlannedObject, Staging, plan,
};
use crate::takeover::{TakeoverManager, managed_fields_after_takeover, managers_taken_over};

/// The field manager used unless another is given.
pub const DEFAULT_FIELD_MANAGER: &str = "gitops-rs";

/// A set of desired objects, as a successful fetch and render produced it. The applier prunes
/// what the previous inventory lists and this set lacks, so there is deliberately no way to
/// apply (or prune) without one: after a failed fetch or render the caller has an error, not a
/// set, and [`DesiredSet::from_render`] keeps it that way.
#[derive(Debug, Clone)]
pub struct DesiredSet {
    manifests: Vec<Manifest>,
}

impl DesiredSet {
    /// The set of these objects.
    #[must_use]
    pub fn new(manifests: Vec<Manifest>) -> Self {
        Self { manifests }
    }

    /// The set of a render, or its error: `DesiredSet::from_render(render())?`.
    ///
    /// ```
    /// use gitops_apply::DesiredSet;
    /// let failed: Result<Vec<gitops_core::Manifest>, String> = Err("fetch failed".into());
    /// assert!(DesiredSet::from_render(failed).is_err());
    /// ```
    ///
    /// # Errors
    /// The render's error, unchanged.
    pub fn from_render<E>(render: Result<Vec<Manifest>, E>) -> Result<Self, E> {
        render.map(Self::new)
    }

    /// The objects.
    #[must_use]
    pub fn manifests(&self) -> &[Manifest] {
        &self.manifests
    }
}

/// What happened (or, in a dry run, would happen) to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// It did not exist and was created.
    Created,
    /// It existed and was changed.
    Configured,
    /// An immutable field changed: it was deleted and created again.
    Recreated,
    /// It matched: nothing was written.
    Unchanged,
    /// It left the set and was deleted.
    Pruned,
    /// A policy or an earlier failure kept it from being written or deleted.
    Skipped,
    /// Writing or deleting it failed.
    Failed,
}

/// A field another manager owns, named by a server-side apply conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The other field manager.
    pub manager: String,
    /// The field, such as `.data.color`.
    pub field: String,
}

/// Why one object could not be written or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Other field managers own fields this apply sets; apply with force to take them.
    #[error("conflict with other field managers: {}", describe_conflicts(.conflicts))]
    Conflict {
        /// The conflicting fields.
        conflicts: Vec<FieldConflict>,
    },
    /// The change touches immutable fields; opt in to recreate the object. Shown short: the
    /// fields and the hint to recreate, not the server's message (which can dump whole Go
    /// structs), kept in `message`.
    ///
    /// ```
    /// let error = gitops_apply::ObjectError::Immutable {
    ///     fields: vec!["spec.selector".into()],
    ///     message: "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{...}".into(),
    /// };
    /// let text = error.to_string();
    /// assert!(text.starts_with("immutable field(s) spec.selector changed"));
    /// assert!(text.contains("ApplyOptions::recreate_on_immutable"));
    /// assert!(!text.contains("LabelSelector"));
    /// ```
    #[error(
        "immutable field(s) {} changed; recreate the object to apply it (ApplyOptions::recreate_on_immutable, or the annotation {}: enabled)",
        Escaped(&.fields.join(", ")),
        crate::plan::RECREATE_ANNOTATION
    )]
    Immutable {
        /// The fields.
        fields: Vec<String>,
        /// The server's message (not shown by `Display`).
        message: String,
    },
    /// The server rejected the object (strict field validation, admission, schema). For a
    /// Secret, the values the server's message quotes are masked.
    #[error("rejected by the server ({code}): {}", Escaped(.message))]
    Rejected {
        /// The HTTP status code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The request failed (connection, timeout, server error).
    #[error("request failed")]
    Request {
        /// The failure.
        #[source]
        source: kube::Error,
    },
    /// The no-op check could not compare desired and live.
    #[error("comparing with the live object")]
    Diff {
        /// The failure.
        #[source]
        source: DiffError,
    },
    /// The live object's ownership labels ([`OWNER_NAMESPACE_LABEL`], [`OWNER_NAME_LABEL`])
    /// name another inventory: another set applies it too. It is left alone (the entry is
    /// [`Action::Skipped`], the run goes on) unless [`ApplyOptions::take_ownership`].
    ///
    /// ```
    /// let error = gitops_apply::ObjectError::OwnedByOtherInventory {
    ///     namespace: "flux-system".into(),
    ///     name: "apps".into(),
    /// };
    /// assert!(error.to_string().contains("owned by inventory flux-system/apps"));
    /// ```
    #[error(
        "owned by inventory {}/{}: left alone (take it over with ApplyOptions::take_ownership)",
        Escaped(.namespace),
        Escaped(.name)
    )]
    OwnedByOtherInventory {
        /// The other inventory's namespace (its label; empty when missing).
        namespace: String,
        /// The other inventory's name (its label; empty when missing).
        name: String,
    },
    /// The object did not settle (a CRD not Established, a Namespace not Active, a deleted
    /// object not gone) in time.
    #[error("not ready: {message}")]
    NotReady {
        /// What was waited for.
        message: String,
    },
}

/// The values of a Secret as a message could repeat them: each value of `data` and
/// `stringData` (every scalar in it, for a value of the wrong type), with its base64 form (for
/// `stringData`) or its decoded form (for `data`). Values shorter than 3 characters are left
/// out: masking them would garble the message without hiding anything worth hiding.
fn secret_values(object: &Value) -> Vec<String> {
    use base64::Engine as _;
    fn scalars(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(text) => out.push(text.clone()),
            Value::Array(items) => items.iter().for_each(|item| scalars(item, out)),
            Value::Object(map) => map.values().for_each(|item| scalars(item, out)),
            Value::Null => {}
            other => out.push(other.to_string()),
        }
    }
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut values = Vec::new();
    for field in gitops_core::secret::SECRET_VALUE_FIELDS {
        let mut found = Vec::new();
        if let Some(value) = object.get(field) {
            scalars(value, &mut found);
        }
        for value in found {
            if field == "data" {
                if let Ok(decoded) = engine.decode(value.as_bytes())
                    && let Ok(text) = String::from_utf8(decoded)
                {
                    values.push(text);
                }
            } else {
                values.push(engine.encode(value.as_bytes()));
            }
            values.push(value);
        }
    }
    values.retain(|v| v.chars().count() >= 3);
    // Longest first, so that a value containing another is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
}

/// `message` with every occurrence of `values` replaced by the mask.
fn mask_known_values(message: &str, values: &[String]) -> String {
    let mut message = message.to_owned();
    for value in values {
        if message.contains(value.as_str()) {
            message = message.replace(value.as_str(), gitops_core::secret::SECRET_MASK);
        }
    }
    message
}

fn describe_conflicts(conflicts: &[FieldConflict]) -> String {
    conflicts
        .iter()
        .map(|c| format!("{} owned by {:?}", Escaped(&c.field), c.manager))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ObjectError {
    /// [`ObjectError::from_kube`] for a request about `id`, whose content (desired or live) is
    /// `object` when known: when it is a Secret, what the server's message quotes
    /// (`Invalid value: "..."`) and every value of the Secret it repeats (`expected string, got
    /// &value.valueUnstructured{Value:...}`), as given or base64-encoded or decoded, are
    /// masked, in the message and in its causes, so that a rejected Secret's value is never
    /// printed.
    fn from_kube_about(id: &ObjectId, object: Option<&Value>, mut source: kube::Error) -> Self {
        if id.is_secret()
            && let kube::Error::Api(status) = &mut source
        {
            let values = object.map(secret_values).unwrap_or_default();
            let mask = |message: &str| mask_known_values(&mask_quoted_values(message), &values);
            status.message = mask(&status.message);
            if let Some(details) = status.details.as_mut() {
                for cause in &mut details.causes {
                    cause.message = mask(&cause.message);
                    cause.field = mask(&cause.field);
                }
            }
        }
        Self::from_kube(source)
    }

    fn from_kube(source: kube::Error) -> Self {
        let kube::Error::Api(status) = &source else {
            return Self::Request { source };
        };
        let causes = status
            .details
            .as_ref()
            .map(|d| d.causes.as_slice())
            .unwrap_or_default();
        let conflicts: Vec<FieldConflict> = causes
            .iter()
            .filter(|cause| cause.reason == "FieldManagerConflict")
            .map(|cause| FieldConflict {
                manager: conflict_manager(&cause.message).unwrap_or_else(|| cause.message.clone()),
                field: cause.field.clone(),
            })
            .collect();
        if status.code == 409 && !conflicts.is_empty() {
            return Self::Conflict { conflicts };
        }
        let immutable: Vec<String> = causes
            .iter()
            .filter(|c| c.message.contains("immutable"))
            .map(|c| c.field.clone())
            .collect();
        if status.code == 422 && !immutable.is_empty() {
            return Self::Immutable {
                fields: immutable,
                message: status.message.clone(),
            };
        }
        // The apiserver answers 500 when the patch does not fit the schema of a custom resource
        // ("failed to create typed patch object ... field not declared in schema"): the
        // object is at fault, not the server.
        let bad_patch = status.code == 500
            && status
                .message
                .contains("failed to create typed patch object");
        if bad_patch || ((400..500).contains(&status.code) && status.code != 429) {
            return Self::Rejected {
                code: status.code,
                message: status.message.clone(),
            };
        }
        Self::Request { source }
    }
}

/// The field manager a `FieldManagerConflict` cause names. The apiserver writes the message as
/// `conflict with "<manager>"`, the manager quoted as Go's `%q` does, then optionally ` with
/// subresource "<name>"`, ` using <apiVersion>` and ` at <time>`: the quoted string is read with
/// its escapes, so a manager whose name holds a quote or ` using ` is read whole. `None` when
/// the message has another shape.
fn conflict_manager(message: &str) -> Option<String> {
    let quoted = message.strip_prefix("conflict with \"")?;
    let mut manager = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(manager),
            '\\' => {
                let escaped = chars.next()?;
                let hex = |chars: &mut std::str::Chars<'_>, n: usize| {
                    let digits: String = chars.by_ref().take(n).collect();
                    u32::from_str_radix(&digits, 16).ok()
                };
                manager.push(match escaped {
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    // An invalid UTF-8 byte: kept as the replacement character.
                    'x' => hex(&mut chars, 2).map(|_| char::REPLACEMENT_CHARACTER)?,
                    'u' => char::from_u32(hex(&mut chars, 4)?)?,
                    'U' => char::from_u32(hex(&mut chars, 8)?)?,
                    other => other,
                });
            }
            other => manager.push(other),
        }
    }
    None
}

/// One entry of a [`ChangeSet`].
#[derive(Debug)]
pub struct ObjectChange {
    /// The object.
    pub id: ObjectId,
    /// Where its manifest came from (`None` for pruned objects).
    pub origin: Option<Origin>,
    /// How the cluster serves it.
    pub resource: ApiResource,
    /// What happened.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
    /// The error of a failed object, or why an object was skipped when that is an error of
    /// its own ([`ObjectError::OwnedByOtherInventory`]).
    pub error: Option<ObjectError>,
    /// In a dry run, the diff against the live object.
    pub diff: Option<ObjectDiff>,
    /// For an object left [`Action::Unchanged`]: its health, judged from the live object this
    /// run already listed (no extra request), so that a steady-state run still notices a
    /// workload that became unhealthy without a change. `None` for every other action.
    pub health: Option<Health>,
}

impl fmt::Display for ObjectChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?}: {}",
            self.id.display_name(),
            self.action,
            self.reason
        )?;
        if let Some(error) = &self.error {
            // One line: the error escapes the server's messages itself, its sources (a
            // request's error) are escaped here.
            write!(f, ": {error}")?;
            let mut source = std::error::Error::source(error);
            while let Some(s) = source {
                write!(f, ": {}", Escaped(&s.to_string()))?;
                source = s.source();
            }
        }
        Ok(())
    }
}

/// The result of a run: one entry per object, in apply order, then the pruned objects.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// The entries.
    pub changes: Vec<ObjectChange>,
    /// API requests sent by the run (discovery, reads, dry runs, writes, inventory).
    pub requests: u64,
    /// The same requests, by what they do (lists, other reads, dry runs, writes).
    pub request_counts: RequestCounts,
    /// Whether nothing was written (dry-run mode).
    pub dry_run: bool,
}

impl ChangeSet {
    /// How many entries have this action.
    #[must_use]
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// The entry of an object.
    #[must_use]
    pub fn get(&self, id: &ObjectId) -> Option<&ObjectChange> {
        self.changes.iter().find(|c| &c.id == id)
    }

    /// The failed entries.
    pub fn failed(&self) -> impl Iterator<Item = &ObjectChange> {
        self.changes.iter().filter(|c| c.action == Action::Failed)
    }

    /// The objects to wait for after this run: every object of the set that exists.
    #[must_use]
    pub fn wait_targets(&self) -> Vec<WaitTarget> {
        self.changes
            .iter()
            .filter(|c| {
                matches!(
                    c.action,
                    Action::Created | Action::Configured | Action::Recreated | Action::Unchanged
                )
            })
            .map(|c| WaitTarget {
                id: c.id.clone(),
                resource: c.resource.clone(),
            })
            .collect()
    }
}

impl fmt::Display for ChangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        write!(f, "{} API request(s)", self.requests)
    }
}

/// Why a run failed. The variants that carry a [`ChangeSet`] say what was done before.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Discovery failed; nothing was written.
    #[error("discovering the kinds the cluster serves")]
    Discovery(#[source] KubeError),
    /// The set cannot be planned; nothing was written.
    #[error("planning the set")]
    Plan(#[source] PlanError),
    /// A CRD of the set has a schema gitops-diff cannot read.
    #[error("reading the schema of CRD from {origin}")]
    Schema {
        /// The CRD's origin.
        origin: Origin,
        /// The failure.
        #[source]
        source: SchemaError,
    },
    /// Reading the live objects failed; nothing was written.
    #[error("listing live {plural} in {namespace}")]
    List {
        /// The resource.
        plural: String,
        /// The namespace, or `the cluster`.
        namespace: String,
        /// The failure.
        #[source]
        source: KubeError,
    },
    /// Reading an object the run needed to see before its writes failed (a Namespace or CRD
    /// leaving the set, to know what pruning it would delete); nothing was written.
    #[error("reading {} before any write", .id.display_name())]
    Read {
        /// The object.
        id: ObjectId,
        /// The failure.
        #[source]
        source: KubeError,
    },
    /// The inventory could not be read or written.
    #[error("inventory")]
    Inventory(#[source] InventoryError),
    /// The set is empty but the inventory lists objects: applying it would prune them all.
    #[error(
        "the desired set is empty but the inventory lists {previous} object(s); refusing to prune them all (allow it with ApplyOptions::allow_empty_set)"
    )]
    EmptySet {
        /// Objects the inventory lists.
        previous: usize,
    },
    /// Pruning a Namespace or a CRD that left the set would delete objects of the set with it
    /// (those in the Namespace, those of the CRD's kind); nothing was written. Allow it with
    /// [`ApplyOptions::allow_cascading_prune`].
    #[error(
        "refusing to prune what would delete objects of the set with it (allow it with ApplyOptions::allow_cascading_prune):\n{}",
        describe_losses(.losses)
    )]
    CascadingPrune {
        /// Each object that would be pruned, with the desired objects its deletion would take.
        losses: Vec<CascadingLoss>,
    },
    /// Some objects failed server-side validation; nothing was written.
    #[error("{} object(s) failed validation, nothing was written:\n{}", .change_set.count(Action::Failed), describe_failed(.change_set))]
    Invalid {
        /// The entries, failed ones with their error.
        change_set: Box<ChangeSet>,
    },
    /// Some objects could not be written or pruned; nothing was pruned after a write failure.
    #[error("{} object(s) failed:\n{}", .change_set.count(Action::Failed), describe_failed(.change_set))]
    Incomplete {
        /// What was done.
        change_set: Box<ChangeSet>,
    },
    /// The token was cancelled; what was written stays written.
    #[error("cancelled")]
    Cancelled {
        /// What was done.
        change_set: Box<ChangeSet>,
    },
    /// Everything was written (and pruned), but with [`ApplyOptions::wait`] the set did not
    /// become Current: an object Failed, the timeout passed, or reading failed.
    #[error("the applied set is not healthy")]
    Unhealthy {
        /// What was done.
        change_set: Box<ChangeSet>,
        /// Why waiting stopped.
        #[source]
        source: WaitError,
    },
}

/// A Namespace or CRD that left the set, and the objects of the set its deletion would delete.
///
/// ```
/// use gitops_apply::{ApplyError, CascadingLoss};
/// use gitops_core::ObjectId;
///
/// let error = ApplyError::CascadingPrune {
///     losses: vec![CascadingLoss {
///         pruned: ObjectId::new("", "Namespace", None::<&str>, "shop"),
///         lost: vec![ObjectId::new("", "ConfigMap", Some("shop"), "settings")],
///     }],
/// };
/// assert!(error.to_string().contains("Namespace shop would delete 1 object(s) of the set: ConfigMap shop/settings"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadingLoss {
    /// The Namespace or CRD that would be pruned.
    pub pruned: ObjectId,
    /// The desired objects in that Namespace or of that CRD's kind.
    pub lost: Vec<ObjectId>,
}

/// At most this many lost objects are named per pruned object in a message.
const LOSSES_SHOWN: usize = 10;

fn describe_losses(losses: &[CascadingLoss]) -> String {
    losses
        .iter()
        .map(|loss| {
            let mut names: Vec<String> = loss
                .lost
                .iter()
                .take(LOSSES_SHOWN)
                .map(ObjectId::display_name)
                .collect();
            if loss.lost.len() > LOSSES_SHOWN {
                names.push(format!("and {} more", loss.lost.len() - LOSSES_SHOWN));
            }
            format!(
                "  - {} would delete {} object(s) of the set: {}",
                loss.pruned.display_name(),
                loss.lost.len(),
                names.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn describe_failed(change_set: &ChangeSet) -> String {
    change_set
        .failed()
        .map(|c| format!("  - {c}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ApplyError {
    /// The change set of the run, when it got as far as writing or validating.
    #[must_use]
    pub fn change_set(&self) -> Option<&ChangeSet> {
        match self {
            Self::Invalid { change_set }
            | Self::Incomplete { change_set }
            | Self::Cancelled { change_set }
            | Self::Unhealthy { change_set, .. } => Some(change_set),
            _ => None,
        }
    }
}

/// Progress of a run, reported by [`Applier::apply_with_progress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyProgress {
    /// The set is planned.
    Planned {
        /// Objects in the plan.
        objects: usize,
        /// Groups (wave and stage) to write one after the other.
        groups: usize,
    },
    /// The live objects are read and the writes validated with a server-side dry run.
    Validated {
        /// Objects that need a write.
        to_write: usize,
        /// Objects that failed validation.
        failed: usize,
    },
    /// A group is written (and its CRDs and Namespaces settled).
    GroupDone {
        /// The group, from 0.
        group: usize,
        /// How many groups.
        groups: usize,
        /// Objects written in the group.
        written: usize,
        /// Objects that failed in the group.
        failed: usize,
    },
    /// With [`ApplyOptions::wait`]: a round of health checks of the applied set is done.
    Waiting {
        /// Objects Current.
        current: usize,
        /// Objects waited for.
        total: usize,
    },
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Take over fields other managers own, for every object (per object: the
    /// `apply.gitops.rs/force: enabled` annotation).
    pub force: bool,
    /// Validate and diff only; write nothing.
    pub dry_run: bool,
    /// Write the objects that pass validation even when others fail, and go on after a
    /// failed group.
    pub best_effort: bool,
    /// Sets (overrides or fills in) the namespace of every namespaced object.
    pub target_namespace: Option<String>,
    /// Creates the target namespace when missing.
    pub create_target_namespace: bool,
    /// Deletes and creates again objects whose immutable fields change, for every object (per
    /// object: `apply.gitops.rs/recreate: enabled`).
    pub recreate_on_immutable: bool,
    /// Deletes what the previous inventory lists and the set lacks.
    pub prune: bool,
    /// Accepts an empty set even when that prunes everything the inventory lists.
    pub allow_empty_set: bool,
    /// Prunes a Namespace or a CRD even when objects of the set live in that Namespace or are
    /// of that CRD's kind (their deletion would delete those desired objects with it). Off by
    /// default: such a run fails with [`ApplyError::CascadingPrune`] before any write.
    pub allow_cascading_prune: bool,
    /// Field managers whose fields are taken over (empty: none, the default): their
    /// fields become ours, so the apply sets them without a conflict and removes those the set
    /// no longer has (such as the last-applied annotation of client-side `kubectl apply`).
    /// [`TakeoverManager::defaults`] takes over what `kubectl` (any command) and
    /// `before-first-apply` own, as Flux does.
    pub takeover: Vec<TakeoverManager>,
    /// After a run that wrote everything, wait up to this long for every object of the set to
    /// be Current (health by the applier's [`HealthChecks`]), failing fast on the first Failed
    /// object ([`ApplyError::Unhealthy`]). `None` (the default): do not wait; see
    /// [`wait_for_current`](crate::wait_for_current) to wait separately.
    pub wait: Option<Duration>,
    /// Takes over objects whose ownership labels name another inventory (another set applies
    /// them too): they are applied and labelled as ours. Off by default: such an object is
    /// left alone and reported as [`Action::Skipped`] with
    /// [`ObjectError::OwnedByOtherInventory`], so that two sets never take an object from each
    /// other on every run.
    pub take_ownership: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            force: false,
            dry_run: false,
            best_effort: false,
            target_namespace: None,
            create_target_namespace: false,
            recreate_on_immutable: false,
            prune: true,
            allow_empty_set: false,
            allow_cascading_prune: false,
            takeover: Vec::new(),
            wait: None,
            take_ownership: false,
        }
    }
}

impl ApplyOptions {
    /// These options, taking over the fields of `managers` (see [`ApplyOptions::takeover`]).
    ///
    /// ```
    /// use gitops_apply::{ApplyOptions, TakeoverManager};
    /// let options = ApplyOptions::default().with_takeover(TakeoverManager::defaults());
    /// assert!(!options.takeover.is_empty());
    /// ```
    #[must_use]
    pub fn with_takeover(mut self, managers: impl IntoIterator<Item = TakeoverManager>) -> Self {
        self.takeover = managers.into_iter().collect();
        self
    }

    /// These options, waiting up to `timeout` for the set to be Current after the writes (see
    /// [`ApplyOptions::wait`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use gitops_apply::ApplyOptions;
    /// let options = ApplyOptions::default().with_wait(Duration::from_secs(120));
    /// assert_eq!(options.wait, Some(Duration::from_secs(120)));
    /// ```
    #[must_use]
    pub fn with_wait(mut self, timeout: Duration) -> Self {
        self.wait = Some(timeout);
        self
    }
}

/// Builds an [`Applier`].
#[must_use]
pub struct ApplierBuilder {
    applier: Applier,
}

impl ApplierBuilder {
    /// The field manager of server-side apply (default [`DEFAULT_FIELD_MANAGER`]).
    pub fn field_manager(mut self, field_manager: impl Into<String>) -> Self {
        self.applier.field_manager = field_manager.into();
        self
    }

    /// What counts as a stage (default [`DefaultStaging`]).
    pub fn staging(mut self, staging: impl Staging + 'static) -> Self {
        self.applier.staging = Arc::new(staging);
        self
    }

    /// The health checks used when waiting and for [`ObjectChange::health`] (default: the
    /// built-in ones).
    pub fn health_checks(mut self, health: HealthChecks) -> Self {
        self.applier.health = health;
        self
    }

    /// How many writes of one group run at once (default 16, at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.applier.concurrency = concurrency.max(1);
        self
    }

    /// How long to wait for CRDs to be Established, Namespaces Active and recreated objects to
    /// be gone (default 60 s).
    pub fn settle_timeout(mut self, timeout: Duration) -> Self {
        self.applier.settle_timeout = timeout;
        self
    }

    /// How often the health of the set is polled with [`ApplyOptions::wait`] (default 1 s).
    pub fn wait_interval(mut self, interval: Duration) -> Self {
        self.applier.wait_interval = interval;
        self
    }

    /// How many objects a list reads per page (default [`crate::DEFAULT_PAGE_SIZE`], at least
    /// 1). Every list of a run (the live objects, health) is paginated, and starts again when
    /// its continue token expires.
    ///
    /// ```no_run
    /// # fn example(client: kube::Client) -> Result<(), gitops_apply::InventoryError> {
    /// let inventory = gitops_apply::ConfigMapInventory::new("flux-system", "apps")?;
    /// let applier = gitops_apply::Applier::builder(client, inventory).page_size(200).build();
    /// # Ok(())
    /// # }
    /// ```
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.applier.page_size = page_size.max(1);
        self
    }

    /// The applier.
    pub fn build(self) -> Applier {
        self.applier
    }
}

/// Applies sets of objects with server-side apply, keeping an inventory to prune what leaves the
/// set.
///
/// ```no_run
/// use gitops_apply::{Applier, ApplyOptions, ConfigMapInventory, DesiredSet};
/// # async fn example(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let inventory = ConfigMapInventory::new("flux-system", "apps")?;
/// let applier = Applier::builder(client, inventory).field_manager("my-controller").build();
/// let set = DesiredSet::from_render(gitops_core::parse_manifests(
///     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: apps}\n", "a.yaml"))?;
/// let changes = applier
///     .apply(set, &ApplyOptions::default(), &tokio_util::sync::CancellationToken::new())
///     .await?;
/// println!("{changes}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Applier {
    client: kube::Client,
    inventory: Arc<dyn InventoryStore>,
    field_manager: String,
    staging: Arc<dyn Staging>,
    health: HealthChecks,
    concurrency: usize,
    settle_timeout: Duration,
    wait_interval: Duration,
    page_size: u32,
}

impl fmt::Debug for Applier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applier")
            .field("field_manager", &self.field_manager)
            .field("concurrency", &self.concurrency)
            .field("settle_timeout", &self.settle_timeout)
            .finish_non_exhaustive()
    }
}

/// Why the remaining groups of a run are not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    EarlierGroupFailed,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cancelled => "cancelled",
            Self::EarlierGroupFailed => "an earlier group failed",
        })
    }
}

/// How a run goes on after an error of a server-side apply it can live with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterError {
    /// Go on (write as planned).
    Proceed,
    /// Delete the object and create it again.
    Recreate,
    /// Only managers taken over conflict: validate again taking their fields, as the write
    /// will after the takeover (a conflict is found before validation, so it hides errors).
    ValidateTakingOver,
}

/// No managers taken over.
static NO_MANAGERS: BTreeSet<String> = BTreeSet::new();

/// What to do with one planned object, decided before any write.
#[derive(Debug)]
enum Decision {
    Skip(String),
    OwnedElsewhere(ObjectError),
    Unchanged,
    Write {
        exists: bool,
        recreate: bool,
        takeover: bool,
    },
    Failed(ObjectError),
}

fn object_api(
    client: &kube::Client,
    kind: &KindInfo,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if kind.namespaced => Api::namespaced_with(client.clone(), ns, &kind.resource),
        _ => Api::all_with(client.clone(), &kind.resource),
    }
}

fn to_value(object: &DynamicObject, resource: &ApiResource) -> Value {
    let mut value = serde_json::to_value(object).expect("objects serialise");
    value["apiVersion"] = Value::String(resource.api_version.clone());
    value["kind"] = Value::String(resource.kind.clone());
    value
}

struct Run<'a> {
    applier: &'a Applier,
    client: kube::Client,
    options: &'a ApplyOptions,
}

impl Run<'_> {
    fn params(&self, force: bool, dry_run: bool) -> PatchParams {
        let mut params = PatchParams::apply(&self.applier.field_manager).validation_strict();
        if force {
            params = params.force();
        }
        if dry_run {
            params = params.dry_run();
        }
        params
    }

    /// A server-side apply of `desired` (a dry run when `dry_run`), forced when the call or the
    /// object asks for it or when `take_conflicts` (a dry run of an object being taken over).
    async fn server_side_apply(
        &self,
        object: &PlannedObject,
        desired: &Value,
        dry_run: bool,
        take_conflicts: bool,
    ) -> Result<(), ObjectError> {
        let api = object_api(&self.client, &object.kind, object.id.namespace.as_deref());
        let force = self.options.force || object.policy.force || take_conflicts;
        let params = self.params(force, dry_run);
        let mut attempt = 0;
        loop {
            match api
                .patch(&object.id.name, &params, &Patch::Apply(desired))
                .await
            {
                Ok(_) => return Ok(()),
                // A kind whose CRD was just established can take a moment to be served.
                Err(kube::Error::Api(status))
                    if status.code == 404 && !object.kind.served && attempt < 25 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(ObjectError::from_kube_about(&object.id, Some(desired), e)),
            }
        }
    }

    /// Moves the fields the managers of [`ApplyOptions::takeover`] own into our `Apply` entry
    /// of managedFields (a JSON patch guarded by the resourceVersion), so that the apply that
    /// follows owns (and may remove) them.
    async fn take_over(&self, object: &PlannedObject, live: &Value) -> Result<(), ObjectError> {
        let Some(entries) = managed_fields_after_takeover(
            live,
            &self.options.takeover,
            &self.applier.field_manager,
        ) else {
            return Ok(());
        };
        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "test", "path": "/metadata/resourceVersion",
             "value": live.pointer("/metadata/resourceVersion")},
            {"op": "replace", "path": "/metadata/managedFields", "value": entries},
        ]))
        .expect("a well-formed JSON patch");
        let api = object_api(&self.client, &object.kind, object.id.namespace.as_deref());
        api.patch(
            &object.id.name,
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
        .map_err(|e| ObjectError::from_kube_about(&object.id, Some(live), e))?;
        Ok(())
    }

    /// The one place that decides what a failed server-side apply of `object` (the dry run or
    /// the write) means, `None` being a failure of the object: an immutable change is
    /// recreated when the call or the object opts in; conflicts only with managers taken over
    /// (`taken_over`) are no failure, as their fields are ours once taken over and the write
    /// follows the takeover, but the dry run is repeated taking those fields, to validate what
    /// the write will send; a 404 of an object whose namespace this run creates
    /// (`namespace_made_here`, only known in the dry run) is no failure either.
    fn on_apply_error(
        &self,
        object: &PlannedObject,
        error: &ObjectError,
        taken_over: &BTreeSet<String>,
        namespace_made_here: bool,
    ) -> Option<AfterError> {
        match error {
            ObjectError::Immutable { .. }
                if self.options.recreate_on_immutable || object.policy.recreate =>
            {
                Some(AfterError::Recreate)
            }
            ObjectError::Conflict { conflicts }
                if !taken_over.is_empty()
                    && conflicts.iter().all(|c| taken_over.contains(&c.manager)) =>
            {
                Some(AfterError::ValidateTakingOver)
            }
            ObjectError::Rejected { code: 404, .. } if namespace_made_here => {
                Some(AfterError::Proceed)
            }
            _ => None,
        }
    }

    async fn recreate(&self, object: &PlannedObject, desired: &Value) -> Result<(), ObjectError> {
        let api = object_api(&self.client, &object.kind, object.id.namespace.as_deref());
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(&object.id.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(ObjectError::from_kube_about(&object.id, Some(desired), e)),
        }
        let start = Instant::now();
        while api
            .get_opt(&object.id.name)
            .await
            .map_err(|e| ObjectError::from_kube_about(&object.id, Some(desired), e))?
            .is_some()
        {
            if start.elapsed() > self.applier.settle_timeout {
                return Err(ObjectError::NotReady {
                    message: format!(
                        "still present {:?} after its deletion",
                        self.applier.settle_timeout
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.server_side_apply(object, desired, false, false).await
    }

    /// The Namespaces and CRDs that left the set, would be pruned (they exist, carry the
    /// ownership labels and allow pruning) and whose deletion would delete objects of the set.
    async fn cascading_losses(
        &self,
        kinds: &KindTable,
        previous: &Inventory,
        objects: &[PlannedObject],
    ) -> Result<Vec<CascadingLoss>, ApplyError> {
        let desired: HashSet<&ObjectId> = objects.iter().map(|o| &o.id).collect();
        let owner_labels = self.applier.inventory.owner_labels();
        let mut losses = Vec::new();
        for (id, version) in previous.iter().filter(|(id, _)| !desired.contains(id)) {
            let lost = cascade_of(id, objects);
            if lost.is_empty() {
                continue;
            }
            let Some(kind) = resolve_inventory_kind(kinds, id, version) else {
                continue;
            };
            let api = object_api(&self.client, kind, None);
            let live = api
                .get_opt(&id.name)
                .await
                .map_err(|source| ApplyError::Read {
                    id: id.clone(),
                    source: source.into(),
                })?;
            if live.is_some_and(|live| prunable(&live, &owner_labels).is_ok()) {
                losses.push(CascadingLoss {
                    pruned: id.clone(),
                    lost: lost.into_iter().cloned().collect(),
                });
            }
        }
        Ok(losses)
    }

    async fn list_live(
        &self,
        objects: &[PlannedObject],
    ) -> Result<HashMap<ObjectId, Value>, ApplyError> {
        let mut keys: Vec<(&KindInfo, Option<&str>)> = Vec::new();
        let mut seen = HashSet::new();
        for object in objects.iter().filter(|o| o.kind.served) {
            let namespace = object.id.namespace.as_deref();
            if seen.insert((
                &object.kind.resource.api_version,
                &object.kind.resource.plural,
                namespace,
            )) {
                keys.push((&object.kind, namespace));
            }
        }
        let lists: Vec<_> = keys
            .into_iter()
            .map(|(kind, namespace)| async move {
                let api = object_api(&self.client, kind, namespace);
                let page_size = self.applier.page_size;
                match crate::paging::list_all(&api, &ListParams::default(), page_size).await {
                    Ok(list) => Ok(list
                        .iter()
                        .map(|o| to_value(o, &kind.resource))
                        .collect::<Vec<_>>()),
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
                    Err(source) => Err(ApplyError::List {
                        plural: kind.resource.plural.clone(),
                        namespace: namespace.unwrap_or("the cluster").to_owned(),
                        source: source.into(),
                    }),
                }
            })
            .collect();
        // Futures collected first: the stream then holds no closure, which keeps the future of
        // a run provably Send (tokio::spawn).
        let lists = futures::stream::iter(lists)
            .buffer_unordered(self.applier.concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        let mut live = HashMap::new();
        for value in lists.into_iter().flatten() {
            let Ok(manifest) = Manifest::new(value, Origin::new("<live>")) else {
                continue;
            };
            let id = manifest.id();
            live.insert(id, manifest.into_object());
        }
        Ok(live)
    }
}

impl Applier {
    /// A builder for an applier that keeps its inventory in `inventory`.
    pub fn builder(
        client: kube::Client,
        inventory: impl InventoryStore + 'static,
    ) -> ApplierBuilder {
        ApplierBuilder {
            applier: Self {
                client,
                inventory: Arc::new(inventory),
                field_manager: DEFAULT_FIELD_MANAGER.to_owned(),
                staging: Arc::new(DefaultStaging),
                health: HealthChecks::default(),
                concurrency: 16,
                settle_timeout: Duration::from_secs(60),
                wait_interval: Duration::from_secs(1),
                page_size: crate::paging::DEFAULT_PAGE_SIZE,
            },
        }
    }

    /// The field manager.
    #[must_use]
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// The health checks.
    #[must_use]
    pub fn health_checks(&self) -> &HealthChecks {
        &self.health
    }

    /// Brings the cluster to `desired`: plans (discovery, namespaces, order), reads the live
    /// objects (one list per kind and namespace), validates every object that needs a write with
    /// a server-side dry run and strict field validation, writes group by group (objects of a
    /// group in parallel), then updates the inventory and prunes what left the set.
    ///
    /// # Errors
    /// See [`ApplyError`]; nothing is written when planning or validation fails, and nothing is
    /// pruned when a write failed.
    pub async fn apply(
        &self,
        desired: DesiredSet,
        options: &ApplyOptions,
        cancel: &CancellationToken,
    ) -> Result<ChangeSet, ApplyError> {
        self.apply_with_progress(desired, options, cancel, |_| {})
            .await
    }

    /// [`Applier::apply`], reporting progress as it goes.
    ///
    /// # Errors
    /// As [`Applier::apply`].
    pub async fn apply_with_progress(
        &self,
        desired: DesiredSet,
        options: &ApplyOptions,
        cancel: &CancellationToken,
        mut progress: impl FnMut(&ApplyProgress) + Send,
    ) -> Result<ChangeSet, ApplyError> {
        let counter = RequestCounter::default();
        let client = counting_client(&self.client, &counter);
        let run = Run {
            applier: self,
            client: client.clone(),
            options,
        };
        let discovery = Discovery::new(client.clone())
            .run_aggregated()
            .await
            .map_err(|e| ApplyError::Discovery(e.into()))?;
        let mut kinds = KindTable::from_discovery(&discovery);
        kinds.add_crds(desired.manifests());
        let previous = self
            .inventory
            .load(&client)
            .await
            .map_err(ApplyError::Inventory)?;
        let previous_len = previous.as_ref().map_or(0, Inventory::len);
        if desired.manifests.is_empty()
            && options.prune
            && previous_len > 0
            && !options.allow_empty_set
        {
            return Err(ApplyError::EmptySet {
                previous: previous_len,
            });
        }
        let mut schema: Option<Schema> = None;
        for manifest in desired.manifests() {
            if manifest.group() == "apiextensions.k8s.io"
                && manifest.kind() == "CustomResourceDefinition"
            {
                schema
                    .get_or_insert_with(|| Schema::embedded().as_ref().clone())
                    .add_crd(manifest.object())
                    .map_err(|source| ApplyError::Schema {
                        origin: manifest.origin().clone(),
                        source,
                    })?;
            }
        }
        let mut differ = Differ::builder(self.field_manager.clone());
        if let Some(schema) = schema {
            differ = differ.schema(Arc::new(schema));
        }
        let differ = differ.build();
        let plan_options = PlanOptions {
            target_namespace: options.target_namespace.clone(),
            create_target_namespace: options.create_target_namespace,
        };
        let plan = plan(
            desired.manifests,
            &kinds,
            self.staging.as_ref(),
            &plan_options,
        )
        .map_err(ApplyError::Plan)?;
        let objects = plan.objects();
        if options.prune
            && !options.allow_cascading_prune
            && let Some(previous) = &previous
        {
            let losses = run.cascading_losses(&kinds, previous, objects).await?;
            if !losses.is_empty() {
                return Err(ApplyError::CascadingPrune { losses });
            }
        }
        let owner_labels = self.inventory.owner_labels();
        let desired_values: Vec<Value> = objects
            .iter()
            .map(|object| {
                let mut manifest = object.manifest.clone();
                if !object.synthesized {
                    for (key, value) in &owner_labels {
                        manifest.set_label(key, value);
                    }
                }
                manifest.into_object()
            })
            .collect();
        progress(&ApplyProgress::Planned {
            objects: objects.len(),
            groups: plan.groups().count(),
        });
        let live = run.list_live(objects).await?;
        // An unchanged object's health comes free from the live object just listed.
        let unchanged_health = |id: &ObjectId, action: Action| {
            (action == Action::Unchanged)
                .then(|| live.get(id).map(|live| self.health.check(live)))
                .flatten()
        };

        // Decide locally what needs a write.
        let taken_over: Vec<BTreeSet<String>> = objects
            .iter()
            .map(|object| {
                live.get(&object.id).map_or_else(BTreeSet::new, |live| {
                    managers_taken_over(live, &options.takeover, &self.field_manager)
                })
            })
            .collect();
        let mut diffs: Vec<Option<ObjectDiff>> = Vec::with_capacity(objects.len());
        let mut decisions: Vec<Decision> = objects
            .iter()
            .zip(&desired_values)
            .zip(&taken_over)
            .map(|((object, desired), taken_over)| {
                let live = live.get(&object.id);
                diffs.push(if options.dry_run {
                    differ.diff(Some(desired), live).ok()
                } else {
                    None
                });
                if !object.policy.reconcile {
                    return Decision::Skip("reconcile disabled by annotation".into());
                }
                if !options.take_ownership
                    && !object.synthesized
                    && let Some(owner) = live.and_then(|live| other_owner(live, &owner_labels))
                {
                    return Decision::OwnedElsewhere(owner);
                }
                match live {
                    Some(_) if object.policy.create_only => {
                        Decision::Skip("exists; created only when absent".into())
                    }
                    Some(_) if !taken_over.is_empty() => Decision::Write {
                        exists: true,
                        recreate: false,
                        takeover: true,
                    },
                    Some(live) => match needs_write(&differ, desired, live) {
                        Ok(true) => Decision::Write {
                            exists: true,
                            recreate: false,
                            takeover: false,
                        },
                        Ok(false) => Decision::Unchanged,
                        Err(source) => Decision::Failed(ObjectError::Diff { source }),
                    },
                    None => Decision::Write {
                        exists: false,
                        recreate: false,
                        takeover: false,
                    },
                }
            })
            .collect();

        // Validate every write with a server-side dry run before the first write.
        let namespaces_made_here: HashSet<&str> = objects
            .iter()
            .zip(&decisions)
            .filter(|(o, d)| {
                o.id.group.is_empty()
                    && o.id.kind == "Namespace"
                    && matches!(d, Decision::Write { exists: false, .. })
            })
            .map(|(o, _)| o.id.name.as_str())
            .collect();
        let to_validate: Vec<usize> = decisions
            .iter()
            .enumerate()
            .filter(|(i, d)| matches!(d, Decision::Write { .. }) && objects[*i].kind.served)
            .map(|(i, _)| i)
            .collect();
        let validations: Vec<_> = to_validate
            .into_iter()
            .map(|i| {
                let run = &run;
                let object = &objects[i];
                let desired = &desired_values[i];
                let taken_over = &taken_over[i];
                let namespace_made_here = object
                    .id
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| namespaces_made_here.contains(ns));
                async move {
                    let mut taking_over = false;
                    let result = loop {
                        let error = match run
                            .server_side_apply(object, desired, true, taking_over)
                            .await
                        {
                            Ok(()) => break Ok(AfterError::Proceed),
                            Err(error) => error,
                        };
                        let managers = if taking_over {
                            &NO_MANAGERS
                        } else {
                            taken_over
                        };
                        match run.on_apply_error(object, &error, managers, namespace_made_here) {
                            Some(AfterError::ValidateTakingOver) => taking_over = true,
                            Some(after) => break Ok(after),
                            None => break Err(error),
                        }
                    };
                    (i, result)
                }
            })
            .collect();
        let validations = futures::stream::iter(validations)
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        for (i, result) in validations {
            match result {
                // The dry run of an object taken over was repeated above, taking the fields.
                Ok(AfterError::Proceed | AfterError::ValidateTakingOver) => {}
                Ok(AfterError::Recreate) => {
                    decisions[i] = Decision::Write {
                        exists: true,
                        recreate: true,
                        takeover: false,
                    };
                }
                Err(error) => decisions[i] = Decision::Failed(error),
            }
        }
        let invalid = decisions.iter().any(|d| matches!(d, Decision::Failed(_)));
        progress(&ApplyProgress::Validated {
            to_write: decisions
                .iter()
                .filter(|d| matches!(d, Decision::Write { .. }))
                .count(),
            failed: decisions
                .iter()
                .filter(|d| matches!(d, Decision::Failed(_)))
                .count(),
        });

        if options.dry_run || (invalid && !options.best_effort) {
            let mut change_set = ChangeSet {
                dry_run: options.dry_run,
                ..ChangeSet::default()
            };
            for (((object, decision), diff), taken_over) in
                objects.iter().zip(decisions).zip(diffs).zip(&taken_over)
            {
                let (action, reason, error) = match decision {
                    Decision::Skip(reason) => (Action::Skipped, reason, None),
                    Decision::OwnedElsewhere(error) => {
                        (Action::Skipped, OWNED_ELSEWHERE.into(), Some(error))
                    }
                    Decision::Unchanged => (Action::Unchanged, "in sync".into(), None),
                    Decision::Failed(error) if options.dry_run => {
                        (Action::Failed, "dry-run apply failed".into(), Some(error))
                    }
                    Decision::Failed(error) => {
                        (Action::Failed, "failed validation".into(), Some(error))
                    }
                    Decision::Write { .. } if invalid && !options.dry_run => (
                        Action::Skipped,
                        "not written: other objects failed validation".into(),
                        None,
                    ),
                    Decision::Write {
                        exists,
                        recreate,
                        takeover,
                    } => (
                        if recreate {
                            Action::Recreated
                        } else if exists {
                            Action::Configured
                        } else {
                            Action::Created
                        },
                        if takeover {
                            format!("dry run: {}", describe_takeover(taken_over))
                        } else {
                            "dry run".into()
                        },
                        None,
                    ),
                };
                change_set.changes.push(ObjectChange {
                    id: object.id.clone(),
                    origin: Some(object.manifest.origin().clone()),
                    resource: object.kind.resource.clone(),
                    action,
                    reason,
                    error,
                    diff,
                    health: unchanged_health(&object.id, action),
                });
            }
            if options.dry_run
                && options.prune
                && let Some(previous) = &previous
            {
                let keep: HashSet<&ObjectId> = objects.iter().map(|o| &o.id).collect();
                for (id, version) in previous.iter().filter(|(id, _)| !keep.contains(id)) {
                    let Some(kind) = resolve_inventory_kind(&kinds, id, version) else {
                        continue;
                    };
                    change_set.changes.push(ObjectChange {
                        id: id.clone(),
                        origin: None,
                        resource: kind.resource.clone(),
                        action: Action::Pruned,
                        reason: "dry run: left the set (deleted if it still carries the ownership labels)".into(),
                        error: None,
                        diff: None,
                        health: None,
                    });
                }
            }
            change_set.requests = counter.get();
            change_set.request_counts = counter.counts();
            if invalid && !options.dry_run {
                return Err(ApplyError::Invalid {
                    change_set: Box::new(change_set),
                });
            }
            return Ok(change_set);
        }

        // Record what this run may write before its first write (the previous inventory and
        // the new set): an interruption at any point then leaves nothing untracked, and a bad
        // inventory location (a missing namespace, no permission) fails here, with nothing
        // written. Entries of objects never created are harmless: pruning one finds it gone.
        // When the inventory's namespace is one this run creates, the record follows the group
        // that creates it.
        let mut recorded_union = Inventory::default();
        for object in objects.iter().filter(|o| !o.synthesized) {
            recorded_union.insert(object.id.clone(), object.kind.resource.api_version.clone());
        }
        if let Some(previous) = &previous {
            recorded_union = recorded_union.union(previous);
        }
        let mut stored = previous.clone();
        let inventory_namespace = owner_labels.get(OWNER_NAMESPACE_LABEL).cloned();
        let inventory_namespace_index = inventory_namespace
            .as_deref()
            .filter(|ns| namespaces_made_here.contains(ns))
            .and_then(|ns| {
                objects.iter().position(|o| {
                    o.id.group.is_empty() && o.id.kind == "Namespace" && o.id.name == ns
                })
            });
        // A run cancelled already writes nothing, not even the record.
        let mut recorded = cancel.is_cancelled()
            || !decisions
                .iter()
                .any(|d| matches!(d, Decision::Write { .. }));
        if !recorded && inventory_namespace_index.is_none() {
            self.record(&client, &recorded_union, &mut stored)
                .await
                .map_err(ApplyError::Inventory)?;
            recorded = true;
        }

        // Write group by group.
        let mut results: Vec<Option<(Action, String, Option<ObjectError>)>> =
            (0..objects.len()).map(|_| None).collect();
        let mut offset = 0;
        let mut stop: Option<Stop> = None;
        let group_count = plan.groups().count();
        for (group_index, group) in plan.groups().enumerate() {
            let range = offset..offset + group.len();
            offset += group.len();
            if stop.is_none() && cancel.is_cancelled() {
                stop = Some(Stop::Cancelled);
            }
            if let Some(why) = stop {
                for i in range {
                    if matches!(decisions[i], Decision::Write { .. }) {
                        results[i] = Some((Action::Skipped, format!("not written: {why}"), None));
                    }
                }
                continue;
            }
            let writes: Vec<_> = range
                .clone()
                .filter_map(|i| {
                    let Decision::Write {
                        exists,
                        recreate,
                        takeover,
                    } = decisions[i]
                    else {
                        return None;
                    };
                    let run = &run;
                    let object = &objects[i];
                    let desired = &desired_values[i];
                    let live = live.get(&object.id).filter(|_| takeover);
                    let applied = if takeover {
                        format!("{}; applied", describe_takeover(&taken_over[i]))
                    } else {
                        "applied".to_owned()
                    };
                    Some(async move {
                        if let Some(live) = live
                            && let Err(error) = run.take_over(object, live).await
                        {
                            return (
                                i,
                                (
                                    Action::Failed,
                                    "taking over fields of other managers failed".into(),
                                    Some(error),
                                ),
                            );
                        }
                        let mut recreate = recreate;
                        let result = if recreate {
                            run.recreate(object, desired).await
                        } else {
                            match run.server_side_apply(object, desired, false, false).await {
                                // Objects of kinds a CRD of this set defines had no dry run.
                                Err(error)
                                    if run.on_apply_error(object, &error, &NO_MANAGERS, false)
                                        == Some(AfterError::Recreate) =>
                                {
                                    recreate = true;
                                    run.recreate(object, desired).await
                                }
                                other => other,
                            }
                        };
                        let outcome = match result {
                            Ok(()) if recreate => (
                                Action::Recreated,
                                "immutable field changed: deleted and created again".into(),
                                None,
                            ),
                            Ok(()) if exists => (Action::Configured, applied, None),
                            Ok(()) => (Action::Created, applied, None),
                            Err(error) => (Action::Failed, "write failed".into(), Some(error)),
                        };
                        (i, outcome)
                    })
                })
                .collect();
            let writes = futures::stream::iter(writes)
                .buffer_unordered(self.concurrency)
                .collect::<Vec<_>>()
                .await;
            let mut group_failed = false;
            for (i, outcome) in writes {
                group_failed |= outcome.0 == Action::Failed;
                results[i] = Some(outcome);
            }
            // CRDs must be Established and Namespaces Active before the next group.
            let settle: Vec<(usize, WaitTarget)> = range
                .clone()
                .filter(|i| {
                    let id = &objects[*i].id;
                    matches!(
                        results[*i],
                        Some((
                            Action::Created | Action::Configured | Action::Recreated,
                            _,
                            _
                        ))
                    ) && ((id.group == "apiextensions.k8s.io"
                        && id.kind == "CustomResourceDefinition")
                        || (id.group.is_empty() && id.kind == "Namespace"))
                })
                .map(|i| {
                    (
                        i,
                        WaitTarget {
                            id: objects[i].id.clone(),
                            resource: objects[i].kind.resource.clone(),
                        },
                    )
                })
                .collect();
            if !settle.is_empty() {
                let targets: Vec<WaitTarget> = settle.iter().map(|(_, t)| t.clone()).collect();
                if let Err(error) = wait_for_current_paged(
                    &client,
                    &targets,
                    &self.health,
                    (self.settle_timeout, Duration::from_millis(100)),
                    self.page_size,
                    cancel,
                    |_| {},
                )
                .await
                {
                    group_failed = true;
                    let message = error.to_string();
                    for (i, _) in &settle {
                        results[*i] = Some((
                            Action::Failed,
                            "did not settle".into(),
                            Some(ObjectError::NotReady {
                                message: message.clone(),
                            }),
                        ));
                    }
                }
            }
            if !recorded
                && inventory_namespace_index.is_some_and(|i| {
                    matches!(
                        results[i],
                        Some((
                            Action::Created | Action::Configured | Action::Recreated,
                            _,
                            _
                        ))
                    )
                })
            {
                if let Err(error) = self.record(&client, &recorded_union, &mut stored).await {
                    tracing::warn!(error = %error, "could not record the inventory");
                    return Err(ApplyError::Inventory(error));
                }
                recorded = true;
            }
            progress(&ApplyProgress::GroupDone {
                group: group_index,
                groups: group_count,
                written: range
                    .clone()
                    .filter(|i| {
                        matches!(
                            results[*i],
                            Some((
                                Action::Created | Action::Configured | Action::Recreated,
                                _,
                                _
                            ))
                        )
                    })
                    .count(),
                failed: range
                    .clone()
                    .filter(|i| matches!(results[*i], Some((Action::Failed, _, _))))
                    .count(),
            });
            if group_failed && !options.best_effort {
                stop = Some(Stop::EarlierGroupFailed);
            }
        }

        let mut change_set = ChangeSet::default();
        let mut any_failed = false;
        for ((object, decision), result) in objects.iter().zip(decisions).zip(results) {
            let (action, reason, error) = match (decision, result) {
                (_, Some(outcome)) => outcome,
                (Decision::Skip(reason), None) => (Action::Skipped, reason, None),
                (Decision::OwnedElsewhere(error), None) => {
                    (Action::Skipped, OWNED_ELSEWHERE.into(), Some(error))
                }
                (Decision::Unchanged, None) => (Action::Unchanged, "in sync".into(), None),
                (Decision::Failed(error), None) => {
                    (Action::Failed, "failed validation".into(), Some(error))
                }
                (Decision::Write { .. }, None) => (Action::Skipped, "not written".into(), None),
            };
            any_failed |= action == Action::Failed;
            let health = unchanged_health(&object.id, action);
            change_set.changes.push(ObjectChange {
                id: object.id.clone(),
                origin: Some(object.manifest.origin().clone()),
                resource: object.kind.resource.clone(),
                action,
                reason,
                error,
                diff: None,
                health,
            });
        }

        // The inventory: never forget an object this run may have written.
        let mut inventory = Inventory::default();
        for object in objects.iter().filter(|o| !o.synthesized) {
            inventory.insert(object.id.clone(), object.kind.resource.api_version.clone());
        }
        let incomplete = any_failed || stop == Some(Stop::Cancelled);
        if incomplete {
            // Only what this run attempted (a failed write may still have reached the server)
            // joins what the previous inventory lists.
            let attempted: HashSet<&ObjectId> = change_set
                .changes
                .iter()
                .filter(|c| c.action != Action::Skipped)
                .map(|c| &c.id)
                .collect();
            inventory = Inventory::default();
            for object in objects
                .iter()
                .filter(|o| !o.synthesized && attempted.contains(&o.id))
            {
                inventory.insert(object.id.clone(), object.kind.resource.api_version.clone());
            }
            if let Some(previous) = &previous {
                for (id, version) in previous.iter() {
                    if !inventory.contains(id) {
                        inventory.insert(id.clone(), version);
                    }
                }
            }
        } else if options.prune
            && let Some(previous) = &previous
        {
            self.prune(
                &run,
                &kinds,
                previous,
                &mut inventory,
                &mut change_set,
                cancel,
            )
            .await;
        }
        // An unchanged inventory is not written either: a no-change run writes nothing.
        let saved = if stored.as_ref().unwrap_or(&Inventory::default()) == &inventory {
            Ok(())
        } else {
            self.inventory
                .save(&client, &inventory, &self.field_manager)
                .await
        };
        change_set.requests = counter.get();
        change_set.request_counts = counter.counts();
        if stop == Some(Stop::Cancelled) || cancel.is_cancelled() {
            return Err(ApplyError::Cancelled {
                change_set: Box::new(change_set),
            });
        }
        if change_set.count(Action::Failed) > 0 {
            if let Err(error) = &saved {
                tracing::warn!(error = %error, "could not save the inventory after a failed run");
            }
            return Err(ApplyError::Incomplete {
                change_set: Box::new(change_set),
            });
        }
        saved.map_err(ApplyError::Inventory)?;
        if let Some(timeout) = options.wait {
            let targets = change_set.wait_targets();
            let waited = wait_for_current_paged(
                &client,
                &targets,
                &self.health,
                (timeout, self.wait_interval),
                self.page_size,
                cancel,
                |round: &WaitProgress| {
                    progress(&ApplyProgress::Waiting {
                        current: round.current,
                        total: round.total,
                    });
                },
            )
            .await;
            change_set.requests = counter.get();
            change_set.request_counts = counter.counts();
            match waited {
                Ok(()) => {}
                Err(WaitError::Cancelled) => {
                    return Err(ApplyError::Cancelled {
                        change_set: Box::new(change_set),
                    });
                }
                Err(source) => {
                    return Err(ApplyError::Unhealthy {
                        change_set: Box::new(change_set),
                        source,
                    });
                }
            }
        }
        Ok(change_set)
    }

    /// Saves `union` (the previous inventory and the new set) unless the cluster holds it
    /// already (`stored`); with no inventory yet and nothing to record, checks that one could
    /// be saved (a server-side dry run for [`crate::ConfigMapInventory`]).
    async fn record(
        &self,
        client: &kube::Client,
        union: &Inventory,
        stored: &mut Option<Inventory>,
    ) -> Result<(), InventoryError> {
        match stored {
            Some(stored) if stored == union => Ok(()),
            None if union.is_empty() => {
                self.inventory
                    .check(client, union, &self.field_manager)
                    .await
            }
            _ => {
                self.inventory
                    .save(client, union, &self.field_manager)
                    .await?;
                *stored = Some(union.clone());
                Ok(())
            }
        }
    }

    /// Deletes, in reverse apply order, what `previous` lists and `inventory` (the new set)
    /// lacks, if it still carries our ownership labels and does not disable pruning.
    async fn prune(
        &self,
        run: &Run<'_>,
        kinds: &KindTable,
        previous: &Inventory,
        inventory: &mut Inventory,
        change_set: &mut ChangeSet,
        cancel: &CancellationToken,
    ) {
        let owner_labels = self.inventory.owner_labels();
        let mut gone: Vec<(ObjectId, String, Option<KindInfo>)> = previous
            .iter()
            .filter(|(id, _)| !inventory.contains(id))
            .map(|(id, version)| {
                (
                    id.clone(),
                    version.to_owned(),
                    resolve_inventory_kind(kinds, id, version).cloned(),
                )
            })
            .collect();
        let key = |id: &ObjectId, kind: &Option<KindInfo>| {
            let namespaced = kind.as_ref().is_none_or(|k| k.namespaced);
            (
                self.staging.stage(&id.group, &id.kind, namespaced),
                self.staging.kind_rank(&id.group, &id.kind),
                id.kind.clone(),
                id.namespace.clone(),
                id.name.clone(),
            )
        };
        gone.sort_by_key(|(id, _, kind)| std::cmp::Reverse(key(id, kind)));
        for (id, version, kind) in gone {
            let mut entry = |action, reason: String, error, resource| {
                change_set.changes.push(ObjectChange {
                    id: id.clone(),
                    origin: None,
                    resource,
                    action,
                    reason,
                    error,
                    diff: None,
                    health: None,
                });
            };
            let Some(kind) = kind else {
                // The kind is no longer served (its CRD went): so are its objects.
                let group = &id.group;
                entry(
                    Action::Pruned,
                    "its kind is no longer served".into(),
                    None,
                    ApiResource {
                        group: group.clone(),
                        version: version.clone(),
                        api_version: if group.is_empty() {
                            version.clone()
                        } else {
                            format!("{group}/{version}")
                        },
                        kind: id.kind.clone(),
                        plural: String::new(),
                    },
                );
                continue;
            };
            if cancel.is_cancelled() {
                inventory.insert(id.clone(), version);
                entry(
                    Action::Skipped,
                    "not pruned: cancelled".into(),
                    None,
                    kind.resource.clone(),
                );
                continue;
            }
            let api = object_api(&run.client, &kind, id.namespace.as_deref());
            let live = match api.get_opt(&id.name).await {
                Ok(live) => live,
                Err(e) => {
                    inventory.insert(id.clone(), version);
                    entry(
                        Action::Failed,
                        "reading before prune".into(),
                        Some(ObjectError::from_kube_about(&id, None, e)),
                        kind.resource.clone(),
                    );
                    continue;
                }
            };
            let Some(live) = live else {
                entry(
                    Action::Pruned,
                    "already gone".into(),
                    None,
                    kind.resource.clone(),
                );
                continue;
            };
            if let Err(why) = prunable(&live, &owner_labels) {
                entry(
                    Action::Skipped,
                    format!("not pruned: {why}"),
                    None,
                    kind.resource.clone(),
                );
                continue;
            }
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(&id.name, &params).await {
                Ok(_) => entry(
                    Action::Pruned,
                    "left the set".into(),
                    None,
                    kind.resource.clone(),
                ),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    entry(
                        Action::Pruned,
                        "already gone".into(),
                        None,
                        kind.resource.clone(),
                    );
                }
                Err(e) => {
                    inventory.insert(id.clone(), version);
                    entry(
                        Action::Failed,
                        "prune failed".into(),
                        Some(ObjectError::from_kube_about(&id, None, e)),
                        kind.resource.clone(),
                    );
                }
            }
        }
    }
}

/// Whether a live object that left the set may be pruned: it still carries the ownership
/// labels and does not disable pruning by annotation. `Err` says why not.
/// The reason of an entry left alone because another inventory owns it.
const OWNED_ELSEWHERE: &str = "owned by another inventory";

/// When `live`'s ownership labels name another inventory than ours (`owner_labels`): that
/// inventory. An object without ownership labels (created by hand, say) is nobody's.
fn other_owner(live: &Value, owner_labels: &BTreeMap<String, String>) -> Option<ObjectError> {
    let labels = live.pointer("/metadata/labels")?.as_object()?;
    let differs = owner_labels.iter().any(|(key, ours)| {
        labels
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|theirs| theirs != ours)
    });
    differs.then(|| {
        let label = |key: &str| {
            labels
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        ObjectError::OwnedByOtherInventory {
            namespace: label(OWNER_NAMESPACE_LABEL),
            name: label(OWNER_NAME_LABEL),
        }
    })
}

fn prunable(
    live: &DynamicObject,
    owner_labels: &BTreeMap<String, String>,
) -> Result<(), &'static str> {
    let labels = live.metadata.labels.clone().unwrap_or_default();
    if !owner_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return Err("it no longer carries our ownership labels");
    }
    let annotations: BTreeMap<&str, &str> = live
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if !crate::plan::ObjectPolicy::from_annotations(&annotations).prune {
        return Err("pruning disabled by annotation");
    }
    Ok(())
}

/// The objects of `objects` a deletion of `id` would delete with it: for a Namespace, those in
/// it; for a CRD (named `<plural>.<group>`), those of its kind.
fn cascade_of<'o>(id: &ObjectId, objects: &'o [PlannedObject]) -> Vec<&'o ObjectId> {
    let namespace = id.group.is_empty() && id.kind == "Namespace";
    let crd = id.group == "apiextensions.k8s.io" && id.kind == "CustomResourceDefinition";
    let (plural, group) = id.name.split_once('.').unwrap_or((&id.name, ""));
    objects
        .iter()
        .filter(|o| {
            (namespace && o.id.namespace.as_deref() == Some(id.name.as_str()))
                || (crd && o.kind.resource.plural == plural && o.kind.resource.group == group)
        })
        .map(|o| &o.id)
        .collect()
}

fn resolve_inventory_kind<'k>(
    kinds: &'k KindTable,
    id: &ObjectId,
    version: &str,
) -> Option<&'k KindInfo> {
    let exact = gitops_core::split_api_version(version).1;
    kinds
        .resolve(&id.group, exact, &id.kind)
        .or_else(|| kinds.resolve_group_kind(&id.group, &id.kind))
        .filter(|k| k.served)
}

/// The reason of an object taken over: `took over the fields of "kubectl-edit"`.
fn describe_takeover(managers: &BTreeSet<String>) -> String {
    let names: Vec<String> = managers.iter().map(|m| format!("{m:?}")).collect();
    format!("took over the fields of {}", names.join(", "))
}

/// The no-op decision: whether `desired` must be written given `live`. An object in sync that
/// our field manager does not manage yet is written once to take ownership.
fn needs_write(differ: &Differ, desired: &Value, live: &Value) -> Result<bool, DiffError> {
    Ok(!differ.is_managed(live) || differ.needs_apply(desired, Some(live))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conflicts_name_managers_and_fields() {
        let status: kube::core::Status = serde_json::from_value(json!({
            "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "Apply failed with 1 conflict: conflict with \"helm\" using v1: .data.color",
            "details": {"causes": [{"reason": "FieldManagerConflict",
                "message": "conflict with \"helm\" using v1", "field": ".data.color"}]}
        }))
        .unwrap();
        let error = ObjectError::from_kube(kube::Error::Api(Box::new(status)));
        let ObjectError::Conflict { conflicts } = &error else {
            panic!("{error}")
        };
        assert_eq!(
            conflicts,
            &[FieldConflict {
                manager: "helm".into(),
                field: ".data.color".into()
            }]
        );
    }

    #[test]
    fn conflict_managers_come_from_the_causes_with_go_quoting() {
        // Managers as the apiserver quotes them: a quote, a backslash, " using " and a
        // non-printable character in the name; a subresource and a time after it.
        let status: kube::core::Status = serde_json::from_value(json!({
            "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "Apply failed with 3 conflicts: (text not read)",
            "details": {"causes": [
                {"reason": "FieldManagerConflict",
                 "message": "conflict with \"say \\\"hi\\\" using v2\" using v1", "field": ".data.a"},
                {"reason": "FieldManagerConflict",
                 "message": "conflict with \"back\\\\slash\\u00a0x\" with subresource \"status\" using apps/v1 at 2026-11-29T10:00:00Z",
                 "field": ".spec.replicas"},
                {"reason": "FieldManagerConflict", "message": "unexpected shape", "field": ".data.c"},
                {"reason": "FieldValueInvalid", "message": "not a conflict", "field": ".data.d"}
            ]}
        }))
        .unwrap();
        let error = ObjectError::from_kube(kube::Error::Api(Box::new(status)));
        let ObjectError::Conflict { conflicts } = &error else {
            panic!("{error}")
        };
        let managers: Vec<(&str, &str)> = conflicts
            .iter()
            .map(|c| (c.manager.as_str(), c.field.as_str()))
            .collect();
        assert_eq!(
            managers,
            [
                ("say \"hi\" using v2", ".data.a"),
                ("back\\slash\u{a0}x", ".spec.replicas"),
                ("unexpected shape", ".data.c"),
            ]
        );
        assert_eq!(conflict_manager("conflict with \"unterminated"), None);
        assert_eq!(conflict_manager("conflict with \"bad \\u12\""), None);
    }
}
