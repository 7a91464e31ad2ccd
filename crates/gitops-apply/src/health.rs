//! Health: kstatus-style status of live objects, and waiting for a set to become Current.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitops_core::{GroupKind, ObjectId};
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::live::{ReadGroup, Reader, carries, name_of, owner_selector, read_groups};

/// The health of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// The object has reached its desired state.
    Current,
    /// It is on its way (rollout, provisioning, deletion).
    InProgress,
    /// It cannot reach its desired state without a change (failed Job, deadline exceeded).
    Failed,
    /// It does not exist.
    NotFound,
}

/// A status with a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The status.
    pub status: Status,
    /// Why, for messages and progress reports.
    pub message: String,
}

impl Health {
    fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn current() -> Self {
        Self::new(Status::Current, "ready")
    }
    fn in_progress(message: impl Into<String>) -> Self {
        Self::new(Status::InProgress, message)
    }
    fn failed(message: impl Into<String>) -> Self {
        Self::new(Status::Failed, message)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message comes from the cluster (a condition, a Pod's status): one line, escaped.
        write!(
            f,
            "{:?}: {}",
            self.status,
            gitops_core::escape::Escaped(&self.message)
        )
    }
}

/// Judges the health of objects of one kind; register your own in [`HealthChecks`].
pub trait HealthCheck: Send + Sync {
    /// The health of a live object.
    fn check(&self, object: &Value) -> Health;
}

impl<F: Fn(&Value) -> Health + Send + Sync> HealthCheck for F {
    fn check(&self, object: &Value) -> Health {
        self(object)
    }
}

/// The health checks by group and kind, falling back to the built-in ones ([`builtin_health`]).
///
/// ```
/// use gitops_apply::{Health, HealthChecks, Status};
/// use gitops_core::GroupKind;
/// let mut checks = HealthChecks::default();
/// checks.register(GroupKind::new("example.com", "Widget"), |object: &serde_json::Value| {
///     if object["status"]["ok"] == true {
///         Health { status: Status::Current, message: "ok".into() }
///     } else {
///         Health { status: Status::InProgress, message: "not yet".into() }
///     }
/// });
/// let widget = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget",
///     "metadata": {"name": "w"}, "status": {"ok": true}});
/// assert_eq!(checks.check(&widget).status, Status::Current);
/// ```
#[derive(Clone, Default)]
pub struct HealthChecks {
    custom: HashMap<GroupKind, Arc<dyn HealthCheck>>,
}

impl fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecks")
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl HealthChecks {
    /// Uses `check` for objects of `kind` (a group and kind).
    pub fn register(&mut self, kind: GroupKind, check: impl HealthCheck + 'static) {
        self.custom.insert(kind, Arc::new(check));
    }

    /// The health of a live object.
    #[must_use]
    pub fn check(&self, object: &Value) -> Health {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        match self
            .custom
            .get(&GroupKind::from_api_version(api_version, kind))
        {
            Some(check) => check.check(object),
            None => builtin_health(object),
        }
    }
}

fn int(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

fn condition<'v>(object: &'v Value, kind: &str) -> Option<&'v Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"].as_str() == Some(kind))
}

fn condition_is(object: &Value, kind: &str, status: &str) -> bool {
    condition(object, kind).is_some_and(|c| c["status"].as_str() == Some(status))
}

fn condition_message(object: &Value, kind: &str) -> String {
    condition(object, kind)
        .and_then(|c| c["message"].as_str().or(c["reason"].as_str()))
        .unwrap_or(kind)
        .to_owned()
}

/// The checks every kind shares: deletion, observedGeneration, Reconciling/Stalled and
/// Ready conditions.
fn generic(object: &Value) -> Option<Health> {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return Some(Health::in_progress("being deleted"));
    }
    if let (Some(generation), Some(observed)) = (
        int(object, "/metadata/generation"),
        int(object, "/status/observedGeneration"),
    ) && observed < generation
    {
        return Some(Health::in_progress(format!(
            "generation {generation} not observed yet (observed {observed})"
        )));
    }
    if condition_is(object, "Stalled", "True") {
        return Some(Health::failed(condition_message(object, "Stalled")));
    }
    if condition_is(object, "Reconciling", "True") {
        return Some(Health::in_progress(condition_message(
            object,
            "Reconciling",
        )));
    }
    None
}

/// Whether a live object (one with metadata.generation) has no status.observedGeneration yet.
fn awaits_first_observation(object: &Value) -> bool {
    int(object, "/metadata/generation").is_some()
        && int(object, "/status/observedGeneration").is_none()
}

fn replicas_health(object: &Value, what: &str, checks: &[(&str, &str)]) -> Health {
    let wanted = int(object, "/spec/replicas").unwrap_or(1);
    for (pointer, label) in checks {
        let have = int(object, pointer).unwrap_or(0);
        if have < wanted {
            return Health::in_progress(format!("{what}: {have} of {wanted} replicas {label}"));
        }
    }
    Health::current()
}

fn deployment(object: &Value) -> Health {
    if condition(object, "Progressing").is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Health::failed(condition_message(object, "Progressing"));
    }
    let wanted = int(object, "/spec/replicas").unwrap_or(1);
    let total = int(object, "/status/replicas").unwrap_or(0);
    let updated = int(object, "/status/updatedReplicas").unwrap_or(0);
    if updated < wanted {
        return Health::in_progress(format!("rollout: {updated} of {wanted} replicas updated"));
    }
    if total > updated {
        return Health::in_progress(format!(
            "rollout: {} old replicas pending termination",
            total - updated
        ));
    }
    let health = replicas_health(
        object,
        "rollout",
        &[
            ("/status/availableReplicas", "available"),
            ("/status/readyReplicas", "ready"),
        ],
    );
    if health.status == Status::Current && condition_is(object, "Available", "False") {
        return Health::in_progress(condition_message(object, "Available"));
    }
    health
}

fn stateful_set(object: &Value) -> Health {
    if object
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        == Some("OnDelete")
    {
        return Health::current();
    }
    let health = replicas_health(
        object,
        "rollout",
        &[
            ("/status/readyReplicas", "ready"),
            ("/status/currentReplicas", "current"),
        ],
    );
    if health.status != Status::Current {
        // With a partition, currentReplicas stays below spec by design.
        let partitioned =
            int(object, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0) > 0;
        if !(partitioned && int(object, "/status/readyReplicas") >= int(object, "/spec/replicas")) {
            return health;
        }
    }
    let current = object.pointer("/status/currentRevision");
    let update = object.pointer("/status/updateRevision");
    if update.is_some() && current != update {
        return Health::in_progress("rollout: revision update in progress");
    }
    Health::current()
}

fn daemon_set(object: &Value) -> Health {
    let desired = int(object, "/status/desiredNumberScheduled").unwrap_or(0);
    for (pointer, label) in [
        ("/status/currentNumberScheduled", "scheduled"),
        ("/status/updatedNumberScheduled", "updated"),
        ("/status/numberAvailable", "available"),
        ("/status/numberReady", "ready"),
    ] {
        let have = int(object, pointer).unwrap_or(0);
        if have < desired {
            return Health::in_progress(format!("rollout: {have} of {desired} pods {label}"));
        }
    }
    Health::current()
}

fn replica_set(object: &Value) -> Health {
    if condition_is(object, "ReplicaFailure", "True") {
        return Health::in_progress(condition_message(object, "ReplicaFailure"));
    }
    replicas_health(
        object,
        "replica set",
        &[
            ("/status/fullyLabeledReplicas", "labelled"),
            ("/status/availableReplicas", "available"),
            ("/status/readyReplicas", "ready"),
        ],
    )
}

fn job(object: &Value) -> Health {
    if condition_is(object, "Failed", "True") {
        return Health::failed(condition_message(object, "Failed"));
    }
    if condition_is(object, "Complete", "True") {
        return Health::current();
    }
    if object.pointer("/status/startTime").is_none() {
        return Health::in_progress("job not started");
    }
    Health::in_progress("job running")
}

fn pod(object: &Value) -> Health {
    match object.pointer("/status/phase").and_then(Value::as_str) {
        Some("Succeeded") => return Health::current(),
        Some("Failed") => {
            return Health::failed(
                object
                    .pointer("/status/message")
                    .and_then(Value::as_str)
                    .unwrap_or("pod failed"),
            );
        }
        _ => {}
    }
    for status in object
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            == Some("CrashLoopBackOff")
        {
            return Health::failed(format!(
                "container {} is in CrashLoopBackOff",
                status["name"].as_str().unwrap_or("?")
            ));
        }
    }
    if condition_is(object, "Ready", "True") {
        Health::current()
    } else {
        Health::in_progress("pod not ready")
    }
}

/// The built-in health: Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, Pod,
/// PersistentVolumeClaim, Service, CustomResourceDefinition, Namespace, and any object with
/// standard conditions (`Ready`, `Available`, `Stalled`, `Reconciling`) and observedGeneration.
///
/// ```
/// use gitops_apply::{Status, builtin_health};
/// let job = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
///     "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}});
/// assert_eq!(builtin_health(&job).status, Status::Failed);
/// ```
#[must_use]
pub fn builtin_health(object: &Value) -> Health {
    if let Some(health) = generic(object) {
        return health;
    }
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let group = gitops_core::split_api_version(api_version).0;
    let kind = object["kind"].as_str().unwrap_or_default();
    if group == "apps" && awaits_first_observation(object) {
        // The workload controllers always write status.observedGeneration: without it the
        // controller has not looked at the object yet (or does not run), and the replica
        // counts read as zero would make `replicas: 0` look rolled out.
        return Health::in_progress("not observed by its controller yet");
    }
    match (group, kind) {
        ("apps", "Deployment") => deployment(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps", "DaemonSet") => daemon_set(object),
        ("apps", "ReplicaSet") => replica_set(object),
        ("batch", "Job") => job(object),
        ("", "Pod") => pod(object),
        ("", "PersistentVolumeClaim") => {
            match object.pointer("/status/phase").and_then(Value::as_str) {
                Some("Bound") => Health::current(),
                Some("Lost") => Health::failed("claim lost its volume"),
                phase => Health::in_progress(format!("claim {}", phase.unwrap_or("pending"))),
            }
        }
        ("", "Service") => {
            let load_balancer =
                object.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
            let has_ingress = object
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .is_some_and(|i| !i.is_empty());
            if load_balancer && !has_ingress {
                Health::in_progress("load balancer not provisioned")
            } else {
                Health::current()
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if condition_is(object, "NamesAccepted", "False") {
                Health::failed(condition_message(object, "NamesAccepted"))
            } else if condition_is(object, "Established", "True") {
                Health::current()
            } else {
                Health::in_progress("not established yet")
            }
        }
        ("", "Namespace") => match object.pointer("/status/phase").and_then(Value::as_str) {
            Some("Active") => Health::current(),
            phase => Health::in_progress(format!("namespace {}", phase.unwrap_or("not active"))),
        },
        _ => {
            for kind in ["Ready", "Available"] {
                if condition_is(object, kind, "False") {
                    return Health::in_progress(condition_message(object, kind));
                }
            }
            Health::current()
        }
    }
}

/// An object to wait for.
#[derive(Debug, Clone)]
pub struct WaitTarget {
    /// The object.
    pub id: ObjectId,
    /// How to reach it.
    pub resource: ApiResource,
}

/// Why waiting stopped before every object was Current.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// An object Failed (waiting stops at the first).
    #[error("{} failed: {}", .id.display_name(), gitops_core::escape::Escaped(&.health.message))]
    Failed {
        /// The object.
        id: ObjectId,
        /// Its health.
        health: Health,
    },
    /// The timeout passed.
    #[error("{} object(s) not Current after {timeout:?}: {}", .pending.len(), describe(.pending))]
    Timeout {
        /// The timeout.
        timeout: Duration,
        /// The objects not Current, with their last health.
        pending: Vec<(ObjectId, Health)>,
    },
    /// Reading an object failed.
    #[error("reading {}", .id.display_name())]
    Api {
        /// The object.
        id: ObjectId,
        /// The failure.
        #[source]
        source: crate::KubeError,
    },
    /// The token was cancelled.
    #[error("waiting was cancelled")]
    Cancelled,
}

fn describe(pending: &[(ObjectId, Health)]) -> String {
    pending
        .iter()
        .map(|(id, h)| format!("{} ({h})", id.display_name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Progress of a wait: how many objects are Current out of how many, and the latest health of
/// those that are not.
#[derive(Debug, Clone)]
pub struct WaitProgress {
    /// Objects Current.
    pub current: usize,
    /// Objects waited for.
    pub total: usize,
    /// The others.
    pub pending: Vec<(ObjectId, Health)>,
}

/// Waits until every target is Current: polls the pending objects every `interval`, stops at
/// the first Failed object, at `timeout` or when `cancel` fires, and reports progress after
/// each round.
///
/// A round reads the pending objects with one list per kind and namespace where several
/// share them (a get where one is alone), kinds and namespaces at once: waiting for 1,000
/// objects of 5 kinds in one namespace costs 5 requests a round, not 1,000. Without ownership
/// labels to select them by, those lists are unfiltered: [`crate::Applier::wait`] (and an
/// applier's own waits) list by its inventory's labels instead, so that a round costs what
/// the set holds, not what its namespaces hold.
///
/// # Errors
/// See [`WaitError`].
pub async fn wait_for_current(
    client: &kube::Client,
    targets: &[WaitTarget],
    checks: &HealthChecks,
    timeout: Duration,
    interval: Duration,
    cancel: &CancellationToken,
    progress: impl FnMut(&WaitProgress),
) -> Result<(), WaitError> {
    wait_for_current_paged(
        client,
        targets,
        checks,
        (timeout, interval),
        WaitReads {
            page_size: crate::paging::DEFAULT_PAGE_SIZE,
            owner_labels: None,
        },
        cancel,
        progress,
    )
    .await
}

/// How a wait reads the live objects: the page size of its lists, and the ownership labels
/// of the set waited for, when known (an [`crate::Applier`]'s).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitReads<'a> {
    /// How many objects a page of a list holds.
    pub(crate) page_size: u32,
    /// The labels the objects waited for carry ([`crate::InventoryStore::owner_labels`]),
    /// `None` when unknown: then every list is unfiltered.
    pub(crate) owner_labels: Option<&'a BTreeMap<String, String>>,
}

/// [`wait_for_current`], reading as `reads` says.
pub(crate) async fn wait_for_current_paged(
    client: &kube::Client,
    targets: &[WaitTarget],
    checks: &HealthChecks,
    (timeout, interval): (Duration, Duration),
    reads: WaitReads<'_>,
    cancel: &CancellationToken,
    mut progress: impl FnMut(&WaitProgress),
) -> Result<(), WaitError> {
    let start = Instant::now();
    let reader = TargetReader {
        client,
        page_size: reads.page_size,
    };
    let labels = reads
        .owner_labels
        .filter(|labels| owner_selector(labels).is_some());
    let selector = labels.and_then(owner_selector);
    // Per target, whether the last round found it without our labels (or not at all): the
    // next round expects it missing from a selected list.
    let mut unlabelled = vec![false; targets.len()];
    let mut pending: Vec<usize> = (0..targets.len()).collect();
    loop {
        let live = tokio::select! {
            () = cancel.cancelled() => return Err(WaitError::Cancelled),
            live = read_live(&reader, targets, &pending, selector.as_deref(), &unlabelled) => live?,
        };
        let mut still = Vec::new();
        let mut report = Vec::new();
        for (i, live) in pending.into_iter().zip(live) {
            let target = &targets[i];
            if let Some(labels) = labels {
                unlabelled[i] = live.as_ref().is_none_or(|value| !carries(value, labels));
            }
            let health = match live {
                None => Health::new(Status::NotFound, "not found"),
                Some(value) => checks.check(&value),
            };
            match health.status {
                Status::Current => {}
                Status::Failed => {
                    return Err(WaitError::Failed {
                        id: target.id.clone(),
                        health,
                    });
                }
                Status::InProgress | Status::NotFound => {
                    still.push(i);
                    report.push((target.id.clone(), health));
                }
            }
        }
        progress(&WaitProgress {
            current: targets.len() - still.len(),
            total: targets.len(),
            pending: report.clone(),
        });
        if still.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(WaitError::Timeout {
                timeout,
                pending: report,
            });
        }
        pending = still;
        tokio::select! {
            () = cancel.cancelled() => return Err(WaitError::Cancelled),
            () = tokio::time::sleep(interval.min(timeout.saturating_sub(start.elapsed()))) => {}
        }
    }
}

/// How many reads of a round run at once.
const READ_CONCURRENCY: usize = 8;

/// Reads the live objects of wait targets, `page_size` objects a list page.
struct TargetReader<'c> {
    client: &'c kube::Client,
    page_size: u32,
}

impl TargetReader<'_> {
    /// The API of `target`'s kind and namespace.
    fn api(&self, target: &WaitTarget) -> Api<DynamicObject> {
        match &target.id.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &target.resource),
            None => Api::all_with(self.client.clone(), &target.resource),
        }
    }
}

impl Reader<WaitTarget> for TargetReader<'_> {
    type Error = WaitError;

    fn concurrency(&self) -> usize {
        READ_CONCURRENCY
    }

    fn name(member: &WaitTarget) -> &str {
        &member.id.name
    }

    /// Any failure, a 404 included, is an error naming the first of `members`.
    async fn list(
        &self,
        members: &[&WaitTarget],
        selector: Option<&str>,
    ) -> Result<Option<Vec<Value>>, WaitError> {
        let Some(first) = members.first() else {
            return Ok(Some(Vec::new()));
        };
        let mut params = ListParams::default();
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        let list = crate::paging::list_all(&self.api(first), &params, self.page_size)
            .await
            .map_err(|source| WaitError::Api {
                id: first.id.clone(),
                source: source.into(),
            })?;
        Ok(Some(
            list.iter()
                .map(|o| crate::apply::to_value(o, &first.resource))
                .collect(),
        ))
    }

    async fn get(&self, member: &WaitTarget) -> Result<Option<Value>, WaitError> {
        let live = self
            .api(member)
            .get_opt(&member.id.name)
            .await
            .map_err(|source| WaitError::Api {
                id: member.id.clone(),
                source: source.into(),
            })?;
        Ok(live.map(|o| crate::apply::to_value(&o, &member.resource)))
    }
}

/// The live objects of `targets[pending]` (`None`: not found), in order: one list per kind
/// and namespace shared by several targets (selected by `selector` when given, see
/// [`read_groups`]), else one get. `unlabelled` marks the targets expected missing from a
/// selected list.
async fn read_live(
    reader: &TargetReader<'_>,
    targets: &[WaitTarget],
    pending: &[usize],
    selector: Option<&str>,
    unlabelled: &[bool],
) -> Result<Vec<Option<Value>>, WaitError> {
    let mut groups: Vec<ReadGroup<'_, WaitTarget>> = Vec::new();
    // Per group, the positions in `pending` of its members.
    let mut positions: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<(&str, &str, Option<&str>), usize> = HashMap::new();
    for (position, &i) in pending.iter().enumerate() {
        let target = &targets[i];
        let key = (
            target.resource.api_version.as_str(),
            target.resource.plural.as_str(),
            target.id.namespace.as_deref(),
        );
        let group = *group_of.entry(key).or_insert_with(|| {
            groups.push(ReadGroup {
                members: Vec::new(),
                expected: 0,
                alone: false,
            });
            positions.push(Vec::new());
            groups.len() - 1
        });
        groups[group].members.push(target);
        groups[group].expected += usize::from(unlabelled[i]);
        positions[group].push(position);
    }
    for group in &mut groups {
        group.alone = group.members.len() == 1;
    }
    let reads = read_groups(reader, &groups, selector).await?;
    let mut live: Vec<Option<Value>> = vec![None; pending.len()];
    for ((group, positions), read) in groups.iter().zip(positions).zip(reads) {
        let mut by_name: HashMap<String, Value> = read
            .values
            .into_iter()
            .filter_map(|value| Some((name_of(&value)?.to_owned(), value)))
            .collect();
        for (member, position) in group.members.iter().zip(positions) {
            live[position] = by_name.remove(member.id.name.as_str());
        }
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(object: Value) -> Status {
        builtin_health(&object).status
    }

    #[test]
    fn deployment_rollout() {
        let base = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "generation": 2},
                "spec": {"replicas": 2}, "status": status})
        };
        assert_eq!(
            status(base(json!({"observedGeneration": 1}))),
            Status::InProgress
        );
        assert_eq!(
            status(base(
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2,
            "availableReplicas": 2, "readyReplicas": 2})
            )),
            Status::InProgress
        );
        assert_eq!(
            status(base(
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "availableReplicas": 1, "readyReplicas": 2})
            )),
            Status::InProgress
        );
        assert_eq!(
            status(base(
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "availableReplicas": 2, "readyReplicas": 2})
            )),
            Status::Current
        );
        assert_eq!(
            status(base(
                json!({"observedGeneration": 2, "conditions": [{"type": "Progressing",
            "status": "False", "reason": "ProgressDeadlineExceeded"}]})
            )),
            Status::Failed
        );
    }

    #[test]
    fn jobs_pods_claims_services() {
        let job = |conditions: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "status": {"startTime": "2026-01-01T00:00:00Z", "conditions": conditions}})
        };
        assert_eq!(status(job(json!([]))), Status::InProgress);
        assert_eq!(
            status(job(json!([{"type": "Complete", "status": "True"}]))),
            Status::Current
        );
        assert_eq!(
            status(job(json!([{"type": "Failed", "status": "True"}]))),
            Status::Failed
        );
        let pod = |s: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": s});
        assert_eq!(status(pod(json!({"phase": "Pending"}))), Status::InProgress);
        assert_eq!(
            status(pod(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
            )),
            Status::Current
        );
        assert_eq!(
            status(pod(
                json!({"phase": "Running", "containerStatuses": [{"name": "c",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})
            )),
            Status::Failed
        );
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"}, "status": {"phase": "Bound"}});
        assert_eq!(status(pvc), Status::Current);
        let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(status(lb), Status::InProgress);
        let ip = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}});
        assert_eq!(status(ip), Status::Current);
    }

    #[test]
    fn sets_crds_namespaces_and_conditions() {
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
            "spec": {"replicas": 2}, "status": {"readyReplicas": 2, "currentReplicas": 2,
            "currentRevision": "a", "updateRevision": "b"}});
        assert_eq!(status(sts), Status::InProgress);
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "updatedNumberScheduled": 3,
            "numberAvailable": 3, "numberReady": 2}});
        assert_eq!(status(ds), Status::InProgress);
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
            "spec": {"replicas": 1}, "status": {"fullyLabeledReplicas": 1, "availableReplicas": 1, "readyReplicas": 1}});
        assert_eq!(status(rs), Status::Current);
        // A live workload no controller has observed yet is not rolled out, even at zero replicas.
        let unobserved = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "z", "generation": 1}, "spec": {"replicas": 0}});
        assert_eq!(status(unobserved), Status::InProgress);
        let observed = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "z", "generation": 1}, "spec": {"replicas": 0},
            "status": {"observedGeneration": 1}});
        assert_eq!(status(observed), Status::Current);
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "c"}, "status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert_eq!(status(crd), Status::Current);
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}, "status": {"phase": "Terminating"}});
        assert_eq!(status(ns), Status::InProgress);
        let custom = |c: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"},
            "status": {"conditions": c}})
        };
        assert_eq!(
            status(custom(json!([{"type": "Ready", "status": "False"}]))),
            Status::InProgress
        );
        assert_eq!(
            status(custom(json!([{"type": "Stalled", "status": "True"}]))),
            Status::Failed
        );
        assert_eq!(
            status(custom(json!([{"type": "Ready", "status": "True"}]))),
            Status::Current
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "deletionTimestamp": "x"}});
        assert_eq!(status(cm), Status::InProgress);
    }
}
