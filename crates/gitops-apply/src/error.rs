//! The errors of the applier: [`ApplyError`] for a run, [`ObjectError`] for one object.

use gitops_core::escape::Escaped;
use gitops_core::secret::mask_quoted_values;
use gitops_core::{ObjectId, Origin};
use gitops_diff::{DiffError, SchemaError};
use serde_json::Value;

use crate::catalog::CatalogError;
use crate::change::{ChangeSet, ObjectAction};
use crate::health::WaitError;
use crate::hooks::HookError;
use crate::inventory::InventoryError;
use crate::kube_error::KubeError;
use crate::plan::PlanError;
#[cfg(doc)]
use crate::{ApplyOptions, OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL};

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
#[non_exhaustive]
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
    /// [`ObjectAction::Skipped`], the run goes on) unless [`ApplyOptions::take_ownership`].
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
    pub(crate) fn from_kube_about(
        id: &ObjectId,
        object: Option<&Value>,
        mut source: kube::Error,
    ) -> Self {
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

/// Why a run failed. The variants that carry a [`ChangeSet`] say what was done before.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The kinds or the merge schema could not be read (the cluster's OpenAPI documents);
    /// nothing was written.
    #[error("reading what the cluster serves")]
    Catalog(#[source] CatalogError),
    /// Hooks of the set are invalid (bad hook annotations, unknown kinds, duplicates); nothing
    /// was written.
    #[error("{} hook(s) of the set are invalid:\n{}", .errors.len(), describe_hook_errors(.errors))]
    Hooks {
        /// Every problem.
        errors: Vec<HookError>,
    },
    /// The live state a reviewed plan was made from has moved (a field the set sets was
    /// edited, an object to create now exists, one to update or prune is gone...): nothing was
    /// written. Plan again and review the new plan.
    ///
    /// ```
    /// use gitops_core::ObjectId;
    /// let error = gitops_apply::ApplyError::StalePlan {
    ///     moved: vec![ObjectId::new("", "ConfigMap", Some("shop"), "settings")],
    /// };
    /// assert!(error.to_string().contains("ConfigMap shop/settings"));
    /// assert!(error.to_string().contains("plan again"));
    /// ```
    #[error(
        "the plan is stale: {} object(s) changed since it was made ({}); nothing was written, plan again",
        .moved.len(),
        .moved.iter().map(ObjectId::display_name).collect::<Vec<_>>().join(", ")
    )]
    StalePlan {
        /// The objects whose outcome moved, and those whose inventory entry another run
        /// changed since the plan read it.
        moved: Vec<ObjectId>,
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
    /// Reading an object the run needed to see before its writes failed (an object of the set
    /// its list did not return, an object leaving the set, a Namespace or CRD leaving the set
    /// to know what pruning it would delete); nothing was written.
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
    #[error("{} object(s) failed validation, nothing was written:\n{}", .change_set.count(ObjectAction::Failed), describe_failed(.change_set))]
    Invalid {
        /// The entries, failed ones with their error.
        change_set: Box<ChangeSet>,
    },
    /// Some objects could not be written or pruned; nothing was pruned after a write failure.
    #[error("{} object(s) failed:\n{}", .change_set.count(ObjectAction::Failed), describe_failed(.change_set))]
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
    /// A sync hook failed (its object failed or was not done in time, or an API call about it
    /// failed): the run stopped at its phase and the SyncFail hooks ran. A PreSync failure
    /// leaves the resources unwritten; a Sync hook runs with its wave, so its failure leaves
    /// the later waves unwritten and prunes nothing; a PostSync one comes after the writes.
    /// The change set records every hook object ([`ChangeSet::hooks`]).
    #[error("a sync hook failed")]
    Hook {
        /// The failure, naming the hook object and where it comes from.
        #[source]
        source: Box<HookError>,
        /// What was done.
        change_set: Box<ChangeSet>,
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

fn describe_hook_errors(errors: &[HookError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ApplyError {
    /// The error of the catalog, as the applier's: discovery and CRD schemas keep their own
    /// variants.
    pub(crate) fn from_catalog(error: CatalogError) -> Self {
        match error {
            CatalogError::Discovery(source) => Self::Discovery(source),
            CatalogError::Crd { origin, source } => Self::Schema { origin, source },
            other => Self::Catalog(other),
        }
    }

    /// The change set of the run, when it got as far as writing or validating.
    #[must_use]
    pub fn change_set(&self) -> Option<&ChangeSet> {
        match self {
            Self::Invalid { change_set }
            | Self::Incomplete { change_set }
            | Self::Cancelled { change_set }
            | Self::Unhealthy { change_set, .. }
            | Self::Hook { change_set, .. } => Some(change_set),
            _ => None,
        }
    }

    /// The change set of the run, to add what came after it (the hooks).
    pub(crate) fn change_set_mut(&mut self) -> Option<&mut ChangeSet> {
        match self {
            Self::Invalid { change_set }
            | Self::Incomplete { change_set }
            | Self::Cancelled { change_set }
            | Self::Unhealthy { change_set, .. }
            | Self::Hook { change_set, .. } => Some(change_set),
            _ => None,
        }
    }
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
