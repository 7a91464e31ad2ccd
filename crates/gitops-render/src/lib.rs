//! Render a source directory into Kubernetes objects ([`gitops_core::Manifest`]s that remember
//! where they came from), safely.
//!
//! - [`Renderer`]: a directory of a [`SourceRoot`] in, objects out. Implementations:
//!   [`PlainRenderer`] (YAML and JSON files, in-process and parallel), [`KustomizeRenderer`]
//!   (the `kustomize` binary, jailed) and [`HelmRenderer`] (`helm template`, offline; hooks are
//!   never returned as release objects, see [`HookPolicy`]); [`AutoRenderer`] picks one the way
//!   a user expects: a kustomization, else a chart (`Chart.yaml`), else plain files, whose
//!   kustomization subdirectories are built with kustomize.
//! - [`Substitution`]: `${VAR}` with shell-style operators, asked for per render with
//!   [`RenderRequest::with_substitution`] or for every render with [`Renderer::then`]. Every
//!   renderer applies it to each rendered document
//!   before validating it as a Kubernetes object, so variables may stand anywhere a value can
//!   (`replicas: ${N}` gives a number, `namespace: ${NS}` is checked after substitution), and a
//!   value can never change an object's structure.
//! - [`PostRenderer`]: a step that runs on any renderer's validated output;
//!   [`Renderer::then`] composes them.
//! - Finding the tools: [`tool`] locates `kustomize` and `helm` from an explicit path, else
//!   `GITOPS_KUSTOMIZE` / `GITOPS_HELM`, else `PATH` (and checks their version when asked);
//!   [`KustomizeRenderer::locate`], [`HelmRenderer::locate`] and
//!   [`AutoRenderer::with_located_tools`] use it.
//! - Progress and cancellation: [`RenderRequest::with_progress`] reports which directory is
//!   rendered with which renderer, and when it is done; [`RenderRequest::with_cancellation`]
//!   stops a render (kustomize and helm are killed).
//! - Safety: every path is checked against the root ([`SourceRoot`]): `..`, absolute paths and
//!   symbolic links that leave it are refused, files have a size limit, YAML alias bombs are
//!   refused by the parser's budget, and external tools run with a clean environment, a timeout
//!   and cancellation.
//! - Offline: rendering never reads the network, nor files of the host outside the root.
//!   This is enforced before a tool runs, by refusing what would make it fetch: for kustomize,
//!   remote references in every field that names a path or URL, and any kustomization key that
//!   is not exactly one of kustomize's field names (kustomize matches keys ignoring case) or is
//!   a YAML merge key ([`kustomization_references`]); for helm, undeclared dependencies, and
//!   any `$ref`, `$dynamicRef`, `$recursiveRef` or `$schema` in a values schema of the chart or
//!   its subcharts (archives included) that is not inside the schema itself
//!   ([`check_values_schema`]). As a second line, the tools run with a cleared environment (so
//!   the caller's credentials never reach them), private `HOME`, XDG and `HELM_*` directories,
//!   and `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` pointing at a closed loopback port with an
//!   empty `NO_PROXY`, so that a fetch that got past the checks fails at once. (Go reaches
//!   loopback addresses without a proxy: the checks are what guard those.)
//! - Secrets: no error, log line or `Debug` output of this crate shows a substitution
//!   variable's value, the text it produced, or the text of the scalar it went into (see
//!   [`SubstituteError`]); names and paths from the source are printed with control
//!   characters escaped ([`gitops_core::escape`]), so a file name cannot forge a log line.
//!
//! ```
//! use gitops_render::{PlainRenderer, RenderRequest, Renderer, SourceRoot, Substitution};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(
//!     dir.path().join("app.yaml"),
//!     "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-${ENV}\n  namespace: ${ENV}\nspec:\n  replicas: ${REPLICAS:=2}\n",
//! )?;
//! let request = RenderRequest::new(SourceRoot::new(dir.path())?, ".")
//!     .with_substitution(Substitution::new().with_variable("ENV", "prod"));
//! let objects = PlainRenderer::new().render(&request).await?;
//! assert_eq!(objects[0].name(), "web-prod");
//! assert_eq!(objects[0].namespace(), Some("prod"));
//! assert_eq!(objects[0].object()["spec"]["replicas"], 2);
//! assert_eq!(objects[0].origin().to_string(), "app.yaml:1");
//! # Ok(())
//! # }
//! ```

mod auto;
mod helm;
mod kustomize;
mod needs;
mod plain;
mod process;
mod root;
mod substitute;
pub mod tool;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gitops_core::escape::{Escaped, EscapedPath};
use gitops_core::{Manifest, ObjectId, Origin, ParseLimits};
use tokio_util::sync::CancellationToken;

pub use auto::{AutoRenderer, SourceKind, detect};
pub use helm::{HOOK_ANNOTATION, HelmError, HelmRenderer, HookPolicy, check_values_schema};
pub use kustomize::{
    KustomizationReference, KustomizeError, KustomizeRenderer, PINNED_KUSTOMIZE_VERSION,
    kustomization_references,
};
pub use needs::{reads_references, referenced_paths};
pub use plain::{PlainError, PlainRenderer};
pub use process::{ProcessError, ToolLimits};
pub use root::{RootError, SourceRoot};
pub use substitute::{
    DEFAULT_MAX_OBJECT_BYTES, DEFAULT_MAX_SCALAR_BYTES, DISABLE_ANNOTATIONS, MAX_NESTING,
    SubstituteError, Substitution,
};
pub use tool::PINNED_HELM_VERSION;

/// What to render: a directory inside a source root; optionally the variables to substitute, a
/// token that cancels the render and a progress callback.
///
/// ```
/// use gitops_render::{RenderRequest, SourceRoot, Substitution};
/// let dir = tempfile::tempdir()?;
/// let request = RenderRequest::new(SourceRoot::new(dir.path())?, "apps/web")
///     .with_substitution(Substitution::new().with_variable("ENV", "prod"))
///     .with_progress(|event| eprintln!("{event}"));
/// assert_eq!(request.path(), std::path::Path::new("apps/web"));
/// assert!(request.substitution().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RenderRequest {
    root: SourceRoot,
    path: PathBuf,
    cancel: CancellationToken,
    substitution: Option<Arc<Substitution>>,
    progress: Option<ProgressCallback>,
    parse_limits: ParseLimits,
}

/// The progress callback of a request.
#[derive(Clone)]
struct ProgressCallback(Arc<dyn Fn(&RenderProgress) + Send + Sync>);

impl fmt::Debug for ProgressCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressCallback")
    }
}

/// What a render reports through [`RenderRequest::with_progress`].
///
/// ```
/// use gitops_render::RenderProgress;
/// let event = RenderProgress::Started { path: "apps/web".into(), renderer: "kustomize" };
/// assert_eq!(event.to_string(), "rendering apps/web with kustomize");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenderProgress {
    /// A renderer starts on a directory.
    Started {
        /// The directory, relative to the root.
        path: PathBuf,
        /// The renderer: `plain`, `kustomize` or `helm`.
        renderer: &'static str,
    },
    /// A renderer has finished a directory.
    Finished {
        /// The directory, relative to the root.
        path: PathBuf,
        /// The renderer.
        renderer: &'static str,
        /// How many objects it rendered.
        objects: usize,
        /// How long it took.
        elapsed: Duration,
    },
    /// A Helm hook was left out of the rendered set ([`HookPolicy::Skip`]).
    HookSkipped {
        /// The chart directory, relative to the root.
        path: PathBuf,
        /// The object's kind and name (`Job migrate`), as written in the chart.
        object: String,
        /// Its hook kinds (`pre-install`, `post-upgrade`, ...).
        hooks: Vec<String>,
        /// The template that produced it.
        origin: Origin,
    },
}

impl fmt::Display for RenderProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started { path, renderer } => {
                write!(f, "rendering {} with {renderer}", EscapedPath(path))
            }
            Self::Finished {
                path,
                renderer,
                objects,
                elapsed,
            } => write!(
                f,
                "rendered {} with {renderer}: {objects} objects in {elapsed:?}",
                EscapedPath(path)
            ),
            Self::HookSkipped {
                path,
                object,
                hooks,
                origin,
            } => write!(
                f,
                "{}: left out helm hook {} ({}) from {}: hooks are not release objects (HookPolicy::Include keeps them)",
                EscapedPath(path),
                Escaped(object),
                Escaped(&hooks.join(",")),
                origin,
            ),
        }
    }
}

/// Reports `Started` when made and `Finished` by [`ProgressScope::finish`].
pub(crate) struct ProgressScope<'a> {
    request: &'a RenderRequest,
    renderer: &'static str,
    started: std::time::Instant,
}

impl<'a> ProgressScope<'a> {
    pub(crate) fn start(request: &'a RenderRequest, renderer: &'static str) -> Self {
        request.report(&RenderProgress::Started {
            path: request.path.clone(),
            renderer,
        });
        Self {
            request,
            renderer,
            started: std::time::Instant::now(),
        }
    }

    /// Ends the render of one tool's output (helm, kustomize): substitution when the request
    /// asks for it, with the scalar styles `plain` found in the output before its origins were
    /// rewritten; validation into manifests (`invalid` wraps what fails); the duplicate check;
    /// and the Finished event.
    pub(crate) fn finish_documents<E>(
        self,
        mut documents: Vec<gitops_core::Document>,
        plain: &[substitute::PlainScalars],
        invalid: impl FnOnce(gitops_core::ParseError) -> E,
    ) -> Result<Vec<Manifest>, RenderError>
    where
        RenderError: From<E>,
    {
        if let Some(substitution) = self.request.substitution() {
            substitution.substitute_documents(&mut documents, plain)?;
        }
        let manifests = gitops_core::documents_to_manifests(documents).map_err(invalid)?;
        check_unique(&manifests)?;
        self.finish(&manifests);
        Ok(manifests)
    }

    pub(crate) fn finish(self, manifests: &[Manifest]) {
        self.request.report(&RenderProgress::Finished {
            path: self.request.path.clone(),
            renderer: self.renderer,
            objects: manifests.len(),
            elapsed: self.started.elapsed(),
        });
    }
}

impl RenderRequest {
    /// Renders `path` (relative to the root; `"."` for the root itself).
    #[must_use]
    pub fn new(root: SourceRoot, path: impl Into<PathBuf>) -> Self {
        Self {
            root,
            path: path.into(),
            cancel: CancellationToken::new(),
            substitution: None,
            progress: None,
            parse_limits: ParseLimits::default(),
        }
    }

    /// The limits on the YAML the renderers parse: the files of a plain directory and the
    /// output of `kustomize build` and `helm template` (default [`ParseLimits::default`], which
    /// admits tens of thousands of objects and refuses alias bombs and deep nesting).
    ///
    /// ```
    /// use gitops_core::ParseLimits;
    /// use gitops_render::{RenderRequest, SourceRoot};
    /// let dir = tempfile::tempdir()?;
    /// let request = RenderRequest::new(SourceRoot::new(dir.path())?, ".")
    ///     .with_parse_limits(ParseLimits::default().with_max_documents(500_000));
    /// assert_eq!(request.parse_limits().max_documents, 500_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_parse_limits(mut self, limits: ParseLimits) -> Self {
        self.parse_limits = limits;
        self
    }

    /// The limits on the YAML the renderers parse.
    #[must_use]
    pub fn parse_limits(&self) -> &ParseLimits {
        &self.parse_limits
    }

    /// Substitutes `${VAR}` expressions in every rendered document, before validation (see
    /// [`Substitution`]).
    #[must_use]
    pub fn with_substitution(mut self, substitution: Substitution) -> Self {
        self.substitution = Some(Arc::new(substitution));
        self
    }

    /// Calls `progress` as the render goes (from the thread that renders).
    #[must_use]
    pub fn with_progress(
        mut self,
        progress: impl Fn(&RenderProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(ProgressCallback(Arc::new(progress)));
        self
    }

    /// The substitution to apply, if any.
    #[must_use]
    pub fn substitution(&self) -> Option<&Substitution> {
        self.substitution.as_deref()
    }

    /// Reports `event` to the progress callback, if any (for renderers outside this crate).
    pub fn report(&self, event: &RenderProgress) {
        if let Some(ProgressCallback(progress)) = &self.progress {
            progress(event);
        }
    }

    /// Cancels the render when `cancel` is cancelled (external tools are killed).
    #[must_use]
    pub fn with_cancellation(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The source root.
    #[must_use]
    pub fn root(&self) -> &SourceRoot {
        &self.root
    }

    /// The directory to render, relative to the root.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cancellation token.
    #[must_use]
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The directory to render, resolved and checked to be inside the root.
    pub fn resolve_dir(&self) -> Result<PathBuf, RootError> {
        self.root.resolve_dir(&self.path)
    }
}

/// The errors of rendering, whichever renderer or step produced them.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A path would leave the source root, or a file is too large.
    #[error(transparent)]
    Root(Box<RootError>),
    /// The plain renderer failed.
    #[error(transparent)]
    Plain(Box<PlainError>),
    /// Kustomize failed.
    #[error(transparent)]
    Kustomize(Box<KustomizeError>),
    /// Helm failed.
    #[error(transparent)]
    Helm(Box<HelmError>),
    /// Substitution failed.
    #[error(transparent)]
    Substitute(Box<SubstituteError>),
    /// Two objects have the same identity.
    #[error(transparent)]
    Duplicate(Box<DuplicateObject>),
    /// The render was cancelled.
    #[error("render cancelled")]
    Cancelled,
    /// An error of a renderer outside this crate.
    #[error("{renderer}: {source}", renderer = Escaped(renderer))]
    Other {
        /// The renderer's name.
        renderer: String,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Boxes each error into its variant, keeping [`RenderError`] small.
macro_rules! boxed_from {
    ($($variant:ident($error:ty)),* $(,)?) => {$(
        impl From<$error> for RenderError {
            fn from(error: $error) -> Self {
                Self::$variant(Box::new(error))
            }
        }
    )*};
}

boxed_from!(
    Root(RootError),
    Plain(PlainError),
    Kustomize(KustomizeError),
    Helm(HelmError),
    Substitute(SubstituteError),
    Duplicate(DuplicateObject),
);

impl From<Box<DuplicateObject>> for RenderError {
    fn from(error: Box<DuplicateObject>) -> Self {
        Self::Duplicate(error)
    }
}

/// Two objects with the same [`ObjectId`]; names both places.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id} is defined twice: at {first} and at {second}", id = Escaped(&id.display_name()))]
pub struct DuplicateObject {
    /// The shared identity.
    pub id: ObjectId,
    /// Where it is defined first.
    pub first: Origin,
    /// Where it is defined again.
    pub second: Origin,
}

/// Checks that no two manifests share an [`ObjectId`].
///
/// ```
/// use gitops_core::parse_manifests;
/// let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";
/// let manifests = parse_manifests(text, "a.yaml")?;
/// let err = gitops_render::check_unique(&manifests).unwrap_err();
/// assert_eq!(err.to_string(), "ConfigMap a is defined twice: at a.yaml:1 and at a.yaml:6 (document 2)");
/// # Ok::<(), gitops_core::ParseError>(())
/// ```
pub fn check_unique(manifests: &[Manifest]) -> Result<(), Box<DuplicateObject>> {
    let mut seen: HashMap<ObjectId, &Origin> = HashMap::with_capacity(manifests.len());
    for manifest in manifests {
        if let Some(first) = seen.insert(manifest.id(), manifest.origin()) {
            return Err(Box::new(DuplicateObject {
                id: manifest.id(),
                first: first.clone(),
                second: manifest.origin().clone(),
            }));
        }
    }
    Ok(())
}

/// Renders a directory of a source into Kubernetes objects, each with its origin.
///
/// Implementations take their options when built and the directory per call, check every path
/// against the request's [`SourceRoot`], honour its cancellation token, apply its
/// [`Substitution`] to each document before validating it (see [`Substitution::substitute_yaml`]),
/// report progress with [`RenderRequest::report`], and return objects in a deterministic order
/// with unique identities.
#[async_trait::async_trait]
pub trait Renderer: Send + Sync {
    /// Renders the request's directory.
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError>;

    /// The paths (relative to the root, files or directories) that rendering `path` reads
    /// besides `path` itself and what its files name, whatever those files say: for a sparse
    /// fetch, which materialises only `path`, what its files reference ([`referenced_paths`])
    /// and these. [`HelmRenderer`] gives its values files (relative to the chart, so they may be
    /// outside it), [`AutoRenderer`] its Helm renderer's; the default is none. A path that
    /// would leave the root is left out (the render refuses it, naming it).
    ///
    /// ```
    /// use std::path::{Path, PathBuf};
    /// use gitops_render::{HelmRenderer, PlainRenderer, Renderer};
    /// let helm = HelmRenderer::new("helm", "web").values_file("../../env/prod.yaml");
    /// assert_eq!(helm.reads_besides(Path::new("charts/web")), [PathBuf::from("env/prod.yaml")]);
    /// assert!(PlainRenderer::new().reads_besides(Path::new("apps")).is_empty());
    /// ```
    fn reads_besides(&self, path: &Path) -> Vec<PathBuf> {
        let _ = path;
        Vec::new()
    }

    /// Runs `step` on this renderer's output.
    ///
    /// ```
    /// use gitops_core::Manifest;
    /// use gitops_render::{PlainRenderer, PostRenderer, RenderError, RenderRequest, Renderer};
    ///
    /// /// Labels every object with the directory it was rendered from.
    /// struct LabelPath;
    ///
    /// #[async_trait::async_trait]
    /// impl PostRenderer for LabelPath {
    ///     async fn post_render(
    ///         &self,
    ///         request: &RenderRequest,
    ///         mut manifests: Vec<Manifest>,
    ///     ) -> Result<Vec<Manifest>, RenderError> {
    ///         for manifest in &mut manifests {
    ///             manifest.set_label("example.com/path", &request.path().to_string_lossy());
    ///         }
    ///         Ok(manifests)
    ///     }
    /// }
    ///
    /// let renderer = PlainRenderer::new().then(LabelPath);
    /// # let _ = renderer;
    /// ```
    #[must_use]
    fn then<P: PostRenderer>(self, step: P) -> PostRendered<Self, P>
    where
        Self: Sized,
    {
        PostRendered {
            renderer: self,
            step,
        }
    }
}

#[async_trait::async_trait]
impl<R: Renderer + ?Sized> Renderer for Box<R> {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        (**self).render(request).await
    }

    fn reads_besides(&self, path: &Path) -> Vec<PathBuf> {
        (**self).reads_besides(path)
    }
}

#[async_trait::async_trait]
impl<R: Renderer + ?Sized> Renderer for std::sync::Arc<R> {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        (**self).render(request).await
    }

    fn reads_besides(&self, path: &Path) -> Vec<PathBuf> {
        (**self).reads_besides(path)
    }
}

/// A step that runs on rendered objects: it may change, add or remove them.
#[async_trait::async_trait]
pub trait PostRenderer: Send + Sync {
    /// The request the renderer gets, when this step needs another one; `None` (the default)
    /// keeps it. [`Substitution`] uses it to have the renderer substitute in each document
    /// before validation.
    fn prepare(&self, request: &RenderRequest) -> Option<RenderRequest> {
        let _ = request;
        None
    }

    /// Transforms `manifests`, rendered for `request`.
    async fn post_render(
        &self,
        request: &RenderRequest,
        manifests: Vec<Manifest>,
    ) -> Result<Vec<Manifest>, RenderError>;
}

/// A renderer followed by a post-render step, made by [`Renderer::then`]. The result is checked
/// again for duplicate identities, since a step may rename objects.
#[derive(Debug, Clone)]
pub struct PostRendered<R, P> {
    renderer: R,
    step: P,
}

#[async_trait::async_trait]
impl<R: Renderer, P: PostRenderer> Renderer for PostRendered<R, P> {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let prepared = self.step.prepare(request);
        let request = prepared.as_ref().unwrap_or(request);
        let manifests = self.renderer.render(request).await?;
        if request.cancellation().is_cancelled() {
            return Err(RenderError::Cancelled);
        }
        let manifests = self.step.post_render(request, manifests).await?;
        check_unique(&manifests)?;
        Ok(manifests)
    }

    fn reads_besides(&self, path: &Path) -> Vec<PathBuf> {
        self.renderer.reads_besides(path)
    }
}
