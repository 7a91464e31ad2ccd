//! The three-way diff over arbitrary objects: desired, live and what was last applied (through
//! the last-applied annotation or a `managedFields` entry of arbitrary shape). It must never
//! panic; the applier's early-exit check (`needs_apply`) must agree with the full diff; an object
//! compared with itself is in sync; and every output (patch, predicted object, unified YAML,
//! JSON) is produced without panicking. The object to apply under ignore rules
//! (`applied_object`, with another manager owning what the fuzzed fieldsV1 names) is made
//! without panicking, keeps the object's identity, and is desired itself on create.
#![no_main]

use arbitrary::Arbitrary;
use gitops_diff::{Differ, IgnoreRule, LAST_APPLIED_ANNOTATION, LastApplied, Selector};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

const MANAGER: &str = "gitops-fuzz";
/// Another field manager, whose fields an ignore rule covers.
const OTHER: &str = "other-fuzz";

/// A JSON value whose keys and strings lean on the words the Kubernetes schema gives meaning to
/// (list-map keys, quantities, int-or-string), so that the fuzzer reaches the list semantics.
#[derive(Arbitrary, Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Word(Word),
    Text(String),
    List(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Word {
    Empty,
    Web,
    Tcp,
    Udp,
    Milli,
    One,
    Gi,
    Eighty,
    Http,
}

#[derive(Arbitrary, Debug)]
enum Key {
    Known(KnownKey),
    Other(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum KnownKey {
    Spec,
    Template,
    Containers,
    InitContainers,
    Name,
    Image,
    Ports,
    ContainerPort,
    Protocol,
    Port,
    TargetPort,
    Env,
    Value,
    Resources,
    Limits,
    Requests,
    Cpu,
    Memory,
    Replicas,
    Selector,
    MatchLabels,
    Labels,
    Annotations,
    Data,
    StringData,
    Volumes,
    Finalizers,
    Tolerations,
    Key,
    Rules,
}

impl KnownKey {
    fn as_str(self) -> &'static str {
        use KnownKey::*;
        match self {
            Spec => "spec",
            Template => "template",
            Containers => "containers",
            InitContainers => "initContainers",
            Name => "name",
            Image => "image",
            Ports => "ports",
            ContainerPort => "containerPort",
            Protocol => "protocol",
            Port => "port",
            TargetPort => "targetPort",
            Env => "env",
            Value => "value",
            Resources => "resources",
            Limits => "limits",
            Requests => "requests",
            Cpu => "cpu",
            Memory => "memory",
            Replicas => "replicas",
            Selector => "selector",
            MatchLabels => "matchLabels",
            Labels => "labels",
            Annotations => "annotations",
            Data => "data",
            StringData => "stringData",
            Volumes => "volumes",
            Finalizers => "finalizers",
            Tolerations => "tolerations",
            Key => "key",
            Rules => "rules",
        }
    }
}

impl Word {
    fn as_str(self) -> &'static str {
        match self {
            Word::Empty => "",
            Word::Web => "web",
            Word::Tcp => "TCP",
            Word::Udp => "UDP",
            Word::Milli => "500m",
            Word::One => "1",
            Word::Gi => "1Gi",
            Word::Eighty => "80",
            Word::Http => "http",
        }
    }
}

/// How deep a generated value may nest; deeper nodes become null.
const MAX_DEPTH: usize = 8;

impl Node {
    fn to_json(&self, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => json!(i),
            Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Node::Word(word) => Value::String(word.as_str().to_owned()),
            Node::Text(text) => Value::String(text.clone()),
            Node::List(items) => Value::Array(items.iter().map(|n| n.to_json(depth + 1)).collect()),
            Node::Map(entries) => {
                let mut map = Map::new();
                for (key, node) in entries {
                    let key = match key {
                        Key::Known(known) => known.as_str().to_owned(),
                        Key::Other(other) => other.clone(),
                    };
                    map.insert(key, node.to_json(depth + 1));
                }
                Value::Object(map)
            }
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Deployment,
    Service,
    ConfigMap,
    Secret,
    Pod,
    Custom,
}

impl Kind {
    fn type_meta(self) -> (&'static str, &'static str) {
        match self {
            Kind::Deployment => ("apps/v1", "Deployment"),
            Kind::Service => ("v1", "Service"),
            Kind::ConfigMap => ("v1", "ConfigMap"),
            Kind::Secret => ("v1", "Secret"),
            Kind::Pod => ("v1", "Pod"),
            Kind::Custom => ("example.com/v1", "Widget"),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Previous {
    /// No record of what was applied.
    None,
    /// The last-applied annotation, holding this object.
    Annotation(Node),
    /// A managedFields entry of our manager whose fieldsV1 is this (often malformed) value.
    ManagedFields(Node),
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: Kind,
    desired: Option<Node>,
    live: Option<Node>,
    previous: Previous,
    last_applied: u8,
}

/// An object of `kind` whose body is `node`'s fields (type meta and name are set here).
fn object(kind: Kind, node: &Node) -> Value {
    let (api_version, kind) = kind.type_meta();
    let mut value = node.to_json(0);
    if !value.is_object() {
        value = json!({"data": value});
    }
    let map = value.as_object_mut().expect("an object");
    map.insert("apiVersion".into(), json!(api_version));
    map.insert("kind".into(), json!(kind));
    let metadata = map.entry("metadata").or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    metadata["name"] = json!("fuzzed");
    value
}

fuzz_target!(|input: Input| {
    let last_applied = match input.last_applied % 4 {
        0 => LastApplied::ManagedFieldsOrAnnotation,
        1 => LastApplied::ManagedFields,
        2 => LastApplied::Annotation,
        _ => LastApplied::Nothing,
    };
    let differ = Differ::builder(MANAGER).last_applied(last_applied).build();
    let desired = input.desired.as_ref().map(|node| object(input.kind, node));
    let mut live = input.live.as_ref().map(|node| object(input.kind, node));
    if let Some(live) = live.as_mut().filter(|_| matches!(input.kind, Kind::Secret)) {
        // The server never returns a Secret's write-only `stringData` (it folds it into `data`);
        // the differ normalises a live object as it comes from the server, and its patch is
        // made for that shape.
        live.as_object_mut()
            .expect("an object")
            .remove("stringData");
    }
    if let Some(live) = live.as_mut() {
        match &input.previous {
            Previous::None => {}
            Previous::Annotation(node) => {
                let applied = object(input.kind, node).to_string();
                let metadata = &mut live["metadata"];
                if !metadata["annotations"].is_object() {
                    metadata["annotations"] = json!({});
                }
                metadata["annotations"][LAST_APPLIED_ANNOTATION] = json!(applied);
            }
            Previous::ManagedFields(node) => {
                live["metadata"]["managedFields"] = json!([{
                    "manager": MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
                    "fieldsV1": node.to_json(0),
                }, {
                    "manager": OTHER, "operation": "Update", "fieldsType": "FieldsV1",
                    "fieldsV1": node.to_json(0),
                }]);
            }
        }
    }

    // An object compared with itself, with no record of what was applied, is in sync.
    if let Some(desired) = desired.as_ref() {
        let itself = differ.diff(Some(desired), Some(desired));
        if let Ok(itself) = itself {
            assert!(
                itself.is_in_sync(),
                "an object differs from itself: {:?}",
                itself.changes
            );
        }
        if let Ok(needs) = differ.needs_apply(desired, Some(desired)) {
            assert!(!needs, "an object needs applying over itself");
        }
    }

    if let Some(desired) = desired.as_ref() {
        let ignoring = differ
            .to_builder()
            .ignore(IgnoreRule::new(Selector::default()).manager(OTHER))
            .ignore(
                IgnoreRule::new(Selector::default())
                    .path("/spec/**/image")
                    .and_then(|rule| rule.path("/metadata/labels/*"))
                    .and_then(|rule| rule.path("/spec/*/[name=web]"))
                    .expect("valid patterns"),
            )
            .build();
        if let Ok(applied) = ignoring.applied_object(desired, live.as_ref()) {
            for pointer in ["/apiVersion", "/kind", "/metadata/name"] {
                assert_eq!(applied.pointer(pointer), desired.pointer(pointer), "{pointer}");
            }
            if live.is_none() {
                assert_eq!(&applied, desired, "a create sends desired whole");
            }
            let _ = ignoring.needs_apply(&applied, live.as_ref());
        }
    }

    let Ok(diff) = differ.diff(desired.as_ref(), live.as_ref()) else {
        return;
    };
    if let Some(desired) = desired.as_ref()
        && let Ok(needs) = differ.needs_apply(desired, live.as_ref())
    {
        assert_eq!(
            needs,
            !diff.is_in_sync(),
            "needs_apply disagrees with the diff: {:?}",
            diff.changes
        );
    }
    let _ = diff.patch();
    // The patch was computed against this live object: it applies to it.
    if let Err(error) = diff.predicted(live.as_ref()) {
        panic!("the diff's patch does not apply to the live object it came from: {error}");
    }
    let _ = diff.unified_yaml(live.as_ref(), gitops_diff::Colour::Never);
    let _ = diff.to_json();
});
