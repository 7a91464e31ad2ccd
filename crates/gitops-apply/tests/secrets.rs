//! The applier against a real control plane never prints a Secret's values: not in the errors
//! the apiserver returns for a rejected Secret (which may echo the value), nor in the change
//! set's `Display` and `Debug`.

use gitops_apply::{Applier, ApplyError, ApplyOptions, ObjectAction};
use gitops_core::{Manifest, Origin};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod common;
use common::{applier, inventory, run_err, set_of, setup};

/// The value every case hides; never to be printed.
const SECRET: &str = "98765432";

fn secret(namespace: &str, name: &str, edit: impl FnOnce(&mut Value)) -> Option<Manifest> {
    let mut manifest = Manifest::new(
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace}}),
        Origin::new("secrets.yaml"),
    )
    .unwrap();
    // Past the parser's own checks where `Manifest` allows it (a base64 or JSON error is the
    // server's to find); what `Manifest::edit` refuses never reaches the applier, and its error
    // does not show the value either.
    match manifest.edit(edit) {
        Ok(()) => Some(manifest),
        Err(error) => {
            assert!(!format!("{error} {error:?}").contains(SECRET), "{error}");
            None
        }
    }
}

#[tokio::test]
async fn rejected_secrets_never_print_their_values() {
    let (client, namespace) = setup("secret-rejected").await;
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
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let applier = applier(&client, &namespace);
    for dry_run in [true, false] {
        for manifest in &cases {
            let options = ApplyOptions::default().with_dry_run(dry_run);
            let result = applier
                .apply_set(
                    set_of(vec![manifest.clone()]),
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
                Ok(change_set) => dry_run && change_set.count(ObjectAction::Failed) == 1,
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

/// The kind is case-sensitive: the apiserver refuses a body of kind `secret` sent to the
/// Secrets endpoint, and the applier, which finds kinds by discovery, refuses it before any
/// request. Neither error shows the value.
#[tokio::test]
async fn a_secret_spelled_in_lower_case_is_refused_without_showing_its_value() {
    let (client, namespace) = setup("secret-case").await;
    let object = json!({"apiVersion": "v1", "kind": "secret",
        "metadata": {"name": "lower", "namespace": namespace},
        "stringData": {"password": SECRET}});

    let resource = kube::discovery::ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Secret".into(),
        plural: "secrets".into(),
    };
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(client.clone(), &namespace, &resource);
    let sent = api
        .patch(
            "lower",
            &kube::api::PatchParams::apply("gitops-rs").dry_run(),
            &kube::api::Patch::Apply(&object),
        )
        .await;
    assert!(
        sent.is_err(),
        "the apiserver accepted kind secret: {sent:?}"
    );

    let manifest = gitops_core::parse_manifests(&object.to_string(), "lower.json").unwrap();
    assert!(manifest[0].is_secret());
    let applier = Applier::builder(client, inventory(&namespace)).build();
    for dry_run in [true, false] {
        let options = ApplyOptions::default().with_dry_run(dry_run);
        let error = run_err(&applier, set_of(manifest.clone()), &options).await;
        let shown = format!("{error} {error:?} {:?}", std::error::Error::source(&error));
        assert!(matches!(error, ApplyError::Plan(_)), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
    }
}
