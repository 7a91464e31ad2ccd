//! Conditions and the status write.

use kube::Api;
use kube::api::{Patch, PatchParams};

use super::resource::{Condition, GitSync, GitSyncStatus, READY, RECONCILING, STALLED};

/// Condition messages longer than this are cut (the API allows 32 KiB; a status is read by
/// people).
const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// The reason of `Ready=True`.
pub const REASON_SUCCEEDED: &str = "ReconciliationSucceeded";
/// The reason of `Reconciling=True` while working.
pub const REASON_PROGRESSING: &str = "Progressing";
/// The reason of `Reconciling=True` after a failure that is retried.
pub const REASON_RETRYING: &str = "ProgressingWithRetry";

/// Where a reconciliation stands, as the conditions report it.
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
    /// Failed on bad input: `Ready=False` and `Stalled=True` with the reason, no `Reconciling`.
    Stalled {
        /// The failure's reason, such as `BuildFailed`.
        reason: &'static str,
        /// The failure.
        message: String,
    },
}

/// The current time in the `metav1.Time` form (RFC 3339, seconds, UTC).
#[must_use]
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
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

/// Sets a condition; its transition time changes only when its status does.
pub fn set_condition(
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

/// Removes a condition.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

impl Phase {
    /// Sets the conditions of `status` to this phase, for `generation`.
    ///
    /// ```
    /// use gitops_examples::controller::{GitSyncStatus, Phase};
    /// let mut status = GitSyncStatus::default();
    /// Phase::Stalled { reason: "BuildFailed", message: "app.yaml:3: bad".into() }
    ///     .apply_to(&mut status, Some(2), "2026-01-01T00:00:00Z");
    /// assert_eq!(status.condition("Ready").unwrap().status, "False");
    /// assert_eq!(status.condition("Stalled").unwrap().message, "app.yaml:3: bad");
    /// assert!(status.condition("Reconciling").is_none());
    /// ```
    pub fn apply_to(&self, status: &mut GitSyncStatus, generation: Option<i64>, now: &str) {
        let conditions = &mut status.conditions;
        match self {
            Phase::Progressing { message } => {
                set_condition(
                    conditions,
                    RECONCILING,
                    "True",
                    REASON_PROGRESSING,
                    message,
                    generation,
                    now,
                );
                set_condition(
                    conditions,
                    READY,
                    "Unknown",
                    REASON_PROGRESSING,
                    "Reconciliation in progress",
                    generation,
                    now,
                );
                remove_condition(conditions, STALLED);
            }
            Phase::Succeeded { message } => {
                set_condition(
                    conditions,
                    READY,
                    "True",
                    REASON_SUCCEEDED,
                    message,
                    generation,
                    now,
                );
                remove_condition(conditions, RECONCILING);
                remove_condition(conditions, STALLED);
            }
            Phase::Retrying { reason, message } => {
                set_condition(conditions, READY, "False", reason, message, generation, now);
                set_condition(
                    conditions,
                    RECONCILING,
                    "True",
                    REASON_RETRYING,
                    &format!("retrying after {reason}"),
                    generation,
                    now,
                );
                remove_condition(conditions, STALLED);
            }
            Phase::Stalled { reason, message } => {
                set_condition(conditions, READY, "False", reason, message, generation, now);
                set_condition(
                    conditions, STALLED, "True", reason, message, generation, now,
                );
                remove_condition(conditions, RECONCILING);
            }
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

/// Writes the controller's part of the status (everything but the inventory) with server-side
/// apply on the status subresource, under `field_manager`.
///
/// # Errors
/// The API's.
pub async fn write_status(
    api: &Api<GitSync>,
    name: &str,
    status: &GitSyncStatus,
    field_manager: &str,
) -> Result<(), kube::Error> {
    let mut status = serde_json::to_value(status).expect("the status serialises");
    if let Some(fields) = status.as_object_mut() {
        // Owned by the inventory's field manager.
        fields.remove("inventory");
    }
    let patch = serde_json::json!({
        "apiVersion": format!("{}/{}", super::GROUP, super::VERSION),
        "kind": "GitSync",
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut status = GitSyncStatus::default();
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
        assert_eq!(status.condition(READY).unwrap().reason, "FetchFailed");

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
    fn long_messages_are_cut_on_a_char_boundary() {
        let message = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = truncate(&message);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 20);
        assert!(cut.ends_with("(truncated)"));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn time_format() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
    }
}
