//! Secrets the provider sections read the same way: a client secret from
//! a file or an environment variable, and the key that seals state cookies
//! and stored provider tokens (from a file, or generated once in the data
//! directory).

use std::path::Path;

use secrecy::SecretString;

use super::ConfigError;

fn error(at: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: format!("{at}.{key}"),
        message: message.into(),
    }
}

/// The client secret of section `at` from `clientSecretFile` or
/// `clientSecretEnv` (exactly one), trimmed, not empty.
pub(super) fn client_secret(
    at: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<SecretString, ConfigError> {
    let secret = match (file, env) {
        (Some(file), None) => std::fs::read_to_string(file).map_err(|e| {
            error(
                at,
                "clientSecretFile",
                format!("cannot read {}: {e}", file.display()),
            )
        })?,
        (None, Some(name)) => std::env::var(name).map_err(|_| {
            error(
                at,
                "clientSecretEnv",
                format!("the environment variable {name} is not set"),
            )
        })?,
        (Some(_), Some(_)) => {
            return Err(error(
                at,
                "clientSecretFile",
                "set either clientSecretFile or clientSecretEnv, not both",
            ))
        }
        (None, None) => {
            return Err(error(
                at,
                "clientSecretFile",
                "required (or clientSecretEnv)",
            ))
        }
    };
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        return Err(error(at, "clientSecretFile", "the client secret is empty"));
    }
    Ok(SecretString::from(secret))
}

/// Checks `encryptionKeyFile` of section `at`, when set: readable, at least
/// 32 characters.
pub(super) fn check_encryption_key(at: &str, file: Option<&Path>) -> Result<(), ConfigError> {
    let Some(file) = file else { return Ok(()) };
    match std::fs::read_to_string(file) {
        Err(e) => Err(error(
            at,
            "encryptionKeyFile",
            format!("cannot read {}: {e}", file.display()),
        )),
        Ok(key) if key.trim().len() < 32 => Err(error(
            at,
            "encryptionKeyFile",
            "the key must be at least 32 characters",
        )),
        Ok(_) => Ok(()),
    }
}

/// The sealing key of section `at`: `encryptionKeyFile`, else the key in
/// `generated` (32 random bytes, hex, mode 0600), created on first use.
pub(super) fn encryption_key(
    at: &str,
    file: Option<&Path>,
    generated: &Path,
) -> Result<SecretString, ConfigError> {
    let key = match file {
        Some(file) => std::fs::read_to_string(file).map_err(|e| {
            error(
                at,
                "encryptionKeyFile",
                format!("cannot read {}: {e}", file.display()),
            )
        })?,
        None => generated_key(generated).map_err(|e| error(at, "encryptionKeyFile", e))?,
    };
    Ok(SecretString::from(key.trim().to_owned()))
}

fn generated_key(path: &Path) -> Result<String, String> {
    use std::io::Write;
    if let Ok(key) = std::fs::read_to_string(path) {
        return Ok(key);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let bytes: [u8; 32] = rand::random();
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(key.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(key)
}
