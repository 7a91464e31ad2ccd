//! The options of a run and the progress it reports.

use std::time::Duration;

use crate::takeover::TakeoverManager;
#[cfg(doc)]
use crate::{Applier, ApplyError, HealthChecks, ObjectAction, ObjectError};

/// Progress of a run, reported by [`Applier::apply_set_with_progress`] and [`Applier::apply`].
///
/// ```
/// use gitops_apply::ApplyProgress;
/// let step = ApplyProgress::Waiting { current: 1, total: 2 };
/// let text = match &step {
///     ApplyProgress::Waiting { current, total } => format!("{current}/{total} Current"),
///     _ => String::new(),
/// };
/// assert_eq!(text, "1/2 Current");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyProgress {
    /// The set is planned.
    Planned {
        /// Objects in the plan.
        objects: usize,
        /// Groups (wave and stage) to write one after the other.
        groups: usize,
    },
    /// The live objects are read and the writes validated with a server-side dry run.
    Validated {
        /// Objects that need a write.
        to_write: usize,
        /// Objects that failed validation.
        failed: usize,
    },
    /// A group is written (and its CRDs and Namespaces settled).
    GroupDone {
        /// The group, from 0.
        group: usize,
        /// How many groups.
        groups: usize,
        /// Objects written in the group.
        written: usize,
        /// Objects that failed in the group.
        failed: usize,
    },
    /// With [`ApplyOptions::wait`]: a round of health checks of the applied set is done.
    Waiting {
        /// Objects Current.
        current: usize,
        /// Objects waited for.
        total: usize,
    },
    /// With [`ApplyOptions::wait_between_waves`]: a round of health checks of the wave before
    /// `next_wave` is done (the next wave is written when all are Current).
    WaveWaiting {
        /// The wave that waits.
        next_wave: i64,
        /// Objects of the wave before that are Current.
        current: usize,
        /// Objects of the wave before waited for.
        total: usize,
    },
    /// A sync hook object was created ([`crate::HookOutcome::Running`]) or is done (its
    /// outcome, after its delete policy).
    Hook(crate::HookRun),
}

/// Options of one run. Made with `ApplyOptions::default()` and the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// let options = gitops_apply::ApplyOptions::default()
///     .with_force(true)
///     .with_target_namespace("shop".to_owned())
///     .with_wait(Duration::from_secs(60));
/// assert!(options.force && options.prune);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// Take over fields other managers own, for every object (per object: the
    /// `apply.gitops.rs/force: enabled` annotation).
    pub force: bool,
    /// Validate and diff only; write nothing.
    pub dry_run: bool,
    /// Write the objects that pass validation even when others fail, and go on after a
    /// failed group.
    pub best_effort: bool,
    /// Sets (overrides or fills in) the namespace of every namespaced object.
    pub target_namespace: Option<String>,
    /// Creates the target namespace when missing.
    pub create_target_namespace: bool,
    /// Deletes and creates again objects whose immutable fields change, for every object (per
    /// object: `apply.gitops.rs/recreate: enabled`).
    pub recreate_on_immutable: bool,
    /// Deletes what the previous inventory lists and the set lacks.
    pub prune: bool,
    /// Accepts an empty set even when that prunes everything the inventory lists.
    pub allow_empty_set: bool,
    /// Prunes a Namespace or a CRD even when objects of the set live in that Namespace or are
    /// of that CRD's kind (their deletion would delete those desired objects with it). Off by
    /// default: such a run fails with [`ApplyError::CascadingPrune`] before any write.
    pub allow_cascading_prune: bool,
    /// Field managers whose fields are taken over (empty: none, the default): their
    /// fields become ours, so the apply sets them without a conflict and removes those the set
    /// no longer has (such as the last-applied annotation of client-side `kubectl apply`).
    /// [`TakeoverManager::defaults`] takes over what `kubectl` (any command) and
    /// `before-first-apply` own, as Flux does.
    pub takeover: Vec<TakeoverManager>,
    /// After a run that wrote everything, wait up to this long for every object of the set to
    /// be Current (health by the applier's [`HealthChecks`]), failing fast on the first Failed
    /// object ([`ApplyError::Unhealthy`]). `None` (the default): do not wait; see
    /// [`wait_for_current`](crate::wait_for_current) to wait separately.
    pub wait: Option<Duration>,
    /// Takes over objects whose ownership labels name another inventory (another set applies
    /// them too): they are applied and labelled as ours. Off by default: such an object is
    /// left alone and reported as [`ObjectAction::Skipped`] with
    /// [`ObjectError::OwnedByOtherInventory`], so that two sets never take an object from each
    /// other on every run.
    pub take_ownership: bool,
    /// Health-gated waves (opt-in, Argo CD's semantics): the objects of wave N+1 are written
    /// only when every object of wave N is Current, waiting up to this long per wave and
    /// failing the run on a Failed object or the timeout ([`ApplyError::Unhealthy`]). `None`
    /// (the default): waves are only an order.
    pub wait_between_waves: Option<Duration>,
    /// When the set's sync hooks run ([`crate::RunHooks`]): by default only when the plan is
    /// not in sync, as Argo CD's automated sync runs them, so that a reconcile loop does not
    /// run a PreSync migration on every pass.
    pub run_hooks: crate::RunHooks,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            force: false,
            dry_run: false,
            best_effort: false,
            target_namespace: None,
            create_target_namespace: false,
            recreate_on_immutable: false,
            prune: true,
            allow_empty_set: false,
            allow_cascading_prune: false,
            takeover: Vec::new(),
            wait: None,
            take_ownership: false,
            wait_between_waves: None,
            run_hooks: crate::RunHooks::default(),
        }
    }
}

impl ApplyOptions {
    /// These options, taking over the fields of `managers` (see [`ApplyOptions::takeover`]).
    ///
    /// ```
    /// use gitops_apply::{ApplyOptions, TakeoverManager};
    /// let options = ApplyOptions::default().with_takeover(TakeoverManager::defaults());
    /// assert!(!options.takeover.is_empty());
    /// ```
    #[must_use]
    pub fn with_takeover(mut self, managers: impl IntoIterator<Item = TakeoverManager>) -> Self {
        self.takeover = managers.into_iter().collect();
        self
    }

    /// These options, waiting up to `timeout` for the set to be Current after the writes (see
    /// [`ApplyOptions::wait`]; `None`: do not wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// use gitops_apply::ApplyOptions;
    /// let options = ApplyOptions::default().with_wait(Duration::from_secs(120));
    /// assert_eq!(options.wait, Some(Duration::from_secs(120)));
    /// ```
    #[must_use]
    pub fn with_wait(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.wait = timeout.into();
        self
    }

    /// These options with [`ApplyOptions::force`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_force(true);
    /// assert!(options.force);
    /// ```
    #[must_use]
    pub fn with_force(mut self, value: bool) -> Self {
        self.force = value;
        self
    }

    /// These options with [`ApplyOptions::dry_run`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_dry_run(true);
    /// assert!(options.dry_run);
    /// ```
    #[must_use]
    pub fn with_dry_run(mut self, value: bool) -> Self {
        self.dry_run = value;
        self
    }

    /// These options with [`ApplyOptions::best_effort`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_best_effort(true);
    /// assert!(options.best_effort);
    /// ```
    #[must_use]
    pub fn with_best_effort(mut self, value: bool) -> Self {
        self.best_effort = value;
        self
    }

    /// These options with [`ApplyOptions::create_target_namespace`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_create_target_namespace(true);
    /// assert!(options.create_target_namespace);
    /// ```
    #[must_use]
    pub fn with_create_target_namespace(mut self, value: bool) -> Self {
        self.create_target_namespace = value;
        self
    }

    /// These options with [`ApplyOptions::recreate_on_immutable`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_recreate_on_immutable(true);
    /// assert!(options.recreate_on_immutable);
    /// ```
    #[must_use]
    pub fn with_recreate_on_immutable(mut self, value: bool) -> Self {
        self.recreate_on_immutable = value;
        self
    }

    /// These options with [`ApplyOptions::prune`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_prune(true);
    /// assert!(options.prune);
    /// ```
    #[must_use]
    pub fn with_prune(mut self, value: bool) -> Self {
        self.prune = value;
        self
    }

    /// These options with [`ApplyOptions::allow_empty_set`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_allow_empty_set(true);
    /// assert!(options.allow_empty_set);
    /// ```
    #[must_use]
    pub fn with_allow_empty_set(mut self, value: bool) -> Self {
        self.allow_empty_set = value;
        self
    }

    /// These options with [`ApplyOptions::allow_cascading_prune`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_allow_cascading_prune(true);
    /// assert!(options.allow_cascading_prune);
    /// ```
    #[must_use]
    pub fn with_allow_cascading_prune(mut self, value: bool) -> Self {
        self.allow_cascading_prune = value;
        self
    }

    /// These options with [`ApplyOptions::take_ownership`] set to `value`.
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_take_ownership(true);
    /// assert!(options.take_ownership);
    /// ```
    #[must_use]
    pub fn with_take_ownership(mut self, value: bool) -> Self {
        self.take_ownership = value;
        self
    }

    /// These options with [`ApplyOptions::target_namespace`] set (`None`: each object's own).
    ///
    /// ```
    /// let options = gitops_apply::ApplyOptions::default().with_target_namespace("shop".to_owned());
    /// assert_eq!(options.target_namespace.as_deref(), Some("shop"));
    /// ```
    #[must_use]
    pub fn with_target_namespace(mut self, namespace: impl Into<Option<String>>) -> Self {
        self.target_namespace = namespace.into();
        self
    }

    /// These options with health-gated waves, waiting up to `timeout` per wave (see
    /// [`ApplyOptions::wait_between_waves`]; `None`: waves are only an order).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = gitops_apply::ApplyOptions::default()
    ///     .with_wait_between_waves(Duration::from_secs(30));
    /// assert_eq!(options.wait_between_waves, Some(Duration::from_secs(30)));
    /// ```
    #[must_use]
    pub fn with_wait_between_waves(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.wait_between_waves = timeout.into();
        self
    }

    /// These options with [`ApplyOptions::run_hooks`] set.
    ///
    /// ```
    /// use gitops_apply::{ApplyOptions, RunHooks};
    /// let options = ApplyOptions::default().with_run_hooks(RunHooks::Always);
    /// assert_eq!(options.run_hooks, RunHooks::Always);
    /// ```
    #[must_use]
    pub fn with_run_hooks(mut self, run_hooks: crate::RunHooks) -> Self {
        self.run_hooks = run_hooks;
        self
    }
}
