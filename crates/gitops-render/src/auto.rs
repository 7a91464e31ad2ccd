//! [`AutoRenderer`]: picks Kustomize, Helm or plain the way a user expects.

use gitops_core::Manifest;

use crate::kustomize::kustomization_file;
use crate::{
    HelmRenderer, KustomizeError, KustomizeRenderer, PlainRenderer, RenderError, RenderRequest,
    Renderer, RootError,
};

/// What kind of source a directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// YAML and JSON files.
    Plain,
    /// A kustomization.
    Kustomize,
    /// A Helm chart (never detected: Helm is used when asked for).
    Helm,
}

/// Detects the kind of the request's directory: [`SourceKind::Kustomize`] when it holds
/// `kustomization.yaml`, `kustomization.yml` or `Kustomization`, [`SourceKind::Plain`] otherwise.
/// A chart is not detected: rendering a chart needs a release name and values, so Helm is chosen
/// by the caller.
///
/// ```
/// use gitops_render::{RenderRequest, SourceKind, SourceRoot, detect};
/// let dir = tempfile::tempdir()?;
/// let request = RenderRequest::new(SourceRoot::new(dir.path())?, ".");
/// assert_eq!(detect(&request)?, SourceKind::Plain);
/// std::fs::write(dir.path().join("kustomization.yaml"), "resources: []\n")?;
/// assert_eq!(detect(&request)?, SourceKind::Kustomize);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn detect(request: &RenderRequest) -> Result<SourceKind, RootError> {
    let dir = request.resolve_dir()?;
    Ok(if kustomization_file(&dir).is_some() {
        SourceKind::Kustomize
    } else {
        SourceKind::Plain
    })
}

/// Renders with Helm when a [`HelmRenderer`] is given, else with Kustomize when the directory is
/// a kustomization, else as plain files.
///
/// ```
/// use gitops_render::{AutoRenderer, PlainRenderer, RenderRequest, Renderer, SourceRoot};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n")?;
/// let renderer = AutoRenderer::new(PlainRenderer::new());
/// let objects = renderer.render(&RenderRequest::new(SourceRoot::new(dir.path())?, ".")).await?;
/// assert_eq!(objects.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AutoRenderer {
    plain: PlainRenderer,
    kustomize: Option<KustomizeRenderer>,
    helm: Option<HelmRenderer>,
}

impl AutoRenderer {
    /// Plain rendering only, until Kustomize or Helm is added.
    #[must_use]
    pub fn new(plain: PlainRenderer) -> Self {
        Self {
            plain,
            kustomize: None,
            helm: None,
        }
    }

    /// Renders kustomizations with `kustomize`.
    #[must_use]
    pub fn with_kustomize(mut self, kustomize: KustomizeRenderer) -> Self {
        self.kustomize = Some(kustomize);
        self
    }

    /// Renders the directory as a Helm chart.
    #[must_use]
    pub fn with_helm(mut self, helm: HelmRenderer) -> Self {
        self.helm = Some(helm);
        self
    }

    /// The kind this renderer will use for `request`.
    pub fn kind_for(&self, request: &RenderRequest) -> Result<SourceKind, RootError> {
        if self.helm.is_some() {
            return Ok(SourceKind::Helm);
        }
        detect(request)
    }
}

#[async_trait::async_trait]
impl Renderer for AutoRenderer {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        match self.kind_for(request)? {
            SourceKind::Helm => {
                let helm = self.helm.as_ref().expect("kind_for saw a Helm renderer");
                helm.render(request).await
            }
            SourceKind::Kustomize => match &self.kustomize {
                Some(kustomize) => kustomize.render(request).await,
                None => Err(KustomizeError::NoBinary {
                    dir: request.path().to_owned(),
                }
                .into()),
            },
            SourceKind::Plain => self.plain.render(request).await,
        }
    }
}
