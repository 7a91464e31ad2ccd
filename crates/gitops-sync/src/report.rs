//! What printing a [`SyncReport`] needs: its status line, the drift it corrected, JSON for CI,
//! and short revisions.

use gitops_apply::ObjectAction;
use gitops_diff::Colour;
use gitops_source::Revision;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

use crate::unit::SyncReport;

impl SyncReport {
    /// Objects written although the revision had been applied already: drift corrected (0 for
    /// a new revision and in a dry run).
    ///
    /// ```
    /// let report = gitops_sync::SyncReport {
    ///     revision: gitops_source::Revision::from_string("sha256:1"),
    ///     new_revision: false,
    ///     served_last_good: false,
    ///     change_set: gitops_apply::ChangeSet::default(),
    ///     timings: gitops_sync::SyncTimings::default(),
    /// };
    /// assert_eq!(report.drift_corrected(), 0);
    /// ```
    #[must_use]
    pub fn drift_corrected(&self) -> usize {
        if self.new_revision || self.change_set.dry_run {
            return 0;
        }
        [
            ObjectAction::Created,
            ObjectAction::Configured,
            ObjectAction::Recreated,
        ]
        .into_iter()
        .map(|action| self.change_set.count(action))
        .sum()
    }

    /// One line for logs: revision, counts, drift, duration and API requests —
    /// `main@sha1:1a2b3c4d5e6f: 1 created, 2 configured, 7 unchanged, 1 pruned, 2 drift corrected, 0.42s, 17 API requests (4 writes)`.
    ///
    /// ```
    /// let report = gitops_sync::SyncReport {
    ///     revision: gitops_source::Revision::from_string("sha256:1"),
    ///     new_revision: true,
    ///     served_last_good: false,
    ///     change_set: gitops_apply::ChangeSet::default(),
    ///     timings: gitops_sync::SyncTimings::default(),
    /// };
    /// assert!(report.status_line().contains("0 drift corrected"));
    /// ```
    #[must_use]
    pub fn status_line(&self) -> String {
        let count = |action| self.change_set.count(action);
        let mut line = format!(
            "{}{}: {} created, {} configured, {} unchanged, {} pruned",
            short_revision(&self.revision),
            if self.served_last_good {
                " (last good)"
            } else {
                ""
            },
            count(ObjectAction::Created),
            count(ObjectAction::Configured) + count(ObjectAction::Recreated),
            count(ObjectAction::Unchanged),
            count(ObjectAction::Pruned),
        );
        for (action, word) in [
            (ObjectAction::Skipped, "skipped"),
            (ObjectAction::Failed, "failed"),
        ] {
            if count(action) > 0 {
                line.push_str(&format!(", {} {word}", count(action)));
            }
        }
        let requests = self.change_set.request_counts;
        line.push_str(&format!(
            ", {} drift corrected, {:.2}s, {} API requests ({} writes)",
            self.drift_corrected(),
            self.timings.total.as_secs_f64(),
            requests.total,
            requests.writes
        ));
        if self.change_set.dry_run {
            line.push_str(" (dry run: nothing written)");
        }
        line
    }

    /// The report as JSON for CI: revision, counts, drift, timings, API requests, and one
    /// entry per object with its action, reason, origin, error and (in a dry run) its diff with
    /// Secret values masked, and for an object to create its content (`object`, Secret values
    /// masked); the sync hooks run (`hooks`).
    ///
    /// ```
    /// let report = gitops_sync::SyncReport {
    ///     revision: gitops_source::Revision::from_string("sha256:1"),
    ///     new_revision: true,
    ///     served_last_good: false,
    ///     change_set: gitops_apply::ChangeSet::default(),
    ///     timings: gitops_sync::SyncTimings::default(),
    /// };
    /// assert_eq!(report.to_json()["counts"]["created"], 0);
    /// ```
    #[must_use]
    pub fn to_json(&self) -> Value {
        let objects: Vec<Value> = self
            .change_set
            .changes
            .iter()
            .map(|change| {
                let mut entry = json!({
                    "id": change.id.to_string(),
                    "group": change.id.group,
                    "kind": change.id.kind,
                    "namespace": change.id.namespace,
                    "name": change.id.name,
                    "action": action_name(change.action),
                    "reason": change.reason.to_string(),
                });
                if let Some(origin) = &change.origin {
                    entry["origin"] = json!(origin.to_string());
                }
                if let Some(error) = &change.error {
                    entry["error"] = json!(gitops_core::error_chain(error));
                }
                if let Some(diff) = &change.diff {
                    entry["diff"] = serde_json::to_value(diff).unwrap_or(Value::Null);
                    // What an object to create will hold (Secret values masked, server
                    // bookkeeping left out).
                    if change.action == ObjectAction::Created
                        && let Ok(Some(object)) = diff.predicted_for_display(None)
                    {
                        entry["object"] = object;
                    }
                }
                entry
            })
            .collect();
        let count = |action| self.change_set.count(action);
        let requests = self.change_set.request_counts;
        json!({
            "revision": self.revision.as_str(),
            "newRevision": self.new_revision,
            "servedLastGood": self.served_last_good,
            "dryRun": self.change_set.dry_run,
            "changed": self.changed(),
            "counts": {
                "created": count(ObjectAction::Created),
                "configured": count(ObjectAction::Configured),
                "recreated": count(ObjectAction::Recreated),
                "unchanged": count(ObjectAction::Unchanged),
                "pruned": count(ObjectAction::Pruned),
                "skipped": count(ObjectAction::Skipped),
                "failed": count(ObjectAction::Failed),
            },
            "driftCorrected": self.drift_corrected(),
            "durationSeconds": self.timings.total.as_secs_f64(),
            "waitedSeconds": self.timings.wait.map(|d| d.as_secs_f64()),
            "apiRequests": requests.total,
            "apiWrites": requests.writes,
            "objects": objects,
            "hooks": serde_json::to_value(&self.change_set.hooks).unwrap_or(Value::Null),
        })
    }
}

/// The lower-case name of an action, as in JSON output: `created`, `configured`, ...
///
/// ```
/// assert_eq!(gitops_sync::action_name(gitops_apply::ObjectAction::Pruned), "pruned");
/// ```
#[must_use]
pub fn action_name(action: ObjectAction) -> &'static str {
    match action {
        ObjectAction::Created => "created",
        ObjectAction::Configured => "configured",
        ObjectAction::Recreated => "recreated",
        ObjectAction::Unchanged => "unchanged",
        ObjectAction::Pruned => "pruned",
        ObjectAction::Skipped => "skipped",
        ObjectAction::Failed => "failed",
        // Actions added later.
        _ => "other",
    }
}

/// `main@sha1:0123456789ab` for a Git revision (12 hex digits), the revision otherwise
/// shortened to 19 characters; escaped (it may come from a repository).
///
/// ```
/// let revision = gitops_source::Revision::git("main", &"ab".repeat(20));
/// assert_eq!(gitops_sync::short_revision(&revision), "main@sha1:abababababab");
/// ```
#[must_use]
pub fn short_revision(revision: &Revision) -> String {
    let text = revision.as_str();
    let short = match text.rsplit_once("sha1:") {
        Some((prefix, hash)) if hash.len() > 12 && hash.is_char_boundary(12) => {
            format!("{prefix}sha1:{}", &hash[..12])
        }
        _ if text.starts_with("sha256:") && text.len() > 19 && text.is_char_boundary(19) => {
            text[..19].to_owned()
        }
        _ => text.to_owned(),
    };
    gitops_core::escape::Escaped(&short).to_string()
}

/// A human-readable plan of a dry-run change set: one unified YAML diff per object to create or
/// change (Secret values masked, coloured as `colour` says), and one line per object to
/// prune, fail, or be left alone for a reason to act on (owned by another inventory). Reads
/// each changed object from the cluster; an object that cannot be read, or
/// changed since the plan, is shown by its field changes instead.
///
/// ```no_run
/// # async fn run(client: kube::Client, change_set: gitops_apply::ChangeSet) {
/// let text = gitops_sync::plan_text(&client, &change_set, gitops_diff::Colour::Never).await;
/// print!("{text}");
/// # }
/// ```
pub async fn plan_text(
    client: &kube::Client,
    change_set: &gitops_apply::ChangeSet,
    colour: Colour,
) -> String {
    let mut text = String::new();
    for change in &change_set.changes {
        match change.action {
            ObjectAction::Created | ObjectAction::Configured | ObjectAction::Recreated => {}
            ObjectAction::Pruned => {
                text.push_str(&format!("--- prune {}\n", change.id.display_name()));
                continue;
            }
            ObjectAction::Failed => {
                text.push_str(&format!("!!! {change}\n"));
                continue;
            }
            // Left alone for a reason to act on (owned by another inventory).
            ObjectAction::Skipped if change.error.is_some() => {
                text.push_str(&format!("=== {change}\n"));
                continue;
            }
            _ => continue,
        }
        let Some(diff) = &change.diff else {
            text.push_str(&format!("*** {change}\n"));
            continue;
        };
        let live = if change.action == ObjectAction::Created {
            None
        } else {
            let api: Api<DynamicObject> = match &change.id.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &change.resource),
                None => Api::all_with(client.clone(), &change.resource),
            };
            match api.get_opt(&change.id.name).await {
                Ok(live) => live.and_then(|object| serde_json::to_value(object).ok()),
                Err(error) => {
                    tracing::warn!(object = %change.id.display_name(), %error, "reading the live object for the plan");
                    None
                }
            }
        };
        match diff.unified_yaml(live.as_ref(), colour) {
            Ok(unified) => text.push_str(&unified),
            Err(error) => {
                // The live object changed since the plan: list the field changes.
                tracing::debug!(%error, "falling back to field changes");
                text.push_str(&format!("*** {}\n", change.id.display_name()));
                for field in &diff.changes {
                    text.push_str(&format!("    {:?} {}\n", field.kind, field.path));
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gitops_apply::ChangeSet;

    use super::*;
    use crate::SyncTimings;

    fn report(actions: &[ObjectAction], new_revision: bool) -> SyncReport {
        let resource = kube::discovery::ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        };
        let changes = actions
            .iter()
            .enumerate()
            .map(|(i, action)| gitops_apply::ObjectChange {
                id: gitops_core::ObjectId::new("", "ConfigMap", Some("ns"), format!("c{i}")),
                origin: None,
                resource: resource.clone(),
                action: *action,
                reason: gitops_apply::Reason::InSync,
                error: None,
                diff: None,
                health: None,
            })
            .collect();
        let mut change_set = ChangeSet {
            changes,
            ..ChangeSet::default()
        };
        change_set.request_counts.total = 9;
        change_set.request_counts.writes = 2;
        SyncReport {
            revision: Revision::from_string("sha256:abc"),
            new_revision,
            served_last_good: false,
            change_set,
            timings: SyncTimings {
                total: Duration::from_millis(250),
                ..SyncTimings::default()
            },
        }
    }

    #[test]
    fn drift_is_counted_only_for_an_applied_revision() {
        let actions = [
            ObjectAction::Configured,
            ObjectAction::Unchanged,
            ObjectAction::Created,
        ];
        assert_eq!(report(&actions, true).drift_corrected(), 0);
        let again = report(&actions, false);
        assert_eq!(again.drift_corrected(), 2);
        assert!(again.changed());
        assert_eq!(
            again.status_line(),
            "sha256:abc: 1 created, 1 configured, 1 unchanged, 0 pruned, 2 drift corrected, 0.25s, 9 API requests (2 writes)"
        );
        let quiet = report(&[ObjectAction::Unchanged, ObjectAction::Skipped], false);
        assert!(!quiet.changed());
        let json = quiet.to_json();
        assert_eq!(json["counts"]["unchanged"], 1);
        assert_eq!(json["objects"][1]["action"], "skipped");
        assert_eq!(json["objects"][0]["id"], "ns_c0__ConfigMap");
        assert_eq!(json["apiRequests"], 9);
    }

    #[test]
    fn revisions_are_shortened_and_escaped() {
        let hash = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            short_revision(&Revision::git("main", hash)),
            "main@sha1:0123456789ab"
        );
        assert_eq!(
            short_revision(&Revision::from_string(format!("sha256:{hash}"))),
            "sha256:0123456789ab"
        );
        assert_eq!(short_revision(&Revision::from_string("v1")), "v1");
        assert!(!short_revision(&Revision::from_string("a\nb")).contains('\n'));
    }
}
