//! gitops-source against `git` itself, side by side in one run, over the same transport
//! (`git daemon` on 127.0.0.1), the samples of the two sides interleaved:
//!
//! - `cold_clone_5k`: a cold shallow fetch of a generated repository (5,000 files in 50
//!   directories, 500 commits) against `git clone --depth 1`. Equal work: both download the
//!   head commit's depth-1 pack and write its 5,000 files to disk (git also writes its index and
//!   `.git`; gitops-source its artifact, whose digest it computes). The floor is the download
//!   alone (`git clone --depth 1 --no-checkout`: the pack received and indexed, no file
//!   written) plus writing the same files, already in memory, to a new directory.
//! - `no_change_poll`: list the remote's refs and compare with the last revision, against
//!   `git ls-remote <url> HEAD`. Equal work: one ref advertisement over a new connection.
//! - `one_commit_5k`: fetch one new commit (one file changed) into a warm cache, against
//!   `git fetch --depth 1` + `git checkout` in a clone. Equal work: both download the new commit
//!   and bring a complete tree of 5,000 files up to date on disk (gitops-source through
//!   `gitops_sync::ArtifactStore::fetch`, what the library's users call: the store keeps the
//!   current and the retired artifact, and updates the retired one in place into the new
//!   revision, [`gitops_source::Recycle`], touching only the files that differ from it; git its
//!   work tree in place). Nothing is left out of the timing: the store's whole fetch is timed.
//! - `cold_clone_50k`: as `cold_clone_5k` on a repository of 50,000 files (50 directories of
//!   1,000), 10 commits.
//! - `sparse_one_commit_50k`: in the 50,000-file repository, fetch one new commit that changes
//!   one file in the 1,000-file directory `apps/team-7`, materialising only that directory
//!   ([`gitops_source::Sparse`]), against `git fetch --depth 1` + `git checkout` in a
//!   sparse-checkout clone (`git sparse-checkout set apps/team-7`). Equal work: both download
//!   the new commit and bring the same 1,000 files up to date on disk.
//! - `memory_200mb_blob`: the peak resident set size (`/usr/bin/time -f %M`, the largest process
//!   of the tree) of a cold fetch of a repository holding one 200 MB blob, by a process that does
//!   only that, against `git clone --depth 1`. The floor is the same process started and stopped
//!   without fetching (its runtime, its libraries): what a fetch adds to it is the fetch's cost.
//!   The goal: what the fetch adds stays below the largest blob (here 200 MB), whatever the
//!   repository's size.
//! - `memory_200mb_small_files`: the same for a repository of 20,480 files of 10 KiB that do not
//!   compress (200 MB in all, one commit): what the fetch adds must follow the number of objects
//!   (their ids and the artifact's list of files), not their bytes.
//!
//! `GITOPS_BENCH_QUICK=1` runs every workload once on inputs a tenth of the size, to check that it
//! works; the figures are recorded through [`gitops_benches::results::Recorder`] as
//! `source.json`.
#![allow(missing_docs)]

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitops_benches::results::{Comparison, Measure, Recorder, quick};
use gitops_source::{Artifact, FetchOutcome, FetchRequest, GitSource, Source, Sparse};
use gitops_sync::ArtifactStore;
use tokio_util::sync::CancellationToken;

/// When set, the process only fetches the URL it names cold into the directory named by
/// [`MEMORY_DIR_ENV`] (the memory workload's child).
const MEMORY_URL_ENV: &str = "GITOPS_SOURCE_BENCH_MEMORY_URL";
const MEMORY_DIR_ENV: &str = "GITOPS_SOURCE_BENCH_MEMORY_DIR";
/// When set (with [`MEMORY_URL_ENV`]), the child builds its runtime and its source and stops
/// without fetching: the memory workloads' floor.
const MEMORY_BASELINE_ENV: &str = "GITOPS_SOURCE_BENCH_MEMORY_BASELINE";

fn git(dir: &Path) -> Command {
    program_in(Path::new("git"), dir)
}

/// `program` run in `dir` with git's configuration and identity fixed.
fn program_in(program: &Path, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com");
    command
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn fast_import(bare: &Path, stream: &[u8]) {
    let mut child = git(bare)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stream).unwrap();
    assert!(child.wait().unwrap().success());
}

fn config_map(file: usize, commit: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{file}\n  namespace: team-{}\ndata:\n  revision: \"{commit}\"\n  payload: \"{}\"\n",
        file % 50,
        "x".repeat(64 + file % 200)
    )
}

fn file_path(file: usize) -> String {
    format!("apps/team-{}/config-{file}.yaml", file % 50)
}

/// A bare repository with `files` files (in 50 directories) and `commits` commits, each after
/// the first changing ten files, written with `git fast-import`.
fn generate_repository(path: &Path, files: usize, commits: usize) {
    run(git(Path::new("/"))
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(path));
    let mut stream = Vec::new();
    for commit in 0..commits {
        let message = format!("commit {commit}\n");
        write!(
            stream,
            "commit refs/heads/main\nmark :{}\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{}",
            commit + 1,
            1_700_000_000 + commit,
            message.len(),
            message
        )
        .unwrap();
        if commit > 0 {
            writeln!(stream, "from :{commit}").unwrap();
        }
        let changed: Vec<usize> = if commit == 0 {
            (0..files).collect()
        } else {
            (0..10).map(|i| (commit * 37 + i * 499) % files).collect()
        };
        for file in changed {
            let content = config_map(file, commit);
            writeln!(
                stream,
                "M 100644 inline {}\ndata {}\n{content}",
                file_path(file),
                content.len()
            )
            .unwrap();
        }
    }
    fast_import(path, &stream);
}

/// Add one commit on `main` of the bare repository that changes the file `file`.
fn append_commit(bare: &Path, file: usize, n: usize) {
    let content = config_map(file, 1_000_000 + n);
    let message = format!("change {n}\n");
    let stream = format!(
        "commit refs/heads/main\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{message}from refs/heads/main^0\nM 100644 inline {}\ndata {}\n{content}\n",
        1_800_000_000 + n,
        message.len(),
        file_path(file),
        content.len()
    );
    fast_import(bare, stream.as_bytes());
}

/// A bare repository with one commit holding one file of `size` bytes that do not compress.
fn generate_big_blob(path: &Path, size: usize) {
    run(git(Path::new("/"))
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(path));
    let mut stream = Vec::with_capacity(size + 512);
    write!(
        stream,
        "commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata 4\nbig\nM 100644 inline big.bin\ndata {size}\n"
    )
    .unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    stream.extend((0..size).map(|_| {
        // xorshift: incompressible bytes, so the pack is as large as the blob.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 24) as u8
    }));
    stream.push(b'\n');
    fast_import(path, &stream);
}

/// A bare repository with one commit holding `files` files of `size` bytes that do not
/// compress, 500 to a directory.
fn generate_small_blobs(path: &Path, files: usize, size: usize) {
    run(git(Path::new("/"))
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(path));
    let mut stream = Vec::with_capacity(files * (size + 64) + 512);
    stream.extend_from_slice(
        b"commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata 6\nsmall\n",
    );
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for file in 0..files {
        write!(
            stream,
            "M 100644 inline files-{}/blob-{file}.bin\ndata {size}\n",
            file / 500
        )
        .unwrap();
        stream.extend((0..size).map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        }));
        stream.push(b'\n');
    }
    stream.push(b'\n');
    fast_import(path, &stream);
}

struct Daemon(Child, u16);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(base: &Path) -> Daemon {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // `git-daemon` itself: `git daemon` runs it as a child that killing `git` would leave running.
    let exec_path = run(git(base).arg("--exec-path"));
    let child = program_in(&Path::new(exec_path.trim()).join("git-daemon"), base)
        .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Owned by the guard from here on, so a daemon that never answers is still killed and reaped.
    let daemon = Daemon(child, port);
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return daemon;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("git daemon did not start");
}

struct Bench {
    runtime: tokio::runtime::Runtime,
    work: PathBuf,
    counter: usize,
    recorder: Recorder,
}

impl Bench {
    fn fresh(&mut self) -> PathBuf {
        self.counter += 1;
        self.work.join(format!("run-{}", self.counter))
    }

    fn fetch(&self, source: &GitSource, request: FetchRequest) -> FetchOutcome {
        self.runtime.block_on(source.fetch(request)).unwrap()
    }

    fn fetched(&self, source: &GitSource, request: FetchRequest) -> Artifact {
        match self.fetch(source, request) {
            FetchOutcome::Fetched(artifact) => artifact,
            FetchOutcome::Unchanged(revision) => panic!("expected a new revision, not {revision}"),
        }
    }

    /// Record (and print) a figure.
    fn record(&mut self, figure: Comparison) {
        self.recorder.record(figure);
    }

    /// The peak RSS of `samples` cold fetches of `url` by each side, interleaved: ours by a
    /// child process doing only that (this binary, told by [`MEMORY_URL_ENV`]), git's by
    /// `git clone --depth 1`; the floor by the same child stopping before the fetch.
    fn memory(&mut self, id: &str, workload: &str, equal_work: &str, url: &str, samples: usize) {
        let (mut ours, mut theirs, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..samples {
            let run_dir = self.fresh();
            floor.push(peak_rss(
                Command::new(std::env::current_exe().unwrap())
                    .env(MEMORY_URL_ENV, url)
                    .env(MEMORY_DIR_ENV, &run_dir)
                    .env(MEMORY_BASELINE_ENV, "1"),
            ));
            remove(&run_dir);
            let run_dir = self.fresh();
            ours.push(peak_rss(
                Command::new(std::env::current_exe().unwrap())
                    .env(MEMORY_URL_ENV, url)
                    .env(MEMORY_DIR_ENV, &run_dir),
            ));
            remove(&run_dir);
            let run_dir = self.fresh();
            theirs.push(peak_rss(
                git(&self.work)
                    .args(["clone", "-q", "--depth", "1", url])
                    .arg(&run_dir),
            ));
            remove(&run_dir);
        }
        self.record(
            Comparison::new(id, workload, equal_work)
                .ours(
                    "gitops-source (a process doing one cold fetch)",
                    Measure::bytes(&ours),
                )
                .peer("git clone --depth 1", Measure::bytes(&theirs))
                .floor(
                    "the same process, started and stopped without fetching",
                    Measure::bytes(&floor),
                ),
        );
    }

    /// `samples` cold fetches by each side, interleaved.
    fn cold_clone(
        &mut self,
        id: &str,
        workload: &str,
        equal_work: &str,
        url: &str,
        samples: usize,
    ) {
        let (mut ours, mut theirs, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..samples {
            let run_dir = self.fresh();
            let source = GitSource::builder(url, run_dir.join("cache"))
                .build()
                .unwrap();
            let start = Instant::now();
            let artifact = self.fetched(&source, FetchRequest::new(run_dir.join("out")));
            ours.push(start.elapsed());
            assert!(artifact.file_count() > 0);
            let files = read_tree(&run_dir.join("out"));
            remove(&run_dir);

            let run_dir = self.fresh();
            let start = Instant::now();
            run(git(&self.work)
                .args(["clone", "-q", "--depth", "1", url])
                .arg(&run_dir));
            theirs.push(start.elapsed());
            remove(&run_dir);

            // The floor: the download alone (`--no-checkout`: pack received and indexed, no
            // file written) plus writing the same files, already in memory, to a new directory.
            let run_dir = self.fresh();
            let start = Instant::now();
            run(git(&self.work)
                .args(["clone", "-q", "--depth", "1", "--no-checkout", url])
                .arg(run_dir.join("clone")));
            let download = start.elapsed();
            let start = Instant::now();
            write_tree(&run_dir.join("files"), &files);
            floor.push(download + start.elapsed());
            remove(&run_dir);
        }
        self.record(
            Comparison::new(id, workload, equal_work)
                .ours("gitops-source GitSource::fetch", Measure::durations(&ours))
                .peer("git clone --depth 1", Measure::durations(&theirs))
                .floor(
                    "git clone --depth 1 --no-checkout + writing the files",
                    Measure::durations(&floor),
                ),
        );
    }
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Every file below `dir` (its path relative to `dir`, its content), read into memory.
fn read_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let content = std::fs::read(&path).unwrap();
                files.push((path.strip_prefix(dir).unwrap().to_owned(), content));
            }
        }
    }
    files
}

/// Writes `files` below `dir`, creating the directories they need.
fn write_tree(dir: &Path, files: &[(PathBuf, Vec<u8>)]) {
    let mut created = std::collections::HashSet::new();
    for (path, content) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent()
            && created.insert(parent.to_owned())
        {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(target, content).unwrap();
    }
}

/// The memory workload's child: one cold fetch, nothing else.
fn memory_child(url: &str) {
    let dir = PathBuf::from(std::env::var_os(MEMORY_DIR_ENV).expect("the directory is given"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let source = GitSource::builder(url, dir.join("cache")).build().unwrap();
    if std::env::var_os(MEMORY_BASELINE_ENV).is_some() {
        return;
    }
    let outcome = runtime
        .block_on(source.fetch(FetchRequest::new(dir.join("out"))))
        .unwrap();
    assert!(matches!(outcome, FetchOutcome::Fetched(_)));
}

/// The peak resident set size in bytes of `command` (and the processes it waits for).
fn peak_rss(command: &mut Command) -> u64 {
    let program = command.get_program().to_owned();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "peak-rss-kib %M", "--"])
        .arg(program)
        .args(command.get_args())
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| value.map(|value| (key, value))),
        )
        .stdout(Stdio::null());
    if let Some(dir) = command.get_current_dir() {
        timed.current_dir(dir);
    }
    let output = timed.output().expect("/usr/bin/time runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{command:?} failed: {stderr}");
    let kib: u64 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak-rss-kib "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {stderr}"));
    kib * 1024
}

fn main() {
    if let Some(url) = std::env::var_os(MEMORY_URL_ENV) {
        memory_child(&url.to_string_lossy());
        return;
    }
    let quick = quick();
    let scale = if quick { 10 } else { 1 };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("served");
    std::fs::create_dir_all(&base).unwrap();
    let small = base.join("small.git");
    let small_files = 5_000 / scale;
    generate_repository(&small, small_files, 500 / scale);
    let large = base.join("large.git");
    let large_files = 50_000 / scale;
    generate_repository(&large, large_files, 10);
    let big = base.join("big.git");
    let blob_size = 200 * 1024 * 1024 / scale;
    generate_big_blob(&big, blob_size);
    let small_blobs = base.join("small-blobs.git");
    let small_blob_size = 10 * 1024;
    let small_blob_count = 20 * 1024 / scale;
    generate_small_blobs(&small_blobs, small_blob_count, small_blob_size);
    let daemon = start_daemon(&base);
    let url = |name: &str| format!("git://127.0.0.1:{}/{name}", daemon.1);
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut bench = Bench {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        work: work.clone(),
        counter: 0,
        recorder: Recorder::new("source"),
    };
    let samples = |full: usize| if quick { 1 } else { full };

    bench.cold_clone(
        "source/cold_clone_5k",
        &format!(
            "cold shallow clone, {small_files} files, {} commits",
            500 / scale
        ),
        "both download the head commit's depth-1 pack over git:// and write all its files to disk",
        &url("small.git"),
        samples(10),
    );

    // A warm cache, its artifact, and a clone for git.
    let warm = bench.fresh();
    let poller = GitSource::builder(url("small.git"), warm.join("cache"))
        .build()
        .unwrap();
    let previous = bench.fetched(&poller, FetchRequest::new(warm.join("0")));
    let git_clone = bench.fresh();
    run(git(&work)
        .args(["clone", "-q", "--depth", "1", &url("small.git")])
        .arg(&git_clone));

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..samples(30) {
        let start = Instant::now();
        let outcome = bench.fetch(
            &poller,
            FetchRequest::new(warm.join("never")).with_last_revision(previous.revision().clone()),
        );
        ours.push(start.elapsed());
        assert!(matches!(outcome, FetchOutcome::Unchanged(_)));
        let start = Instant::now();
        run(git(&work).args(["ls-remote", &url("small.git"), "HEAD"]));
        theirs.push(start.elapsed());
    }
    bench.record(
        Comparison::new(
            "source/no_change_poll",
            "no-change poll",
            "both make one connection and read the ref advertisement; nothing is downloaded or written",
        )
        .ours("gitops-source GitSource::fetch (unchanged)", Measure::durations(&ours))
        .peer("git ls-remote", Measure::durations(&theirs)),
    );

    // What the library's users get: gitops_sync::ArtifactStore (two artifacts kept), which
    // reuses the current artifact's files and updates the retired one in place. Two untimed
    // fetches fill it (the current and the retired artifact).
    let mut store = ArtifactStore::new(warm.join("store")).unwrap();
    let cancel = CancellationToken::new();
    let mut store_fetch = |bench: &Bench| {
        bench
            .runtime
            .block_on(store.fetch(&poller, &cancel, None))
            .unwrap()
    };
    assert!(store_fetch(&bench).changed);
    append_commit(&small, 1, 0);
    assert!(store_fetch(&bench).changed);
    run(git(&git_clone).args(["fetch", "-q", "--depth", "1", "origin", "main"]));
    run(git(&git_clone).args(["checkout", "-q", "--detach", "FETCH_HEAD"]));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for n in 0..samples(10) {
        append_commit(&small, (n * 131) % small_files, n + 1);
        let start = Instant::now();
        let fetched = store_fetch(&bench);
        ours.push(start.elapsed());
        assert!(fetched.changed);
        let artifact = fetched.artifact;
        assert_eq!(artifact.reused_files(), artifact.file_count() - 1);
        assert_eq!(artifact.file_count(), small_files);
        // Dropped: the store may recycle it once it is retired.
        drop(artifact);

        let start = Instant::now();
        run(git(&git_clone).args(["fetch", "-q", "--depth", "1", "origin", "main"]));
        run(git(&git_clone).args(["checkout", "-q", "--detach", "FETCH_HEAD"]));
        theirs.push(start.elapsed());
    }
    // Steady state: the current and the retired artifact, nothing else written or left.
    assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 2);
    drop(store);
    bench.record(
        Comparison::new(
            "source/one_commit_5k",
            format!("fetch of one new commit (one file changed) into a warm cache, {small_files} files"),
            "both download the new commit and bring a complete tree on disk up to date (gitops-source: gitops_sync::ArtifactStore::fetch, the retired artifact updated in place into the new one, the file changed by the commit before linked from the current one, the changed file written; git: its work tree in place)",
        )
        .ours("gitops-source through gitops_sync::ArtifactStore::fetch (retired artifact recycled)", Measure::durations(&ours))
        .peer("git fetch --depth 1 + git checkout", Measure::durations(&theirs)),
    );
    remove(&warm);
    remove(&git_clone);

    bench.cold_clone(
        "source/cold_clone_50k",
        &format!("cold shallow clone, {large_files} files, 10 commits"),
        "both download the head commit's depth-1 pack over git:// and write all its files to disk",
        &url("large.git"),
        samples(3),
    );

    // Only apps/team-7 (a fiftieth of the files) on both sides.
    let subpath = "apps/team-7";
    let warm = bench.fresh();
    let sparse_source = GitSource::builder(url("large.git"), warm.join("cache"))
        .build()
        .unwrap();
    let sparse = Sparse::new([subpath]);
    let mut previous = bench.fetched(
        &sparse_source,
        FetchRequest::new(warm.join("0")).with_sparse(sparse.clone()),
    );
    assert_eq!(previous.file_count(), large_files / 50);
    let git_clone = bench.fresh();
    run(git(&work)
        .args([
            "clone",
            "-q",
            "--depth",
            "1",
            "--no-checkout",
            &url("large.git"),
        ])
        .arg(&git_clone));
    run(git(&git_clone).args(["sparse-checkout", "set", subpath]));
    run(git(&git_clone).args(["checkout", "-q", "main"]));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for n in 0..samples(10) {
        // A file of apps/team-7: its index is 7 modulo 50.
        append_commit(&large, 7 + 50 * ((n * 13) % (large_files / 50)), n);
        let out = warm.join(format!("{}", n + 1));
        let start = Instant::now();
        let artifact = bench.fetched(
            &sparse_source,
            FetchRequest::new(&out)
                .with_previous(previous.clone())
                .with_sparse(sparse.clone()),
        );
        ours.push(start.elapsed());
        assert_eq!(artifact.file_count(), large_files / 50);
        assert_eq!(artifact.reused_files(), artifact.file_count() - 1);
        remove(previous.root());
        previous = artifact;

        let start = Instant::now();
        run(git(&git_clone).args(["fetch", "-q", "--depth", "1", "origin", "main"]));
        run(git(&git_clone).args(["checkout", "-q", "--detach", "FETCH_HEAD"]));
        theirs.push(start.elapsed());
    }
    bench.record(
        Comparison::new(
            "source/sparse_one_commit_50k",
            format!(
                "fetch of one commit changing one file of a {}-file directory of a {large_files}-file repository, only that directory written",
                large_files / 50
            ),
            "both download the new commit and bring the same directory up to date on disk (gitops-source: Sparse, a new artifact reusing the previous one's files; git: a sparse-checkout clone, fetch + checkout)",
        )
        .ours("gitops-source GitSource::fetch (Sparse, previous artifact given)", Measure::durations(&ours))
        .peer("git fetch --depth 1 + git checkout (sparse-checkout)", Measure::durations(&theirs)),
    );
    remove(&warm);
    remove(&git_clone);

    bench.memory(
        "source/memory_200mb_blob",
        &format!(
            "peak RSS of a cold fetch of one {} MB blob",
            blob_size / (1024 * 1024)
        ),
        "each process downloads the same depth-1 pack and writes the one file; the largest process of each side is measured",
        &url("big.git"),
        samples(3),
    );
    bench.memory(
        "source/memory_200mb_small_files",
        &format!(
            "peak RSS of a cold fetch of {small_blob_count} files of {} KiB ({} MB in all)",
            small_blob_size / 1024,
            small_blob_count * small_blob_size / (1024 * 1024)
        ),
        "each process downloads the same depth-1 pack and writes every file; the largest process of each side is measured",
        &url("small-blobs.git"),
        samples(3),
    );

    drop(daemon);
    let path = bench.recorder.finish().unwrap();
    println!("recorded in {}", path.display());
}
