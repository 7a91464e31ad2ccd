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
/// The key of the inventory in its ConfigMap or Secret.
pub const INVENTORY_KEY: &str = "inventory.json";

/// Why the inventory cannot be read or written.
#[derive(Debug, thiserror::Error)]
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
        /// The failure.
        #[source]
        source: Box<kube::Error>,
    },
    /// The stored inventory cannot be read.
    #[error("inventory {namespace}/{name} key {INVENTORY_KEY} is not a valid inventory")]
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
}

/// Where the inventory lives. Implement it to keep the inventory elsewhere (a controller's own
/// status, for instance).
#[async_trait::async_trait]
pub trait InventoryStore: Send + Sync {
    /// The inventory of the last apply; `None` when there is none yet.
    async fn load(&self, client: &kube::Client) -> Result<Option<Inventory>, InventoryError>;
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

fn is_label_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric()
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
    /// ownership labels carry them).
    pub fn new(namespace: &str, name: &str) -> Result<Self, InventoryError> {
        Ok(Self {
            owner: InventoryOwner::new(namespace, name)?,
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
            source: Box::new(source),
        }
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
        let Some(value) = object.data["data"][INVENTORY_KEY].as_str() else {
            return Ok(None);
        };
        let text = if self.secret {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|e| self.corrupt(e.into()))?;
            String::from_utf8(bytes).map_err(|e| self.corrupt(e.into()))?
        } else {
            value.to_owned()
        };
        Inventory::from_json(&text)
            .map(Some)
            .map_err(|e| self.corrupt(e))
    }

    async fn save(
        &self,
        client: &kube::Client,
        inventory: &Inventory,
        field_manager: &str,
    ) -> Result<(), InventoryError> {
        let (kind, field) = if self.secret {
            ("Secret", "stringData")
        } else {
            ("ConfigMap", "data")
        };
        let object = serde_json::json!({
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": self.owner.name, "namespace": self.owner.namespace},
            field: {INVENTORY_KEY: inventory.to_json()},
        });
        self.api(client)
            .patch(
                &self.owner.name,
                &PatchParams::apply(field_manager).force(),
                &Patch::Apply(&object),
            )
            .await
            .map_err(self.api_error("writing"))?;
        Ok(())
    }

    fn owner_labels(&self) -> BTreeMap<String, String> {
        self.owner.labels()
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
}
