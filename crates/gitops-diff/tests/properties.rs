//! Property tests: an object never differs from itself, and applying the produced patch to live
//! gives a state in sync with desired that keeps what other managers set.
//!
//! These check the differ against itself; `control_plane.rs` (`the_differs_verdict_is_the_servers`)
//! checks its verdicts against a real apiserver's server-side dry-run apply.

use gitops_diff::{Differ, FieldSet, Schema};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Arbitrary JSON, for the parts of an object the schema does not describe.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..300).prop_map(|n| json!(n)),
        "[a-c]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn quantity() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("1")),
        Just(json!("1000m")),
        Just(json!("500m")),
        Just(json!(2)),
        Just(json!("1Gi")),
        Just(json!("1073741824")),
    ]
}

fn container(name: String) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["nginx:1.26", "nginx:1.27", "envoy"]),
        prop::collection::btree_map("[A-D]", "[x-z]{0,2}", 0..4),
        prop::collection::btree_set(prop::sample::select(vec![80u16, 443, 8080]), 0..3),
        prop::option::of(quantity()),
    )
        .prop_map(move |(image, env, ports, cpu)| {
            let mut c = Map::new();
            c.insert("name".into(), json!(name));
            c.insert("image".into(), json!(image));
            if !env.is_empty() {
                let env: Vec<Value> = env
                    .into_iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect();
                c.insert("env".into(), Value::Array(env));
            }
            if !ports.is_empty() {
                let ports: Vec<Value> = ports
                    .into_iter()
                    .map(|p| json!({"containerPort": p}))
                    .collect();
                c.insert("ports".into(), Value::Array(ports));
            }
            if let Some(cpu) = cpu {
                c.insert("resources".into(), json!({"requests": {"cpu": cpu}}));
            }
            Value::Object(c)
        })
}

fn deployment() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map("[p-s]", "[a-b]{1,2}", 0..4),
        prop::collection::btree_set(prop::sample::select(vec!["a", "b", "c", "d"]), 0..3),
        prop::option::of(0i64..4),
        prop::collection::btree_set(prop::sample::select(vec!["web", "log", "db"]), 1..3)
            .prop_flat_map(|names| {
                names
                    .into_iter()
                    .map(|n| container(n.to_owned()))
                    .collect::<Vec<_>>()
            }),
        prop::option::of(arbitrary_json()),
    )
        .prop_map(|(labels, finalizers, replicas, containers, extra)| {
            let mut spec = Map::new();
            if let Some(r) = replicas {
                spec.insert("replicas".into(), json!(r));
            }
            spec.insert(
                "template".into(),
                json!({"spec": {"containers": containers}}),
            );
            if let Some(extra) = extra {
                // An unknown field: deduced (objects merge, lists are atomic).
                spec.insert("extra".into(), extra);
            }
            let mut meta = Map::new();
            meta.insert("name".into(), json!("web"));
            if !labels.is_empty() {
                meta.insert("labels".into(), json!(labels));
            }
            if !finalizers.is_empty() {
                let f: Vec<String> = finalizers
                    .iter()
                    .map(|f| format!("example.com/{f}"))
                    .collect();
                meta.insert("finalizers".into(), json!(f));
            }
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})
        })
}

/// The live object with an `Apply` managedFields entry for the fields `applied` sets.
fn with_applied(live: &Value, applied: &Value) -> Value {
    let schema = Schema::embedded();
    let root = schema.kind("apps/v1", "Deployment").unwrap();
    let set = FieldSet::from_applied_object(&schema, root, applied);
    let mut live = live.clone();
    live["metadata"]["managedFields"] = json!([{"manager": "gitops-rs", "operation": "Apply",
        "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": set.to_fields_v1()}]);
    live
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=20000 for a deeper search.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn an_object_is_in_sync_with_itself(object in deployment()) {
        let differ = Differ::builder("gitops-rs").build();
        let diff = differ.diff(Some(&object), Some(&object)).unwrap();
        prop_assert!(diff.is_in_sync(), "{:#?}", diff.changes);
        let owned = with_applied(&object, &object);
        let diff = differ.diff(Some(&object), Some(&owned)).unwrap();
        prop_assert!(diff.is_in_sync(), "{:#?}", diff.changes);
        prop_assert!(!differ.needs_apply(&object, Some(&owned)).unwrap());
    }

    #[test]
    fn the_patch_brings_live_in_sync_and_keeps_foreign_fields(
        desired in deployment(),
        live in deployment(),
        applied in deployment(),
    ) {
        let differ = Differ::builder("gitops-rs").build();
        let live = with_applied(&live, &applied);
        let diff = differ.diff(Some(&desired), Some(&live)).unwrap();
        prop_assert_eq!(
            differ.needs_apply(&desired, Some(&live)).unwrap(),
            !diff.is_in_sync()
        );
        let predicted = diff.predicted(Some(&live)).unwrap().unwrap();
        let again = differ.diff(Some(&desired), Some(&predicted)).unwrap();
        prop_assert!(again.is_in_sync(), "patch {:?} left {:#?}", diff.patch(), again.changes);
        // Labels neither desired nor we (last applied) set stay as they are.
        let labels = |v: &Value| v.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
        let (d, l, a, p) = (labels(&desired), labels(&live), labels(&applied), labels(&predicted));
        for (key, value) in &l {
            if !d.contains_key(key) && !a.contains_key(key) {
                prop_assert_eq!(p.get(key), Some(value), "label {} was lost", key);
            }
            if !d.contains_key(key) && a.contains_key(key) {
                prop_assert!(p.get(key).is_none(), "label {} we applied before was kept", key);
            }
        }
    }
}
