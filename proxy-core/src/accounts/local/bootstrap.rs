//! The first-start admin.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::{new_user_id, new_user_ops, PasswordError, PasswordHasher};
use crate::authn::tokens::os_random_string;
use crate::store::{
    BindingScope, Expect, Object, Op, RoleBinding, StoreError, StoreView, SubjectKind, Timestamp,
    User,
};

/// The file, in the data directory, that receives the one-time password.
pub const BOOTSTRAP_PASSWORD_FILE: &str = "bootstrap-password";

/// The admin created on first start.
pub struct BootstrapAdmin {
    /// The `admin` user (with `must_change_password` set).
    pub user: User,
    /// The one-time password: print it once.
    pub password: SecretString,
    /// Where it was also written (mode 0600).
    pub password_file: PathBuf,
}

impl std::fmt::Debug for BootstrapAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapAdmin")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The password file could not be written.
    #[error("cannot write {path}: {detail}")]
    PasswordFile {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// Hashing failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// On an empty store (no users), creates the user `admin` bound to the global role
/// `admin`, with a random 24-character password that must be changed at first
/// login; writes the password to `<data_dir>/bootstrap-password` (mode 0600)
/// before committing, and returns it for printing once. Returns `None` when the
/// store already has users, or another process bootstrapped concurrently (the
/// username index makes exactly one of them win). Blocking.
pub fn bootstrap_admin(
    view: &StoreView,
    hasher: &PasswordHasher,
    data_dir: &Path,
    now: Timestamp,
) -> Result<Option<BootstrapAdmin>, BootstrapError> {
    if view.with_snapshot(|s| s.user_count()) > 0 {
        return Ok(None);
    }
    // No look-alikes (0/O, 1/l/I); 24 of 55 symbols is ~138 bits.
    let password = SecretString::from(os_random_string(
        b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789",
        24,
    ));
    let id = new_user_id();
    let user = User {
        id: id.clone(),
        username: "admin".into(),
        display_name: "Default Admin".into(),
        enabled: true,
        must_change_password: true,
        principal_ids: vec![format!("local://{id}")],
        created_at: now,
    };
    let phc = hasher.hash(&password)?;
    let mut ops = new_user_ops(&user, phc, now);
    ops.push(Op::put(
        Object::RoleBinding(RoleBinding {
            id: format!("grb-{id}-admin"),
            subject: id.clone(),
            subject_kind: SubjectKind::User,
            role: "admin".into(),
            scope: BindingScope::Global,
            created_at: now,
        }),
        Expect::Absent,
    ));

    let password_file = data_dir.join(BOOTSTRAP_PASSWORD_FILE);
    let tmp = data_dir.join(format!(".{BOOTSTRAP_PASSWORD_FILE}.{id}"));
    write_0600(&tmp, password.expose_secret()).map_err(|e| BootstrapError::PasswordFile {
        path: tmp.display().to_string(),
        detail: e.to_string(),
    })?;
    match view.commit(ops) {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            let _ = fs::remove_file(&tmp);
            view.refresh()?;
            return Ok(None);
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
    }
    fs::rename(&tmp, &password_file).map_err(|e| BootstrapError::PasswordFile {
        path: password_file.display().to_string(),
        detail: e.to_string(),
    })?;
    Ok(Some(BootstrapAdmin {
        user,
        password,
        password_file,
    }))
}

fn write_0600(path: &Path, text: &str) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}
