//! The whole GitOps cycle (Git poll → render → diff → apply) of a `gitops-sync` unit on a
//! repository of 1,000 objects (ConfigMaps, Secrets, Services) in 100 files, against a real
//! control plane (gitops-envtest), side by side with Flux's cycle: every figure recorded through
//! `gitops_benches::results` (`scripts/bench` gathers them).
//!
//! Equal work, side by side:
//! - **in process** (an agent's steady cycle). Ours: `SyncUnit::sync` of a unit with a Git
//!   source (gix: list the remote's refs, fetch only a new revision), the plain renderer and
//!   gitops-apply, kept warm across cycles. The peer, as Flux's source-controller and
//!   kustomize-controller do it: `git ls-remote` of the branch; only for a new revision `git
//!   fetch` + `git reset --hard` of a kept clone (the same short-circuit: an unchanged revision
//!   is not fetched); then Flux's `ApplyAllStaged` on the directory (the Flux ssa harness,
//!   `benches/peers/flux-ssa`, whose clock covers the apply only, with a warm client and
//!   RESTMapper). Both check every object against the cluster every cycle (drift). The peer's
//!   time is the wall time of its git processes plus the harness's apply time.
//!   - **no change**: nothing moved in Git or the cluster;
//!   - **new commit**: a commit changing two ConfigMaps of one file, made before each round
//!     outside the clocks; both sides take the same commit in the same round and configure
//!     exactly those two (checked).
//! - **one-shot processes** (a CI job's sync): ours, the `sync` example binary (`cargo build
//!   --release -p gitops-examples --bin sync --no-default-features`) with a kept `--work-dir`,
//!   timed whole (start, kube config, fetch, render, apply); the peer, `git fetch` + `git reset
//!   --hard` of a kept clone and the Flux ssa harness as a process, timed whole (start, client,
//!   RESTMapper discovery, reading the files, the apply). Nothing changed in Git or the cluster.
//! - **memory**: the peak RSS (`/usr/bin/time -f %M`) of those one-shot processes: our `sync`
//!   (its Git fetch is in-process) against the harness process (its git runs in processes of
//!   their own, not counted).
//!
//! Samples (full run): no change 20 of ours and 5 of the peer; new commit 5 rounds; one-shot
//! processes and memory 5 each. Quick run (`GITOPS_BENCH_QUICK=1`): 20 objects in 2 files, one
//! sample each (two of ours in process), the same assertions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gitops_apply::{Applier, ApplyOptions, ConfigMapInventory, ObjectAction, TakeoverManager};
use gitops_benches::peers::Peer;
use gitops_benches::results::{Comparison, Measure, Recorder, quick};
use gitops_envtest::ControlPlane;
use gitops_render::PlainRenderer;
use gitops_source::{GitReference, GitSource};
use gitops_sync::{SyncReport, SyncUnit};
use tokio_util::sync::CancellationToken;

const OBJECTS_PER_FILE: usize = 10;

/// The ConfigMaps of a file that carry its generation: a commit changes these.
const CHANGED_PER_COMMIT: usize = OBJECTS_PER_FILE / 5;

/// How many files the app has.
fn files() -> usize {
    if quick() { 2 } else { 100 }
}

fn objects() -> usize {
    files() * OBJECTS_PER_FILE
}

/// `full` samples, or `quick` in a quick run.
fn samples(full: usize, quick_samples: usize) -> usize {
    if quick() { quick_samples } else { full }
}

/// File `file` of the app, with `generation` in two ConfigMaps so that commits change them. Its
/// Services are headless (`clusterIP: None`): the control plane's service IP range holds a few
/// hundred addresses, fewer than the two sides' Services of a full run.
fn app_file(file: usize, generation: usize) -> String {
    let mut yaml = String::new();
    for i in 0..OBJECTS_PER_FILE {
        let name = format!("app-{file:03}-{i}");
        let object = match i % 5 {
            0 => format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{generation: \"{generation}\", LOG_LEVEL: info}}\n"
            ),
            1 | 2 => format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{REGION: eu, index: \"{i}\"}}\n"
            ),
            3 => format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: Opaque\nstringData: {{password: s3cr3t}}\n"
            ),
            _ => format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: None\n  selector: {{app: {name}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
            ),
        };
        yaml.push_str(&object);
        yaml.push_str("---\n");
    }
    yaml
}

/// Runs `git args` in `dir`, without the user's or the system's configuration; its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes `files` (path, contents) into the repository at `dir` and commits everything.
fn commit(dir: &Path, files: &[(String, String)]) {
    for (path, contents) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
        std::fs::write(path, contents).expect("a file");
    }
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "--message", "change"]);
}

/// A new repository on branch `main` at `dir`.
fn create_repository(dir: &Path) {
    std::fs::create_dir_all(dir).expect("a directory");
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    for (key, value) in [
        ("user.name", "bench"),
        ("user.email", "bench@example.invalid"),
        ("commit.gpgsign", "false"),
    ] {
        git(dir, &["config", "--local", key, value]);
    }
}

/// Commits a change of the two ConfigMaps of one file, made by `generation`.
fn commit_generation(repository: &Path, generation: usize) {
    let file = generation % files();
    let path = format!("app/file-{file:03}.yaml");
    commit(repository, &[(path, app_file(file, generation))]);
}

/// One apply of the Flux harness: its actions and its own clock (the apply only).
#[derive(Debug, Clone, Copy)]
struct FluxRun {
    elapsed: Duration,
    configured: usize,
    unchanged: usize,
    created: usize,
}

fn parse_flux(output: &Output) -> FluxRun {
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Flux harness failed: {}{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| -> u64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the harness output: {text}"))
    };
    FluxRun {
        elapsed: Duration::from_nanos(field("elapsed_ns")),
        configured: field("configured") as usize,
        unchanged: field("unchanged") as usize,
        created: field("created") as usize,
    }
}

/// `command` run under GNU time: its output and its peak RSS in bytes.
fn with_peak_rss(command: Command, rss_file: &Path) -> (Output, u64) {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file)
        .arg(program)
        .args(args);
    if let Some(dir) = command.get_current_dir() {
        timed.current_dir(dir);
    }
    let output = timed.output().unwrap_or_else(|error| {
        panic!("running /usr/bin/time ({error}); install the Debian package 'time' (scripts/install-packages)")
    });
    let text = std::fs::read_to_string(rss_file).expect("GNU time's output");
    let kib: u64 = text
        .lines()
        .rev()
        .find_map(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in GNU time's output: {text}"));
    (output, kib * 1024)
}

/// The peer: a kept clone, the last revision it fetched, the harness and its namespace.
struct FluxCycle {
    clone: PathBuf,
    harness: PathBuf,
    kubeconfig: PathBuf,
    namespace: String,
    fetched: String,
}

impl FluxCycle {
    fn harness_command(&self) -> Command {
        let mut command = Command::new(&self.harness);
        command
            .arg("-kubeconfig")
            .arg(&self.kubeconfig)
            .arg("-dir")
            .arg(self.clone.join("app"))
            .arg("-namespace")
            .arg(&self.namespace);
        command
    }

    /// Source-controller's poll and kustomize-controller's apply: its time (git wall time
    /// plus the harness's apply time) and the harness's actions.
    fn cycle(&mut self) -> (Duration, FluxRun) {
        let started = Instant::now();
        let listed = git(&self.clone, &["ls-remote", "origin", "refs/heads/main"]);
        let revision = listed
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(!revision.is_empty(), "no main branch listed: {listed}");
        if revision != self.fetched {
            git(&self.clone, &["fetch", "--quiet", "origin", "main"]);
            git(&self.clone, &["reset", "--quiet", "--hard", "FETCH_HEAD"]);
            self.fetched = revision;
        }
        let git_time = started.elapsed();
        let run = parse_flux(
            &self
                .harness_command()
                .output()
                .expect("the Flux harness runs"),
        );
        (git_time + run.elapsed, run)
    }
}

/// Our `sync` example binary: `GITOPS_BENCH_SYNC`, else `sync` of this bench's profile
/// (`<target>/release/sync`, or `<target>/debug/sync` in a quick run; `scripts/bench` builds it).
fn sync_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GITOPS_BENCH_SYNC") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("this bench's path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|release| release.join("sync"))
        .expect("the target directory");
    assert!(
        binary.is_file(),
        "the pipeline bench needs the sync example binary at {} (or GITOPS_BENCH_SYNC): \
         `cargo build --release -p gitops-examples --bin sync --no-default-features` (or \
         without --release for a quick run); \
         scripts/bench builds it",
        binary.display()
    );
    binary
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    // Clients spawn their request buffer on the current runtime.
    let _entered = runtime.enter();
    let harness = Peer::FluxSsa.require();
    let sync = sync_binary();
    let control_plane = runtime
        .block_on(ControlPlane::builder().start())
        .expect("a control plane");
    let client = runtime.block_on(control_plane.client()).expect("a client");
    let namespace = |prefix: &str| {
        runtime
            .block_on(control_plane.create_namespace(prefix))
            .expect("a namespace")
    };
    let ours_ns = namespace("ours");
    let kubeconfig = control_plane.kubeconfig_path().to_owned();
    let n = objects();

    let scratch = tempfile::tempdir().expect("a temporary directory");
    let repository: PathBuf = scratch.path().join("repository");
    create_repository(&repository);
    let app: Vec<(String, String)> = (0..files())
        .map(|file| (format!("app/file-{file:03}.yaml"), app_file(file, 0)))
        .collect();
    commit(&repository, &app);
    let url = format!("file://{}", repository.display());
    let clone_of = |name: &str| {
        let clone = scratch.path().join(name);
        git(
            scratch.path(),
            &["clone", "--quiet", &url, &clone.to_string_lossy()],
        );
        clone
    };

    // Ours in process: the unit an agent runs.
    let source = GitSource::builder(&url, scratch.path().join("git-cache"))
        .reference(GitReference::Branch("main".into()))
        .build()
        .expect("a Git source");
    let inventory = ConfigMapInventory::new(&ours_ns, "inventory").expect("an inventory");
    let applier = Applier::builder(client, inventory).build();
    let mut unit = SyncUnit::builder(source, PlainRenderer::new(), applier)
        .path("app")
        .apply_options(
            ApplyOptions::default()
                .with_takeover(TakeoverManager::defaults())
                .with_target_namespace(ours_ns.clone()),
        )
        .build()
        .expect("a unit");
    let cancel = CancellationToken::new();
    let mut ours_cycle = |expect_change: bool| -> (Duration, SyncReport) {
        let started = Instant::now();
        let report = runtime
            .block_on(unit.sync(&cancel))
            .unwrap_or_else(|error| panic!("sync: {}", error.chain()));
        let took = started.elapsed();
        assert_eq!(report.changed(), expect_change, "{report}");
        (took, report)
    };
    let (_, first) = ours_cycle(true);
    assert_eq!(first.change_set.count(ObjectAction::Created), n);

    // The peer in process.
    let mut flux = FluxCycle {
        clone: clone_of("flux-clone"),
        harness: harness.clone(),
        kubeconfig: kubeconfig.clone(),
        namespace: namespace("flux"),
        fetched: String::new(),
    };
    let (_, first) = flux.cycle();
    assert_eq!(first.created, n, "{first:?}");

    // No change.
    let mut ours_steady = Vec::new();
    let mut requests = 0;
    for _ in 0..samples(20, 2) {
        let (took, report) = ours_cycle(false);
        assert_eq!(report.change_set.request_counts.writes, 0, "{report}");
        requests = report.change_set.request_counts.total;
        ours_steady.push(took);
    }
    let mut flux_steady = Vec::new();
    for _ in 0..samples(5, 1) {
        let (took, run) = flux.cycle();
        assert_eq!(run.unchanged, n, "{run:?}");
        flux_steady.push(took);
    }

    // New commit: one commit a round, taken by both sides.
    let mut ours_commit = Vec::new();
    let mut flux_commit = Vec::new();
    for generation in 1..=samples(5, 1) {
        commit_generation(&repository, generation);
        let (took, report) = ours_cycle(true);
        assert_eq!(
            report.change_set.count(ObjectAction::Configured),
            CHANGED_PER_COMMIT,
            "{report}"
        );
        ours_commit.push(took);
        let (took, run) = flux.cycle();
        assert_eq!(
            (run.configured, run.unchanged),
            (CHANGED_PER_COMMIT, n - CHANGED_PER_COMMIT),
            "{run:?}"
        );
        flux_commit.push(took);
    }

    let flux_version = Peer::FluxSsa
        .module_version()
        .expect("the Flux module version");
    let peer_name = format!("git ls-remote/fetch + Flux ssa {flux_version} (harness)");
    let mut recorder = Recorder::new("pipeline");
    let equal_in_process = format!(
        "both list the branch's refs, fetch only a new revision, and check all {n} objects \
         against the cluster with warm clients; ours also renders the directory in its clock, \
         the harness reads the files outside its clock"
    );
    recorder.record(
        Comparison::new(
            "pipeline/no-change",
            format!("a GitOps cycle on {n} objects, nothing changed"),
            &equal_in_process,
        )
        .ours(
            format!("gitops-sync unit ({requests} API requests)"),
            Measure::durations(&ours_steady),
        )
        .peer(&peer_name, Measure::durations(&flux_steady)),
    );
    recorder.record(
        Comparison::new(
            "pipeline/new-commit",
            format!("a GitOps cycle on {n} objects, two changed by a new commit"),
            format!("{equal_in_process}; both fetch the same new commit and apply its two changes"),
        )
        .ours("gitops-sync unit", Measure::durations(&ours_commit))
        .peer(&peer_name, Measure::durations(&flux_commit)),
    );

    // One-shot processes, and their peak RSS.
    let ours_proc_ns = namespace("ours-process");
    let work_dir = scratch.path().join("sync-work");
    let rss_file = scratch.path().join("rss");
    let sync_command = || {
        let mut command = Command::new(&sync);
        command
            .arg("--url")
            .arg(&url)
            .args(["--ref", "main", "--subpath", "app", "--namespace"])
            .arg(&ours_proc_ns)
            .arg("--inventory")
            .arg(format!("{ours_proc_ns}/inventory"))
            .arg("--work-dir")
            .arg(&work_dir)
            .arg("--kubeconfig")
            .arg(&kubeconfig);
        command
    };
    let first = sync_command().output().expect("sync runs");
    assert_eq!(
        first.status.code(),
        Some(2),
        "the first sync changes the cluster: {}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    let mut process_flux = FluxCycle {
        clone: clone_of("flux-process-clone"),
        harness,
        kubeconfig: kubeconfig.clone(),
        namespace: namespace("flux-process"),
        fetched: String::new(),
    };
    let first = parse_flux(
        &process_flux
            .harness_command()
            .output()
            .expect("the harness runs"),
    );
    assert_eq!(first.created, n, "{first:?}");
    let (mut ours_process, mut ours_rss) = (Vec::new(), Vec::new());
    let (mut flux_process, mut flux_rss) = (Vec::new(), Vec::new());
    for _ in 0..samples(5, 1) {
        let started = Instant::now();
        let (output, rss) = with_peak_rss(sync_command(), &rss_file);
        ours_process.push(started.elapsed());
        assert_eq!(
            output.status.code(),
            Some(0),
            "a sync with nothing to change exits 0: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        ours_rss.push(rss);

        let started = Instant::now();
        git(&process_flux.clone, &["fetch", "--quiet", "origin", "main"]);
        git(
            &process_flux.clone,
            &["reset", "--quiet", "--hard", "FETCH_HEAD"],
        );
        let (output, rss) = with_peak_rss(process_flux.harness_command(), &rss_file);
        flux_process.push(started.elapsed());
        let run = parse_flux(&output);
        assert_eq!(run.unchanged, n, "{run:?}");
        flux_rss.push(rss);
    }
    process_flux.fetched.clear();
    recorder.record(
        Comparison::new(
            "pipeline/one-shot-no-change",
            format!("one-shot processes, {n} objects, nothing changed"),
            format!(
                "both are processes timed whole: ours the sync example binary (start, kube \
                 config, fetch into a kept cache, render, apply); the peer git fetch + reset of a \
                 kept clone and the Flux ssa harness (start, client, discovery, reading the \
                 files, apply); both check all {n} objects"
            ),
        )
        .ours("sync (example binary)", Measure::durations(&ours_process))
        .peer(
            format!("git fetch + Flux ssa {flux_version} (harness process)"),
            Measure::durations(&flux_process),
        ),
    );
    recorder.record(
        Comparison::new(
            "pipeline/peak-rss-no-change",
            format!("peak RSS of a one-shot no-change reconcile of {n} objects"),
            format!(
                "GNU time's maximum resident set size of the one-shot processes above: our sync \
                 (its Git fetch in-process) and the Flux ssa harness (its git in processes of \
                 their own, not counted); both hold and check the same {n} objects"
            ),
        )
        .ours("sync (example binary)", Measure::bytes(&ours_rss))
        .peer(
            format!("Flux ssa {flux_version} (harness process)"),
            Measure::bytes(&flux_rss),
        ),
    );

    let path = recorder.finish().expect("writing the results");
    println!("pipeline: results in {}", path.display());
    drop(unit);
    control_plane.stop();
}
