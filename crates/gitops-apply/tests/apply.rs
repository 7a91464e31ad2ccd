//! The applier against a real control plane (gitops-envtest).

use std::collections::BTreeMap;
use std::time::Duration;

use gitops_apply::{
    Applier, ApplyError, ApplyOptions, ApplyProgress, ChangeSet, ConfigMapInventory, HealthChecks,
    InventoryStore, ManagedOperation, ObjectAction, ObjectError, Reason, Status, TakeoverManager,
    WaitError, WaitTarget, wait_for_current,
};
use gitops_core::ObjectId;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod common;
use common::cluster::{config_map, config_value, dynamic, fail_job, update_as, web_rolled_out};
use common::crd::{SIZE_AND_TAGS, crds, gadget_crd};
use common::fixtures::{config_map_yaml, stream, web_service};
use common::{
    action, applier, inventory, outcome, read_only_counts, run, run_err, set, set_of, setup,
    stored_inventory,
};

/// The application most tests apply: a ConfigMap `settings` of this `color`, a Secret, and a
/// Service and Deployment `web` of two replicas (with ports and resource requests).
fn app(ns: &str, color: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{color: {color}, size: large}}
---
apiVersion: v1
kind: Secret
metadata: {{name: token, namespace: {ns}}}
stringData: {{token: s3cret}}
---
{service}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
",
        service = web_service(ns)
    )
}

async fn resource_versions(
    client: &kube::Client,
    change_set: &ChangeSet,
) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    for change in &change_set.changes {
        let api: Api<DynamicObject> = match &change.id.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &change.resource),
            None => Api::all_with(client.clone(), &change.resource),
        };
        let object = api.get(&change.id.name).await.unwrap();
        versions.insert(
            change.id.to_string(),
            object.metadata.resource_version.unwrap(),
        );
    }
    versions
}

#[tokio::test]
async fn applies_then_writes_nothing_then_changes_one_field() {
    let (client, ns) = setup("apply").await;
    let applier = applier(&client, &ns);
    let options = ApplyOptions::default();

    let first = run(&applier, set(&app(&ns, "blue")), &options).await;
    assert_eq!(first.count(ObjectAction::Created), 4, "{first}");
    let stored = stored_inventory(&client, &ns).await;
    assert_eq!(stored.len(), 4);
    let settings = config_map(&client, &ns, "settings").await.unwrap();
    let labels = settings.metadata.labels.unwrap();
    assert_eq!(labels[gitops_apply::OWNER_NAME_LABEL], "inventory");
    assert_eq!(labels[gitops_apply::OWNER_NAMESPACE_LABEL], ns);

    let before = resource_versions(&client, &first).await;
    let second = run(&applier, set(&app(&ns, "blue")), &options).await;
    assert_eq!(second.count(ObjectAction::Unchanged), 4, "{second}");
    let after = resource_versions(&client, &second).await;
    assert_eq!(before, after, "a no-change run wrote something");
    let inventory_version = config_map(&client, &ns, "inventory")
        .await
        .unwrap()
        .metadata
        .resource_version;
    // The inventory (1), one list per kind and namespace (4); no writes. Discovery (2 before
    // #14) is cached by the applier across runs.
    assert_eq!(second.requests, 5, "{second}");
    assert_eq!(second.request_counts, read_only_counts(4, 1), "{second}");

    let third = run(&applier, set(&app(&ns, "green")), &options).await;
    assert_eq!(
        action(&third, &format!("{ns}_settings__ConfigMap")),
        ObjectAction::Configured,
        "{third}"
    );
    assert_eq!(third.count(ObjectAction::Unchanged), 3, "{third}");
    let settings = config_map(&client, &ns, "settings").await.unwrap();
    assert_eq!(settings.data.unwrap()["color"], "green");
    assert_eq!(
        config_map(&client, &ns, "inventory")
            .await
            .unwrap()
            .metadata
            .resource_version,
        inventory_version,
        "the inventory did not change, it must not be written"
    );
}

#[tokio::test]
async fn manual_drift_is_a_conflict_until_forced_and_a_deleted_object_comes_back() {
    let (client, ns) = setup("drift").await;
    let applier = applier(&client, &ns);
    run(&applier, set(&app(&ns, "blue")), &ApplyOptions::default()).await;

    // Someone edits a field we own with another tool.
    update_as(
        &client,
        &ns,
        "settings",
        "kubectl-edit",
        json!({"data": {"color": "red"}}),
    )
    .await;
    // Someone deletes an object.
    dynamic::<Secret>(&client, &ns)
        .delete("token", &DeleteParams::default())
        .await
        .unwrap();

    let err = run_err(&applier, set(&app(&ns, "blue")), &ApplyOptions::default()).await;
    let ApplyError::Invalid { change_set } = &err else {
        panic!("expected a validation error, got {err}");
    };
    let settings_id: ObjectId = format!("{ns}_settings__ConfigMap").parse().unwrap();
    let failed = change_set.get(&settings_id).unwrap();
    let Some(ObjectError::Conflict { conflicts }) = &failed.error else {
        panic!("expected a conflict: {failed}");
    };
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].manager, "kubectl-edit");
    assert_eq!(conflicts[0].field, ".data.color");
    assert!(
        err.to_string()
            .contains(".data.color owned by \"kubectl-edit\""),
        "{err}"
    );
    // Nothing written: the deleted Secret is still missing.
    assert_eq!(
        action(change_set, &format!("{ns}_token__Secret")),
        ObjectAction::Skipped
    );
    assert!(config_value(&client, &ns, "settings", "color").await == "red");

    let forced = ApplyOptions::default().with_force(true);
    let fixed = run(&applier, set(&app(&ns, "blue")), &forced).await;
    assert_eq!(
        action(&fixed, &settings_id.to_string()),
        ObjectAction::Configured,
        "{fixed}"
    );
    assert_eq!(
        action(&fixed, &format!("{ns}_token__Secret")),
        ObjectAction::Created,
        "{fixed}"
    );
    assert_eq!(
        config_value(&client, &ns, "settings", "color").await,
        "blue"
    );
    let again = run(&applier, set(&app(&ns, "blue")), &ApplyOptions::default()).await;
    assert_eq!(again.count(ObjectAction::Unchanged), 4, "{again}");
}

#[tokio::test]
async fn prunes_what_left_the_set_but_keeps_never_prune_objects() {
    let (client, ns) = setup("prune").await;
    let applier = applier(&client, &ns);
    let three = format!(
        "\
apiVersion: v1
kind: ConfigMap
metadata: {{name: a, namespace: {ns}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: b, namespace: {ns}}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: keep
  namespace: {ns}
  annotations: {{kustomize.toolkit.fluxcd.io/prune: disabled}}
"
    );
    run(&applier, set(&three), &ApplyOptions::default()).await;

    // An empty set would prune everything: refused.
    let err = run_err(&applier, set_of(Vec::new()), &ApplyOptions::default()).await;
    assert!(matches!(err, ApplyError::EmptySet { previous: 3 }), "{err}");
    assert!(config_map(&client, &ns, "a").await.is_some());

    let only_a =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a, namespace: {ns}}}\n");
    let dry = run(
        &applier,
        set(&only_a),
        &ApplyOptions::default().with_dry_run(true),
    )
    .await;
    // The plan read the objects that left the set: the one that disables pruning is left
    // alone, as the real run will.
    assert_eq!(dry.count(ObjectAction::Pruned), 1, "{dry}");
    assert_eq!(
        outcome(&dry, &format!("{ns}_keep__ConfigMap")),
        (ObjectAction::Skipped, Reason::PruneDisabled),
        "{dry}"
    );
    assert!(
        config_map(&client, &ns, "b").await.is_some(),
        "a dry run deleted"
    );

    let pruned = run(&applier, set(&only_a), &ApplyOptions::default()).await;
    assert_eq!(
        action(&pruned, &format!("{ns}_b__ConfigMap")),
        ObjectAction::Pruned,
        "{pruned}"
    );
    assert_eq!(
        action(&pruned, &format!("{ns}_keep__ConfigMap")),
        ObjectAction::Skipped,
        "{pruned}"
    );
    assert_eq!(
        action(&pruned, &format!("{ns}_a__ConfigMap")),
        ObjectAction::Unchanged,
        "{pruned}"
    );
    let deleted = config_map(&client, &ns, "b").await;
    assert!(deleted.is_none() || deleted.unwrap().metadata.deletion_timestamp.is_some());
    assert!(config_map(&client, &ns, "keep").await.is_some());
    let stored = stored_inventory(&client, &ns).await;
    let ids: Vec<String> = stored.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(ids, [format!("{ns}_a__ConfigMap")]);
}

#[tokio::test]
async fn a_crd_and_its_custom_resources_in_one_set() {
    let (client, ns) = setup("crd").await;
    // A group of its own, so that tests of other runs never share the CRD.
    let group = format!("{ns}.apply.gitops.rs");
    let yaml = format!(
        "apiVersion: {group}/v1\nkind: Gadget\nmetadata: {{name: g1}}\nspec: {{size: 3, tags: [a, b]}}\n---\n{}",
        gadget_crd(&group, SIZE_AND_TAGS)
    );
    let applier = applier(&client, &ns);
    let options = ApplyOptions::default().with_target_namespace(Some(ns.clone()));
    let mut events = Vec::new();
    let first = applier
        .apply_set_with_progress(set(&yaml), &options, &CancellationToken::new(), |p| {
            events.push(p.clone());
        })
        .await
        .unwrap();
    assert_eq!(first.count(ObjectAction::Created), 2, "{first}");
    // The CRD's group, then (once it is Established) the custom resource's.
    assert_eq!(
        events,
        [
            ApplyProgress::Planned {
                objects: 2,
                groups: 2
            },
            ApplyProgress::Validated {
                to_write: 2,
                failed: 0
            },
            ApplyProgress::GroupDone {
                group: 0,
                groups: 2,
                written: 1,
                failed: 0
            },
            ApplyProgress::GroupDone {
                group: 1,
                groups: 2,
                written: 1,
                failed: 0
            },
        ]
    );
    assert_eq!(
        first.changes[0].id.kind, "CustomResourceDefinition",
        "{first}"
    );
    let second = run(&applier, set(&yaml), &options).await;
    assert_eq!(second.count(ObjectAction::Unchanged), 2, "{second}");

    // A strict-validation failure: an unknown field, reported before anything is written.
    let bad = yaml.replace("size: 3,", "size: 3, colour: red,");
    let err = run_err(&applier, set(&bad), &options).await;
    let ApplyError::Invalid { change_set } = &err else {
        panic!("{err}")
    };
    let gadget = change_set.failed().next().expect("one failure");
    assert_eq!(gadget.id.kind, "Gadget");
    assert!(
        matches!(gadget.error, Some(ObjectError::Rejected { .. })),
        "{gadget}"
    );
    assert!(err.to_string().contains("colour"), "{err}");

    // Clean up the cluster-scoped CRD of this test.
    crds(&client)
        .delete(&format!("gadgets.{group}"), &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_kinds_and_missing_namespaces_fail_before_any_write() {
    let (client, ns) = setup("plan").await;
    let applier = applier(&client, &ns);
    let yaml = format!(
        "\
apiVersion: v1
kind: ConfigMap
metadata: {{name: fine, namespace: {ns}}}
---
apiVersion: nowhere.gitops.rs/v1
kind: Ghost
metadata: {{name: boo, namespace: {ns}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: homeless}}
"
    );
    let err = run_err(&applier, set(&yaml), &ApplyOptions::default()).await;
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        text.contains("set.yaml:5") && text.contains("Ghost"),
        "{text}"
    );
    // A ConfigMap without a namespace is no problem: it goes to `default`.
    assert!(!text.contains("homeless"), "{text}");
    assert!(config_map(&client, &ns, "fine").await.is_none());
}

/// As with kubectl and Argo CD: a namespaced object without a namespace, and no target
/// namespace, lands in `default` (issue #13).
#[tokio::test]
async fn a_namespaced_object_without_namespace_lands_in_default() {
    let (client, ns) = setup("nons").await;
    let applier = applier(&client, &ns);
    let name = format!("homeless-{ns}");
    let yaml =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: b}}\n");
    let change_set = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(
        action(&change_set, &format!("default_{name}__ConfigMap")),
        ObjectAction::Created
    );
    assert!(config_map(&client, "default", &name).await.is_some());
    // Again: unchanged, and the inventory names it in `default`.
    let again = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(
        action(&again, &format!("default_{name}__ConfigMap")),
        ObjectAction::Unchanged
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn immutable_change_is_reported_then_recreated_on_opt_in() {
    let (client, ns) = setup("immutable").await;
    let applier = applier(&client, &ns);
    let frozen = |value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: frozen, namespace: {ns}}}\nimmutable: true\ndata: {{value: \"{value}\"}}\n"
        )
    };
    run(&applier, set(&frozen("1")), &ApplyOptions::default()).await;
    let uid = config_map(&client, &ns, "frozen")
        .await
        .unwrap()
        .metadata
        .uid;

    let err = run_err(&applier, set(&frozen("2")), &ApplyOptions::default()).await;
    let change_set = err.change_set().expect("a change set");
    let failed = change_set.failed().next().expect("one failure");
    let Some(ObjectError::Immutable { fields, .. }) = &failed.error else {
        panic!("expected an immutable-field error: {failed}");
    };
    assert_eq!(fields, &["data"]);

    let recreate = ApplyOptions::default().with_recreate_on_immutable(true);
    let done = run(&applier, set(&frozen("2")), &recreate).await;
    assert_eq!(done.count(ObjectAction::Recreated), 1, "{done}");
    let now = config_map(&client, &ns, "frozen").await.unwrap();
    assert_eq!(now.data.unwrap()["value"], "2");
    assert_ne!(now.metadata.uid, uid);
}

#[tokio::test]
async fn per_object_policies_never_reconcile_and_create_only() {
    let (client, ns) = setup("policy").await;
    let applier = applier(&client, &ns);
    let yaml = |value: &str| {
        format!(
            "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: once
  namespace: {ns}
  annotations: {{apply.gitops.rs/ssa: IfNotPresent}}
data: {{value: \"{value}\"}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: hands-off
  namespace: {ns}
  annotations: {{kustomize.toolkit.fluxcd.io/reconcile: disabled}}
data: {{value: \"{value}\"}}
"
        )
    };
    let first = run(&applier, set(&yaml("1")), &ApplyOptions::default()).await;
    assert_eq!(
        action(&first, &format!("{ns}_once__ConfigMap")),
        ObjectAction::Created
    );
    assert_eq!(
        action(&first, &format!("{ns}_hands-off__ConfigMap")),
        ObjectAction::Skipped
    );
    assert!(config_map(&client, &ns, "hands-off").await.is_none());
    let second = run(&applier, set(&yaml("2")), &ApplyOptions::default()).await;
    assert_eq!(
        action(&second, &format!("{ns}_once__ConfigMap")),
        ObjectAction::Skipped,
        "{second}"
    );
    assert_eq!(config_value(&client, &ns, "once", "value").await, "1");
}

#[tokio::test]
async fn creates_the_target_namespace() {
    let (client, home) = setup("target-home").await;
    let target = format!("{home}-made");
    let applier = applier(&client, &home);
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ignored}\n";
    let options = ApplyOptions::default()
        .with_target_namespace(Some(target.clone()))
        .with_create_target_namespace(true);
    let done = run(&applier, set(yaml), &options).await;
    assert_eq!(
        action(&done, &format!("_{target}__Namespace")),
        ObjectAction::Created,
        "{done}"
    );
    assert!(config_map(&client, &target, "a").await.is_some());
    let stored = stored_inventory(&client, &home).await;
    assert_eq!(
        stored.len(),
        1,
        "the created namespace is not ours to prune"
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .delete(&target, &DeleteParams::default())
        .await
        .unwrap();
}

/// Plays the Deployment controller on a task (the control plane has none): after each delay,
/// writes the status of a rollout of `web` in `ns` completed with that many replicas.
fn roll_out_web(
    client: &kube::Client,
    ns: &str,
    steps: &[(Duration, u32)],
) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    let ns = ns.to_owned();
    let steps = steps.to_vec();
    tokio::spawn(async move {
        for (delay, replicas) in steps {
            tokio::time::sleep(delay).await;
            web_rolled_out(&client, &ns, replicas).await;
        }
    })
}

/// A Job `migrate` in `ns` that would fail at once (it never runs: the control plane has no
/// kubelet; the test writes its failure with [`fail_job`]).
fn failing_job(ns: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata: {{name: migrate, namespace: {ns}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: migrate, image: busybox, command: [\"false\"]}}]
"
    )
}

#[tokio::test]
async fn waits_for_a_rollout_and_fails_fast_on_a_failed_job() {
    let (client, ns) = setup("health").await;
    let applier = applier(&client, &ns);
    let yaml = format!("{}---\n{}", app(&ns, "blue"), failing_job(&ns));
    let done = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    let targets: Vec<WaitTarget> = done
        .wait_targets()
        .into_iter()
        .filter(|t| t.id.kind != "Job")
        .collect();

    // Not ready yet: a short wait times out naming the Deployment.
    let short = wait_for_current(
        &client,
        &targets,
        &HealthChecks::default(),
        Duration::from_millis(300),
        Duration::from_millis(100),
        &CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap_err();
    let WaitError::Timeout { pending, .. } = &short else {
        panic!("{short}")
    };
    assert_eq!(pending.len(), 1, "{short}");
    assert_eq!(pending[0].0.kind, "Deployment");
    assert_eq!(pending[0].1.status, Status::InProgress);

    // The "controller" completes the rollout while we wait.
    let writer = roll_out_web(
        &client,
        &ns,
        &[
            (Duration::from_millis(500), 1),
            (Duration::from_millis(300), 2),
        ],
    );
    let mut reports = Vec::new();
    wait_for_current(
        &client,
        &targets,
        &HealthChecks::default(),
        Duration::from_secs(20),
        Duration::from_millis(100),
        &CancellationToken::new(),
        |p| reports.push((p.current, p.total)),
    )
    .await
    .unwrap();
    writer.await.unwrap();
    assert_eq!(reports.last(), Some(&(4, 4)));
    assert!(
        reports.iter().any(|(current, _)| *current == 3),
        "{reports:?}"
    );

    // The Job fails: waiting stops at once, long before its timeout.
    fail_job(&client, &ns, "migrate").await;
    let started = std::time::Instant::now();
    let err = wait_for_current(
        &client,
        &done.wait_targets(),
        &HealthChecks::default(),
        Duration::from_secs(60),
        Duration::from_millis(100),
        &CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap_err();
    let WaitError::Failed { id, health } = &err else {
        panic!("{err}")
    };
    assert_eq!(id.kind, "Job");
    assert!(health.message.contains("backoff limit"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_killed_apiserver_fails_the_run_prunes_nothing_and_the_next_run_converges() {
    let cp = gitops_envtest::ControlPlane::builder()
        .start()
        .await
        .unwrap();
    let client = cp.client().await.unwrap();
    let ns = cp.create_namespace("crash").await.unwrap();
    let applier = Applier::builder(client.clone(), inventory(&ns))
        .concurrency(2)
        .build();
    let many = |count: usize| {
        stream(
            (0..count).map(|i| config_map_yaml(&ns, &format!("cm-{i:04}"), &format!("i: \"{i}\""))),
        )
    };
    run(&applier, set(&many(10)), &ApplyOptions::default()).await;

    // The next set drops cm-0000 and adds many objects; the apiserver dies during the run.
    let next = many(400).replacen(
        &format!("{}---\n", config_map_yaml(&ns, "cm-0000", "i: \"0\"")),
        "",
        1,
    );
    assert!(!next.contains("cm-0000"));
    let run_applier = applier.clone();
    let run_set = set(&next);
    let apply = tokio::spawn(async move {
        run_applier
            .apply_set(run_set, &ApplyOptions::default(), &CancellationToken::new())
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    cp.kill_apiserver().unwrap();
    let result = apply.await.unwrap();
    assert!(
        result.is_err(),
        "the run went through before the kill; nothing was tested"
    );

    cp.restart_apiserver(Duration::from_secs(180))
        .await
        .expect("kube-apiserver restarts (generous timeout: a loaded 2-core machine)");
    let client = cp.client().await.unwrap();
    assert!(
        config_map(&client, &ns, "cm-0000").await.is_some(),
        "pruned after a failed run"
    );

    let applier = Applier::builder(client.clone(), inventory(&ns)).build();
    let done = run(&applier, set(&next), &ApplyOptions::default()).await;
    assert_eq!(
        action(&done, &format!("{ns}_cm-0000__ConfigMap")),
        ObjectAction::Pruned,
        "{done}"
    );
    let list = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    let names: Vec<String> = list
        .items
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.starts_with("cm-"))
        .collect();
    assert_eq!(names.len(), 399);
    let again = run(&applier, set(&next), &ApplyOptions::default()).await;
    assert_eq!(again.count(ObjectAction::Unchanged), 399, "{again}");
    let stored = stored_inventory(&client, &ns).await;
    assert_eq!(stored.len(), 399);
}

#[tokio::test]
async fn takes_over_objects_applied_with_kubectl_client_side() {
    let (client, ns) = setup("takeover").await;
    // What `kubectl apply` (client-side) leaves: its manager and the last-applied annotation.
    let old = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "legacy", "namespace": ns}, "data": {"a": "1", "b": "2"}});
    let mut created = old.clone();
    created["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": old.to_string()});
    let config_maps = dynamic::<ConfigMap>(&client, &ns);
    config_maps
        .create(
            &kube::api::PostParams {
                field_manager: Some("kubectl-client-side-apply".into()),
                ..Default::default()
            },
            &serde_json::from_value(created).unwrap(),
        )
        .await
        .unwrap();
    let applier = applier(&client, &ns);
    // The set no longer has `b`.
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: legacy, namespace: {ns}}}\ndata: {{a: \"1\"}}\n"
    );

    // Without takeover kubectl still owns `b`: it stays.
    run(&applier, set(&yaml), &ApplyOptions::default()).await;
    let data = config_map(&client, &ns, "legacy")
        .await
        .unwrap()
        .data
        .unwrap();
    assert!(data.contains_key("b"));

    let takeover = ApplyOptions::default().with_takeover(TakeoverManager::defaults());
    let done = run(&applier, set(&yaml), &takeover).await;
    assert_eq!(
        action(&done, &format!("{ns}_legacy__ConfigMap")),
        ObjectAction::Configured,
        "{done}"
    );
    let legacy = config_map(&client, &ns, "legacy").await.unwrap();
    assert_eq!(legacy.data.unwrap().keys().collect::<Vec<_>>(), ["a"]);
    assert!(legacy.metadata.annotations.unwrap_or_default().is_empty());
    let managers: Vec<String> = legacy
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["gitops-rs"]);
    let again = run(&applier, set(&yaml), &takeover).await;
    assert_eq!(again.count(ObjectAction::Unchanged), 1, "{again}");
}

#[tokio::test]
async fn a_cancelled_run_writes_nothing() {
    let (client, ns) = setup("cancel").await;
    let applier = applier(&client, &ns);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = applier
        .apply_set(set(&app(&ns, "blue")), &ApplyOptions::default(), &cancel)
        .await
        .unwrap_err();
    let ApplyError::Cancelled { change_set } = &err else {
        panic!("{err}")
    };
    assert_eq!(change_set.count(ObjectAction::Skipped), 4, "{change_set}");
    assert!(config_map(&client, &ns, "settings").await.is_none());
    assert!(config_map(&client, &ns, "inventory").await.is_none());
}

#[tokio::test]
async fn keeps_the_inventory_in_a_secret() {
    let (client, ns) = setup("secret-inventory").await;
    let store = ConfigMapInventory::secret(&ns, "inventory").unwrap();
    let applier = Applier::builder(client.clone(), store.clone()).build();
    run(&applier, set(&app(&ns, "blue")), &ApplyOptions::default()).await;
    assert!(config_map(&client, &ns, "inventory").await.is_none());
    let stored = store
        .load(&client)
        .await
        .unwrap()
        .expect("saved in the Secret");
    assert_eq!(stored.len(), 4);
    let again = run(&applier, set(&app(&ns, "blue")), &ApplyOptions::default()).await;
    assert_eq!(again.count(ObjectAction::Unchanged), 4, "{again}");
}

#[tokio::test]
async fn best_effort_writes_what_passes_and_prunes_nothing() {
    let (client, ns) = setup("best-effort").await;
    let applier = applier(&client, &ns);
    let old =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: old, namespace: {ns}}}\n");
    run(&applier, set(&old), &ApplyOptions::default()).await;
    // `good` is fine; `bad` has a field the Service schema does not know (strict validation).
    let yaml = format!(
        "\
apiVersion: v1
kind: ConfigMap
metadata: {{name: good, namespace: {ns}}}
---
apiVersion: v1
kind: Service
metadata: {{name: bad, namespace: {ns}}}
spec: {{ports: [{{port: 80}}], colour: red}}
"
    );
    let strict = run_err(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert!(matches!(strict, ApplyError::Invalid { .. }), "{strict}");
    assert!(config_map(&client, &ns, "good").await.is_none());

    let best_effort = ApplyOptions::default().with_best_effort(true);
    let err = run_err(&applier, set(&yaml), &best_effort).await;
    let ApplyError::Incomplete { change_set } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        action(change_set, &format!("{ns}_good__ConfigMap")),
        ObjectAction::Created
    );
    assert_eq!(
        action(change_set, &format!("{ns}_bad__Service")),
        ObjectAction::Failed
    );
    assert!(err.to_string().contains("colour"), "{err}");
    assert!(config_map(&client, &ns, "good").await.is_some());
    // A failed run prunes nothing, and remembers what it wrote.
    assert!(config_map(&client, &ns, "old").await.is_some());
    let stored = stored_inventory(&client, &ns).await;
    assert!(stored.contains(&format!("{ns}_good__ConfigMap").parse().unwrap()));
    assert!(stored.contains(&format!("{ns}_old__ConfigMap").parse().unwrap()));
}

/// The field managers of `config_map`, sorted.
fn managers(config_map: &ConfigMap) -> Vec<String> {
    let mut managers: Vec<String> = config_map
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    managers.sort();
    managers
}

#[tokio::test]
async fn takes_over_kubectl_edits_and_named_managers_then_corrects_the_drift() {
    let (client, ns) = setup("edits").await;
    let applier = applier(&client, &ns);
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{color: blue, size: large}}\n"
    );
    run(&applier, set(&yaml), &ApplyOptions::default()).await;

    // `kubectl edit` changes a field we own and adds one; a script adds another; a controller
    // annotates the object.
    update_as(
        &client,
        &ns,
        "settings",
        "kubectl-edit",
        json!({"data": {"color": "red", "debug": "true"}}),
    )
    .await;
    update_as(
        &client,
        &ns,
        "settings",
        "deploy-script",
        json!({"data": {"script": "ran"}}),
    )
    .await;
    update_as(
        &client,
        &ns,
        "settings",
        "annotator",
        json!({"metadata": {"annotations": {"example.com/note": "keep"}}}),
    )
    .await;

    // Without takeover, the edited field is a conflict with kubectl-edit.
    let err = run_err(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert!(
        err.to_string()
            .contains(".data.color owned by \"kubectl-edit\""),
        "{err}"
    );

    // With the default managers: kubectl's fields are ours, so the edit is corrected and the
    // key it added is removed; the script's key stays (not named), as does the annotation.
    let defaults = ApplyOptions::default().with_takeover(TakeoverManager::defaults());
    let plan = run(&applier, set(&yaml), &defaults.clone().with_dry_run(true)).await;
    let id: ObjectId = format!("{ns}_settings__ConfigMap").parse().unwrap();
    let planned = plan.get(&id).unwrap();
    assert_eq!(planned.action, ObjectAction::Configured, "{plan}");
    assert_eq!(
        planned.reason,
        Reason::TakingOver {
            managers: vec!["kubectl-edit".into()]
        }
    );
    let done = run(&applier, set(&yaml), &defaults).await;
    let changed = done.get(&id).unwrap();
    assert_eq!(changed.action, ObjectAction::Configured, "{done}");
    assert_eq!(
        changed.reason,
        Reason::TakingOver {
            managers: vec!["kubectl-edit".into()]
        }
    );
    let id = id.to_string();
    let settings = config_map(&client, &ns, "settings").await.unwrap();
    let data = settings.data.clone().unwrap();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["color", "script", "size"]
    );
    assert_eq!(data["color"], "blue");
    assert_eq!(
        managers(&settings),
        ["annotator", "deploy-script", "gitops-rs"]
    );

    // Naming the script's manager takes its field over too: its key goes.
    let named =
        ApplyOptions::default().with_takeover(TakeoverManager::defaults().into_iter().chain([
            TakeoverManager::exact("deploy-script", ManagedOperation::Update),
        ]));
    let done = run(&applier, set(&yaml), &named).await;
    assert_eq!(action(&done, &id), ObjectAction::Configured, "{done}");
    let settings = config_map(&client, &ns, "settings").await.unwrap();
    assert_eq!(
        settings
            .data
            .clone()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["color", "size"]
    );
    assert_eq!(
        settings.metadata.annotations.clone().unwrap()["example.com/note"],
        "keep"
    );
    assert_eq!(managers(&settings), ["annotator", "gitops-rs"]);

    // In sync now: nothing to take over, nothing written.
    let version = settings.metadata.resource_version.clone();
    let again = run(&applier, set(&yaml), &named).await;
    assert_eq!(action(&again, &id), ObjectAction::Unchanged, "{again}");
    assert_eq!(
        config_map(&client, &ns, "settings")
            .await
            .unwrap()
            .metadata
            .resource_version,
        version
    );

    // Drift by `kubectl edit` again: corrected by the next run without a conflict.
    update_as(
        &client,
        &ns,
        "settings",
        "kubectl-edit",
        json!({"data": {"size": "small"}}),
    )
    .await;
    let corrected = run(&applier, set(&yaml), &named).await;
    assert_eq!(
        action(&corrected, &id),
        ObjectAction::Configured,
        "{corrected}"
    );
    let settings = config_map(&client, &ns, "settings").await.unwrap();
    assert_eq!(settings.data.clone().unwrap()["size"], "large");
    assert_eq!(managers(&settings), ["annotator", "gitops-rs"]);
}

#[tokio::test]
async fn waits_for_the_applied_set_when_asked() {
    let (client, ns) = setup("wait").await;
    let applier = Applier::builder(client.clone(), inventory(&ns))
        .wait_interval(Duration::from_millis(100))
        .build();
    let cancel = CancellationToken::new();

    // The Deployment never becomes Available by itself: the run writes everything, then
    // reports the set unhealthy after the timeout, naming the Deployment.
    let short = ApplyOptions::default().with_wait(Duration::from_millis(300));
    let err = applier
        .apply_set(set(&app(&ns, "blue")), &short, &cancel)
        .await
        .unwrap_err();
    let ApplyError::Unhealthy {
        change_set,
        source: WaitError::Timeout { pending, .. },
    } = &err
    else {
        panic!("expected a timeout: {err}");
    };
    assert_eq!(change_set.count(ObjectAction::Created), 4, "{change_set}");
    assert_eq!(pending.len(), 1, "{err}");
    assert_eq!(pending[0].0.kind, "Deployment");

    // The "controller" completes the rollout while the run waits; progress reports rounds.
    let writer = roll_out_web(&client, &ns, &[(Duration::from_millis(400), 2)]);
    let mut rounds = Vec::new();
    let done = applier
        .apply_set_with_progress(
            set(&app(&ns, "blue")),
            &ApplyOptions::default().with_wait(Duration::from_secs(20)),
            &cancel,
            |p| {
                if let ApplyProgress::Waiting { current, total } = p {
                    rounds.push((*current, *total));
                }
            },
        )
        .await
        .unwrap();
    writer.await.unwrap();
    assert_eq!(done.count(ObjectAction::Unchanged), 4, "{done}");
    assert!(rounds.len() >= 2, "{rounds:?}");
    assert_eq!(rounds.first(), Some(&(3, 4)));
    assert_eq!(rounds.last(), Some(&(4, 4)));

    // A Failed object stops the wait at once, long before the timeout.
    let with_job = format!("{}---\n{}", app(&ns, "blue"), failing_job(&ns));
    run(&applier, set(&with_job), &ApplyOptions::default()).await;
    fail_job(&client, &ns, "migrate").await;
    let started = std::time::Instant::now();
    let err = applier
        .apply_set(
            set(&with_job),
            &ApplyOptions::default().with_wait(Duration::from_secs(60)),
            &cancel,
        )
        .await
        .unwrap_err();
    let ApplyError::Unhealthy {
        source: WaitError::Failed { id, .. },
        ..
    } = &err
    else {
        panic!("expected a failed Job: {err}");
    };
    assert_eq!(id.kind, "Job");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .contains("backoff limit"),
        "{err}"
    );
}

#[tokio::test]
async fn takes_over_replicas_set_by_kubectl_scale() {
    let (client, ns) = setup("scale").await;
    let applier = applier(&client, &ns);
    run(&applier, set(&app(&ns, "blue")), &ApplyOptions::default()).await;

    // `kubectl scale deployment web --replicas=5`: an Update through the scale subresource.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    deployments
        .patch_scale(
            "web",
            &PatchParams {
                field_manager: Some("kubectl-scale".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    let replicas = |d: k8s_openapi::api::apps::v1::Deployment| d.spec.replicas;

    // Without takeover: a conflict naming kubectl-scale.
    let err = run_err(&applier, set(&app(&ns, "blue")), &ApplyOptions::default()).await;
    assert!(
        err.to_string()
            .contains(".spec.replicas owned by \"kubectl-scale\""),
        "{err}"
    );
    assert_eq!(replicas(deployments.get("web").await.unwrap()), Some(5));

    // With takeover, the set is still validated before any write: an invalid replica count
    // (hidden by the conflict in a plain dry run) fails, nothing is taken over or written.
    let takeover = ApplyOptions::default().with_takeover(TakeoverManager::defaults());
    let invalid = app(&ns, "blue").replace("replicas: 2", "replicas: -1");
    let err = run_err(&applier, set(&invalid), &takeover).await;
    let ApplyError::Invalid { change_set } = &err else {
        panic!("expected a validation error: {err}");
    };
    let failed = change_set.failed().next().expect("a failed object");
    assert!(
        matches!(failed.error, Some(ObjectError::Rejected { code: 422, .. })),
        "{failed}"
    );
    assert!(failed.to_string().contains("spec.replicas"), "{failed}");
    let web = deployments.get("web").await.unwrap();
    assert!(
        web.metadata
            .managed_fields
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|m| m.manager.as_deref() == Some("kubectl-scale")),
        "taken over although the set was invalid"
    );
    assert_eq!(replicas(web), Some(5));

    // With a valid set the replicas come back to the desired 2.
    let done = run(&applier, set(&app(&ns, "blue")), &takeover).await;
    let id = format!("{ns}_web_apps_Deployment");
    assert_eq!(action(&done, &id), ObjectAction::Configured, "{done}");
    let web = deployments.get("web").await.unwrap();
    let web_managers: Vec<String> = web
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        !web_managers.iter().any(|m| m == "kubectl-scale"),
        "{web_managers:?}"
    );
    assert_eq!(replicas(web), Some(2));
    let again = run(&applier, set(&app(&ns, "blue")), &takeover).await;
    assert_eq!(action(&again, &id), ObjectAction::Unchanged, "{again}");
}

#[tokio::test]
async fn waiting_reads_one_list_per_kind_and_namespace_a_round() {
    let (client, ns) = setup("waitlist").await;
    let applier = applier(&client, &ns);
    let yaml = stream(
        (0..20).map(|i| config_map_yaml(&ns, &format!("cm-{i:02}"), &format!("i: \"{i}\""))),
    );
    run(&applier, set(&yaml), &ApplyOptions::default()).await;
    let waited = run(
        &applier,
        set(&yaml),
        &ApplyOptions::default().with_wait(Duration::from_secs(10)),
    )
    .await;
    assert_eq!(waited.count(ObjectAction::Unchanged), 20, "{waited}");
    // The inventory (1), discovery being cached; a list to decide, a list for the one wait
    // round.
    assert_eq!(waited.request_counts, read_only_counts(2, 1), "{waited}");
}

#[tokio::test]
async fn an_unchanged_run_reports_health_from_the_objects_it_listed() {
    let (client, ns) = setup("steady-health").await;
    let applier = applier(&client, &ns);
    let yaml = app(&ns, "blue");
    run(&applier, set(&yaml), &ApplyOptions::default()).await;
    let health_of = |change_set: &ChangeSet, id: &str| {
        let id: ObjectId = id.parse().unwrap();
        let change = change_set
            .changes
            .iter()
            .find(|c| c.id == id)
            .expect("in the change set");
        assert_eq!(change.action, ObjectAction::Unchanged, "{change}");
        change
            .health
            .clone()
            .expect("an unchanged object has its health")
    };

    // No controller has observed the Deployment: a steady run sees it as not rolled out, with
    // no request beyond its lists.
    let steady = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(steady.request_counts.writes, 0, "{steady:?}");
    let web = format!("{ns}_web_apps_Deployment");
    assert_eq!(health_of(&steady, &web).status, Status::InProgress);
    assert_eq!(
        health_of(&steady, &format!("{ns}_settings__ConfigMap")).status,
        Status::Current
    );

    // Once its "controller" reports the rollout, the next steady run sees it Current.
    web_rolled_out(&client, &ns, 2).await;
    let steady = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(health_of(&steady, &web).status, Status::Current);
}

/// Issue #13, defect 3: a dry run reports, per object, what the real run fails on, with the
/// same typed errors: an immutable change, a conflict with another field manager, objects the
/// server rejects (strict field validation, an invalid name).
#[tokio::test]
async fn a_dry_run_reports_what_the_real_run_would_fail_on() {
    let (client, ns) = setup("dryfail").await;
    let applier = applier(&client, &ns);
    let live = |name: &str, extra: serde_json::Value| {
        let mut object = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {"color": "red"},
        });
        object
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        object
    };
    let config_maps = dynamic::<ConfigMap>(&client, &ns);
    // `frozen` is ours (a conflict is found before an immutable change), `edited` another
    // manager's.
    for (name, manager, extra) in [
        (
            "frozen",
            gitops_apply::DEFAULT_FIELD_MANAGER,
            serde_json::json!({"immutable": true}),
        ),
        ("edited", "kubectl-edit", serde_json::json!({})),
    ] {
        config_maps
            .patch(
                name,
                &PatchParams::apply(manager),
                &Patch::Apply(live(name, extra)),
            )
            .await
            .unwrap();
    }
    let yaml = format!(
        "\
apiVersion: v1
kind: ConfigMap
metadata: {{name: frozen, namespace: {ns}}}
immutable: true
data: {{color: blue}}
---
{edited}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: strange, namespace: {ns}}}
spec: {{unknown: field}}
---
{not_a_name}---
{fine}",
        edited = config_map_yaml(&ns, "edited", "color: blue"),
        not_a_name = config_map_yaml(&ns, "Not_A_Name", "color: blue"),
        fine = config_map_yaml(&ns, "fine", "color: blue"),
    );
    let check = |change_set: &ChangeSet, dry_run: bool| {
        let error = |name: &str| {
            let id: gitops_core::ObjectId = format!("{ns}_{name}__ConfigMap").parse().unwrap();
            let change = change_set.get(&id).unwrap();
            assert_eq!(change.action, ObjectAction::Failed, "{change_set}");
            if dry_run {
                assert_eq!(change.reason, Reason::ValidationFailed, "{change}");
            }
            change.error.as_ref().unwrap()
        };
        assert!(
            matches!(error("frozen"), ObjectError::Immutable { fields, .. } if fields == &["data"]),
            "{change_set}"
        );
        assert!(
            matches!(error("edited"), ObjectError::Conflict { conflicts } if conflicts[0].manager == "kubectl-edit"),
            "{change_set}"
        );
        assert!(
            matches!(error("strange"), ObjectError::Rejected { .. }),
            "{change_set}"
        );
        assert!(
            matches!(error("Not_A_Name"), ObjectError::Rejected { code: 422, .. }),
            "{change_set}"
        );
        assert_eq!(change_set.count(ObjectAction::Failed), 4, "{change_set}");
    };

    let dry_run = ApplyOptions::default().with_dry_run(true);
    let plan = run(&applier, set(&yaml), &dry_run).await;
    check(&plan, true);
    assert_eq!(
        action(&plan, &format!("{ns}_fine__ConfigMap")),
        ObjectAction::Created
    );
    // Short: the fields and the hint, not the server's message.
    let frozen = plan.failed().find(|c| c.id.name == "frozen").unwrap();
    let text = frozen.to_string();
    assert!(text.contains("recreate_on_immutable"), "{text}");
    assert!(!text.contains("is invalid"), "{text}");
    assert_eq!(text.matches("immutable").count(), 2, "{text}");

    let err = run_err(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert!(matches!(err, ApplyError::Invalid { .. }), "{err}");
    check(err.change_set().unwrap(), false);
    assert!(config_map(&client, &ns, "fine").await.is_none());
}
