//! The inventory is recorded before the writes, prunes never take desired objects with them, and
//! prune order, ownership and paging, against a real control plane (gitops-envtest).

use std::collections::BTreeMap;
use std::time::Duration;

use gitops_apply::{
    Applier, ApplyError, ApplyOptions, ConfigMapInventory, Inventory, InventoryError,
    InventoryStore, OWNER_NAME_LABEL, ObjectAction, ObjectError, Reason,
};
use gitops_core::ObjectId;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

mod common;
use common::crd::{SIZE, crds, gadget_crd};
use common::fixtures::{config_map_yaml, stream};
use common::{
    action, applier, change, inventory, inventory_ids, outcome, run, run_err, set, setup,
};

fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = gitops_core::split_api_version(api_version);
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn api(client: &kube::Client, resource: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

fn config_maps(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    api(client, &resource("v1", "ConfigMap", "configmaps"), Some(ns))
}

/// The resourceVersion as a number. The apiserver backed by etcd hands out etcd's revision,
/// one counter for every object: comparing two says which write came first, without timing.
fn revision(object: &DynamicObject) -> u64 {
    object
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .expect("etcd revisions are numbers")
}

fn config_maps_yaml(ns: &str, names: &[&str]) -> String {
    stream(names.iter().map(|name| config_map_yaml(ns, name, "k: v")))
}

#[tokio::test]
async fn a_missing_inventory_namespace_fails_before_any_write() {
    let (client, ns) = setup("inv-missing").await;
    let missing = format!("{ns}-missing");
    let applier = Applier::builder(client.clone(), inventory(&missing)).build();
    let err = run_err(
        &applier,
        set(&config_maps_yaml(&ns, &["a", "b"])),
        &ApplyOptions::default(),
    )
    .await;
    assert!(
        matches!(err, ApplyError::Inventory(InventoryError::Api { .. })),
        "{err}"
    );
    // The whole chain reads as text: the server's message, not kube's Debug of its status.
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(!text.contains("Status {"), "{text}");
    assert!(text.contains("not found (NotFound, 404)"), "{text}");
    let written = config_maps(&client, &ns).get_opt("a").await.unwrap();
    assert!(written.is_none(), "an object was written: {written:?}");
    assert!(
        config_maps(&client, &ns)
            .get_opt("b")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_inventory_is_recorded_before_the_objects_are_written() {
    use futures::StreamExt as _;
    use kube::api::{WatchEvent, WatchParams};
    let (client, ns) = setup("inv-first").await;
    let applier = applier(&client, &ns);
    run(
        &applier,
        set(&config_maps_yaml(&ns, &["a"])),
        &ApplyOptions::default(),
    )
    .await;
    let since = config_maps(&client, &ns)
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    // b and c join, a leaves. Every ConfigMap write of the run, in the order the apiserver
    // made them, through a watch started before it.
    let cms = config_maps(&client, &ns);
    let mut events = cms
        .watch(&WatchParams::default(), &since)
        .await
        .unwrap()
        .boxed();
    let changed = run(
        &applier,
        set(&config_maps_yaml(&ns, &["b", "c"])),
        &ApplyOptions::default(),
    )
    .await;
    assert_eq!(
        action(&changed, &format!("{ns}_a__ConfigMap")),
        ObjectAction::Pruned
    );
    let last = revision(&cms.get("inventory").await.unwrap());
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("the watch delivers the run's writes")
            .expect("the watch stays open")
            .unwrap();
        let (verb, object) = match event {
            WatchEvent::Added(o) => ("added", o),
            WatchEvent::Modified(o) => ("modified", o),
            WatchEvent::Deleted(o) => ("deleted", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("{e:?}"),
        };
        let name = object.metadata.name.clone().unwrap();
        let done = name == "inventory" && revision(&object) == last;
        if name == "inventory" {
            let entries: Vec<String> = object.data["data"][gitops_apply::INVENTORY_KEY]
                .as_str()
                .map(|json| Inventory::from_json(json).unwrap())
                .unwrap()
                .iter()
                .map(|(id, _)| id.name.clone())
                .collect();
            seen.push(format!("inventory {}", entries.join(",")));
        } else if verb != "modified" {
            seen.push(format!("{verb} {name}"));
        }
        if done {
            break;
        }
    }
    // b and c are written at once, in either order.
    seen[1..3].sort();
    assert_eq!(
        seen,
        [
            "inventory a,b,c",
            "added b",
            "added c",
            "deleted a",
            "inventory b,c"
        ],
        "{changed}"
    );
    assert_eq!(
        inventory_ids(&client, &ns).await,
        [format!("{ns}_b__ConfigMap"), format!("{ns}_c__ConfigMap")]
    );
}

#[tokio::test]
async fn a_recorded_entry_of_an_object_never_created_is_harmless() {
    let (client, ns) = setup("inv-ghost").await;
    let applier = applier(&client, &ns);
    // As an interrupted run leaves it: the union recorded, one object never written.
    let store = inventory(&ns);
    let mut recorded = Inventory::default();
    for name in ["a", "ghost"] {
        recorded.insert(
            ObjectId::new("", "ConfigMap", Some(ns.as_str()), name),
            "v1",
        );
    }
    store
        .save(&client, &recorded, gitops_apply::DEFAULT_FIELD_MANAGER)
        .await
        .unwrap();
    let next = run(
        &applier,
        set(&config_maps_yaml(&ns, &["a"])),
        &ApplyOptions::default(),
    )
    .await;
    assert_eq!(
        action(&next, &format!("{ns}_a__ConfigMap")),
        ObjectAction::Created
    );
    assert_eq!(
        outcome(&next, &format!("{ns}_ghost__ConfigMap")),
        (ObjectAction::Pruned, Reason::AlreadyGone)
    );
    assert_eq!(store.load(&client).await.unwrap().unwrap().len(), 1);
}

/// With the Write of the record observed: the run that adds objects writes the inventory
/// before them (its revision is below theirs) when nothing leaves the set.
#[tokio::test]
async fn the_record_precedes_the_writes_it_covers() {
    let (client, ns) = setup("inv-order").await;
    let applier = applier(&client, &ns);
    let first = run(
        &applier,
        set(&config_maps_yaml(&ns, &["a", "b"])),
        &ApplyOptions::default(),
    )
    .await;
    assert_eq!(first.count(ObjectAction::Created), 2, "{first}");
    let inventory = config_maps(&client, &ns).get("inventory").await.unwrap();
    for name in ["a", "b"] {
        let object = config_maps(&client, &ns).get(name).await.unwrap();
        assert!(
            revision(&inventory) < revision(&object),
            "{name} was written before the inventory recorded it"
        );
    }
}

#[tokio::test]
async fn pruning_a_namespace_that_holds_objects_of_the_set_is_refused() {
    let (client, ns) = setup("cascade-ns").await;
    let inner = format!("{ns}-inner");
    let applier = applier(&client, &ns);
    let with_namespace = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {inner}}}\n---\n{}",
        config_maps_yaml(&inner, &["settings"])
    );
    run(&applier, set(&with_namespace), &ApplyOptions::default()).await;

    // The Namespace leaves Git, its ConfigMap stays: pruning it would delete the ConfigMap.
    let without = config_maps_yaml(&inner, &["settings"]);
    let err = run_err(&applier, set(&without), &ApplyOptions::default()).await;
    let ApplyError::CascadingPrune { losses } = &err else {
        panic!("{err}")
    };
    assert_eq!(losses.len(), 1, "{err}");
    assert_eq!(losses[0].pruned.to_string(), format!("_{inner}__Namespace"));
    assert_eq!(
        losses[0].lost,
        [ObjectId::new(
            "",
            "ConfigMap",
            Some(inner.as_str()),
            "settings"
        )]
    );
    assert!(
        err.to_string()
            .contains(&format!("ConfigMap {inner}/settings")),
        "{err}"
    );
    let namespaces = api(&client, &resource("v1", "Namespace", "namespaces"), None);
    let live = namespaces.get(&inner).await.unwrap();
    assert!(
        live.metadata.deletion_timestamp.is_none(),
        "the namespace was deleted"
    );

    // Opted in: pruned as before.
    let options = ApplyOptions::default().with_allow_cascading_prune(true);
    let pruned = run(&applier, set(&without), &options).await;
    assert_eq!(
        action(&pruned, &format!("_{inner}__Namespace")),
        ObjectAction::Pruned,
        "{pruned}"
    );
    let live = namespaces.get_opt(&inner).await.unwrap();
    assert!(live.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()));
}

#[tokio::test]
async fn pruning_a_crd_whose_kind_the_set_still_uses_is_refused() {
    let (client, ns) = setup("cascade-crd").await;
    let group = format!("{ns}.apply.gitops.rs");
    let crd = gadget_crd(&group, SIZE);
    let gadget =
        format!("apiVersion: {group}/v1\nkind: Gadget\nmetadata: {{name: g1, namespace: {ns}}}\n");
    let applier = applier(&client, &ns);
    run(
        &applier,
        set(&format!("{crd}---\n{gadget}")),
        &ApplyOptions::default(),
    )
    .await;

    let err = run_err(&applier, set(&gadget), &ApplyOptions::default()).await;
    let ApplyError::CascadingPrune { losses } = &err else {
        panic!("{err}")
    };
    assert_eq!(losses[0].pruned.name, format!("gadgets.{group}"), "{err}");
    assert_eq!(
        losses[0].lost,
        [ObjectId::new(&group, "Gadget", Some(ns.as_str()), "g1")]
    );
    let crds = crds(&client);
    let live = crds.get(&format!("gadgets.{group}")).await.unwrap();
    assert!(
        live.metadata.deletion_timestamp.is_none(),
        "the CRD was deleted"
    );
    crds.delete(&format!("gadgets.{group}"), &DeleteParams::default())
        .await
        .unwrap();
}

const HOLD: &str = "test.gitops.rs/hold";

#[tokio::test]
async fn prune_deletes_in_reverse_apply_order() {
    let (client, ns) = setup("prune-order").await;
    let role_name = format!("{ns}-reader");
    // Every object holds a finalizer: its deletion is a write (deletionTimestamp) that stays
    // visible, at the revision it happened. Kinds no controller writes to after a deletion.
    let yaml = format!(
        "\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}, finalizers: [{HOLD}]}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {role_name}, finalizers: [{HOLD}]}}
rules: []
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}, finalizers: [{HOLD}]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reader, namespace: {ns}, finalizers: [{HOLD}]}}
rules: []
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: robot, namespace: {ns}, finalizers: [{HOLD}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: keep, namespace: {ns}}}
"
    );
    let applier = applier(&client, &ns);
    let first = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    let applied: Vec<String> = first.changes.iter().map(|c| c.id.display_name()).collect();
    let pruned = run(
        &applier,
        set(&config_maps_yaml(&ns, &["keep"])),
        &ApplyOptions::default(),
    )
    .await;
    assert_eq!(pruned.count(ObjectAction::Pruned), 5, "{pruned}");

    let objects = [
        (
            resource("v1", "Service", "services"),
            Some(ns.as_str()),
            "web",
        ),
        (
            resource(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                "clusterroles",
            ),
            None,
            role_name.as_str(),
        ),
        (
            resource("v1", "ConfigMap", "configmaps"),
            Some(ns.as_str()),
            "settings",
        ),
        (
            resource("rbac.authorization.k8s.io/v1", "Role", "roles"),
            Some(ns.as_str()),
            "reader",
        ),
        (
            resource("v1", "ServiceAccount", "serviceaccounts"),
            Some(ns.as_str()),
            "robot",
        ),
    ];
    let mut deletions = BTreeMap::new();
    for (resource, namespace, name) in &objects {
        let live = api(&client, resource, *namespace).get(name).await.unwrap();
        assert!(
            live.metadata.deletion_timestamp.is_some(),
            "{name} not deleted"
        );
        let id = ObjectId::new(&resource.group, &resource.kind, *namespace, *name);
        deletions.insert(revision(&live), id.display_name());
    }
    let deleted: Vec<String> = deletions.into_values().collect();
    let mut expected: Vec<String> = applied
        .into_iter()
        .filter(|n| !n.ends_with("/keep"))
        .collect();
    expected.reverse();
    assert_eq!(
        expected,
        [
            format!("Service {ns}/web"),
            format!("Role.rbac.authorization.k8s.io {ns}/reader"),
            format!("ConfigMap {ns}/settings"),
            format!("ServiceAccount {ns}/robot"),
            format!("ClusterRole.rbac.authorization.k8s.io {role_name}"),
        ],
        "apply order"
    );
    assert_eq!(deleted, expected, "deletions in revision order");

    // Let them go.
    for (resource, namespace, name) in &objects {
        api(&client, resource, *namespace)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn objects_whose_ownership_labels_were_removed_or_changed_are_not_pruned() {
    let (client, ns) = setup("prune-owner").await;
    let applier = applier(&client, &ns);
    run(
        &applier,
        set(&config_maps_yaml(
            &ns,
            &["unlabelled", "relabelled", "owned", "keep"],
        )),
        &ApplyOptions::default(),
    )
    .await;
    let cms = config_maps(&client, &ns);
    let params = PatchParams {
        field_manager: Some("someone-else".into()),
        ..PatchParams::default()
    };
    cms.patch(
        "unlabelled",
        &params,
        &Patch::Merge(json!({"metadata": {"labels": {OWNER_NAME_LABEL: null}}})),
    )
    .await
    .unwrap();
    cms.patch(
        "relabelled",
        &params,
        &Patch::Merge(json!({"metadata": {"labels": {OWNER_NAME_LABEL: "another-inventory"}}})),
    )
    .await
    .unwrap();

    let pruned = run(
        &applier,
        set(&config_maps_yaml(&ns, &["keep"])),
        &ApplyOptions::default(),
    )
    .await;
    assert_eq!(
        action(&pruned, &format!("{ns}_owned__ConfigMap")),
        ObjectAction::Pruned
    );
    for name in ["unlabelled", "relabelled"] {
        assert_eq!(
            outcome(&pruned, &format!("{ns}_{name}__ConfigMap")),
            (ObjectAction::Skipped, Reason::NoOwnershipLabels),
            "{pruned}"
        );
        let live = cms.get(name).await.unwrap();
        assert!(
            live.metadata.deletion_timestamp.is_none(),
            "{name} was deleted"
        );
    }
    let owned = cms.get_opt("owned").await.unwrap();
    assert!(owned.is_none_or(|o| o.metadata.deletion_timestamp.is_some()));
}

#[tokio::test]
async fn lists_are_read_in_pages() {
    let (client, ns) = setup("paging").await;
    let names = ["a", "b", "c", "d", "e"];
    let applier = Applier::builder(client.clone(), inventory(&ns))
        .page_size(2)
        .build();
    let options = ApplyOptions::default().with_wait(Duration::from_secs(30));
    let first = run(&applier, set(&config_maps_yaml(&ns, &names)), &options).await;
    assert_eq!(first.count(ObjectAction::Created), 5, "{first}");
    let second = run(&applier, set(&config_maps_yaml(&ns, &names)), &options).await;
    // Every object found on some page: nothing to write.
    assert_eq!(second.count(ObjectAction::Unchanged), 5, "{second}");
    assert_eq!(second.request_counts.writes, 0, "{second}");
    // Six ConfigMaps (with the inventory) in pages of two: three lists to read them, three
    // more for the one round of waiting.
    assert_eq!(second.request_counts.lists, 6, "{}", second.request_counts);
}

#[tokio::test]
async fn an_inventory_in_a_namespace_the_set_creates_is_recorded_once_it_exists() {
    let (client, ns) = setup("inv-home").await;
    let home = format!("{ns}-home");
    let applier = applier(&client, &home);
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {home}}}\n---\n{}",
        config_maps_yaml(&home, &["a"])
    );
    let first = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(first.count(ObjectAction::Created), 2, "{first}");
    let inventory = config_maps(&client, &home).get("inventory").await.unwrap();
    let a = config_maps(&client, &home).get("a").await.unwrap();
    // Recorded after the Namespace's group, before the ConfigMap's.
    assert!(
        revision(&inventory) < revision(&a),
        "a was written unrecorded"
    );
    let stored = common::stored_inventory(&client, &home).await;
    assert_eq!(stored.len(), 2);
    let again = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(again.count(ObjectAction::Unchanged), 2, "{again}");
}

#[tokio::test]
async fn twenty_thousand_entries_are_saved_and_read_back() {
    let (client, ns) = setup("inv-large").await;
    let mut inventory = Inventory::default();
    for i in 0..20_000u32 {
        // Names with a part that compresses poorly, as generated names have.
        let name = format!("service-{i:05}-{:08x}", i.wrapping_mul(2_654_435_761));
        let namespace = format!("tenant-{:02}", i % 40);
        inventory.insert(
            ObjectId::new("apps", "Deployment", Some(namespace), name),
            "v1",
        );
    }
    assert!(
        inventory.to_json().len() > 1024 * 1024,
        "the plain form would not fit"
    );
    for store in [
        ConfigMapInventory::new(&ns, "large").unwrap(),
        ConfigMapInventory::secret(&ns, "large").unwrap(),
    ] {
        store
            .save(&client, &inventory, gitops_apply::DEFAULT_FIELD_MANAGER)
            .await
            .unwrap();
        assert_eq!(
            store.load(&client).await.unwrap().as_ref(),
            Some(&inventory)
        );
    }
    // Back to a small set: the plain form again, the compressed key gone.
    let mut small = Inventory::default();
    small.insert(ObjectId::new("", "ConfigMap", Some(ns.as_str()), "a"), "v1");
    let store = ConfigMapInventory::new(&ns, "large").unwrap();
    store
        .save(&client, &small, gitops_apply::DEFAULT_FIELD_MANAGER)
        .await
        .unwrap();
    assert_eq!(store.load(&client).await.unwrap(), Some(small));
    let live = config_maps(&client, &ns).get("large").await.unwrap();
    assert!(live.data.get("binaryData").is_none(), "{:?}", live.data);
    assert_eq!(live.data["data"][gitops_apply::INVENTORY_FORMAT_KEY], "1");
}

#[tokio::test]
async fn an_inventory_of_the_first_format_is_still_read() {
    let (client, ns) = setup("inv-v1").await;
    let id = format!("{ns}_a__ConfigMap");
    // As versions before the format key wrote it: one JSON key, nothing else.
    config_maps(&client, &ns)
        .patch(
            "inventory",
            &PatchParams::apply(gitops_apply::DEFAULT_FIELD_MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "inventory", "namespace": ns},
                "data": {"inventory.json": format!(r#"{{"entries":[{{"id":"{id}","v":"v1"}}]}}"#)},
            })),
        )
        .await
        .unwrap();
    let store = inventory(&ns);
    let loaded = store.load(&client).await.unwrap().unwrap();
    let ids: Vec<String> = loaded.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(ids, std::slice::from_ref(&id));
    // The next run prunes by it and writes the new form.
    let applier = applier(&client, &ns);
    let next = run(
        &applier,
        set(&config_maps_yaml(&ns, &["b"])),
        &ApplyOptions::default(),
    )
    .await;
    assert_eq!(action(&next, &id), ObjectAction::Pruned, "{next}");
    let live = config_maps(&client, &ns).get("inventory").await.unwrap();
    assert_eq!(live.data["data"][gitops_apply::INVENTORY_FORMAT_KEY], "1");
    assert_eq!(store.load(&client).await.unwrap().unwrap().len(), 1);
}

/// Issue #13, defect 7: two inventories with one shared object. The second reports it as owned
/// by the first and writes nothing to it; with `take_ownership` it takes it, and the first then
/// reports it as owned by the second, writing nothing either.
#[tokio::test]
async fn an_object_owned_by_another_inventory_is_left_alone_unless_taken_over() {
    let (client, ns) = setup("owners").await;
    let first = Applier::builder(
        client.clone(),
        ConfigMapInventory::new(&ns, "first").unwrap(),
    )
    .build();
    let second = Applier::builder(
        client.clone(),
        ConfigMapInventory::new(&ns, "second").unwrap(),
    )
    .build();
    let yaml = |own: &str, color: &str| {
        format!(
            "\
apiVersion: v1
kind: ConfigMap
metadata: {{name: shared, namespace: {ns}}}
data: {{color: {color}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {own}, namespace: {ns}}}
data: {{color: {color}}}
"
        )
    };
    let shared_id = format!("{ns}_shared__ConfigMap");
    let shared = |client: kube::Client| {
        let ns = ns.clone();
        async move { config_maps(&client, &ns).get("shared").await.unwrap() }
    };
    let done = run(&first, set(&yaml("mine", "red")), &ApplyOptions::default()).await;
    assert_eq!(action(&done, &shared_id), ObjectAction::Created);
    let version = shared(client.clone()).await.metadata.resource_version;

    // The second inventory: the shared object is left alone, the rest of its set applied.
    let owned = run(
        &second,
        set(&yaml("yours", "blue")),
        &ApplyOptions::default(),
    )
    .await;
    let entry = change(&owned, &shared_id);
    assert_eq!(entry.action, ObjectAction::Skipped, "{owned}");
    let Some(ObjectError::OwnedByOtherInventory { namespace, name }) = &entry.error else {
        panic!("expected owned by another inventory: {owned}");
    };
    assert_eq!((namespace.as_str(), name.as_str()), (ns.as_str(), "first"));
    assert!(entry.to_string().contains("take_ownership"), "{entry}");
    assert_eq!(
        action(&owned, &format!("{ns}_yours__ConfigMap")),
        ObjectAction::Created
    );
    let live = shared(client.clone()).await;
    assert_eq!(live.metadata.resource_version, version, "nothing written");
    assert_eq!(live.data["data"]["color"], "red");
    // A dry run says the same.
    let dry_run = ApplyOptions::default().with_dry_run(true);
    let plan = run(&second, set(&yaml("yours", "blue")), &dry_run).await;
    assert!(
        matches!(
            change(&plan, &shared_id).error,
            Some(ObjectError::OwnedByOtherInventory { .. })
        ),
        "{plan}"
    );

    // Opting in: the second takes it.
    let take = ApplyOptions::default().with_take_ownership(true);
    let taken = run(&second, set(&yaml("yours", "blue")), &take).await;
    assert_eq!(
        action(&taken, &shared_id),
        ObjectAction::Configured,
        "{taken}"
    );
    let live = shared(client.clone()).await;
    assert_eq!(live.data["data"]["color"], "blue");
    assert_eq!(
        live.metadata.labels.as_ref().unwrap()[OWNER_NAME_LABEL],
        "second"
    );

    // The first now finds it owned by the second, and leaves it alone.
    let version = live.metadata.resource_version;
    let back = run(&first, set(&yaml("mine", "red")), &ApplyOptions::default()).await;
    let entry = change(&back, &shared_id);
    assert!(
        matches!(&entry.error, Some(ObjectError::OwnedByOtherInventory { name, .. }) if name == "second"),
        "{back}"
    );
    assert_eq!(
        shared(client.clone()).await.metadata.resource_version,
        version
    );
}
