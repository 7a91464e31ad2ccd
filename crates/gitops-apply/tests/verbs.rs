//! The applier's verbs, each alone, against a real control plane (gitops-envtest): a reviewed
//! plan executed as is, a stale plan refused, `delete_all` for finalizers, health-gated waves,
//! and the requests of a run with nothing to change.

use std::time::Duration;

use gitops_apply::{
    Applier, ApplyError, ApplyOptions, ApplyProgress, ChangeSet, InventoryStore as _,
    LoggedRequest, ObjectAction, PlannedAction, Reason, RequestCounter, RequestKind,
    counting_client,
};
use gitops_core::ObjectId;
use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod common;
use common::cluster::{config_map, config_value, update_as, web_rolled_out};
use common::crd::{SIZE, crds, gadget_crd, install_crd};
use common::fixtures::{config_map_yaml, stream, web_deployment};
use common::{
    applier, inventory, manifests, outcome, planned, read_only_counts, run, run_err, set, setup,
    stored_inventory,
};

/// The value of `color` in ConfigMap `ns/name`, which must exist.
async fn color(client: &kube::Client, ns: &str, name: &str) -> String {
    config_value(client, ns, name, "color").await
}

/// A hand edit of a ConfigMap, as `kubectl edit` makes it.
async fn edit(client: &kube::Client, ns: &str, name: &str, patch: serde_json::Value) {
    update_as(client, ns, name, "kubectl-edit", patch).await;
}

/// Argo CD's compare options `options` on the ConfigMap `ns/name`, set by hand.
async fn compare_options(client: &kube::Client, ns: &str, name: &str, options: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations":
                {"argocd.argoproj.io/compare-options": options}}})),
        )
        .await
        .unwrap();
}

/// Applies the [`config_maps`] of these names and colors, which must succeed.
async fn apply_colors(applier: &Applier, ns: &str, colors: &[(&str, &str)]) -> ChangeSet {
    run(
        applier,
        set(&config_maps(ns, colors)),
        &ApplyOptions::default(),
    )
    .await
}

/// ConfigMaps in `ns` of these names and colors.
fn config_maps(ns: &str, colors: &[(&str, &str)]) -> String {
    stream(
        colors
            .iter()
            .map(|(name, color)| config_map_yaml(ns, name, &format!("color: {color}"))),
    )
}

#[tokio::test]
async fn a_reviewed_plan_is_executed_as_shown() {
    let (client, ns) = setup("plan-as-is").await;
    let applier = applier(&client, &ns);
    let cancel = CancellationToken::new();
    apply_colors(&applier, &ns, &[("a", "red"), ("b", "red"), ("c", "red")]).await;

    // a changes, b stays, c leaves the set, d is new.
    let next = set(&config_maps(
        &ns,
        &[("a", "blue"), ("b", "red"), ("d", "green")],
    ));
    let plan = planned(&applier, &next, &ApplyOptions::default()).await;
    let text = plan.to_string();
    let expected = [
        format!("    ~ ConfigMap {ns}/a (drifted)"),
        "        ~ data.color: \"red\" -> \"blue\"".to_owned(),
        format!("    + ConfigMap {ns}/d (not found)"),
        format!("    - ConfigMap {ns}/c (left the set)"),
        "Plan: 1 to create, 1 to update, 0 to recreate, 1 to prune, 1 unchanged.".to_owned(),
    ]
    .join("\n");
    assert_eq!(text, expected);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["summary"]["create"], 1, "{json}");
    assert_eq!(json["summary"]["prune"], 1, "{json}");
    assert_eq!(json["in_sync"], false);
    let a = json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == format!("ConfigMap {ns}/a"))
        .unwrap();
    assert_eq!(
        (&a["action"], &a["reason"], &a["changes"][0]["after"]),
        (&json!("update"), &json!("Drifted"), &json!("blue")),
        "{a}"
    );
    assert!(!plan.is_in_sync());
    // Nothing was written by planning.
    assert_eq!(color(&client, &ns, "a").await, "red");
    assert!(config_map(&client, &ns, "d").await.is_none());

    let done = applier.apply(plan, &cancel, |_| {}).await.unwrap();
    let action = |name: &str| outcome(&done, &format!("{ns}_{name}__ConfigMap"));
    assert_eq!(action("a"), (ObjectAction::Configured, Reason::Drifted));
    assert_eq!(action("b"), (ObjectAction::Unchanged, Reason::InSync));
    assert_eq!(action("c"), (ObjectAction::Pruned, Reason::LeftTheSet));
    assert_eq!(action("d"), (ObjectAction::Created, Reason::NotFound));
    assert_eq!(color(&client, &ns, "a").await, "blue");
    assert_eq!(color(&client, &ns, "d").await, "green");
    let c = config_map(&client, &ns, "c").await;
    assert!(c.is_none_or(|c| c.metadata.deletion_timestamp.is_some()));

    // The next plan is in sync.
    let again = planned(&applier, &next, &ApplyOptions::default()).await;
    assert!(again.is_in_sync(), "{again:#}");
}

#[tokio::test]
async fn a_plan_made_stale_by_a_hand_edit_is_refused_and_the_replan_applies() {
    let (client, ns) = setup("plan-stale").await;
    let applier = applier(&client, &ns);
    let cancel = CancellationToken::new();
    apply_colors(&applier, &ns, &[("a", "red"), ("b", "red")]).await;
    let next = set(&config_maps(&ns, &[("a", "blue"), ("b", "red")]));
    let plan = planned(&applier, &next, &ApplyOptions::default()).await;
    assert_eq!(plan.summary().update, 1, "{plan}");

    // Between plan and apply, someone edits b, a field the set sets.
    edit(&client, &ns, "b", json!({"data": {"color": "black"}})).await;
    let err = applier.apply(plan, &cancel, |_| {}).await.unwrap_err();
    let ApplyError::StalePlan { moved } = &err else {
        panic!("{err}")
    };
    let b: ObjectId = format!("{ns}_b__ConfigMap").parse().unwrap();
    assert_eq!(moved, &[b], "{err}");
    assert!(err.to_string().contains("plan again"), "{err}");
    // Nothing was written: not even the planned change of a.
    assert_eq!(color(&client, &ns, "a").await, "red");
    assert_eq!(color(&client, &ns, "b").await, "black");

    // The re-plan shows both and applies.
    let plan = planned(&applier, &next, &ApplyOptions::default().with_force(true)).await;
    assert_eq!(plan.summary().update, 2, "{plan}");
    let done = applier.apply(plan, &cancel, |_| {}).await.unwrap();
    assert_eq!(done.count(ObjectAction::Configured), 2, "{done}");
    assert_eq!(color(&client, &ns, "a").await, "blue");
    assert_eq!(color(&client, &ns, "b").await, "red");

    // An object to create that appears in the meantime makes the plan stale too.
    let with_c = set(&config_maps(
        &ns,
        &[("a", "blue"), ("b", "red"), ("c", "red")],
    ));
    let plan = planned(&applier, &with_c, &ApplyOptions::default()).await;
    assert_eq!(plan.summary().create, 1, "{plan}");
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"color": "x"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let err = applier.apply(plan, &cancel, |_| {}).await.unwrap_err();
    assert!(matches!(err, ApplyError::StalePlan { .. }), "{err}");
}

/// Another run with the same inventory between plan and apply: recording the reviewed plan's
/// inventory over it would forget what that run wrote (never pruned then).
#[tokio::test]
async fn a_plan_is_stale_when_another_run_saved_the_inventory_since() {
    let (client, ns) = setup("plan-inventory").await;
    let applier = applier(&client, &ns);
    let cancel = CancellationToken::new();
    apply_colors(&applier, &ns, &[("a", "red")]).await;
    let plan = planned(
        &applier,
        &set(&config_maps(&ns, &[("a", "blue")])),
        &ApplyOptions::default(),
    )
    .await;

    // Another run (another process, the same inventory) adds d.
    apply_colors(&applier, &ns, &[("a", "red"), ("d", "red")]).await;
    let err = applier.apply(plan, &cancel, |_| {}).await.unwrap_err();
    let ApplyError::StalePlan { moved } = &err else {
        panic!("{err}")
    };
    let d: ObjectId = format!("{ns}_d__ConfigMap").parse().unwrap();
    assert_eq!(moved, &[d], "{err}");
    assert_eq!(color(&client, &ns, "a").await, "red");
    // The inventory still lists d, so that a later run prunes it.
    let inventory = stored_inventory(&client, &ns).await;
    assert_eq!(inventory.len(), 2, "{inventory:?}");
}

#[tokio::test]
async fn a_status_update_does_not_make_a_plan_stale() {
    let (client, ns) = setup("plan-status").await;
    let applier = applier(&client, &ns);
    let cancel = CancellationToken::new();
    let first = format!(
        "{}---\n{}",
        web_deployment(&ns, 1),
        config_maps(&ns, &[("a", "red")])
    );
    run(&applier, set(&first), &ApplyOptions::default()).await;
    let next = format!(
        "{}---\n{}",
        web_deployment(&ns, 1),
        config_maps(&ns, &[("a", "blue")])
    );
    let plan = planned(&applier, &set(&next), &ApplyOptions::default()).await;
    assert_eq!(
        (plan.summary().update, plan.summary().unchanged),
        (1, 1),
        "{plan:#}"
    );
    let before: Deployment = Api::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    // A controller writes the Deployment's status: its resourceVersion moves.
    web_rolled_out(&client, &ns, 1).await;
    let after: Deployment = Api::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_ne!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
    let done = applier.apply(plan, &cancel, |_| {}).await.unwrap();
    assert_eq!(done.count(ObjectAction::Configured), 1, "{done}");
    assert_eq!(color(&client, &ns, "a").await, "blue");
}

#[tokio::test]
async fn delete_all_deletes_in_reverse_order_only_what_carries_our_labels_then_the_inventory() {
    let (client, ns) = setup("delete-all").await;
    let counter = RequestCounter::with_log();
    let applier = Applier::builder(counting_client(&client, &counter), inventory(&ns)).build();
    let yaml = format!(
        "{}---\n{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec: {{ports: [{{port: 80}}]}}\n",
        web_deployment(&ns, 1),
        config_maps(&ns, &[("a", "red"), ("b", "red"), ("kept", "red")])
    );
    run(&applier, set(&yaml), &ApplyOptions::default()).await;
    // Someone takes `kept` away from us: its ownership labels removed by hand.
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .patch(
            "kept",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "remove", "path": "/metadata/labels"}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    let start = counter.log().len();

    let deleted = applier.delete_all(&CancellationToken::new()).await.unwrap();
    let entry = |name: &str, kind: &str, group: &str| {
        outcome(&deleted, &format!("{ns}_{name}_{group}_{kind}"))
    };
    assert_eq!(
        entry("web", "Deployment", "apps"),
        (ObjectAction::Pruned, Reason::LeftTheSet)
    );
    assert_eq!(
        entry("kept", "ConfigMap", ""),
        (ObjectAction::Skipped, Reason::NoOwnershipLabels)
    );
    // The deletes, in the reverse of the apply order (ConfigMaps, Service, Deployment), the
    // inventory last.
    let log = counter.log();
    let deletes: Vec<&LoggedRequest> = log[start..]
        .iter()
        .filter(|r| r.method == Method::DELETE)
        .collect();
    let paths: Vec<String> = deletes.iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            format!("/apis/apps/v1/namespaces/{ns}/deployments/web"),
            format!("/api/v1/namespaces/{ns}/services/web"),
            format!("/api/v1/namespaces/{ns}/configmaps/b"),
            format!("/api/v1/namespaces/{ns}/configmaps/a"),
            format!("/api/v1/namespaces/{ns}/configmaps/inventory"),
        ],
        "{deleted}"
    );
    assert!(deletes.iter().all(|r| r.kind == RequestKind::Write));
    assert!(config_map(&client, &ns, "kept").await.is_some());
    let gone = config_map(&client, &ns, "a").await;
    assert!(gone.is_none_or(|c| c.metadata.deletion_timestamp.is_some()));
    assert!(inventory(&ns).load(&client).await.unwrap().is_none());

    // Nothing left to delete: a second call is a no-op.
    let again = applier.delete_all(&CancellationToken::new()).await.unwrap();
    assert!(again.changes.is_empty(), "{again}");
}

#[tokio::test]
async fn a_health_gated_wave_waits_for_the_deployment_of_the_wave_before() {
    let (client, ns) = setup("waves").await;
    let applier = applier(&client, &ns);
    let yaml = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: after, namespace: {ns}, annotations: {{argocd.argoproj.io/sync-wave: \"1\"}}}}\ndata: {{color: red}}\n",
        web_deployment(&ns, 1)
    );
    let options = ApplyOptions::default().with_wait_between_waves(Duration::from_secs(60));
    let (rounds, mut waiting) = tokio::sync::mpsc::unbounded_channel();
    let task = {
        let applier = applier.clone();
        let desired = set(&yaml);
        tokio::spawn(async move {
            applier
                .apply_set_with_progress(desired, &options, &CancellationToken::new(), |p| {
                    if let ApplyProgress::WaveWaiting {
                        next_wave, total, ..
                    } = p
                    {
                        let _ = rounds.send((*next_wave, *total));
                    }
                })
                .await
        })
    };
    // Wave 0 is written...
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    while deployments.get_opt("web").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and wave 1 waits for the one object of wave 0: the Deployment cannot be Current
    // without a status, which only this test writes (no controller runs here).
    assert_eq!(waiting.recv().await, Some((1, 1)));
    assert!(!task.is_finished());
    assert!(config_map(&client, &ns, "after").await.is_none());
    web_rolled_out(&client, &ns, 1).await;
    let done = task.await.unwrap().unwrap();
    assert_eq!(done.count(ObjectAction::Created), 2, "{done}");
    assert_eq!(color(&client, &ns, "after").await, "red");

    // A wave that never becomes healthy fails the run, and the next wave is not written.
    let failing = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: never, namespace: {ns}, annotations: {{argocd.argoproj.io/sync-wave: \"1\"}}}}\n",
        web_deployment(&ns, 1).replace("nginx:1.27", "nginx:1.28")
    );
    let err = run_err(
        &applier,
        set(&failing),
        &ApplyOptions::default().with_wait_between_waves(Duration::from_secs(2)),
    )
    .await;
    let ApplyError::Unhealthy { change_set, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        outcome(change_set, &format!("{ns}_never__ConfigMap")),
        (ObjectAction::Skipped, Reason::EarlierGroupFailed),
        "{change_set}"
    );
    assert!(config_map(&client, &ns, "never").await.is_none());
}

#[tokio::test]
async fn a_no_change_run_lists_once_per_kind_and_namespace_and_writes_nothing() {
    let (client, ns) = setup("verbs-steady").await;
    let applier = applier(&client, &ns);
    let yaml = format!(
        "{}---\n{}",
        web_deployment(&ns, 1),
        config_maps(&ns, &[("a", "red"), ("b", "red")])
    );
    run(&applier, set(&yaml), &ApplyOptions::default()).await;
    let steady = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(steady.count(ObjectAction::Unchanged), 3, "{steady}");
    // The inventory (1), one list per kind and namespace (2); discovery is cached, no dry
    // run, no write. Before #14 the same run sent 5 (discovery twice).
    assert_eq!(steady.request_counts, read_only_counts(2, 1), "{steady}");
    // The plan of the same set says so, and reads the same.
    let plan = planned(&applier, &set(&yaml), &ApplyOptions::default()).await;
    assert!(plan.is_in_sync(), "{plan:#}");
    assert!(
        plan.entries()
            .iter()
            .all(|e| e.action == PlannedAction::Unchanged)
    );
}

#[tokio::test]
async fn stale_objects_prune_alone_and_an_extraneous_one_is_no_drift() {
    let (client, ns) = setup("verbs-prune").await;
    let applier = applier(&client, &ns);
    let cancel = CancellationToken::new();
    apply_colors(&applier, &ns, &[("a", "red"), ("b", "red"), ("c", "red")]).await;
    // c is marked as Argo CD's extraneous: leaving the set, it is no drift.
    compare_options(&client, &ns, "c", "IgnoreExtraneous").await;
    let only_a = set(&config_maps(&ns, &[("a", "red")]));
    let plan = planned(&applier, &only_a, &ApplyOptions::default()).await;
    let stale: Vec<(String, PlannedAction, Reason)> = plan
        .stale()
        .iter()
        .map(|s| (s.id.name.clone(), s.action, s.reason.clone()))
        .collect();
    assert_eq!(
        stale,
        [
            (
                "c".to_owned(),
                PlannedAction::Prune,
                Reason::IgnoredExtraneous
            ),
            ("b".to_owned(), PlannedAction::Prune, Reason::LeftTheSet),
        ],
        "{plan}"
    );
    assert!(!plan.is_in_sync(), "b is drift: {plan}");
    let drifted: Vec<String> = plan.drifted().map(|e| e.id.name.clone()).collect();
    assert_eq!(drifted, ["b"]);

    // The stale objects pruned alone: the inventory forgets them.
    let pruned = applier.prune(plan.stale(), &cancel).await.unwrap();
    assert_eq!(pruned.count(ObjectAction::Pruned), 2, "{pruned}");
    for name in ["b", "c"] {
        let gone = config_map(&client, &ns, name).await;
        assert!(gone.is_none_or(|c| c.metadata.deletion_timestamp.is_some()));
    }
    let listed = stored_inventory(&client, &ns).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let plan = planned(&applier, &only_a, &ApplyOptions::default()).await;
    assert!(plan.is_in_sync() && plan.stale().is_empty(), "{plan:#}");

    // Only c left the set this time: the plan is in sync all the same.
    apply_colors(&applier, &ns, &[("a", "red"), ("c", "red")]).await;
    compare_options(&client, &ns, "c", "ServerSideDiff=true, IgnoreExtraneous").await;
    let plan = planned(&applier, &only_a, &ApplyOptions::default()).await;
    assert_eq!(plan.summary().prune, 1, "{plan}");
    assert!(plan.is_in_sync(), "{plan}");
}

#[tokio::test]
async fn an_apply_only_set_never_prunes_and_forgets_nothing() {
    let (client, ns) = setup("verbs-apply-only").await;
    let applier = applier(&client, &ns);
    let cancel = CancellationToken::new();
    apply_colors(&applier, &ns, &[("a", "red"), ("b", "red")]).await;
    let extra =
        gitops_apply::DesiredSet::apply_only(manifests(&config_maps(&ns, &[("c", "green")])));
    let plan = planned(&applier, &extra, &ApplyOptions::default()).await;
    assert!(plan.stale().is_empty(), "{plan}");
    let done = applier.apply(plan, &cancel, |_| {}).await.unwrap();
    assert_eq!(done.count(ObjectAction::Created), 1, "{done}");
    assert_eq!(done.count(ObjectAction::Pruned), 0, "{done}");
    assert!(config_map(&client, &ns, "a").await.is_some());
    // a and b stay tracked: a later render without them prunes them.
    let listed = stored_inventory(&client, &ns).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
}

#[tokio::test]
async fn a_kind_deleted_by_hand_is_rediscovered_not_served_from_the_cache() {
    let (client, ns) = setup("verbs-rediscover").await;
    let group = format!("{ns}.verbs.gitops.rs");
    let gadget = format!(
        "apiVersion: {group}/v1\nkind: Gadget\nmetadata: {{name: g1, namespace: {ns}}}\nspec: {{size: 1}}\n"
    );
    // The CRD is installed by someone else; the set has only the custom resource.
    install_crd(&client, &gadget_crd(&group, SIZE), "someone-else")
        .await
        .unwrap();
    let crds = crds(&client);
    let applier = applier(&client, &ns);
    // The kind may take a moment to be served after its creation.
    let mut attempts = 0;
    loop {
        match applier
            .apply_set(
                set(&gadget),
                &ApplyOptions::default(),
                &CancellationToken::new(),
            )
            .await
        {
            Ok(done) => {
                assert_eq!(done.count(ObjectAction::Created), 1, "{done}");
                break;
            }
            Err(_) if attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("{error}"),
        }
    }

    // The CRD is deleted by hand: its kind is gone, but the applier's discovery is cached.
    crds.delete(&format!("gadgets.{group}"), &Default::default())
        .await
        .unwrap();
    while crds
        .get_opt(&format!("gadgets.{group}"))
        .await
        .unwrap()
        .is_some()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A failing run discovers again on the next run: within a few runs (not after the cache's
    // five minutes) the error names the unknown kind before any request to the gone kind.
    let mut last = String::new();
    for _ in 0..25 {
        let error = run_err(&applier, set(&gadget), &ApplyOptions::default()).await;
        if let ApplyError::Plan(problem) = &error {
            assert!(
                problem
                    .to_string()
                    .contains("the cluster serves no kind Gadget"),
                "{problem}"
            );
            return;
        }
        last = error.to_string();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("still served from the cache: {last}");
}
