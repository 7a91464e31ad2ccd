//! [`RenderedSet`]: a rendered set of objects whose right to prune is in its type.

use std::sync::Arc;

use gitops_apply::DesiredSet;
use gitops_core::Manifest;
use gitops_source::Revision;

/// The objects of one successful render of one revision. Only
/// [`RenderedSet::from_render`] makes one.
#[derive(Clone, Debug)]
pub struct Rendered {
    revision: Revision,
    manifests: Arc<Vec<Manifest>>,
}

impl Rendered {
    /// The revision rendered.
    ///
    /// ```
    /// use gitops_source::Revision;
    /// use gitops_sync::RenderedSet;
    /// let set = RenderedSet::from_render(Revision::from_string("sha256:1"), Ok::<_, String>(vec![]))?;
    /// let (RenderedSet::Current(rendered) | RenderedSet::LastGood(rendered)) = &set;
    /// assert_eq!(rendered.revision().as_str(), "sha256:1");
    /// # Ok::<(), String>(())
    /// ```
    #[must_use]
    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// The objects.
    ///
    /// ```
    /// use gitops_source::Revision;
    /// use gitops_sync::RenderedSet;
    /// let set = RenderedSet::from_render(Revision::from_string("sha256:1"), Ok::<_, String>(vec![]))?;
    /// let (RenderedSet::Current(rendered) | RenderedSet::LastGood(rendered)) = &set;
    /// assert!(rendered.manifests().is_empty());
    /// # Ok::<(), String>(())
    /// ```
    #[must_use]
    pub fn manifests(&self) -> &[Manifest] {
        &self.manifests
    }
}

/// What a sync applies, and whether it may prune:
/// - [`Current`](Self::Current): rendered from the revision the source has now; it may prune
///   what left it.
/// - [`LastGood`](Self::LastGood): the last good set served again because fetching or rendering
///   the current revision failed; it is only applied, never pruned from, since it may not be
///   what the source holds now.
///
/// A failed fetch or render gives an error, not a set, so it can never prune.
///
/// ```
/// use gitops_source::Revision;
/// use gitops_sync::RenderedSet;
///
/// let objects = gitops_core::parse_manifests(
///     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", "a.yaml");
/// let set = RenderedSet::from_render(Revision::from_string("sha256:1"), objects)?;
/// assert!(set.may_prune() && set.to_desired().may_prune());
/// let served = set.serve_again();
/// assert!(!served.may_prune() && !served.to_desired().may_prune());
/// assert_eq!(served.manifests().len(), 1);
/// # Ok::<(), gitops_core::ParseError>(())
/// ```
#[derive(Clone, Debug)]
pub enum RenderedSet {
    /// Rendered from the source's current revision: may prune.
    Current(Rendered),
    /// The last good set, served again after a failure: may not prune.
    LastGood(Rendered),
}

impl RenderedSet {
    /// The set of a render of `revision`, or the render's error: `RenderedSet::from_render(rev,
    /// renderer.render(&request).await)?`. The set is [`Current`](Self::Current).
    ///
    /// ```
    /// use gitops_source::Revision;
    /// let failed: Result<Vec<gitops_core::Manifest>, String> = Err("bad YAML".into());
    /// assert!(gitops_sync::RenderedSet::from_render(Revision::from_string("sha256:1"), failed).is_err());
    /// ```
    ///
    /// # Errors
    /// The render's error, unchanged.
    pub fn from_render<E>(revision: Revision, render: Result<Vec<Manifest>, E>) -> Result<Self, E> {
        render.map(|manifests| {
            Self::Current(Rendered {
                revision,
                manifests: Arc::new(manifests),
            })
        })
    }

    /// The same objects, served again after a failure: [`LastGood`](Self::LastGood), which
    /// never prunes.
    ///
    /// ```
    /// use gitops_source::Revision;
    /// let set = gitops_sync::RenderedSet::from_render(Revision::from_string("sha256:1"), Ok::<_, String>(vec![]))?;
    /// assert!(!set.serve_again().may_prune());
    /// # Ok::<(), String>(())
    /// ```
    #[must_use]
    pub fn serve_again(self) -> Self {
        match self {
            Self::Current(rendered) | Self::LastGood(rendered) => Self::LastGood(rendered),
        }
    }

    /// Whether applying this set may prune: only a set rendered from the current revision.
    ///
    /// ```
    /// use gitops_source::Revision;
    /// let set = gitops_sync::RenderedSet::from_render(Revision::from_string("sha256:1"), Ok::<_, String>(vec![]))?;
    /// assert!(set.may_prune());
    /// # Ok::<(), String>(())
    /// ```
    #[must_use]
    pub fn may_prune(&self) -> bool {
        matches!(self, Self::Current(_))
    }

    /// Whether this is the last good set served again.
    ///
    /// ```
    /// use gitops_source::Revision;
    /// let set = gitops_sync::RenderedSet::from_render(Revision::from_string("sha256:1"), Ok::<_, String>(vec![]))?;
    /// assert!(set.serve_again().is_last_good());
    /// # Ok::<(), String>(())
    /// ```
    #[must_use]
    pub fn is_last_good(&self) -> bool {
        matches!(self, Self::LastGood(_))
    }

    /// The revision rendered.
    ///
    /// ```
    /// use gitops_source::Revision;
    /// let set = gitops_sync::RenderedSet::from_render(Revision::from_string("sha256:1"), Ok::<_, String>(vec![]))?;
    /// assert_eq!(set.revision().as_str(), "sha256:1");
    /// # Ok::<(), String>(())
    /// ```
    #[must_use]
    pub fn revision(&self) -> &Revision {
        &self.rendered().revision
    }

    /// The objects.
    ///
    /// ```
    /// use gitops_source::Revision;
    /// let set = gitops_sync::RenderedSet::from_render(Revision::from_string("sha256:1"), Ok::<_, String>(vec![]))?;
    /// assert!(set.manifests().is_empty());
    /// # Ok::<(), String>(())
    /// ```
    #[must_use]
    pub fn manifests(&self) -> &[Manifest] {
        &self.rendered().manifests
    }

    /// The set as the applier takes it: [`DesiredSet::from_render`] for a current set,
    /// [`DesiredSet::apply_only`] for the last good set (which then never prunes, whatever the
    /// options say).
    ///
    /// ```
    /// use gitops_source::Revision;
    /// let set = gitops_sync::RenderedSet::from_render(Revision::from_string("sha256:1"), Ok::<_, String>(vec![]))?;
    /// assert!(set.to_desired().may_prune());
    /// assert!(!set.serve_again().to_desired().may_prune());
    /// # Ok::<(), String>(())
    /// ```
    #[must_use]
    pub fn to_desired(&self) -> DesiredSet {
        match self {
            Self::Current(rendered) => DesiredSet::from_render(Ok::<_, std::convert::Infallible>(
                rendered.manifests.to_vec(),
            ))
            .unwrap_or_else(|never| match never {}),
            Self::LastGood(rendered) => DesiredSet::apply_only(rendered.manifests.to_vec()),
        }
    }

    fn rendered(&self) -> &Rendered {
        match self {
            Self::Current(rendered) | Self::LastGood(rendered) => rendered,
        }
    }
}
