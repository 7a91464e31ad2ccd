//! Running an external tool (kustomize, helm): clean environment, timeout, output limit,
//! cancellation, and the child killed whenever we stop waiting for it.

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
/// Defaults: 60 s per run, 256 MiB of output, files up to 8 MiB.
///
/// ```
/// use std::time::Duration;
/// use gitops_render::ToolLimits;
/// let limits = ToolLimits::new().with_timeout(Duration::from_secs(10)).with_max_output(1 << 20);
/// assert_eq!(limits.timeout(), Duration::from_secs(10));
/// assert_eq!(limits.max_file_size(), 8 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolLimits {
    timeout: Duration,
    max_output: usize,
    max_file_size: u64,
}

impl Default for ToolLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl ToolLimits {
    /// The defaults: 60 s, 256 MiB of output, 8 MiB files.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_output: 256 << 20,
            max_file_size: 8 << 20,
        }
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
        let h = home.path();
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&self.args)
            .current_dir(self.cwd)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", h)
            .env("TMPDIR", h)
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_CACHE_HOME", h.join("cache"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("HELM_CONFIG_HOME", h.join("helm/config"))
            .env("HELM_CACHE_HOME", h.join("helm/cache"))
            .env("HELM_DATA_HOME", h.join("helm/data"))
            .env("HELM_NO_PLUGINS", "1")
            .env("KUBECONFIG", h.join("no-kubeconfig"))
            .env("KUSTOMIZE_PLUGIN_HOME", h.join("no-plugins"));
        // Offline: any fetch that got past the static checks goes to a proxy that is not there
        // (the discard port on loopback) and fails at once. Go reaches loopback hosts without a
        // proxy: the static checks are what keep a tool from those.
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            command
                .env(name, UNREACHABLE_PROXY)
                .env(name.to_lowercase(), UNREACHABLE_PROXY);
        }
        command
            .env("NO_PROXY", "")
            .env("no_proxy", "")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let io = |source| ProcessError::Io {
            program: program.clone(),
            source,
        };
        let outcome = {
            let work = async {
                let read_out = async {
                    let (out, overflow) =
                        read_limited(stdout, self.max_output).await.map_err(io)?;
                    if overflow {
                        // Stop at once: the tool may block on a full pipe and never close stderr.
                        return Err(ProcessError::OutputTooLarge {
                            program: program.clone(),
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
                    program: program.clone(),
                    timeout: self.timeout,
                }),
                () = cancel.cancelled() => Err(ProcessError::Cancelled { program: program.clone() }),
            }
        };
        let (out, err) = match outcome {
            Ok(output) => output,
            Err(e) => {
                // Kill and reap; errors here only mean it already exited.
                let _ = child.kill().await;
                return Err(e);
            }
        };
        let status = child.wait().await.map_err(io)?;
        if !status.success() {
            return Err(ProcessError::Failed {
                program,
                status,
                stderr: String::from_utf8_lossy(&err).trim().to_owned(),
            });
        }
        if !err.is_empty() {
            tracing::debug!(program = %EscapedPath(&program), stderr = %Escaped(String::from_utf8_lossy(&err).trim()), "tool warnings");
        }
        String::from_utf8(out).map_err(|_| ProcessError::NotUtf8 { program })
    }
}

/// A tool's error output with absolute root paths made relative and a leading `Error: ` cut.
pub(crate) fn clean_message(root: &crate::SourceRoot, stderr: &str) -> String {
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
}
