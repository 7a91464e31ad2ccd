//! Large blobs over git:// from a real `git daemon` on 127.0.0.1: a blob stored whole in the
//! cache's pack is streamed into the artifact, a deltified one is read through the object
//! database; both arrive byte for byte with the exact digest, and a damaged one rebuilds the cache.

mod common;

use std::path::Path;

use common::{GitDaemon, TestRepo, captured_logs, run_git};
use gitops_source::{Digest, FetchOutcome, FetchRequest, GitSource, Source};
use sha2::{Digest as _, Sha256};

/// About `lines` × 65 bytes of text that compresses poorly (hexadecimal of a xorshift stream).
fn big_text(lines: usize, seed: u64) -> String {
    let mut state = seed | 1;
    let mut text = String::with_capacity(lines * 65);
    for _ in 0..lines {
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(&format!("{state:016x}"));
        }
        text.push('\n');
    }
    text
}

async fn fetch(source: &GitSource, destination: &Path) -> gitops_source::Artifact {
    match source.fetch(FetchRequest::new(destination)).await.unwrap() {
        FetchOutcome::Fetched(artifact) => artifact,
        other => panic!("expected an artifact, got {other:?}"),
    }
}

/// The digest of one file `big.txt` with `content`, computed here from its definition.
fn expected_digest(content: &[u8]) -> Digest {
    let blob: [u8; 32] = Sha256::digest(content).into();
    Digest::of_files([("big.txt", false, blob)])
}

#[tokio::test]
async fn a_blob_of_a_few_megabytes_arrives_exactly_streamed_or_deltified() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let repo = TestRepo::new(&repos, "big");
    let first = big_text(60_000, 7); // about 3.9 MB
    repo.commit(&[("big.txt", &first)], "big");
    let daemon = GitDaemon::start(&repos);
    let source = GitSource::builder(daemon.url("big"), dir.path().join("cache"))
        .build()
        .unwrap();

    // Cold: the blob is stored whole in the fetched pack and streamed from it.
    let artifact = fetch(&source, &dir.path().join("out1")).await;
    let written = std::fs::read(artifact.root().join("big.txt")).unwrap();
    assert!(written == first.as_bytes(), "the content differs");
    assert_eq!(artifact.digest(), expected_digest(first.as_bytes()));
    assert_eq!(artifact.total_bytes(), first.len() as u64);
    artifact.verify().unwrap();

    // One line changed: the server sends the new blob as a delta against the one the cache
    // holds, and the cache keeps it as a delta; written in full (no previous artifact given).
    let mut second = first.clone();
    second.replace_range(650..655, "edits");
    repo.commit(&[("big.txt", &second)], "edit");
    let artifact = fetch(&source, &dir.path().join("out2")).await;
    let written = std::fs::read(artifact.root().join("big.txt")).unwrap();
    assert!(written == second.as_bytes(), "the content differs");
    assert_eq!(artifact.digest(), expected_digest(second.as_bytes()));
    artifact.verify().unwrap();
    let cache = dir.path().join("cache/repository.git");
    let blob = run_git(&repo.path, &["rev-parse", "HEAD:big.txt"]);
    let verified = run_git(&cache, &["verify-pack", "-v", &pack_index(&cache)]);
    assert!(
        verified
            .lines()
            .any(|line| line.starts_with(&blob) && line.split_whitespace().count() > 5),
        "the new blob is not a delta in the cache:\n{verified}"
    );
}

/// The index of the newest pack of the repository at `git_dir`.
fn pack_index(git_dir: &Path) -> String {
    let packs = git_dir.join("objects/pack");
    let newest = std::fs::read_dir(&packs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "idx"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().modified().unwrap())
        .unwrap();
    newest.display().to_string()
}

#[tokio::test]
async fn a_damaged_large_blob_rebuilds_the_cache_and_arrives_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let repo = TestRepo::new(&repos, "big");
    let content = big_text(40_000, 11); // about 2.6 MB
    repo.commit(&[("big.txt", &content)], "big");
    let daemon = GitDaemon::start(&repos);
    let source = GitSource::builder(daemon.url("big"), dir.path().join("cache"))
        .build()
        .unwrap();
    let first = fetch(&source, &dir.path().join("out1")).await;
    let blob = run_git(&repo.path, &["rev-parse", "HEAD:big.txt"]);

    // The middle of the blob's compressed data (most of the pack) is overwritten: its entry
    // header is intact, its zlib stream is not.
    let packs = dir.path().join("cache/repository.git/objects/pack");
    for entry in std::fs::read_dir(&packs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "pack") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle..middle + 4096].fill(0xAA);
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let logs = captured_logs();
    let rebuilt = fetch(&source, &dir.path().join("out2")).await;
    // The warning names the file, the blob and the pack, and says what is wrong.
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let warning = logged
        .lines()
        .find(|line| line.contains("rebuilding") && line.contains(&blob))
        .unwrap_or_else(|| panic!("no warning naming blob {blob}:\n{logged}"));
    for part in [
        "cannot read big.txt",
        "of pack",
        ".pack",
        "is corrupt",
        "zlib",
    ] {
        assert!(warning.contains(part), "{part:?} missing: {warning}");
    }
    let written = std::fs::read(rebuilt.root().join("big.txt")).unwrap();
    assert!(written == content.as_bytes(), "the content differs");
    assert_eq!(rebuilt.digest(), first.digest());
    assert_eq!(rebuilt.digest(), expected_digest(content.as_bytes()));
}
