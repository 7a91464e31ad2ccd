//! [`install_crd`]: applies a CustomResourceDefinition and waits until it is served.

use std::time::Duration;

use gitops_core::escape::Escaped;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

/// Why a CRD could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrdError {
    /// The CRD has no name.
    #[error("the CRD has no metadata.name")]
    Unnamed,
    /// Applying it failed.
    #[error("applying the CRD {}", Escaped(.name))]
    Apply {
        /// The CRD's name.
        name: String,
        /// The API's error.
        #[source]
        source: kube::Error,
    },
    /// Reading it back failed.
    #[error("reading the CRD {}", Escaped(.name))]
    Read {
        /// The CRD's name.
        name: String,
        /// The API's error.
        #[source]
        source: kube::Error,
    },
    /// It did not become Established in time.
    #[error("the CRD {} is not Established after {timeout:?}", Escaped(.name))]
    NotEstablished {
        /// The CRD's name.
        name: String,
        /// How long it was waited for.
        timeout: Duration,
    },
    /// The token was cancelled.
    #[error("installing the CRD was cancelled")]
    Cancelled,
}

/// Installs (or updates) `crd` with server-side apply under `field_manager` and waits until
/// the API server serves it (`Established`), at most `timeout`.
///
/// ```no_run
/// use std::time::Duration;
/// use kube::CustomResourceExt;
/// # async fn example<K: CustomResourceExt>(client: kube::Client) -> Result<(), gitops_sync::controller::CrdError> {
/// let cancel = tokio_util::sync::CancellationToken::new();
/// gitops_sync::controller::install_crd(&client, &K::crd(), "my-controller", Duration::from_secs(60), &cancel).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`CrdError`].
pub async fn install_crd(
    client: &kube::Client,
    crd: &CustomResourceDefinition,
    field_manager: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), CrdError> {
    let name = crd.metadata.name.clone().ok_or(CrdError::Unnamed)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(crd),
    )
    .await
    .map_err(|source| CrdError::Apply {
        name: name.clone(),
        source,
    })?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let live = api.get(&name).await.map_err(|source| CrdError::Read {
            name: name.clone(),
            source,
        })?;
        let established = live
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CrdError::NotEstablished { name, timeout });
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(CrdError::Cancelled),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
