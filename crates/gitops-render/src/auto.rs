//! [`AutoRenderer`]: picks Kustomize, Helm or plain the way a user expects.

use std::path::{Path, PathBuf};

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
    /// Whether kustomize was searched for and not found (the error then says how to give it).
    kustomize_not_found: bool,
    /// Whether helm was searched for and not found.
    helm_not_found: bool,
}

impl AutoRenderer {
    /// Plain rendering only, until Kustomize or Helm is added.
    #[must_use]
    pub fn new(plain: PlainRenderer) -> Self {
        Self {
            plain,
            kustomize: None,
            helm: None,
            kustomize_not_found: false,
            helm_not_found: false,
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
    /// a directory that needs it is then an error naming the directory and saying how to give
    /// the tool ([`KustomizeError::NotFound`], [`HelmError::NotFound`]). A renderer already
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
        self,
        kustomize: Option<&Path>,
        helm: Option<&Path>,
    ) -> Result<Self, LocateError> {
        self.with_tools_located_by(
            &ToolLocator::new(Tool::Kustomize).explicit(kustomize),
            &ToolLocator::new(Tool::Helm).explicit(helm),
        )
    }

    /// [`AutoRenderer::with_located_tools`] with locators of the caller's (their own `PATH`
    /// or variable, see [`ToolLocator`]).
    ///
    /// ```
    /// use gitops_render::tool::{Tool, ToolLocator};
    /// use gitops_render::{AutoRenderer, PlainRenderer};
    /// let empty = tempfile::tempdir()?;
    /// let nowhere = |tool| ToolLocator::new(tool).without_variable().with_search_path(empty.path());
    /// let renderer = AutoRenderer::new(PlainRenderer::new())
    ///     .with_tools_located_by(&nowhere(Tool::Kustomize), &nowhere(Tool::Helm))?;
    /// # let _ = renderer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LocateError`]: a path given (or named by a variable) is not an executable file.
    pub fn with_tools_located_by(
        mut self,
        kustomize: &ToolLocator,
        helm: &ToolLocator,
    ) -> Result<Self, LocateError> {
        if self.kustomize.is_none() {
            let found = kustomize.locate_optional()?;
            self.kustomize_not_found = found.is_none();
            self.kustomize = found.map(|found| KustomizeRenderer::new(found.into_path()));
        }
        if self.helm.is_none() {
            let found = helm.locate_optional()?;
            self.helm_not_found = found.is_none();
            self.helm = found.map(|found| HelmRenderer::with_binary(found.into_path()));
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
                None if self.helm_not_found => Err(HelmError::NotFound {
                    dir: request.path().to_owned(),
                    source: LocateError::NotFound { tool: Tool::Helm },
                }
                .into()),
                None => Err(HelmError::NoBinary {
                    dir: request.path().to_owned(),
                }
                .into()),
            },
            SourceKind::Kustomize => match &self.kustomize {
                Some(kustomize) => kustomize.render(request).await,
                None if self.kustomize_not_found => Err(KustomizeError::NotFound {
                    dir: request.path().to_owned(),
                    source: LocateError::NotFound {
                        tool: Tool::Kustomize,
                    },
                }
                .into()),
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

    /// The Helm renderer's values files, when there is one (it is used only when `path` is
    /// a chart; materialising them for another kind costs little).
    fn reads_besides(&self, path: &Path) -> Vec<PathBuf> {
        self.helm
            .as_ref()
            .map(|helm| helm.reads_besides(path))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::SourceRoot;

    /// A directory that is a kustomization, beside a chart.
    fn sources() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::create_dir_all(dir.path().join("chart")).unwrap();
        std::fs::write(dir.path().join("app/kustomization.yaml"), "resources: []\n").unwrap();
        std::fs::write(
            dir.path().join("chart/Chart.yaml"),
            "apiVersion: v2\nname: web\nversion: 0.1.0\n",
        )
        .unwrap();
        dir
    }

    use gitops_core::error_chain as chain;

    /// Issue #15: a tool searched for and found nowhere says, when a directory needs it, how to
    /// give it (it said only that none was configured).
    #[tokio::test]
    async fn a_tool_found_nowhere_says_how_to_give_it() {
        let dir = sources();
        let empty = tempfile::tempdir().unwrap();
        let nowhere = |tool| {
            ToolLocator::new(tool)
                .without_variable()
                .with_search_path(empty.path())
        };
        let auto = AutoRenderer::new(PlainRenderer::new())
            .with_tools_located_by(&nowhere(Tool::Kustomize), &nowhere(Tool::Helm))
            .unwrap();
        let request = |path| RenderRequest::new(SourceRoot::new(dir.path()).unwrap(), path);
        let err = auto.render(&request("app")).await.unwrap_err();
        assert_eq!(
            chain(&err),
            "app: is a kustomization, but kustomize was not found: kustomize not found: set GITOPS_KUSTOMIZE, pass its path (such as --kustomize) or put it on PATH"
        );
        let err = auto.render(&request("chart")).await.unwrap_err();
        assert_eq!(
            chain(&err),
            "chart: is a Helm chart (it has Chart.yaml), but helm was not found: helm not found: set GITOPS_HELM, pass its path (such as --helm) or put it on PATH"
        );

        // Not searched for: only that none is configured.
        let err = AutoRenderer::new(PlainRenderer::new())
            .render(&request("app"))
            .await
            .unwrap_err();
        assert_eq!(
            chain(&err),
            "app: is a kustomization, but no kustomize binary is configured"
        );
    }

    #[test]
    fn tools_found_are_added_and_renderers_given_are_kept() {
        let bin = tempfile::tempdir().unwrap();
        for name in ["kustomize", "helm"] {
            let path = bin.path().join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let on_path = |tool| {
            ToolLocator::new(tool)
                .without_variable()
                .with_search_path(bin.path())
        };
        let auto = AutoRenderer::new(PlainRenderer::new())
            .with_helm(HelmRenderer::with_binary("/given/helm"))
            .with_tools_located_by(&on_path(Tool::Kustomize), &on_path(Tool::Helm))
            .unwrap();
        assert_eq!(
            auto.kustomize.as_ref().unwrap().binary(),
            bin.path().join("kustomize")
        );
        assert_eq!(
            auto.helm.as_ref().unwrap().binary(),
            Path::new("/given/helm")
        );
        assert!(!auto.kustomize_not_found && !auto.helm_not_found);

        // A wrong path given is an error, not a tool left out.
        let err = AutoRenderer::new(PlainRenderer::new())
            .with_tools_located_by(
                &on_path(Tool::Kustomize).explicit(Some("/nonexistent/kustomize")),
                &on_path(Tool::Helm),
            )
            .unwrap_err();
        assert!(!err.is_not_found(), "{err}");
    }
}
