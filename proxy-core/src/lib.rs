//! proxy-core
