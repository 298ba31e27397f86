//! A second "host" for tests: a network namespace joined to this one by a
//! veth pair, with its own loopback. Processes and sockets inside it can
//! open connections to this side's end of the pair; nothing inside listens
//! on the pair, so this side cannot open connections to it (a cluster
//! behind NAT, as an agent tunnel test needs).
//!
//! Names include the process id and a counter, so parallel tests never
//! collide; everything is deleted on drop. Needs root and `ip` (iproute2).

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::fake_apiserver::{FakeApiConfig, FakeApiServer};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace and the veth pair that joins it to the test's own.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    host_if: String,
    /// This side's address on the pair.
    pub host_ip: Ipv4Addr,
    /// The namespace's address on the pair.
    pub ns_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` ({e}): install iproute2 (apt-get install iproute2); these tests also need root"));
    assert!(
        output.status.success(),
        "ip {}: {} (these tests need root)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl NetNs {
    /// Creates the namespace, the pair (a /30 in 10.0.0.0/8 chosen from the
    /// process id and a counter), loopback and a default route back here.
    pub fn create() -> Self {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("pdk-{pid}-{n}");
        let host_if = format!("pv{pid}h{n}");
        let ns_if = format!("pv{pid}n{n}");
        let a = 100 + (pid % 150) as u8;
        let b = ((pid / 150) % 256) as u8;
        let c = ((n % 64) * 4) as u8;
        let host_ip = Ipv4Addr::new(10, a, b, c + 1);
        let ns_ip = Ipv4Addr::new(10, a, b, c + 2);
        ip(&["netns", "add", &name]);
        let netns = Self {
            name,
            host_if,
            host_ip,
            ns_ip,
        };
        ip(&[
            "link",
            "add",
            &netns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &netns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &netns.host_if,
        ]);
        ip(&["link", "set", &netns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut full = vec!["-n", netns.name.as_str()];
            full.extend_from_slice(args);
            ip(&full);
        };
        inside(&["addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "via", &host_ip.to_string()]);
        netns
    }

    /// Its name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .arg("netns")
            .arg("exec")
            .arg(&self.name)
            .arg(program);
        command
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Starts a fake apiserver whose listening socket lives inside the
    /// namespace (on its loopback, `config.listen`), served by a thread of
    /// its own; the test keeps full control of it.
    pub fn fake_apiserver(&self, config: FakeApiConfig) -> FakeInNetNs {
        let path = self.path();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns into the test's network namespace (needs root)");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let fake = FakeApiServer::start(config).await.expect("fake apiserver");
                let _ = ready_tx.send(fake);
                let _ = stop_rx.await;
            });
        });
        let fake = ready_rx.recv().expect("the fake apiserver started");
        FakeInNetNs {
            fake: Some(fake),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it ours.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// A fake apiserver served from inside a [`NetNs`].
#[derive(Debug)]
pub struct FakeInNetNs {
    fake: Option<FakeApiServer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for FakeInNetNs {
    type Target = FakeApiServer;

    fn deref(&self) -> &FakeApiServer {
        self.fake.as_ref().expect("running")
    }
}

impl Drop for FakeInNetNs {
    fn drop(&mut self) {
        drop(self.fake.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
