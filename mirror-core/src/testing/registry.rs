//! [`TestRegistry`]: the CNCF distribution registry, spawned for a test.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::require_tool;
use super::token::TokenServer;

/// The binary of the Debian package `docker-registry`.
const REGISTRY_BINARY: &str = "docker-registry";
/// How to install it.
const REGISTRY_SETUP: &str = "apt-get install -y docker-registry";
/// The service name the token variant uses (`auth.token.service`, the tokens' audience).
const TOKEN_SERVICE: &str = "mirror-core-test-registry";
/// How long a start may take before it is declared failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum AuthSpec {
    None,
    Basic { username: String, password: String },
    Token { username: String, password: String },
}

/// Options for a [`TestRegistry`]; [`TestRegistryBuilder::start`] spawns it.
#[derive(Debug, Clone)]
pub struct TestRegistryBuilder {
    auth: AuthSpec,
    token_expires_in: Option<Duration>,
}

impl Default for TestRegistryBuilder {
    fn default() -> Self {
        TestRegistryBuilder {
            auth: AuthSpec::None,
            token_expires_in: None,
        }
    }
}

impl TestRegistryBuilder {
    /// Anonymous access, push included (the default).
    pub fn anonymous(mut self) -> Self {
        self.auth = AuthSpec::None;
        self
    }

    /// htpasswd basic auth for one user (bcrypt).
    pub fn basic_auth(mut self, username: &str, password: &str) -> Self {
        self.auth = AuthSpec::Basic {
            username: username.to_string(),
            password: password.to_string(),
        };
        self
    }

    /// Bearer token auth through an in-process [`TokenServer`] that knows one user.
    pub fn token_auth(mut self, username: &str, password: &str) -> Self {
        self.auth = AuthSpec::Token {
            username: username.to_string(),
            password: password.to_string(),
        };
        self
    }

    /// The lifetime of tokens (token auth only; 300 s by default). Can also be changed later
    /// with [`TokenServer::set_expires_in`].
    pub fn token_expires_in(mut self, lifetime: Duration) -> Self {
        self.token_expires_in = Some(lifetime);
        self
    }

    /// Spawns the registry and waits until `GET /v2/` answers.
    ///
    /// # Panics
    ///
    /// If `docker-registry` is not installed (the message names
    /// `apt-get install -y docker-registry`), or the registry does not come up (the message
    /// includes the end of its log).
    pub fn start(self) -> TestRegistry {
        let binary = require_tool(REGISTRY_BINARY, REGISTRY_SETUP);
        let dir = tempfile::Builder::new()
            .prefix("mirror-core-test-registry-")
            .tempdir()
            .unwrap_or_else(|e| panic!("test registry: cannot create a temp dir: {e}"));
        let root = dir.path().to_path_buf();
        let data_dir = root.join("data");
        fs::create_dir_all(&data_dir)
            .unwrap_or_else(|e| panic!("test registry: cannot create {}: {e}", data_dir.display()));

        let (auth, token_server) = match &self.auth {
            AuthSpec::None => (Auth::None, None),
            AuthSpec::Basic { username, password } => {
                let hash = bcrypt::hash(password, 4)
                    .unwrap_or_else(|e| panic!("test registry: bcrypt failed: {e}"));
                let path = root.join("htpasswd");
                write_file(&path, format!("{username}:{hash}\n").as_bytes());
                (
                    Auth::Basic {
                        username: username.clone(),
                        password: password.clone(),
                        htpasswd: path,
                    },
                    None,
                )
            }
            AuthSpec::Token { username, password } => {
                let server = TokenServer::start(TOKEN_SERVICE, username, password);
                if let Some(lifetime) = self.token_expires_in {
                    server.set_expires_in(lifetime);
                }
                let bundle = root.join("token-root.pem");
                write_file(&bundle, server.root_cert_pem().as_bytes());
                (
                    Auth::Token {
                        username: username.clone(),
                        password: password.clone(),
                        bundle,
                    },
                    Some(server),
                )
            }
        };

        let registry = TestRegistry {
            binary,
            config_path: root.join("config.yml"),
            log_path: root.join("registry.log"),
            data_dir,
            secret: format!("{:032x}", rand::random::<u128>()),
            auth,
            token_server,
            port: Mutex::new(None),
            child: Mutex::new(None),
            dir,
        };
        // First start: let the registry pick its port (it logs the bound address), so there is
        // no window where another process could take a port we chose.
        registry.spawn_and_wait(0);
        registry
    }
}

#[derive(Debug)]
enum Auth {
    None,
    Basic {
        username: String,
        password: String,
        htpasswd: PathBuf,
    },
    Token {
        username: String,
        password: String,
        bundle: PathBuf,
    },
}

/// A CNCF distribution registry (2.8, Debian package `docker-registry`) running on
/// `127.0.0.1` with an ephemeral port, filesystem storage in a temporary directory, deletes
/// enabled, upload purging off, and its log in a file of that directory.
///
/// Three flavours: [`TestRegistry::start`] (anonymous push and pull),
/// [`TestRegistry::with_basic_auth`] (htpasswd) and [`TestRegistry::with_token_auth`] (bearer
/// tokens from an in-process [`TokenServer`]). [`TestRegistry::builder`] gives more options.
///
/// The process is killed (and reaped) when the value is dropped; the temporary directory is
/// removed. [`stop`](TestRegistry::stop) and [`restart`](TestRegistry::restart) keep the port
/// and the data, so tests can kill the registry mid-operation and bring it back.
pub struct TestRegistry {
    binary: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    data_dir: PathBuf,
    secret: String,
    auth: Auth,
    token_server: Option<TokenServer>,
    port: Mutex<Option<u16>>,
    child: Mutex<Option<Child>>,
    // Last: removed after the process is gone (fields drop in order, after `Drop::drop`).
    dir: tempfile::TempDir,
}

impl fmt::Debug for TestRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none",
            Auth::Basic { .. } => "basic",
            Auth::Token { .. } => "token",
        };
        f.debug_struct("TestRegistry")
            .field("host", &self.host())
            .field("auth", &auth)
            .field("dir", &self.dir.path())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl TestRegistry {
    /// Options for a registry to start.
    pub fn builder() -> TestRegistryBuilder {
        TestRegistryBuilder::default()
    }

    /// A registry with anonymous push and pull.
    ///
    /// # Panics
    ///
    /// See [`TestRegistryBuilder::start`].
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// A registry with htpasswd basic auth for one user: `GET /v2/` answers 401 without
    /// credentials.
    ///
    /// # Panics
    ///
    /// See [`TestRegistryBuilder::start`].
    pub fn with_basic_auth(username: &str, password: &str) -> Self {
        Self::builder().basic_auth(username, password).start()
    }

    /// A registry with bearer token auth; its [`TokenServer`] grants every action to the user
    /// and only `pull` to anonymous requests.
    ///
    /// # Panics
    ///
    /// See [`TestRegistryBuilder::start`].
    pub fn with_token_auth(username: &str, password: &str) -> Self {
        Self::builder().token_auth(username, password).start()
    }

    /// The port (stable across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        lock(&self.port).unwrap_or(0)
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The storage root directory (`storage.filesystem.rootdirectory`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The registry's log file (its stdout and stderr), appended to across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The user name, for the basic and token variants.
    pub fn username(&self) -> Option<&str> {
        match &self.auth {
            Auth::None => None,
            Auth::Basic { username, .. } | Auth::Token { username, .. } => Some(username),
        }
    }

    /// The password, for the basic and token variants.
    pub fn password(&self) -> Option<&str> {
        match &self.auth {
            Auth::None => None,
            Auth::Basic { password, .. } | Auth::Token { password, .. } => Some(password),
        }
    }

    /// The token server, for the token variant.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// Its credentials: basic for the basic and token variants, else anonymous.
    pub fn credentials(&self) -> crate::store::http::credentials::Credentials {
        use crate::store::http::credentials::Credentials;
        match (self.username(), self.password()) {
            (Some(u), Some(p)) => Credentials::basic(u, p),
            _ => Credentials::Anonymous,
        }
    }

    /// A client of this registry with its credentials.
    pub fn client(&self) -> crate::store::http::RegistryClient {
        crate::store::http::RegistryClient::new(&self.host(), self.credentials())
            .unwrap_or_else(|e| panic!("a client of the test registry: {e}"))
    }

    /// A [`GenericRegistry`](crate::GenericRegistry) on this registry, as a deployer's mirror.
    pub fn generic_registry(&self) -> std::sync::Arc<crate::GenericRegistry> {
        std::sync::Arc::new(crate::GenericRegistry::new(self.client()))
    }

    /// The store of `repository` on this registry.
    pub fn store(&self, repository: &str) -> crate::store::http::HttpStore {
        self.client()
            .repository(repository)
            .unwrap_or_else(|e| panic!("repository {repository:?}: {e}"))
    }

    /// Pushes `image` to `repository:tag` (a source for a deploy).
    pub async fn push(&self, repository: &str, tag: &str, image: &super::TestImage) {
        image
            .push(&self.store(repository), tag)
            .await
            .unwrap_or_else(|e| panic!("pushing {repository}:{tag}: {e}"));
    }

    /// `repository:tag` on this registry as a deploy source.
    pub fn source(&self, repository: &str, tag: &str) -> crate::Source {
        crate::Source::parse(&format!("{}/{repository}:{tag}", self.host()))
            .unwrap_or_else(|e| panic!("source {repository}:{tag}: {e}"))
    }

    /// The process id while the registry runs.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    /// Whether the registry process is alive.
    pub fn is_running(&self) -> bool {
        let mut child = lock(&self.child);
        match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the registry at once (SIGKILL, like a crash) and reaps it. Data written so far
    /// stays in [`data_dir`](Self::data_dir). Does nothing when it is not running.
    pub fn kill(&self) {
        if let Some(mut c) = lock(&self.child).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the registry; the same as [`kill`](Self::kill) (the registry keeps nothing in
    /// memory that a graceful stop would save).
    pub fn stop(&self) {
        self.kill();
    }

    /// Stops the registry if it runs and starts it again on the same port with the same data,
    /// then waits until `GET /v2/` answers.
    ///
    /// # Panics
    ///
    /// If it does not come back (for instance another process took the port meanwhile).
    pub fn restart(&self) {
        self.kill();
        let port = self.port();
        self.spawn_and_wait(port);
    }

    fn config(&self, port: u16) -> String {
        let auth = match &self.auth {
            Auth::None => String::new(),
            Auth::Basic { htpasswd, .. } => format!(
                "auth:\n  htpasswd:\n    realm: mirror-core-test-registry\n    path: {}\n",
                yaml_str(&htpasswd.display().to_string())
            ),
            Auth::Token { bundle, .. } => {
                let server = self
                    .token_server
                    .as_ref()
                    .expect("the token variant always has a token server");
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
                     rootcertbundle: {}\n",
                    yaml_str(&server.realm()),
                    yaml_str(server.service()),
                    yaml_str(server.issuer()),
                    yaml_str(&bundle.display().to_string())
                )
            }
        };
        format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n\
             {auth}",
            root = yaml_str(&self.data_dir.display().to_string()),
            secret = yaml_str(&self.secret),
        )
    }

    /// Starts the process on `port` (0: any) and waits for it to serve `/v2/`. On a fixed port,
    /// retries while the port is still held by the previous process.
    fn spawn_and_wait(&self, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.try_spawn(port, deadline) {
                Ok(()) => return,
                Err(e) if port != 0 && e.retryable && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!(
                    "test registry ({}) did not start: {}\n--- end of {} ---\n{}",
                    self.binary.display(),
                    e.message,
                    self.log_path.display(),
                    tail(&self.log(), 40)
                ),
            }
        }
    }

    fn try_spawn(&self, port: u16, deadline: Instant) -> Result<(), StartError> {
        write_file(&self.config_path, self.config(port).as_bytes());
        let log_offset = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| StartError::fatal(format!("cannot open the log file: {e}")))?;
        let log_err = log
            .try_clone()
            .map_err(|e| StartError::fatal(format!("cannot clone the log file handle: {e}")))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        // REGISTRY_* variables override the configuration file: keep the caller's out.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| StartError::fatal(format!("cannot spawn: {e}")))?;
        *lock(&self.child) = Some(child);

        let result = self.wait_until_up(port, log_offset, deadline);
        if result.is_err() {
            self.kill();
        }
        result
    }

    fn wait_until_up(
        &self,
        port: u16,
        log_offset: u64,
        deadline: Instant,
    ) -> Result<(), StartError> {
        // 1. The registry logs `listening on 127.0.0.1:PORT` once its socket is bound.
        let bound = loop {
            let text = read_from(&self.log_path, log_offset);
            if let Some(p) = listening_port(&text) {
                break p;
            }
            if !self.is_running() {
                let retryable = text.contains("address already in use");
                return Err(StartError {
                    message: "the process exited during startup".to_string(),
                    retryable,
                });
            }
            if Instant::now() > deadline {
                return Err(StartError::fatal(format!(
                    "no `listening on` line in the log after {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if port != 0 && bound != port {
            return Err(StartError::fatal(format!(
                "asked for port {port}, the registry bound {bound}"
            )));
        }
        *lock(&self.port) = Some(bound);
        // 2. `GET /v2/` answers (401 counts: auth is on, the registry is up).
        let addr = SocketAddr::from(([127, 0, 0, 1], bound));
        loop {
            match http_status(addr, "/v2/") {
                Ok(200) | Ok(401) => return Ok(()),
                Ok(other) => {
                    return Err(StartError::fatal(format!(
                        "GET /v2/ answered {other}, expected 200 or 401"
                    )))
                }
                Err(e) => {
                    if !self.is_running() {
                        return Err(StartError::fatal(
                            "the process exited during startup".to_string(),
                        ));
                    }
                    if Instant::now() > deadline {
                        return Err(StartError::fatal(format!("GET /v2/ never answered: {e}")));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

struct StartError {
    message: String,
    retryable: bool,
}

impl StartError {
    fn fatal(message: String) -> Self {
        StartError {
            message,
            retryable: false,
        }
    }
}

/// Locks a mutex, recovering from poisoning (a panicking test must still be able to clean up).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_file(path: &Path, contents: &[u8]) {
    fs::write(path, contents)
        .unwrap_or_else(|e| panic!("test registry: cannot write {}: {e}", path.display()));
}

/// A double-quoted YAML scalar.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        use std::io::Seek;
        if f.seek(std::io::SeekFrom::Start(offset)).is_ok() {
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            text = String::from_utf8_lossy(&buf).into_owned();
        }
    }
    text
}

/// The port of the first `listening on 127.0.0.1:PORT` log line.
fn listening_port(log: &str) -> Option<u16> {
    log.lines().find_map(|line| {
        let rest = &line[line.find("listening on ")? + "listening on ".len()..];
        let addr: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        addr.rsplit_once(':')?.1.parse().ok()
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A minimal blocking HTTP/1.1 GET that returns the status code; usable from any context
/// (no runtime needed).
fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = stream.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP status line: {line:?}"),
            )
        })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn finds_the_bound_port_in_the_log() {
        let log = "time=\"x\" level=info msg=\"redis not configured\"\n\
                   time=\"x\" level=info msg=\"listening on 127.0.0.1:43615\" go.version=go1.19";
        assert_eq!(listening_port(log), Some(43615));
        assert_eq!(listening_port("nothing here"), None);
    }
}
