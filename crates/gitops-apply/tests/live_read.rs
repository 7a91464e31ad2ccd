//! How the applier reads the live state of its set, observed from the wire against a real
//! control plane (gitops-envtest): one list per kind and namespace selected by the ownership
//! labels, so that a no-change run in a crowded namespace reads only the set; the objects of the
//! set that list misses (new, unlabelled, another inventory's) read alone while they are few,
//! their kind and namespace listed whole when they are many; and every guarantee of the
//! unfiltered lists kept: adoption, drift of the labels, the ownership checks and the prune.

use futures::StreamExt;
use gitops_apply::{
    Applier, ApplyOptions, ConfigMapInventory, LoggedRequest, OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL, ObjectAction, ObjectError, Reason, RequestCounter, RequestKind,
    counting_client,
};
use http::Method;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

mod common;
use common::cluster::{config_map, config_value};
use common::fixtures::{config_map_yaml, stream};
use common::{action, change, inventory, inventory_ids, outcome, planned, run, set, setup};

/// An applier of `concurrency` reading `page_size` objects per page, whose every request goes
/// through a counting client that keeps a log.
fn observed_applier(
    client: &kube::Client,
    namespace: &str,
    concurrency: usize,
    page_size: u32,
) -> (Applier, RequestCounter) {
    let counter = RequestCounter::with_log();
    let applier = Applier::builder(counting_client(client, &counter), inventory(namespace))
        .concurrency(concurrency)
        .page_size(page_size)
        .build();
    (applier, counter)
}

/// ConfigMaps `prefix-NN` (`count` of them) in `namespace`.
fn config_maps(namespace: &str, prefix: &str, count: usize) -> String {
    stream((0..count).map(|i| {
        config_map_yaml(
            namespace,
            &format!("{prefix}-{i:02}"),
            &format!("n: \"{i}\""),
        )
    }))
}

/// Secrets `prefix-NN` (`count` of them) in `namespace`.
fn secrets(namespace: &str, prefix: &str, count: usize) -> String {
    stream((0..count).map(|i| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {prefix}-{i:02}, namespace: {namespace}}}\nstringData: {{n: \"{i}\"}}\n"
        )
    }))
}

/// Creates `count` ConfigMaps `prefix-NNN` in `namespace` by hand: no ownership labels.
async fn create_unlabelled(client: &kube::Client, namespace: &str, prefix: &str, count: usize) {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let creates: Vec<_> = (0..count)
        .map(|i| {
            let api = api.clone();
            let object: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("{prefix}-{i:03}")},
                "data": {"owner": "someone-else"},
            }))
            .unwrap();
            async move { api.create(&PostParams::default(), &object).await.unwrap() }
        })
        .collect();
    futures::stream::iter(creates)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

/// Removes our ownership labels from ConfigMap `namespace/name` by hand.
async fn remove_labels(client: &kube::Client, namespace: &str, name: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                OWNER_NAME_LABEL: null, OWNER_NAMESPACE_LABEL: null,
            }}})),
        )
        .await
        .unwrap();
}

/// Whether ConfigMap `namespace/name` carries our ownership labels.
async fn labelled(client: &kube::Client, namespace: &str, name: &str) -> bool {
    let object = config_map(client, namespace, name).await.unwrap();
    let labels = object.metadata.labels.unwrap_or_default();
    labels.get(OWNER_NAME_LABEL).map(String::as_str) == Some("inventory")
        && labels.get(OWNER_NAMESPACE_LABEL).map(String::as_str) == Some(namespace)
}

/// The `labelSelector` query parameter of the lists of the test inventory in `namespace`, as
/// sent (percent-encoded).
fn our_selector(namespace: &str) -> String {
    format!(
        "labelSelector={}",
        format!("{OWNER_NAME_LABEL}=inventory,{OWNER_NAMESPACE_LABEL}={namespace}")
            .replace('/', "%2F")
            .replace('=', "%3D")
            .replace(',', "%2C")
    )
}

/// The requests of `requests` to `path` by `kind`.
fn to<'a>(requests: &'a [LoggedRequest], kind: RequestKind, path: &str) -> Vec<&'a LoggedRequest> {
    requests
        .iter()
        .filter(|r| r.kind == kind && r.path == path)
        .collect()
}

/// The paths of the single-object reads of `requests` under `collection` (the inventory left
/// out), sorted.
fn object_reads(requests: &[LoggedRequest], collection: &str) -> Vec<String> {
    let prefix = format!("{collection}/");
    let mut reads: Vec<String> = requests
        .iter()
        .filter(|r| r.kind == RequestKind::Read && r.path.starts_with(&prefix))
        .map(|r| r.path[prefix.len()..].to_owned())
        .filter(|name| name != "inventory")
        .collect();
    reads.sort_unstable();
    reads
}

#[tokio::test]
async fn a_no_change_run_in_a_crowded_namespace_reads_only_the_set() {
    let (client, ns) = setup("crowded").await;
    // The crowd: 120 ConfigMaps made by hand, and 60 ConfigMaps and 40 Secrets of another
    // inventory, beside our 12 ConfigMaps and 6 Secrets.
    create_unlabelled(&client, &ns, "hand", 120).await;
    let crowd = Applier::builder(
        client.clone(),
        ConfigMapInventory::new(&ns, "crowd").unwrap(),
    )
    .build();
    let crowd_yaml = format!(
        "{}---\n{}",
        config_maps(&ns, "crowd", 60),
        secrets(&ns, "crowd", 40)
    );
    run(&crowd, set(&crowd_yaml), &ApplyOptions::default()).await;
    let ours = format!(
        "{}---\n{}",
        config_maps(&ns, "ours", 12),
        secrets(&ns, "ours", 6)
    );
    let (applier, counter) = observed_applier(&client, &ns, 16, 20);
    let first = run(&applier, set(&ours), &ApplyOptions::default()).await;
    assert_eq!(first.count(ObjectAction::Created), 18, "{first}");

    let before = counter.requests().len();
    let second = run(&applier, set(&ours), &ApplyOptions::default()).await;
    assert_eq!(second.count(ObjectAction::Unchanged), 18, "{second}");
    let requests = counter.requests()[before..].to_vec();
    assert!(
        requests.iter().all(|r| r.method == Method::GET),
        "a no-change run wrote: {requests:#?}"
    );
    // One page of each kind: the 12 ConfigMaps and 6 Secrets that are ours, in pages of 20.
    // Unfiltered, the ConfigMaps alone (over 190 of them) would take ten pages.
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    let secrets_path = format!("/api/v1/namespaces/{ns}/secrets");
    for path in [&configmaps, &secrets_path] {
        let lists = to(&requests, RequestKind::List, path);
        assert_eq!(lists.len(), 1, "{path}: {requests:#?}");
        let query = lists[0].query.as_deref().unwrap_or_default();
        assert!(query.contains(&our_selector(&ns)), "{path}?{query}");
    }
    // The inventory, and no other read: nothing of the set was missing from the lists.
    assert_eq!(
        to(
            &requests,
            RequestKind::Read,
            &format!("{configmaps}/inventory")
        )
        .len(),
        1
    );
    assert_eq!(second.request_counts.lists, 2, "{}", second.request_counts);
    assert_eq!(second.request_counts.reads, 1, "{}", second.request_counts);
    assert_eq!(second.request_counts.total, 3, "{}", second.request_counts);
    assert_eq!(second.requests, 3, "{second}");
    assert_eq!(requests.len(), 3, "{requests:#?}");
}

#[tokio::test]
async fn an_existing_object_without_our_labels_is_found_and_adopted() {
    let (client, ns) = setup("adopt").await;
    create_unlabelled(&client, &ns, "hand", 30).await;
    // `hand-000` is also in the set (to adopt); `theirs` belongs to another inventory.
    let other = Applier::builder(
        client.clone(),
        ConfigMapInventory::new(&ns, "other").unwrap(),
    )
    .build();
    run(
        &other,
        set(&config_map_yaml(&ns, "theirs", "k: theirs")),
        &ApplyOptions::default(),
    )
    .await;
    let (applier, counter) = observed_applier(&client, &ns, 4, 500);
    let yaml = stream([
        config_map_yaml(&ns, "new", "k: new"),
        config_map_yaml(&ns, "hand-000", "owner: someone-else, adopted: \"yes\""),
        config_map_yaml(&ns, "theirs", "k: ours"),
    ]);
    let first = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    // Found as it is: adopted (configured, not created), its data and labels ours now.
    assert_eq!(
        outcome(&first, &format!("{ns}_hand-000__ConfigMap")),
        (ObjectAction::Configured, Reason::Drifted),
        "{first}"
    );
    assert_eq!(
        config_value(&client, &ns, "hand-000", "adopted").await,
        "yes"
    );
    assert!(labelled(&client, &ns, "hand-000").await);
    assert_eq!(
        action(&first, &format!("{ns}_new__ConfigMap")),
        ObjectAction::Created
    );
    // Another inventory's object is left alone, as with an unfiltered list.
    let theirs = change(&first, &format!("{ns}_theirs__ConfigMap"));
    assert_eq!(theirs.action, ObjectAction::Skipped, "{first}");
    assert!(
        matches!(
            theirs.error,
            Some(ObjectError::OwnedByOtherInventory { ref name, .. }) if name == "other"
        ),
        "{first}"
    );
    assert_eq!(config_value(&client, &ns, "theirs", "k").await, "theirs");
    // Three objects of the set missing from the selected list (no inventory yet): one list,
    // selected, and a read of each, not the 30 ConfigMaps of the namespace.
    let requests = counter.requests();
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    let lists = to(&requests, RequestKind::List, &configmaps);
    assert_eq!(lists.len(), 1, "{requests:#?}");
    assert!(
        lists[0]
            .query
            .as_deref()
            .unwrap_or_default()
            .contains(&our_selector(&ns)),
        "{:?}",
        lists[0]
    );
    assert_eq!(
        object_reads(&requests, &configmaps),
        ["hand-000", "new", "theirs"]
    );
}

#[tokio::test]
async fn labels_removed_by_hand_are_seen_and_restored() {
    let (client, ns) = setup("unlabel").await;
    // Concurrency 2: up to 4 objects missing from the selected list are read alone.
    let (applier, counter) = observed_applier(&client, &ns, 2, 500);
    let yaml = config_maps(&ns, "cm", 8);
    let first = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(first.count(ObjectAction::Created), 8, "{first}");
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");

    // One object's labels removed: it is read alone, seen to drift, and labelled again.
    remove_labels(&client, &ns, "cm-03").await;
    let before = counter.requests().len();
    let second = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(
        outcome(&second, &format!("{ns}_cm-03__ConfigMap")),
        (ObjectAction::Configured, Reason::Drifted),
        "{second}"
    );
    assert_eq!(second.count(ObjectAction::Unchanged), 7, "{second}");
    assert!(labelled(&client, &ns, "cm-03").await);
    let requests = counter.requests()[before..].to_vec();
    assert_eq!(object_reads(&requests, &configmaps), ["cm-03"]);

    // Six objects' labels removed, more than two rounds of reads: the ConfigMaps are listed
    // again, whole, and all six labelled again.
    let stripped = ["cm-00", "cm-01", "cm-02", "cm-04", "cm-05", "cm-06"];
    for name in stripped {
        remove_labels(&client, &ns, name).await;
    }
    let before = counter.requests().len();
    let third = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(third.count(ObjectAction::Configured), 6, "{third}");
    assert_eq!(third.count(ObjectAction::Unchanged), 2, "{third}");
    for name in stripped {
        assert!(labelled(&client, &ns, name).await, "{name}");
    }
    let requests = counter.requests()[before..].to_vec();
    assert_eq!(object_reads(&requests, &configmaps), Vec::<String>::new());
    let lists: Vec<Option<&str>> = to(&requests, RequestKind::List, &configmaps)
        .iter()
        .map(|r| r.query.as_deref())
        .collect();
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert!(
        lists[0].unwrap_or_default().contains(&our_selector(&ns)),
        "{lists:?}"
    );
    assert!(
        !lists[1].unwrap_or_default().contains("labelSelector"),
        "{lists:?}"
    );

    // Labelled again: the next run reads the selected list only.
    let before = counter.requests().len();
    let fourth = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(fourth.count(ObjectAction::Unchanged), 8, "{fourth}");
    let requests = counter.requests()[before..].to_vec();
    assert_eq!(to(&requests, RequestKind::List, &configmaps).len(), 1);
    assert_eq!(object_reads(&requests, &configmaps), Vec::<String>::new());
}

#[tokio::test]
async fn prune_removes_what_left_the_set_and_spares_what_lost_its_labels() {
    let (client, ns) = setup("prune-sel").await;
    create_unlabelled(&client, &ns, "hand", 20).await;
    let (applier, counter) = observed_applier(&client, &ns, 4, 500);
    let all = config_maps(&ns, "cm", 4);
    run(&applier, set(&all), &ApplyOptions::default()).await;
    remove_labels(&client, &ns, "cm-03").await;

    // cm-02 and cm-03 leave the set; cm-03 has lost its labels. The plan reads cm-02 with the
    // selected list; cm-03, missing from it, alone, to tell an object without our labels from
    // one already gone. (The prune then reads each before deleting it, as before.)
    let kept = config_maps(&ns, "cm", 2);
    let before = counter.requests().len();
    let plan = planned(&applier, &set(&kept), &ApplyOptions::default()).await;
    let requests = counter.requests()[before..].to_vec();
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    assert_eq!(object_reads(&requests, &configmaps), ["cm-03"]);
    let summary = plan.summary();
    assert_eq!(
        (summary.prune, summary.skip, summary.unchanged),
        (1, 1, 2),
        "{plan:#}"
    );
    let pruned = run(&applier, set(&kept), &ApplyOptions::default()).await;
    assert_eq!(
        action(&pruned, &format!("{ns}_cm-02__ConfigMap")),
        ObjectAction::Pruned,
        "{pruned}"
    );
    assert_eq!(
        outcome(&pruned, &format!("{ns}_cm-03__ConfigMap")),
        (ObjectAction::Skipped, Reason::NoOwnershipLabels),
        "{pruned}"
    );
    assert_eq!(pruned.count(ObjectAction::Unchanged), 2, "{pruned}");
    assert!(
        config_map(&client, &ns, "cm-02")
            .await
            .is_none_or(|o| o.metadata.deletion_timestamp.is_some())
    );
    assert!(config_map(&client, &ns, "cm-03").await.is_some());
    let mut ids = inventory_ids(&client, &ns).await;
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            format!("{ns}_cm-00__ConfigMap"),
            format!("{ns}_cm-01__ConfigMap")
        ]
    );
}

#[tokio::test]
async fn a_first_apply_lists_and_a_few_new_objects_are_read_alone() {
    let (client, ns) = setup("first").await;
    create_unlabelled(&client, &ns, "hand", 10).await;
    // The default concurrency (16): up to 32 objects read alone.
    let (applier, counter) = observed_applier(&client, &ns, 16, 500);
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    let secrets_path = format!("/api/v1/namespaces/{ns}/secrets");

    // A first apply of 40 ConfigMaps and 3 Secrets into the namespace: the 40 are too many to
    // read alone (one unfiltered list); the 3 Secrets are read alone beside a selected list.
    let yaml = format!(
        "{}---\n{}",
        config_maps(&ns, "cm", 40),
        secrets(&ns, "s", 3)
    );
    let first = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    assert_eq!(first.count(ObjectAction::Created), 43, "{first}");
    let requests = counter.requests();
    assert_eq!(object_reads(&requests, &configmaps), Vec::<String>::new());
    let lists = to(&requests, RequestKind::List, &configmaps);
    assert_eq!(lists.len(), 1, "{requests:#?}");
    assert!(
        !lists[0]
            .query
            .as_deref()
            .unwrap_or_default()
            .contains("labelSelector"),
        "{:?}",
        lists[0]
    );
    assert_eq!(
        object_reads(&requests, &secrets_path),
        ["s-00", "s-01", "s-02"]
    );

    // Two ConfigMaps join the 40 in the inventory: a selected list and a read of each.
    let before = counter.requests().len();
    let grown = config_maps(&ns, "cm", 42);
    let second = run(&applier, set(&grown), &ApplyOptions::default()).await;
    assert_eq!(second.count(ObjectAction::Created), 2, "{second}");
    assert_eq!(second.count(ObjectAction::Unchanged), 40, "{second}");
    let requests = counter.requests()[before..].to_vec();
    let lists = to(&requests, RequestKind::List, &configmaps);
    assert_eq!(lists.len(), 1, "{requests:#?}");
    assert!(
        lists[0]
            .query
            .as_deref()
            .unwrap_or_default()
            .contains(&our_selector(&ns)),
        "{:?}",
        lists[0]
    );
    assert_eq!(object_reads(&requests, &configmaps), ["cm-40", "cm-41"]);
}
