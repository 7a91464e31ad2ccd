//! A real local Kubernetes control plane for tests, demos and manual work: etcd,
//! kube-apiserver and kube-controller-manager on 127.0.0.1, built once from pinned Go modules
//! with the machine's Go (see [`tools`]), plus the pinned helm and kustomize binaries.
//!
//! Tests of one test binary share one control plane through [`shared`], each in a namespace of
//! its own from [`ControlPlane::create_namespace`]; a test that needs a control plane to itself
//! (to stop it, or with other controllers) starts one with [`ControlPlane::builder`].
//!
//! ```no_run
//! # async fn example() -> Result<(), gitops_envtest::Error> {
//! let control_plane = gitops_envtest::shared().await?;
//! let client = control_plane.client().await?;
//! let namespace = control_plane.create_namespace("my-test").await?;
//! # drop((client, namespace));
//! # Ok(())
//! # }
//! ```
//!
//! Setting `GITOPS_ENVTEST_KUBECONFIG` makes [`shared`] use a control plane that is already
//! running (for instance one from `gitops-envtest start`) instead of starting its own.

mod certs;
mod control_plane;
pub mod tools;

pub use certs::CertError;
pub use control_plane::{ControlPlane, ControlPlaneBuilder, DEFAULT_CONTROLLERS, Error};
pub use tools::{Tool, ToolError};

static SHARED: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();

/// The control plane shared by every test of this process, started on first use and stopped by
/// its watchdog when the process exits. With `GITOPS_ENVTEST_KUBECONFIG` set, the cluster of that
/// kubeconfig instead.
pub async fn shared() -> Result<&'static ControlPlane, Error> {
    SHARED
        .get_or_try_init(|| async {
            match std::env::var_os("GITOPS_ENVTEST_KUBECONFIG").filter(|v| !v.is_empty()) {
                Some(path) => ControlPlane::connect(path).await,
                None => ControlPlane::start().await,
            }
        })
        .await
}
