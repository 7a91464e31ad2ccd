//! How an applier's wait reads the live state of its set, observed from the wire against a
//! real control plane (gitops-envtest): in a namespace crowded with other objects each round
//! lists the set by its ownership labels, not the namespace whole; an object of the set that
//! lost its labels is read alone, and one deleted reads as gone; and the outcomes are those of
//! unfiltered lists: a rollout seen to complete, a failed Job failing the wait at once.

use std::time::Duration;

use futures::StreamExt;
use gitops_apply::{
    Applier, ApplyOptions, Health, HealthChecks, LoggedRequest, OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL, RequestCounter, RequestKind, Status, WaitError, WaitTarget,
    counting_client,
};
use gitops_core::GroupKind;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod common;
use common::cluster::{dynamic, fail_job, write_status};
use common::fixtures::{config_map_yaml, stream, web_deployment};
use common::{inventory, run, set, setup};

/// The page size of the observed applier: the crowd of a namespace would take many pages.
const PAGE_SIZE: u32 = 20;

/// An applier reading `PAGE_SIZE` objects a page and polling every 100 ms, whose every
/// request goes through a counting client that keeps a log.
fn observed_applier(client: &kube::Client, namespace: &str) -> (Applier, RequestCounter) {
    let counter = RequestCounter::with_log();
    let applier = Applier::builder(counting_client(client, &counter), inventory(namespace))
        .page_size(PAGE_SIZE)
        .wait_interval(Duration::from_millis(100))
        .build();
    (applier, counter)
}

/// The crowd of a namespace: `count` ConfigMaps and `count` Secrets `crowd-NNN` made by hand.
async fn crowd(client: &kube::Client, namespace: &str, count: usize) {
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let creates: Vec<_> = (0..count)
        .map(|i| {
            let (config_maps, secrets) = (config_maps.clone(), secrets.clone());
            let name = format!("crowd-{i:03}");
            async move {
                let config_map: ConfigMap =
                    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"i": "x"}}))
                        .unwrap();
                config_maps
                    .create(&PostParams::default(), &config_map)
                    .await
                    .unwrap();
                let secret: Secret = serde_json::from_value(
                    json!({"metadata": {"name": name}, "stringData": {"i": "x"}}),
                )
                .unwrap();
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .unwrap();
            }
        })
        .collect();
    futures::stream::iter(creates)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

/// Deployments `web` and `api` of one replica in `namespace`.
fn deployments(namespace: &str) -> String {
    let web = web_deployment(namespace, 1);
    let api = web.replacen("name: web,", "name: api,", 1);
    stream([web, api])
}

/// Jobs `migrate` and `seed` in `namespace` (no kubelet runs them: the tests write their status).
fn jobs(namespace: &str) -> String {
    stream(["migrate", "seed"].map(|name| {
        format!(
            "apiVersion: batch/v1
kind: Job
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: {name}, image: busybox, command: [\"false\"]}}]
"
        )
    }))
}

/// ConfigMaps `cm-N` (`count` of them) in `namespace`.
fn config_maps(namespace: &str, count: usize) -> String {
    stream(
        (0..count).map(|i| config_map_yaml(namespace, &format!("cm-{i}"), &format!("n: \"{i}\""))),
    )
}

/// Writes the status of Deployment `namespace/name` rolled out, its one replica ready.
async fn rolled_out(client: &kube::Client, namespace: &str, name: &str) {
    write_status::<Deployment>(
        client,
        namespace,
        name,
        json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1}),
    )
    .await;
}

/// Removes our ownership labels from the `K` `namespace/name` by hand.
async fn remove_labels<K>(client: &kube::Client, namespace: &str, name: &str)
where
    K: kube::Resource<DynamicType = ()>,
{
    dynamic::<K>(client, namespace)
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

/// The lists of `requests` whose query does not carry our selector.
fn unselected_lists<'a>(requests: &'a [LoggedRequest], namespace: &str) -> Vec<&'a LoggedRequest> {
    let selector = our_selector(namespace);
    requests
        .iter()
        .filter(|r| r.kind == RequestKind::List)
        .filter(|r| !r.query.as_deref().unwrap_or_default().contains(&selector))
        .collect()
}

/// The paths of the single-object reads of `requests`.
fn reads(requests: &[LoggedRequest]) -> Vec<&str> {
    requests
        .iter()
        .filter(|r| r.kind == RequestKind::Read)
        .map(|r| r.path.as_str())
        .collect()
}

/// `applier.wait` on `targets` with a token never cancelled.
async fn wait(
    applier: &Applier,
    targets: &[WaitTarget],
    timeout: Duration,
) -> Result<(), WaitError> {
    applier
        .wait(targets, timeout, &CancellationToken::new(), |_| {})
        .await
}

#[tokio::test]
async fn a_wait_in_a_crowded_namespace_lists_only_the_set() {
    let (client, ns) = setup("wait-crowd").await;
    crowd(&client, &ns, 120).await;
    let (applier, counter) = observed_applier(&client, &ns);
    let yaml = stream([deployments(&ns), jobs(&ns), config_maps(&ns, 6)]);
    let done = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    let all = done.wait_targets();
    assert_eq!(all.len(), 10, "{done}");
    let targets: Vec<WaitTarget> = all.iter().filter(|t| t.id.kind != "Job").cloned().collect();

    // The Deployments become ready while the wait polls (the "controller" is a task here).
    let before = counter.requests().len();
    let controller = {
        let (client, ns) = (client.clone(), ns.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            rolled_out(&client, &ns, "web").await;
            rolled_out(&client, &ns, "api").await;
        })
    };
    wait(&applier, &targets, Duration::from_secs(30))
        .await
        .unwrap();
    controller.await.unwrap();
    let requests = counter.requests()[before..].to_vec();
    // Every round lists the set by its labels: one page of each kind, not the 120 ConfigMaps
    // (six pages) of the crowd; and reads nothing alone, every object of the set carrying them.
    assert!(
        requests.iter().any(|r| r.kind == RequestKind::List),
        "{requests:#?}"
    );
    assert_eq!(
        unselected_lists(&requests, &ns),
        Vec::<&LoggedRequest>::new()
    );
    assert_eq!(reads(&requests), Vec::<&str>::new());

    // A failed Job stops the wait at once, read by the selected list of the Jobs.
    fail_job(&client, &ns, "migrate").await;
    let before = counter.requests().len();
    let err = wait(&applier, &all, Duration::from_secs(60))
        .await
        .unwrap_err();
    let WaitError::Failed { id, health } = &err else {
        panic!("{err}")
    };
    assert_eq!((id.kind.as_str(), id.name.as_str()), ("Job", "migrate"));
    assert!(health.message.contains("backoff limit"), "{err}");
    let requests = counter.requests()[before..].to_vec();
    let jobs_path = format!("/apis/batch/v1/namespaces/{ns}/jobs");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.kind == RequestKind::List && r.path == jobs_path)
            .count(),
        1,
        "{requests:#?}"
    );
    assert_eq!(
        unselected_lists(&requests, &ns),
        Vec::<&LoggedRequest>::new()
    );
    assert_eq!(reads(&requests), Vec::<&str>::new());
}

#[tokio::test]
async fn what_lost_its_labels_is_read_alone_and_what_was_deleted_reads_as_gone() {
    let (client, ns) = setup("wait-unlabel").await;
    crowd(&client, &ns, 60).await;
    let (applier, counter) = observed_applier(&client, &ns);
    let yaml = stream([deployments(&ns), config_maps(&ns, 4)]);
    let done = run(&applier, set(&yaml), &ApplyOptions::default()).await;
    let targets = done.wait_targets();
    assert_eq!(targets.len(), 6, "{done}");

    // By hand: `web` and `cm-1` lose their labels, `cm-2` is deleted.
    remove_labels::<Deployment>(&client, &ns, "web").await;
    remove_labels::<ConfigMap>(&client, &ns, "cm-1").await;
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .delete("cm-2", &DeleteParams::default())
        .await
        .unwrap();
    rolled_out(&client, &ns, "api").await;

    // `web`, read alone, is seen to roll out.
    let without_cm_2: Vec<WaitTarget> = targets
        .iter()
        .filter(|t| t.id.name != "cm-2")
        .cloned()
        .collect();
    let before = counter.requests().len();
    let controller = {
        let (client, ns) = (client.clone(), ns.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            rolled_out(&client, &ns, "web").await;
        })
    };
    wait(&applier, &without_cm_2, Duration::from_secs(30))
        .await
        .unwrap();
    controller.await.unwrap();
    let requests = counter.requests()[before..].to_vec();
    assert_eq!(
        unselected_lists(&requests, &ns),
        Vec::<&LoggedRequest>::new()
    );
    let web = format!("/apis/apps/v1/namespaces/{ns}/deployments/web");
    let cm_1 = format!("/api/v1/namespaces/{ns}/configmaps/cm-1");
    let read = reads(&requests);
    assert!(read.contains(&web.as_str()), "{read:?}");
    // `cm-1` is Current at the first round: read once.
    assert_eq!(read.iter().filter(|p| **p == cm_1).count(), 1, "{read:?}");
    assert!(read.iter().all(|p| *p == web || *p == cm_1), "{read:?}");

    // `cm-2` is gone: the wait times out on it, not found, every other object Current.
    let before = counter.requests().len();
    let err = wait(&applier, &targets, Duration::from_millis(500))
        .await
        .unwrap_err();
    let WaitError::Timeout { pending, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(pending.len(), 1, "{err}");
    assert_eq!(pending[0].0.name, "cm-2", "{err}");
    assert_eq!(pending[0].1.status, Status::NotFound, "{err}");
    let requests = counter.requests()[before..].to_vec();
    assert_eq!(
        unselected_lists(&requests, &ns),
        Vec::<&LoggedRequest>::new()
    );
    let cm_2 = format!("/api/v1/namespaces/{ns}/configmaps/cm-2");
    assert!(reads(&requests).contains(&cm_2.as_str()), "{requests:#?}");
}

#[tokio::test]
async fn many_objects_without_labels_are_listed_whole_and_the_next_rounds_list_whole_at_once() {
    let (client, ns) = setup("wait-many").await;
    crowd(&client, &ns, 40).await;
    // ConfigMaps are Current once marked ready, as a controller would mark them.
    let mut checks = HealthChecks::default();
    checks.register(
        GroupKind::new("", "ConfigMap"),
        |object: &serde_json::Value| {
            if object["data"]["ready"] == "yes" {
                Health {
                    status: Status::Current,
                    message: "ready".into(),
                }
            } else {
                Health {
                    status: Status::InProgress,
                    message: "not ready".into(),
                }
            }
        },
    );
    let counter = RequestCounter::with_log();
    let applier = Applier::builder(counting_client(&client, &counter), inventory(&ns))
        .page_size(PAGE_SIZE)
        .wait_interval(Duration::from_millis(100))
        .health_checks(checks)
        .build();
    // More objects without our labels than two rounds of reads alone (the wait reads 8 at
    // once): 20.
    let done = run(
        &applier,
        set(&config_maps(&ns, 20)),
        &ApplyOptions::default(),
    )
    .await;
    let targets = done.wait_targets();
    assert_eq!(targets.len(), 20, "{done}");
    for i in 0..20 {
        remove_labels::<ConfigMap>(&client, &ns, &format!("cm-{i}")).await;
    }

    // Marked ready once the first round has seen them not ready: at least two rounds.
    let before = counter.requests().len();
    let mut marker = None;
    applier
        .wait(
            &targets,
            Duration::from_secs(30),
            &CancellationToken::new(),
            |_| {
                if marker.is_none() {
                    let (client, ns) = (client.clone(), ns.clone());
                    marker = Some(tokio::spawn(async move {
                        let api = Api::<ConfigMap>::namespaced(client, &ns);
                        for i in 0..20 {
                            api.patch(
                                &format!("cm-{i}"),
                                &PatchParams::default(),
                                &Patch::Merge(json!({"data": {"ready": "yes"}})),
                            )
                            .await
                            .unwrap();
                        }
                    }));
                }
            },
        )
        .await
        .unwrap();
    marker.expect("a first round").await.unwrap();
    let requests = counter.requests()[before..].to_vec();
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    let first_pages: Vec<&LoggedRequest> = requests
        .iter()
        .filter(|r| r.kind == RequestKind::List && r.path == configmaps)
        .filter(|r| !r.query.as_deref().unwrap_or_default().contains("continue="))
        .collect();
    // The first round lists by our labels, finds none, and lists the ConfigMaps whole; the
    // next ones, expecting them without labels, list whole at once.
    let selected = first_pages
        .iter()
        .filter(|r| {
            r.query
                .as_deref()
                .unwrap_or_default()
                .contains(&our_selector(&ns))
        })
        .count();
    assert_eq!(selected, 1, "{first_pages:#?}");
    assert!(first_pages.len() >= 3, "{first_pages:#?}");
    assert_eq!(reads(&requests), Vec::<&str>::new());
}
