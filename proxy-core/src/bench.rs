//! Internal functions re-exported for the criterion benchmarks in
//! `benches/`, which link proxy-core as any other crate does. Not part of
//! the API: hidden from the docs, may change without notice.

pub use crate::{impersonation::insert_headers, layers::sanitize::strip};
