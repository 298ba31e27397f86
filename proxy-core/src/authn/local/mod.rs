//! Local users.
