//! [`AutoRenderer`]: picks Kustomize, Helm or plain the way a user expects.

use std::path::Path;

use gitops_core::Manifest;

use crate::kustomize::kustomization_file;
use crate::tool::{LocateError, Tool, ToolLocator};
use crate::{
    HelmError, HelmRenderer, KustomizeError, KustomizeRenderer, PlainRenderer, RenderError,
    RenderRequest, Renderer, RootError,
};

/// What kind of source a directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// YAML and JSON files.
    Plain,
    /// A kustomization.
    Kustomize,
    /// A Helm chart: a directory holding `Chart.yaml`.
    Helm,
}

/// Detects the kind of the request's directory, in this order: [`SourceKind::Kustomize`] when it
/// holds `kustomization.yaml`, `kustomization.yml` or `Kustomization` (a kustomization may hold
/// a chart: kustomize's `helmCharts` is its business); else [`SourceKind::Helm`] when it holds
/// `Chart.yaml`; else [`SourceKind::Plain`].
///
/// ```
/// use gitops_render::{RenderRequest, SourceKind, SourceRoot, detect};
/// let dir = tempfile::tempdir()?;
/// let request = RenderRequest::new(SourceRoot::new(dir.path())?, ".");
/// assert_eq!(detect(&request)?, SourceKind::Plain);
/// std::fs::write(dir.path().join("Chart.yaml"), "apiVersion: v2\nname: web\nversion: 0.1.0\n")?;
/// assert_eq!(detect(&request)?, SourceKind::Helm);
/// std::fs::write(dir.path().join("kustomization.yaml"), "resources: []\n")?;
/// assert_eq!(detect(&request)?, SourceKind::Kustomize);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn detect(request: &RenderRequest) -> Result<SourceKind, RootError> {
    let dir = request.resolve_dir()?;
    Ok(if kustomization_file(&dir).is_some() {
        SourceKind::Kustomize
    } else if dir.join("Chart.yaml").is_file() {
        SourceKind::Helm
    } else {
        SourceKind::Plain
    })
}

/// Renders each directory with the renderer [`detect`] picks: Kustomize for a kustomization,
/// else Helm for a chart (a directory holding `Chart.yaml`), else plain files. Kustomize and Helm
/// need their renderers ([`AutoRenderer::with_kustomize`], [`AutoRenderer::with_helm`]): a
/// directory that needs one that was not given is an error naming it. The plain renderer builds
/// kustomizations in subdirectories with the kustomize renderer given here, unless it has its own
/// ([`PlainRenderer::with_kustomize`]).
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

    /// Renders charts with `helm` (its release name, values and capabilities apply to every
    /// chart rendered; without a release name set, each release is named after its chart's
    /// directory, see [`HelmRenderer::with_binary`]).
    #[must_use]
    pub fn with_helm(mut self, helm: HelmRenderer) -> Self {
        self.helm = Some(helm);
        self
    }

    /// Adds Kustomize and Helm (with [`HelmRenderer::with_binary`]'s defaults) for each tool
    /// found: `kustomize` / `helm` if given, else the binary `GITOPS_KUSTOMIZE` / `GITOPS_HELM`
    /// names, else the first on `PATH` (see [`crate::tool`]). A tool found nowhere is left out:
    /// a directory that needs it is then an error naming the directory. A renderer already
    /// added is kept.
    ///
    /// ```
    /// use gitops_render::{AutoRenderer, PlainRenderer};
    /// let renderer = AutoRenderer::new(PlainRenderer::new()).with_located_tools(None, None)?;
    /// # let _ = renderer;
    /// # Ok::<(), gitops_render::tool::LocateError>(())
    /// ```
    ///
    /// # Errors
    /// [`LocateError`]: a path given (or named by a variable) is not an executable file.
    pub fn with_located_tools(
        mut self,
        kustomize: Option<&Path>,
        helm: Option<&Path>,
    ) -> Result<Self, LocateError> {
        if self.kustomize.is_none()
            && let Some(found) = ToolLocator::new(Tool::Kustomize)
                .explicit(kustomize)
                .locate_optional()?
        {
            self.kustomize = Some(KustomizeRenderer::new(found.into_path()));
        }
        if self.helm.is_none()
            && let Some(found) = ToolLocator::new(Tool::Helm)
                .explicit(helm)
                .locate_optional()?
        {
            self.helm = Some(HelmRenderer::with_binary(found.into_path()));
        }
        Ok(self)
    }

    /// The kind this renderer will use for `request` (see [`detect`]).
    pub fn kind_for(&self, request: &RenderRequest) -> Result<SourceKind, RootError> {
        detect(request)
    }
}

#[async_trait::async_trait]
impl Renderer for AutoRenderer {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        match self.kind_for(request)? {
            SourceKind::Helm => match &self.helm {
                Some(helm) => helm.render(request).await,
                None => Err(HelmError::NoBinary {
                    dir: request.path().to_owned(),
                }
                .into()),
            },
            SourceKind::Kustomize => match &self.kustomize {
                Some(kustomize) => kustomize.render(request).await,
                None => Err(KustomizeError::NoBinary {
                    dir: request.path().to_owned(),
                }
                .into()),
            },
            SourceKind::Plain => match &self.kustomize {
                Some(kustomize) if !self.plain.has_kustomize() => {
                    self.plain
                        .clone()
                        .with_kustomize(kustomize.clone())
                        .render(request)
                        .await
                }
                _ => self.plain.render(request).await,
            },
        }
    }
}
