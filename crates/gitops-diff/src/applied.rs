//! Ignore rules bind apply: the object to send with server-side apply, with every field an
//! ignore rule covers left out (see [`Differ::applied_object`]).

use serde_json::{Map, Value};

use crate::diff::{DiffError, Differ, object_id};
use crate::fieldpath::{FieldSet, canonical_json, item_key};
use crate::ignore::{PathPattern, PathStep};
use crate::normalise::Side;
use crate::schema::{FieldSchema, ListType, Schema};

/// The sets of owned fields at one node of the walk.
#[derive(Clone, Copy, Default)]
struct Owners<'s> {
    /// Our manager's `Apply` entry.
    ours: Option<&'s FieldSet>,
    /// Every other entry, united.
    others: Option<&'s FieldSet>,
    /// The entries of the managers the rules ignore, united.
    ignored: Option<&'s FieldSet>,
}

impl<'s> Owners<'s> {
    fn step(self, get: impl Fn(&'s FieldSet) -> Option<&'s FieldSet>) -> Self {
        Owners {
            ours: self.ours.and_then(&get),
            others: self.others.and_then(&get),
            ignored: self.ignored.and_then(&get),
        }
    }
}

/// One step of the path walked, kept owned for the pattern match.
struct Step {
    text: String,
    item: Option<Value>,
}

struct Binder<'a> {
    schema: &'a Schema,
    patterns: Vec<&'a PathPattern>,
    path: Vec<Step>,
}

impl Binder<'_> {
    /// Whether the field at the current path is covered by a rule.
    fn covered(&self, owners: Owners<'_>) -> bool {
        if owners.ignored.is_some_and(FieldSet::owns_self) {
            return true;
        }
        if self.patterns.is_empty() {
            return false;
        }
        let steps: Vec<PathStep<'_>> = self
            .path
            .iter()
            .map(|step| PathStep {
                text: &step.text,
                item: step.item.as_ref(),
            })
            .collect();
        self.patterns.iter().any(|p| p.matches_items(&steps))
    }

    /// Whether the current path is part of the object's identity (never left out).
    fn protected(&self) -> bool {
        let names: Vec<&str> = self.path.iter().map(|s| s.text.as_str()).collect();
        matches!(
            names.as_slice(),
            ["apiVersion" | "kind" | "metadata"] | ["metadata", "name" | "namespace"]
        )
    }

    /// Rewrites the fields of a desired object; returns whether anything was left out.
    fn object(
        &mut self,
        node: &FieldSchema,
        desired: &mut Map<String, Value>,
        live: Option<&Map<String, Value>>,
        owners: Owners<'_>,
    ) -> bool {
        let names: Vec<String> = desired.keys().cloned().collect();
        let mut changed = false;
        for name in names {
            let child_schema = self.schema.field(node, &name);
            let child_owners = owners.step(|set| set.field(&name));
            let live_value = live.and_then(|l| l.get(&name)).filter(|v| !v.is_null());
            self.path.push(Step {
                text: name.clone(),
                item: None,
            });
            let protected = self.protected();
            if !protected && self.covered(child_owners) {
                match live_value.and_then(|lv| sole(self.schema, child_schema, lv, child_owners)) {
                    Some(kept) => {
                        desired.insert(name.clone(), kept);
                    }
                    None => {
                        desired.remove(&name);
                    }
                }
                changed = true;
            } else if let Some(value) = desired.get_mut(&name) {
                let was_empty = is_empty_container(value);
                if self.value(child_schema, value, live_value, child_owners) {
                    changed = true;
                    if !was_empty && is_empty_container(value) && !protected {
                        // Everything under it was left out: an empty map would still be
                        // applied, and owned.
                        desired.remove(&name);
                    }
                }
            }
            self.path.pop();
        }
        changed
    }

    /// Rewrites a value that is not covered itself; returns whether anything under it was left
    /// out.
    fn value(
        &mut self,
        node: &FieldSchema,
        desired: &mut Value,
        live: Option<&Value>,
        owners: Owners<'_>,
    ) -> bool {
        match (node, desired) {
            (
                FieldSchema::List {
                    list_type: list_type @ (ListType::Map | ListType::Set),
                    keys,
                    items,
                },
                Value::Array(desired),
            ) => {
                let live_items = live.and_then(Value::as_array);
                let mut remove = Vec::new();
                let mut changed = false;
                for (index, item) in desired.iter_mut().enumerate() {
                    let (live_index, item_owners) = if *list_type == ListType::Map {
                        let key = item_key(keys, item);
                        let live_index = live_items
                            .and_then(|l| l.iter().position(|li| item_key(keys, li) == key));
                        (live_index, owners.step(|set| set.key(&key)))
                    } else {
                        let value = canonical_json(item);
                        let live_index = live_items
                            .and_then(|l| l.iter().position(|li| canonical_json(li) == value));
                        (live_index, owners.step(|set| set.value(&value)))
                    };
                    let live_item = live_index.and_then(|i| live_items.and_then(|l| l.get(i)));
                    self.path.push(Step {
                        text: live_index.unwrap_or(index).to_string(),
                        // Only keyed path segments (`[name=web]`) look at the item.
                        item: (!self.patterns.is_empty()).then(|| item.clone()),
                    });
                    if self.covered(item_owners) {
                        match live_item.and_then(|li| {
                            sole(self.schema, items, li, item_owners).map(|kept| (li, kept))
                        }) {
                            Some((li, mut kept)) => {
                                with_keys(&mut kept, li, keys);
                                *item = kept;
                            }
                            None => remove.push(index),
                        }
                        changed = true;
                    } else {
                        changed |= self.value(items, item, live_item, item_owners);
                    }
                    self.path.pop();
                }
                for index in remove.into_iter().rev() {
                    desired.remove(index);
                }
                changed
            }
            // Atomic lists are one value: only a rule covering the whole list applies.
            (_, Value::Array(_)) => false,
            (_, Value::Object(map)) => {
                self.object(node, map, live.and_then(Value::as_object), owners)
            }
            _ => false,
        }
    }
}

/// Adds the key fields of a list item (from live) to the part of it that is kept, so that
/// server-side apply can tell which item it is.
fn with_keys(kept: &mut Value, live_item: &Value, keys: &[crate::schema::ListKey]) {
    if let (Value::Object(kept), Value::Object(live)) = (kept, live_item) {
        for key in keys {
            if let Some(value) = live.get(&key.name) {
                kept.entry(key.name.clone())
                    .or_insert_with(|| value.clone());
            }
        }
    }
}

/// Whether the value is a map or list with something in it.
fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// The part of a live value that our manager owns and no other manager does: leaving it out of
/// an apply would delete it. `None` when there is no such part.
fn sole(schema: &Schema, node: &FieldSchema, live: &Value, owners: Owners<'_>) -> Option<Value> {
    let ours = owners.ours?;
    if ours.owns_self() && !ours.has_children() {
        return (!owners.others.is_some_and(FieldSet::owns_self)).then(|| live.clone());
    }
    match (node, live) {
        (
            FieldSchema::List {
                list_type: ListType::Map,
                keys,
                items,
            },
            Value::Array(live_items),
        ) => {
            let kept: Vec<Value> = live_items
                .iter()
                .filter_map(|item| {
                    let key = item_key(keys, item);
                    let mut kept = sole(schema, items, item, owners.step(|set| set.key(&key)))?;
                    with_keys(&mut kept, item, keys);
                    Some(kept)
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        (
            FieldSchema::List {
                list_type: ListType::Set,
                ..
            },
            Value::Array(live_items),
        ) => {
            let kept: Vec<Value> = live_items
                .iter()
                .filter(|item| {
                    let value = canonical_json(item);
                    let here = owners.step(|set| set.value(&value));
                    here.ours.is_some() && !here.others.is_some_and(FieldSet::owns_self)
                })
                .cloned()
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        (_, Value::Object(map)) => {
            let mut kept = Map::new();
            for (name, value) in map {
                if let Some(part) = sole(
                    schema,
                    schema.field(node, name),
                    value,
                    owners.step(|set| set.field(name)),
                ) {
                    kept.insert(name.clone(), part);
                }
            }
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        _ => None,
    }
}

impl Differ {
    /// The object to send with server-side apply: `desired` with every field an ignore rule
    /// covers left out, so that it is neither reported as drift nor written, and its owner keeps
    /// it. Ignore rules thus bind apply, not only the diff.
    ///
    /// A field is covered when a rule selecting the object names it by a path pattern, or when
    /// a field manager the rule names owns it in the live object's `metadata.managedFields`.
    /// For a covered field:
    ///
    /// - when live has it and our field manager's `Apply` entry is its only owner, the live
    ///   value is kept (leaving it out would make server-side apply delete it);
    /// - otherwise it is left out (another manager keeps it, or nobody owns it).
    ///
    /// When there is no live object (a create), `desired` is returned whole: there is no owner
    /// to leave the field to. The identity (`apiVersion`, `kind`, `metadata.name` and
    /// `metadata.namespace`) is never left out, and a map or list emptied by leaving out its
    /// contents is left out too (an empty map would still be applied). Lists that the schema
    /// says are atomic are covered only as a whole.
    ///
    /// ```
    /// use gitops_diff::{Differ, IgnoreRule, Selector};
    /// use serde_json::json;
    ///
    /// let differ = Differ::builder("gitops-rs")
    ///     .ignore(IgnoreRule::new(Selector::default().kind("Deployment")).manager("hpa"))
    ///     .build();
    /// let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
    ///     "metadata": {"name": "web"}, "spec": {"replicas": 2, "paused": true}});
    /// let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
    ///     "metadata": {"name": "web", "managedFields": [
    ///         {"manager": "hpa", "operation": "Update", "subresource": "scale",
    ///          "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
    ///     "spec": {"replicas": 5}});
    /// // The HPA owns the replicas: they are not sent, so the HPA keeps them.
    /// let applied = differ.applied_object(&desired, Some(&live))?;
    /// assert_eq!(applied["spec"], json!({"paused": true}));
    /// // On create, the object is sent whole.
    /// assert_eq!(differ.applied_object(&desired, None)?, desired);
    /// # Ok::<(), gitops_diff::DiffError>(())
    /// ```
    ///
    /// # Errors
    /// When `desired` or `live` is not a Kubernetes object, or when the live object's
    /// managedFields cannot be read.
    pub fn applied_object(
        &self,
        desired: &Value,
        live: Option<&Value>,
    ) -> Result<Value, DiffError> {
        let id = object_id(desired, Side::Desired)?;
        let Some(live) = live else {
            return Ok(desired.clone());
        };
        object_id(live, Side::Live)?;
        let mut patterns: Vec<&PathPattern> = Vec::new();
        let mut managers: Vec<&str> = Vec::new();
        for rule in &self.ignore_rules {
            if rule.selector.matches(desired) {
                patterns.extend(rule.paths.iter());
                managers.extend(rule.managers.iter().map(String::as_str));
            }
        }
        if patterns.is_empty() && managers.is_empty() {
            return Ok(desired.clone());
        }
        let ours = self.applied_set(live, &id)?;
        let others = Self::managed_set(live, &id, |entry| !self.is_our_apply_entry(entry))?;
        let ignored = if managers.is_empty() {
            None
        } else {
            Self::managed_set(live, &id, |entry| {
                entry
                    .get("manager")
                    .and_then(Value::as_str)
                    .is_some_and(|m| managers.contains(&m))
            })?
        };
        let api_version = desired
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let schema = &*self.schema;
        let root = schema
            .kind(api_version, &id.kind)
            .unwrap_or(&FieldSchema::Deduced);
        let meta_schema = schema.object_meta().unwrap_or(FieldSchema::Deduced);
        let root_with_meta = RootSchema {
            root,
            meta: &meta_schema,
        };
        let mut binder = Binder {
            schema,
            patterns,
            path: Vec::new(),
        };
        let owners = Owners {
            ours: ours.as_ref(),
            others: others.as_ref(),
            ignored: ignored.as_ref(),
        };
        let mut applied = desired.clone();
        if let Value::Object(map) = &mut applied {
            root_with_meta.bind(&mut binder, map, live.as_object(), owners);
        }
        Ok(applied)
    }
}

/// The root of an object and the schema of its metadata (which the kind's schema may lack).
struct RootSchema<'s> {
    root: &'s FieldSchema,
    meta: &'s FieldSchema,
}

impl RootSchema<'_> {
    fn bind(
        &self,
        binder: &mut Binder<'_>,
        desired: &mut Map<String, Value>,
        live: Option<&Map<String, Value>>,
        owners: Owners<'_>,
    ) {
        // Metadata first, with its own schema; then the rest of the object.
        if let Some(Value::Object(metadata)) = desired.get_mut("metadata") {
            binder.path.push(Step {
                text: "metadata".to_owned(),
                item: None,
            });
            binder.object(
                self.meta,
                metadata,
                live.and_then(|l| l.get("metadata"))
                    .and_then(Value::as_object),
                owners.step(|set| set.field("metadata")),
            );
            binder.path.pop();
        }
        let metadata = desired.remove("metadata");
        binder.object(self.root, desired, live, owners);
        if let Some(metadata) = metadata {
            desired.insert("metadata".to_owned(), metadata);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::{Differ, IgnoreRule, Selector};

    fn deployment(replicas: Value, managed: Value) -> Value {
        let mut metadata = json!({"name": "web", "namespace": "shop"});
        if !managed.is_null() {
            metadata["managedFields"] = managed;
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
            "spec": {"replicas": replicas, "template": {"metadata": {"annotations": {"a": "1"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"},
                                        {"name": "side", "image": "busybox"}]}}}})
    }

    fn entry(manager: &str, operation: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": operation, "fieldsType": "FieldsV1",
               "fieldsV1": fields})
    }

    fn replicas_rule() -> IgnoreRule {
        IgnoreRule::new(Selector::default().kind("Deployment"))
            .path("/spec/replicas")
            .unwrap()
    }

    #[test]
    fn a_path_rule_leaves_out_a_field_another_manager_owns() {
        let differ = Differ::builder("gitops-rs").ignore(replicas_rule()).build();
        let desired = deployment(json!(2), Value::Null);
        let live = deployment(
            json!(5),
            json!([entry(
                "hpa",
                "Update",
                json!({"f:spec": {"f:replicas": {}}})
            )]),
        );
        let applied = differ.applied_object(&desired, Some(&live)).unwrap();
        assert!(applied.pointer("/spec/replicas").is_none(), "{applied}");
        assert_eq!(applied["spec"]["template"], desired["spec"]["template"]);
        assert_eq!(applied["metadata"]["name"], "web");
    }

    #[test]
    fn a_field_we_alone_own_keeps_its_live_value() {
        let differ = Differ::builder("gitops-rs").ignore(replicas_rule()).build();
        let desired = deployment(json!(2), Value::Null);
        let live = deployment(
            json!(3),
            json!([entry(
                "gitops-rs",
                "Apply",
                json!({"f:spec": {"f:replicas": {}}})
            )]),
        );
        let applied = differ.applied_object(&desired, Some(&live)).unwrap();
        assert_eq!(applied["spec"]["replicas"], 3);
        // Shared with another manager: left to it.
        let shared = deployment(
            json!(3),
            json!([
                entry("gitops-rs", "Apply", json!({"f:spec": {"f:replicas": {}}})),
                entry("kubectl", "Update", json!({"f:spec": {"f:replicas": {}}}))
            ]),
        );
        let applied = differ.applied_object(&desired, Some(&shared)).unwrap();
        assert!(applied.pointer("/spec/replicas").is_none(), "{applied}");
    }

    #[test]
    fn create_sends_desired_whole_and_unselected_objects_are_untouched() {
        let differ = Differ::builder("gitops-rs").ignore(replicas_rule()).build();
        let desired = deployment(json!(2), Value::Null);
        assert_eq!(differ.applied_object(&desired, None).unwrap(), desired);
        let other = Differ::builder("gitops-rs")
            .ignore(
                IgnoreRule::new(Selector::default().kind("StatefulSet"))
                    .path("/spec/replicas")
                    .unwrap(),
            )
            .build();
        let live = deployment(json!(5), json!([]));
        assert_eq!(
            other.applied_object(&desired, Some(&live)).unwrap(),
            desired
        );
    }

    #[test]
    fn manager_rules_follow_list_keys_and_emptied_maps_go() {
        let differ = Differ::builder("gitops-rs")
            .ignore(IgnoreRule::new(Selector::default()).manager("injector"))
            .build();
        let desired = deployment(json!(2), Value::Null);
        let live = deployment(
            json!(2),
            json!([entry(
                "injector",
                "Update",
                json!({"f:spec": {"f:template": {
                    "f:metadata": {"f:annotations": {"f:a": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"side\"}": {
                        ".": {}, "f:name": {}, "f:image": {}}}}}}})
            )]),
        );
        let applied = differ.applied_object(&desired, Some(&live)).unwrap();
        assert_eq!(
            applied["spec"]["template"],
            json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}})
        );
    }

    #[test]
    fn keyed_patterns_keep_the_item_keys_of_what_we_own() {
        let differ = Differ::builder("gitops-rs")
            .ignore(
                IgnoreRule::new(Selector::default())
                    .path("/spec/template/spec/containers/[name=web]/image")
                    .unwrap(),
            )
            .build();
        let desired = deployment(json!(2), Value::Null);
        let mut live = deployment(
            json!(2),
            json!([entry(
                "gitops-rs",
                "Apply",
                json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}})
            )]),
        );
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        let applied = differ.applied_object(&desired, Some(&live)).unwrap();
        assert_eq!(
            applied["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "web", "image": "nginx:2"})
        );
    }

    #[test]
    fn identity_is_never_left_out() {
        let differ = Differ::builder("gitops-rs")
            .ignore(IgnoreRule::new(Selector::default()).path("/**").unwrap())
            .build();
        let desired = deployment(json!(2), Value::Null);
        let live = deployment(json!(2), json!([]));
        let applied = differ.applied_object(&desired, Some(&live)).unwrap();
        assert_eq!(
            applied,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop"}})
        );
    }
}
