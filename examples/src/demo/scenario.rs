//! The demo's scenario: the reconciler takes the demo repository through its revisions while
//! the scenario commits, edits live objects behind Git's back, and checks each outcome on the
//! cluster.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gitops_apply::{ConfigMapInventory, InventoryStore as _, ObjectAction};
use gitops_core::ObjectId;
use gitops_diff::Colour;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::app::{
    APP_PATH, DEFAULT_NAMESPACE, REVISION_1, REVISION_2, REVISION_3_REMOVED, greeting_group, names,
};
use super::narrator::{Narrator, Tone};
use super::repo::{Commit, DemoRepository, RepositoryError};
use gitops_sync::spec::{GitRef, InventorySpec, SourceSpec, SyncSpec};
use gitops_sync::{
    CycleEvent, FactoryError, Reconciler, SpecUnit, SyncError, SyncReport, SyncUnitBuilder,
    UnitFactory,
};

/// The steps of the scenario, as numbered on screen.
pub const STEPS: usize = 5;

/// What the hand edit writes into the ConfigMap, as `kubectl edit` would.
pub const HAND_EDITED_GREETING: &str = "Hello from a hand edit";

/// The replicas `kubectl scale` sets in the drift step (Git says 0).
pub const HAND_SCALED_REPLICAS: i32 = 3;

/// The errors of the scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The demo repository failed.
    #[error("the demo repository")]
    Repository(#[from] RepositoryError),
    /// The sync unit could not be configured.
    #[error("configuring the sync unit")]
    Config(#[source] Box<FactoryError>),
    /// A working directory for the unit's artifacts could not be made.
    #[error("making a working directory")]
    WorkDir(#[source] std::io::Error),
    /// The sync unit could not be set up, or the dry run failed.
    #[error("step {step}: {action}")]
    Sync {
        /// The step.
        step: usize,
        /// What was being done.
        action: &'static str,
        /// The failure.
        #[source]
        source: SyncError,
    },
    /// A request to the cluster failed.
    #[error("step {step}: {action}")]
    Kube {
        /// The step.
        step: usize,
        /// What was being done.
        action: String,
        /// The failure.
        #[source]
        source: kube::Error,
    },
    /// The inventory could not be read.
    #[error("step {step}: reading the inventory {location}")]
    Inventory {
        /// The step.
        step: usize,
        /// Where the inventory is.
        location: String,
        /// The failure.
        #[source]
        source: gitops_apply::InventoryError,
    },
    /// The reconciler did not get the cluster where the step expects it in time.
    #[error(
        "step {step}: no reconcile cycle {expected} within {waited:?}; the last cycle said: {last}"
    )]
    StepTimedOut {
        /// The step.
        step: usize,
        /// What the step waited for.
        expected: &'static str,
        /// How long it waited.
        waited: Duration,
        /// The last cycle's status line.
        last: String,
    },
    /// The cluster is not as the step expects after the reconciler said it was done.
    #[error("step {step}: {what}")]
    Unexpected {
        /// The step.
        step: usize,
        /// What is wrong.
        what: String,
    },
    /// The reconciler stopped before the scenario was done.
    #[error("the reconciler stopped before step {step} was done")]
    ReconcilerStopped {
        /// The step.
        step: usize,
    },
    /// The caller cancelled the scenario (Ctrl-C).
    #[error("cancelled during step {step}")]
    Cancelled {
        /// The step.
        step: usize,
    },
}

/// How the scenario runs.
///
/// ```
/// use std::time::Duration;
/// use gitops_examples::demo::DemoOptions;
/// let options = DemoOptions::new().namespace("demo-1").interval(Duration::from_secs(1));
/// assert_eq!(options.inventory_location(), "default/demo-1");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct DemoOptions {
    namespace: String,
    interval: Duration,
    step_timeout: Duration,
    wait_timeout: Duration,
    colour: Colour,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            interval: Duration::from_secs(2),
            step_timeout: Duration::from_secs(60),
            wait_timeout: Duration::from_secs(30),
            colour: Colour::Auto,
        }
    }
}

impl DemoOptions {
    /// The defaults: namespace `gitops-demo`, a cycle every 2 s, 60 s per step, 30 s of
    /// waiting for health per cycle, colours when standard output is a terminal.
    pub fn new() -> Self {
        Self::default()
    }

    /// The namespace of the demo app (its files' `gitops-demo` is renamed); the inventory is
    /// the ConfigMap `default/<namespace>`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long the reconciler sleeps between cycles.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long a step waits for the reconciler before it fails.
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = timeout;
        self
    }

    /// How long each cycle waits for the objects to become Current.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Whether the plan's diffs are coloured.
    pub fn colour(mut self, colour: Colour) -> Self {
        self.colour = colour;
        self
    }

    /// The namespace of the demo app.
    #[must_use]
    pub fn namespace_name(&self) -> &str {
        &self.namespace
    }

    /// Where the reconciler keeps its inventory.
    #[must_use]
    pub fn inventory_location(&self) -> String {
        format!("default/{}", self.namespace)
    }
}

/// One reconcile cycle, as the scenario saw it.
#[derive(Debug, Clone)]
pub struct CycleSummary {
    /// The cycle number, from 1.
    pub cycle: u64,
    /// The revision applied (`main@sha1:<hash>`), when the cycle got that far.
    pub revision: Option<gitops_source::Revision>,
    /// Whether the revision was new to the reconciler.
    pub new_revision: bool,
    /// What happened to each object.
    pub changes: Vec<(ObjectId, ObjectAction)>,
    /// Objects written although the revision had been applied already.
    pub drift_corrected: usize,
    /// The error chain of a failed cycle.
    pub error: Option<String>,
    /// The cycle's status line.
    pub status_line: String,
}

impl CycleSummary {
    fn from_event(event: &CycleEvent<'_>) -> Self {
        let report: Option<&SyncReport> = match event.result {
            Ok(report) => Some(report),
            Err(SyncError::Wait { report, .. }) => Some(report),
            Err(_) => None,
        };
        Self {
            cycle: event.cycle,
            revision: report.map(|r| r.revision.clone()),
            new_revision: report.is_some_and(|r| r.new_revision),
            changes: report
                .map(|r| {
                    r.change_set
                        .changes
                        .iter()
                        .map(|c| (c.id.clone(), c.action))
                        .collect()
                })
                .unwrap_or_default(),
            drift_corrected: report.map_or(0, SyncReport::drift_corrected),
            error: event.result.as_ref().err().map(SyncError::chain),
            status_line: match event.result {
                Ok(report) => report.status_line(),
                Err(error) => format!(
                    "failed after {:.2}s: {}; retry in {:?}",
                    event.duration.as_secs_f64(),
                    error.chain(),
                    event.next_in
                ),
            },
        }
    }

    /// Whether the cycle succeeded.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// How many objects had `action`.
    #[must_use]
    pub fn count(&self, action: ObjectAction) -> usize {
        self.changes.iter().filter(|(_, a)| *a == action).count()
    }

    /// What happened to the object of this kind and name, if it was in the cycle.
    #[must_use]
    pub fn action_of(&self, kind: &str, name: &str) -> Option<ObjectAction> {
        self.changes
            .iter()
            .find(|(id, _)| id.kind == kind && id.name == name)
            .map(|(_, action)| *action)
    }

    /// Whether the cycle applied this commit successfully.
    #[must_use]
    pub fn applied(&self, commit: &Commit) -> bool {
        self.is_ok()
            && self
                .revision
                .as_ref()
                .and_then(gitops_source::Revision::sha1)
                == Some(commit.hash.as_str())
    }

    fn tone(&self) -> Tone {
        if !self.is_ok() {
            Tone::Bad
        } else if self.drift_corrected > 0 {
            Tone::Notice
        } else if self
            .changes
            .iter()
            .any(|(_, a)| !matches!(a, ObjectAction::Unchanged | ObjectAction::Skipped))
        {
            Tone::Good
        } else {
            Tone::Plain
        }
    }
}

/// What the scenario did, step by step; every figure was also checked on the cluster.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The three commits of the demo repository, in order.
    pub commits: Vec<Commit>,
    /// Objects the initial plan (a dry run) would create.
    pub planned_creates: usize,
    /// The plan as shown: unified diffs.
    pub plan_text: String,
    /// The cycle that applied revision 1.
    pub initial: CycleSummary,
    /// The cycle that applied revision 2.
    pub change: CycleSummary,
    /// The (last) cycle that corrected the hand edits.
    pub drift: CycleSummary,
    /// Objects written to correct the hand edits, over the cycles since the edits.
    pub drift_corrected: usize,
    /// The cycle that applied revision 3 and pruned the Service.
    pub prune: CycleSummary,
    /// The inventory after the prune.
    pub inventory_after_prune: BTreeSet<ObjectId>,
    /// Every cycle the reconciler ran.
    pub cycles: Vec<CycleSummary>,
    /// How long the scenario took.
    pub elapsed: Duration,
}

/// The scenario against a cluster: it makes the demo repository, shows the plan, runs the
/// [`Reconciler`] (gitops-sync's) in the background and takes it through the steps,
/// narrating on `narrator`.
///
/// ```no_run
/// # async fn example(client: kube::Client) -> Result<(), gitops_examples::demo::ScenarioError> {
/// use gitops_examples::demo::{DemoOptions, Narrator, Scenario};
/// let narrator = Narrator::stdout();
/// let cancel = tokio_util::sync::CancellationToken::new();
/// let report = Scenario::new(client, &narrator, DemoOptions::new()).run(&cancel).await?;
/// assert_eq!(report.initial.count(gitops_apply::ObjectAction::Created), 6);
/// # Ok(())
/// # }
/// ```
pub struct Scenario<'a> {
    client: kube::Client,
    narrator: &'a Narrator,
    options: DemoOptions,
}

impl std::fmt::Debug for Scenario<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The steps' side of the channel from the reconciler's callback.
struct Cycles {
    receiver: mpsc::UnboundedReceiver<CycleSummary>,
    seen: Vec<CycleSummary>,
    timeout: Duration,
}

impl Cycles {
    /// Waits for the first cycle (from now) that satisfies `done`.
    async fn wait_for(
        &mut self,
        step: usize,
        expected: &'static str,
        cancel: &CancellationToken,
        mut done: impl FnMut(&CycleSummary) -> bool,
    ) -> Result<CycleSummary, ScenarioError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return Err(ScenarioError::Cancelled { step }),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(ScenarioError::StepTimedOut {
                        step,
                        expected,
                        waited: started.elapsed(),
                        last: self.seen.last().map_or_else(
                            || "(no cycle yet)".to_owned(),
                            |c| c.status_line.clone(),
                        ),
                    });
                }
                next = self.receiver.recv() => next,
            };
            let Some(cycle) = next else {
                return Err(ScenarioError::ReconcilerStopped { step });
            };
            self.seen.push(cycle.clone());
            if done(&cycle) {
                return Ok(cycle);
            }
        }
    }

    /// Waits until the cycles since the hand edits have corrected both edited objects;
    /// returns the last of them and how many objects they corrected.
    async fn wait_for_corrections(
        &mut self,
        second: &Commit,
        cancel: &CancellationToken,
    ) -> Result<(CycleSummary, usize), ScenarioError> {
        // A cycle may start between the two edits and correct only the first: the step is done
        // when both objects have been corrected, in one cycle or in several.
        let mut corrected = BTreeSet::new();
        let mut drift_corrected = 0;
        let drift = self
            .wait_for(4, "correcting the hand edits", cancel, |c| {
                if c.applied(second) && !c.new_revision {
                    drift_corrected += c.drift_corrected;
                    for (kind, name) in
                        [("ConfigMap", names::CONFIG_MAP), ("Deployment", names::WEB)]
                    {
                        if c.action_of(kind, name) == Some(ObjectAction::Configured) {
                            corrected.insert(kind);
                        }
                    }
                }
                corrected.len() == 2
            })
            .await?;
        Ok((drift, drift_corrected))
    }
}

impl<'a> Scenario<'a> {
    /// The scenario on the cluster of `client`.
    #[must_use]
    pub fn new(client: kube::Client, narrator: &'a Narrator, options: DemoOptions) -> Self {
        Self {
            client,
            narrator,
            options,
        }
    }

    /// The unit of the demo repository's app, from the library's factory: its inventory in
    /// `default`, a wait after changes; the reconciler owns the fields Git sets (hand edits by
    /// other field managers are taken back, as Flux does).
    async fn unit(
        &self,
        repository: &DemoRepository,
        dry_run: bool,
        work_dir: &std::path::Path,
    ) -> Result<SyncUnitBuilder, ScenarioError> {
        let spec = SyncSpec {
            source: SourceSpec {
                url: Some(repository.url()),
                reference: Some(GitRef {
                    branch: Some("main".into()),
                    ..GitRef::default()
                }),
                ..SourceSpec::default()
            },
            path: APP_PATH.to_owned(),
            interval: format!("{}ms", self.options.interval.as_millis().max(1)),
            inventory: Some(InventorySpec {
                config_map: Some(self.options.namespace.clone()),
            }),
            wait: true,
            timeout: Some(format!(
                "{}ms",
                self.options.wait_timeout.as_millis().max(1)
            )),
            ..SyncSpec::default()
        };
        let factory = UnitFactory::new(self.client.clone(), work_dir).dry_run(dry_run);
        factory
            .unit(SpecUnit::new(spec, "default"))
            .await
            .map_err(|e| ScenarioError::Config(Box::new(e)))
    }

    /// Runs the whole scenario. Cancelling `cancel` stops it between (or inside) steps with
    /// [`ScenarioError::Cancelled`]; the reconciler is stopped in every case, and the demo
    /// repository removed.
    ///
    /// # Errors
    /// See [`ScenarioError`]: a step that fails or times out, or a cluster that is not as the
    /// step expects.
    pub async fn run(self, cancel: &CancellationToken) -> Result<DemoReport, ScenarioError> {
        let started = Instant::now();
        let narrator = self.narrator;
        let namespace = self.options.namespace.clone();

        // Step 1: the repository.
        narrator.step(1, STEPS, "A Git repository with the app");
        let repository = DemoRepository::create(&namespace).await?;
        let first = repository.head().await?;
        narrator.line(
            Tone::Plain,
            &format!(
                "git init {} and commit the files of examples/demo/app:",
                repository.path().display()
            ),
        );
        narrator.block(&repository.last_commit_stat().await?);

        // Step 2: the plan, then the reconciler's first cycle.
        narrator.step(2, STEPS, "The initial plan, then the reconciler applies it");
        let (plan_text, planned_creates) = self.initial_plan(&repository, cancel).await?;

        let work_dir = tempfile::tempdir().map_err(ScenarioError::WorkDir)?;
        let unit = (self.unit(&repository, false, work_dir.path()).await?)
            .build()
            .map_err(|source| ScenarioError::Sync {
                step: 2,
                action: "setting up the sync unit",
                source,
            })?;
        narrator.line(
            Tone::Plain,
            &format!(
                "Starting the reconciler: {} every {:?}, inventory {}",
                unit.name(),
                self.options.interval,
                self.options.inventory_location()
            ),
        );
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut cycles = Cycles {
            receiver,
            seen: Vec::new(),
            timeout: self.options.step_timeout,
        };
        let stop = cancel.child_token();
        let reconciler = Reconciler::new(unit, self.options.interval).run(&stop, |event| {
            let summary = CycleSummary::from_event(event);
            narrator.status(summary.cycle, summary.tone(), &summary.status_line);
            // The steps may be done already; a closed channel is fine.
            let _ = sender.send(summary);
        });
        let steps = async {
            let result = self
                .steps(
                    &repository,
                    first,
                    plan_text,
                    planned_creates,
                    &mut cycles,
                    &stop,
                )
                .await;
            stop.cancel();
            result
        };
        let (_unit, result) = tokio::join!(reconciler, steps);
        let mut report = result?;
        // Cycles that finished after the last step are reported too.
        while let Ok(cycle) = cycles.receiver.try_recv() {
            cycles.seen.push(cycle);
        }
        report.cycles = cycles.seen;
        report.elapsed = started.elapsed();
        narrate_done(narrator, &report);
        Ok(report)
    }

    /// The dry run of revision 1, shown, and checked to create every object of revision 1.
    async fn initial_plan(
        &self,
        repository: &DemoRepository,
        cancel: &CancellationToken,
    ) -> Result<(String, usize), ScenarioError> {
        let (plan_text, planned_creates) = self.plan(repository, cancel).await?;
        self.narrator.line(
            Tone::Plain,
            &format!("Plan (a server-side dry run): {planned_creates} objects to create"),
        );
        self.narrator.block(&plan_text);
        if planned_creates != REVISION_1.len() {
            return Err(ScenarioError::Unexpected {
                step: 2,
                what: format!(
                    "the plan creates {planned_creates} objects, not the {} of revision 1",
                    REVISION_1.len()
                ),
            });
        }
        Ok((plan_text, planned_creates))
    }

    /// A dry run of revision 1: the plan text and how many objects it creates.
    async fn plan(
        &self,
        repository: &DemoRepository,
        cancel: &CancellationToken,
    ) -> Result<(String, usize), ScenarioError> {
        let sync_error = |action| {
            move |source: SyncError| {
                if source.is_cancelled() {
                    ScenarioError::Cancelled { step: 2 }
                } else {
                    ScenarioError::Sync {
                        step: 2,
                        action,
                        source,
                    }
                }
            }
        };
        let work_dir = tempfile::tempdir().map_err(ScenarioError::WorkDir)?;
        let mut dry_run = (self.unit(repository, true, work_dir.path()).await?)
            .build()
            .map_err(sync_error("setting up the dry run"))?;
        let report = dry_run
            .sync(cancel)
            .await
            .map_err(sync_error("planning revision 1 (dry run)"))?;
        let colour = if self.narrator.colour() {
            Colour::Always
        } else {
            Colour::Never
        };
        let text = gitops_sync::plan_text(&self.client, &report.change_set, colour).await;
        // The demo starts from a cluster without the app: every object is created. Anything else
        // (an object in the way, a namespace left by an earlier run) is named.
        let not_created: Vec<String> = report
            .change_set
            .changes
            .iter()
            .filter(|change| change.action != ObjectAction::Created)
            .map(ToString::to_string)
            .collect();
        if !not_created.is_empty() {
            return Err(ScenarioError::Unexpected {
                step: 2,
                what: format!(
                    "the demo needs a namespace without the app, and {} is not: {}; pick \
                     another with --namespace",
                    self.options.namespace,
                    not_created.join("; ")
                ),
            });
        }
        Ok((text, report.change_set.count(ObjectAction::Created)))
    }

    /// Steps 2 (the reconciler's first cycle) to 5, each checked on the cluster.
    async fn steps(
        &self,
        repository: &DemoRepository,
        first: Commit,
        plan_text: String,
        planned_creates: usize,
        cycles: &mut Cycles,
        cancel: &CancellationToken,
    ) -> Result<DemoReport, ScenarioError> {
        let initial = self.first_apply(&first, cycles, cancel).await?;
        let (second, change) = self.change_the_app(repository, cycles, cancel).await?;
        let (drift, drift_corrected) = self.correct_drift(&second, cycles, cancel).await?;
        let (third, prune, inventory) = self.prune_a_file(repository, cycles, cancel).await?;
        Ok(DemoReport {
            commits: vec![first, second, third],
            planned_creates,
            plan_text,
            initial,
            change,
            drift,
            drift_corrected,
            prune,
            inventory_after_prune: inventory,
            cycles: Vec::new(),
            elapsed: Duration::ZERO,
        })
    }

    /// The end of step 2: the reconciler's first cycle creates every object of revision 1.
    async fn first_apply(
        &self,
        first: &Commit,
        cycles: &mut Cycles,
        cancel: &CancellationToken,
    ) -> Result<CycleSummary, ScenarioError> {
        let initial = cycles
            .wait_for(2, "applying revision 1", cancel, |c| c.applied(first))
            .await?;
        let created = initial.count(ObjectAction::Created);
        if created != REVISION_1.len() {
            return Err(ScenarioError::Unexpected {
                step: 2,
                what: format!(
                    "the first cycle created {created} objects, not {}: {}",
                    REVISION_1.len(),
                    initial.status_line
                ),
            });
        }
        let greeting = self.greeting(2).await?;
        self.narrator.line(
            Tone::Good,
            &format!(
                "{created} objects created and healthy; ConfigMap {}/{} says {greeting:?}",
                self.options.namespace,
                names::CONFIG_MAP
            ),
        );
        Ok(initial)
    }

    /// Step 3: a commit changes the app; the next cycle configures what it changed.
    async fn change_the_app(
        &self,
        repository: &DemoRepository,
        cycles: &mut Cycles,
        cancel: &CancellationToken,
    ) -> Result<(Commit, CycleSummary), ScenarioError> {
        let narrator = self.narrator;
        narrator.step(3, STEPS, "A commit changes the app");
        let second = repository
            .commit(
                "Revision 2: a new greeting, nginx 1.28, a new message",
                REVISION_2,
                &[],
            )
            .await?;
        narrator.line(
            Tone::Plain,
            "git commit (the files of examples/demo/revision-2):",
        );
        narrator.block(&repository.last_commit_patch().await?);
        narrator.line(
            Tone::Plain,
            "The reconciler notices the new commit on its next poll:",
        );
        let change = cycles
            .wait_for(3, "applying revision 2", cancel, |c| c.applied(&second))
            .await?;
        self.check_revision_2(&second, &change).await?;
        Ok((second, change))
    }

    /// Checks that the cycle configured what revision 2 changed, and the cluster holds it.
    async fn check_revision_2(
        &self,
        second: &Commit,
        change: &CycleSummary,
    ) -> Result<(), ScenarioError> {
        for (kind, name) in [
            ("ConfigMap", names::CONFIG_MAP),
            ("Deployment", names::WEB),
            ("Greeting", names::GREETING),
        ] {
            if change.action_of(kind, name) != Some(ObjectAction::Configured) {
                return Err(ScenarioError::Unexpected {
                    step: 3,
                    what: format!(
                        "{kind} {name} was {:?} at revision 2, not configured: {}",
                        change.action_of(kind, name),
                        change.status_line
                    ),
                });
            }
        }
        let greeting = self.greeting(3).await?;
        self.expect(
            3,
            "the ConfigMap's greeting",
            &greeting,
            "Hello from revision 2",
        )?;
        let image = self.image(3).await?;
        self.expect(3, "the Deployment's image", &image, "nginx:1.28")?;
        let message = self.greeting_message(3).await?;
        self.expect(
            3,
            "the Greeting's message",
            &message,
            "Hello again, from revision 2!",
        )?;
        self.narrator.line(
            Tone::Good,
            &format!(
                "Revision {} applied: 3 objects configured; greeting {greeting:?}, image {image}, \
                 Greeting {} says {message:?}",
                second.short_hash(),
                names::GREETING
            ),
        );
        Ok(())
    }

    /// Step 4: hand edits of live objects; the next cycles take them back. Returns the cycle
    /// that finished the correction and how many objects were corrected.
    async fn correct_drift(
        &self,
        second: &Commit,
        cycles: &mut Cycles,
        cancel: &CancellationToken,
    ) -> Result<(CycleSummary, usize), ScenarioError> {
        let narrator = self.narrator;
        narrator.step(4, STEPS, "Someone changes the cluster by hand");
        self.hand_edit().await?;
        narrator.line(
            Tone::Notice,
            &format!(
                "kubectl edit configmap {}: greeting = {HAND_EDITED_GREETING:?}",
                names::CONFIG_MAP
            ),
        );
        narrator.line(
            Tone::Notice,
            &format!(
                "kubectl scale deployment {} --replicas={HAND_SCALED_REPLICAS}",
                names::WEB
            ),
        );
        narrator.line(
            Tone::Plain,
            "Git did not change; the next cycle compares the live objects with it anyway:",
        );
        let (drift, drift_corrected) = cycles.wait_for_corrections(second, cancel).await?;
        let greeting = self.greeting(4).await?;
        self.expect(
            4,
            "the ConfigMap's greeting",
            &greeting,
            "Hello from revision 2",
        )?;
        let replicas = self.replicas(4).await?;
        self.expect(4, "the Deployment's replicas", &replicas.to_string(), "0")?;
        narrator.line(
            Tone::Good,
            &format!(
                "Drift corrected ({drift_corrected} objects): greeting {greeting:?} and replicas \
                 {replicas} again, as in Git"
            ),
        );
        Ok((drift, drift_corrected))
    }

    /// Step 5: a file leaves Git; the next cycle prunes its object, and the one after has
    /// nothing to do. Returns the commit, the pruning cycle and the inventory after it.
    async fn prune_a_file(
        &self,
        repository: &DemoRepository,
        cycles: &mut Cycles,
        cancel: &CancellationToken,
    ) -> Result<(Commit, CycleSummary, BTreeSet<ObjectId>), ScenarioError> {
        let narrator = self.narrator;
        narrator.step(5, STEPS, "A file leaves Git: its object is pruned");
        let third = repository
            .commit(
                "Revision 3: the web app needs no Service",
                &[],
                REVISION_3_REMOVED,
            )
            .await?;
        narrator.line(Tone::Plain, "git rm app/service.yaml && git commit:");
        narrator.block(&repository.last_commit_stat().await?);
        let prune = cycles
            .wait_for(5, "pruning the Service", cancel, |c| c.applied(&third))
            .await?;
        let inventory = self.check_pruned(&prune).await?;
        narrator.line(Tone::Plain, "One more cycle: nothing left to do.");
        cycles
            .wait_for(5, "in sync", cancel, |c| {
                c.applied(&third) && c.tone() == Tone::Plain
            })
            .await?;
        Ok((third, prune, inventory))
    }

    /// Checks that the cycle pruned the Service, and that neither the cluster nor the
    /// inventory still has it; returns the inventory.
    async fn check_pruned(
        &self,
        prune: &CycleSummary,
    ) -> Result<BTreeSet<ObjectId>, ScenarioError> {
        let namespace = self.options.namespace.as_str();
        if prune.action_of("Service", names::WEB) != Some(ObjectAction::Pruned) {
            return Err(ScenarioError::Unexpected {
                step: 5,
                what: format!("the Service was not pruned: {}", prune.status_line),
            });
        }
        if self.service_exists(5).await? {
            return Err(ScenarioError::Unexpected {
                step: 5,
                what: format!(
                    "Service {namespace}/{} still exists after the prune",
                    names::WEB
                ),
            });
        }
        let inventory = self.inventory(5).await?;
        if inventory.iter().any(|id| id.kind == "Service") {
            return Err(ScenarioError::Unexpected {
                step: 5,
                what: format!("the inventory still lists the Service: {inventory:?}"),
            });
        }
        self.narrator.line(
            Tone::Good,
            &format!(
                "Service {namespace}/{} deleted; the inventory lists {} objects",
                names::WEB,
                inventory.len()
            ),
        );
        Ok(inventory)
    }

    fn expect(
        &self,
        step: usize,
        what: &str,
        found: &str,
        expected: &str,
    ) -> Result<(), ScenarioError> {
        if found == expected {
            Ok(())
        } else {
            Err(ScenarioError::Unexpected {
                step,
                what: format!("{what} is {found:?}, expected {expected:?}"),
            })
        }
    }

    fn kube_error(step: usize, action: String) -> impl FnOnce(kube::Error) -> ScenarioError {
        move |source| ScenarioError::Kube {
            step,
            action,
            source,
        }
    }

    async fn greeting(&self, step: usize) -> Result<String, ScenarioError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.options.namespace);
        let config_map = api.get(names::CONFIG_MAP).await.map_err(Self::kube_error(
            step,
            format!("reading ConfigMap {}", names::CONFIG_MAP),
        ))?;
        Ok(config_map
            .data
            .and_then(|mut d| d.remove(names::GREETING_KEY))
            .unwrap_or_default())
    }

    async fn deployment(&self, step: usize) -> Result<Deployment, ScenarioError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.options.namespace);
        api.get(names::WEB).await.map_err(Self::kube_error(
            step,
            format!("reading Deployment {}", names::WEB),
        ))
    }

    async fn replicas(&self, step: usize) -> Result<i32, ScenarioError> {
        let deployment = self.deployment(step).await?;
        Ok(deployment.spec.replicas.unwrap_or(1))
    }

    async fn image(&self, step: usize) -> Result<String, ScenarioError> {
        let deployment = self.deployment(step).await?;
        Ok(deployment
            .spec
            .template
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image)
            .unwrap_or_default())
    }

    async fn service_exists(&self, step: usize) -> Result<bool, ScenarioError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.options.namespace);
        let service = api.get_opt(names::WEB).await.map_err(Self::kube_error(
            step,
            format!("reading Service {}", names::WEB),
        ))?;
        Ok(service.is_some())
    }

    async fn inventory(&self, step: usize) -> Result<BTreeSet<ObjectId>, ScenarioError> {
        let location = self.options.inventory_location();
        let inventory_error = |source| ScenarioError::Inventory {
            step,
            location: location.clone(),
            source,
        };
        let store =
            ConfigMapInventory::new("default", &self.options.namespace).map_err(inventory_error)?;
        let inventory = store.load(&self.client).await.map_err(inventory_error)?;
        Ok(inventory.map(|i| i.ids()).unwrap_or_default())
    }

    /// What `kubectl edit configmap` and `kubectl scale deployment` do: writes by other field
    /// managers, not server-side apply.
    async fn hand_edit(&self) -> Result<(), ScenarioError> {
        let namespace = &self.options.namespace;
        edit_greeting_by_hand(&self.client, namespace)
            .await
            .map_err(Self::kube_error(
                4,
                format!("editing ConfigMap {}", names::CONFIG_MAP),
            ))?;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let scale = serde_json::json!({"spec": {"replicas": HAND_SCALED_REPLICAS}});
        deployments
            .patch_scale(names::WEB, &by_hand("kubectl-scale"), &Patch::Merge(&scale))
            .await
            .map_err(Self::kube_error(
                4,
                format!("scaling Deployment {}", names::WEB),
            ))?;
        // Both edits are live now, before the next cycle reads the objects.
        let greeting = self.greeting(4).await?;
        self.expect(
            4,
            "the hand-edited greeting",
            &greeting,
            HAND_EDITED_GREETING,
        )?;
        Ok(())
    }

    /// The Greeting custom resource's message (for the narration).
    async fn greeting_message(&self, step: usize) -> Result<String, ScenarioError> {
        let group = greeting_group(&self.options.namespace);
        let resource = ApiResource {
            api_version: format!("{group}/v1alpha1"),
            group,
            version: "v1alpha1".into(),
            kind: names::GREETING_KIND.into(),
            plural: "greetings".into(),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.options.namespace, &resource);
        let greeting = api.get(names::GREETING).await.map_err(Self::kube_error(
            step,
            format!("reading Greeting {}", names::GREETING),
        ))?;
        Ok(greeting.data["spec"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

/// What `kubectl edit configmap` does to the demo app in `namespace`: sets the ConfigMap's
/// greeting to [`HAND_EDITED_GREETING`] with a merge patch by the field manager `kubectl-edit`,
/// not server-side apply, so that the reconciler sees drift.
///
/// ```no_run
/// # async fn example(client: kube::Client) -> Result<(), kube::Error> {
/// gitops_examples::demo::edit_greeting_by_hand(&client, "gitops-demo").await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When the API server refuses the patch (such as when the ConfigMap does not exist).
pub async fn edit_greeting_by_hand(
    client: &kube::Client,
    namespace: &str,
) -> Result<ConfigMap, kube::Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({"data": {names::GREETING_KEY: HAND_EDITED_GREETING}});
    config_maps
        .patch(
            names::CONFIG_MAP,
            &by_hand("kubectl-edit"),
            &Patch::Merge(&patch),
        )
        .await
}

/// The patch parameters of a hand edit by the tool `manager` (such as `kubectl-edit`).
fn by_hand(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.to_owned()),
        ..PatchParams::default()
    }
}

/// The demo's last line: what the reconciler did, in how many cycles and how long.
fn narrate_done(narrator: &Narrator, report: &DemoReport) {
    narrator.line(
        Tone::Good,
        &format!(
            "Done: {} revisions applied, {} objects' drift corrected, {} object pruned, in {} \
             reconcile cycles and {:.1}s",
            report.commits.len(),
            report.drift_corrected,
            report.prune.count(ObjectAction::Pruned),
            report.cycles.len(),
            report.elapsed.as_secs_f64()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(revision: &str, changes: &[(&str, ObjectAction)], drift: usize) -> CycleSummary {
        CycleSummary {
            cycle: 1,
            revision: Some(gitops_source::Revision::git("main", revision)),
            new_revision: drift == 0,
            changes: changes
                .iter()
                .map(|(kind, action)| (ObjectId::new("", *kind, Some("ns"), "web"), *action))
                .collect(),
            drift_corrected: drift,
            error: None,
            status_line: String::new(),
        }
    }

    fn commit(hash: &str) -> Commit {
        Commit {
            hash: hash.to_owned(),
            message: String::new(),
        }
    }

    #[test]
    fn a_cycle_applied_a_commit_only_when_it_succeeded_at_that_hash() {
        let hash = "0123456789abcdef0123456789abcdef01234567";
        let mut cycle = summary(hash, &[("Service", ObjectAction::Created)], 0);
        assert!(cycle.applied(&commit(hash)));
        assert!(!cycle.applied(&commit(&hash.replace('0', "f"))));
        cycle.error = Some("wait timed out".into());
        assert!(!cycle.applied(&commit(hash)));
        assert_eq!(cycle.tone(), Tone::Bad);
    }

    #[test]
    fn counts_actions_and_tones_follow_what_the_cycle_did() {
        let hash = "0123456789abcdef0123456789abcdef01234567";
        let quiet = summary(hash, &[("Service", ObjectAction::Unchanged)], 0);
        assert_eq!(quiet.tone(), Tone::Plain);
        let changed = summary(
            hash,
            &[
                ("Service", ObjectAction::Pruned),
                ("ConfigMap", ObjectAction::Unchanged),
            ],
            0,
        );
        assert_eq!(changed.tone(), Tone::Good);
        assert_eq!(changed.count(ObjectAction::Pruned), 1);
        assert_eq!(
            changed.action_of("Service", "web"),
            Some(ObjectAction::Pruned)
        );
        assert_eq!(changed.action_of("Service", "other"), None);
        let drift = summary(hash, &[("ConfigMap", ObjectAction::Configured)], 1);
        assert_eq!(drift.tone(), Tone::Notice);
    }

    #[test]
    fn the_inventory_lives_in_default_named_after_the_namespace() {
        let options = DemoOptions::new();
        assert_eq!(options.namespace_name(), DEFAULT_NAMESPACE);
        assert_eq!(options.inventory_location(), "default/gitops-demo");
    }
}
