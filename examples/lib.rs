//! Runnable examples of embedding `proxy-core`; see `examples/`.
