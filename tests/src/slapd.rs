//! A real OpenLDAP `slapd` for tests: its own `slapd.conf`, database and TLS
//! certificate in a temp dir, data loaded with `slapadd`, listening on random
//! loopback ports (plain/StartTLS and LDAPS), killed on drop.
//!
//! Nested `memberOf` comes from the `dynlist` overlay
//! (`member+memberOf@groupOfNames*`), computed at search time. `slapd` runs
//! with `-d stats`, so [`Slapd::log`] shows every connection and operation.
//!
//! Needs the Debian packages `slapd` and `ldap-utils`; without them
//! [`Slapd::start`] panics saying so (tests fail, they never skip).

use std::{
    io::Write as _,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::tls::TestCa;

/// The directory suffix.
pub const SUFFIX: &str = "dc=example,dc=org";
/// The rootdn (only the harness uses it, to load and modify data).
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PW: &str = "admin-pw";
/// The only identity (besides the rootdn) allowed to read `ou=groups`: so a
/// connection left bound as a user finds no groups.
pub const SERVICE_DN: &str = "cn=paddock,ou=service,dc=example,dc=org";

/// The entries every test directory starts with: `ou=people`, `ou=groups`,
/// `ou=service` and the service account [`SERVICE_DN`] (password
/// `service-pw`). A test's own LDIF follows it.
pub const BASE_LDIF: &str = "dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: ou=service,dc=example,dc=org
objectClass: organizationalUnit
ou: service

dn: cn=paddock,ou=service,dc=example,dc=org
objectClass: person
cn: paddock
sn: service
userPassword: service-pw

";

const INSTALL_HINT: &str =
    "run `apt-get install slapd ldap-utils` (Debian), or `bash tests/run.sh`, which installs it";

/// A running slapd.
pub struct Slapd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    tls_port: u16,
    ca: TestCa,
}

impl std::fmt::Debug for Slapd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slapd")
            .field("port", &self.port)
            .field("tls_port", &self.tls_port)
            .finish_non_exhaustive()
    }
}

/// Finds an sbin tool on PATH or in the Debian locations (non-root PATHs
/// often lack /usr/sbin).
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(PathBuf::from),
    );
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is not installed: {INSTALL_HINT}");
}

/// Starts slapd from the config in `root`, appending to its log; `None`
/// when it exits or does not answer within 10 s.
fn spawn(root: &Path, port: u16, tls_port: u16) -> Option<Child> {
    let log_path = root.join("slapd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("log file");
    let closed_before = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .matches(" closed")
        .count();
    let mut child = Command::new(tool("slapd"))
        .arg("-f")
        .arg(root.join("slapd.conf"))
        .arg("-h")
        .arg(format!(
            "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
        ))
        // stats: connections, binds, searches, results.
        .args(["-d", "256"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("running slapd: {e} ({INSTALL_HINT})"));
    if !wait_ready(&mut child, port, tls_port) {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    // The two readiness probes are logged asynchronously; wait for them so
    // counts taken by tests start from a quiet log.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline
        && std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .matches(" closed")
            .count()
            < closed_before + 2
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(child)
}

fn wait_ready(child: &mut Child, port: u16, tls_port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let plain = TcpStream::connect(("127.0.0.1", port)).is_ok();
        let tls = TcpStream::connect(("127.0.0.1", tls_port)).is_ok();
        if plain && tls {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Slapd {
    /// Starts slapd with the entries of `ldif` (the suffix entry
    /// `dc=example,dc=org` is added first, don't include it). Waits until it
    /// accepts connections.
    pub fn start(ldif: &str) -> Self {
        tool("slapd");
        let slapadd = tool("slapadd");
        let ca = TestCa::new();
        let dir = tempfile::Builder::new()
            .prefix("paddock-slapd-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        std::fs::create_dir(root.join("db")).expect("db dir");
        let (cert, key) = ca
            .issue_server(&["localhost", "127.0.0.1"])
            .write(root, "server");
        let ca_path = root.join("ca.crt");
        std::fs::write(&ca_path, ca.pem()).expect("write ca");
        let conf = root.join("slapd.conf");
        std::fs::write(&conf, config(root, &ca_path, &cert, &key)).expect("write slapd.conf");

        let data = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n{ldif}"
        );
        let mut add = Command::new(&slapadd)
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running slapadd: {e} ({INSTALL_HINT})"));
        add.stdin
            .take()
            .expect("stdin")
            .write_all(data.as_bytes())
            .expect("feed slapadd");
        let out = add.wait_with_output().expect("slapadd");
        assert!(
            out.status.success(),
            "slapadd failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // The ports are found free and then handed to slapd, which may lose a
        // race with a parallel test: retry with new ports.
        for _ in 0..5 {
            let (port, tls_port) = (free_port(), free_port());
            if let Some(child) = spawn(root, port, tls_port) {
                return Self {
                    dir,
                    child: Some(child),
                    port,
                    tls_port,
                    ca,
                };
            }
        }
        let log = std::fs::read_to_string(root.join("slapd.log")).unwrap_or_default();
        panic!("slapd did not start:\n{log}");
    }

    /// `ldap://127.0.0.1:<port>` (StartTLS or, under `dangerous`, plain).
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://localhost:<port>`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://localhost:{}", self.tls_port)
    }

    /// The port of the plain/StartTLS listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test CA that signed the server certificate (SAN `localhost`,
    /// `127.0.0.1`), PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    /// The temp dir holding config, database and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// slapd's log so far (`-d stats`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// How many connections slapd has accepted so far.
    pub fn connections(&self) -> usize {
        self.log().matches(" ACCEPT from ").count()
    }

    /// How many simple BIND requests slapd has seen so far.
    pub fn binds(&self) -> usize {
        self.bind_dns().len()
    }

    /// The DNs of the simple BIND requests so far, in order.
    pub fn bind_dns(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(" BIND dn=\"") && l.ends_with(" method=128"))
            .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
            .collect()
    }

    /// Applies an LDIF change set as the rootdn with `ldapmodify`.
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new(tool("ldapmodify"))
            .args(["-x", "-H", &self.ldap_url(), "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running ldapmodify: {e} ({INSTALL_HINT})"));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("feed ldapmodify");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(
            out.status.success(),
            "ldapmodify failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops slapd and starts it again on the same ports with the same data
    /// (connections open before are gone).
    pub fn restart(&mut self) {
        self.kill();
        let child = spawn(self.dir.path(), self.port, self.tls_port)
            .unwrap_or_else(|| panic!("slapd did not restart:\n{}", self.log()));
        self.child = Some(child);
    }

    /// Stops slapd now (tests of a directory going away).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config(root: &Path, ca: &Path, cert: &Path, key: &Path) -> String {
    let r = root.display();
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/dyngroup.schema

modulepath /usr/lib/ldap
moduleload back_mdb
moduleload dynlist

pidfile {r}/slapd.pid
argsfile {r}/slapd.args

TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}

sizelimit unlimited

database mdb
maxsize 104857600
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {r}/db
index objectClass eq
index uid,cn,memberUid eq,sub
index member eq

overlay dynlist
dynlist-attrset groupOfURLs memberURL member+memberOf@groupOfNames*

access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to dn.subtree="ou=groups,{SUFFIX}"
  by dn.exact="{SERVICE_DN}" read
  by * none
access to *
  by users read
  by anonymous auth
  by * none
"#,
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
    )
}
