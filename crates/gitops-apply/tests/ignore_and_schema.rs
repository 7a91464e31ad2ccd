//! Against the real control plane: ignore rules bind apply (a field another manager owns, as
//! an HPA owns `spec.replicas`, is neither drift nor written), and custom resources of a CRD
//! installed before the run are diffed with the cluster's schema (a list-map is compared by
//! key, not as an atomic list).

use gitops_apply::{
    Applier, ApplyError, ApplyOptions, ObjectAction, ObjectError, PlannedAction, RequestCounter,
    counting_client,
};
use gitops_core::ObjectId;
use gitops_diff::{ChangeKind, IgnoreRule, Selector};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

mod common;
use common::cluster::dynamic;
use common::crd::{PARTS, SIZE, SIZE_AND_TAGS, gadget_crd, install_crd, openapi_reads};
use common::fixtures::web_deployment;
use common::{applier_builder, planned, run, run_err, set, setup};

/// An applier counting its requests, with these ignore rules.
fn applier(
    client: &kube::Client,
    ns: &str,
    counter: &RequestCounter,
    rules: &[IgnoreRule],
) -> Applier {
    let mut builder = applier_builder(&counting_client(client, counter), ns);
    for rule in rules {
        builder = builder.ignore(rule.clone());
    }
    builder.build()
}

fn patches(counter: &RequestCounter) -> Vec<String> {
    counter
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::PATCH && r.kind.is_write())
        .map(ToString::to_string)
        .collect()
}

/// Scales the Deployment through its scale subresource, as the HPA controller does.
async fn autoscale(client: &kube::Client, ns: &str, replicas: u32) {
    let api = dynamic::<Deployment>(client, ns);
    let params = PatchParams {
        field_manager: Some("hpa-test".to_owned()),
        ..PatchParams::default()
    };
    api.patch_subresource(
        "scale",
        "web",
        &params,
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale");
}

async fn live_replicas(client: &kube::Client, ns: &str) -> Value {
    let api = dynamic::<Deployment>(client, ns);
    let live = serde_json::to_value(api.get("web").await.expect("get")).expect("json");
    live["spec"]["replicas"].clone()
}

#[tokio::test]
async fn an_ignored_managers_field_is_neither_drift_nor_written() {
    let (client, ns) = setup("ignore-hpa").await;
    let yaml = web_deployment(&ns, 2);
    let id: ObjectId = format!("{ns}_web_apps_Deployment").parse().unwrap();
    let counter = RequestCounter::with_log();
    let plain = applier(&client, &ns, &counter, &[]);
    run(&plain, set(&yaml), &ApplyOptions::default()).await;
    autoscale(&client, &ns, 5).await;

    // Without a rule: the replicas are another manager's now, and applying ours conflicts.
    let err = run_err(&plain, set(&yaml), &ApplyOptions::default()).await;
    let ApplyError::Invalid { change_set } = &err else {
        panic!("expected a validation error, got {err}");
    };
    let failed = change_set.get(&id).expect("the Deployment is reported");
    let Some(ObjectError::Conflict { conflicts }) = &failed.error else {
        panic!("expected a conflict: {failed}");
    };
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].manager, "hpa-test");
    assert_eq!(conflicts[0].field, ".spec.replicas");
    assert_eq!(live_replicas(&client, &ns).await, 5);

    // With a rule for the autoscaler, by manager or by path: no drift, no write, no conflict,
    // run after run, and the autoscaler keeps its replicas.
    let by_manager =
        IgnoreRule::new(Selector::default().group("apps").kind("Deployment")).manager("hpa-test");
    let by_path = IgnoreRule::new(Selector::default().kind("Deployment"))
        .pointer("/spec/replicas")
        .unwrap();
    // The same rules in the shapes Flux and Argo CD users write.
    let argo: gitops_diff::ArgoIgnoreDifference = serde_json::from_value(
        json!({"group": "apps", "kind": "Deployment", "managedFieldsManagers": ["hpa-test"]}),
    )
    .unwrap();
    let flux: gitops_diff::FluxDriftIgnoreRule = serde_json::from_value(
        json!({"paths": ["/spec/replicas"], "target": {"kind": "Deployment", "name": "w.b"}}),
    )
    .unwrap();
    let argo = IgnoreRule::try_from(argo).unwrap();
    let flux = IgnoreRule::try_from(flux).unwrap();
    let mut replicas = 5;
    for rule in [by_manager, by_path, argo, flux] {
        for round in 0..2 {
            let counter = RequestCounter::with_log();
            let ignoring = applier(&client, &ns, &counter, std::slice::from_ref(&rule));
            let plan = planned(&ignoring, &set(&yaml), &ApplyOptions::default()).await;
            assert!(plan.is_in_sync(), "{rule:?} {round}: {plan:#}");
            let change_set = run(&ignoring, set(&yaml), &ApplyOptions::default()).await;
            let change = change_set.get(&id).expect("the Deployment is reported");
            assert_eq!(
                change.action,
                ObjectAction::Unchanged,
                "{rule:?} {round}: {change}"
            );
            assert!(
                change.diff.as_ref().is_none_or(|d| d.is_in_sync()),
                "{rule:?} {round}: {change}"
            );
            assert_eq!(patches(&counter), Vec::<String>::new(), "{rule:?} {round}");
            assert_eq!(change_set.request_counts.writes, 0, "{change_set}");
            // Built-in kinds only: the embedded schema, no OpenAPI request.
            assert_eq!(openapi_requests(&counter), 0, "{rule:?} {round}");
            assert_eq!(live_replicas(&client, &ns).await, replicas);
            // The autoscaler moves on; the next run leaves that alone too.
            replicas += 1;
            autoscale(&client, &ns, replicas).await;
        }
    }

    // A change elsewhere in the Deployment is written, still without touching the replicas.
    let counter = RequestCounter::with_log();
    let rule = IgnoreRule::new(Selector::default().kind("Deployment")).manager("hpa-test");
    let ignoring = applier(&client, &ns, &counter, &[rule]);
    let changed = yaml.replace("nginx:1.27", "nginx:1.28");
    let change_set = run(&ignoring, set(&changed), &ApplyOptions::default()).await;
    assert_eq!(
        change_set.get(&id).unwrap().action,
        ObjectAction::Configured,
        "{change_set}"
    );
    assert_eq!(patches(&counter).len(), 1, "{:?}", patches(&counter));
    assert_eq!(live_replicas(&client, &ns).await, replicas);
}

/// The group of the CRD these tests install.
const GROUP: &str = "schema.gitops-rs.test";

fn gadget(ns: &str, parts: &[(&str, u32)]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|(name, size)| format!("{{name: {name}, size: {size}}}"))
        .collect();
    format!(
        "apiVersion: {GROUP}/v1
kind: Gadget
metadata: {{name: g, namespace: {ns}}}
spec:
  parts: [{}]
",
        parts.join(", ")
    )
}

/// How many requests of `counter` read the cluster's OpenAPI documents.
fn openapi_requests(counter: &RequestCounter) -> usize {
    openapi_reads(counter.requests().iter().map(|r| r.path.as_str()))
}

#[tokio::test]
async fn a_list_map_of_an_installed_crd_is_compared_by_key() {
    let (client, ns) = setup("ignore-schema").await;
    install_crd(&client, &gadget_crd(GROUP, PARTS), "platform-team")
        .await
        .expect("install the CRD");
    let id: ObjectId = format!("{ns}_g_schema.gitops-rs.test_Gadget")
        .parse()
        .unwrap();
    let counter = RequestCounter::with_log();
    let applier = applier(&client, &ns, &counter, &[]);
    run(
        &applier,
        set(&gadget(&ns, &[("a", 1), ("b", 2), ("c", 3)])),
        &ApplyOptions::default(),
    )
    .await;
    assert!(
        openapi_requests(&counter) > 0,
        "the cluster schema was read"
    );

    // Reordered in Git: the same list-map, so no drift and no write; and the schema comes
    // from the cache (no /openapi request on the second run).
    let counter_before = counter.requests().len();
    let change_set = run(
        &applier,
        set(&gadget(&ns, &[("c", 3), ("a", 1), ("b", 2)])),
        &ApplyOptions::default(),
    )
    .await;
    let change = change_set.get(&id).expect("the Gadget is reported");
    assert_eq!(change.action, ObjectAction::Unchanged, "{change}");
    assert_eq!(change_set.request_counts.writes, 0, "{change_set}");
    let second: Vec<_> = counter.requests()[counter_before..].to_vec();
    assert!(
        second.iter().all(|r| !r.path.starts_with("/openapi")),
        "{second:?}"
    );

    // One item changed by key: the plan has exactly one change, at that item.
    let plan = planned(
        &applier,
        &set(&gadget(&ns, &[("c", 3), ("a", 1), ("b", 5)])),
        &ApplyOptions::default(),
    )
    .await;
    let entries = plan.entries();
    let entry = entries
        .iter()
        .find(|e| *e.id == id)
        .expect("the Gadget is planned");
    assert_eq!(entry.action, PlannedAction::Update, "{plan}");
    let diff = entry.diff.expect("a diff");
    let changes: Vec<(&str, ChangeKind)> = diff
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    assert_eq!(
        changes,
        [("spec.parts[name=b].size", ChangeKind::Modified)],
        "{plan}"
    );
    // And a plan of the reordered list is in sync.
    let reordered = planned(
        &applier,
        &set(&gadget(&ns, &[("b", 2), ("c", 3), ("a", 1)])),
        &ApplyOptions::default(),
    )
    .await;
    assert!(reordered.is_in_sync(), "{reordered:#}");
}

/// A recreate is a create: the object is sent whole, the fields an ignore rule leaves out of an
/// update included, since deleting the object deleted their owner's value too.
#[tokio::test]
async fn a_recreated_object_is_sent_whole_despite_ignore_rules() {
    let (client, ns) = setup("ignore-recreate").await;
    let yaml = web_deployment(&ns, 2);
    let id: ObjectId = format!("{ns}_web_apps_Deployment").parse().unwrap();
    let counter = RequestCounter::default();
    let rule = IgnoreRule::new(Selector::default().kind("Deployment")).manager("hpa-test");
    let ignoring = applier(&client, &ns, &counter, &[rule]);
    run(&ignoring, set(&yaml), &ApplyOptions::default()).await;
    autoscale(&client, &ns, 5).await;

    // The selector is immutable: with recreate on, the Deployment is deleted and created again.
    let moved = yaml.replace("app: web", "app: shop");
    let options = ApplyOptions::default().with_recreate_on_immutable(true);
    let change_set = run(&ignoring, set(&moved), &options).await;
    let change = change_set.get(&id).expect("the Deployment is reported");
    assert_eq!(change.action, ObjectAction::Recreated, "{change_set}");
    // Git's replicas, not the server's default of 1 (what the trimmed object would give).
    assert_eq!(live_replicas(&client, &ns).await, 2);
}

/// The `serverRelativeURL` (with its hash) under which the cluster publishes the OpenAPI v3
/// document of `{group}/v1`.
async fn published_url(client: &kube::Client, group: &str) -> String {
    let request = http::Request::get("/openapi/v3").body(Vec::new()).unwrap();
    let index: Value = serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap();
    index["paths"][format!("apis/{group}/v1")]["serverRelativeURL"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_custom_resource_whose_schema_document_cannot_be_read_is_still_applied() {
    let (client, ns) = setup("schema-unreadable").await;
    let (typed, changed) = (format!("typed.{ns}.test"), format!("changed.{ns}.test"));
    install_crd(&client, &gadget_crd(&typed, SIZE), "schema-test")
        .await
        .unwrap();
    install_crd(&client, &gadget_crd(&changed, SIZE), "schema-test")
        .await
        .unwrap();
    let gadget = |group: &str, name: &str| {
        format!(
            "apiVersion: {group}/v1\nkind: Gadget\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{size: 1}}\n"
        )
    };
    // The first run reads the cluster's OpenAPI index (listing both group-versions, kept for
    // the next run) and the document of `typed` alone.
    let applier = applier_builder(&client, &ns).build();
    run(
        &applier,
        set(&gadget(&typed, "a")),
        &ApplyOptions::default(),
    )
    .await;
    // The schema of `changed` changes: the index the applier keeps names its document under a
    // hash the server no longer serves it at, and reading it fails.
    let before = published_url(&client, &changed).await;
    install_crd(&client, &gadget_crd(&changed, SIZE_AND_TAGS), "schema-test")
        .await
        .unwrap();
    let mut republished = false;
    for _ in 0..100 {
        if published_url(&client, &changed).await != before {
            republished = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        republished,
        "the document of {changed} was never republished"
    );
    // The run goes on without that schema: its object is compared untyped, and applied.
    let yaml = format!("{}---\n{}", gadget(&typed, "a"), gadget(&changed, "b"));
    let change_set = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    let b = change_set
        .changes
        .iter()
        .find(|c| c.id.name == "b")
        .unwrap();
    assert_eq!(b.action, ObjectAction::Created, "{change_set}");
}
