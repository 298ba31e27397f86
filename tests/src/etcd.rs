//! A real etcd for tests: one or three members on random loopback ports, each
//! with its own data directory in a temp dir, killed on drop.
//!
//! Needs Debian's `etcd-server` (`/usr/bin/etcd`, or `$ETCD_BIN`); without it
//! [`EtcdCluster::start`] panics saying what to install (tests fail, they never
//! skip). Only `std` and `tempfile`, so that `proxy-core`'s own store tests
//! include this file too (`#[path]`) and run their one suite on both backends.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const INSTALL_HINT: &str =
    "run `apt-get install etcd-server` (Debian), or `bash tests/run.sh`, which installs it";

/// Where one member listens: its addresses, and the network namespace it
/// runs in (`None`: this one).
#[derive(Debug, Clone)]
pub struct MemberNet {
    /// Address of the peer URL.
    pub peer_ip: String,
    /// Address of the client URL.
    pub client_ip: String,
    /// Network namespace to run in (`ip netns exec`).
    pub netns: Option<String>,
}

impl Default for MemberNet {
    fn default() -> Self {
        Self {
            peer_ip: "127.0.0.1".into(),
            client_ip: "127.0.0.1".into(),
            netns: None,
        }
    }
}

/// One member.
#[derive(Debug)]
pub struct Member {
    /// The member's name (`m0`, `m1`, ...).
    pub name: String,
    /// Where it listens.
    pub net: MemberNet,
    /// Client port on 127.0.0.1.
    pub client_port: u16,
    /// Peer port on 127.0.0.1.
    pub peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// `http://<client ip>:<client port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.net.client_ip, self.client_port)
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// A running etcd cluster.
#[derive(Debug)]
pub struct EtcdCluster {
    _dir: tempfile::TempDir,
    members: Vec<Member>,
    initial_cluster: String,
}

fn binary() -> PathBuf {
    let bin = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(
        bin.exists(),
        "etcd is not installed ({} is missing): {INSTALL_HINT}",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `GET /health` on the client port: etcd answers `{"health":"true"}` once
/// the member has a leader.
fn healthy(ip: &str, port: u16) -> bool {
    let Ok(addr) = format!("{ip}:{port}").parse::<std::net::SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}

impl EtcdCluster {
    /// Starts `n` members (1 or 3) on loopback and waits until every one is
    /// healthy.
    pub fn start(n: usize) -> Self {
        Self::start_with(&vec![MemberNet::default(); n])
    }

    /// Starts one member per entry of `nets`, each where it says.
    pub fn start_with(nets: &[MemberNet]) -> Self {
        let n = nets.len();
        let bin = binary();
        // Ports are picked by binding port 0 then released: another test may
        // grab one meanwhile, so a failed start is retried on fresh ports.
        for attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir for etcd");
            let mut members: Vec<Member> = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    net: nets[i].clone(),
                    client_port: free_port(),
                    peer_port: free_port(),
                    data_dir: dir.path().join(format!("m{i}")),
                    log: dir.path().join(format!("m{i}.log")),
                    child: None,
                })
                .collect();
            let initial_cluster = members
                .iter()
                .map(|m| format!("{}=http://{}:{}", m.name, m.net.peer_ip, m.peer_port))
                .collect::<Vec<_>>()
                .join(",");
            let mut cluster = Self {
                _dir: dir,
                members: Vec::new(),
                initial_cluster,
            };
            for m in &mut members {
                m.child = Some(cluster.spawn(&bin, m, "new"));
            }
            cluster.members = members;
            if cluster.wait_healthy(Duration::from_secs(20)) {
                return cluster;
            }
            let logs = cluster.logs();
            drop(cluster);
            if attempt == 2 {
                panic!("etcd did not become healthy:\n{logs}");
            }
        }
        unreachable!()
    }

    fn spawn(&self, bin: &PathBuf, m: &Member, state: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let client = m.endpoint();
        let peer = format!("http://{}:{}", m.net.peer_ip, m.peer_port);
        let mut command = match &m.net.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        command
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", state])
            .args([
                "--initial-cluster-token",
                &format!("paddock-{}", std::process::id()),
            ])
            // Fast elections keep the failover tests short.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}; {INSTALL_HINT}"))
    }

    fn wait_healthy(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let running: Vec<(String, u16)> = self
                .members
                .iter_mut()
                .filter_map(|m| {
                    let exited = m
                        .child
                        .as_mut()
                        .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                        .unwrap_or(true);
                    (!exited).then(|| (m.net.client_ip.clone(), m.client_port))
                })
                .collect();
            if running.len() < self.members.iter().filter(|m| m.child.is_some()).count() {
                return false;
            }
            if running.iter().all(|(ip, port)| healthy(ip, *port)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts member `i` on its data directory and ports, and waits until it
    /// is healthy.
    pub fn restart(&mut self, i: usize) {
        let bin = binary();
        self.kill(i);
        let child = self.spawn(&bin, &self.members[i], "existing");
        self.members[i].child = Some(child);
        assert!(
            self.wait_healthy(Duration::from_secs(20)),
            "etcd member {i} did not come back:\n{}",
            self.logs()
        );
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {} ---\n{}",
                    m.name,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
