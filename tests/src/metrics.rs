//! Scraping Paddock's `/metrics` and reading it back with an OpenMetrics
//! parser (`openmetrics-parser`, which checks the exposition against the
//! OpenMetrics grammar: `# EOF`, `_total` counter samples, histogram
//! buckets), so a test checks what Prometheus would read, not substrings.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};

/// The content type Paddock must serve the metrics with.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One parsed scrape.
#[derive(Debug)]
pub struct Scrape {
    exposition: MetricsExposition<OpenMetricsType, OpenMetricsValue>,
    /// The text as served.
    pub text: String,
}

/// `GET http://<addr>/metrics`, checked to be a 200 with the OpenMetrics
/// content type and a body the parser accepts.
pub async fn scrape(addr: &str) -> Scrape {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(format!("http://{addr}/metrics").parse().expect("uri"))
        .await
        .expect("scrape");
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("UTF-8");
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type.as_deref(), Some(OPENMETRICS));
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not OpenMetrics: {e}\n{text}"));
    Scrape { exposition, text }
}

impl Scrape {
    /// The value of the sample of `family` whose labels include every one
    /// of `labels` (a counter's, gauge's value; a histogram's count); `None`
    /// when there is no such sample. Panics if more than one matches.
    pub fn value(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = self.exposition.families.get(family)?;
        let mut values = family.iter_samples().filter_map(|sample| {
            let set = sample.get_labelset().expect("labels");
            labels
                .iter()
                .all(|(name, value)| set.get_label_value(name) == Some(value))
                .then(|| match &sample.value {
                    OpenMetricsValue::Counter(counter) => counter.value.as_f64(),
                    OpenMetricsValue::Gauge(value) | OpenMetricsValue::Unknown(value) => {
                        value.as_f64()
                    }
                    OpenMetricsValue::Histogram(histogram) => {
                        histogram.count.expect("a histogram count") as f64
                    }
                    other => panic!("unexpected sample {other:?}"),
                })
        });
        let value = values.next();
        assert!(
            values.next().is_none(),
            "more than one sample matches {labels:?}"
        );
        value
    }

    /// The metric families' names, `paddock_requests` and the like (counters
    /// without `_total`).
    pub fn families(&self) -> Vec<&str> {
        self.exposition
            .families
            .keys()
            .map(String::as_str)
            .collect()
    }
}

/// `method http://<addr><path>` with no body: the status and headers.
pub async fn request(addr: &str, method: http::Method, path: &str) -> (u16, http::HeaderMap) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Empty::new())
        .expect("request");
    let response = client
        .request(request)
        .await
        .expect("request to the metrics listener");
    (response.status().as_u16(), response.headers().clone())
}
