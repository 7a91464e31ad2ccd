//! The whole GitOps cycle of a `gitops-sync` unit (Git poll → render → diff → apply → prune) on a
//! repository of 200 objects in 20 files, against a real control plane
//! (gitops-envtest), side by side in one run with the loop many teams script by hand:
//! `git fetch` + `git reset --hard` of a clone, then `kubectl apply --server-side` of the
//! directory (the pinned kubectl; processes timed whole).
//!
//! Two cycles are measured:
//! - **no change**: nothing moved in Git or in the cluster, the steady state of an agent;
//! - **new commit**: one object changed by a commit made before each timed cycle.
//!
//! At the end the medians, their ratios (peer / ours) and the API requests of our no-change
//! cycle are printed.
//!
//! Measured on 2026-11-29 with a gitops-sync unit (2 cores shared with other builds): no change,
//! gitops-rs 17 ms (4 API requests, 0 writes: one list per kind and the inventory; the ref
//! listing is Git's) against git+kubectl 675 ms, 40x; new commit, gitops-rs 106 ms against
//! 629 ms, 5.9x. (On 2026-11-23, with the examples' pipeline: 21 ms and 7 requests against
//! 706 ms, 33x; 87 ms against 756 ms, 8.7x.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group};
use gitops_apply::{Applier, ApplyOptions, ConfigMapInventory, TakeoverManager};
use gitops_envtest::{ControlPlane, Tool};
use gitops_render::PlainRenderer;
use gitops_source::{GitReference, GitSource};
use gitops_sync::{SyncReport, SyncUnit};
use tokio_util::sync::CancellationToken;

const FILES: usize = 20;
const OBJECTS_PER_FILE: usize = 10;

/// File `file` of the app, with `generation` in one ConfigMap so that commits change it.
fn app_file(file: usize, generation: usize) -> String {
    let mut yaml = String::new();
    for i in 0..OBJECTS_PER_FILE {
        let name = format!("app-{file:02}-{i}");
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
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
            ),
        };
        yaml.push_str(&object);
        yaml.push_str("---\n");
    }
    yaml
}

/// Runs `git args` in `dir`, without the user's or the system's configuration.
fn git(dir: &Path, args: &[&str]) {
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

/// Commits a change of one object, made by `generation`.
fn commit_generation(repository: &Path, generation: usize) {
    let file = generation % FILES;
    let path = format!("app/file-{file:02}.yaml");
    commit(repository, &[(path, app_file(file, generation))]);
}

/// The scripted peer: update a clone, then `kubectl apply --server-side` its directory.
fn shell_cycle(clone: &Path, kubectl: &Path, kubeconfig: &Path, namespace: &str) {
    git(clone, &["fetch", "--quiet", "origin", "main"]);
    git(clone, &["reset", "--quiet", "--hard", "FETCH_HEAD"]);
    let output = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=shell-loop",
            "--namespace",
            namespace,
            "--recursive",
            "-f",
        ])
        .arg(clone.join("app"))
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `cycle` `iterations` times, each after an untimed `prepare`; records each cycle's
/// duration in `samples` and returns their total.
fn time_cycles(
    iterations: u64,
    samples: &Mutex<Vec<Duration>>,
    mut prepare: impl FnMut(),
    mut cycle: impl FnMut(),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        prepare();
        let started = Instant::now();
        cycle();
        let elapsed = started.elapsed();
        samples.lock().unwrap().push(elapsed);
        total += elapsed;
    }
    total
}

fn median(samples: &Mutex<Vec<Duration>>) -> Duration {
    let mut samples = samples.lock().unwrap().clone();
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn bench_pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Clients spawn their request buffer on the current runtime.
    let _entered = runtime.enter();
    let control_plane = runtime
        .block_on(ControlPlane::builder().start())
        .expect("control plane");
    let client = runtime.block_on(control_plane.client()).unwrap();
    let ours_ns = runtime
        .block_on(control_plane.create_namespace("bench-pipeline"))
        .unwrap();
    let shell_ns = runtime
        .block_on(control_plane.create_namespace("bench-shell"))
        .unwrap();
    let kubectl = gitops_envtest::tools::ensure(Tool::Kubectl).expect("kubectl");
    let kubeconfig = control_plane.kubeconfig_path().to_owned();

    let scratch = tempfile::tempdir().unwrap();
    let repository: PathBuf = scratch.path().join("repository");
    create_repository(&repository);
    let files: Vec<(String, String)> = (0..FILES)
        .map(|file| (format!("app/file-{file:02}.yaml"), app_file(file, 0)))
        .collect();
    commit(&repository, &files);
    let clone = scratch.path().join("clone");
    git(
        scratch.path(),
        &[
            "clone",
            "--quiet",
            &repository.to_string_lossy(),
            &clone.to_string_lossy(),
        ],
    );

    // The unit an agent would run: a Git source, plain YAML, an inventory ConfigMap.
    let source = GitSource::builder(
        format!("file://{}", repository.display()),
        scratch.path().join("git-cache"),
    )
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
    let mut sync = |expect_change: bool| -> SyncReport {
        let report = runtime
            .block_on(unit.sync(&cancel))
            .unwrap_or_else(|error| panic!("sync: {}", error.chain()));
        assert_eq!(report.changed(), expect_change, "{report}");
        report
    };
    let first = sync(true);
    assert_eq!(
        first.change_set.count(gitops_apply::ObjectAction::Created),
        FILES * OBJECTS_PER_FILE
    );
    shell_cycle(&clone, &kubectl, &kubeconfig, &shell_ns);
    let steady = sync(false);

    let ours_steady = Mutex::new(Vec::new());
    let shell_steady = Mutex::new(Vec::new());
    let ours_commit = Mutex::new(Vec::new());
    let shell_commit = Mutex::new(Vec::new());
    let mut generation = 0;

    let mut group = c.benchmark_group("pipeline");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("no change/gitops-rs", |b| {
        b.iter_custom(|iterations| {
            time_cycles(
                iterations,
                &ours_steady,
                || {},
                || {
                    sync(false);
                },
            )
        });
    });
    group.bench_function("no change/git+kubectl", |b| {
        b.iter_custom(|iterations| {
            time_cycles(
                iterations,
                &shell_steady,
                || {},
                || {
                    shell_cycle(&clone, &kubectl, &kubeconfig, &shell_ns);
                },
            )
        });
    });
    let mut next_commit = || {
        generation += 1;
        commit_generation(&repository, generation);
    };
    group.bench_function("new commit/gitops-rs", |b| {
        b.iter_custom(|iterations| {
            time_cycles(iterations, &ours_commit, &mut next_commit, || {
                sync(true);
            })
        });
    });
    group.bench_function("new commit/git+kubectl", |b| {
        b.iter_custom(|iterations| {
            time_cycles(iterations, &shell_commit, &mut next_commit, || {
                shell_cycle(&clone, &kubectl, &kubeconfig, &shell_ns);
            })
        });
    });
    group.finish();

    let (ours, shell) = (median(&ours_steady), median(&shell_steady));
    let (ours_new, shell_new) = (median(&ours_commit), median(&shell_commit));
    println!(
        "gitops-rs pipeline vs git fetch + kubectl apply --server-side, {} objects (medians; ratio = peer / ours):\n  \
         no change:  gitops-rs {ours:.2?}, git+kubectl {shell:.2?} ({:.1}x); gitops-rs sends {} API requests ({} writes)\n  \
         new commit: gitops-rs {ours_new:.2?}, git+kubectl {shell_new:.2?} ({:.1}x)",
        FILES * OBJECTS_PER_FILE,
        shell.as_secs_f64() / ours.as_secs_f64().max(1e-9),
        steady.change_set.request_counts.total,
        steady.change_set.request_counts.writes,
        shell_new.as_secs_f64() / ours_new.as_secs_f64().max(1e-9),
    );
    drop(unit);
    control_plane.stop();
}

criterion_group!(benches, bench_pipeline);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
