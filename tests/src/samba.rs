//! A real Samba AD DC for tests: provisioned into a temp dir, filled with
//! users and groups through Samba's own Python bindings, started in its own
//! network namespace (`unshare --net`, because its ports 389/636 are fixed)
//! with a server certificate from the test CA (Samba's own has no
//! subjectAltName, which rustls rejects).
//!
//! The test reaches it through loopback forwarders in the test's namespace:
//! every accepted connection is piped by `nsenter --net=… netns-pipe PORT`
//! (the `netns-pipe` binary of this crate) to the DC's port.
//!
//! Needs root (provisioning chowns files, `unshare --net`) and the Debian
//! packages `samba samba-ad-dc samba-ad-provision ldap-utils`; without them
//! [`SambaDc::start`] panics saying so.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::tls::TestCa;

/// The DNS realm.
pub const REALM: &str = "example.test";
/// The NetBIOS domain.
pub const DOMAIN: &str = "EXAMPLE";
/// The domain's base DN.
pub const BASE_DN: &str = "DC=example,DC=test";
/// The service account's UPN (AD accepts it as a bind name).
pub const SERVICE_UPN: &str = "paddock@example.test";
/// The service account's password.
pub const SERVICE_PASSWORD: &str = "Svc-Passw0rd!";
/// The Administrator password.
pub const ADMIN_PASSWORD: &str = "Adm1n-Passw0rd!";

const INSTALL_HINT: &str =
    "run `apt-get install samba samba-ad-dc samba-ad-provision ldap-utils` as root, or `bash tests/run.sh`";

/// Users (`name`, password): alice (developers ⊂ engineering ⊂ company),
/// `jdoe(qa)` (developers), carol (disabled), dave (for lockout: the
/// domain locks after 3 bad passwords), frank (must change his password),
/// and the service account `paddock`.
const SETUP: &str = r#"
import sys, ldb
from samba.samdb import SamDB
from samba.auth import system_session
from samba.param import LoadParm
lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
m = ldb.Message()
m.dn = ldb.Dn(db, db.domain_dn())
for k, v in [("lockoutThreshold", "3"), ("lockoutDuration", "-600000000"),
             ("lockOutObservationWindow", "-600000000")]:
    m[k] = ldb.MessageElement(v, ldb.FLAG_MOD_REPLACE, k)
db.modify(m)
db.newuser("paddock", "Svc-Passw0rd!", surname="Service")
db.newuser("alice", "Alice-Passw0rd!", givenname="Alice", surname="Liddell",
           mailaddress="alice@example.test")
db.newuser("jdoe(qa)", "Jdoe-Passw0rd!", givenname="John", surname="Doe")
db.newuser("carol", "Carol-Passw0rd!", givenname="Carol", surname="C")
db.disable_account("(sAMAccountName=carol)")
db.newuser("dave", "Dave-Passw0rd!", givenname="Dave", surname="D")
db.newuser("frank", "Frank-Passw0rd!", givenname="Frank", surname="F",
           force_password_change_at_next_login_req=True)
for g in ["developers", "engineering", "company"]:
    db.newgroup(g)
db.add_remove_group_members("developers", ["alice", "jdoe(qa)"], add_members_operation=True)
db.add_remove_group_members("engineering", ["developers"], add_members_operation=True)
db.add_remove_group_members("company", ["engineering"], add_members_operation=True)
"#;

/// A running Samba AD DC.
pub struct SambaDc {
    dir: tempfile::TempDir,
    unshare: Option<Child>,
    samba_pid: u32,
    ldap_port: u16,
    ldaps_port: u16,
    ca: TestCa,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for SambaDc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SambaDc")
            .field("samba_pid", &self.samba_pid)
            .field("ldap_port", &self.ldap_port)
            .field("ldaps_port", &self.ldaps_port)
            .finish_non_exhaustive()
    }
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed: {INSTALL_HINT}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} ({INSTALL_HINT})"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SambaDc {
    /// Provisions and starts a DC; `netns_pipe` is the path of this crate's
    /// `netns-pipe` binary (`env!("CARGO_BIN_EXE_netns-pipe")`). Takes
    /// about 10 s.
    pub fn start(netns_pipe: &Path) -> Self {
        assert!(
            is_root(),
            "the Samba AD DC tests need root: provisioning chowns files and the DC runs in its own network namespace"
        );
        let samba_tool = tool("samba-tool");
        let samba = tool("samba");
        let unshare = tool("unshare");
        tool("nsenter");
        let python = tool("python3");
        let dir = tempfile::Builder::new()
            .prefix("paddock-samba-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        let t = root.display().to_string();
        run(
            Command::new(&samba_tool).args([
                "domain",
                "provision",
                "--server-role=dc",
                "--use-rfc2307",
                "--dns-backend=NONE",
                &format!("--realm={}", REALM.to_uppercase()),
                &format!("--domain={DOMAIN}"),
                "--host-name=dc1",
                "--host-ip=127.0.0.1",
                &format!("--adminpass={ADMIN_PASSWORD}"),
                &format!("--targetdir={t}"),
                "--option=interfaces=lo",
                "--option=bind interfaces only=yes",
                &format!("--option=log file={t}/log.%m"),
            ]),
            "samba-tool domain provision",
        );
        let smb_conf = root.join("etc/smb.conf");
        std::fs::write(root.join("setup.py"), SETUP).expect("setup.py");
        run(
            Command::new(&python)
                .arg(root.join("setup.py"))
                .arg(&smb_conf),
            "adding users and groups",
        );

        let ca = TestCa::new();
        let (cert, key) = ca
            .issue_server(&["dc1.example.test", "localhost", "127.0.0.1"])
            .write(root, "server");
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod key");
        }
        let ca_path = root.join("ca.crt");
        std::fs::write(&ca_path, ca.pem()).expect("ca");
        let script = root.join("start_dc.sh");
        std::fs::write(
            &script,
            format!(
                "ip link set lo up\nexec {samba} -s {conf} -i -M single -d 1 \
                 --option='server services=ldap' --option='log file={t}/log.%m' \
                 --option='pid directory={t}' \
                 --option='tls keyfile={key}' --option='tls certfile={cert}' \
                 --option='tls cafile={ca}'\n",
                samba = samba.display(),
                conf = smb_conf.display(),
                key = key.display(),
                cert = cert.display(),
                ca = ca_path.display(),
            ),
        )
        .expect("start script");
        let out = std::fs::File::create(root.join("samba.out")).expect("samba.out");
        let child = Command::new(&unshare)
            .args(["--net", "--fork", "--kill-child"])
            .arg("sh")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("out"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("unshare: {e}"));
        let mut dc = Self {
            dir,
            samba_pid: 0,
            unshare: Some(child),
            ldap_port: 0,
            ldaps_port: 0,
            ca,
            stop: Arc::new(AtomicBool::new(false)),
        };
        dc.samba_pid = dc.find_samba_pid();
        dc.wait_listening(netns_pipe, 636);
        dc.ldap_port = dc.forward(netns_pipe, 389);
        dc.ldaps_port = dc.forward(netns_pipe, 636);
        dc
    }

    fn find_samba_pid(&mut self) -> u32 {
        let unshare_pid = self.unshare.as_ref().expect("child").id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let children =
                std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                    .unwrap_or_default();
            if let Some(pid) = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
            {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("samba did not start:\n{}", self.log());
    }

    fn wait_listening(&mut self, netns_pipe: &Path, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.unshare.as_mut().map(Child::try_wait) {
                panic!("samba exited ({status}):\n{}", self.log());
            }
            let ok = Command::new(tool("nsenter"))
                .arg(format!("--net=/proc/{}/ns/net", self.samba_pid))
                .arg(netns_pipe)
                .args(["--probe", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "samba did not listen on {port} within 60 s:\n{}",
            self.log()
        );
    }

    /// A loopback listener in the test's namespace piping each connection
    /// to `port` inside the DC's namespace.
    fn forward(&self, netns_pipe: &Path, port: u16) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("forwarder");
        listener.set_nonblocking(true).expect("nonblocking");
        let local = listener.local_addr().expect("addr").port();
        let netns = format!("--net=/proc/{}/ns/net", self.samba_pid);
        let pipe = netns_pipe.to_owned();
        let nsenter = tool("nsenter");
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        let _ = socket.set_nonblocking(false);
                        bridge(socket, &nsenter, &netns, &pipe, port, stop.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        local
    }

    /// `ldaps://127.0.0.1:<port>` (through the forwarder).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// `ldap://127.0.0.1:<port>` (StartTLS; through the forwarder).
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// The CA of the DC's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    /// Runs `ldapsearch` inside the DC's namespace as Administrator over
    /// LDAPS and returns its LDIF output (`-LLL`).
    pub fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        let out = Command::new(tool("nsenter"))
            .arg(format!("--net=/proc/{}/ns/net", self.samba_pid))
            .arg(tool("ldapsearch"))
            .args([
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-x",
                "-H",
                "ldaps://127.0.0.1",
            ])
            .args([
                "-D",
                &format!("Administrator@{REALM}"),
                "-w",
                ADMIN_PASSWORD,
            ])
            .args(["-b", base, filter])
            .args(attrs)
            .env("LDAPTLS_CACERT", self.dir.path().join("ca.crt"))
            .output()
            .unwrap_or_else(|e| panic!("ldapsearch: {e} ({INSTALL_HINT})"));
        assert!(
            out.status.success(),
            "ldapsearch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Samba's output and log.
    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.path().join("samba.out")).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("log.") {
                    s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        s
    }

    /// Stops the DC (tests of a directory going away).
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(mut child) = self.unshare.take() else {
            return;
        };
        if self.samba_pid != 0 {
            let _ = Command::new("kill")
                .args(["-TERM", &self.samba_pid.to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Our own process group: unshare, sh and samba.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Pipes `socket` through `nsenter … netns-pipe port`.
fn bridge(
    socket: TcpStream,
    nsenter: &Path,
    netns: &str,
    pipe: &Path,
    port: u16,
    stop: Arc<AtomicBool>,
) {
    let Ok(mut child) = Command::new(nsenter)
        .arg(netns)
        .arg(pipe)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        return;
    };
    let (Ok(mut reader), mut writer) = (socket.try_clone(), socket) else {
        let _ = child.kill();
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stdin.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        drop(stdin);
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = writer.shutdown(std::net::Shutdown::Both);
        let _ = child.kill();
        let _ = child.wait();
    });
}
