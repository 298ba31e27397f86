//! Background refresh of GitHub users' organisations and teams (placeholder
//! until the refresher lands).
