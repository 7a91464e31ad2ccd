//! Reading the live state of a set: what the cluster holds of each desired object, at a cost
//! that grows with the set rather than with everything else in its namespaces.
//!
//! Each kind and namespace of the set is listed once. With ownership labels
//! ([`crate::InventoryStore::owner_labels`]) the list selects them (`labelSelector`), so that a
//! namespace crowded with other objects is not read whole on every run. An object of the set
//! that list does not return is new, or exists without our labels (made by hand, to adopt; its
//! labels removed by hand; another inventory's): it is read alone (a `GET`) when such objects
//! are few, and its kind and namespace are listed unfiltered, as without ownership labels,
//! when they are many (a first apply of a large set). Objects the previous inventory does not
//! list are expected to be missing from the selected list, so the choice is made before the
//! lists; objects missing unexpectedly (labels removed by hand) are handled the same way after
//! them. Either way every object of the set is found as it is, so adoption, drift and the
//! ownership checks see what they saw with unfiltered lists.
//!
//! The waits of an applier ([`crate::health`]) read their pending objects the same way, through
//! [`read_groups`]: there an object is expected missing when the previous round found it
//! without our labels or not at all, and a lone object is read alone at once.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use gitops_core::{Manifest, ObjectId, Origin};
use kube::api::ListParams;
use serde_json::Value;

use crate::apply::{Run, object_api, to_value};
use crate::error::ApplyError;
use crate::inventory::{Inventory, is_dns_subdomain, is_label_value};
use crate::plan::{KindInfo, PlannedObject};

/// How many single reads (`GET`s) a live read may send instead of unfiltered lists, per
/// concurrent request the applier allows ([`crate::ApplierBuilder::concurrency`]): at the
/// default concurrency of 16, up to 32 objects missing from the selected lists are read alone;
/// past that, their kinds and namespaces are listed unfiltered.
///
/// Why two rounds: the reads run `concurrency` at once, so the budget costs at most two rounds
/// of small requests beside the lists, whatever the namespace holds, while an unfiltered list
/// costs what its namespace holds. Measured on the test control plane (loopback, 2 busy cores,
/// medians of 9): a list of 4,400 ConfigMaps takes 63 to 76 ms, the list of the 400 of them
/// selected by a label 7 ms, one round of 16 concurrent `GET`s 5 to 7 ms. Two rounds thus cost
/// a fifth of what a crowd of 4,000 adds to one list, and are the most a quiet namespace (where
/// the unfiltered list would have cost what the selected one does) pays for them. Past two
/// rounds the missing objects are most of a kind (a first apply, a new namespace), where a
/// round trip per `concurrency` objects would buy nothing in a quiet namespace.
pub(crate) const GETS_PER_CONCURRENT_REQUEST: usize = 2;

/// The live objects a read found, and how each kind and namespace was read.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// The objects found, by id: every object of the set that exists, and the others the lists
    /// returned.
    pub(crate) objects: HashMap<ObjectId, Value>,
    /// How each kind and namespace of the set was read.
    pub(crate) listed: Listed,
}

/// (apiVersion, plural, namespace) of a list.
pub(crate) type ListKey = (String, String, Option<String>);

/// How each kind and namespace of a read was listed.
pub(crate) type Listed = HashMap<ListKey, Coverage>;

/// What a list of one kind and namespace covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coverage {
    /// Every object: one missing from the read does not exist.
    All,
    /// The objects carrying our ownership labels: one missing from the read may exist without
    /// them.
    Owned,
}

impl Live {
    /// What the read knows of `id` (listed as `key`): `Some(None)` when it does not exist,
    /// `Some(Some(object))` when it does, `None` when the read cannot tell (its kind and
    /// namespace were not listed, or listed by our labels and it was not among them).
    pub(crate) fn known(&self, key: &ListKey, id: &ObjectId) -> Option<Option<&Value>> {
        match (self.objects.get(id), self.listed.get(key)) {
            (Some(object), _) => Some(Some(object)),
            (None, Some(Coverage::All)) => Some(None),
            (None, _) => None,
        }
    }
}

/// The list key of a planned object.
fn key_of(object: &PlannedObject) -> ListKey {
    (
        object.kind.resource.api_version.clone(),
        object.kind.resource.plural.clone(),
        object.id.namespace.clone(),
    )
}

/// The label selector of `owner_labels` (`k=v,k=v`), `None` when there are none or one of them
/// cannot be written in a selector (then every list is unfiltered).
pub(crate) fn owner_selector(owner_labels: &BTreeMap<String, String>) -> Option<String> {
    if owner_labels.is_empty()
        || !owner_labels
            .iter()
            .all(|(key, value)| is_label_key(key) && (value.is_empty() || is_label_value(value)))
    {
        return None;
    }
    Some(
        owner_labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// A label key: a name, optionally after a DNS subdomain prefix and `/`.
fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        None => is_label_value(key),
        Some((prefix, name)) => {
            prefix.len() <= 253 && is_dns_subdomain(prefix) && is_label_value(name)
        }
    }
}

/// Which of `counts` (objects to read alone, per kind and namespace) fit in `budget`: the
/// smallest first, so that the most kinds and namespaces are read by their selected list; a
/// count of zero always fits.
pub(crate) fn within_budget(counts: &[usize], budget: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&i| counts[i]);
    let mut fits = vec![false; counts.len()];
    let mut spent = 0usize;
    for i in order {
        if spent + counts[i] <= budget {
            spent += counts[i];
            fits[i] = true;
        }
    }
    fits
}

/// The objects of one kind and namespace of a set.
struct Group<'o> {
    key: ListKey,
    members: Vec<&'o PlannedObject>,
}

/// How a live read reaches the cluster: the planner's ([`Run`]) and the wait's
/// ([`crate::health`]) reads share [`read_groups`] through it.
pub(crate) trait Reader<M: Sync>: Sync {
    /// What a failed request is.
    type Error: Send;

    /// How many requests run at once; the budget of single reads is
    /// [`GETS_PER_CONCURRENT_REQUEST`] times this.
    fn concurrency(&self) -> usize;

    /// The name of `member`, as its live object's `metadata.name`.
    fn name(member: &M) -> &str;

    /// Every object of the kind and namespace of `members` (matching `selector` when given),
    /// paginated; `None` when the collection is not served.
    fn list(
        &self,
        members: &[&M],
        selector: Option<&str>,
    ) -> impl Future<Output = Result<Option<Vec<Value>>, Self::Error>> + Send;

    /// The live object of `member`, `None` when it does not exist.
    fn get(&self, member: &M) -> impl Future<Output = Result<Option<Value>, Self::Error>> + Send;
}

/// The objects of one kind and namespace a live read looks for.
pub(crate) struct ReadGroup<'m, M> {
    /// The objects.
    pub(crate) members: Vec<&'m M>,
    /// How many of them are expected missing from a list selected by the ownership labels
    /// (not in the previous inventory, or seen without the labels): past the budget, the
    /// group is listed unfiltered at once.
    pub(crate) expected: usize,
    /// Whether its members are read alone (`GET`) rather than listed: a lone object.
    pub(crate) alone: bool,
}

/// What a live read found of one [`ReadGroup`].
#[derive(Debug, Default)]
pub(crate) struct GroupRead {
    /// The live objects: every member that exists, and the others its lists returned.
    pub(crate) values: Vec<Value>,
    /// What its lists covered; `None` when its members were only read alone.
    pub(crate) coverage: Option<Coverage>,
}

/// One request of a live read.
enum Request<'r, M> {
    /// A list of group `.0` (its members `.1`), selected by our labels or not (`.2`).
    List(usize, &'r [&'r M], Option<&'r str>),
    /// A read of one object of group `.0`.
    Get(usize, &'r M),
}

/// What one request of a live read returned.
enum Answer {
    /// The objects of group `.0`; `None` when the collection is not served (a 404: its kind
    /// went since discovery), so that nothing of it exists.
    List(usize, Option<Vec<Value>>),
    /// The object of group `.0`, if it exists.
    Get(usize, Option<Value>),
}

/// Reads `groups` through `reader`: one list per group, selected by `selector` (our ownership
/// labels) where its expected missing members fit the budget, unfiltered where they do not or
/// without a selector; then a `GET` of each member a selected list did not return while they
/// fit the budget, an unfiltered list of the group where they do not. Groups read `alone` are
/// read member by member. Every member of every group is found as it is (or known gone).
pub(crate) async fn read_groups<M: Sync, R: Reader<M>>(
    reader: &R,
    groups: &[ReadGroup<'_, M>],
    selector: Option<&str>,
) -> Result<Vec<GroupRead>, R::Error> {
    let budget = reader
        .concurrency()
        .saturating_mul(GETS_PER_CONCURRENT_REQUEST);
    // Before the lists: the members expected missing from a selected list (none of a group
    // read alone).
    let expected: Vec<usize> = groups
        .iter()
        .map(|g| if g.alone { 0 } else { g.expected })
        .collect();
    let selected = match selector {
        Some(_) => within_budget(&expected, budget),
        None => vec![false; groups.len()],
    };
    let mut first = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        if group.alone {
            first.extend(group.members.iter().map(|&m| Request::Get(i, m)));
        } else {
            first.push(Request::List(
                i,
                &group.members,
                selector.filter(|_| selected[i]),
            ));
        }
    }
    let mut reads: Vec<GroupRead> = groups.iter().map(|_| GroupRead::default()).collect();
    // Per group, whether its list may have missed members.
    let mut partial = vec![false; groups.len()];
    for answer in send(reader, first).await? {
        match answer {
            Answer::List(i, values) => {
                partial[i] = selected[i] && values.is_some();
                reads[i].coverage = Some(if partial[i] {
                    Coverage::Owned
                } else {
                    Coverage::All
                });
                reads[i].values.extend(values.into_iter().flatten());
            }
            Answer::Get(i, value) => reads[i].values.extend(value),
        }
    }
    // After them: what the selected lists did not return, read alone or listed whole.
    let missing: Vec<Vec<&M>> = groups
        .iter()
        .zip(&reads)
        .zip(&partial)
        .map(|((group, read), &partial)| {
            if !partial {
                return Vec::new();
            }
            let found: HashSet<&str> = read.values.iter().filter_map(name_of).collect();
            group
                .members
                .iter()
                .copied()
                .filter(|&m| !found.contains(R::name(m)))
                .collect()
        })
        .collect();
    let counts: Vec<usize> = missing.iter().map(Vec::len).collect();
    let fits = within_budget(&counts, budget);
    let mut second = Vec::new();
    for (i, missing) in missing.into_iter().enumerate() {
        if missing.is_empty() {
            continue;
        }
        if fits[i] {
            second.extend(missing.into_iter().map(|m| Request::Get(i, m)));
        } else {
            second.push(Request::List(i, &groups[i].members, None));
        }
    }
    for answer in send(reader, second).await? {
        match answer {
            Answer::List(i, values) => {
                // Unfiltered, it holds what the selected list returned.
                reads[i].coverage = Some(Coverage::All);
                reads[i].values = values.unwrap_or_default();
            }
            Answer::Get(i, value) => reads[i].values.extend(value),
        }
    }
    Ok(reads)
}

/// Sends `requests` through `reader`, [`Reader::concurrency`] at once.
async fn send<M: Sync, R: Reader<M>>(
    reader: &R,
    requests: Vec<Request<'_, M>>,
) -> Result<Vec<Answer>, R::Error> {
    let requests: Vec<_> = requests
        .into_iter()
        .map(|request| async move {
            match request {
                Request::List(i, members, selector) => {
                    Ok(Answer::List(i, reader.list(members, selector).await?))
                }
                Request::Get(i, member) => Ok(Answer::Get(i, reader.get(member).await?)),
            }
        })
        .collect();
    // Futures collected first: the stream then holds no closure, which keeps the future of
    // a run provably Send (tokio::spawn).
    futures::stream::iter(requests)
        .buffer_unordered(reader.concurrency().max(1))
        .try_collect::<Vec<_>>()
        .await
}

/// The `metadata.name` of a live object.
pub(crate) fn name_of(value: &Value) -> Option<&str> {
    value.pointer("/metadata/name").and_then(Value::as_str)
}

/// Whether a live object carries every one of `owner_labels`.
pub(crate) fn carries(live: &Value, owner_labels: &BTreeMap<String, String>) -> bool {
    let labels = live.pointer("/metadata/labels");
    owner_labels.iter().all(|(key, value)| {
        labels
            .and_then(|labels| labels.get(key))
            .and_then(Value::as_str)
            == Some(value.as_str())
    })
}

impl Run<'_> {
    /// The live objects of `objects` (those of kinds the cluster serves): one list per kind
    /// and namespace, selected by our ownership labels, and a `GET` of each object that list
    /// did not return while they are few (see [`GETS_PER_CONCURRENT_REQUEST`]); without
    /// ownership labels, or for a kind and namespace with more such objects, an unfiltered
    /// list. `previous` (the inventory the run read) tells which objects should carry our
    /// labels: those it does not list are expected to be missing from the selected lists.
    pub(crate) async fn list_live(
        &self,
        objects: &[PlannedObject],
        previous: Option<&Inventory>,
    ) -> Result<Live, ApplyError> {
        let selector = owner_selector(&self.applier.inventory.owner_labels());
        let groups = groups(objects);
        let reads: Vec<ReadGroup<'_, PlannedObject>> = groups
            .iter()
            .map(|g| ReadGroup {
                expected: g
                    .members
                    .iter()
                    .filter(|o| o.synthesized || previous.is_none_or(|p| !p.contains(&o.id)))
                    .count(),
                members: g.members.clone(),
                alone: false,
            })
            .collect();
        let read = read_groups(self, &reads, selector.as_deref()).await?;
        let mut live = Live::default();
        for (group, read) in groups.into_iter().zip(read) {
            if let Some(coverage) = read.coverage {
                live.listed.insert(group.key, coverage);
            }
            insert_all(&mut live.objects, read.values);
        }
        Ok(live)
    }

    /// Every object of `kind` in `namespace` (matching `selector` when given), paginated;
    /// `None` when the collection is not served (404).
    async fn list_kind(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Option<Vec<Value>>, ApplyError> {
        let api = object_api(&self.client, kind, namespace);
        let mut params = ListParams::default();
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        match crate::paging::list_all(&api, &params, self.applier.page_size).await {
            // Each listed object is dropped as soon as it is converted: the list and its
            // values are never both held whole.
            Ok(list) => Ok(Some(
                list.into_iter()
                    .map(|o| to_value(&o, &kind.resource))
                    .collect(),
            )),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(source) => Err(ApplyError::List {
                plural: kind.resource.plural.clone(),
                namespace: namespace.unwrap_or("the cluster").to_owned(),
                source: source.into(),
            }),
        }
    }

    /// The live object of `object`, `None` when it does not exist. Any 404 is no object, as
    /// for a list: also that of a kind no longer served (its CRD deleted since discovery),
    /// which the dry run then fails on, so that the next run discovers again.
    async fn get_live(&self, object: &PlannedObject) -> Result<Option<Value>, ApplyError> {
        let api = object_api(&self.client, &object.kind, object.id.namespace.as_deref());
        match api.get(&object.id.name).await {
            Ok(live) => Ok(Some(to_value(&live, &object.kind.resource))),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(source) => Err(ApplyError::Read {
                id: object.id.clone(),
                source: source.into(),
            }),
        }
    }
}

impl Reader<PlannedObject> for Run<'_> {
    type Error = ApplyError;

    fn concurrency(&self) -> usize {
        self.applier.concurrency
    }

    fn name(member: &PlannedObject) -> &str {
        &member.id.name
    }

    async fn list(
        &self,
        members: &[&PlannedObject],
        selector: Option<&str>,
    ) -> Result<Option<Vec<Value>>, ApplyError> {
        let Some(first) = members.first() else {
            return Ok(Some(Vec::new()));
        };
        self.list_kind(&first.kind, first.id.namespace.as_deref(), selector)
            .await
    }

    async fn get(&self, member: &PlannedObject) -> Result<Option<Value>, ApplyError> {
        self.get_live(member).await
    }
}

/// The objects of kinds the cluster serves, grouped by kind and namespace, in the order each
/// group first appears.
fn groups(objects: &[PlannedObject]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut index: HashMap<ListKey, usize> = HashMap::new();
    for object in objects.iter().filter(|o| o.kind.served) {
        let key = key_of(object);
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push(Group {
                key,
                members: Vec::new(),
            });
            groups.len() - 1
        });
        groups[i].members.push(object);
    }
    groups
}

/// Adds `values` to `live` by id (values that are no valid object are left out).
fn insert_all(live: &mut HashMap<ObjectId, Value>, values: impl IntoIterator<Item = Value>) {
    for value in values {
        let Ok(manifest) = Manifest::new(value, Origin::new("<live>")) else {
            continue;
        };
        let id = manifest.id();
        live.insert(id, manifest.into_object());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_goes_to_the_smallest_counts_first() {
        assert_eq!(within_budget(&[], 4), Vec::<bool>::new());
        assert_eq!(within_budget(&[0, 0], 0), [true, true]);
        assert_eq!(within_budget(&[3, 1, 2], 3), [false, true, true]);
        assert_eq!(within_budget(&[5, 0, 4], 4), [false, true, true]);
        assert_eq!(within_budget(&[1000], 32), [false]);
        assert_eq!(within_budget(&[32], 32), [true]);
        assert_eq!(within_budget(&[33], 32), [false]);
        // Ties keep their order: the first of equal counts is granted first.
        assert_eq!(within_budget(&[2, 2, 2], 4), [true, true, false]);
    }

    #[test]
    fn the_selector_names_every_owner_label() {
        let labels = BTreeMap::from([
            (
                "apply.gitops.rs/inventory-name".to_owned(),
                "apps".to_owned(),
            ),
            (
                "apply.gitops.rs/inventory-namespace".to_owned(),
                "flux-system".to_owned(),
            ),
        ]);
        assert_eq!(
            owner_selector(&labels).as_deref(),
            Some(
                "apply.gitops.rs/inventory-name=apps,apply.gitops.rs/inventory-namespace=flux-system"
            )
        );
        assert_eq!(owner_selector(&BTreeMap::new()), None);
        let empty_value = BTreeMap::from([("team".to_owned(), String::new())]);
        assert_eq!(owner_selector(&empty_value).as_deref(), Some("team="));
    }

    #[test]
    fn labels_a_selector_cannot_hold_read_unfiltered() {
        for (key, value) in [
            ("team", "a,b=c"),
            ("team", "a b"),
            ("team", "-a"),
            ("team", &*"a".repeat(64)),
            ("te am", "a"),
            ("team!", "a"),
            ("/team", "a"),
            ("Example.com/team", "a"),
            ("example.com/", "a"),
            ("a/b/c", "a"),
            ("", "a"),
        ] {
            let labels = BTreeMap::from([
                (key.to_owned(), value.to_owned()),
                ("ok".to_owned(), "fine".to_owned()),
            ]);
            assert_eq!(owner_selector(&labels), None, "{key:?}={value:?}");
        }
    }

    #[test]
    fn an_object_carries_every_owner_label_or_not() {
        let labels = BTreeMap::from([
            ("a.io/name".to_owned(), "apps".to_owned()),
            ("a.io/namespace".to_owned(), "ns".to_owned()),
        ]);
        let with = |object_labels: Value| serde_json::json!({"metadata": {"name": "x", "labels": object_labels}});
        assert!(carries(
            &with(serde_json::json!({"a.io/name": "apps", "a.io/namespace": "ns", "x": "y"})),
            &labels
        ));
        // One missing, one of another inventory, none at all, a value that is no string.
        assert!(!carries(
            &with(serde_json::json!({"a.io/name": "apps"})),
            &labels
        ));
        assert!(!carries(
            &with(serde_json::json!({"a.io/name": "other", "a.io/namespace": "ns"})),
            &labels
        ));
        assert!(!carries(&serde_json::json!({"metadata": {}}), &labels));
        assert!(!carries(
            &with(serde_json::json!({"a.io/name": 1, "a.io/namespace": "ns"})),
            &labels
        ));
        assert_eq!(name_of(&with(Value::Null)), Some("x"));
        assert_eq!(name_of(&serde_json::json!({"metadata": {"name": 3}})), None);
    }

    #[test]
    fn what_a_read_knows_of_an_object() {
        let id = ObjectId::new("", "ConfigMap", Some("ns"), "a");
        let other = ObjectId::new("", "ConfigMap", Some("ns"), "b");
        let key: ListKey = ("v1".into(), "configmaps".into(), Some("ns".into()));
        let unlisted: ListKey = ("v1".into(), "secrets".into(), Some("ns".into()));
        let object = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"});
        let mut live = Live::default();
        live.objects.insert(id.clone(), object.clone());
        live.listed.insert(key.clone(), Coverage::Owned);
        assert_eq!(live.known(&key, &id), Some(Some(&object)));
        // Not among our labelled objects: it may exist without them.
        assert_eq!(live.known(&key, &other), None);
        assert_eq!(live.known(&unlisted, &other), None);
        live.listed.insert(key.clone(), Coverage::All);
        assert_eq!(live.known(&key, &other), Some(None));
    }
}
