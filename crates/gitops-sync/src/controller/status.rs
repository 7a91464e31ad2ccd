//! The status type users embed: [`SyncStatus`], its [`Condition`]s as Flux and kstatus write
//! them, and [`Phase`], which sets them.

use gitops_apply::Inventory;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition type that says whether the last reconciliation succeeded.
pub const READY: &str = "Ready";
/// The condition type present (True) while a reconciliation is in progress or retried.
pub const RECONCILING: &str = "Reconciling";
/// The condition type present (True) when the input is wrong and retrying cannot help until it
/// changes (a new commit or a new spec).
pub const STALLED: &str = "Stalled";
/// The reason of `Ready=True`.
pub const REASON_SUCCEEDED: &str = "ReconciliationSucceeded";
/// The reason of `Reconciling=True` while working.
pub const REASON_PROGRESSING: &str = "Progressing";
/// The reason of `Reconciling=True` after a failure that is retried.
pub const REASON_RETRYING: &str = "ProgressingWithRetry";

/// Condition messages longer than this are cut (the API allows 32 KiB; a status is read by
/// people).
const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// What a synced resource reports. Embed it as (or in) the status of your custom resource.
///
/// ```
/// use gitops_sync::controller::{Phase, SyncStatus};
/// let mut status = SyncStatus::default();
/// Phase::Succeeded { message: "Applied revision: main@sha1:1".into() }
///     .apply_to(&mut status, Some(1), "2026-01-01T00:00:00Z");
/// assert!(status.is_ready());
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The revision applied last with success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The revision tried last, applied or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The value of Flux's `reconcile.fluxcd.io/requestedAt` annotation the last
    /// reconciliation handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The objects applied last (when the inventory is kept in the status); written with a
    /// field manager of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryStatus>,
}

impl SyncStatus {
    /// The condition of this type, if present.
    ///
    /// ```
    /// assert!(gitops_sync::controller::SyncStatus::default().condition("Ready").is_none());
    /// ```
    #[must_use]
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether `Ready` is `True`.
    ///
    /// ```
    /// assert!(!gitops_sync::controller::SyncStatus::default().is_ready());
    /// ```
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.condition(READY).is_some_and(|c| c.status == "True")
    }
}

/// The standard `metav1.Condition` shape.
///
/// ```
/// let condition = gitops_sync::controller::Condition { type_: "Ready".into(), status: "True".into(), ..Default::default() };
/// assert_eq!(serde_json::to_value(&condition)?["type"], "Ready");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The generation of the resource this condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// A CamelCase reason, such as `ReconciliationSucceeded` or `BuildFailed`.
    pub reason: String,
    /// A human-readable message.
    pub message: String,
}

/// The objects applied last, in the inventory's stored form.
///
/// ```
/// use gitops_sync::controller::InventoryStatus;
/// let mut inventory = gitops_apply::Inventory::default();
/// inventory.insert(gitops_core::ObjectId::new("", "ConfigMap", Some("team-a"), "web"), "v1");
/// let status = InventoryStatus::from_inventory(&inventory);
/// assert_eq!(status.entries[0].id, "team-a_web__ConfigMap");
/// assert_eq!(status.to_inventory()?, inventory);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct InventoryStatus {
    /// One entry per object, sorted by id.
    #[serde(default)]
    pub entries: Vec<InventoryEntry>,
}

/// One object of the inventory.
///
/// ```
/// let entry = gitops_sync::controller::InventoryEntry { id: "a_b_apps_Deployment".into(), v: "v1".into() };
/// assert_eq!(entry.v, "v1");
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct InventoryEntry {
    /// The object id, `namespace_name_group_kind`.
    pub id: String,
    /// The apiVersion it was applied at.
    pub v: String,
}

impl InventoryStatus {
    /// The inventory in its status form.
    ///
    /// ```
    /// let status = gitops_sync::controller::InventoryStatus::from_inventory(&gitops_apply::Inventory::default());
    /// assert!(status.entries.is_empty());
    /// ```
    #[must_use]
    pub fn from_inventory(inventory: &Inventory) -> Self {
        Self {
            entries: inventory
                .iter()
                .map(|(id, v)| InventoryEntry {
                    id: id.to_string(),
                    v: v.to_owned(),
                })
                .collect(),
        }
    }

    /// Reads the status form back.
    ///
    /// ```
    /// use gitops_sync::controller::{InventoryEntry, InventoryStatus};
    /// let bad = InventoryStatus { entries: vec![InventoryEntry { id: "nonsense".into(), v: "v1".into() }] };
    /// assert!(bad.to_inventory().is_err());
    /// ```
    ///
    /// # Errors
    /// An id that is not in the `namespace_name_group_kind` form.
    pub fn to_inventory(&self) -> Result<Inventory, Box<dyn std::error::Error + Send + Sync>> {
        let mut inventory = Inventory::default();
        for entry in &self.entries {
            inventory.insert(entry.id.parse()?, entry.v.clone());
        }
        Ok(inventory)
    }
}

/// Where a reconciliation stands, as the conditions report it (Flux's and kstatus's
/// convention: `Reconciling` and `Stalled` are present only when True).
///
/// ```
/// use gitops_sync::controller::{Phase, SyncStatus};
/// let mut status = SyncStatus::default();
/// Phase::Stalled { reason: "BuildFailed", message: "app.yaml:3: bad".into() }
///     .apply_to(&mut status, Some(2), "2026-01-01T00:00:00Z");
/// assert_eq!(status.condition("Ready").unwrap().status, "False");
/// assert_eq!(status.condition("Stalled").unwrap().message, "app.yaml:3: bad");
/// assert!(status.condition("Reconciling").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Working: `Reconciling=True`, `Ready=Unknown`, no `Stalled`.
    Progressing {
        /// What is being done.
        message: String,
    },
    /// Done: `Ready=True`, no `Reconciling` or `Stalled`.
    Succeeded {
        /// What was done.
        message: String,
    },
    /// Failed and retried: `Ready=False` with the reason, `Reconciling=True`, no `Stalled`.
    Retrying {
        /// The failure's reason, such as `FetchFailed`.
        reason: &'static str,
        /// The failure.
        message: String,
    },
    /// Failed on bad input: `Ready=False` and `Stalled=True` with the reason, no
    /// `Reconciling`.
    Stalled {
        /// The failure's reason, such as `BuildFailed`.
        reason: &'static str,
        /// The failure.
        message: String,
    },
}

impl Phase {
    /// Sets the conditions of `status` to this phase, for `generation`, at `now` (RFC 3339); a
    /// condition's transition time changes only when its status does.
    ///
    /// ```
    /// use gitops_sync::controller::{Phase, SyncStatus};
    /// let mut status = SyncStatus::default();
    /// Phase::Retrying { reason: "FetchFailed", message: "unreachable".into() }
    ///     .apply_to(&mut status, Some(1), "2026-01-01T00:00:00Z");
    /// assert_eq!(status.condition("Reconciling").unwrap().reason, "ProgressingWithRetry");
    /// ```
    pub fn apply_to(&self, status: &mut SyncStatus, generation: Option<i64>, now: &str) {
        let conditions = &mut status.conditions;
        let mut set = |type_: &str, value: &str, reason: &str, message: &str| {
            set_condition(conditions, type_, value, reason, message, generation, now);
        };
        let (remove_reconciling, remove_stalled) = match self {
            Phase::Progressing { message } => {
                set(RECONCILING, "True", REASON_PROGRESSING, message);
                set(
                    READY,
                    "Unknown",
                    REASON_PROGRESSING,
                    "Reconciliation in progress",
                );
                (false, true)
            }
            Phase::Succeeded { message } => {
                set(READY, "True", REASON_SUCCEEDED, message);
                (true, true)
            }
            Phase::Retrying { reason, message } => {
                set(READY, "False", reason, message);
                set(
                    RECONCILING,
                    "True",
                    REASON_RETRYING,
                    &format!("retrying after {reason}"),
                );
                (false, true)
            }
            Phase::Stalled { reason, message } => {
                set(READY, "False", reason, message);
                set(STALLED, "True", reason, message);
                (true, false)
            }
        };
        if remove_reconciling {
            conditions.retain(|c| c.type_ != RECONCILING);
        }
        if remove_stalled {
            conditions.retain(|c| c.type_ != STALLED);
        }
        // Ready first, as `kubectl get` and people read it.
        conditions.sort_by_key(|c| match c.type_.as_str() {
            READY => 0,
            RECONCILING => 1,
            STALLED => 2,
            _ => 3,
        });
    }
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &str,
) {
    let condition = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        observed_generation: generation,
        last_transition_time: now.to_owned(),
        reason: reason.to_owned(),
        message: truncate(message),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let last_transition_time = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                condition.last_transition_time.clone()
            };
            *existing = Condition {
                last_transition_time,
                ..condition
            };
        }
        None => conditions.push(condition),
    }
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (truncated)", &message[..end])
}

/// The current time in the `metav1.Time` form (RFC 3339, seconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut status = SyncStatus::default();
        Phase::Succeeded {
            message: "Applied revision: a".into(),
        }
        .apply_to(&mut status, Some(1), "t1");
        Phase::Succeeded {
            message: "Applied revision: b".into(),
        }
        .apply_to(&mut status, Some(2), "t2");
        let ready = status.condition(READY).unwrap();
        assert_eq!(ready.last_transition_time, "t1");
        assert_eq!(ready.message, "Applied revision: b");
        assert_eq!(ready.observed_generation, Some(2));

        Phase::Retrying {
            reason: "FetchFailed",
            message: "cannot reach".into(),
        }
        .apply_to(&mut status, Some(2), "t3");
        let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, RECONCILING]);
        assert_eq!(status.condition(READY).unwrap().last_transition_time, "t3");

        Phase::Stalled {
            reason: "BuildFailed",
            message: "x".into(),
        }
        .apply_to(&mut status, Some(2), "t4");
        let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, STALLED]);
        assert_eq!(status.condition(READY).unwrap().last_transition_time, "t3");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary_and_time_has_its_form() {
        let cut = truncate(&"é".repeat(MAX_MESSAGE_BYTES));
        assert!(cut.len() < MAX_MESSAGE_BYTES + 20 && cut.ends_with("(truncated)"));
        assert_eq!(truncate("short"), "short");
        let now = now_rfc3339();
        assert!(now.len() == 20 && now.ends_with('Z'), "{now}");
    }
}
