//! How the binaries print what a `gitops-sync` unit's sync did: the [`SyncReport`] (status
//! line, drift corrected, JSON for CI) and error chains.

use std::time::Duration;

use gitops_apply::{ChangeSet, ObjectAction};
use gitops_source::Revision;
use serde_json::{Value, json};

/// Objects written although the revision had been applied already (not in a dry run).
fn drift(new_revision: bool, change_set: &ChangeSet) -> usize {
    if new_revision || change_set.dry_run {
        return 0;
    }
    [
        ObjectAction::Created,
        ObjectAction::Configured,
        ObjectAction::Recreated,
    ]
    .into_iter()
    .map(|action| change_set.count(action))
    .sum()
}

/// The status line of [`SyncReport::status_line`].
fn status_line(
    revision: &Revision,
    served_last_good: bool,
    drift_corrected: usize,
    change_set: &ChangeSet,
    duration: Duration,
    (requests, writes): (u64, u64),
) -> String {
    let count = |action| change_set.count(action);
    let mut line = format!(
        "{}{}: {} created, {} configured, {} unchanged, {} pruned",
        short_revision(revision),
        if served_last_good { " (last good)" } else { "" },
        count(ObjectAction::Created),
        count(ObjectAction::Configured) + count(ObjectAction::Recreated),
        count(ObjectAction::Unchanged),
        count(ObjectAction::Pruned),
    );
    let skipped = count(ObjectAction::Skipped);
    if skipped > 0 {
        line.push_str(&format!(", {skipped} skipped"));
    }
    let failed = count(ObjectAction::Failed);
    if failed > 0 {
        line.push_str(&format!(", {failed} failed"));
    }
    line.push_str(&format!(
        ", {drift_corrected} drift corrected, {:.2}s, {} API requests ({} writes)",
        duration.as_secs_f64(),
        requests,
        writes
    ));
    if change_set.dry_run {
        line.push_str(" (dry run: nothing written)");
    }
    line
}

/// The objects a `gitops-sync` unit's sync wrote although its revision had been applied
/// already: drift corrected (0 in a dry run).
///
/// ```
/// let report = gitops_sync::SyncReport {
///     revision: gitops_source::Revision::from_string("sha256:1"),
///     new_revision: false,
///     served_last_good: false,
///     change_set: gitops_apply::ChangeSet::default(),
///     timings: gitops_sync::SyncTimings::default(),
/// };
/// assert_eq!(gitops_examples::pipeline::drift_corrected(&report), 0);
/// ```
#[must_use]
pub fn drift_corrected(report: &gitops_sync::SyncReport) -> usize {
    drift(report.new_revision, &report.change_set)
}

/// The status line of a `gitops-sync` unit's sync, as [`SyncReport::status_line`] prints it:
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
/// assert!(gitops_examples::pipeline::unit_status_line(&report).contains("0 drift corrected"));
/// ```
#[must_use]
pub fn unit_status_line(report: &gitops_sync::SyncReport) -> String {
    status_line(
        &report.revision,
        report.served_last_good,
        drift_corrected(report),
        &report.change_set,
        report.timings.total,
        (
            report.change_set.request_counts.total,
            report.change_set.request_counts.writes,
        ),
    )
}

/// The outcome of one sync.
#[derive(Debug)]
pub struct SyncReport {
    /// The revision applied.
    pub revision: Revision,
    /// Whether this revision was not yet applied by this pipeline (a new commit, or the first
    /// sync). When false, every write corrected drift.
    pub new_revision: bool,
    /// Whether the set applied is the last good revision's, because the current one could not
    /// be fetched or rendered (then nothing was pruned).
    pub served_last_good: bool,
    /// What happened to each object, and the API requests the apply sent.
    pub change_set: ChangeSet,
    /// How long waiting for the objects to become Current took, when waited for (only after a
    /// new revision or a write, and only with a wait timeout).
    pub waited: Option<Duration>,
    /// How long the whole sync took.
    pub duration: Duration,
    /// API requests of the whole sync: apply (discovery, reads, dry runs, writes, inventory,
    /// prune) and wait. Not counted: a pipeline's one-time bookkeeping (reading the revision the
    /// inventory records before its first apply, recording a new one after an apply, and the
    /// discovery of the cluster's version and API versions before its first Helm render).
    pub api_requests: u64,
    /// Of those, the writes (creates, patches, deletes; dry runs excluded): 0 when nothing
    /// changed.
    pub api_writes: u64,
    /// The entries of the fetched revision left out of the artifact (symbolic links,
    /// submodules, special files), each as `path (reason)` with the path escaped: warnings.
    pub skipped_entries: Vec<String>,
}

impl SyncReport {
    /// The report of a `gitops-sync` unit's sync, with the entries its fetch left out.
    ///
    /// ```
    /// let report = gitops_sync::SyncReport {
    ///     revision: gitops_source::Revision::from_string("sha256:1"),
    ///     new_revision: true,
    ///     served_last_good: false,
    ///     change_set: gitops_apply::ChangeSet::default(),
    ///     timings: gitops_sync::SyncTimings::default(),
    /// };
    /// let report = gitops_examples::pipeline::SyncReport::from_unit(report, Vec::new());
    /// assert_eq!(report.drift_corrected(), 0);
    /// ```
    #[must_use]
    pub fn from_unit(report: gitops_sync::SyncReport, skipped_entries: Vec<String>) -> Self {
        let counts = report.change_set.request_counts;
        Self {
            revision: report.revision,
            new_revision: report.new_revision,
            served_last_good: report.served_last_good,
            waited: report.timings.wait,
            duration: report.timings.total,
            api_requests: counts.total,
            api_writes: counts.writes,
            change_set: report.change_set,
            skipped_entries,
        }
    }

    /// How many objects had `action`.
    #[must_use]
    pub fn count(&self, action: ObjectAction) -> usize {
        self.change_set.count(action)
    }

    /// Whether anything was (or, in a dry run, would be) created, changed, recreated or pruned.
    #[must_use]
    pub fn changed(&self) -> bool {
        self.change_set.changes.iter().any(|change| {
            matches!(
                change.action,
                ObjectAction::Created
                    | ObjectAction::Configured
                    | ObjectAction::Recreated
                    | ObjectAction::Pruned
            )
        })
    }

    /// Objects written although the revision had been applied already: drift corrected.
    #[must_use]
    pub fn drift_corrected(&self) -> usize {
        drift(self.new_revision, &self.change_set)
    }

    /// One line for logs: revision, counts, drift, duration and API requests.
    ///
    /// `main@sha1:1a2b3c4d5e6f: 1 created, 2 configured, 7 unchanged, 1 pruned, 2 drift corrected, 0.42s, 17 API requests (4 writes)`
    #[must_use]
    pub fn status_line(&self) -> String {
        status_line(
            &self.revision,
            self.served_last_good,
            self.drift_corrected(),
            &self.change_set,
            self.duration,
            (self.api_requests, self.api_writes),
        )
    }

    /// The report as JSON for CI: revision, counts, and one entry per object with its action,
    /// reason, origin, error and (in a dry run) its diff with Secret values masked, and for an
    /// object to create its content (`object`, Secret values masked); the entries the fetch
    /// left out (`skippedEntries`); the sync hooks run (`hooks`: id, origin, phase, outcome,
    /// message, deleted; `planned` in a dry run).
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
                    entry["error"] = json!(error_chain(error));
                }
                if let Some(diff) = &change.diff {
                    entry["diff"] = serde_json::to_value(diff).unwrap_or(Value::Null);
                    // What an object to create will hold, so that CI sees it (Secret values
                    // masked, server bookkeeping left out).
                    if change.action == ObjectAction::Created
                        && let Ok(Some(object)) = diff.predicted_for_display(None)
                    {
                        entry["object"] = object;
                    }
                }
                entry
            })
            .collect();
        json!({
            "revision": self.revision.as_str(),
            "newRevision": self.new_revision,
            "servedLastGood": self.served_last_good,
            "dryRun": self.change_set.dry_run,
            "changed": self.changed(),
            "counts": {
                "created": self.count(ObjectAction::Created),
                "configured": self.count(ObjectAction::Configured),
                "recreated": self.count(ObjectAction::Recreated),
                "unchanged": self.count(ObjectAction::Unchanged),
                "pruned": self.count(ObjectAction::Pruned),
                "skipped": self.count(ObjectAction::Skipped),
                "failed": self.count(ObjectAction::Failed),
            },
            "driftCorrected": self.drift_corrected(),
            "durationSeconds": self.duration.as_secs_f64(),
            "waitedSeconds": self.waited.map(|d| d.as_secs_f64()),
            "apiRequests": self.api_requests,
            "apiWrites": self.api_writes,
            "skippedEntries": self.skipped_entries,
            "objects": objects,
            "hooks": serde_json::to_value(&self.change_set.hooks).unwrap_or(Value::Null),
        })
    }
}

/// The lower-case name of an action, as in JSON output: `created`, `configured`, ...
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
        // Actions added later are named by their own Display.
        _ => "other",
    }
}

/// `main@sha1:0123456789ab` for a Git revision (12 hex digits), the revision otherwise
/// shortened to 19 characters.
#[must_use]
pub fn short_revision(revision: &Revision) -> String {
    let text = revision.as_str();
    match text.rsplit_once("sha1:") {
        Some((prefix, hash)) if hash.len() > 12 => format!("{prefix}sha1:{}", &hash[..12]),
        _ if text.starts_with("sha256:") && text.len() > 19 => text[..19].to_owned(),
        _ => text.to_owned(),
    }
}

/// An error and its sources, joined with `: `.
///
/// ```
/// let error = std::io::Error::other("disk full");
/// assert_eq!(gitops_examples::pipeline::error_chain(&error), "disk full");
/// ```
#[must_use]
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let part = next.to_string();
        // Transparent wrappers repeat their source's message.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_shortened() {
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
    }

    #[test]
    fn error_chains_skip_repeated_messages() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error(transparent)]
        struct Transparent(std::io::Error);
        assert_eq!(
            error_chain(&Outer(std::io::Error::other("inner"))),
            "outer: inner"
        );
        assert_eq!(
            error_chain(&Transparent(std::io::Error::other("inner"))),
            "inner"
        );
    }

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
        SyncReport {
            skipped_entries: Vec::new(),
            revision: Revision::from_string("sha256:abc"),
            new_revision,
            served_last_good: false,
            change_set: ChangeSet {
                changes,
                requests: 7,
                dry_run: false,
                ..ChangeSet::default()
            },
            waited: None,
            duration: Duration::from_millis(250),
            api_requests: 9,
            api_writes: 2,
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
    }
}
