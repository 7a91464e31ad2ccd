//! What the gitops-sync integration tests share.

use std::path::Path;

/// Commits `files` (path, content) to the Git repository at `repo` with the `git` CLI, making it
/// on branch `main` first when it is not one yet; returns the new commit's hash.
pub(crate) fn commit(repo: &Path, files: &[(&str, &str)]) -> String {
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["-c", "user.name=test", "-c", "user.email=test@127.0.0.1"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    if !repo.join(".git").exists() {
        git(&["init", "-q", "-b", "main"]);
    }
    for (file, text) in files {
        let path = repo.join(file);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
        std::fs::write(path, text).expect("a file");
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "test"]);
    git(&["rev-parse", "HEAD"]).trim().to_owned()
}
