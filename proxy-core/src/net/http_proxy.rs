//! Outbound connections through an HTTP proxy (`HTTPS_PROXY`, `NO_PROXY`):
//! a `CONNECT` tunnel (RFC 9110 §9.3.6) carrying TLS end to end, so the
//! proxy never sees plaintext. Used by the agent's dial and by the
//! outbound HTTP clients, built on [`ProxyConnector`].

use std::{
    future::Future,
    net::IpAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioIo};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};
use tower::{Service, ServiceExt};

use crate::body::BoxError;

/// Largest proxy response head read.
const MAX_PROXY_RESPONSE: usize = 8 * 1024;

/// The HTTP proxy outbound connections go through, and the hosts that
/// bypass it. The default is no proxy. Its `Debug` never shows the
/// proxy's credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OutboundProxy {
    proxy: Option<Uri>,
    /// `NO_PROXY` as given, for logs.
    no_proxy: Vec<String>,
    /// The same, parsed.
    exemptions: Vec<Exemption>,
}

/// One `NO_PROXY` entry, in the forms Go's and curl's clients accept (so
/// the one variable a cluster's pods share means the same here).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Exemption {
    /// `*`: nothing goes through the proxy.
    Everything,
    /// `10.0.0.0/8`, `fd00::/8`, or one address (with `:port`, only on
    /// that port): destinations given as an address in the range (names
    /// are not resolved to match).
    Addresses(IpAddr, u8, Option<u16>),
    /// `example.com`, `.example.com` or `*.example.com`: the name and its
    /// subdomains; with `:port`, only on that port.
    Name(String, Option<u16>),
}

impl Exemption {
    fn parse(entry: &str) -> Result<Self, String> {
        if entry == "*" {
            return Ok(Self::Everything);
        }
        if let Some((address, bits)) = entry.split_once('/') {
            let invalid = || format!("{entry:?} is not an address range");
            let address: IpAddr = address.parse().map_err(|_| invalid())?;
            let bits: u8 = bits.parse().map_err(|_| invalid())?;
            return match bits <= width(address) {
                true => Ok(Self::Addresses(address, bits, None)),
                false => Err(invalid()),
            };
        }
        // A bare address (an IPv6 one holds colons), else `host[:port]`.
        let (host, port) = match (unbracket(entry).parse::<IpAddr>(), entry.rsplit_once(':')) {
            (Err(_), Some((host, port))) => {
                let port = port
                    .parse()
                    .map_err(|_| format!("{entry:?} has an invalid port"))?;
                (unbracket(host), Some(port))
            }
            _ => (unbracket(entry), None),
        };
        Ok(match host.parse::<IpAddr>() {
            Ok(address) => Self::Addresses(address, width(address), port),
            Err(_) => {
                let name = host.trim_start_matches('*').trim_start_matches('.');
                Self::Name(name.to_ascii_lowercase(), port)
            }
        })
    }

    fn covers(&self, host: &str, address: Option<IpAddr>, port: u16) -> bool {
        let (matches, only_port) = match self {
            Self::Everything => return true,
            Self::Addresses(range, bits, only_port) => (
                address.is_some_and(|a| in_range(a, *range, *bits)),
                only_port,
            ),
            Self::Name(name, only_port) => (
                address.is_none()
                    && (host.eq_ignore_ascii_case(name)
                        || (host.len() > name.len()
                            && host.as_bytes()[host.len() - name.len() - 1] == b'.'
                            && host[host.len() - name.len()..].eq_ignore_ascii_case(name))),
                only_port,
            ),
        };
        matches && only_port.is_none_or(|p| p == port)
    }
}

/// Bits in an address of `address`'s family.
fn width(address: IpAddr) -> u8 {
    if address.is_ipv4() {
        32
    } else {
        128
    }
}

/// `host` without the brackets of an IPv6 literal.
fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `address` is in `range`/`bits` (an IPv4-mapped IPv6 address
/// counts as its IPv4 one).
fn in_range(address: IpAddr, range: IpAddr, bits: u8) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    };
    match (address, range) {
        (IpAddr::V4(a), IpAddr::V4(r)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(r) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(r)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(r) & mask
        }
        _ => false,
    }
}

impl std::fmt::Debug for OutboundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundProxy")
            .field("proxy", &self.proxy.as_ref().map(proxy_display))
            .field("no_proxy", &self.no_proxy)
            .finish_non_exhaustive()
    }
}

impl OutboundProxy {
    /// The proxy `HTTPS_PROXY` (or `https_proxy`) names, with the exemptions
    /// of `NO_PROXY` (or `no_proxy`): read by the binaries, at their edge.
    pub fn from_env() -> Result<Self, String> {
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok())
                .filter(|v| !v.is_empty())
        };
        match var(["HTTPS_PROXY", "https_proxy"]) {
            Some(proxy) => Self::new(&proxy, &var(["NO_PROXY", "no_proxy"]).unwrap_or_default()),
            None => Ok(Self::default()),
        }
    }

    /// Through `proxy` (`http://[user:password@]host[:port]`, the scheme
    /// optional), except for the destinations of `no_proxy`, a
    /// comma-separated list as Go's and curl's clients read it: names
    /// (each also covering its subdomains; a leading `.` or `*.` changes
    /// nothing), optionally with `:port`; addresses and CIDR ranges
    /// (`10.0.0.0/8`, `fd00::/8`), matched against destinations given as
    /// addresses; or `*` for all. Loopback is not exempt unless listed.
    /// Errors start with the variable they are about.
    pub fn new(proxy: &str, no_proxy: &str) -> Result<Self, String> {
        let with_scheme = if proxy.contains("://") {
            proxy.to_owned()
        } else {
            format!("http://{proxy}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|_| "HTTPS_PROXY: the proxy is not a URL".to_owned())?;
        if uri.scheme_str() != Some("http") {
            return Err("HTTPS_PROXY: only http:// proxies are supported".to_owned());
        }
        if uri.host().is_none() {
            return Err("HTTPS_PROXY: the proxy URL has no host".to_owned());
        }
        let no_proxy: Vec<String> = no_proxy
            .split(',')
            .map(|entry| entry.trim().to_owned())
            .filter(|entry| !entry.is_empty())
            .collect();
        let exemptions = no_proxy
            .iter()
            .map(|entry| Exemption::parse(entry))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("NO_PROXY: {e}"))?;
        Ok(Self {
            proxy: Some(uri),
            no_proxy,
            exemptions,
        })
    }

    /// The proxy's `host:port`, if one is set: never its credentials, so
    /// it may be logged.
    pub fn address(&self) -> Option<String> {
        self.proxy.as_ref().map(proxy_display)
    }

    /// The hosts that bypass the proxy (`NO_PROXY`).
    pub fn exempt(&self) -> &[String] {
        &self.no_proxy
    }

    /// The proxy to reach `host:port` through, unless it connects directly.
    pub(crate) fn for_destination(&self, host: &str, port: u16) -> Option<&Uri> {
        let proxy = self.proxy.as_ref()?;
        let host = unbracket(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        let address = host.parse().ok();
        let exempt = self
            .exemptions
            .iter()
            .any(|exemption| exemption.covers(host, address, port));
        (!exempt).then_some(proxy)
    }
}

/// A TCP connection to `host:port` through the HTTP proxy `proxy`, with
/// basic credentials from its URL. Errors name the proxy without them.
pub(crate) async fn through_proxy(proxy: &Uri, host: &str, port: u16) -> Result<TcpStream, String> {
    let failed = |e: String| format!("proxy {}: {e}", proxy_display(proxy));
    let proxy_host = proxy
        .host()
        .ok_or_else(|| failed("no host".to_owned()))
        .map(unbracket)?;
    let proxy_port = proxy.port_u16().unwrap_or(80);
    let mut tcp = TcpStream::connect((proxy_host, proxy_port))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let host = unbracket(host);
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((userinfo, _)) = proxy.authority().and_then(|a| a.as_str().rsplit_once('@')) {
        use base64::Engine;
        let decoded = percent_encoding::percent_decode_str(userinfo).decode_utf8_lossy();
        let credentials = base64::engine::general_purpose::STANDARD.encode(decoded.as_bytes());
        head.push_str(&format!("Proxy-Authorization: Basic {credentials}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut reader = BufReader::new(&mut tcp);
    let mut status = String::new();
    let mut read = 0;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| failed(e.to_string()))?;
        read += n;
        if n == 0 || read > MAX_PROXY_RESPONSE {
            return Err(failed("closed or overlong answer to CONNECT".to_owned()));
        }
        if status.is_empty() {
            status = line.trim().to_owned();
        } else if line == "\r\n" || line == "\n" {
            break;
        }
    }
    // Nothing follows the head until we speak (TLS starts with the client).
    if !reader.buffer().is_empty() {
        return Err(failed("sent data before the tunnel was used".to_owned()));
    }
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if !code.starts_with('2') {
        return Err(failed(format!("CONNECT refused: {status}")));
    }
    Ok(tcp)
}

/// A proxy URL without its credentials, for messages.
fn proxy_display(proxy: &Uri) -> String {
    let host = proxy.host().unwrap_or_default();
    match proxy.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// A connector for hyper-util's client: TCP through the proxy when one
/// applies to the destination, directly otherwise. Wrapped in an
/// `HttpsConnector`, TLS runs inside the tunnel.
#[derive(Clone, Debug)]
pub(crate) struct ProxyConnector {
    proxy: OutboundProxy,
    direct: HttpConnector,
    connect_timeout: Duration,
}

impl ProxyConnector {
    /// Connections through `proxy`, each given `connect_timeout` (including
    /// the proxy's answer).
    pub(crate) fn new(proxy: OutboundProxy, connect_timeout: Duration) -> Self {
        let mut direct = HttpConnector::new();
        direct.enforce_http(false);
        direct.set_connect_timeout(Some(connect_timeout));
        Self {
            proxy,
            direct,
            connect_timeout,
        }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let host = destination.host().unwrap_or_default();
        let port = destination
            .port_u16()
            .unwrap_or(match destination.scheme_str() {
                Some("http") => 80,
                _ => 443,
            });
        let Some(proxy) = self.proxy.for_destination(host, port).cloned() else {
            let direct = self.direct.clone();
            return Box::pin(async move { Ok(direct.oneshot(destination).await?) });
        };
        let host = host.to_owned();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let tcp = tokio::time::timeout(timeout, through_proxy(&proxy, &host, port))
                .await
                .map_err(|_| format!("proxy {}: timed out", proxy_display(&proxy)))??;
            let _ = tcp.set_nodelay(true);
            Ok(TokioIo::new(tcp))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A CONNECT proxy on loopback answering `status`; on 200 it relays to
    /// the target. Records each request head.
    pub(crate) async fn proxy(status: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                let record = record.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0u8; 1];
                        if client.read(&mut byte).await.unwrap() == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8(head).unwrap();
                    let target = head.split_whitespace().nth(1).unwrap().to_owned();
                    record.lock().unwrap().push(head);
                    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                    client.write_all(answer.as_bytes()).await.unwrap();
                    if status.starts_with("200") {
                        let mut server = TcpStream::connect(target).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        (port, seen)
    }

    /// A server that answers `pong` to anything.
    async fn target() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4];
                    socket.read_exact(&mut buf).await.unwrap();
                    socket.write_all(b"pong").await.unwrap();
                });
            }
        });
        port
    }

    async fn ping(connector: &ProxyConnector, port: u16) -> Result<(), BoxError> {
        let io = connector
            .clone()
            .oneshot(format!("https://127.0.0.1:{port}/").parse().unwrap())
            .await?;
        let mut tcp = io.into_inner();
        tcp.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tcp.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        Ok(())
    }

    #[test]
    fn no_proxy_exempts_names_their_subdomains_or_everything() {
        let proxy = OutboundProxy::new("proxy.corp:3128", "internal, .svc.local,10.0.0.1").unwrap();
        let direct = |host| proxy.for_destination(host, 443).is_none();
        assert!(!direct("paddock.example"));
        assert!(direct("internal"));
        assert!(direct("a.internal"));
        assert!(direct("A.Internal."));
        assert!(!direct("notinternal"));
        assert!(direct("paddock.svc.local"));
        assert!(direct("10.0.0.1"));
        assert!(!direct("10.0.0.2"));
        assert!(OutboundProxy::new("proxy.corp", "*")
            .unwrap()
            .for_destination("anything", 443)
            .is_none());
        assert!(OutboundProxy::default()
            .for_destination("anything", 443)
            .is_none());
        assert!(OutboundProxy::new("https://proxy.corp", "").is_err());
    }

    /// The forms a cluster's shared `NO_PROXY` carries (a service CIDR, a
    /// pod CIDR, `*.` names, ports) mean what they mean to Go clients.
    #[test]
    fn no_proxy_takes_address_ranges_wildcards_and_ports() {
        let proxy = OutboundProxy::new(
            "proxy.corp:3128",
            "10.96.0.0/12,fd00:10::/32,*.corp.example,registry.example:5000,[::1]:6443,192.168.1.7:8443",
        )
        .unwrap();
        let direct = |host, port| proxy.for_destination(host, port).is_none();
        assert!(direct("10.96.0.1", 443));
        assert!(direct("10.111.255.254", 443));
        assert!(!direct("10.112.0.1", 443));
        assert!(direct("[fd00:10::1]", 443));
        assert!(direct("::ffff:10.96.0.1", 443));
        assert!(!direct("fd00:11::1", 443));
        assert!(direct("api.corp.example", 443));
        assert!(direct("corp.example", 443));
        assert!(direct("registry.example", 5000));
        assert!(!direct("registry.example", 443));
        assert!(direct("[::1]", 6443));
        assert!(!direct("[::1]", 443));
        assert!(direct("192.168.1.7", 8443));
        assert!(!direct("192.168.1.7", 443));
        // Names are not resolved to match address ranges, as in Go.
        assert!(!direct("kubernetes.default.svc", 443));
        assert!(!direct("localhost", 443));
        assert_eq!(
            OutboundProxy::new("proxy.corp:3128", "0.0.0.0/0")
                .unwrap()
                .for_destination("203.0.113.9", 443),
            None
        );
        for bad in ["10.0.0.0/33", "10.0.0/8", "host:port", "fd00::/129"] {
            let error = OutboundProxy::new("proxy.corp", bad).unwrap_err();
            assert!(
                error.starts_with("NO_PROXY: ") && error.contains(bad),
                "{error}"
            );
        }
        let error = OutboundProxy::new("ftp://proxy.corp", "").unwrap_err();
        assert!(error.starts_with("HTTPS_PROXY: "), "{error}");
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let proxy = OutboundProxy::new("http://alice:s3cret@proxy.corp:3128", "").unwrap();
        let shown = format!("{proxy:?}");
        assert!(shown.contains("proxy.corp:3128"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn connects_through_the_proxy_with_its_credentials() {
        let (proxy_port, seen) = proxy("200 Connection established").await;
        let target = target().await;
        let proxy =
            OutboundProxy::new(&format!("http://alice:s%40cret@127.0.0.1:{proxy_port}"), "")
                .unwrap();
        ping(&ProxyConnector::new(proxy, Duration::from_secs(10)), target)
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].starts_with(&format!("CONNECT 127.0.0.1:{target} HTTP/1.1\r\n")),
            "{}",
            seen[0]
        );
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:s@cret");
        assert!(
            seen[0].contains(&format!("Proxy-Authorization: Basic {basic}\r\n")),
            "{}",
            seen[0]
        );
    }

    #[tokio::test]
    async fn no_proxy_hosts_connect_directly() {
        let (proxy_port, seen) = proxy("200 Connection established").await;
        let target = target().await;
        let proxy =
            OutboundProxy::new(&format!("127.0.0.1:{proxy_port}"), "localhost,127.0.0.1").unwrap();
        ping(&ProxyConnector::new(proxy, Duration::from_secs(10)), target)
            .await
            .unwrap();
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_connect_says_so_without_the_credentials() {
        let (proxy_port, _) = proxy("407 Proxy Authentication Required").await;
        let proxy =
            OutboundProxy::new(&format!("http://alice:s3cret@127.0.0.1:{proxy_port}"), "").unwrap();
        let error = ping(&ProxyConnector::new(proxy, Duration::from_secs(10)), 443)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("proxy 127.0.0.1:{proxy_port}"))
                && error.contains("CONNECT refused: HTTP/1.1 407"),
            "{error}"
        );
        assert!(
            !error.contains("s3cret") && !error.contains("alice"),
            "{error}"
        );
    }
}
