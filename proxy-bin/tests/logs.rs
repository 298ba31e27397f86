//! What a request leaves in Paddock's log, through the real `paddock`
//! binary: a line logged while the request is handled names its request
//! id, method and path (the request's span), in both formats, and the
//! access log line carries the same id as `X-Request-Id`.

use std::time::{Duration, Instant};

use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::write_file,
    paddock::{upstream_args, Paddock},
};

const PODS: &str = "/api/v1/namespaces/dev-a/pods";

/// Paddock logging in `format`, refusing every request; alice's GET of
/// [`PODS`] made, its `X-Request-Id` returned with the log once the access
/// line is in it.
async fn refused_request(format: &str) -> (String, String) {
    let fake = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_file(dir.path(), "tokens.csv", "alice-token,alice,1,\n");
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        &format!("logging: {{format: {format}, level: info}}\n"),
    );
    let mut args = upstream_args(&fake, dir.path());
    for arg in [
        "--config",
        config.to_str().unwrap(),
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--authorization",
        "deny-all",
    ] {
        args.push(arg.to_owned());
    }
    let paddock = Paddock::start(env!("CARGO_BIN_EXE_paddock").as_ref(), &args);
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http2, None);
    let response = client
        .get(&format!("{}{PODS}", paddock.url()), Some("alice-token"))
        .await;
    assert_eq!(response.status(), 403, "{}", response.text());
    let id = response.head.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // The access log is written by its own thread, when the body has ended.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = paddock.log();
        if log
            .lines()
            .any(|l| l.contains("paddock::access") && l.contains(&id))
        {
            return (id, log);
        }
        assert!(Instant::now() < deadline, "no access line for {id}:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn text_lines_logged_in_a_request_carry_its_id_method_and_path() {
    let (id, log) = refused_request("text").await;
    let forbidden = log
        .lines()
        .find(|l| l.contains("forbidden"))
        .unwrap_or_else(|| panic!("no forbidden line:\n{log}"));
    assert!(
        forbidden.contains(&format!(
            " INFO request{{request.id={id} http.method=GET http.path={PODS}}}: "
        )),
        "{forbidden}"
    );
    assert!(
        forbidden.contains(" authz.decision=\"deny\""),
        "{forbidden}"
    );
    // Written by hand, not by the subscriber: no colour codes, no span.
    let access = log.lines().find(|l| l.contains("paddock::access")).unwrap();
    assert!(
        access.contains(&format!(
            " INFO paddock::access: request kind=\"access\" request.id={id} http.method=GET http.path={PODS} "
        )),
        "{access}"
    );
    assert!(!log.contains('\u{1b}'), "{log}");
}

#[tokio::test]
async fn json_lines_logged_in_a_request_carry_its_id_method_and_path() {
    let (id, log) = refused_request("json").await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let forbidden = lines
        .iter()
        .find(|l| l["fields"]["message"] == "forbidden")
        .unwrap_or_else(|| panic!("no forbidden line:\n{log}"));
    let span = &forbidden["span"];
    assert_eq!(span["name"], "request", "{forbidden}");
    assert_eq!(span["request.id"], id.as_str(), "{forbidden}");
    assert_eq!(span["http.method"], "GET", "{forbidden}");
    assert_eq!(span["http.path"], PODS, "{forbidden}");
    assert_eq!(forbidden["spans"], serde_json::json!([span]), "{forbidden}");
    let access = lines
        .iter()
        .find(|l| l["target"] == "paddock::access")
        .unwrap_or_else(|| panic!("no access line:\n{log}"));
    assert_eq!(access["fields"]["request.id"], id.as_str(), "{access}");
}
