//! [`StatusInventory`]: the inventory kept in the status of the synced resource itself.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use gitops_apply::{Inventory, InventoryError, InventoryOwner, InventoryStore};
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::SyncResource;
use super::status::InventoryStatus;

/// An [`InventoryStore`] in the status of one resource of kind `K` (`status.inventory`), as
/// Flux keeps a Kustomization's. It writes only `status.inventory`, with server-side apply
/// under its own field manager, so that the conditions (written by another field manager)
/// never clear it.
///
/// ```no_run
/// # fn example<K: gitops_sync::controller::SyncResource>() -> Result<(), gitops_apply::InventoryError> {
/// let store = gitops_sync::controller::StatusInventory::<K>::new("team-a", "apps", "my-controller-inventory")?;
/// # Ok(()) }
/// ```
pub struct StatusInventory<K> {
    owner: InventoryOwner,
    field_manager: String,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for StatusInventory<K> {
    fn clone(&self) -> Self {
        Self {
            owner: self.owner.clone(),
            field_manager: self.field_manager.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for StatusInventory<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusInventory")
            .field("owner", &self.owner)
            .field("field_manager", &self.field_manager)
            .finish()
    }
}

impl<K: SyncResource> StatusInventory<K> {
    /// The inventory of the resource `namespace/name`, written with `field_manager`.
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
            kind: PhantomData,
        })
    }

    fn api(&self, client: &kube::Client) -> Api<K> {
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

#[async_trait::async_trait]
impl<K: SyncResource> InventoryStore for StatusInventory<K> {
    async fn load(&self, client: &kube::Client) -> Result<Option<Inventory>, InventoryError> {
        let Some(object) = self
            .api(client)
            .get_opt(self.owner.name())
            .await
            .map_err(self.api_error("reading"))?
        else {
            return Ok(None);
        };
        let Some(stored) = object.sync_status().and_then(|s| s.inventory.as_ref()) else {
            return Ok(None);
        };
        stored
            .to_inventory()
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
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"name": self.owner.name(), "namespace": self.owner.namespace()},
            "status": {"inventory": InventoryStatus::from_inventory(inventory)},
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
