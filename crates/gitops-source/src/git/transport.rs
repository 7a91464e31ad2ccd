//! Connecting to a remote: URL checks, credentials, TLS, SSH and the mapping of transport failures
//! to [`SourceError`] variants.
//!
//! - HTTP basic credentials are answered through gitoxide's credentials callback (only when the
//!   server asks); bearer tokens go into gitoxide's in-memory `extraHeader` transport option. Extra
//!   CA certificates and timeouts are given to the `reqwest` client gitoxide builds, through its
//!   `configure_client` hook (the reqwest backend ignores `http.sslCAInfo`). Nothing is written to
//!   the repository's configuration, and git's own credential helpers and prompts are never used.
//! - SSH runs the `ssh` program with a private key and known_hosts written to a private temporary
//!   directory (mode 0700, key 0600) that is removed when the connection ends. Host keys are checked
//!   strictly; user and system ssh configuration is ignored.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use gix::bstr::{BStr, ByteSlice};
use gix::protocol::transport::client::blocking_io::Transport;

use crate::redact::Redactor;
use crate::secret::Secret;
use crate::source::{BoxError, SourceError};

use super::{Failure, GitCredentials};

/// The checked configuration of how to reach a remote. Its `Debug` output shows the redacted
/// location only.
pub(super) struct Settings {
    pub(super) url: gix::Url,
    location: String,
    redactor: Redactor,
    credentials: Option<GitCredentials>,
    known_hosts: Option<String>,
    accept_new_host_keys: bool,
    ca_certificates: Vec<reqwest::Certificate>,
    pub(super) timeout: Duration,
}

impl Settings {
    pub(super) fn new(
        url: &str,
        credentials: Option<GitCredentials>,
        known_hosts: Option<String>,
        accept_new_host_keys: bool,
        ca_bundle_pem: Option<Vec<u8>>,
        allow_insecure_http: bool,
        timeout: Duration,
    ) -> Result<Self, SourceError> {
        let invalid = |message: String| SourceError::InvalidConfiguration {
            message,
            source: None,
        };
        // The credentials never appear in gitoxide's messages; the redactor makes sure of it.
        let credential_secrets = credentials
            .iter()
            .flat_map(|credentials| match credentials {
                GitCredentials::Basic { password, .. } => vec![password.expose()],
                GitCredentials::BearerToken(token) => vec![token.expose()],
                GitCredentials::SshKey {
                    private_key,
                    passphrase,
                } => std::iter::once(private_key.expose())
                    .chain(passphrase.as_ref().map(Secret::expose))
                    .collect(),
            });
        let redactor = Redactor::new(url).with_secrets(credential_secrets);
        let location = redactor.location().to_owned();
        let parsed = gix::url::parse(url.as_bytes().as_bstr()).map_err(|error| {
            SourceError::InvalidConfiguration {
                // The parser's message quotes the URL, password included: only a redacted copy
                // of it is kept.
                message: format!("the repository URL {location} cannot be parsed"),
                source: Some(redactor.error(&error)),
            }
        })?;
        if parsed.password().is_some() {
            return Err(invalid(format!(
                "the repository URL {location} contains a password: pass it as GitCredentials instead"
            )));
        }
        use gix::url::Scheme;
        match (&parsed.scheme, &credentials) {
            (_, None) => {}
            (Scheme::Http, Some(GitCredentials::Basic { .. } | GitCredentials::BearerToken(_))) => {
                if !allow_insecure_http {
                    return Err(SourceError::InsecureCredentials { location });
                }
            }
            (
                Scheme::Https,
                Some(GitCredentials::Basic { .. } | GitCredentials::BearerToken(_)),
            ) => {}
            (Scheme::Ssh, Some(GitCredentials::SshKey { .. })) => {}
            (scheme, Some(_)) => {
                return Err(invalid(format!(
                    "these credentials cannot be used with {scheme} URLs ({location})"
                )));
            }
        }
        if parsed.scheme == Scheme::Ssh && known_hosts.is_none() && !accept_new_host_keys {
            return Err(invalid(format!(
                "{location} is an ssh URL: known_hosts is required (or opt in to accepting new host keys)"
            )));
        }
        let ca_certificates = match ca_bundle_pem {
            Some(pem) => {
                let certificates =
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                        SourceError::InvalidConfiguration {
                            message: "the CA bundle is not valid PEM".to_owned(),
                            source: Some(Box::new(error)),
                        }
                    })?;
                if certificates.is_empty() {
                    return Err(invalid("the CA bundle holds no certificate".to_owned()));
                }
                certificates
            }
            None => Vec::new(),
        };
        Ok(Self {
            url: parsed,
            location,
            redactor,
            credentials,
            known_hosts,
            accept_new_host_keys,
            ca_certificates,
            timeout,
        })
    }

    /// A failure of `operation` on the remote, its causes redacted.
    fn git_failure(
        &self,
        operation: &'static str,
        error: &(dyn std::error::Error + 'static),
    ) -> Failure {
        Failure::Source(SourceError::Git {
            operation,
            location: self.location.clone(),
            source: self.redact(error),
        })
    }

    /// The remote's URL without credentials ([`crate::redact_url`]).
    pub(super) fn location(&self) -> &str {
        &self.location
    }

    /// A copy of `error` and its sources with the URL's secrets and the configured credentials
    /// removed from every message.
    pub(super) fn redact(&self, error: &(dyn std::error::Error + 'static)) -> BoxError {
        self.redactor.error(error)
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("location", &self.location)
            .field("credentials", &self.credentials)
            .field("known_hosts", &self.known_hosts.as_ref().map(|_| "<set>"))
            .field("accept_new_host_keys", &self.accept_new_host_keys)
            .field("ca_certificates", &self.ca_certificates.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a connection leaves behind to explain its failures, and the files it must remove.
#[derive(Default)]
pub(super) struct Diagnostics {
    /// The private directory holding the SSH key, known_hosts and ssh's error output.
    ssh_dir: Option<tempfile::TempDir>,
}

impl Diagnostics {
    fn ssh_stderr(&self) -> Option<String> {
        let dir = self.ssh_dir.as_ref()?;
        std::fs::read_to_string(dir.path().join("stderr")).ok()
    }
}

/// The transport of one connection: it sends a flush packet when dropped, so a connection that
/// only listed the references still ends its conversation properly.
pub(super) type LinkTransport = gix::protocol::SendFlushOnDrop<Box<dyn Transport + Send>>;

/// How gitoxide asks for credentials during the handshake.
pub(super) type Authenticate = Box<
    dyn FnMut(
            gix::credentials::helper::Action,
        ) -> gix::Result<Option<gix::credentials::protocol::Outcome>>
        + Send,
>;

/// A connection not yet greeted: its transport, what answers its requests for credentials, and
/// the diagnostics of its transport.
pub(super) struct Link {
    pub(super) transport: LinkTransport,
    pub(super) authenticate: Authenticate,
    pub(super) diagnostics: Diagnostics,
}

/// Open a transport to the remote of `settings` (configured, not yet greeted).
pub(super) fn connect(settings: &Settings, repo: &gix::Repository) -> Result<Link, Failure> {
    use gix::url::Scheme;
    let mut diagnostics = Diagnostics::default();
    let transport = open_transport(settings, repo, &mut diagnostics)?;
    // Over plain http the credentials already went out as a header (see `http_options`): a
    // challenge then means they were refused.
    let credentials = match settings.url.scheme {
        Scheme::Http => None,
        _ => settings.credentials.clone(),
    };
    let origin = Origin::of(&settings.url);
    Ok(Link {
        transport: gix::protocol::SendFlushOnDrop::new(transport, false),
        authenticate: Box::new(move |action| {
            answer_credentials(credentials.as_ref(), &origin, action)
        }),
        diagnostics,
    })
}

/// The transport of the URL's scheme, configured (the ssh command and its private directory,
/// the http options and the origin guard, the buffered git:// connection).
fn open_transport(
    settings: &Settings,
    repo: &gix::Repository,
    diagnostics: &mut Diagnostics,
) -> Result<Box<dyn Transport + Send>, Failure> {
    use gix::protocol::transport::client::blocking_io::connect as connect_transport;
    use gix::url::Scheme;
    let remote = repo
        .remote_at(settings.url.clone())
        .map_err(|error| settings.git_failure("configuring the remote", &error))?;
    let (url, version) = remote
        .sanitized_url_and_version(gix::remote::Direction::Fetch)
        .map_err(|error| classify(settings, diagnostics, "connecting", error))?;
    let generic = |url: gix::Url, diagnostics: &Diagnostics| {
        connect_transport::connect(
            url,
            connect_transport::Options {
                version,
                ..Default::default()
            },
        )
        .map_err(|error| classify(settings, diagnostics, "connecting", error))
    };
    let transport: Box<dyn Transport + Send> = match settings.url.scheme {
        Scheme::Ssh => ssh_transport(settings, version, diagnostics)?,
        Scheme::Http | Scheme::Https => {
            let mut transport = generic(url, diagnostics)?;
            if settings.credentials.is_some() {
                // Credentials belong to the origin they were given for: the guard refuses every
                // request once a redirect has moved the transport to another origin.
                transport = Box::new(OriginGuard {
                    inner: transport,
                    origin: Origin::of(&settings.url),
                });
            }
            let options = http_options(settings, repo)?;
            transport
                .configure(&*options)
                .map_err(|error| settings.git_failure("configuring the http transport", &error))?;
            transport
        }
        Scheme::Git => Box::new(
            daemon_connection(&url, version, settings.timeout)
                .map_err(|error| classify(settings, diagnostics, "connecting", error))?,
        ),
        Scheme::File => generic(url, diagnostics)?,
        ref other => {
            return Err(Failure::Source(SourceError::Git {
                operation: "connecting",
                location: settings.location.clone(),
                source: Box::new(std::io::Error::other(format!(
                    "the {other} transport is not supported"
                ))),
            }));
        }
    };
    Ok(transport)
}

/// The ssh transport: the `ssh` program with the key and known_hosts written to a private
/// directory that the diagnostics keep (and remove when the connection ends).
fn ssh_transport(
    settings: &Settings,
    version: gix::protocol::transport::Protocol,
    diagnostics: &mut Diagnostics,
) -> Result<Box<dyn Transport + Send>, Failure> {
    use gix::protocol::transport::client::blocking_io::ssh;
    let (dir, command) = ssh_command(settings)?;
    diagnostics.ssh_dir = Some(dir);
    let transport = ssh::connect(
        settings.url.clone(),
        version,
        ssh::connect::Options {
            command: Some(command.into()),
            disallow_shell: false,
            kind: Some(ssh::ProgramKind::Ssh),
        },
        false,
    )
    .map_err(|error| settings.git_failure("preparing the ssh connection", &error))?;
    Ok(Box::new(transport))
}

/// The port of `git://` URLs that name none.
const GIT_DAEMON_PORT: u16 = 9418;

/// A `git://` connection whose requests each leave in one write.
///
/// gitoxide's own `git://` connection writes every packet line of a request with its own
/// `write` on the socket. With Nagle's algorithm, each line after the first then waits for the
/// server to acknowledge the first, which the server delays (40 ms on Linux) since it has
/// nothing to answer yet: two such stalls made a fetch of one commit 80 ms slower than `git
/// fetch`, which builds each request in a buffer and sends it at once. Here the lines are
/// buffered (gitoxide flushes the writer when a request is complete, before reading the
/// answer) and `TCP_NODELAY` is set, so a request is one segment and never waits for an
/// acknowledgement.
type DaemonConnection = gix::protocol::transport::client::git::blocking_io::Connection<
    std::io::BufReader<QuickAck>,
    std::io::BufWriter<std::net::TcpStream>,
>;

/// The reading half of a `git://` connection, which asks the kernel before each read to
/// acknowledge what arrives at once ([`TCP_QUICKACK`](socket2::SockRef::set_tcp_quickack),
/// Linux only).
///
/// The server writes some answers in several pieces (`git upload-pack` sends the shallow
/// information of a depth-1 fetch, then the pack, in separate writes); with Nagle's algorithm
/// on the server, a piece waits until the client acknowledges the one before, which the client
/// would otherwise delay by 40 ms since it has nothing to send. The flag is not permanent (the
/// kernel leaves quick-ack mode on its own), so it is set again before every read.
struct QuickAck(std::net::TcpStream);

impl std::io::Read for QuickAck {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            // An optimisation only: a socket that refuses it reads the same.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
        self.0.read(buf)
    }
}

/// Connect to the git daemon `url` names (see [`DaemonConnection`]), within `timeout`.
fn daemon_connection(
    url: &gix::Url,
    version: gix::protocol::transport::Protocol,
    timeout: Duration,
) -> Result<DaemonConnection, gix::Error> {
    use std::net::ToSocketAddrs as _;
    let io = |error: std::io::Error| gix::Error::from_error(error);
    if url.user().is_some() {
        return Err(io(std::io::Error::other(
            "a git:// URL cannot carry a user name",
        )));
    }
    let host = url
        .host()
        .ok_or_else(|| io(std::io::Error::other("the git:// URL names no host")))?;
    let port = url.port.unwrap_or(GIT_DAEMON_PORT);
    let mut last_error = None;
    let mut stream = None;
    for address in (host, port).to_socket_addrs().map_err(io)? {
        match std::net::TcpStream::connect_timeout(&address, timeout) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => last_error = Some(error),
        }
    }
    let read = stream.ok_or_else(|| {
        io(last_error
            .unwrap_or_else(|| std::io::Error::other("the host of the git:// URL has no address")))
    })?;
    read.set_nodelay(true).map_err(io)?;
    // Each read and write is bounded too: a server that stops answering ends the blocking
    // thread (and its hold on the cache) soon after the fetch's own deadline has passed.
    let bound = Some(timeout).filter(|timeout| !timeout.is_zero());
    read.set_read_timeout(bound).map_err(io)?;
    read.set_write_timeout(bound).map_err(io)?;
    let write = std::io::BufWriter::new(read.try_clone().map_err(io)?);
    Ok(DaemonConnection::new(
        std::io::BufReader::new(QuickAck(read)),
        write,
        version,
        url.path.clone(),
        Some((host.to_owned(), url.port)),
        gix::protocol::transport::client::git::ConnectMode::Daemon,
        false,
    ))
}

/// The origin of a URL: scheme, host and port (the default port when none is given).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: gix::url::Scheme,
    host: Option<String>,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &gix::Url) -> Self {
        Self {
            scheme: url.scheme.clone(),
            host: url.host().map(str::to_ascii_lowercase),
            port: url.port_or_default(),
        }
    }

    /// The origin of `url`, or `None` when it cannot be parsed.
    fn parse(url: &BStr) -> Option<Self> {
        gix::url::parse(url).ok().map(|url| Self::of(&url))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}",
            self.scheme,
            gitops_core::escape::Escaped(self.host.as_deref().unwrap_or(""))
        )?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// A redirect led to another origin than the one the credentials were given for.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server redirected from {configured} to another origin, {target}: the credentials were not sent there and the redirect is refused"
)]
pub(super) struct CrossOriginRedirect {
    /// The origin the credentials were given for.
    pub(super) configured: String,
    /// Where the redirect led.
    pub(super) target: String,
}

/// A transport that refuses to send anything once a redirect moved it to another origin than the
/// one the credentials were configured for (gitoxide follows the first redirect of a fetch and
/// asks for credentials anew at the new origin; a hostile or compromised server could otherwise
/// collect them, or serve a repository of its choosing to an authenticated client).
struct OriginGuard {
    inner: Box<dyn Transport + Send>,
    origin: Origin,
}

impl OriginGuard {
    fn check(&self) -> Result<(), gix::protocol::transport::client::Error> {
        let url = self.inner.to_url();
        let target = Origin::parse(url.as_ref());
        if target.as_ref() == Some(&self.origin) {
            return Ok(());
        }
        let target = target.map_or_else(
            || crate::redact_url(&url.to_str_lossy()),
            |origin| origin.to_string(),
        );
        Err(gix::protocol::transport::client::Error::Io(
            std::io::Error::other(CrossOriginRedirect {
                configured: self.origin.to_string(),
                target,
            }),
        ))
    }
}

impl gix::protocol::transport::client::TransportWithoutIO for OriginGuard {
    fn set_identity(
        &mut self,
        identity: gix::sec::identity::Account,
    ) -> Result<(), gix::protocol::transport::client::Error> {
        self.check()?;
        self.inner.set_identity(identity)
    }

    fn to_url(&self) -> std::borrow::Cow<'_, BStr> {
        self.inner.to_url()
    }

    fn supported_protocol_versions(&self) -> &[gix::protocol::transport::Protocol] {
        self.inner.supported_protocol_versions()
    }

    fn connection_persists_across_multiple_requests(&self) -> bool {
        self.inner.connection_persists_across_multiple_requests()
    }

    fn configure(&mut self, config: &dyn std::any::Any) -> gix::Result<()> {
        self.inner.configure(config)
    }
}

impl Transport for OriginGuard {
    fn handshake<'a>(
        &mut self,
        service: gix::protocol::transport::Service,
        extra_parameters: &'a [(&'a str, Option<&'a str>)],
    ) -> Result<
        gix::protocol::transport::client::blocking_io::SetServiceResponse<'_>,
        gix::protocol::transport::client::Error,
    > {
        self.check()?;
        self.inner.handshake(service, extra_parameters)
    }

    fn request(
        &mut self,
        write_mode: gix::protocol::transport::client::WriteMode,
        on_into_read: gix::protocol::transport::client::MessageKind,
        trace: bool,
    ) -> Result<
        gix::protocol::transport::client::blocking_io::RequestWriter<'_>,
        gix::protocol::transport::client::Error,
    > {
        self.check()?;
        self.inner.request(write_mode, on_into_read, trace)
    }
}

/// Answer gitoxide's credential requests from the configured credentials only: never git's
/// helpers, never a prompt, and only for the origin the credentials were given for.
fn answer_credentials(
    credentials: Option<&GitCredentials>,
    origin: &Origin,
    action: gix::credentials::helper::Action,
) -> gix::Result<Option<gix::credentials::protocol::Outcome>> {
    use gix::credentials::helper::Action;
    match action {
        Action::Get(context) if credentials.is_some() => {
            let asked = context
                .url
                .as_ref()
                .and_then(|url| Origin::parse(url.as_ref()));
            if asked.as_ref() != Some(origin) {
                return Err(gix::Error::from_error(CrossOriginRedirect {
                    configured: origin.to_string(),
                    target: asked.map_or_else(|| "an unknown URL".to_owned(), |o| o.to_string()),
                }));
            }
            answer_credentials_for_origin(credentials, context)
        }
        Action::Get(context) => answer_credentials_for_origin(credentials, context),
        Action::Store(_) | Action::Erase(_) => Ok(None),
    }
}

fn answer_credentials_for_origin(
    credentials: Option<&GitCredentials>,
    context: gix::credentials::protocol::Context,
) -> gix::Result<Option<gix::credentials::protocol::Outcome>> {
    {
        match credentials {
            Some(GitCredentials::Basic { username, password }) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: username.clone(),
                        password: password.expose().to_owned(),
                        oauth_refresh_token: None,
                    },
                    next: context.into(),
                }))
            }
            _ => Err(gix::Error::from_error(NoCredentials)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the server asked for credentials that are not configured or were refused")]
struct NoCredentials;

fn http_options(
    settings: &Settings,
    repo: &gix::Repository,
) -> Result<Box<dyn std::any::Any>, Failure> {
    use gix::protocol::transport::client::blocking_io::http;
    let url = settings.url.to_bstring();
    let url: &BStr = url.as_ref();
    let mut options = repo
        .transport_options(url, None)
        .map_err(|error| settings.git_failure("configuring the http transport", &error))?
        .and_then(|options| options.downcast::<http::Options>().ok())
        .map(|options| *options)
        .unwrap_or_default();
    match &settings.credentials {
        Some(GitCredentials::BearerToken(token)) => {
            options
                .extra_headers
                .push(format!("Authorization: Bearer {}", token.expose()));
        }
        // gitoxide never answers a challenge with credentials over plain http; when the caller
        // opted in, send them up front instead.
        Some(GitCredentials::Basic { username, password })
            if settings.url.scheme == gix::url::Scheme::Http =>
        {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            options
                .extra_headers
                .push(format!("Authorization: Basic {encoded}"));
        }
        _ => {}
    }
    options.connect_timeout = Some(settings.timeout);
    let certificates = settings.ca_certificates.clone();
    let timeout = settings.timeout;
    let configure_client: Box<http::reqwest::ConfigureClientFn> = Box::new(move |builder| {
        let builder = builder.connect_timeout(timeout).timeout(timeout);
        Ok(if certificates.is_empty() {
            builder
        } else {
            builder.tls_certs_merge(certificates.iter().cloned())
        })
    });
    options.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(
        http::reqwest::Options {
            configure_client: Some(configure_client),
            configure_request: None,
        },
    )));
    Ok(Box::new(options))
}

/// Quote a path for a POSIX shell.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Write the key and known_hosts to a private temporary directory and build the ssh command.
fn ssh_command(settings: &Settings) -> Result<(tempfile::TempDir, String), Failure> {
    let location = settings.location.clone();
    let io_failure = |what: &str, error: std::io::Error| {
        Failure::Source(SourceError::Git {
            operation: "preparing the ssh connection",
            location: location.clone(),
            source: Box::new(std::io::Error::new(
                error.kind(),
                format!("{what}: {error}"),
            )),
        })
    };
    let dir = tempfile::Builder::new()
        .prefix("gitops-source-ssh-")
        .tempdir()
        .map_err(|e| io_failure("creating a private directory", e))?;
    let known_hosts = dir.path().join("known_hosts");
    write_private(
        &known_hosts,
        settings.known_hosts.as_deref().unwrap_or("").as_bytes(),
    )
    .map_err(|e| io_failure("writing known_hosts", e))?;
    let stderr = dir.path().join("stderr");
    let mut command = format!(
        "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none \
         -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking={} \
         -o ConnectTimeout={} -o LogLevel=ERROR",
        shell_quote(&known_hosts),
        if settings.accept_new_host_keys {
            "accept-new"
        } else {
            "yes"
        },
        settings.timeout.as_secs().max(1),
    );
    if let Some(GitCredentials::SshKey {
        private_key,
        passphrase,
    }) = &settings.credentials
    {
        let key = dir.path().join("identity");
        let unlocked = unlock_key(private_key, passphrase.as_ref()).map_err(|source| {
            Failure::Source(SourceError::AuthenticationRefused {
                location: location.clone(),
                detail: "the SSH private key cannot be read or its passphrase is wrong".to_owned(),
                source: Some(source),
            })
        })?;
        write_private(&key, unlocked.expose().as_bytes())
            .map_err(|e| io_failure("writing the key", e))?;
        command.push_str(&format!(" -i {}", shell_quote(&key)));
    }
    command.push_str(&format!(" 2>{}", shell_quote(&stderr)));
    Ok((dir, command))
}

/// The private key in a form ssh can use without asking for a passphrase.
fn unlock_key(private_key: &Secret, passphrase: Option<&Secret>) -> Result<Secret, BoxError> {
    let mut text = private_key.expose().trim_end().to_owned();
    text.push('\n');
    match passphrase {
        None => Ok(Secret::new(text)),
        Some(passphrase) => {
            let key = ssh_key::PrivateKey::from_openssh(&text)?;
            let decrypted = if key.is_encrypted() {
                key.decrypt(passphrase.expose().as_bytes())?
            } else {
                key
            };
            let encoded = decrypted.to_openssh(ssh_key::LineEnding::LF)?;
            Ok(Secret::new(encoded.as_str()))
        }
    }
}

/// Write a file readable by its owner only.
fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// Map a gitoxide failure to the most specific [`SourceError`].
pub(super) fn classify(
    settings: &Settings,
    diagnostics: &Diagnostics,
    operation: &'static str,
    error: gix::Error,
) -> Failure {
    let location = settings.location.clone();
    if let Some(stderr) = diagnostics.ssh_stderr()
        && let Some(failure) = classify_ssh(settings, &stderr, &error)
    {
        return Failure::Source(failure);
    }
    if let Some(target) = redirect_target(&error) {
        return Failure::Source(SourceError::CrossOriginRedirect { location, target });
    }
    let symptoms = Symptoms::of(&error);
    let failure = if symptoms.unauthenticated {
        let detail = match &settings.credentials {
            None => "the server requires credentials and none are configured",
            Some(GitCredentials::Basic { .. }) => "the username or password was refused",
            Some(GitCredentials::BearerToken(_)) => "the bearer token was refused",
            Some(GitCredentials::SshKey { .. }) => "the SSH key was refused",
        };
        SourceError::AuthenticationRefused {
            location,
            detail: detail.to_owned(),
            source: Some(settings.redact(&error)),
        }
    } else if symptoms.timed_out {
        SourceError::Timeout {
            operation,
            location,
            after: settings.timeout,
        }
    } else if symptoms.unreachable {
        SourceError::UnreachableHost {
            location,
            source: settings.redact(&error),
        }
    } else {
        SourceError::Git {
            operation,
            location,
            source: settings.redact(&error),
        }
    };
    Failure::Source(failure)
}

/// What ssh's own error output says about a failure, when it says something specific.
fn classify_ssh(settings: &Settings, stderr: &str, error: &gix::Error) -> Option<SourceError> {
    let location = settings.location.clone();
    if stderr.contains("Host key verification failed")
        || stderr.contains("HOST IDENTIFICATION HAS CHANGED")
    {
        return Some(SourceError::HostKeyRejected { location });
    }
    if stderr.contains("Permission denied") {
        return Some(SourceError::AuthenticationRefused {
            location,
            detail: "the SSH server refused the key".to_owned(),
            source: Some(settings.redact(error)),
        });
    }
    let unreachable = [
        "Connection refused",
        "Could not resolve hostname",
        "connect to host",
        "Connection timed out",
    ];
    unreachable
        .iter()
        .any(|symptom| stderr.contains(symptom))
        .then(|| SourceError::UnreachableHost {
            location,
            source: settings.redact(error),
        })
}

/// The origin a refused cross-origin redirect led to, if that is what failed.
fn redirect_target(error: &gix::Error) -> Option<String> {
    error.iter_errors().find_map(|cause| {
        cause
            .downcast_ref::<CrossOriginRedirect>()
            .or_else(|| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<CrossOriginRedirect>())
            })
            .map(|redirect| redirect.target.clone())
    })
}

/// What the causes of a failure show, gathered over its whole chain.
#[derive(Default)]
struct Symptoms {
    unreachable: bool,
    timed_out: bool,
    unauthenticated: bool,
}

impl Symptoms {
    fn of(error: &gix::Error) -> Self {
        let mut symptoms = Self {
            unauthenticated: error.classify().is_unauthenticated(),
            ..Self::default()
        };
        for cause in error.iter_errors() {
            symptoms.add(cause);
        }
        symptoms
    }

    fn add(&mut self, cause: &(dyn std::error::Error + 'static)) {
        if cause.downcast_ref::<NoCredentials>().is_some() {
            self.unauthenticated = true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
                | ConnectionReset => self.unreachable = true,
                TimedOut => self.timed_out = true,
                _ => {}
            }
        }
        if let Some(http) = cause.downcast_ref::<reqwest::Error>() {
            if http.is_timeout() {
                self.timed_out = true;
            } else if http.is_connect() {
                self.unreachable = true;
            }
        }
        let text = cause.to_string();
        if text.contains("failed to lookup address") || text.contains("Name or service not known") {
            self.unreachable = true;
        }
        if text.contains("401") && text.to_ascii_lowercase().contains("unauthorized") {
            self.unauthenticated = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(
            shell_quote(Path::new("/tmp/a b/it's")),
            r"'/tmp/a b/it'\''s'"
        );
    }

    #[test]
    fn credentials_are_only_answered_from_configuration() {
        use gix::credentials::helper::Action;
        let context = gix::credentials::protocol::Context {
            url: Some("https://example.com/r.git".into()),
            ..Default::default()
        };
        let basic = GitCredentials::Basic {
            username: "alice".to_owned(),
            password: Secret::new("pw"),
        };
        let origin =
            Origin::of(&gix::url::parse("https://example.com/r.git".as_bytes().as_bstr()).unwrap());
        let outcome = answer_credentials(Some(&basic), &origin, Action::Get(context.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(outcome.identity.username, "alice");
        assert_eq!(outcome.identity.password, "pw");
        let error = answer_credentials(None, &origin, Action::Get(context.clone())).unwrap_err();
        assert!(
            error
                .iter_errors()
                .any(|e| e.downcast_ref::<NoCredentials>().is_some())
        );
        let bearer = GitCredentials::BearerToken(Secret::new("t"));
        // A bearer token goes in a header, never to git's credential prompt.
        let error = answer_credentials(Some(&bearer), &origin, Action::Get(context)).unwrap_err();
        assert!(
            error
                .iter_errors()
                .any(|e| e.downcast_ref::<NoCredentials>().is_some()),
            "{error}"
        );

        // Another scheme, host or port is another origin: the credentials are not given out.
        for other in [
            "https://example.org/r.git",
            "https://example.com:8443/r.git",
            "http://example.com/r.git",
        ] {
            let context = gix::credentials::protocol::Context {
                url: Some(other.into()),
                ..Default::default()
            };
            let error =
                answer_credentials(Some(&basic), &origin, Action::Get(context)).unwrap_err();
            assert!(
                error
                    .iter_errors()
                    .any(|e| e.downcast_ref::<CrossOriginRedirect>().is_some()),
                "{other}"
            );
        }
        // The default port is the same origin as no port.
        let context = gix::credentials::protocol::Context {
            url: Some("https://EXAMPLE.com:443/other".into()),
            ..Default::default()
        };
        let outcome = answer_credentials(Some(&basic), &origin, Action::Get(context))
            .unwrap()
            .expect("the same origin is given the credentials");
        assert_eq!(outcome.identity.username, "alice");
        assert_eq!(outcome.identity.password, "pw");
    }

    #[test]
    fn settings_check_credentials_against_the_scheme() {
        let timeout = Duration::from_secs(1);
        let token = || Some(GitCredentials::BearerToken(Secret::new("t")));
        let http = Settings::new("http://h/r", token(), None, false, None, false, timeout);
        assert!(matches!(http, Err(SourceError::InsecureCredentials { .. })));
        // Allowed over plain HTTP only when asked for.
        let allowed =
            Settings::new("http://h/r", token(), None, false, None, true, timeout).unwrap();
        assert_eq!(allowed.location(), "http://h/r");
        assert!(matches!(
            allowed.credentials,
            Some(GitCredentials::BearerToken(_))
        ));
        let git = Settings::new("git://h/r", token(), None, false, None, false, timeout);
        assert!(matches!(git, Err(SourceError::InvalidConfiguration { .. })));
        let settings = Settings::new(
            "ssh://git@h:2222/r",
            None,
            Some(String::new()),
            false,
            None,
            false,
            timeout,
        )
        .unwrap();
        assert_eq!(settings.location(), "ssh://git@h:2222/r");
    }
}
