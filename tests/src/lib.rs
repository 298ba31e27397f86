//! Support for Paddock integration tests.
