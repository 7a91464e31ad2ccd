//! Running an external tool (kustomize, helm): clean environment, timeout, output and memory
//! limits, cancellation, and the tool killed with every process it started whenever we stop
//! waiting for it.
//!
//! Each tool runs in a process group of its own; on timeout, cancellation, output overflow or
//! when the run is dropped, the whole group is killed (`SIGKILL`), so a `helm` plugin or a
//! kustomize exec function left behind cannot keep running. Memory is bounded with
//! `RLIMIT_DATA` (not `RLIMIT_AS`: Go programs reserve far more address space than they use),
//! set by util-linux's `prlimit` command, which starts the tool: the limit holds from the first
//! instruction and is inherited by what it starts. Setting it from here on the running child
//! (`prlimit(2)` after the spawn) would leave a window, and setting it between fork and exec
//! needs `unsafe` code (`pre_exec`), which this workspace does not allow.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use gitops_core::escape::{Escaped, EscapedPath};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// The errors of running an external tool.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The private home directory for the tool could not be made.
    #[error("cannot create a temporary home for {program}: {source}", program = EscapedPath(program))]
    TempHome {
        /// The tool.
        program: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The tool could not be started.
    #[error("cannot run {program}: {source}", program = EscapedPath(program))]
    Spawn {
        /// The tool.
        program: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the tool's output or waiting for it failed.
    #[error("{program}: {source}", program = EscapedPath(program))]
    Io {
        /// The tool.
        program: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The tool ran longer than the timeout and was killed.
    #[error("{program} did not finish within {timeout:?} and was killed", program = EscapedPath(program))]
    TimedOut {
        /// The tool.
        program: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// The render was cancelled; the tool was killed.
    #[error("{program} was cancelled", program = EscapedPath(program))]
    Cancelled {
        /// The tool.
        program: PathBuf,
    },
    /// The tool wrote more than the output limit and was killed.
    #[error("{program} wrote more than {limit} bytes and was killed", program = EscapedPath(program))]
    OutputTooLarge {
        /// The tool.
        program: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// [`ToolLimits::max_memory`] is set, but util-linux's `prlimit`, which sets it, is not
    /// installed.
    #[error("cannot bound the memory of {program}: prlimit (util-linux) is not installed in /usr/bin or /bin; install it, or run without a memory limit (ToolLimits::with_max_memory(None))", program = EscapedPath(program))]
    NoPrlimit {
        /// The tool.
        program: PathBuf,
    },
    /// The tool's output is not UTF-8.
    #[error("{program} wrote output that is not UTF-8", program = EscapedPath(program))]
    NotUtf8 {
        /// The tool.
        program: PathBuf,
    },
    /// The tool exited with a failure; its error output is kept.
    #[error("{program} failed ({status}): {stderr}", program = EscapedPath(program), stderr = Escaped(stderr))]
    Failed {
        /// The tool.
        program: PathBuf,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
}

/// Limits on the external tools (kustomize, helm) and on the files they may read, shared by
/// [`KustomizeRenderer`](crate::KustomizeRenderer) and [`HelmRenderer`](crate::HelmRenderer).
///
/// Defaults: 60 s per run, 256 MiB of output, 4 GiB of memory (data segment), files up to
/// 8 MiB.
///
/// ```
/// use std::time::Duration;
/// use gitops_render::ToolLimits;
/// let limits = ToolLimits::new().with_timeout(Duration::from_secs(10)).with_max_output(1 << 20);
/// assert_eq!(limits.timeout(), Duration::from_secs(10));
/// assert_eq!(limits.max_file_size(), 8 << 20);
/// assert_eq!(limits.max_memory(), Some(4 << 30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolLimits {
    timeout: Duration,
    max_output: usize,
    max_file_size: u64,
    max_memory: Option<u64>,
}

impl Default for ToolLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl ToolLimits {
    /// The defaults: 60 s, 256 MiB of output, 4 GiB of memory, 8 MiB files.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_output: 256 << 20,
            max_file_size: 8 << 20,
            max_memory: Some(4 << 30),
        }
    }

    /// The most memory one run may allocate (its data segment, `RLIMIT_DATA`, for the tool and
    /// each process it starts), in bytes; `None` for no limit. Beyond it allocations fail and
    /// the tool exits with an error. Needs util-linux's `prlimit` (see
    /// [`ProcessError::NoPrlimit`]).
    ///
    /// ```
    /// let limits = gitops_render::ToolLimits::new().with_max_memory(Some(1 << 30));
    /// assert_eq!(limits.max_memory(), Some(1 << 30));
    /// ```
    #[must_use]
    pub const fn with_max_memory(mut self, bytes: Option<u64>) -> Self {
        self.max_memory = bytes;
        self
    }

    /// The most memory one run may allocate, in bytes.
    #[must_use]
    pub const fn max_memory(&self) -> Option<u64> {
        self.max_memory
    }

    /// How long one run may take before the tool is killed.
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most output accepted from one run, in bytes; the tool is killed beyond it.
    #[must_use]
    pub const fn with_max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// The largest file allowed in the tree the tool reads (and as a values file), in bytes.
    #[must_use]
    pub const fn with_max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// How long one run may take.
    #[must_use]
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The most output accepted from one run, in bytes.
    #[must_use]
    pub const fn max_output(&self) -> usize {
        self.max_output
    }

    /// The largest file allowed, in bytes.
    #[must_use]
    pub const fn max_file_size(&self) -> u64 {
        self.max_file_size
    }
}

/// The proxy the tools are given: nothing listens there, so a fetch fails at once.
pub(crate) const UNREACHABLE_PROXY: &str = "http://127.0.0.1:9";

/// Most of a failing tool's stderr that is kept.
const MAX_STDERR: usize = 64 << 10;

/// One run of an external tool.
#[derive(Debug)]
pub(crate) struct ToolRun<'a> {
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<OsString>,
    pub(crate) cwd: &'a Path,
    pub(crate) timeout: Duration,
    pub(crate) max_output: usize,
    pub(crate) max_memory: Option<u64>,
}

impl<'a> ToolRun<'a> {
    /// A run of `program` with `args` in `cwd`, within `limits`.
    pub(crate) fn within(
        program: &'a Path,
        args: Vec<OsString>,
        cwd: &'a Path,
        limits: &ToolLimits,
    ) -> Self {
        Self {
            program,
            args,
            cwd,
            timeout: limits.timeout(),
            max_output: limits.max_output(),
            max_memory: limits.max_memory(),
        }
    }
}

/// Kills a tool's process group when dropped, unless the tool exited and was reaped first.
struct GroupGuard {
    group: Option<rustix::process::Pid>,
}

impl GroupGuard {
    /// Kills every process of the group (the tool's, until it is reaped its pid cannot be
    /// reused, so the group is still its own).
    fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            // ESRCH only means every process of it has exited.
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where util-linux's `prlimit` is.
fn find_prlimit() -> Option<&'static Path> {
    ["/usr/bin/prlimit", "/bin/prlimit"]
        .into_iter()
        .map(Path::new)
        .find(|path| path.is_file())
}

impl GroupGuard {
    /// The guard of the group `child` leads (its id is the child's pid; never 0 or 1, which
    /// would signal far more).
    fn led_by(child: &tokio::process::Child) -> Self {
        Self {
            group: child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .filter(|&pid| pid > 1)
                .and_then(rustix::process::Pid::from_raw),
        }
    }
}

impl ToolRun<'_> {
    /// Runs the tool with a fresh, private home and nothing of ours in its environment; returns
    /// its stdout. The child is killed on timeout, cancellation, output overflow or when the
    /// returned future is dropped.
    pub(crate) async fn run(self, cancel: &CancellationToken) -> Result<String, ProcessError> {
        let program = self.program.to_owned();
        let home = tempfile::Builder::new()
            .prefix("gitops-render-home-")
            .tempdir()
            .map_err(|source| ProcessError::TempHome {
                program: program.clone(),
                source,
            })?;
        let mut child = self
            .command(&program, home.path())?
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: program.clone(),
                source,
            })?;
        let mut group = GroupGuard::led_by(&child);
        let (out, err) = match self.read_output(&mut child, &program, cancel).await {
            Ok(output) => output,
            Err(e) => {
                // Kill the whole group, then reap; errors here only mean it already exited.
                group.kill();
                let _ = child.kill().await;
                return Err(e);
            }
        };
        let status = child.wait().await.map_err(|source| ProcessError::Io {
            program: program.clone(),
            source,
        })?;
        // Reaped: its pid (the group's id) may be reused, so the group is not signalled any more.
        group.group = None;
        stdout_of(program, status, out, &err)
    }

    /// The command that starts the tool (through `prlimit` when its memory is bounded) in a
    /// process group of its own, with `home` as its home and nothing of ours in its
    /// environment.
    fn command(
        &self,
        program: &Path,
        home: &Path,
    ) -> Result<tokio::process::Command, ProcessError> {
        let mut command = match self.max_memory {
            Some(bytes) => {
                let prlimit = find_prlimit().ok_or_else(|| ProcessError::NoPrlimit {
                    program: program.to_owned(),
                })?;
                let mut command = tokio::process::Command::new(prlimit);
                command
                    .arg(format!("--data={bytes}:{bytes}"))
                    .arg("--")
                    .arg(program);
                command
            }
            None => tokio::process::Command::new(program),
        };
        command.args(&self.args).current_dir(self.cwd);
        private_environment(&mut command, home);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, led by the tool, to kill with everything it started.
            .process_group(0)
            .kill_on_drop(true);
        Ok(command)
    }

    /// Reads the child's stdout (up to the output limit) and stderr until both close, the
    /// timeout passes or `cancel` fires.
    async fn read_output(
        &self,
        child: &mut tokio::process::Child,
        program: &Path,
        cancel: &CancellationToken,
    ) -> Result<(Vec<u8>, Vec<u8>), ProcessError> {
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let io = |source| ProcessError::Io {
            program: program.to_owned(),
            source,
        };
        let work = async {
            let read_out = async {
                let (out, overflow) = read_limited(stdout, self.max_output).await.map_err(io)?;
                if overflow {
                    // Stop at once: the tool may block on a full pipe and never close stderr.
                    return Err(ProcessError::OutputTooLarge {
                        program: program.to_owned(),
                        limit: self.max_output,
                    });
                }
                Ok(out)
            };
            let read_err = async { Ok(read_limited(stderr, MAX_STDERR).await.map_err(io)?.0) };
            tokio::try_join!(read_out, read_err)
        };
        tokio::select! {
            result = work => result,
            () = tokio::time::sleep(self.timeout) => Err(ProcessError::TimedOut {
                program: program.to_owned(),
                timeout: self.timeout,
            }),
            () = cancel.cancelled() => Err(ProcessError::Cancelled { program: program.to_owned() }),
        }
    }
}

/// Gives the tool `home` as its home, configuration and cache, no kubeconfig, no plugins, and
/// no network: nothing else of our environment.
fn private_environment(command: &mut tokio::process::Command, home: &Path) {
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("TMPDIR", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("HELM_CONFIG_HOME", home.join("helm/config"))
        .env("HELM_CACHE_HOME", home.join("helm/cache"))
        .env("HELM_DATA_HOME", home.join("helm/data"))
        .env("HELM_NO_PLUGINS", "1")
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .env("KUSTOMIZE_PLUGIN_HOME", home.join("no-plugins"));
    // Offline: any fetch that got past the static checks goes to a proxy that is not there
    // (the discard port on loopback) and fails at once. Go reaches loopback hosts without a
    // proxy: the static checks are what keep a tool from those.
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        command
            .env(name, UNREACHABLE_PROXY)
            .env(name.to_lowercase(), UNREACHABLE_PROXY);
    }
    command.env("NO_PROXY", "").env("no_proxy", "");
}

/// The tool's stdout as text when it exited successfully; its stderr when it failed (logged
/// as warnings when it succeeded).
fn stdout_of(
    program: PathBuf,
    status: ExitStatus,
    out: Vec<u8>,
    err: &[u8],
) -> Result<String, ProcessError> {
    if !status.success() {
        return Err(ProcessError::Failed {
            program,
            status,
            stderr: String::from_utf8_lossy(err).trim().to_owned(),
        });
    }
    if !err.is_empty() {
        tracing::debug!(program = %EscapedPath(&program), stderr = %Escaped(String::from_utf8_lossy(err).trim()), "tool warnings");
    }
    String::from_utf8(out).map_err(|_| ProcessError::NotUtf8 { program })
}

/// What a failed run says: the tool's error output cleaned by [`clean_message`] when it ran and
/// failed, else the error itself.
pub(crate) fn failure_message(root: &crate::SourceRoot, error: &ProcessError) -> String {
    match error {
        ProcessError::Failed { stderr, .. } => clean_message(root, stderr),
        other => other.to_string(),
    }
}

/// A tool's error output with absolute root paths made relative and a leading `Error: ` cut.
fn clean_message(root: &crate::SourceRoot, stderr: &str) -> String {
    let root_text = root.path().to_string_lossy();
    let text = stderr
        .replace(&format!("{root_text}/"), "")
        .replace(root_text.as_ref(), ".");
    let text = text.trim();
    text.strip_prefix("Error: ").unwrap_or(text).to_owned()
}

/// Reads up to `limit` bytes; the flag says whether there was more (which is then not read).
async fn read_limited(
    reader: impl AsyncRead + Unpin,
    limit: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buffer = Vec::new();
    let read = reader
        .take(limit as u64 + 1)
        .read_to_end(&mut buffer)
        .await?;
    let overflow = read > limit;
    buffer.truncate(limit);
    Ok((buffer, overflow))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration, max_output: usize) -> ToolRun<'static> {
        ToolRun {
            program: Path::new("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            cwd: Path::new("/"),
            timeout,
            max_output,
            max_memory: None,
        }
    }

    #[tokio::test]
    async fn runs_with_a_clean_private_environment() {
        let out = sh(
            "echo \"$HOME|$HELM_CACHE_HOME|$CARGO|$HTTPS_PROXY|$http_proxy|$ALL_PROXY|${NO_PROXY-unset}|$XDG_CACHE_HOME\"",
            Duration::from_secs(10),
            4096,
        )
        .run(&CancellationToken::new())
        .await
        .unwrap();
        let parts: Vec<&str> = out.trim().split('|').collect();
        assert!(parts[0].contains("gitops-render-home-"), "{out}");
        assert!(parts[1].starts_with(parts[0]), "{out}");
        assert_eq!(parts[2], "", "the caller's environment leaked: {out}");
        assert_eq!(parts[3..6], [UNREACHABLE_PROXY; 3], "{out}");
        assert_eq!(parts[6], "", "NO_PROXY is set and empty: {out}");
        assert!(parts[7].starts_with(parts[0]), "{out}");
    }

    #[tokio::test]
    async fn surfaces_stderr_of_failures() {
        let err = sh("echo oops >&2; exit 3", Duration::from_secs(10), 4096)
            .run(&CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProcessError::Failed { ref stderr, .. } if stderr == "oops"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn kills_on_timeout_cancel_and_overflow() {
        let err = sh("sleep 30", Duration::from_millis(200), 4096)
            .run(&CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");

        let cancel = CancellationToken::new();
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            canceller.cancel();
        });
        let err = sh("sleep 30", Duration::from_secs(60), 4096)
            .run(&cancel)
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::Cancelled { .. }), "{err}");

        let err = sh("yes", Duration::from_secs(60), 1000)
            .run(&CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProcessError::OutputTooLarge { limit: 1000, .. }),
            "{err}"
        );
    }

    /// Issue #12 item 8: the tools' memory was not bounded. The limit is set before the tool
    /// starts, and what it starts inherits it.
    #[tokio::test]
    async fn bounds_the_memory_of_the_tool_and_its_children() {
        let mut run = sh(
            "grep 'Max data size' /proc/self/limits",
            Duration::from_secs(10),
            4096,
        );
        run.max_memory = Some(1 << 30);
        let out = run.run(&CancellationToken::new()).await.unwrap();
        let fields: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fields[3..5], ["1073741824", "1073741824"], "{out}");

        // Beyond it, allocations fail and the tool fails.
        let mut run = sh(
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
            Duration::from_secs(60),
            4096,
        );
        run.max_memory = Some(32 << 20);
        let err = run.run(&CancellationToken::new()).await.unwrap_err();
        assert!(matches!(err, ProcessError::Failed { .. }), "{err}");
    }
}
