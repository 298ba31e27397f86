//! Table tests for request-attribute resolution, mostly the rows of Kubernetes'
//! `requestinfo_test.go` plus the quirks of `requestinfo.go` that matter to an
//! authorizer in front of the API server (see `docs/facts.md`).

use super::*;

/// (method, path+query, resource?, verb, prefix, group, version, namespace, resource,
/// subresource, name)
type Row = (
    &'static str,
    &'static str,
    bool,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

fn resolve(method: &str, url: &str) -> Result<RequestAttributes, AttributesError> {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    RequestAttributes::from_request(method, path, query)
}

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // collections and objects
    ("GET", "/api/v1/namespaces", true, "list", "api", "", "v1", "", "namespaces", "", ""),
    ("GET", "/api/v1/namespaces/other", true, "get", "api", "", "v1", "other", "namespaces", "", "other"),
    ("GET", "/api/v1/namespaces/other/pods", true, "list", "api", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/namespaces/other/pods/foo", true, "get", "api", "", "v1", "other", "pods", "", "foo"),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", true, "get", "api", "", "v1", "other", "pods", "", "foo"),
    ("GET", "/api/v1/pods", true, "list", "api", "", "v1", "", "pods", "", ""),
    ("HEAD", "/api/v1/pods", true, "list", "api", "", "v1", "", "pods", "", ""),
    ("OPTIONS", "/api/v1/namespaces/other/pods/foo", true, "", "api", "", "v1", "other", "pods", "", "foo"),
    // methods are case-sensitive, like Go's switch
    ("get", "/api/v1/namespaces/other/pods/foo", true, "", "api", "", "v1", "other", "pods", "", "foo"),
    // special verbs
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", true, "proxy", "api", "", "v1", "other", "pods", "", "foo"),
    // more parts than resolution reads
    ("GET", "/apis/apps/v1/watch/namespaces/other/deployments/foo/status/x/y", true, "watch", "apis", "apps", "v1", "other", "deployments", "status", "foo"),
    ("DELETE", "/api/v1/namespaces/other/pods/foo/log/a/b/c/d/e", true, "delete", "api", "", "v1", "other", "pods", "log", "foo"),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", true, "proxy", "api", "", "v1", "other", "pods", "", "foo"),
    ("GET", "/api/v1/watch/pods", true, "watch", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/watch/namespaces/other/pods", true, "watch", "api", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/watch/namespaces/other/pods/foo", true, "watch", "api", "", "v1", "other", "pods", "", "foo"),
    // watch parameter
    ("GET", "/api/v1/pods?watch=true", true, "watch", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=false", true, "list", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=FALSE", true, "list", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", true, "watch", "api", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", true, "list", "api", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=", true, "watch", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=yes", true, "watch", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch", true, "watch", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=false&watch=true", true, "list", "api", "", "v1", "", "pods", "", ""),
    // `watch` is folded like Go's strings.EqualFold: U+017F is an `s`
    ("GET", "/api/v1/pods?watch=fal%C5%BFe", true, "list", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=FAL%C5%BFE", true, "list", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=f%C3%A4lse", true, "watch", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=fal%C5%BFe0", true, "watch", "api", "", "v1", "", "pods", "", ""),
    // … but after a ListOptions decoding error, like strings.ToLower: U+017F stays
    ("GET", "/api/v1/pods?limit=x&watch=fal%C5%BFe", true, "watch", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?limit=x&watch=FALSE", true, "list", "api", "", "v1", "", "pods", "", ""),
    // a watch on a named object is a get
    ("GET", "/api/v1/namespaces/other/pods/foo?watch=true", true, "get", "api", "", "v1", "other", "pods", "", "foo"),
    // subresources
    ("GET", "/api/v1/namespaces/other/pods/foo/status", true, "get", "api", "", "v1", "other", "pods", "status", "foo"),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", true, "get", "api", "", "v1", "other", "pods", "proxy", "foo"),
    ("PUT", "/api/v1/namespaces/other/finalize", true, "update", "api", "", "v1", "other", "namespaces", "finalize", "other"),
    ("PUT", "/api/v1/namespaces/other/status", true, "update", "api", "", "v1", "other", "namespaces", "status", "other"),
    ("GET", "/api/v1/namespaces/other/configmaps", true, "list", "api", "", "v1", "other", "configmaps", "", ""),
    // verbs from methods
    ("PATCH", "/api/v1/namespaces/other/pods/foo", true, "patch", "api", "", "v1", "other", "pods", "", "foo"),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", true, "delete", "api", "", "v1", "other", "pods", "", "foo"),
    ("POST", "/api/v1/namespaces/other/pods", true, "create", "api", "", "v1", "other", "pods", "", ""),
    ("PUT", "/api/v1/namespaces/other/pods/foo", true, "update", "api", "", "v1", "other", "pods", "", "foo"),
    // deletecollection
    ("DELETE", "/api/v1/nodes", true, "deletecollection", "api", "", "v1", "", "nodes", "", ""),
    ("DELETE", "/api/v1/namespaces", true, "deletecollection", "api", "", "v1", "", "namespaces", "", ""),
    ("DELETE", "/api/v1/namespaces/other/pods", true, "deletecollection", "api", "", "v1", "other", "pods", "", ""),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", true, "deletecollection", "apis", "extensions", "v1", "other", "pods", "", ""),
    // groups and versions (the Go table says prefix "api" for these rows but never asserts it)
    ("POST", "/apis/extensions/v1/namespaces/other/pods", true, "create", "apis", "extensions", "v1", "other", "pods", "", ""),
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", true, "create", "apis", "extensions", "v1beta3", "other", "pods", "", ""),
    ("GET", "/apis/apps/v1/namespaces/ns/deployments/d/scale", true, "get", "apis", "apps", "v1", "ns", "deployments", "scale", "d"),
    // non-resource URLs; the prefix is kept even when the request turns out non-resource
    ("GET", "/healthz", false, "get", "", "", "", "", "", "", ""),
    ("HEAD", "/healthz", false, "head", "", "", "", "", "", "", ""),
    ("POST", "/logs", false, "post", "", "", "", "", "", "", ""),
    ("GET", "/", false, "get", "", "", "", "", "", "", ""),
    ("GET", "/api", false, "get", "", "", "", "", "", "", ""),
    ("GET", "/api/v1", false, "get", "", "", "", "", "", "", ""),
    ("GET", "/api/v1/", false, "get", "", "", "", "", "", "", ""),
    ("GET", "/apis", false, "get", "", "", "", "", "", "", ""),
    ("GET", "/apis/apps", false, "get", "", "", "", "", "", "", ""),
    ("GET", "/apis/apps/v1", false, "get", "apis", "", "", "", "", "", ""),
    ("GET", "/openapi/v3/apis/apps/v1", false, "get", "", "", "", "", "", "", ""),
    ("GET", "/foo/bar/baz", false, "get", "", "", "", "", "", "", ""),
    // extra slashes are empty parts, as in Go's strings.Split
    ("GET", "/apis//group/version/resource", true, "get", "apis", "", "group", "", "version", "", "resource"),
    ("GET", "//api/v1/pods//", true, "list", "api", "", "v1", "", "pods", "", ""),
    // the path is decoded before splitting: a%2Fb is name a, subresource b
    ("GET", "/api/v1/namespaces/ns/configmaps/a%2Fb", true, "get", "api", "", "v1", "ns", "configmaps", "b", "a"),
    ("GET", "/api/v1/namespaces/n%73/pods", true, "list", "api", "", "v1", "ns", "pods", "", ""),
    // a proxy's routing prefix is the proxy's business: left in, it is a
    // path the API server does not serve, so a non-resource request
    ("GET", "/k8s/clusters/c-1/api/v1/namespaces/ns/pods", false, "get", "", "", "", "", "", "", ""),
    ("GET", "/k8s/clusters/c-1/healthz", false, "get", "", "", "", "", "", "", ""),
    // field selectors name one object for list and watch only
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=name1", true, "list", "api", "", "v1", "default", "pods", "", "name1"),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3D%3Dname1", true, "list", "api", "", "v1", "default", "pods", "", "name1"),
    ("GET", "/api/v1/namespaces/default/pods?watch=true&fieldSelector=metadata.name=name1", true, "watch", "api", "", "v1", "default", "pods", "", "name1"),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=foo=bar", true, "list", "api", "", "v1", "default", "pods", "", ""),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name!=name1", true, "list", "api", "", "v1", "default", "pods", "", ""),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=name1,foo", true, "list", "api", "", "v1", "default", "pods", "", ""),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=name1,foo&watch=true", true, "watch", "api", "", "v1", "default", "pods", "", ""),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=name1,foo&watch=false", true, "list", "api", "", "v1", "default", "pods", "", ""),
    ("DELETE", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=name1", true, "deletecollection", "api", "", "v1", "default", "pods", "", ""),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=doesnotmatch&fieldSelector=metadata.name=name1", true, "list", "api", "", "v1", "default", "pods", "", "doesnotmatch"),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=name1&labelSelector=metadata.name=doesnotmatter", true, "list", "api", "", "v1", "default", "pods", "", "name1"),
    ("GET", "/api/v1/namespaces/default/pods?labelSelector=metadata.name=doesnotmatter&fieldSelector=metadata.name=name1", true, "list", "api", "", "v1", "default", "pods", "", "name1"),
    // an undecodable ListOptions falls back to list without a name, raw watch still counts
    ("GET", "/api/v1/namespaces/default/pods?limit=x&fieldSelector=metadata.name=name1", true, "list", "api", "", "v1", "default", "pods", "", ""),
    ("GET", "/api/v1/namespaces/default/pods?limit=x&watch=1", true, "watch", "api", "", "v1", "default", "pods", "", ""),
    // names that are not valid path segments are not taken from selectors
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=..", true, "list", "api", "", "v1", "default", "pods", "", ""),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=a%2Fb", true, "list", "api", "", "v1", "default", "pods", "", ""),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=a%25b", true, "list", "api", "", "v1", "default", "pods", "", ""),
];

#[test]
fn request_info_table() {
    for row in ROWS {
        let (method, url, is_res, verb, prefix, group, version, ns, resource, sub, name) = *row;
        let got = resolve(method, url).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let want = (
            is_res, verb, prefix, group, version, ns, resource, sub, name,
        );
        let have = (
            got.is_resource_request,
            got.verb.as_str(),
            got.api_prefix,
            got.api_group.as_str(),
            got.api_version.as_str(),
            got.namespace.as_str(),
            got.resource.as_str(),
            got.subresource.as_str(),
            got.name.as_str(),
        );
        assert_eq!(have, want, "{method} {url}");
    }
}

#[test]
fn path_is_decoded_and_kept_whole() {
    let a = resolve("GET", "/api/v1/namespaces/ns/configmaps/a%2Fb").unwrap();
    assert_eq!(a.path, "/api/v1/namespaces/ns/configmaps/a/b");
    let a = resolve("GET", "/version%2F").unwrap();
    assert_eq!(a.path, "/version/");
    // What is authorized is the path that is forwarded, prefix and all.
    let a = resolve("GET", "/k8s/clusters/prod/api/v1/secrets").unwrap();
    assert_eq!(a.path, "/k8s/clusters/prod/api/v1/secrets");
    assert!(!a.is_resource_request);
}

#[test]
fn errors() {
    for url in [
        "/api/v1/watch",
        "/api/v1/proxy",
        "/api/v1/watch/",
        "/apis/apps/v1/proxy",
    ] {
        assert!(
            matches!(
                resolve("GET", url),
                Err(AttributesError::SpecialVerbWithoutResource { .. })
            ),
            "{url}"
        );
    }
    assert_eq!(
        resolve("GET", "/api/v1/pods/%zz"),
        Err(AttributesError::InvalidPercentEncoding)
    );
    assert_eq!(
        resolve("GET", "/api/v1/pods/%4"),
        Err(AttributesError::InvalidPercentEncoding)
    );
    assert_eq!(
        resolve("GET", "/api/v1/pods/%ff"),
        Err(AttributesError::NonUtf8Path)
    );
}

#[test]
fn selectors_are_recorded_except_via_watch_prefix() {
    let a = resolve(
        "GET",
        "/api/v1/pods?labelSelector=app%3Dx&fieldSelector=a=b&fieldSelector=c=d",
    )
    .unwrap();
    assert_eq!(a.label_selector.as_deref(), Some("app=x"));
    assert_eq!(a.field_selector.as_deref(), Some("a=b"));
    let a = resolve("DELETE", "/api/v1/namespaces/n/pods?labelSelector=app%3Dx").unwrap();
    assert_eq!(a.label_selector.as_deref(), Some("app=x"));
    let a = resolve("GET", "/api/v1/watch/pods?labelSelector=app%3Dx").unwrap();
    assert_eq!(a.verb, "watch");
    assert_eq!(a.label_selector, None);
    let a = resolve("GET", "/api/v1/namespaces/n/pods/p?labelSelector=app%3Dx").unwrap();
    assert_eq!(a.label_selector, None);
}

#[test]
fn long_running() {
    let lr = |m: &str, u: &str| resolve(m, u).unwrap().is_long_running();
    assert!(lr("GET", "/api/v1/pods?watch=true"));
    assert!(lr("GET", "/api/v1/watch/pods"));
    assert!(lr("POST", "/api/v1/namespaces/n/pods/p/exec?command=sh"));
    assert!(lr("GET", "/api/v1/namespaces/n/pods/p/attach"));
    assert!(lr("GET", "/api/v1/namespaces/n/pods/p/portforward"));
    assert!(lr("GET", "/api/v1/namespaces/n/services/s/proxy/x"));
    assert!(lr("GET", "/api/v1/proxy/namespaces/n/pods/p"));
    assert!(lr("GET", "/api/v1/namespaces/n/pods/p/log?follow=true"));
    assert!(lr("GET", "/api/v1/namespaces/n/pods/p/log?follow"));
    assert!(!lr("GET", "/api/v1/namespaces/n/pods/p/log?follow=false"));
    assert!(!lr(
        "GET",
        "/api/v1/namespaces/n/pods/p/log?follow=FAL%C5%BFE"
    ));
    assert!(!lr("GET", "/api/v1/namespaces/n/pods/p/log"));
    assert!(!lr("GET", "/api/v1/pods"));
    assert!(!lr("GET", "/api/v1/namespaces/n/pods/p?follow=true"));
    assert!(!lr("GET", "/healthz"));
}

#[test]
fn websocket_upgrade_checks() {
    let exec = resolve("GET", "/api/v1/namespaces/n/pods/p/exec?command=sh").unwrap();
    let checks = exec.authorization_checks(true);
    let verbs: Vec<_> = checks.iter().map(|c| c.verb.as_str()).collect();
    assert_eq!(verbs, ["get", "create"]);
    assert!(checks
        .iter()
        .all(|c| c.subresource == "exec" && c.name == "p"));
    // without an upgrade, or for proxy / non-pod resources, only the request itself
    assert_eq!(exec.authorization_checks(false).len(), 1);
    let proxy = resolve("GET", "/api/v1/namespaces/n/pods/p/proxy").unwrap();
    assert_eq!(proxy.authorization_checks(true).len(), 1);
    let spdy = resolve("POST", "/api/v1/namespaces/n/pods/p/portforward").unwrap();
    assert_eq!(spdy.authorization_checks(true).len(), 1);
    let pf = resolve("GET", "/api/v1/namespaces/n/pods/p/portforward").unwrap();
    assert_eq!(pf.authorization_checks(true).len(), 2);
    let other = resolve("GET", "/apis/x.io/v1/namespaces/n/pods/p/exec").unwrap();
    assert_eq!(other.authorization_checks(true).len(), 1);
}

#[test]
fn builders() {
    let a = RequestAttributes::resource_request("get", "apps", "deployments")
        .with_namespace("ns")
        .with_name("d")
        .with_subresource("scale");
    assert!(a.is_resource_request);
    assert_eq!(a.combined_resource(), "deployments/scale");
    assert_eq!(a.api_prefix, "apis");
    let n = RequestAttributes::non_resource_request("get", "/healthz");
    assert!(!n.is_resource_request);
    assert_eq!(n.path, "/healthz");
}

#[test]
fn a_typical_request_resolves_without_allocating() {
    let a = resolve("GET", "/api/v1/namespaces/default/pods/bench").unwrap();
    // The path is longer than the inline capacity; every other string is inline
    // or static, so resolving the request allocates once at most.
    for field in [
        &a.verb,
        &a.api_group,
        &a.api_version,
        &a.namespace,
        &a.resource,
        &a.subresource,
        &a.name,
    ] {
        assert!(!field.is_heap_allocated(), "{field:?} is on the heap");
    }
    let list = resolve("DELETE", "/apis/apps/v1/namespaces/default/deployments").unwrap();
    assert_eq!(list.verb, "deletecollection");
    assert!(!list.verb.is_heap_allocated());
    assert!(!resolve("GET", "/healthz").unwrap().path.is_heap_allocated());
}

#[test]
fn a_single_check_borrows_the_request() {
    let get = resolve("GET", "/api/v1/namespaces/n/pods/p/exec").unwrap();
    assert!(matches!(get.authorization_checks(false), Cow::Borrowed([only]) if *only == get));
    assert!(matches!(get.authorization_checks(true), Cow::Owned(_)));
}

/// The byte loop splits exactly as `strings.Split(strings.Trim(path, "/"),
/// "/")` does, keeping the first [`MAX_PARTS`] parts: empty parts, long
/// paths and non-ASCII names included.
#[test]
fn split_path_is_gos_split_of_the_trimmed_path() {
    for path in [
        "",
        "/",
        "//",
        "/api",
        "api",
        "/api/v1/namespaces/default/pods/bench",
        "/api//v1///pods/",
        "///api/v1/",
        "/apis/apps/v1/namespaces/ns/deployments/web/scale/x/y/z/w",
        "/a/b/c/d/e/f/g/h/i",
        "/a/b/c/d/e/f/g/h/i/",
        "/a/b/c/d/e/f/g/h/i/j",
        "/api/v1/namespaces/ünïcødé/pods/名前",
    ] {
        let mut parts = [""; MAX_PARTS];
        let len = split_path(path, &mut parts);
        let trimmed = path.trim_matches('/');
        let expected: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').take(MAX_PARTS).collect()
        };
        assert_eq!(&parts[..len], expected.as_slice(), "{path:?}");
    }
}
