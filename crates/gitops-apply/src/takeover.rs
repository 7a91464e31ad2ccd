//! Taking over fields other field managers own: which managers ([`TakeoverManager`]) and the
//! managedFields rewrite that moves their fields into our `Apply` entry.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

/// The operation of a managedFields entry: a server-side apply or any other write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManagedOperation {
    /// Server-side apply (`kubectl apply --server-side`, other appliers).
    Apply,
    /// Any other write: create, update, patch (`kubectl edit`, `kubectl patch`, client-side
    /// `kubectl apply`, controllers).
    Update,
}

impl ManagedOperation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// A field manager whose fields an apply takes over, as Flux's kustomize-controller does with
/// the managers of `kubectl` and `before-first-apply`: the fields the manager owns move into our
/// `Apply` entry of managedFields, so that the apply sets them to the desired values (no
/// conflict) and removes those the set does not have.
///
/// Entries of the `status` subresource (and any other but `scale`) are never taken over;
/// entries of `scale` (`kubectl scale`) are, as the apiserver records them in the object's own
/// fields (`spec.replicas`).
///
/// ```
/// use gitops_apply::{ApplyOptions, ManagedOperation, TakeoverManager};
///
/// // kubectl's managers and before-first-apply, plus a script's.
/// let mut managers = TakeoverManager::defaults();
/// managers.push(TakeoverManager::exact("deploy-script", ManagedOperation::Update));
/// let options = ApplyOptions::default().with_takeover(managers);
/// assert_eq!(options.takeover.len(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TakeoverManager {
    name: String,
    prefix: bool,
    operation: ManagedOperation,
}

impl TakeoverManager {
    /// The manager named exactly `name`, for entries of `operation`.
    #[must_use]
    pub fn exact(name: impl Into<String>, operation: ManagedOperation) -> Self {
        Self {
            name: name.into(),
            prefix: false,
            operation,
        }
    }

    /// Every manager whose name starts with `prefix` (`kubectl` matches `kubectl-edit`,
    /// `kubectl-client-side-apply`, ...), for entries of `operation`.
    #[must_use]
    pub fn prefix(prefix: impl Into<String>, operation: ManagedOperation) -> Self {
        Self {
            name: prefix.into(),
            prefix: true,
            operation,
        }
    }

    /// The managers taken over by default when takeover is on: every `kubectl` command's
    /// manager (prefix `kubectl`: `kubectl-client-side-apply`, `kubectl-edit`, `kubectl-patch`,
    /// `kubectl-scale`, `kubectl-label`, ...) with `Update` entries, `kubectl` server-side applies (`Apply`),
    /// and `before-first-apply` (`Update`, what `kubectl apply --server-side` leaves when it
    /// migrates a client-side applied object).
    #[must_use]
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::prefix("kubectl", ManagedOperation::Update),
            Self::prefix("kubectl", ManagedOperation::Apply),
            Self::exact("before-first-apply", ManagedOperation::Update),
        ]
    }

    /// The name (or prefix) matched.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operation matched.
    #[must_use]
    pub fn operation(&self) -> ManagedOperation {
        self.operation
    }

    /// Whether the managedFields entry `entry` (one element of `metadata.managedFields`)
    /// matches.
    #[must_use]
    pub fn matches(&self, entry: &Value) -> bool {
        let Some(manager) = entry["manager"].as_str() else {
            return false;
        };
        let subresource = entry
            .get("subresource")
            .and_then(Value::as_str)
            .unwrap_or_default();
        entry["operation"] == self.operation.as_str()
            && (subresource.is_empty() || subresource == "scale")
            && if self.prefix {
                manager.starts_with(&self.name)
            } else {
                manager == self.name
            }
    }
}

impl fmt::Display for TakeoverManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{} ({})",
            self.name,
            if self.prefix { "*" } else { "" },
            self.operation.as_str()
        )
    }
}

fn entries(live: &Value) -> &[Value] {
    live.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Whether `entry` is taken over from `live` by `field_manager`: it matches one of `managers`
/// and is not our own `Apply` entry.
fn is_taken(entry: &Value, managers: &[TakeoverManager], field_manager: &str) -> bool {
    let ours = entry["manager"] == field_manager && entry["operation"] == "Apply";
    !ours && managers.iter().any(|m| m.matches(entry))
}

/// The names of the managers of `live` that `field_manager` takes over (empty: nothing to do).
pub(crate) fn managers_taken_over(
    live: &Value,
    managers: &[TakeoverManager],
    field_manager: &str,
) -> BTreeSet<String> {
    if managers.is_empty() {
        return BTreeSet::new();
    }
    entries(live)
        .iter()
        .filter(|e| is_taken(e, managers, field_manager))
        .filter_map(|e| e["manager"].as_str().map(str::to_owned))
        .collect()
}

/// The managedFields of `live` after the takeover: the entries of the matched managers are
/// merged into `field_manager`'s `Apply` entry (made when missing); `None` when nothing matches.
pub(crate) fn managed_fields_after_takeover(
    live: &Value,
    managers: &[TakeoverManager],
    field_manager: &str,
) -> Option<Vec<Value>> {
    let entries = entries(live);
    let mut taken = Value::Object(serde_json::Map::new());
    let mut api_version = Value::Null;
    let mut any = false;
    for entry in entries
        .iter()
        .filter(|e| is_taken(e, managers, field_manager))
    {
        merge_fields(&mut taken, &entry["fieldsV1"]);
        api_version = entry["apiVersion"].clone();
        any = true;
    }
    if !any {
        return None;
    }
    let mut merged_into_ours = false;
    let mut kept: Vec<Value> = Vec::with_capacity(entries.len());
    for entry in entries
        .iter()
        .filter(|e| !is_taken(e, managers, field_manager))
    {
        let mut entry = entry.clone();
        if !merged_into_ours
            && entry["manager"] == field_manager
            && entry["operation"] == "Apply"
            && entry.get("subresource").is_none_or(Value::is_null)
        {
            merge_fields(&mut entry["fieldsV1"], &taken);
            merged_into_ours = true;
        }
        kept.push(entry);
    }
    if !merged_into_ours {
        kept.push(serde_json::json!({
            "manager": field_manager,
            "operation": "Apply",
            "apiVersion": api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": taken,
        }));
    }
    Some(kept)
}

/// Adds the fields of the fieldsV1 set `from` to `into` (a union of nested maps).
fn merge_fields(into: &mut Value, from: &Value) {
    let Value::Object(from) = from else {
        return;
    };
    if !into.is_object() {
        *into = Value::Object(serde_json::Map::new());
    }
    let into = into.as_object_mut().expect("made an object above");
    for (key, value) in from {
        merge_fields(
            into.entry(key.clone())
                .or_insert(Value::Object(serde_json::Map::new())),
            value,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_field_sets_as_a_union() {
        let mut ours = json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:x": {}}}});
        let kubectl = json!({"f:data": {"f:b": {}}, "f:metadata": {"f:annotations": {"f:k": {}}}});
        merge_fields(&mut ours, &kubectl);
        assert_eq!(
            ours,
            json!({"f:data": {"f:a": {}, "f:b": {}},
                   "f:metadata": {"f:labels": {"f:x": {}}, "f:annotations": {"f:k": {}}}})
        );
    }

    #[test]
    fn matches_by_name_or_prefix_operation_and_never_status() {
        let edit = json!({"manager": "kubectl-edit", "operation": "Update"});
        let status =
            json!({"manager": "kubectl-edit", "operation": "Update", "subresource": "status"});
        let scale =
            json!({"manager": "kubectl-scale", "operation": "Update", "subresource": "scale"});
        let ssa = json!({"manager": "kubectl", "operation": "Apply"});
        let prefix = TakeoverManager::prefix("kubectl", ManagedOperation::Update);
        assert!(prefix.matches(&edit));
        assert!(!prefix.matches(&status));
        assert!(prefix.matches(&scale));
        assert!(!prefix.matches(&ssa));
        let exact = TakeoverManager::exact("kubectl", ManagedOperation::Apply);
        assert!(exact.matches(&ssa));
        assert!(!TakeoverManager::exact("kubectl", ManagedOperation::Update).matches(&edit));
        assert_eq!(prefix.to_string(), "kubectl* (Update)");
    }

    #[test]
    fn moves_matched_entries_into_ours_and_keeps_the_others() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "gitops-rs", "operation": "Apply", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:b": {}}}},
            {"manager": "hpa", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:c": {}}}},
        ]}});
        let defaults = TakeoverManager::defaults();
        assert_eq!(
            managers_taken_over(&live, &defaults, "gitops-rs"),
            BTreeSet::from(["kubectl-edit".to_owned()])
        );
        let after = managed_fields_after_takeover(&live, &defaults, "gitops-rs").unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(
            after[0]["fieldsV1"],
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        );
        assert_eq!(after[1]["manager"], "hpa");
        // Nothing to take over: no rewrite.
        assert!(managed_fields_after_takeover(&live, &[], "gitops-rs").is_none());
        let ours_only = json!({"metadata": {"managedFields": [after[0].clone()]}});
        assert!(managed_fields_after_takeover(&ours_only, &defaults, "gitops-rs").is_none());
    }

    #[test]
    fn makes_our_entry_when_missing() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:b": {}}}},
        ]}});
        let after = managed_fields_after_takeover(&live, &TakeoverManager::defaults(), "gitops-rs")
            .unwrap();
        assert_eq!(
            after,
            [
                json!({"manager": "gitops-rs", "operation": "Apply", "apiVersion": "v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:b": {}}}})
            ]
        );
    }
}
