//! The inventory: which objects the last apply wrote, kept in the cluster.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use gitops_core::ObjectId;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};

/// The label naming the inventory that owns an object.
pub const OWNER_NAME_LABEL: &str = "apply.gitops.rs/inventory-name";
/// The label naming the namespace of the inventory that owns an object.
pub const OWNER_NAMESPACE_LABEL: &str = "apply.gitops.rs/inventory-namespace";
/// The key of the inventory in its ConfigMap or Secret, in the plain format (`format` absent
/// or `1`): the JSON form of [`Inventory::to_json`].
pub const INVENTORY_KEY: &str = "inventory.json";
/// The key of the compressed inventory (`format` `2`): the JSON form, gzip-compressed, in the
/// ConfigMap's `binaryData` (a Secret's `data`).
pub const INVENTORY_GZ_KEY: &str = "inventory.json.gz";
/// The key naming the stored format: `1` (or absent, as written before it existed) for plain
/// JSON under [`INVENTORY_KEY`], `2` for gzip under [`INVENTORY_GZ_KEY`].
pub const INVENTORY_FORMAT_KEY: &str = "format";
/// Inventories whose JSON form is larger than this many bytes are stored compressed; smaller ones
/// stay plain JSON, readable with `kubectl`.
pub const PLAIN_INVENTORY_LIMIT: usize = 256 * 1024;
/// The most an object of the apiserver may hold (etcd's request limit, 1.5 MiB, minus room for
/// metadata; the apiserver refuses a ConfigMap over 1 MiB of data).
const OBJECT_DATA_LIMIT: usize = 1024 * 1024 - 16 * 1024;

/// Why the inventory cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// The name cannot be a label value (at most 63 characters, alphanumerics, `-`, `_`, `.`).
    #[error(
        "inventory name {name:?} cannot be a label value (at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric)"
    )]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The API request failed.
    #[error("{action} inventory {namespace}/{name}")]
    Api {
        /// What was done.
        action: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The failure, as readable text ([`crate::KubeError`]).
        #[source]
        source: Box<crate::KubeError>,
    },
    /// The name cannot be the name of a ConfigMap or Secret (a DNS subdomain: lowercase
    /// alphanumerics, `-` and `.`).
    #[error(
        "inventory name {name:?} cannot name a ConfigMap or Secret (lowercase alphanumerics, '-' or '.', starting and ending with an alphanumeric)"
    )]
    InvalidObjectName {
        /// The name.
        name: String,
    },
    /// Even compressed, the inventory does not fit in one object.
    #[error(
        "inventory {namespace}/{name} of {entries} object(s) is {bytes} bytes compressed, over the {limit} bytes one object may hold"
    )]
    TooLarge {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// How many objects it lists.
        entries: usize,
        /// Its compressed size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The stored inventory cannot be read.
    #[error("inventory {namespace}/{name} is not a valid inventory")]
    Corrupt {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What is wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The objects of the last successful apply: ids and the apiVersion each was applied at.
///
/// ```
/// use gitops_apply::Inventory;
/// use gitops_core::ObjectId;
///
/// let mut inventory = Inventory::default();
/// inventory.insert(ObjectId::new("", "ConfigMap", Some("shop"), "a"), "v1");
/// let json = inventory.to_json();
/// assert_eq!(Inventory::from_json(&json).unwrap(), inventory);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    entries: BTreeMap<ObjectId, String>,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    id: String,
    v: String,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    entries: Vec<StoredEntry>,
}

impl Inventory {
    /// Adds or replaces an object.
    pub fn insert(&mut self, id: ObjectId, api_version: impl Into<String>) {
        self.entries.insert(id, api_version.into());
    }

    /// Removes an object.
    pub fn remove(&mut self, id: &ObjectId) -> Option<String> {
        self.entries.remove(id)
    }

    /// Whether the object is listed.
    #[must_use]
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.entries.contains_key(id)
    }

    /// The objects and their apiVersions, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectId, &str)> {
        self.entries.iter().map(|(id, v)| (id, v.as_str()))
    }

    /// The ids, sorted.
    #[must_use]
    pub fn ids(&self) -> BTreeSet<ObjectId> {
        self.entries.keys().cloned().collect()
    }

    /// How many objects.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it lists nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stored form: JSON with ids in their string form (`ns_name_group_kind`).
    #[must_use]
    pub fn to_json(&self) -> String {
        let stored = Stored {
            entries: self
                .entries
                .iter()
                .map(|(id, v)| StoredEntry {
                    id: id.to_string(),
                    v: v.clone(),
                })
                .collect(),
        };
        serde_json::to_string(&stored).expect("plain strings serialise")
    }

    /// Reads the stored form.
    ///
    /// # Errors
    /// Invalid JSON or an id that is not in the `ns_name_group_kind` form.
    pub fn from_json(text: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let stored: Stored = serde_json::from_str(text)?;
        let mut inventory = Self::default();
        for entry in stored.entries {
            inventory.insert(entry.id.parse::<ObjectId>()?, entry.v);
        }
        Ok(inventory)
    }

    /// The compressed form: the JSON form ([`Inventory::to_json`]), gzip-compressed. 20,000
    /// objects take some 2 MB as JSON, well under 1 MiB compressed.
    ///
    /// ```
    /// use gitops_apply::Inventory;
    /// use gitops_core::ObjectId;
    ///
    /// let mut inventory = Inventory::default();
    /// inventory.insert(ObjectId::new("", "ConfigMap", Some("shop"), "a"), "v1");
    /// assert_eq!(Inventory::from_gzip(&inventory.to_gzip()).unwrap(), inventory);
    /// ```
    #[must_use]
    pub fn to_gzip(&self) -> Vec<u8> {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(self.to_json().as_bytes())
            .expect("writing to memory");
        encoder.finish().expect("writing to memory")
    }

    /// Reads the compressed form. At most [`Inventory::MAX_JSON_BYTES`] are decompressed.
    ///
    /// # Errors
    /// Not gzip, larger than the limit once decompressed, or not a valid JSON form.
    pub fn from_gzip(bytes: &[u8]) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        use std::io::Read as _;
        let limit = u64::try_from(Self::MAX_JSON_BYTES).unwrap_or(u64::MAX);
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .take(limit + 1)
            .read_to_string(&mut text)?;
        if text.len() > Self::MAX_JSON_BYTES {
            return Err(format!(
                "the inventory is larger than {} bytes once decompressed",
                Self::MAX_JSON_BYTES
            )
            .into());
        }
        Self::from_json(&text)
    }

    /// The largest JSON form [`Inventory::from_gzip`] decompresses (64 MiB).
    pub const MAX_JSON_BYTES: usize = 64 * 1024 * 1024;

    /// Every object of `self` and of `other` (the apiVersion of `self` wins).
    ///
    /// ```
    /// use gitops_apply::Inventory;
    /// use gitops_core::ObjectId;
    ///
    /// let (mut old, mut new) = (Inventory::default(), Inventory::default());
    /// old.insert(ObjectId::new("", "ConfigMap", Some("shop"), "a"), "v1");
    /// new.insert(ObjectId::new("", "ConfigMap", Some("shop"), "b"), "v1");
    /// assert_eq!(new.union(&old).len(), 2);
    /// ```
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        let mut entries = other.entries.clone();
        entries.extend(self.entries.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self { entries }
    }
}

/// Where the inventory lives. Implement it to keep the inventory elsewhere (a controller's own
/// status, for instance).
#[async_trait::async_trait]
pub trait InventoryStore: Send + Sync {
    /// The inventory of the last apply; `None` when there is none yet.
    async fn load(&self, client: &kube::Client) -> Result<Option<Inventory>, InventoryError>;
    /// Proves, before the first write of a run, that `inventory` could be saved (the location
    /// exists, its name is valid, the caller may write it), writing nothing. The applier calls
    /// it when it has nothing new to record before its writes; the default checks nothing.
    async fn check(
        &self,
        client: &kube::Client,
        inventory: &Inventory,
        field_manager: &str,
    ) -> Result<(), InventoryError> {
        let _ = (client, inventory, field_manager);
        Ok(())
    }
    /// Replaces the inventory.
    async fn save(
        &self,
        client: &kube::Client,
        inventory: &Inventory,
        field_manager: &str,
    ) -> Result<(), InventoryError>;
    /// The labels that mark an object as owned by this inventory; only objects that still carry
    /// them are pruned.
    fn owner_labels(&self) -> BTreeMap<String, String>;
    /// Removes the inventory ([`crate::Applier::delete_all`] calls it once everything it listed
    /// is gone). The default saves an empty inventory.
    async fn delete(&self, client: &kube::Client) -> Result<(), InventoryError> {
        self.save(client, &Inventory::default(), crate::DEFAULT_FIELD_MANAGER)
            .await
    }
}

/// The default store: a ConfigMap (or a Secret) the caller names, key [`INVENTORY_KEY`].
#[derive(Debug, Clone)]
pub struct ConfigMapInventory {
    owner: InventoryOwner,
    secret: bool,
}

/// Whose objects these are: the namespace and name of an inventory, which the ownership labels
/// ([`OWNER_NAMESPACE_LABEL`], [`OWNER_NAME_LABEL`]) of every applied object carry. Each
/// [`InventoryStore`] builds its [`InventoryStore::owner_labels`] from one.
///
/// ```
/// let owner = gitops_apply::InventoryOwner::new("flux-system", "apps")?;
/// assert_eq!(owner.labels()[gitops_apply::OWNER_NAME_LABEL], "apps");
/// assert!(gitops_apply::InventoryOwner::new("flux-system", "Not a label").is_err());
/// # Ok::<(), gitops_apply::InventoryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryOwner {
    namespace: String,
    name: String,
}

impl InventoryOwner {
    /// The owner `namespace/name`.
    ///
    /// # Errors
    /// [`InventoryError::InvalidName`] when the name or namespace cannot be a label value.
    pub fn new(namespace: &str, name: &str) -> Result<Self, InventoryError> {
        for value in [namespace, name] {
            if !is_label_value(value) {
                return Err(InventoryError::InvalidName {
                    name: value.to_owned(),
                });
            }
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The namespace.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ownership labels.
    #[must_use]
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (OWNER_NAME_LABEL.to_owned(), self.name.clone()),
            (OWNER_NAMESPACE_LABEL.to_owned(), self.namespace.clone()),
        ])
    }
}

/// A label value, or the name part of a label key: at most 63 characters, alphanumerics, `-`,
/// `_` and `.`, beginning and ending with an alphanumeric.
pub(crate) fn is_label_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric()
}

/// A lowercase DNS-1123 subdomain (dot-separated labels), as object names and label key
/// prefixes must be; lengths are checked by the callers.
pub(crate) fn is_dns_subdomain(value: &str) -> bool {
    value.split('.').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    })
}

impl ConfigMapInventory {
    /// An inventory in ConfigMap `namespace/name`.
    ///
    /// ```
    /// let store = gitops_apply::ConfigMapInventory::new("flux-system", "apps")?;
    /// # Ok::<(), gitops_apply::InventoryError>(())
    /// ```
    ///
    /// # Errors
    /// [`InventoryError::InvalidName`] when the name or namespace cannot be a label value (the
    /// ownership labels carry them), [`InventoryError::InvalidObjectName`] when it cannot name
    /// a ConfigMap (uppercase letters, `_`).
    pub fn new(namespace: &str, name: &str) -> Result<Self, InventoryError> {
        let owner = InventoryOwner::new(namespace, name)?;
        for value in [namespace, name] {
            if !is_dns_subdomain(value) {
                return Err(InventoryError::InvalidObjectName {
                    name: value.to_owned(),
                });
            }
        }
        Ok(Self {
            owner,
            secret: false,
        })
    }

    /// An inventory in Secret `namespace/name` instead.
    ///
    /// # Errors
    /// As [`ConfigMapInventory::new`].
    pub fn secret(namespace: &str, name: &str) -> Result<Self, InventoryError> {
        Ok(Self {
            secret: true,
            ..Self::new(namespace, name)?
        })
    }

    fn api(&self, client: &kube::Client) -> Api<DynamicObject> {
        let (kind, plural) = if self.secret {
            ("Secret", "secrets")
        } else {
            ("ConfigMap", "configmaps")
        };
        let resource = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        Api::namespaced_with(client.clone(), &self.owner.namespace, &resource)
    }

    fn api_error(&self, action: &'static str) -> impl FnOnce(kube::Error) -> InventoryError + '_ {
        move |source| InventoryError::Api {
            action,
            namespace: self.owner.namespace.clone(),
            name: self.owner.name.clone(),
            source: Box::new(source.into()),
        }
    }

    /// Server-side applies the inventory's object, or only checks that it could (`dry_run`).
    async fn apply(
        &self,
        client: &kube::Client,
        inventory: &Inventory,
        field_manager: &str,
        dry_run: bool,
    ) -> Result<(), InventoryError> {
        let object = self.object(inventory)?;
        let mut params = PatchParams::apply(field_manager).force();
        let action = if dry_run {
            params = params.dry_run();
            "checking (server-side dry run)"
        } else {
            "writing"
        };
        self.api(client)
            .patch(&self.owner.name, &params, &Patch::Apply(&object))
            .await
            .map_err(self.api_error(action))?;
        Ok(())
    }

    /// The object `save` applies: plain JSON up to [`PLAIN_INVENTORY_LIMIT`], gzip above.
    fn object(&self, inventory: &Inventory) -> Result<serde_json::Value, InventoryError> {
        let engine = &base64::engine::general_purpose::STANDARD;
        let json = inventory.to_json();
        let (kind, mut data, mut binary) = (
            if self.secret { "Secret" } else { "ConfigMap" },
            serde_json::Map::new(),
            serde_json::Map::new(),
        );
        let mut text = |key: &str, value: &str| {
            let value = if self.secret {
                engine.encode(value)
            } else {
                value.to_owned()
            };
            data.insert(key.to_owned(), value.into());
        };
        let size = if json.len() <= PLAIN_INVENTORY_LIMIT {
            text(INVENTORY_FORMAT_KEY, "1");
            text(INVENTORY_KEY, &json);
            json.len()
        } else {
            text(INVENTORY_FORMAT_KEY, "2");
            let encoded = engine.encode(inventory.to_gzip());
            let size = encoded.len();
            if self.secret {
                data.insert(INVENTORY_GZ_KEY.to_owned(), encoded.into());
            } else {
                binary.insert(INVENTORY_GZ_KEY.to_owned(), encoded.into());
            }
            size
        };
        if size > OBJECT_DATA_LIMIT {
            return Err(InventoryError::TooLarge {
                namespace: self.owner.namespace.clone(),
                name: self.owner.name.clone(),
                entries: inventory.len(),
                bytes: size,
                limit: OBJECT_DATA_LIMIT,
            });
        }
        let mut object = serde_json::json!({
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": self.owner.name, "namespace": self.owner.namespace},
            "data": data,
        });
        if !binary.is_empty() {
            object["binaryData"] = binary.into();
        }
        Ok(object)
    }

    fn corrupt(&self, source: Box<dyn std::error::Error + Send + Sync>) -> InventoryError {
        InventoryError::Corrupt {
            namespace: self.owner.namespace.clone(),
            name: self.owner.name.clone(),
            source,
        }
    }
}

#[async_trait::async_trait]
impl InventoryStore for ConfigMapInventory {
    async fn load(&self, client: &kube::Client) -> Result<Option<Inventory>, InventoryError> {
        let Some(object) = self
            .api(client)
            .get_opt(&self.owner.name)
            .await
            .map_err(self.api_error("reading"))?
        else {
            return Ok(None);
        };
        let engine = &base64::engine::general_purpose::STANDARD;
        // A Secret keeps everything base64-encoded in `data`; a ConfigMap keeps text in `data`
        // and base64 in `binaryData`.
        let text = |key: &str| -> Result<Option<String>, InventoryError> {
            let Some(value) = object.data["data"][key].as_str() else {
                return Ok(None);
            };
            if !self.secret {
                return Ok(Some(value.to_owned()));
            }
            let bytes = engine.decode(value).map_err(|e| self.corrupt(e.into()))?;
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| self.corrupt(e.into()))
        };
        match text(INVENTORY_FORMAT_KEY)?.as_deref() {
            None | Some("1") => {
                let Some(json) = text(INVENTORY_KEY)? else {
                    return Ok(None);
                };
                Inventory::from_json(&json)
                    .map(Some)
                    .map_err(|e| self.corrupt(e))
            }
            Some("2") => {
                let field = if self.secret { "data" } else { "binaryData" };
                let Some(value) = object.data[field][INVENTORY_GZ_KEY].as_str() else {
                    return Err(
                        self.corrupt(format!("format 2 without {field}.{INVENTORY_GZ_KEY}").into())
                    );
                };
                let bytes = engine.decode(value).map_err(|e| self.corrupt(e.into()))?;
                Inventory::from_gzip(&bytes)
                    .map(Some)
                    .map_err(|e| self.corrupt(e))
            }
            Some(other) => Err(self.corrupt(
                format!(
                    "unknown format {} (this version reads 1 and 2)",
                    gitops_core::escape::Escaped(other)
                )
                .into(),
            )),
        }
    }

    async fn check(
        &self,
        client: &kube::Client,
        inventory: &Inventory,
        field_manager: &str,
    ) -> Result<(), InventoryError> {
        self.apply(client, inventory, field_manager, true).await
    }

    async fn save(
        &self,
        client: &kube::Client,
        inventory: &Inventory,
        field_manager: &str,
    ) -> Result<(), InventoryError> {
        self.apply(client, inventory, field_manager, false).await
    }

    fn owner_labels(&self) -> BTreeMap<String, String> {
        self.owner.labels()
    }

    async fn delete(&self, client: &kube::Client) -> Result<(), InventoryError> {
        match self
            .api(client)
            .delete(&self.owner.name, &kube::api::DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(self.api_error("deleting")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_label_values() {
        assert!(ConfigMapInventory::new("ns", "apps").is_ok());
        assert!(ConfigMapInventory::new("ns", &"a".repeat(64)).is_err());
        assert!(ConfigMapInventory::new("ns", "-apps").is_err());
        assert!(ConfigMapInventory::secret("", "apps").is_err());
    }

    #[test]
    fn json_round_trip_and_bad_ids() {
        let mut inventory = Inventory::default();
        inventory.insert(
            ObjectId::new(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                None::<&str>,
                "a:b",
            ),
            "v1",
        );
        inventory.insert(ObjectId::new("apps", "Deployment", Some("x"), "web"), "v1");
        assert_eq!(
            Inventory::from_json(&inventory.to_json()).unwrap(),
            inventory
        );
        assert!(Inventory::from_json(r#"{"entries":[{"id":"nonsense","v":"v1"}]}"#).is_err());
        assert!(Inventory::from_json("[").is_err());
    }

    #[test]
    fn config_map_names_must_be_dns_subdomains() {
        // Valid label values that no ConfigMap can be named.
        for name in ["Apps", "my_apps", "a..b"] {
            assert!(
                matches!(
                    ConfigMapInventory::new("ns", name),
                    Err(InventoryError::InvalidObjectName { .. })
                ),
                "{name}"
            );
        }
        assert!(ConfigMapInventory::new("ns", "apps.v2-x").is_ok());
    }

    /// 20,000 objects of a large set: 40 namespaces, six kinds, names of 30-50 characters with
    /// a hash part (as Helm and Kustomize generate them), which compresses poorly.
    fn large(count: usize) -> Inventory {
        let kinds = [
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "Service"),
            ("apps", "Deployment"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("monitoring.coreos.com", "ServiceMonitor"),
        ];
        let mut inventory = Inventory::default();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..count {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let (group, kind) = kinds[i % kinds.len()];
            let name = format!("team-service-{i:05}-{:016x}", state);
            let namespace = format!("tenant-{:02}", i % 40);
            inventory.insert(ObjectId::new(group, kind, Some(namespace), name), "v1");
        }
        inventory
    }

    #[test]
    fn twenty_thousand_objects_fit_compressed() {
        let inventory = large(20_000);
        let json = inventory.to_json().len();
        let store = ConfigMapInventory::new("ns", "apps").unwrap();
        let object = store.object(&inventory).unwrap();
        assert_eq!(object["data"][INVENTORY_FORMAT_KEY], "2");
        assert!(object["data"].get(INVENTORY_KEY).is_none());
        let stored = object["binaryData"][INVENTORY_GZ_KEY].as_str().unwrap();
        eprintln!(
            "20,000 ids: {json} bytes of JSON, {} bytes gzip+base64",
            stored.len()
        );
        // Plain JSON would not fit in one object; compressed, it does with room to spare.
        assert!(json > OBJECT_DATA_LIMIT, "{json}");
        assert!(stored.len() < OBJECT_DATA_LIMIT / 2, "{}", stored.len());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(stored)
            .unwrap();
        assert_eq!(Inventory::from_gzip(&bytes).unwrap(), inventory);
        // The Secret form keeps both keys base64-encoded in data.
        let secret = ConfigMapInventory::secret("ns", "apps").unwrap();
        let object = secret.object(&inventory).unwrap();
        assert_eq!(object["data"][INVENTORY_FORMAT_KEY], "Mg==");
        assert!(object["data"][INVENTORY_GZ_KEY].is_string());
    }

    #[test]
    fn small_inventories_stay_plain_json() {
        let inventory = large(10);
        let object = ConfigMapInventory::new("ns", "apps")
            .unwrap()
            .object(&inventory)
            .unwrap();
        assert_eq!(object["data"][INVENTORY_FORMAT_KEY], "1");
        assert_eq!(
            Inventory::from_json(object["data"][INVENTORY_KEY].as_str().unwrap()).unwrap(),
            inventory
        );
        assert!(object.get("binaryData").is_none());
    }

    #[test]
    fn an_inventory_too_large_even_compressed_is_an_error_before_any_request() {
        let inventory = large(400_000);
        let err = ConfigMapInventory::new("ns", "apps")
            .unwrap()
            .object(&inventory)
            .unwrap_err();
        assert!(matches!(err, InventoryError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn gzip_bombs_and_garbage_are_refused() {
        assert!(Inventory::from_gzip(b"not gzip").is_err());
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut encoder, &vec![b' '; Inventory::MAX_JSON_BYTES + 2])
            .unwrap();
        let bomb = encoder.finish().unwrap();
        let err = Inventory::from_gzip(&bomb).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
