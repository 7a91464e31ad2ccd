//! Field sets: which fields of an object a field manager owns, parsed from the `fieldsV1` format
//! of `metadata.managedFields` or built from a last-applied configuration.
//!
//! The `fieldsV1` format is a JSON tree whose keys name path elements:
//! `f:<name>` a field, `k:<json object>` the item of an associative list with those key values,
//! `v:<json value>` an item of a set, `i:<index>` an item by position, and `.` the node itself.
//! An empty object `{}` owns the element it is under.

use std::borrow::Borrow;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::schema::{FieldSchema, ListKey, ListType, Schema};

/// An error in a `fieldsV1` document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FieldsV1Error {
    /// A node is not a JSON object.
    #[error("fieldsV1 at {}: expected an object, found {found}", gitops_core::escape::Escaped(.path))]
    NotAnObject {
        /// Where, as the keys leading to the node.
        path: String,
        /// A short description of what was found.
        found: &'static str,
    },
    /// A key has none of the known prefixes.
    #[error("fieldsV1 at {}: unknown path element {element:?} (expected f:, k:, v:, i: or .)", gitops_core::escape::Escaped(.path))]
    UnknownElement {
        /// Where.
        path: String,
        /// The key as written.
        element: String,
    },
    /// A `k:` or `v:` element is not valid JSON, or `i:` not an index.
    #[error("fieldsV1 at {}: invalid element {element:?}", gitops_core::escape::Escaped(.path))]
    InvalidElement {
        /// Where.
        path: String,
        /// The key as written.
        element: String,
        /// The JSON error, when there is one.
        #[source]
        source: Option<serde_json::Error>,
    },
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathElement {
    /// A field of an object (or a key of a map).
    Field(String),
    /// An item of an associative list, by the canonical JSON of its key fields.
    Key(String),
    /// An item of a set, by the canonical JSON of its value.
    Value(String),
    /// An item by position.
    Index(usize),
}

/// A tree of owned fields.
///
/// ```
/// use gitops_diff::{FieldSet, PathElement};
///
/// let fields = serde_json::json!({
///     "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
///         "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
///     }}}}
/// });
/// let set = FieldSet::from_fields_v1(&fields)?;
/// let spec = set.child(&PathElement::Field("spec".into())).unwrap();
/// assert!(spec.child(&PathElement::Field("replicas".into())).unwrap().owns_self());
/// assert!(!spec.owns_self());
/// assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1())?, set);
/// # Ok::<(), gitops_diff::FieldsV1Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet {
    owns_self: bool,
    fields: SortedMap<String, FieldSet>,
    keys: SortedMap<String, FieldSet>,
    values: SortedMap<String, FieldSet>,
    indices: SortedMap<usize, FieldSet>,
}

/// A small map as a sorted vector: field sets have few children per node, and lookups by
/// `&str` need no hashing.
#[derive(Debug, Clone, PartialEq)]
struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    fn position<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.position(key).ok().map(|i| &self.entries[i].1)
    }

    fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.position(key).ok().map(|i| &mut self.entries[i].1)
    }

    fn insert(&mut self, key: K, value: V) {
        match self.position(&key) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FieldSet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a `fieldsV1` tree.
    ///
    /// # Errors
    /// A [`FieldsV1Error`] naming the path of the first bad node.
    pub fn from_fields_v1(value: &Value) -> Result<Self, FieldsV1Error> {
        let mut path = String::new();
        parse_node(value, &mut path)
    }

    /// Whether the node itself is owned (a leaf, or a node marked with `.`).
    #[must_use]
    pub fn owns_self(&self) -> bool {
        self.owns_self
    }

    /// The subtree under one path element.
    #[must_use]
    pub fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        match element {
            PathElement::Field(name) => self.fields.get(name),
            PathElement::Key(key) => self.keys.get(key),
            PathElement::Value(value) => self.values.get(value),
            PathElement::Index(index) => self.indices.get(index),
        }
    }

    /// The subtree under a field.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&FieldSet> {
        self.fields.get(name)
    }

    /// The subtree under an associative list item, by the canonical JSON of its keys
    /// (see [`item_key`]).
    #[must_use]
    pub fn key(&self, key: &str) -> Option<&FieldSet> {
        self.keys.get(key)
    }

    /// The subtree under a set item, by its canonical JSON (see [`canonical_json`]).
    #[must_use]
    pub fn value(&self, value: &str) -> Option<&FieldSet> {
        self.values.get(value)
    }

    /// The names of the fields with owned subtrees.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The child elements of this node.
    pub fn children(&self) -> impl Iterator<Item = (PathElement, &FieldSet)> {
        let fields = self
            .fields
            .iter()
            .map(|(k, v)| (PathElement::Field(k.clone()), v));
        let keys = self
            .keys
            .iter()
            .map(|(k, v)| (PathElement::Key(k.clone()), v));
        let values = self
            .values
            .iter()
            .map(|(k, v)| (PathElement::Value(k.clone()), v));
        let indices = self
            .indices
            .iter()
            .map(|(k, v)| (PathElement::Index(*k), v));
        fields.chain(keys).chain(values).chain(indices)
    }

    pub(crate) fn has_children(&self) -> bool {
        !(self.fields.is_empty()
            && self.keys.is_empty()
            && self.values.is_empty()
            && self.indices.is_empty())
    }

    fn insert(&mut self, element: PathElement, child: FieldSet) {
        match element {
            PathElement::Field(name) => self.fields.insert(name, child),
            PathElement::Key(key) => self.keys.insert(key, child),
            PathElement::Value(value) => self.values.insert(value, child),
            PathElement::Index(index) => self.indices.insert(index, child),
        }
    }

    /// Adds everything `other` owns.
    pub fn union(&mut self, other: &FieldSet) {
        self.owns_self |= other.owns_self;
        for (element, child) in other.children() {
            match self.child(&element) {
                Some(_) => {
                    let mine = match &element {
                        PathElement::Field(n) => self.fields.get_mut(n),
                        PathElement::Key(k) => self.keys.get_mut(k),
                        PathElement::Value(v) => self.values.get_mut(v),
                        PathElement::Index(i) => self.indices.get_mut(i),
                    };
                    if let Some(mine) = mine {
                        mine.union(child);
                    }
                }
                None => self.insert(element, child.clone()),
            }
        }
    }

    /// Whether nothing at all is owned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.owns_self && !self.has_children()
    }

    /// Writes the set back as a `fieldsV1` tree.
    #[must_use]
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.owns_self && self.has_children() {
            map.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for (element, child) in self.children() {
            let key = match element {
                PathElement::Field(name) => format!("f:{name}"),
                PathElement::Key(json) => format!("k:{json}"),
                PathElement::Value(json) => format!("v:{json}"),
                PathElement::Index(i) => format!("i:{i}"),
            };
            map.insert(key, child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// The set of fields an applied configuration sets, such as the
    /// `kubectl.kubernetes.io/last-applied-configuration` annotation: every scalar, every atomic
    /// list and every associative item or set value, following `schema` from `root`.
    #[must_use]
    pub fn from_applied_object(schema: &Schema, root: &FieldSchema, object: &Value) -> Self {
        let mut set = FieldSet::new();
        if let Value::Object(map) = object {
            for (name, value) in map {
                if matches!(name.as_str(), "apiVersion" | "kind") || value.is_null() {
                    continue;
                }
                let child = build_applied(schema, schema.field(root, name), value);
                set.insert(PathElement::Field(name.clone()), child);
            }
        }
        set
    }
}

fn build_applied(schema: &Schema, node: &FieldSchema, value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    match (node, value) {
        (
            FieldSchema::List {
                list_type: ListType::Map,
                keys,
                items,
            },
            Value::Array(list),
        ) => {
            set.owns_self = list.is_empty();
            for item in list {
                let mut child = build_applied(schema, items, item);
                child.owns_self = true;
                set.insert(PathElement::Key(item_key(keys, item)), child);
            }
        }
        (
            FieldSchema::List {
                list_type: ListType::Set,
                ..
            },
            Value::Array(list),
        ) => {
            set.owns_self = list.is_empty();
            for item in list {
                let leaf = FieldSet {
                    owns_self: true,
                    ..FieldSet::default()
                };
                set.insert(PathElement::Value(canonical_json(item)), leaf);
            }
        }
        (_, Value::Object(map)) if !matches!(node, FieldSchema::List { .. }) && !map.is_empty() => {
            for (name, child) in map {
                if child.is_null() {
                    continue;
                }
                let built = build_applied(schema, schema.field(node, name), child);
                set.insert(PathElement::Field(name.clone()), built);
            }
        }
        _ => set.owns_self = true,
    }
    set
}

/// The canonical JSON of the key fields of an associative list item, with the schema defaults of
/// absent keys filled in: the form `k:` elements use.
#[must_use]
pub fn item_key(keys: &[ListKey], item: &Value) -> String {
    let mut out = String::from("{");
    let mut first = true;
    let mut sorted: Vec<&ListKey> = keys.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for key in sorted {
        let value = item.get(&key.name).or(key.default.as_ref());
        let Some(value) = value else { continue };
        if !first {
            out.push(',');
        }
        first = false;
        write_canonical(&Value::String(key.name.clone()), &mut out);
        out.push(':');
        write_canonical(value, &mut out);
    }
    out.push('}');
    out
}

/// JSON with object keys sorted and integral floats written as integers, so that equal values
/// have equal text.
#[must_use]
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(&Value::String(k.clone()), out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                #[allow(clippy::cast_possible_truncation)]
                let _ = write!(out, "{}", f as i64);
            }
            _ => {
                let _ = write!(out, "{n}");
            }
        },
        other => out.push_str(&other.to_string()),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_node(value: &Value, path: &mut String) -> Result<FieldSet, FieldsV1Error> {
    let Value::Object(map) = value else {
        return Err(FieldsV1Error::NotAnObject {
            path: display_path(path),
            found: describe(value),
        });
    };
    let mut set = FieldSet {
        owns_self: map.is_empty(),
        ..FieldSet::default()
    };
    for (key, child) in map {
        if key == "." {
            set.owns_self = true;
            continue;
        }
        let invalid =
            |source: Option<serde_json::Error>, path: &str| FieldsV1Error::InvalidElement {
                path: display_path(path),
                element: key.clone(),
                source,
            };
        let element = if let Some(name) = key.strip_prefix("f:") {
            PathElement::Field(name.to_owned())
        } else if let Some(json) = key.strip_prefix("k:") {
            let parsed: Value = serde_json::from_str(json).map_err(|e| invalid(Some(e), path))?;
            if !parsed.is_object() {
                return Err(invalid(None, path));
            }
            PathElement::Key(canonical_json(&parsed))
        } else if let Some(json) = key.strip_prefix("v:") {
            let parsed: Value = serde_json::from_str(json).map_err(|e| invalid(Some(e), path))?;
            PathElement::Value(canonical_json(&parsed))
        } else if let Some(index) = key.strip_prefix("i:") {
            PathElement::Index(index.parse().map_err(|_| invalid(None, path))?)
        } else {
            return Err(FieldsV1Error::UnknownElement {
                path: display_path(path),
                element: key.clone(),
            });
        };
        let before = path.len();
        path.push('/');
        path.push_str(key);
        let parsed = parse_node(child, path)?;
        path.truncate(before);
        set.insert(element, parsed);
    }
    Ok(set)
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_element_kind() {
        let set = FieldSet::from_fields_v1(&json!({
            "f:metadata": {"f:finalizers": {"v:\"example.com/x\"": {}}},
            "f:spec": {
                "f:ports": {"k:{\"protocol\":\"TCP\",\"port\":80}": {".": {}, "f:port": {}}},
                "f:args": {"i:2": {}}
            }
        }))
        .unwrap();
        let spec = set.child(&PathElement::Field("spec".into())).unwrap();
        let ports = spec.child(&PathElement::Field("ports".into())).unwrap();
        // Keys are canonical: sorted, whatever the order in the document.
        let item = ports
            .child(&PathElement::Key(r#"{"port":80,"protocol":"TCP"}"#.into()))
            .unwrap();
        assert!(item.owns_self());
        assert!(
            item.child(&PathElement::Field("port".into()))
                .unwrap()
                .owns_self()
        );
        let args = spec.child(&PathElement::Field("args".into())).unwrap();
        assert!(args.child(&PathElement::Index(2)).is_some());
        let finalizers = set
            .child(&PathElement::Field("metadata".into()))
            .and_then(|m| m.child(&PathElement::Field("finalizers".into())))
            .unwrap();
        assert!(
            finalizers
                .child(&PathElement::Value("\"example.com/x\"".into()))
                .is_some()
        );
    }

    #[test]
    fn errors_name_the_path() {
        let err = FieldSet::from_fields_v1(&json!({"f:spec": {"x:y": {}}})).unwrap_err();
        assert!(err.to_string().contains("/f:spec"), "{err}");
        let err = FieldSet::from_fields_v1(&json!({"f:spec": {"k:{bad": {}}})).unwrap_err();
        assert!(matches!(err, FieldsV1Error::InvalidElement { .. }), "{err}");
        let err = FieldSet::from_fields_v1(&json!({"f:spec": 3})).unwrap_err();
        assert!(err.to_string().contains("a number"), "{err}");
        let err = FieldSet::from_fields_v1(&json!({"i:x": {}})).unwrap_err();
        assert!(matches!(err, FieldsV1Error::InvalidElement { .. }), "{err}");
    }

    #[test]
    fn key_defaults_fill_absent_key_fields() {
        let keys = vec![
            ListKey {
                name: "containerPort".into(),
                default: None,
            },
            ListKey {
                name: "protocol".into(),
                default: Some(json!("TCP")),
            },
        ];
        assert_eq!(
            item_key(&keys, &json!({"containerPort": 8080, "name": "http"})),
            r#"{"containerPort":8080,"protocol":"TCP"}"#
        );
        assert_eq!(
            canonical_json(&json!({"b": 1.0, "a": [true]})),
            r#"{"a":[true],"b":1}"#
        );
    }

    #[test]
    fn applied_object_owns_what_it_sets() {
        let schema = Schema::embedded();
        let root = schema.kind("apps/v1", "Deployment").unwrap();
        let applied = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
        });
        let set = FieldSet::from_applied_object(&schema, root, &applied);
        let fields = set.to_fields_v1();
        assert_eq!(
            fields.pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"web\"}/f:image"),
            Some(&json!({}))
        );
        assert_eq!(
            fields.pointer("/f:metadata/f:labels/f:app"),
            Some(&json!({}))
        );
        assert!(fields.get("f:apiVersion").is_none());
    }
}
