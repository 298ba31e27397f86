//! Finding the user an administrator names. Every command and endpoint
//! that takes a user (`paddock user bind|passwd|disable`, `paddock token
//! create --user`, `/paddock/v1/users/<who>`, a binding's `user`) resolves
//! it here, so they all accept the same spellings:
//!
//! | spelling | example | finds |
//! |---|---|---|
//! | user id | `u-3k9x2m4q7p1z` | that user |
//! | `<provider>/<login>` | `corp/jdoe`, `github/octocat`, `local/alice` | the user that provider reported with that login (a directory user once they logged in) |
//! | principal id | `openldap_user://…`, `github_user://583231`, `local://u-…` | the user holding it |
//! | plain name | `alice` | the local user |

use crate::{
    authn::external::user_id_for,
    store::{Snapshot, User},
};

/// The provider name of local users in `<provider>/<login>`.
const LOCAL: &str = "local";

/// Why a name matched no single user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// Nobody by that name.
    #[error("no user {who:?}{hint}")]
    NotFound {
        /// The name as given.
        who: String,
        /// What to try instead, starting with a separator.
        hint: &'static str,
    },
    /// Several users of one provider share the login.
    #[error("{who:?} names several users ({}): give the user id", ids.join(", "))]
    Ambiguous {
        /// The name as given.
        who: String,
        /// The users it names.
        ids: Vec<String>,
    },
}

/// The user `who` names (see the module doc for the spellings).
pub fn resolve_user(snap: &Snapshot, who: &str) -> Result<User, LookupError> {
    let not_found = |hint| LookupError::NotFound {
        who: who.to_owned(),
        hint,
    };
    if who.contains("://") {
        return principal_user(snap, who).ok_or_else(|| {
            not_found(
                " (a directory or GitHub user is stored at their first login; \
                 bind their principal id before that)",
            )
        });
    }
    if let Some((provider, login)) = who.split_once('/') {
        return provider_user(snap, who, provider, login);
    }
    snap.user(who)
        .or_else(|| snap.user_by_name(who))
        .map(|u| u.value.clone())
        .ok_or_else(|| {
            not_found(" (a directory or GitHub user is named <provider>/<login>, e.g. corp/jdoe)")
        })
}

/// The user id a binding to the user principal `principal` stands for:
/// the stored user holding it, or, before that user's first login, the id
/// their first login will create (derived from the principal id).
pub fn user_id_for_principal(snap: &Snapshot, principal: &str) -> String {
    principal_user(snap, principal).map_or_else(|| user_id_for(principal), |u| u.id)
}

fn principal_user(snap: &Snapshot, principal: &str) -> Option<User> {
    if let Some(user) = snap.user(&user_id_for(principal)) {
        if user.value.principal_ids.iter().any(|p| p == principal) {
            return Some(user.value.clone());
        }
    }
    snap.users()
        .find(|u| u.value.principal_ids.iter().any(|p| p == principal))
        .map(|u| u.value.clone())
}

fn provider_user(
    snap: &Snapshot,
    who: &str,
    provider: &str,
    login: &str,
) -> Result<User, LookupError> {
    if provider == LOCAL {
        return snap
            .user_by_name(login)
            .map(|u| u.value.clone())
            .ok_or_else(|| LookupError::NotFound {
                who: who.to_owned(),
                hint: "",
            });
    }
    let mut matches = snap.users().filter(|u| {
        let Some(attributes) = snap.user_attributes(&u.value.id) else {
            return false;
        };
        let Some(extra) = attributes.value.extra.get(provider) else {
            return false;
        };
        let reported = extra.get("username").into_iter().flatten();
        reported
            .chain(std::iter::once(&u.value.username))
            .any(|name| name.eq_ignore_ascii_case(login))
    });
    match (matches.next(), matches.next()) {
        (Some(user), None) => Ok(user.value.clone()),
        (None, _) => Err(LookupError::NotFound {
            who: who.to_owned(),
            hint: " (a directory or GitHub user is known once they have logged in)",
        }),
        (Some(first), Some(second)) => Err(LookupError::Ambiguous {
            who: who.to_owned(),
            ids: [first, second]
                .into_iter()
                .chain(matches)
                .map(|u| u.value.id.clone())
                .collect(),
        }),
    }
}
