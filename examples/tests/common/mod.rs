//! What the end-to-end tests of the example binaries share: running `sync` as a process and
//! keeping its exit code and output.

// Each test binary uses its own part of these.
#![allow(dead_code)]

/// One run of a binary: its exit code and what it printed.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Standard output as JSON (for `--output json`); panics with both streams if it is not.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `sync` with `flags`, then `extra`, without colour.
pub(crate) async fn run_sync(flags: &[String], extra: &[&str]) -> Run {
    let args: Vec<String> = flags
        .iter()
        .cloned()
        .chain(extra.iter().map(|s| (*s).to_owned()))
        .collect();
    sync_with_env(&args, &[("NO_COLOR", "1")]).await
}

/// Runs `sync` with `args` and `env` (standard error is a pipe, not a terminal; `NO_COLOR` is
/// unset unless `env` sets it).
pub(crate) async fn sync_with_env(args: &[String], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sync"));
    command.args(args).env_remove("NO_COLOR").kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().await.unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
