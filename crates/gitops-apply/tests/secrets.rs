//! The applier against a real control plane never prints a Secret's values: not in the errors
//! the apiserver returns for a rejected Secret (which may echo the value), nor in the change
//! set's `Display` and `Debug`.

use std::time::Duration;

use gitops_apply::{Action, Applier, ApplyError, ApplyOptions, ConfigMapInventory, DesiredSet};
use gitops_core::{Manifest, Origin};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The value every case hides; never to be printed.
const SECRET: &str = "98765432";

fn secret(namespace: &str, name: &str, edit: impl FnOnce(&mut Value)) -> Manifest {
    let mut manifest = Manifest::new(
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace}}),
        Origin::new("secrets.yaml"),
    )
    .unwrap();
    // Past the parser's own checks, as an object built in code (or by a post-renderer) can be.
    edit(manifest.object_mut());
    manifest
}

#[tokio::test]
async fn rejected_secrets_never_print_their_values() {
    let control_plane = gitops_envtest::shared().await.unwrap();
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane
        .create_namespace("secret-rejected")
        .await
        .unwrap();
    let cases = vec![
        secret(&namespace, "bad-base64", |o| {
            o["data"] = json!({"password": format!("not base64 {SECRET}!")});
        }),
        secret(&namespace, "number", |o| {
            o["stringData"] = json!({"password": SECRET.parse::<u64>().unwrap()});
        }),
        secret(&namespace, "docker", |o| {
            o["type"] = json!("kubernetes.io/dockerconfigjson");
            o["stringData"] = json!({".dockerconfigjson": format!("{{not json {SECRET}")});
        }),
        secret(&namespace, "bad-type", |o| {
            o["stringData"] = json!({"password": {"nested": SECRET}});
        }),
        // A key is a name, shown as any name; its value is what stays hidden.
        secret(&namespace, "bad-key", |o| {
            o["stringData"] = json!({"bad key": SECRET});
        }),
    ];
    let inventory = ConfigMapInventory::new(&namespace, "inventory").unwrap();
    let applier = Applier::builder(client.clone(), inventory)
        .settle_timeout(Duration::from_secs(30))
        .build();
    for dry_run in [true, false] {
        for manifest in &cases {
            let options = ApplyOptions {
                dry_run,
                ..ApplyOptions::default()
            };
            let result = applier
                .apply(
                    DesiredSet::new(vec![manifest.clone()]),
                    &options,
                    &CancellationToken::new(),
                )
                .await;
            let shown = match &result {
                Ok(change_set) => format!("{change_set}\n{change_set:?}"),
                Err(error) => {
                    let mut text = format!("{error}\n{error:?}");
                    let mut source = std::error::Error::source(error);
                    while let Some(s) = source {
                        text.push_str(&format!("\n{s}"));
                        source = s.source();
                    }
                    text
                }
            };
            // Refused: in a dry run an entry that failed, else the run's error.
            let refused = match &result {
                Ok(change_set) => dry_run && change_set.count(Action::Failed) == 1,
                Err(error) => !dry_run && matches!(error, ApplyError::Invalid { .. }),
            };
            assert!(refused, "{}: {shown}", manifest.name());
            assert!(
                !shown.contains(SECRET),
                "{} shows the value:\n{shown}",
                manifest.name()
            );
        }
    }
}
