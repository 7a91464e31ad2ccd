//! [`ControlPlane`]: etcd, kube-apiserver and kube-controller-manager on 127.0.0.1.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use std::os::unix::process::CommandExt as _;

use crate::certs::{self, CertError};
use crate::tools::{Tool, ToolError, Toolbox};

/// The controllers that run by default: enough for namespace deletion and garbage collection,
/// and none that would fight a test over the status of workloads.
pub const DEFAULT_CONTROLLERS: &[&str] = &[
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
];

/// The errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary was missing and could not be built.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// The certificates could not be made.
    #[error(transparent)]
    Certs(#[from] CertError),
    /// A file operation failed.
    #[error("{action} {path:?}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("starting {binary:?}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A process exited while the control plane was starting.
    #[error(
        "{process} exited with {status} while starting; the end of its log {log:?}:\n{log_tail}"
    )]
    Exited {
        /// Which process.
        process: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log file (removed with the control plane).
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The apiserver did not become ready in time.
    #[error(
        "kube-apiserver was not ready after {waited:?} (last answer: {last_error}); the end of \
         its log:\n{log_tail}"
    )]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The last error of the readiness check.
        last_error: String,
        /// The last lines of the apiserver's log.
        log_tail: String,
    },
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path:?}: {source}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// The error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A client for the control plane could not be made.
    #[error("creating a client for the control plane: {0}")]
    Client(#[source] kube::Error),
    /// A request to the control plane failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// The control plane has no such process (a connected cluster, or one already stopped).
    #[error("this control plane runs no {process}")]
    NotRunning {
        /// The process, such as `kube-apiserver`.
        process: &'static str,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// Configures and starts a [`ControlPlane`].
///
/// ```no_run
/// # async fn example() -> Result<(), gitops_envtest::Error> {
/// let control_plane = gitops_envtest::ControlPlane::builder()
///     .controllers(["namespace-controller", "garbage-collector-controller", "deployment-controller"])
///     .start()
///     .await?;
/// let client = control_plane.client().await?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ControlPlaneBuilder {
    controllers: Option<Vec<String>>,
    apiserver_args: Vec<String>,
    start_timeout: Duration,
    toolbox: Option<Toolbox>,
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        Self {
            controllers: Some(
                DEFAULT_CONTROLLERS
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect(),
            ),
            apiserver_args: Vec::new(),
            start_timeout: Duration::from_secs(90),
            toolbox: None,
        }
    }
}

impl ControlPlaneBuilder {
    /// The kube-controller-manager controllers to run (its `--controllers` names), instead of
    /// [`DEFAULT_CONTROLLERS`].
    pub fn controllers<I, S>(mut self, controllers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.controllers = Some(controllers.into_iter().map(Into::into).collect());
        self
    }

    /// Runs no kube-controller-manager at all: namespaces then never finish deleting.
    pub fn without_controller_manager(mut self) -> Self {
        self.controllers = None;
        self
    }

    /// One more kube-apiserver flag, such as `--feature-gates=...`.
    pub fn apiserver_arg(mut self, arg: impl Into<String>) -> Self {
        self.apiserver_args.push(arg.into());
        self
    }

    /// How long to wait for the apiserver to become ready (default 90 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Where the binaries come from (default: [`Toolbox::from_env`]).
    pub fn toolbox(mut self, toolbox: Toolbox) -> Self {
        self.toolbox = Some(toolbox);
        self
    }

    /// Builds the binaries when missing (minutes, once), then starts the control plane and waits
    /// until the apiserver is ready.
    pub async fn start(self) -> Result<ControlPlane, Error> {
        let toolbox = self.toolbox.clone();
        let binaries = tokio::task::spawn_blocking(move || -> Result<_, ToolError> {
            let toolbox = match toolbox {
                Some(toolbox) => toolbox,
                None => Toolbox::from_env()?,
            };
            Ok((
                toolbox.ensure(Tool::Etcd)?,
                toolbox.ensure(Tool::KubeApiserver)?,
                toolbox.ensure(Tool::KubeControllerManager)?,
            ))
        })
        .await
        .expect("building tools does not panic")?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match ControlPlane::start_once(&self, &binaries).await {
                // Free ports are chosen by binding and releasing them; another process can take
                // one in between, so a clash is tried again with new ports.
                Err(Error::Exited { log_tail, .. })
                    if attempt < 3 && log_tail.contains("address already in use") =>
                {
                    tracing::warn!("a port was taken while starting; trying again");
                }
                other => return other,
            }
        }
    }
}

/// A process of the control plane, with its log file.
#[derive(Debug)]
struct Managed {
    name: &'static str,
    child: Child,
    log: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
}

/// A running control plane: etcd, kube-apiserver and kube-controller-manager on 127.0.0.1 with
/// free ports, in a temporary directory of its own.
///
/// Dropping it stops every process and removes the directory, also when a test panics. A
/// watchdog process does the same if this process dies without dropping it (a control plane held
/// in a `static`, a killed test run), so no process or directory is ever left behind.
#[derive(Debug)]
pub struct ControlPlane {
    dir: Option<tempfile::TempDir>,
    processes: Mutex<Vec<Managed>>,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
    kubeconfig: Kubeconfig,
    kubeconfig_path: PathBuf,
    server: String,
    namespaces_made: AtomicU64,
}

fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(io_error("binding", Path::new("127.0.0.1:0")))?;
    let port = listener
        .local_addr()
        .map_err(io_error("reading the address of", Path::new("127.0.0.1:0")))?
        .port();
    Ok(port)
}

fn random_token() -> Result<String, Error> {
    let mut bytes = [0u8; 24];
    let urandom = Path::new("/dev/urandom");
    fs::File::open(urandom)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_error("reading", urandom))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The lines of a log worth showing: its last errors (klog's `E`/`F` lines, or etcd's
/// `"level":"error"`), else its last lines.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let is_error = |line: &&str| {
        let b = line.as_bytes();
        (b.len() > 1 && (b[0] == b'E' || b[0] == b'F') && b[1].is_ascii_digit())
            || line.contains(r#""level":"error""#)
            || line.contains(r#""level":"fatal""#)
    };
    let errors: Vec<&str> = text.lines().filter(is_error).collect();
    let lines: Vec<&str> = if errors.is_empty() {
        text.lines().collect()
    } else {
        errors
    };
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// The shell script of the watchdog: it collects pids from its standard input and, when that
/// closes (the test process is gone), kills them and removes the directory. A line `stop` means
/// the owner has cleaned up itself.
const WATCHDOG_SCRIPT: &str = r#"trap '' INT TERM HUP
pids=""
while IFS= read -r line; do
  case "$line" in
    stop) exit 0 ;;
    *) pids="$pids $line" ;;
  esac
done
if [ -n "$pids" ]; then kill -9 $pids 2>/dev/null; fi
sleep 0.2
rm -rf "$1"
"#;

impl ControlPlane {
    /// A builder with the defaults: [`DEFAULT_CONTROLLERS`], 90 s to start.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    /// Starts a control plane with the defaults.
    pub async fn start() -> Result<Self, Error> {
        Self::builder().start().await
    }

    /// Uses a cluster that is already running (for instance one started with
    /// `gitops-envtest start`) through its kubeconfig; dropping it stops nothing.
    pub async fn connect(kubeconfig_path: impl Into<PathBuf>) -> Result<Self, Error> {
        let kubeconfig_path = kubeconfig_path.into();
        let kubeconfig =
            Kubeconfig::read_from(&kubeconfig_path).map_err(|source| Error::Kubeconfig {
                path: kubeconfig_path.clone(),
                source,
            })?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: kubeconfig_path.clone(),
                    source,
                })?;
        Ok(Self {
            dir: None,
            processes: Mutex::new(Vec::new()),
            watchdog: Mutex::new(None),
            server: config.cluster_url.to_string(),
            kubeconfig,
            kubeconfig_path,
            namespaces_made: AtomicU64::new(0),
        })
    }

    async fn start_once(
        builder: &ControlPlaneBuilder,
        (etcd, apiserver, controller_manager): &(PathBuf, PathBuf, PathBuf),
    ) -> Result<Self, Error> {
        let mut plane = Self::in_new_dir()?;
        let root = plane.dir().to_owned();
        let files = ClusterFiles::write(&root)?;
        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let apiserver_port = free_port()?;
        let server = format!("https://127.0.0.1:{apiserver_port}");
        plane.spawn("etcd", etcd, &etcd_args(&root, etcd_client, etcd_peer))?;
        let mut apiserver_args =
            apiserver_args(&root, &files, etcd_client, apiserver_port, &server);
        apiserver_args.extend(builder.apiserver_args.iter().cloned());
        plane.spawn("kube-apiserver", apiserver, &apiserver_args)?;
        plane.write_kubeconfig(&root, server, &files)?;
        plane.wait_ready(builder.start_timeout).await?;
        if let Some(controllers) = &builder.controllers {
            let args = controller_manager_args(&root, &plane.kubeconfig_path, &files, controllers)?;
            plane.spawn("kube-controller-manager", controller_manager, &args)?;
        }
        tracing::info!(server = %plane.server, dir = %root.display(), "control plane ready");
        Ok(plane)
    }

    /// A control plane with nothing running yet but its watchdog, in a new temporary directory.
    fn in_new_dir() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("gitops-envtest-")
            .tempdir()
            .map_err(io_error("creating a directory in", &std::env::temp_dir()))?;
        let root = dir.path().to_owned();
        let watchdog = spawn_watchdog(&root)?;
        Ok(Self {
            dir: Some(dir),
            processes: Mutex::new(Vec::new()),
            watchdog: Mutex::new(Some(watchdog)),
            kubeconfig: Kubeconfig::default(),
            kubeconfig_path: root.join("kubeconfig"),
            server: String::new(),
            namespaces_made: AtomicU64::new(0),
        })
    }

    /// Writes the kubeconfig of the admin user for `server` into `root` and keeps it.
    fn write_kubeconfig(
        &mut self,
        root: &Path,
        server: String,
        files: &ClusterFiles,
    ) -> Result<(), Error> {
        let kubeconfig_text = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": {
                "server": server,
                "certificate-authority": files.ca,
            }}],
            "users": [{"name": "envtest-admin", "user": {"token": files.token}}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "envtest-admin", "namespace": "default"}}],
            "current-context": "envtest",
        })
        .to_string();
        let kubeconfig_path = write_file(root, "kubeconfig", &kubeconfig_text)?;
        self.kubeconfig =
            Kubeconfig::from_yaml(&kubeconfig_text).map_err(|source| Error::Kubeconfig {
                path: kubeconfig_path.clone(),
                source,
            })?;
        self.kubeconfig_path = kubeconfig_path;
        self.server = server;
        Ok(())
    }

    fn spawn(&self, name: &'static str, binary: &Path, args: &[String]) -> Result<(), Error> {
        let root = self.dir().to_owned();
        let log = root.join(format!("{name}.log"));
        let out = fs::File::create(&log).map_err(io_error("creating", &log))?;
        let err = out.try_clone().map_err(io_error("opening", &log))?;
        let child = Command::new(binary)
            .args(args)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C meant for the test run reaches the watchdog's
            // clean-up, not these processes half-way.
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
        if let Some((_, stdin)) = self.watchdog.lock().expect("not poisoned").as_mut() {
            // If the watchdog is gone there is nothing to tell; Drop still cleans up.
            let _ = writeln!(stdin, "{}", child.id());
        }
        self.processes.lock().expect("not poisoned").push(Managed {
            name,
            child,
            log,
            binary: binary.to_owned(),
            args: args.to_vec(),
        });
        Ok(())
    }

    /// Fails with the process's log if any process of the control plane has exited.
    fn check_running(&self) -> Result<(), Error> {
        let mut processes = self.processes.lock().expect("not poisoned");
        for p in processes.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(Error::Exited {
                    process: p.name,
                    status,
                    log_tail: log_tail(&p.log),
                    log: p.log.clone(),
                });
            }
        }
        Ok(())
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let client = self.client().await?;
        let started = Instant::now();
        let mut last_error = String::from("no answer yet");
        while started.elapsed() < timeout {
            self.check_running()?;
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a static request is valid");
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last_error = body,
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::NotReady {
            waited: timeout,
            last_error,
            log_tail: log_tail(&self.dir().join("kube-apiserver.log")),
        })
    }

    /// Kills kube-apiserver (SIGKILL), as a crash would, and waits for it to exit; etcd and the
    /// controllers keep running. [`ControlPlane::restart_apiserver`] brings it back.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when this control plane has no running apiserver (a connected
    /// cluster).
    pub fn kill_apiserver(&self) -> Result<(), Error> {
        let mut processes = self.processes.lock().expect("not poisoned");
        let apiserver = processes
            .iter_mut()
            .find(|p| p.name == "kube-apiserver")
            .ok_or(Error::NotRunning {
                process: "kube-apiserver",
            })?;
        let _ = apiserver.child.kill();
        let _ = apiserver.child.wait();
        Ok(())
    }

    /// Starts kube-apiserver again with the same flags after [`ControlPlane::kill_apiserver`]
    /// and waits until it is ready.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when there was no apiserver; otherwise as [`ControlPlaneBuilder::start`].
    pub async fn restart_apiserver(&self, timeout: Duration) -> Result<(), Error> {
        let (binary, args) = {
            let mut processes = self.processes.lock().expect("not poisoned");
            let index = processes
                .iter()
                .position(|p| p.name == "kube-apiserver")
                .ok_or(Error::NotRunning {
                    process: "kube-apiserver",
                })?;
            let mut old = processes.remove(index);
            let _ = old.child.kill();
            let _ = old.child.wait();
            (old.binary, old.args)
        };
        self.spawn("kube-apiserver", &binary, &args)?;
        self.wait_ready(timeout).await
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or_else(|| Path::new("."), tempfile::TempDir::path)
    }

    /// A new client for the control plane, bound to the calling tokio runtime (each
    /// `#[tokio::test]` has its own runtime, so each test asks for its own client).
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let config = kube::Config::from_custom_kubeconfig(
            self.kubeconfig.clone(),
            &KubeConfigOptions::default(),
        )
        .await
        .map_err(|source| Error::Kubeconfig {
            path: self.kubeconfig_path.clone(),
            source,
        })?;
        kube::Client::try_from(config).map_err(Error::Client)
    }

    /// The kubeconfig file, for kubectl, helm and other tools.
    #[must_use]
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The kubeconfig, parsed.
    #[must_use]
    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
    }

    /// The apiserver's URL, such as `https://127.0.0.1:41234`.
    #[must_use]
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The process ids of the running processes (empty for a connected cluster).
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        self.processes
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|p| p.child.id())
            .collect()
    }

    /// The directory that holds the control plane's data, certificates and logs (removed when it
    /// stops); `None` for a connected cluster.
    #[must_use]
    pub fn data_dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
    }

    /// Creates a namespace of its own for one test: `<prefix>-<unique>`, and returns its name.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, Error> {
        let mut clean: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        clean.truncate(40);
        let clean = clean.trim_matches('-');
        let clean = if clean.is_empty() { "test" } else { clean };
        let n = self.namespaces_made.fetch_add(1, Ordering::Relaxed);
        let name = format!("{clean}-{:x}-{n}", std::process::id());
        let resource = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            plural: "namespaces".into(),
        };
        let api: Api<DynamicObject> = Api::all_with(self.client().await?, &resource);
        let namespace = DynamicObject::new(&name, &resource);
        api.create(&PostParams::default(), &namespace)
            .await
            .map_err(|source| Error::Api {
                action: format!("creating namespace {name}"),
                source,
            })?;
        Ok(name)
    }

    /// Stops every process and removes the directory. Dropping does the same; this form makes the
    /// moment explicit.
    pub fn stop(self) {
        drop(self);
    }

    fn shut_down(&mut self) {
        let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        // Stop in reverse order of start: the controller-manager, the apiserver, then etcd.
        for p in processes.iter_mut().rev() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        processes.clear();
        drop(processes);
        if let Some((mut child, mut stdin)) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = writeln!(stdin, "stop");
            drop(stdin);
            let _ = child.wait();
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                tracing::warn!(dir = %path.display(), error = %e, "could not remove the control plane's directory");
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The certificates, keys and token of a new control plane, written into its directory.
struct ClusterFiles {
    ca: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    service_account_key: PathBuf,
    service_account_public_key: PathBuf,
    tokens: PathBuf,
    /// The admin user's bearer token.
    token: String,
}

impl ClusterFiles {
    fn write(root: &Path) -> Result<Self, Error> {
        let pki = certs::generate()?;
        let token = random_token()?;
        Ok(Self {
            ca: write_file(root, "ca.crt", &pki.ca_cert)?,
            serving_cert: write_file(root, "apiserver.crt", &pki.serving_cert)?,
            serving_key: write_file(root, "apiserver.key", &pki.serving_key)?,
            service_account_key: write_file(root, "service-account.key", &pki.service_account_key)?,
            service_account_public_key: write_file(
                root,
                "service-account.pub",
                &pki.service_account_public_key,
            )?,
            tokens: write_file(
                root,
                "tokens.csv",
                &format!("{token},gitops-envtest-admin,gitops-envtest-admin,\"system:masters\"\n"),
            )?,
            token,
        })
    }
}

/// Writes `text` to `root/name`.
fn write_file(root: &Path, name: &str, text: &str) -> Result<PathBuf, Error> {
    let path = root.join(name);
    fs::write(&path, text).map_err(io_error("writing", &path))?;
    Ok(path)
}

fn etcd_args(root: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    vec![
        "--name=default".to_owned(),
        format!("--data-dir={}", root.join("etcd").display()),
        format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
        format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
        // Test data need not survive a power cut: skipping fsync keeps etcd fast.
        "--unsafe-no-fsync=true".to_owned(),
        "--log-level=warn".to_owned(),
    ]
}

fn apiserver_args(
    root: &Path,
    files: &ClusterFiles,
    etcd_client_port: u16,
    port: u16,
    server: &str,
) -> Vec<String> {
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_client_port}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        // The endpoint reconciler refuses loopback addresses; nothing routes to this
        // apiserver through the `kubernetes` Service anyway.
        "--endpoint-reconciler-type=none".to_owned(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", root.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", files.serving_cert.display()),
        format!("--tls-private-key-file={}", files.serving_key.display()),
        format!("--token-auth-file={}", files.tokens.display()),
        "--authorization-mode=RBAC".to_owned(),
        "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
        format!("--service-account-issuer={server}"),
        format!(
            "--service-account-key-file={}",
            files.service_account_public_key.display()
        ),
        format!(
            "--service-account-signing-key-file={}",
            files.service_account_key.display()
        ),
        "--allow-privileged=true".to_owned(),
        // Pods would otherwise wait for their namespace's default service account.
        "--disable-admission-plugins=ServiceAccount".to_owned(),
        "--enable-priority-and-fairness=false".to_owned(),
        "--profiling=false".to_owned(),
    ]
}

/// The controller manager's arguments; it takes a free port of its own.
fn controller_manager_args(
    root: &Path,
    kubeconfig_path: &Path,
    files: &ClusterFiles,
    controllers: &[String],
) -> Result<Vec<String>, Error> {
    let port = free_port()?;
    Ok(vec![
        format!("--kubeconfig={}", kubeconfig_path.display()),
        format!("--authentication-kubeconfig={}", kubeconfig_path.display()),
        format!("--authorization-kubeconfig={}", kubeconfig_path.display()),
        format!("--controllers={}", controllers.join(",")),
        "--leader-elect=false".to_owned(),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        format!(
            "--cert-dir={}",
            root.join("controller-manager-certs").display()
        ),
        format!("--root-ca-file={}", files.ca.display()),
        format!(
            "--service-account-private-key-file={}",
            files.service_account_key.display()
        ),
        "--profiling=false".to_owned(),
    ])
}

fn spawn_watchdog(dir: &Path) -> Result<(Child, ChildStdin), Error> {
    let sh = Path::new("/bin/sh");
    let mut child = Command::new(sh)
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("gitops-envtest-watchdog")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            binary: sh.to_owned(),
            source,
        })?;
    let stdin = child.stdin.take().expect("stdin was piped");
    Ok((child, stdin))
}
