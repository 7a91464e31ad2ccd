//! The merge schema: for every kind, which lists are associative (and by which keys), which are
//! sets, which are atomic, and which fields are quantities or int-or-string.
//!
//! The table is built from the Kubernetes OpenAPI v3 documents (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`,
//! `format: int-or-string`, the `Quantity` type) and from the structural schemas of
//! CustomResourceDefinitions. A compact text form of the table for Kubernetes v1.37.2 is embedded
//! in the crate ([`Schema::embedded`]) so that diffs work offline; [`Schema::add_openapi_v3_document`]
//! and [`crate::fetch_cluster_schema`] add what a cluster serves.
//!
//! Anything the table does not describe is *deduced* the way server-side apply does it: objects
//! are merged field by field and lists are atomic.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

/// The compact schema table generated from the OpenAPI v3 documents of Kubernetes v1.37.2
/// (see `tests/generate_schema.rs`).
const EMBEDDED_TABLE: &str = include_str!("../schema/kubernetes-v1.37.2.txt");

/// The first line of every compact table.
const TABLE_HEADER: &str = "gitops-diff-schema 1";

const QUANTITY_TYPE: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING_TYPE: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const OBJECT_META_TYPE: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const REF_PREFIX: &str = "#/components/schemas/";

/// An error while reading a schema: an OpenAPI document, a CRD, or a compact table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A line of a compact table could not be read.
    #[error("schema table line {line}: {message}")]
    Table {
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An OpenAPI document has no `components.schemas` object.
    #[error("OpenAPI v3 document has no components.schemas object")]
    NoComponents,
    /// A `$ref` names a schema the document does not define.
    #[error("OpenAPI v3 document refers to {reference:?}, which it does not define")]
    DanglingReference {
        /// The reference as written.
        reference: String,
    },
    /// A CustomResourceDefinition lacks a part the schema needs.
    #[error("CustomResourceDefinition {name:?}: {message}")]
    Crd {
        /// The CRD's name.
        name: String,
        /// What is missing or wrong.
        message: String,
    },
}

/// How the items of a list merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListType {
    /// The list is one value: replaced and compared whole.
    Atomic,
    /// A set of scalars: order does not matter, each value is owned on its own.
    Set,
    /// An associative list: items are identified by their key fields.
    Map,
}

/// A key field of an associative list, with the default the server gives it when it is absent.
#[derive(Debug, Clone, PartialEq)]
pub struct ListKey {
    /// The field name, such as `containerPort`.
    pub name: String,
    /// The default value, such as `"TCP"` for `protocol`.
    pub default: Option<Value>,
}

/// The index of an object type in a [`Schema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeId(u32);

/// What the schema knows about one field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSchema {
    /// A plain scalar.
    Scalar,
    /// A resource quantity (`"1000m"` equals `"1"`).
    Quantity,
    /// An int-or-string (`80` equals `"80"`).
    IntOrString,
    /// Nothing is known: objects merge field by field, lists are atomic.
    Deduced,
    /// An object with named fields.
    Object(TypeId),
    /// A map of arbitrary keys to values of one schema.
    Map(Box<FieldSchema>),
    /// A list.
    List {
        /// How items merge.
        list_type: ListType,
        /// The key fields of an associative list (empty otherwise).
        keys: Vec<ListKey>,
        /// The schema of each item.
        items: Box<FieldSchema>,
    },
}

static DEDUCED: FieldSchema = FieldSchema::Deduced;

#[derive(Debug, Clone, Default)]
struct ObjectType {
    name: String,
    fields: HashMap<String, FieldSchema>,
    additional: Option<FieldSchema>,
}

/// A merge schema: object types and the root type of every known kind.
///
/// ```
/// use gitops_diff::{FieldSchema, ListType, Schema};
///
/// let schema = Schema::embedded();
/// let deployment = schema.kind("apps/v1", "Deployment").expect("Deployment is built in");
/// let containers = schema
///     .path(deployment, &["spec", "template", "spec", "containers"]);
/// match containers {
///     FieldSchema::List { list_type, keys, .. } => {
///         assert_eq!(*list_type, ListType::Map);
///         assert_eq!(keys[0].name, "name");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Schema {
    types: Vec<ObjectType>,
    by_name: HashMap<String, TypeId>,
    kinds: HashMap<(String, String), FieldSchema>,
    group_kinds: HashMap<(String, String), FieldSchema>,
}

impl Schema {
    /// An empty schema: every kind is deduced.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The schema of the built-in kinds of Kubernetes v1.37.2, embedded in the crate and parsed
    /// once per process.
    #[must_use]
    pub fn embedded() -> Arc<Schema> {
        static EMBEDDED: OnceLock<Arc<Schema>> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| {
                Arc::new(
                    Schema::from_compact(EMBEDDED_TABLE)
                        .expect("the embedded schema table is generated and tested"),
                )
            })
            .clone()
    }

    /// The root schema of a kind, by `apiVersion` and `kind`; if that version is unknown, any
    /// known version of the same group and kind.
    #[must_use]
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&FieldSchema> {
        self.kinds
            .get(&(api_version.to_owned(), kind.to_owned()))
            .or_else(|| {
                let (group, _) = gitops_core::split_api_version(api_version);
                self.group_kinds.get(&(group.to_owned(), kind.to_owned()))
            })
    }

    /// The kinds this schema knows, as `(apiVersion, kind)`.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kinds.keys().map(|(a, k)| (a.as_str(), k.as_str()))
    }

    /// The schema of a field of an object (or of a map's values); [`FieldSchema::Deduced`] when
    /// unknown.
    #[must_use]
    pub fn field<'s>(&'s self, parent: &'s FieldSchema, name: &str) -> &'s FieldSchema {
        match parent {
            FieldSchema::Object(id) => {
                let ty = &self.types[id.0 as usize];
                ty.fields
                    .get(name)
                    .or(ty.additional.as_ref())
                    .unwrap_or(&DEDUCED)
            }
            FieldSchema::Map(values) => values,
            _ => &DEDUCED,
        }
    }

    /// The schema at a path of field names (list items are stepped into transparently).
    #[must_use]
    pub fn path<'s>(&'s self, root: &'s FieldSchema, path: &[&str]) -> &'s FieldSchema {
        let mut node = root;
        for name in path {
            while let FieldSchema::List { items, .. } = node {
                node = items;
            }
            node = self.field(node, name);
        }
        node
    }

    /// The name of an object type.
    #[must_use]
    pub fn type_name(&self, id: TypeId) -> &str {
        &self.types[id.0 as usize].name
    }

    /// The schema of `metadata` (ObjectMeta), if known.
    pub(crate) fn object_meta(&self) -> Option<FieldSchema> {
        self.by_name
            .get(OBJECT_META_TYPE)
            .map(|id| FieldSchema::Object(*id))
    }

    fn type_id(&mut self, name: &str) -> TypeId {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = TypeId(u32::try_from(self.types.len()).expect("fewer than 4 billion types"));
        self.types.push(ObjectType {
            name: name.to_owned(),
            ..ObjectType::default()
        });
        self.by_name.insert(name.to_owned(), id);
        id
    }

    fn add_kind(&mut self, api_version: String, kind: String, root: FieldSchema) {
        let (group, _) = gitops_core::split_api_version(&api_version);
        self.group_kinds
            .entry((group.to_owned(), kind.clone()))
            .or_insert_with(|| root.clone());
        self.kinds.insert((api_version, kind), root);
    }

    /// Adds every type and kind of one OpenAPI v3 document, such as the apiserver serves under
    /// `/openapi/v3/apis/apps/v1` (or the files of `api/openapi-spec/v3` in the Kubernetes
    /// sources). Types already known are kept.
    ///
    /// # Errors
    /// When the document has no `components.schemas`, or refers to a schema it lacks.
    pub fn add_openapi_v3_document(&mut self, document: &Value) -> Result<(), SchemaError> {
        let components = document
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .ok_or(SchemaError::NoComponents)?;
        let mut converter = OpenApiConverter {
            schema: self,
            components,
            done: HashMap::new(),
        };
        for (name, definition) in components {
            let Some(gvks) = definition
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
            else {
                continue;
            };
            let root = converter.named(name)?;
            for gvk in gvks {
                let group = gvk.get("group").and_then(Value::as_str).unwrap_or("");
                let version = gvk.get("version").and_then(Value::as_str).unwrap_or("");
                let kind = gvk.get("kind").and_then(Value::as_str).unwrap_or("");
                if version.is_empty() || kind.is_empty() {
                    continue;
                }
                let api_version = if group.is_empty() {
                    version.to_owned()
                } else {
                    format!("{group}/{version}")
                };
                converter
                    .schema
                    .add_kind(api_version, kind.to_owned(), root.clone());
            }
        }
        Ok(())
    }

    /// Adds the kinds a CustomResourceDefinition (as JSON) defines, from the structural schema of
    /// each served version. Versions without a schema are deduced.
    ///
    /// # Errors
    /// When the CRD has no group, kind or versions.
    pub fn add_crd(&mut self, crd: &Value) -> Result<(), SchemaError> {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let crd_error = |message: &str| SchemaError::Crd {
            name: name.clone(),
            message: message.to_owned(),
        };
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .ok_or_else(|| crd_error("spec.group is missing"))?;
        let kind = crd
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .ok_or_else(|| crd_error("spec.names.kind is missing"))?;
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .ok_or_else(|| crd_error("spec.versions is missing"))?;
        let meta = self.object_meta();
        for version in versions {
            let Some(version_name) = version.get("name").and_then(Value::as_str) else {
                return Err(crd_error("a version has no name"));
            };
            let type_name = format!("{group}/{version_name}/{kind}");
            let root = match version.pointer("/schema/openAPIV3Schema") {
                Some(structural) => {
                    let root = self.structural(&type_name, structural);
                    if let (FieldSchema::Object(id), Some(meta)) = (&root, &meta) {
                        self.types[id.0 as usize]
                            .fields
                            .insert("metadata".to_owned(), meta.clone());
                    }
                    root
                }
                None => FieldSchema::Deduced,
            };
            self.add_kind(format!("{group}/{version_name}"), kind.to_owned(), root);
        }
        Ok(())
    }

    /// Adds every CustomResourceDefinition among `objects` (for example the rendered desired
    /// set, so that custom resources defined next to their CRDs diff by their schema). Returns
    /// how many were added.
    ///
    /// # Errors
    /// The first CRD that cannot be read.
    pub fn add_crds_from<'v>(
        &mut self,
        objects: impl IntoIterator<Item = &'v Value>,
    ) -> Result<usize, SchemaError> {
        let mut added = 0;
        for object in objects {
            let is_crd = object.get("kind").and_then(Value::as_str)
                == Some("CustomResourceDefinition")
                && object
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.starts_with("apiextensions.k8s.io/"));
            if is_crd {
                self.add_crd(object)?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Converts an inline structural schema (CRD style: no `$ref`).
    fn structural(&mut self, name: &str, node: &Value) -> FieldSchema {
        if node
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true)
        {
            return FieldSchema::IntOrString;
        }
        match node.get("type").and_then(Value::as_str) {
            Some("array") => {
                let items = node.get("items").map_or(FieldSchema::Deduced, |items| {
                    self.structural(&format!("{name}[]"), items)
                });
                list_schema(node, items, |_| None)
            }
            Some("object") | None => {
                let properties = node.get("properties").and_then(Value::as_object);
                let additional = node
                    .get("additionalProperties")
                    .filter(|a| a.is_object())
                    .map(|a| self.structural(&format!("{name}.*"), a));
                match (properties, additional) {
                    (None, Some(values)) => FieldSchema::Map(Box::new(values)),
                    (None, None) => FieldSchema::Deduced,
                    (Some(properties), additional) => {
                        let id = self.type_id(name);
                        let mut fields = HashMap::new();
                        for (field, sub) in properties {
                            let converted = self.structural(&format!("{name}.{field}"), sub);
                            fields.insert(field.clone(), converted);
                        }
                        let ty = &mut self.types[id.0 as usize];
                        ty.fields = fields;
                        ty.additional = additional;
                        FieldSchema::Object(id)
                    }
                }
            }
            Some(_) => FieldSchema::Scalar,
        }
    }

    /// Reads a compact table (the form [`Schema::to_compact`] writes).
    ///
    /// # Errors
    /// A [`SchemaError::Table`] naming the line that cannot be read.
    pub fn from_compact(text: &str) -> Result<Self, SchemaError> {
        let mut schema = Schema::new();
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, TABLE_HEADER)) => {}
            _ => {
                return Err(SchemaError::Table {
                    line: 1,
                    message: format!("expected the header {TABLE_HEADER:?}"),
                });
            }
        }
        let mut current: Option<TypeId> = None;
        for (index, line) in lines {
            let number = index + 1;
            let err = |message: String| SchemaError::Table {
                line: number,
                message,
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("K ") {
                let mut parts = rest.splitn(3, ' ');
                let (Some(api_version), Some(kind), Some(spec)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(err("expected `K <apiVersion> <kind> <schema>`".to_owned()));
                };
                let root = parse_spec(&mut schema, &mut spec.split(' ')).map_err(err)?;
                schema.add_kind(api_version.to_owned(), kind.to_owned(), root);
            } else if let Some(name) = line.strip_prefix("T ") {
                current = Some(schema.type_id(name));
            } else if let Some(rest) = line.strip_prefix(' ') {
                let Some(id) = current else {
                    return Err(err("a field line before any `T` line".to_owned()));
                };
                let Some((field, spec)) = rest.split_once(' ') else {
                    return Err(err("expected ` <field> <schema>`".to_owned()));
                };
                let mut tokens = spec.split(' ');
                let parsed = parse_spec(&mut schema, &mut tokens).map_err(&err)?;
                if let Some(extra) = tokens.next() {
                    return Err(err(format!("unexpected {extra:?} after the schema")));
                }
                let ty = &mut schema.types[id.0 as usize];
                if field == "*" {
                    ty.additional = Some(parsed);
                } else {
                    ty.fields.insert(field.to_owned(), parsed);
                }
            } else {
                return Err(err(format!("unexpected line {line:?}")));
            }
        }
        Ok(schema)
    }

    /// Writes the compact table: only what matters for merging (lists, maps, quantities,
    /// int-or-string and the objects that lead to them), sorted for stable output.
    #[must_use]
    pub fn to_compact(&self) -> String {
        let interesting = self.interesting_types();
        let mut out = String::new();
        out.push_str(TABLE_HEADER);
        out.push('\n');
        let mut kinds: Vec<_> = self.kinds.iter().collect();
        kinds.sort_by(|a, b| a.0.cmp(b.0));
        for ((api_version, kind), root) in kinds {
            let _ = writeln!(
                out,
                "K {api_version} {kind} {}",
                self.spec_text(root, &interesting)
            );
        }
        let mut ids: Vec<usize> = (0..self.types.len()).filter(|i| interesting[*i]).collect();
        ids.sort_by(|a, b| self.types[*a].name.cmp(&self.types[*b].name));
        for id in ids {
            let ty = &self.types[id];
            let _ = writeln!(out, "T {}", ty.name);
            let mut fields: Vec<_> = ty.fields.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            for (name, spec) in fields {
                if self.spec_interesting(spec, &interesting) {
                    let _ = writeln!(out, " {name} {}", self.spec_text(spec, &interesting));
                }
            }
            if let Some(additional) = &ty.additional
                && self.spec_interesting(additional, &interesting)
            {
                let _ = writeln!(out, " * {}", self.spec_text(additional, &interesting));
            }
        }
        out
    }

    /// Which types hold anything beyond deduced behaviour (a fixed point, as types recurse).
    fn interesting_types(&self) -> Vec<bool> {
        let mut interesting = vec![false; self.types.len()];
        loop {
            let mut changed = false;
            for (i, ty) in self.types.iter().enumerate() {
                if interesting[i] {
                    continue;
                }
                let any = ty
                    .fields
                    .values()
                    .chain(ty.additional.iter())
                    .any(|spec| self.spec_interesting(spec, &interesting));
                // ObjectMeta is always kept: CRD roots attach it.
                if any || ty.name == OBJECT_META_TYPE {
                    interesting[i] = true;
                    changed = true;
                }
            }
            if !changed {
                return interesting;
            }
        }
    }

    fn spec_interesting(&self, spec: &FieldSchema, interesting: &[bool]) -> bool {
        match spec {
            FieldSchema::Scalar | FieldSchema::Deduced => false,
            FieldSchema::Quantity | FieldSchema::IntOrString => true,
            FieldSchema::Object(id) => interesting[id.0 as usize],
            // A map is kept even of plain values: a null entry is stored (as `""`, `"0"`)
            // where a null field of an object is not.
            FieldSchema::Map(_) => true,
            FieldSchema::List {
                list_type, items, ..
            } => *list_type != ListType::Atomic || self.spec_interesting(items, interesting),
        }
    }

    fn spec_text(&self, spec: &FieldSchema, interesting: &[bool]) -> String {
        match spec {
            FieldSchema::Scalar => "s".to_owned(),
            FieldSchema::Deduced => "d".to_owned(),
            FieldSchema::Quantity => "q".to_owned(),
            FieldSchema::IntOrString => "i".to_owned(),
            FieldSchema::Object(id) if interesting[id.0 as usize] => {
                format!("@{}", self.types[id.0 as usize].name)
            }
            FieldSchema::Object(_) => "d".to_owned(),
            FieldSchema::Map(values) => format!("m {}", self.spec_text(values, interesting)),
            FieldSchema::List {
                list_type,
                keys,
                items,
            } => {
                let items = self.spec_text(items, interesting);
                match list_type {
                    ListType::Atomic => format!("la {items}"),
                    ListType::Set => format!("ls {items}"),
                    ListType::Map => {
                        let keys: Vec<String> = keys
                            .iter()
                            .map(|k| match &k.default {
                                Some(default) => format!("{}={default}", k.name),
                                None => k.name.clone(),
                            })
                            .collect();
                        format!("lm {} {items}", keys.join(","))
                    }
                }
            }
        }
    }
}

/// Parses one schema in the compact prefix notation.
fn parse_spec<'t>(
    schema: &mut Schema,
    tokens: &mut impl Iterator<Item = &'t str>,
) -> Result<FieldSchema, String> {
    let token = tokens.next().ok_or("a schema is missing")?;
    Ok(match token {
        "s" => FieldSchema::Scalar,
        "d" => FieldSchema::Deduced,
        "q" => FieldSchema::Quantity,
        "i" => FieldSchema::IntOrString,
        "m" => FieldSchema::Map(Box::new(parse_spec(schema, tokens)?)),
        "la" | "ls" => FieldSchema::List {
            list_type: if token == "la" {
                ListType::Atomic
            } else {
                ListType::Set
            },
            keys: Vec::new(),
            items: Box::new(parse_spec(schema, tokens)?),
        },
        "lm" => {
            let keys_text = tokens.next().ok_or("the keys of a map list are missing")?;
            let mut keys = Vec::new();
            for key in keys_text.split(',') {
                keys.push(match key.split_once('=') {
                    Some((name, default)) => ListKey {
                        name: name.to_owned(),
                        default: Some(serde_json::from_str(default).map_err(|e| {
                            format!("the default of key {name:?} is not JSON: {e}")
                        })?),
                    },
                    None => ListKey {
                        name: key.to_owned(),
                        default: None,
                    },
                });
            }
            FieldSchema::List {
                list_type: ListType::Map,
                keys,
                items: Box::new(parse_spec(schema, tokens)?),
            }
        }
        reference if reference.starts_with('@') => {
            FieldSchema::Object(schema.type_id(&reference[1..]))
        }
        other => return Err(format!("unknown schema token {other:?}")),
    })
}

/// The list semantics of an array schema node: `x-kubernetes-list-type` first, then the
/// strategic-merge-patch markers, else atomic.
fn list_schema(
    node: &Value,
    items: FieldSchema,
    key_default: impl Fn(&str) -> Option<Value>,
) -> FieldSchema {
    let list_type = node.get("x-kubernetes-list-type").and_then(Value::as_str);
    let map_keys: Vec<&str> = node
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let merge_key = node
        .get("x-kubernetes-patch-merge-key")
        .and_then(Value::as_str);
    let strategy_merge = node
        .get("x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .is_some_and(|s| s.split(',').any(|p| p == "merge"));
    let keys = |names: &[&str]| -> Vec<ListKey> {
        names
            .iter()
            .map(|name| ListKey {
                name: (*name).to_owned(),
                default: key_default(name),
            })
            .collect()
    };
    let (list_type, keys) = match list_type {
        Some("map") if !map_keys.is_empty() => (ListType::Map, keys(&map_keys)),
        Some("map") => match merge_key {
            Some(key) => (ListType::Map, keys(&[key])),
            None => (ListType::Atomic, Vec::new()),
        },
        Some("set") => (ListType::Set, Vec::new()),
        Some(_) => (ListType::Atomic, Vec::new()),
        None => match merge_key {
            Some(key) if strategy_merge => (ListType::Map, keys(&[key])),
            None if strategy_merge && matches!(items, FieldSchema::Scalar) => {
                (ListType::Set, Vec::new())
            }
            _ => (ListType::Atomic, Vec::new()),
        },
    };
    FieldSchema::List {
        list_type,
        keys,
        items: Box::new(items),
    }
}

/// Converts the named component schemas of one OpenAPI v3 document.
struct OpenApiConverter<'a> {
    schema: &'a mut Schema,
    components: &'a Map<String, Value>,
    done: HashMap<String, FieldSchema>,
}

impl OpenApiConverter<'_> {
    fn named(&mut self, name: &str) -> Result<FieldSchema, SchemaError> {
        if let Some(done) = self.done.get(name) {
            return Ok(done.clone());
        }
        match name {
            QUANTITY_TYPE => return Ok(FieldSchema::Quantity),
            INT_OR_STRING_TYPE => return Ok(FieldSchema::IntOrString),
            _ => {}
        }
        let definition =
            self.components
                .get(name)
                .ok_or_else(|| SchemaError::DanglingReference {
                    reference: name.to_owned(),
                })?;
        if definition.get("format").and_then(Value::as_str) == Some("int-or-string") {
            return Ok(FieldSchema::IntOrString);
        }
        let properties = definition.get("properties").and_then(Value::as_object);
        let Some(properties) = properties else {
            // Not an object with fields: a scalar alias, a free-form object or a map.
            let converted = self.node(definition, name)?;
            self.done.insert(name.to_owned(), converted.clone());
            return Ok(converted);
        };
        let already_known = self.schema.by_name.contains_key(name);
        let id = self.schema.type_id(name);
        let result = FieldSchema::Object(id);
        // Registered before the fields are converted, so that recursive types terminate.
        self.done.insert(name.to_owned(), result.clone());
        if already_known {
            return Ok(result);
        }
        let mut fields = HashMap::new();
        for (field, sub) in properties {
            let converted = self.node(sub, &format!("{name}.{field}"))?;
            fields.insert(field.clone(), converted);
        }
        let additional = match definition.get("additionalProperties") {
            Some(a) if a.is_object() => Some(self.node(a, &format!("{name}.*"))?),
            _ => None,
        };
        let ty = &mut self.schema.types[id.0 as usize];
        ty.fields = fields;
        ty.additional = additional;
        Ok(result)
    }

    fn reference(node: &Value) -> Option<&str> {
        node.get("$ref")
            .or_else(|| node.pointer("/allOf/0/$ref"))
            .and_then(Value::as_str)
    }

    /// Converts a schema node; `name` names the type of an inline object with properties (as
    /// the documents of custom resources have: their structural schema is inline).
    fn node(&mut self, node: &Value, name: &str) -> Result<FieldSchema, SchemaError> {
        if let Some(reference) = Self::reference(node) {
            let name = reference.strip_prefix(REF_PREFIX).ok_or_else(|| {
                SchemaError::DanglingReference {
                    reference: reference.to_owned(),
                }
            })?;
            return self.named(name);
        }
        if node.get("format").and_then(Value::as_str) == Some("int-or-string")
            || node
                .get("x-kubernetes-int-or-string")
                .and_then(Value::as_bool)
                == Some(true)
        {
            return Ok(FieldSchema::IntOrString);
        }
        match node.get("type").and_then(Value::as_str) {
            Some("array") => {
                let items_node = node.get("items");
                let items = match items_node {
                    Some(items) => self.node(items, &format!("{name}[]"))?,
                    None => FieldSchema::Deduced,
                };
                let item_definition = items_node
                    .and_then(Self::reference)
                    .and_then(|r| r.strip_prefix(REF_PREFIX))
                    .and_then(|name| self.components.get(name));
                Ok(list_schema(node, items, |key| {
                    item_definition
                        .and_then(|d| d.pointer(&format!("/properties/{key}/default")))
                        .cloned()
                }))
            }
            Some("object") | None => {
                let additional = match node.get("additionalProperties") {
                    Some(values) if values.is_object() => {
                        Some(self.node(values, &format!("{name}.*"))?)
                    }
                    _ => None,
                };
                let Some(properties) = node.get("properties").and_then(Value::as_object) else {
                    return Ok(additional.map_or(FieldSchema::Deduced, |values| {
                        FieldSchema::Map(Box::new(values))
                    }));
                };
                let id = self.schema.type_id(name);
                let mut fields = HashMap::new();
                for (field, sub) in properties {
                    let converted = self.node(sub, &format!("{name}.{field}"))?;
                    fields.insert(field.clone(), converted);
                }
                let ty = &mut self.schema.types[id.0 as usize];
                ty.fields = fields;
                ty.additional = additional;
                Ok(FieldSchema::Object(id))
            }
            Some(_) => Ok(FieldSchema::Scalar),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list_of<'s>(schema: &'s Schema, kind: (&str, &str), path: &[&str]) -> &'s FieldSchema {
        let root = schema.kind(kind.0, kind.1).expect("kind is known");
        schema.path(root, path)
    }

    #[test]
    fn embedded_table_knows_associative_lists_and_their_key_defaults() {
        let schema = Schema::embedded();
        let ports = list_of(
            &schema,
            ("apps/v1", "Deployment"),
            &["spec", "template", "spec", "containers", "ports"],
        );
        let FieldSchema::List {
            list_type, keys, ..
        } = ports
        else {
            panic!("ports is not a list: {ports:?}")
        };
        assert_eq!(*list_type, ListType::Map);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].name, "containerPort");
        assert_eq!(keys[1].name, "protocol");
        assert_eq!(keys[1].default, Some(json!("TCP")));
        let finalizers = list_of(&schema, ("v1", "ConfigMap"), &["metadata", "finalizers"]);
        assert!(
            matches!(
                finalizers,
                FieldSchema::List {
                    list_type: ListType::Set,
                    ..
                }
            ),
            "{finalizers:?}"
        );
        let requests = list_of(
            &schema,
            ("apps/v1", "StatefulSet"),
            &[
                "spec",
                "template",
                "spec",
                "containers",
                "resources",
                "requests",
                "cpu",
            ],
        );
        assert_eq!(*requests, FieldSchema::Quantity);
        let target_port = list_of(&schema, ("v1", "Service"), &["spec", "ports", "targetPort"]);
        assert_eq!(*target_port, FieldSchema::IntOrString);
        let claims = list_of(
            &schema,
            ("apps/v1", "StatefulSet"),
            &["spec", "volumeClaimTemplates"],
        );
        assert!(
            matches!(
                claims,
                FieldSchema::List {
                    list_type: ListType::Atomic,
                    ..
                }
            ),
            "{claims:?}"
        );
    }

    #[test]
    fn compact_form_round_trips() {
        let schema = Schema::embedded();
        let text = schema.to_compact();
        let again = Schema::from_compact(&text).expect("own output parses");
        assert_eq!(again.to_compact(), text);
    }

    #[test]
    fn bad_table_lines_are_named() {
        let err = Schema::from_compact("gitops-diff-schema 1\nT a\n f zz\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = Schema::from_compact("nope").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    /// The apiserver publishes a custom resource's schema inline (no `$ref` below the root,
    /// but for ObjectMeta): its objects with properties were deduced, so a list-map was
    /// compared as an atomic list.
    #[test]
    fn inline_objects_of_a_cluster_document_are_typed() {
        let document = json!({"components": {"schemas": {
            "test.example.v1.Gadget": {
                "type": "object",
                "x-kubernetes-group-version-kind": [
                    {"group": "example.test", "version": "v1", "kind": "Gadget"}],
                "properties": {
                    "metadata": {"allOf": [{"$ref":
                        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
                    "spec": {"type": "object", "properties": {
                        "parts": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "properties": {
                                "name": {"type": "string"},
                                "limits": {"type": "object",
                                    "additionalProperties": {"x-kubernetes-int-or-string": true}}}}}}}}},
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object",
                "properties": {"name": {"type": "string"}}}}}});
        let mut schema = Schema::new();
        schema
            .add_openapi_v3_document(&document)
            .expect("valid document");
        let parts = list_of(&schema, ("example.test/v1", "Gadget"), &["spec", "parts"]);
        let FieldSchema::List {
            list_type, keys, ..
        } = parts
        else {
            panic!("parts is not a list: {parts:?}")
        };
        assert_eq!(*list_type, ListType::Map);
        assert_eq!(keys[0].name, "name");
        let limit = list_of(
            &schema,
            ("example.test/v1", "Gadget"),
            &["spec", "parts", "limits", "cpu"],
        );
        assert_eq!(*limit, FieldSchema::IntOrString);
    }

    #[test]
    fn crd_structural_schema_gives_list_types() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget", "plural": "widgets"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {
                                "parts": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["id"],
                                    "items": {"type": "object", "properties": {
                                        "id": {"type": "string"},
                                        "size": {"x-kubernetes-int-or-string": true}
                                    }}
                                },
                                "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                         "items": {"type": "string"}}
                            }}
                        }
                    }}
                }]
            }
        });
        let mut schema = (*Schema::embedded()).clone();
        schema.add_crd(&crd).expect("valid CRD");
        let parts = list_of(&schema, ("example.com/v1", "Widget"), &["spec", "parts"]);
        assert!(matches!(
            parts,
            FieldSchema::List {
                list_type: ListType::Map,
                ..
            }
        ));
        let size = list_of(
            &schema,
            ("example.com/v1", "Widget"),
            &["spec", "parts", "size"],
        );
        assert_eq!(*size, FieldSchema::IntOrString);
        let tags = list_of(&schema, ("example.com/v1", "Widget"), &["spec", "tags"]);
        assert!(matches!(
            tags,
            FieldSchema::List {
                list_type: ListType::Set,
                ..
            }
        ));
        let labels = list_of(
            &schema,
            ("example.com/v1", "Widget"),
            &["metadata", "finalizers"],
        );
        assert!(matches!(
            labels,
            FieldSchema::List {
                list_type: ListType::Set,
                ..
            }
        ));
        let err = schema
            .add_crd(&json!({"metadata": {"name": "x"}}))
            .unwrap_err();
        assert!(err.to_string().contains("spec.group"), "{err}");
    }
}
