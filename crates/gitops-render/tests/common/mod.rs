//! Shared helpers of the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use gitops_envtest::Tool;

/// The pinned binary of `tool`, built on first use.
pub async fn tool(tool: Tool) -> PathBuf {
    tokio::task::spawn_blocking(move || gitops_envtest::tools::ensure(tool))
        .await
        .expect("the tool task panicked")
        .unwrap_or_else(|e| panic!("cannot get {tool:?}: {e}"))
}

/// The fixtures directory of this crate.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Writes `text` to `dir/file`, creating directories.
pub fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Copies a fixture tree into a fresh temporary directory (for tests that add files to it).
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
