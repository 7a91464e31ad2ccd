//! The applier observed from the wire, against a real control plane (gitops-envtest): the
//! requests it sends are counted and logged by a counting client placed under it
//! ([`gitops_apply::counting_client`] with [`RequestCounter::with_log`]), so that the tests
//! assert what it does, not what it reports: how many writes are in flight at once, the order
//! of the deletes of a prune, and the requests of a run that has nothing to change.

use std::collections::BTreeMap;

use gitops_apply::{
    Applier, ApplyOptions, LoggedRequest, ObjectAction, RequestCounter, RequestKind,
    counting_client,
};
use http::Method;
use tokio_util::sync::CancellationToken;

mod common;
use common::crd::{SIZE, gadget_crd};
use common::fixtures::{config_map_yaml, stream, web_deployment, web_service};
use common::{inventory, manifests, planned, read_only_counts, run, set, set_of, setup};

/// An applier whose every request goes through a counting client that keeps a log.
fn observed_applier(
    client: &kube::Client,
    namespace: &str,
    concurrency: usize,
) -> (Applier, RequestCounter) {
    let counter = RequestCounter::with_log();
    let applier = Applier::builder(counting_client(client, &counter), inventory(namespace))
        .concurrency(concurrency)
        .build();
    (applier, counter)
}

/// The path of the ConfigMap inventory in `namespace`.
fn inventory_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/configmaps/inventory")
}

/// The writes of `log` to objects of the set: those to the inventory left out.
fn object_writes<'a>(log: &'a [LoggedRequest], namespace: &str) -> Vec<&'a LoggedRequest> {
    let inventory = inventory_path(namespace);
    log.iter()
        .filter(|request| request.path != inventory)
        .collect()
}

fn config_maps(namespace: &str, count: usize) -> String {
    stream(
        (0..count)
            .map(|i| config_map_yaml(namespace, &format!("cm-{i:02}"), &format!("n: \"{i}\""))),
    )
}

/// Applies 40 ConfigMaps (one group) with an applier of the given concurrency; returns the most
/// writes that were in flight at once.
async fn max_in_flight_writing_40_config_maps(prefix: &str, concurrency: usize) -> u64 {
    let (client, ns) = setup(prefix).await;
    let (applier, counter) = observed_applier(&client, &ns, concurrency);
    let change_set = run(
        &applier,
        set(&config_maps(&ns, 40)),
        &ApplyOptions::default(),
    )
    .await;
    assert_eq!(change_set.count(ObjectAction::Created), 40, "{change_set}");
    // Every ConfigMap was written exactly once, by a server-side apply: the bound was put to
    // the test on 40 writes, not on fewer.
    let log = counter.log();
    let writes = object_writes(&log, &ns);
    assert_eq!(writes.len(), 40, "{writes:?}");
    assert!(
        writes.iter().all(|w| w.method == Method::PATCH
            && w.path
                .starts_with(&format!("/api/v1/namespaces/{ns}/configmaps/cm-"))),
        "{writes:?}"
    );
    counter.max_writes_in_flight()
}

#[tokio::test]
async fn writes_in_flight_never_exceed_the_concurrency() {
    let parallel = max_in_flight_writing_40_config_maps("conc3", 3).await;
    assert!(
        parallel > 1,
        "with concurrency 3, the 40 writes of one group were sent one at a time"
    );
    assert!(
        parallel <= 3,
        "with concurrency 3, {parallel} writes were in flight at once"
    );

    let serial = max_in_flight_writing_40_config_maps("conc1", 1).await;
    assert_eq!(
        serial, 1,
        "with concurrency 1, {serial} writes were in flight at once"
    );
}

/// A set of one kind of each stage: a Namespace, a CRD and a ClusterRole (definitions), then a
/// ServiceAccount, a ConfigMap and a Deployment in the Namespace, and a custom resource of the
/// CRD. `app` is the set's Namespace, `group` the CRD's group.
fn mixed_kinds(app: &str, group: &str, cluster_role: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Namespace
metadata: {{name: {app}}}
---
{crd}---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {cluster_role}}}
rules:
- apiGroups: [\"\"]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: runner, namespace: {app}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {app}}}
data: {{color: blue}}
---
{deployment}---
apiVersion: {group}/v1
kind: Gadget
metadata: {{name: g1, namespace: {app}}}
spec: {{size: 3}}
",
        crd = gadget_crd(group, SIZE),
        deployment = web_deployment(app, 1),
    )
}

/// The position of `path` in `paths`, which must hold it.
fn position(paths: &[&str], path: &str) -> usize {
    paths
        .iter()
        .position(|p| *p == path)
        .unwrap_or_else(|| panic!("{path} not in {paths:#?}"))
}

/// How a test deletes everything it applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeleteBy {
    /// Applying the empty set with `allow_empty_set`: a prune of everything.
    EmptySet,
    /// [`Applier::delete_all`], as a finalizer does.
    DeleteAll,
}

#[tokio::test]
async fn prune_deletes_in_exactly_the_reverse_of_the_apply_order() {
    deletes_in_exactly_the_reverse_of_the_apply_order("order", DeleteBy::EmptySet).await;
}

#[tokio::test]
async fn delete_all_deletes_in_exactly_the_reverse_of_the_apply_order() {
    deletes_in_exactly_the_reverse_of_the_apply_order("order-all", DeleteBy::DeleteAll).await;
}

/// Applies a set of every stage with concurrency 1 (the log then gives the apply order), deletes
/// it all `by` a prune or `delete_all`, and checks from the log that the deletes came in exactly
/// the reverse order: the custom resource before its CRD, what is in the Namespace before it.
async fn deletes_in_exactly_the_reverse_of_the_apply_order(prefix: &str, by: DeleteBy) {
    let (client, ns) = setup(prefix).await;
    let app = format!("{ns}-app");
    let group = format!("{ns}.observed.gitops.rs");
    let cluster_role = format!("{ns}-reader");
    // Concurrency 1: the objects of a group are written one after the other, in plan order, so
    // that the log gives the apply order.
    let (applier, counter) = observed_applier(&client, &ns, 1);
    let applied = run(
        &applier,
        set(&mixed_kinds(&app, &group, &cluster_role)),
        &ApplyOptions::default(),
    )
    .await;
    assert_eq!(applied.count(ObjectAction::Created), 7, "{applied}");
    let apply_log = counter.log();
    let apply_writes = object_writes(&apply_log, &ns);
    assert!(
        apply_writes.iter().all(|w| w.method == Method::PATCH),
        "{apply_writes:#?}"
    );
    let apply_order: Vec<&str> = apply_writes.iter().map(|w| w.path.as_str()).collect();

    let crd = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{group}");
    let namespace = format!("/api/v1/namespaces/{app}");
    let role = format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{cluster_role}");
    let gadget = format!("/apis/{group}/v1/namespaces/{app}/gadgets/g1");
    let in_namespace = [
        format!("/api/v1/namespaces/{app}/serviceaccounts/runner"),
        format!("/api/v1/namespaces/{app}/configmaps/settings"),
        format!("/apis/apps/v1/namespaces/{app}/deployments/web"),
        gadget.clone(),
    ];
    let mut expected: Vec<&str> = vec![&crd, &namespace, &role];
    expected.extend(in_namespace.iter().map(String::as_str));
    let mut sorted_apply = apply_order.clone();
    sorted_apply.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        sorted_apply, expected,
        "each object written exactly once: {apply_order:#?}"
    );
    // Definitions first: the CRD before its custom resource, the Namespace before what is in it.
    assert!(position(&apply_order, &crd) < position(&apply_order, &gadget));
    for path in &in_namespace {
        assert!(position(&apply_order, &namespace) < position(&apply_order, path));
    }

    let pruned = match by {
        // The empty set, allowed: everything is pruned.
        DeleteBy::EmptySet => {
            run(
                &applier,
                set_of(Vec::new()),
                &ApplyOptions::default().with_allow_empty_set(true),
            )
            .await
        }
        DeleteBy::DeleteAll => applier
            .delete_all(&CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("delete_all failed: {e}")),
    };
    assert_eq!(pruned.count(ObjectAction::Pruned), 7, "{pruned}");
    let prune_log = counter.log()[apply_log.len()..].to_vec();
    let inventory_deleted = prune_log
        .iter()
        .any(|w| w.method == Method::DELETE && w.path == inventory_path(&ns));
    match by {
        // The inventory is saved as the (empty) new set, not deleted.
        DeleteBy::EmptySet => assert!(!inventory_deleted, "{prune_log:#?}"),
        // The inventory goes last, once every object it lists is gone.
        DeleteBy::DeleteAll => assert_eq!(
            prune_log.last().map(ToString::to_string),
            Some(format!("DELETE {}", inventory_path(&ns))),
            "{prune_log:#?}"
        ),
    }
    let deletes: Vec<&str> = object_writes(&prune_log, &ns)
        .into_iter()
        .map(|w| {
            assert_eq!(w.method, Method::DELETE, "a prune wrote {w}");
            w.path.as_str()
        })
        .collect();
    let mut reversed = apply_order.clone();
    reversed.reverse();
    assert_eq!(
        deletes, reversed,
        "the deletes are not the reverse of the apply order"
    );
    assert!(
        position(&deletes, &gadget) < position(&deletes, &crd),
        "the custom resource is deleted after its CRD: {deletes:#?}"
    );
    for path in &in_namespace {
        assert!(
            position(&deletes, path) < position(&deletes, &namespace),
            "{path} is deleted after its Namespace: {deletes:#?}"
        );
    }
}

/// A set of several kinds in two namespaces, cluster-scoped kinds and a custom resource.
fn spread_set(ns: &str, other: &str, group: &str, cluster_role: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Namespace
metadata: {{name: {other}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {cluster_role}}}
rules:
- apiGroups: [\"\"]
  resources: [secrets]
  verbs: [get]
---
{crd}---
apiVersion: {group}/v1
kind: Gadget
metadata: {{name: g1, namespace: {ns}}}
spec: {{size: 3}}
---
apiVersion: {group}/v1
kind: Gadget
metadata: {{name: g2, namespace: {ns}}}
spec: {{size: 4}}
---
{a}---
{b}---
{c}---
apiVersion: v1
kind: Secret
metadata: {{name: token, namespace: {other}}}
stringData: {{token: s3cret}}
---
{service}---
{deployment}",
        crd = gadget_crd(group, SIZE),
        a = config_map_yaml(ns, "a", "k: v"),
        b = config_map_yaml(ns, "b", "k: v"),
        c = config_map_yaml(other, "c", "k: v"),
        service = web_service(ns),
        deployment = web_deployment(ns, 1),
    )
}

#[tokio::test]
async fn a_no_change_run_sends_one_list_per_kind_and_namespace_and_nothing_else() {
    let (client, ns) = setup("quiet").await;
    let other = format!("{ns}-other");
    let group = format!("{ns}.observed.gitops.rs");
    let cluster_role = format!("{ns}-viewer");
    let yaml = spread_set(&ns, &other, &group, &cluster_role);
    let (applier, counter) = observed_applier(&client, &ns, 4);
    let first = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(first.count(ObjectAction::Created), 11, "{first}");

    // The second run finds the Gadget kind, whose CRD the first run installed, missing from
    // the discovery it cached before: it discovers again, and writes nothing.
    let writes_before = counter.log().len();
    let second = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(second.count(ObjectAction::Unchanged), 11, "{second}");
    assert_eq!(counter.log().len(), writes_before, "a no-change run wrote");
    assert_eq!(second.request_counts.dry_runs, 0, "{second}");

    // The steady state: what every later run of an unchanged set sends.
    let before = counter.requests().len();
    let third = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(third.count(ObjectAction::Unchanged), 11, "{third}");
    let requests = counter.requests()[before..].to_vec();

    let mut by_kind: BTreeMap<RequestKind, Vec<String>> = BTreeMap::new();
    for request in &requests {
        assert_eq!(request.method, Method::GET, "{request}");
        by_kind
            .entry(request.kind)
            .or_default()
            .push(request.path.clone());
    }
    // One list per kind and namespace, each exactly once.
    let mut lists = by_kind.remove(&RequestKind::List).unwrap_or_default();
    lists.sort_unstable();
    let mut expected_lists = vec![
        "/api/v1/namespaces".to_owned(),
        "/apis/rbac.authorization.k8s.io/v1/clusterroles".to_owned(),
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions".to_owned(),
        format!("/apis/{group}/v1/namespaces/{ns}/gadgets"),
        format!("/api/v1/namespaces/{ns}/configmaps"),
        format!("/api/v1/namespaces/{other}/configmaps"),
        format!("/api/v1/namespaces/{other}/secrets"),
        format!("/api/v1/namespaces/{ns}/services"),
        format!("/apis/apps/v1/namespaces/{ns}/deployments"),
    ];
    expected_lists.sort_unstable();
    assert_eq!(lists, expected_lists, "lists of a no-change run");
    // Other reads: the inventory, once; discovery is cached.
    let reads = by_kind.remove(&RequestKind::Read).unwrap_or_default();
    assert_eq!(reads, [inventory_path(&ns)], "reads of a no-change run");
    // Nothing else: no dry run, no write.
    assert!(
        by_kind.is_empty(),
        "a no-change run sent more: {by_kind:#?}"
    );
    assert_eq!(counter.log().len(), writes_before, "a no-change run wrote");
    // What the applier counted itself agrees with what went through the wire.
    assert_eq!(requests.len(), 10, "{requests:#?}");
    assert_eq!(third.request_counts, read_only_counts(9, 1), "{third}");
}

#[tokio::test]
async fn a_run_that_fails_validation_sends_no_write_and_prunes_nothing() {
    let (client, ns) = setup("invalid").await;
    let (applier, counter) = observed_applier(&client, &ns, 4);
    let two = stream([
        config_map_yaml(&ns, "a", "k: one"),
        config_map_yaml(&ns, "b", "k: one"),
    ]);
    let first = run(&applier, set(&two), &ApplyOptions::default()).await;
    assert_eq!(first.count(ObjectAction::Created), 2, "{first}");
    let writes_before = counter.log().len();
    let dry_runs_before = counter.counts().dry_runs;

    // `a` changes, `b` leaves the set (a prune), and `bad` has a field the server rejects.
    let broken = format!(
        "{}---\n{}colour: red\n",
        config_map_yaml(&ns, "a", "k: two"),
        config_map_yaml(&ns, "bad", "k: one")
    );
    let err = common::run_err(&applier, set(&broken), &ApplyOptions::default()).await;
    // The server was asked (dry runs of the two writes), and nothing was written: neither the
    // objects, nor the inventory, nor a delete of `b`.
    assert!(
        counter.counts().dry_runs >= dry_runs_before + 2,
        "{}",
        counter.counts()
    );
    let writes: Vec<String> = counter.log()[writes_before..]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        writes.is_empty(),
        "a run that failed validation wrote: {writes:#?}"
    );
    assert!(
        matches!(err, gitops_apply::ApplyError::Invalid { .. }),
        "expected a validation error, got {err}"
    );
}

/// The list paths among `requests`, sorted.
fn list_paths(requests: &[LoggedRequest]) -> Vec<String> {
    let mut lists: Vec<String> = requests
        .iter()
        .filter(|r| r.kind == RequestKind::List)
        .map(|r| r.path.clone())
        .collect();
    lists.sort_unstable();
    lists
}

#[tokio::test]
async fn a_reviewed_plan_is_executed_as_shown_and_no_more() {
    let (client, ns) = setup("as-shown").await;
    let (applier, counter) = observed_applier(&client, &ns, 2);
    let cancel = CancellationToken::new();
    let first = run(
        &applier,
        set(&config_maps(&ns, 10)),
        &ApplyOptions::default(),
    )
    .await;
    assert_eq!(first.count(ObjectAction::Created), 10, "{first}");

    // cm-03 and cm-07 change, cm-09 leaves the set, cm-10 joins it.
    let changed = config_maps(&ns, 11)
        .replace("cm-09", "gone")
        .replace("n: \"3\"", "n: \"three\"")
        .replace("n: \"7\"", "n: \"seven\"");
    let desired = set_of(
        manifests(&changed)
            .into_iter()
            .filter(|m| m.name() != "gone")
            .collect(),
    );
    let before_plan = counter.requests().len();
    let plan = planned(&applier, &desired, &ApplyOptions::default()).await;
    let planning = counter.requests()[before_plan..].to_vec();
    assert!(
        planning.iter().all(|r| !r.kind.is_write()),
        "planning wrote: {planning:#?}"
    );
    let summary = plan.summary();
    assert_eq!(
        (
            summary.create,
            summary.update,
            summary.prune,
            summary.unchanged
        ),
        (1, 2, 1, 7),
        "{plan:#}"
    );

    let before_apply = counter.requests().len();
    let changes = applier.apply(plan, &cancel, |_| {}).await.unwrap();
    assert_eq!(changes.count(ObjectAction::Pruned), 1, "{changes}");
    let applying = counter.requests()[before_apply..].to_vec();
    // The re-read before the writes is the plan's own lists, no more.
    assert_eq!(
        list_paths(&applying),
        list_paths(&planning),
        "{applying:#?}"
    );
    // Exactly the writes the plan showed: the two updates and the create, then the prune.
    let writes: Vec<String> = object_writes(&applying, &ns)
        .into_iter()
        .filter(|w| w.kind.is_write())
        .map(ToString::to_string)
        .collect();
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    let mut applied = writes[..3].to_vec();
    applied.sort_unstable();
    assert_eq!(
        applied,
        [
            format!("PATCH {configmaps}/cm-03"),
            format!("PATCH {configmaps}/cm-07"),
            format!("PATCH {configmaps}/cm-10"),
        ],
        "{writes:#?}"
    );
    assert_eq!(
        writes[3..],
        [format!("DELETE {configmaps}/cm-09")],
        "{writes:#?}"
    );
    assert!(counter.max_writes_in_flight() <= 2);
}
