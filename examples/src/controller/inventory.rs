//! The inventory of a [`GitSync`], kept in its own status (`status.inventory.entries`), as Flux
//! keeps a Kustomization's.

use std::collections::BTreeMap;

use gitops_apply::{Inventory, InventoryError, InventoryOwner, InventoryStore};
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::resource::{GitSync, InventoryEntry, InventoryStatus};

/// An [`InventoryStore`] in the status of one [`GitSync`]. It writes only `status.inventory`,
/// with server-side apply under its own field manager, so the conditions written by the
/// controller (another field manager) never clear it.
///
/// ```
/// use gitops_examples::controller::StatusInventory;
/// let store = StatusInventory::new("team-a", "apps", "gitsync-inventory")?;
/// # Ok::<(), gitops_apply::InventoryError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StatusInventory {
    owner: InventoryOwner,
    field_manager: String,
}

impl StatusInventory {
    /// The inventory of GitSync `namespace/name`, written with `field_manager`.
    ///
    /// # Errors
    /// [`InventoryError::InvalidName`] when the name or namespace cannot be a label value: the
    /// ownership labels of the applied objects carry them.
    pub fn new(
        namespace: &str,
        name: &str,
        field_manager: impl Into<String>,
    ) -> Result<Self, InventoryError> {
        Ok(Self {
            owner: InventoryOwner::new(namespace, name)?,
            field_manager: field_manager.into(),
        })
    }

    fn api(&self, client: &kube::Client) -> Api<GitSync> {
        Api::namespaced(client.clone(), self.owner.namespace())
    }

    fn api_error(&self, action: &'static str) -> impl FnOnce(kube::Error) -> InventoryError + '_ {
        move |source| InventoryError::Api {
            action,
            namespace: self.owner.namespace().to_owned(),
            name: self.owner.name().to_owned(),
            source: Box::new(source.into()),
        }
    }
}

/// The inventory in its status form.
#[must_use]
pub fn to_status(inventory: &Inventory) -> InventoryStatus {
    InventoryStatus {
        entries: inventory
            .iter()
            .map(|(id, v)| InventoryEntry {
                id: id.to_string(),
                v: v.to_owned(),
            })
            .collect(),
    }
}

/// Reads the status form back.
///
/// # Errors
/// An id that is not in the `namespace_name_group_kind` form.
pub fn from_status(
    status: &InventoryStatus,
) -> Result<Inventory, Box<dyn std::error::Error + Send + Sync>> {
    let mut inventory = Inventory::default();
    for entry in &status.entries {
        inventory.insert(entry.id.parse()?, entry.v.clone());
    }
    Ok(inventory)
}

#[async_trait::async_trait]
impl InventoryStore for StatusInventory {
    async fn load(&self, client: &kube::Client) -> Result<Option<Inventory>, InventoryError> {
        let Some(sync) = self
            .api(client)
            .get_opt(self.owner.name())
            .await
            .map_err(self.api_error("reading"))?
        else {
            return Ok(None);
        };
        let Some(stored) = sync.status.and_then(|s| s.inventory) else {
            return Ok(None);
        };
        from_status(&stored)
            .map(Some)
            .map_err(|source| InventoryError::Corrupt {
                namespace: self.owner.namespace().to_owned(),
                name: self.owner.name().to_owned(),
                source,
            })
    }

    async fn save(
        &self,
        client: &kube::Client,
        inventory: &Inventory,
        _applier_field_manager: &str,
    ) -> Result<(), InventoryError> {
        let patch = serde_json::json!({
            "apiVersion": format!("{}/{}", super::GROUP, super::VERSION),
            "kind": "GitSync",
            "metadata": {"name": self.owner.name(), "namespace": self.owner.namespace()},
            "status": {"inventory": to_status(inventory)},
        });
        self.api(client)
            .patch_status(
                self.owner.name(),
                &PatchParams::apply(&self.field_manager).force(),
                &Patch::Apply(&patch),
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
    use gitops_core::ObjectId;

    #[test]
    fn status_form_round_trip_and_errors() {
        let mut inventory = Inventory::default();
        inventory.insert(ObjectId::new("apps", "Deployment", Some("a"), "web"), "v1");
        inventory.insert(ObjectId::new("", "Namespace", None::<&str>, "a"), "v1");
        let status = to_status(&inventory);
        assert_eq!(status.entries[0].id, "_a__Namespace");
        assert_eq!(from_status(&status).unwrap(), inventory);
        let bad = InventoryStatus {
            entries: vec![InventoryEntry {
                id: "nonsense".into(),
                v: "v1".into(),
            }],
        };
        assert!(from_status(&bad).is_err());
        assert!(StatusInventory::new("ns", &"x".repeat(64), "m").is_err());
    }
}
