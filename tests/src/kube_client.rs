//! A kube-rs client (the `kube` crate) on a test kubeconfig: the other
//! real client Paddock serves besides kubectl, and the one that speaks
//! the kubelet's `v4.channel.k8s.io` WebSocket port-forward.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{fake_apiserver::PORT_FORWARD_PORT, kubectl::Kubeconfig};

/// A client for the server, credentials and CA in `kubeconfig`.
pub async fn client(kubeconfig: &Kubeconfig) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig.path()).expect("kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// `Api::portforward` to `pod`'s echo port: bytes written come back; a
/// port the pod does not serve reports the kubelet's error on its error
/// channel.
pub async fn assert_port_forward(kubeconfig: &Kubeconfig, pod: &str) {
    let pods: Api<Pod> = Api::default_namespaced(client(kubeconfig).await);
    let mut forwarder = pods
        .portforward(pod, &[PORT_FORWARD_PORT, 9])
        .await
        .expect("kube-rs port-forward upgrade");
    let mut stream = forwarder
        .take_stream(PORT_FORWARD_PORT)
        .expect("the echo port's stream");
    let closed = forwarder.take_error(9).expect("port 9's error channel");
    let sent = b"kube-rs through port-forward\n".repeat(50);
    stream.write_all(&sent).await.expect("send");
    let mut received = vec![0; sent.len()];
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_exact(&mut received),
    )
    .await
    .expect("the echo did not come back within 30 s")
    .expect("read the echo");
    assert_eq!(received, sent);
    let error = tokio::time::timeout(std::time::Duration::from_secs(30), closed)
        .await
        .expect("no error for port 9 within 30 s");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("error forwarding port 9")),
        "{error:?}"
    );
    drop(stream);
    forwarder.abort();
}
