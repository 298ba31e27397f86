//! Active Directory and OpenLDAP: password logins against a directory.
//!
//! * [`escape`]: RFC 4515 filter and RFC 4514 DN escaping.
//! * [`guid`]: AD `objectGUID` (mixed-endian) and `objectSid` formatting.

pub mod escape;
pub mod guid;
