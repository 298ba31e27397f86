//! The real kubectl through the real `paddock` binary to the fake
//! kube-apiserver: it must work exactly as it does directly, at `/` and at
//! `/k8s/clusters/<id>`.

use std::{sync::Arc, time::Duration};

use paddock_tests::{
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::{assert_exec_attach_and_port_forward, write_file, Kubeconfig},
    paddock::{upstream_args, Paddock},
    tls::TestCa,
};

const ALICE_TOKEN: &str = "alice-token-0123456789";

struct Setup {
    fake: FakeApiServer,
    paddock: Paddock,
    _dir: tempfile::TempDir,
}

async fn setup(extra_args: &[&str]) -> Setup {
    let fake = FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_file(
        dir.path(),
        "tokens.csv",
        &format!("{ALICE_TOKEN},alice,1001,\"developers,ops\"\n"),
    );
    let mut args = upstream_args(&fake, dir.path());
    args.extend(["--token-auth-file".into(), tokens.display().to_string()]);
    args.extend(extra_args.iter().map(|s| (*s).to_owned()));
    let paddock = Paddock::start(env!("CARGO_BIN_EXE_paddock").as_ref(), &args);
    Setup {
        fake,
        paddock,
        _dir: dir,
    }
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_works_through_paddock_at_root_and_cluster_prefix() {
    let setup = setup(&["--authorization", "allow-authenticated"]).await;
    for server in [
        setup.paddock.url(),
        format!("{}/k8s/clusters/default", setup.paddock.url()),
    ] {
        let kube = Arc::new(Kubeconfig::new(
            &server,
            &setup.paddock.ca_pem(),
            ALICE_TOKEN,
        ));

        let k = kube.clone();
        let pods = blocking(move || k.ok(&["get", "pods"])).await.unwrap();
        assert!(
            pods.contains("web-1") && pods.contains("Running"),
            "{server}: {pods}"
        );

        let k = kube.clone();
        let whoami = blocking(move || k.ok(&["auth", "whoami"])).await.unwrap();
        assert!(whoami.contains("alice"), "{whoami}");
        assert!(
            whoami.contains("developers") && whoami.contains("ops"),
            "{whoami}"
        );
        assert!(whoami.contains("system:authenticated"), "{whoami}");
        assert!(whoami.contains("1001"), "uid missing: {whoami}");

        let k = kube.clone();
        let resources = blocking(move || k.ok(&["api-resources"])).await.unwrap();
        assert!(
            resources.contains("pods") && resources.contains("namespaces"),
            "{resources}"
        );

        let k = kube.clone();
        let explain = blocking(move || k.ok(&["explain", "pods.spec.containers"]))
            .await
            .unwrap();
        assert!(explain.contains("Container"), "{explain}");

        let k = kube.clone();
        let exec = blocking(move || {
            k.run(
                &["exec", "-i", "web-1", "--", "cat"],
                Some("stdin through paddock\n"),
            )
        })
        .await
        .unwrap();
        assert!(
            exec.status.success(),
            "{}",
            String::from_utf8_lossy(&exec.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&exec.stdout),
            "stdin through paddock\n"
        );

        // exec, attach and port-forward, each over WebSocket and SPDY/3.1.
        tokio::task::block_in_place(|| {
            assert_exec_attach_and_port_forward(&kube, &setup.fake, "web-1");
        });
        // And kube-rs's port-forward, over `v4.channel.k8s.io`.
        paddock_tests::kube_client::assert_port_forward(&kube, "web-1").await;

        // The identity the apiserver saw on the upgrades is the impersonated one.
        for verb in ["exec", "attach", "portforward"] {
            let seen = setup
                .fake
                .last_request(&format!("/api/v1/namespaces/default/pods/web-1/{verb}"))
                .unwrap();
            assert_eq!(seen.user.unwrap().username, "alice", "{verb}");
        }
    }
    setup.fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_and_logs_stream_through_paddock() {
    let setup = setup(&["--authorization", "allow-authenticated"]).await;
    let kube = Kubeconfig::new(
        &format!("{}/k8s/clusters/default", setup.paddock.url()),
        &setup.paddock.ca_pem(),
        ALICE_TOKEN,
    );
    let mut watch = kube.spawn_lines(&["get", "pods", "-w"]);
    watch.wait_for("web-1", Duration::from_secs(30));
    for _ in 0..200 {
        if setup.fake.watchers() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup.fake.add_pod("default", "web-2");
    let line = blocking(move || watch.wait_for("web-2", Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(line.contains("Running"), "{line}");

    setup.fake.send_log_line("web-1", "line one");
    let mut logs = kube.spawn_lines(&["logs", "-f", "web-1"]);
    assert_eq!(logs.next_line(Duration::from_secs(30)), "line one");
    setup.fake.send_log_line("web-1", "line two");
    assert_eq!(logs.next_line(Duration::from_secs(30)), "line two");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_reach_kubectl_as_status_messages() {
    let setup = setup(&[]).await;
    let kube = Kubeconfig::new(&setup.paddock.url(), &setup.paddock.ca_pem(), ALICE_TOKEN);
    // No binding for alice: Paddock denies with a reason kubectl prints.
    let denied = kube.run(&["get", "--raw", "/api/v1/namespaces/default/pods"], None);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success());
    assert!(
        stderr.contains("Forbidden") && stderr.contains("no binding"),
        "{stderr}"
    );

    let wrong = Kubeconfig::new(&setup.paddock.url(), &setup.paddock.ca_pem(), "not-a-token");
    let out = wrong.run(&["get", "--raw", "/api/v1/namespaces/default/pods"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Unauthorized") || stderr.contains("must be logged in"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_authenticate_like_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let client_ca = write_file(dir.path(), "clients-ca.crt", ca.pem());
    let client_ca = client_ca.display().to_string();
    let setup = setup(&[
        "--authorization",
        "allow-authenticated",
        "--client-ca",
        &client_ca,
    ])
    .await;
    let cert = ca.issue_client("carol", Some("platform"));
    let (cert_path, key_path) = cert.write(dir.path(), "carol");
    let kube = Kubeconfig::with_user(
        &setup.paddock.url(),
        &setup.paddock.ca_pem(),
        &format!(
            "    client-certificate: {}\n    client-key: {}\n",
            cert_path.display(),
            key_path.display()
        ),
    );
    let whoami = blocking(move || kube.ok(&["auth", "whoami"]))
        .await
        .unwrap();
    assert!(
        whoami.contains("carol") && whoami.contains("platform"),
        "{whoami}"
    );

    // A certificate from another CA is not a credential.
    let stranger = TestCa::new().issue_client("mallory", Some("system:masters"));
    let (cert_path, key_path) = stranger.write(dir.path(), "mallory");
    let kube = Kubeconfig::with_user(
        &setup.paddock.url(),
        &setup.paddock.ca_pem(),
        &format!(
            "    client-certificate: {}\n    client-key: {}\n",
            cert_path.display(),
            key_path.display()
        ),
    );
    let out = blocking(move || kube.run(&["auth", "whoami"], None))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("mallory"),
        "an untrusted certificate authenticated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_cleanly() {
    let mut setup = setup(&["--authorization", "allow-authenticated"]).await;
    setup.paddock.send_sigterm();
    let status = setup.paddock.wait(Duration::from_secs(40));
    assert!(status.success(), "{status}:\n{}", setup.paddock.log());
    assert!(setup.paddock.log().contains("shutting down"));
}
