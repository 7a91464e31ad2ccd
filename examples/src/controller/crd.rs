//! The CustomResourceDefinition of [`GitSync`]: printed, or installed and waited for.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, CustomResourceExt};
use tokio_util::sync::CancellationToken;

use super::resource::GitSync;

/// Why the CRD could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// Applying it failed.
    #[error("applying the CRD {name}")]
    Apply {
        /// The CRD's name.
        name: String,
        /// The failure.
        #[source]
        source: kube::Error,
    },
    /// Reading it back failed.
    #[error("reading the CRD {name}")]
    Read {
        /// The CRD's name.
        name: String,
        /// The failure.
        #[source]
        source: kube::Error,
    },
    /// It did not become Established in time.
    #[error("the CRD {name} is not Established after {timeout:?}")]
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

/// The CRD as YAML, for `kubectl apply -f -`.
///
/// ```
/// let yaml = gitops_examples::controller::crd_yaml();
/// assert!(yaml.contains("name: gitsyncs.examples.gitops-rs.io"));
/// ```
#[must_use]
pub fn crd_yaml() -> String {
    serde_saphyr::to_string(&GitSync::crd()).expect("a CRD serialises")
}

/// Installs (or updates) the CRD with server-side apply under `field_manager` and waits until the
/// API server serves it (`Established`).
///
/// # Errors
/// [`CrdError`].
pub async fn install_crd(
    client: &kube::Client,
    field_manager: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), CrdError> {
    let crd = GitSync::crd();
    let name = kube::ResourceExt::name_any(&crd);
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&crd),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_crd_file_is_current() {
        let committed = include_str!("../../controller/gitsync-crd.yaml");
        assert!(
            committed == crd_yaml(),
            "examples/controller/gitsync-crd.yaml is stale: regenerate it with `cargo run -p gitops-examples --bin controller -- crd > examples/controller/gitsync-crd.yaml`"
        );
    }

    #[test]
    fn the_example_is_a_valid_gitsync() {
        let text = include_str!("../../controller/gitsync-example.yaml");
        let manifests = gitops_core::parse_manifests(text, "gitsync-example.yaml").unwrap();
        let sync: GitSync = serde_json::from_value(manifests[0].object().clone()).unwrap();
        let settings = sync.spec.settings().unwrap();
        assert_eq!(settings.interval, Duration::from_secs(300));
        assert_eq!(settings.timeout, Duration::from_secs(120));
        assert!(sync.spec.wait && sync.spec.prune);
    }

    #[test]
    fn the_yaml_parses_back_as_one_crd() {
        let manifests = gitops_core::parse_manifests(&crd_yaml(), "crd.yaml").unwrap();
        assert_eq!(manifests.len(), 1);
        assert_eq!(manifests[0].kind(), "CustomResourceDefinition");
        assert_eq!(manifests[0].name(), "gitsyncs.examples.gitops-rs.io");
        let back: CustomResourceDefinition =
            serde_json::from_value(manifests[0].object().clone()).unwrap();
        assert_eq!(back.spec, GitSync::crd().spec);
    }
}
