//! No output of a diff shows a Secret's values: not the changes, the JSON, the unified YAML,
//! the display patch and predicted object, nor `Debug`; neither from `data`/`stringData` nor from
//! the plaintext copy `kubectl apply` (client side) keeps in the last-applied annotation.

use base64::Engine as _;
use gitops_diff::{Colour, DiffReport, DiffStatus, Differ, LAST_APPLIED_ANNOTATION, ObjectDiff};
use serde_json::{Value, json};

const OLD: &str = "old-plaintext-4711";
const NEW: &str = "new-plaintext-0815";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Every form of a value a leak could take: plaintext, base64, and JSON-escaped inside the
/// annotation.
fn forbidden() -> Vec<String> {
    vec![OLD.into(), NEW.into(), b64(OLD), b64(NEW)]
}

/// Everything a diff can print, concatenated.
fn every_output(diff: &ObjectDiff, live: Option<&Value>) -> String {
    let mut out = String::new();
    out.push_str(&diff.to_json().unwrap());
    out.push_str(&DiffReport::new(vec![diff.clone()]).to_json().unwrap());
    out.push_str(&diff.unified_yaml(live, Colour::Never).unwrap());
    out.push_str(&diff.unified_yaml(live, Colour::Always).unwrap());
    out.push_str(&format!("{diff:?}"));
    out.push_str(&format!("{:?}", diff.changes));
    out.push_str(&serde_json::to_string(&diff.patch_for_display()).unwrap());
    out.push_str(&format!("{:?}", diff.predicted_for_display(live).unwrap()));
    out
}

fn assert_no_plaintext(text: &str) {
    for secret in forbidden() {
        assert!(!text.contains(&secret), "{secret} leaked in:\n{text}");
    }
}

/// A Secret as the apiserver returns it after `kubectl apply` (client side) of `applied`.
fn applied_by_kubectl(kind: &str, applied: &Value) -> Value {
    let mut live = applied.clone();
    live["kind"] = json!(kind);
    let data: serde_json::Map<String, Value> = applied["stringData"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), json!(b64(v.as_str().unwrap()))))
                .collect()
        })
        .unwrap_or_default();
    live.as_object_mut().unwrap().remove("stringData");
    live["data"] = Value::Object(data);
    live["type"] = json!("Opaque");
    live["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: applied.to_string()});
    live["metadata"]["uid"] = json!("4f0e");
    live["metadata"]["resourceVersion"] = json!("17");
    live["metadata"]["managedFields"] = json!([{
        "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "fieldsV1": {
            "f:data": {".": {}, "f:password": {}},
            "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
            "f:type": {}}}]);
    live
}

fn secret(kind: &str, string_data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": kind,
        "metadata": {"name": "db", "namespace": "shop", "annotations": {}},
        "stringData": string_data})
}

#[test]
fn a_secret_applied_by_kubectl_never_shows_its_values() {
    for kind in ["Secret", "secret"] {
        let live = applied_by_kubectl(kind, &secret(kind, json!({"password": OLD})));
        let mut desired = secret(kind, json!({"password": NEW}));
        desired["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        let differ = Differ::builder("gitops-rs").build();
        let diff = differ.diff(Some(&desired), Some(&live)).unwrap();
        assert_eq!(diff.status, DiffStatus::Update, "{diff:?}");
        let shown = every_output(&diff, Some(&live));
        assert_no_plaintext(&shown);
        // The change still shows, masked.
        assert!(
            shown.contains("*** (before)") && shown.contains("*** (after)"),
            "{shown}"
        );
        assert!(
            diff.changes.iter().any(|c| c.path == "data.password"),
            "{:?}",
            diff.changes
        );
        // Annotations desired no longer sets never bring the last-applied copy along.
        assert!(!shown.contains(LAST_APPLIED_ANNOTATION), "{shown}");
    }
}

#[test]
fn a_desired_secret_carrying_the_annotation_never_shows_it() {
    // A Secret exported with `kubectl get -o yaml` and committed: the annotation is in Git.
    let live = applied_by_kubectl("Secret", &secret("Secret", json!({"password": OLD})));
    let mut desired = live.clone();
    desired["data"] = json!({"password": b64(NEW)});
    desired["metadata"]["annotations"]["note"] = json!("added");
    for (desired, live) in [
        (Some(&desired), Some(&live)),
        (Some(&desired), None),
        (None, Some(&live)),
    ] {
        let diff = Differ::builder("gitops-rs")
            .build()
            .diff(desired, live)
            .unwrap();
        assert_no_plaintext(&every_output(&diff, live));
    }
}

#[test]
fn other_secret_shapes_are_masked() {
    let docker =
        json!({"auths": {"registry.example": {"auth": b64(&format!("u:{OLD}"))}}}).to_string();
    let desired = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pull", "namespace": "shop"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(&docker)}});
    let diff = Differ::builder("gitops-rs")
        .build()
        .diff(Some(&desired), None)
        .unwrap();
    let shown = every_output(&diff, None);
    assert!(!shown.contains(&b64(&docker)), "{shown}");
    assert!(shown.contains(".dockerconfigjson"), "{shown}");
}

#[test]
fn a_string_data_type_error_names_the_key_never_the_value() {
    let desired = secret("Secret", json!({"password": 98_765_432}));
    let differ = Differ::builder("gitops-rs").build();
    let err = differ.diff(Some(&desired), None).unwrap_err();
    let shown = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
    assert!(!shown.contains("98765432"), "{shown}");
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .contains("stringData.password"),
        "{shown}"
    );
}

#[test]
fn keys_with_control_characters_print_escaped() {
    let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "shop"},
        "data": {"a\nERROR forged\u{202e}": "x"}});
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "shop"},
        "data": {"a\nERROR forged\u{202e}": "y"}});
    let diff = Differ::builder("gitops-rs")
        .build()
        .diff(Some(&desired), Some(&live))
        .unwrap();
    let path = &diff.changes[0].path;
    assert!(!path.contains('\n') && !path.contains('\u{202e}'), "{path}");
    let text = diff.unified_yaml(Some(&live), Colour::Never).unwrap();
    assert!(!text.contains('\u{202e}'), "{text}");
    for line in text.lines() {
        assert!(
            line.starts_with([' ', '+', '-', '@']),
            "a line not of the diff: {line:?} in\n{text}"
        );
    }
}

#[test]
fn a_secret_with_control_characters_in_its_name_and_keys_prints_one_line_each() {
    let desired = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db\nERROR forged", "namespace": "shop"},
        "stringData": {"pass\u{1b}[2Jword\u{202e}": NEW}});
    let mut live = desired.clone();
    live.as_object_mut().unwrap().remove("stringData");
    live["data"] = json!({"pass\u{1b}[2Jword\u{202e}": b64(OLD)});
    let differ = Differ::builder("gitops-rs").build();
    for (desired, live) in [(Some(&desired), Some(&live)), (Some(&desired), None)] {
        let diff = differ.diff(desired, live).unwrap();
        let shown = every_output(&diff, live);
        assert_no_plaintext(&shown);
        let text = diff.unified_yaml(live, Colour::Never).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text}"
        );
        assert!(
            !text.lines().any(|line| line.starts_with("ERROR")),
            "{text}"
        );
        for change in &diff.changes {
            assert!(!change.path.contains('\u{1b}'), "{}", change.path);
        }
    }
}
