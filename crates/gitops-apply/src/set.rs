//! The desired set: what a render produced, and whether it may prune.

use gitops_core::Manifest;

/// A set of desired objects. The applier prunes what the previous inventory lists and a set
/// lacks, so a set that may prune can only be made from a successful render
/// ([`DesiredSet::from_render`]): after a failed fetch or render the caller has an error, not a
/// set. A set made with [`DesiredSet::apply_only`] never prunes, whatever the options say.
/// Deleting everything an inventory lists is the separate verb
/// [`Applier::delete_all`](crate::Applier::delete_all).
///
/// ```
/// use gitops_apply::DesiredSet;
/// let objects = gitops_core::parse_manifests(
///     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: apps}\n", "a.yaml");
/// let set = DesiredSet::from_render(objects)?;
/// assert!(set.may_prune());
/// assert!(!DesiredSet::apply_only(set.manifests().to_vec()).may_prune());
/// # Ok::<(), gitops_core::ParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DesiredSet {
    manifests: Vec<Manifest>,
    may_prune: bool,
}

impl DesiredSet {
    /// The set of a render, or its error: `DesiredSet::from_render(render())?`. Such a set
    /// prunes what left it (with [`ApplyOptions::prune`](crate::ApplyOptions::prune)).
    ///
    /// ```
    /// use gitops_apply::DesiredSet;
    /// let failed: Result<Vec<gitops_core::Manifest>, String> = Err("fetch failed".into());
    /// assert!(DesiredSet::from_render(failed).is_err());
    /// ```
    ///
    /// # Errors
    /// The render's error, unchanged.
    pub fn from_render<E>(render: Result<Vec<Manifest>, E>) -> Result<Self, E> {
        render.map(|manifests| Self {
            manifests,
            may_prune: true,
        })
    }

    /// A set that is only applied: its plan has no stale objects and nothing is pruned,
    /// whatever the options say (for objects that do not come from a whole render, such as a
    /// few objects added by hand).
    ///
    /// ```
    /// let set = gitops_apply::DesiredSet::apply_only(Vec::new());
    /// assert!(!set.may_prune() && set.manifests().is_empty());
    /// ```
    #[must_use]
    pub fn apply_only(manifests: Vec<Manifest>) -> Self {
        Self {
            manifests,
            may_prune: false,
        }
    }

    /// The objects.
    ///
    /// ```
    /// assert!(gitops_apply::DesiredSet::apply_only(Vec::new()).manifests().is_empty());
    /// ```
    #[must_use]
    pub fn manifests(&self) -> &[Manifest] {
        &self.manifests
    }

    /// The objects, moved out of the set (a plan takes them without a copy).
    pub(crate) fn into_manifests(self) -> Vec<Manifest> {
        self.manifests
    }

    /// Whether the set may prune (it comes from a render).
    ///
    /// ```
    /// let set = gitops_apply::DesiredSet::from_render(Ok::<_, String>(Vec::new())).unwrap();
    /// assert!(set.may_prune());
    /// ```
    #[must_use]
    pub fn may_prune(&self) -> bool {
        self.may_prune
    }
}
