//! Static bearer tokens in Kubernetes' `--token-auth-file` CSV format:
//! `token,user,uid,"group1,group2"`, one per line, re-read when it changes.

use std::{collections::HashMap, path::Path, sync::Arc};

use arc_swap::ArcSwap;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Authenticator, AuthnError, Credential, Identity, ReadyOrBoxed};
use crate::reload::{FileWatch, DEFAULT_POLL_INTERVAL};

type TokenDigest = [u8; 32];

/// Why a token file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("cannot read token file {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// A line is not valid CSV or has too few columns.
    #[error("token file line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the token itself).
        message: String,
    },
}

/// Tokens keyed by their SHA-256 digest: a lookup never compares the secret
/// byte by byte, and the final check is constant-time.
#[derive(Debug, Default)]
struct TokenTable {
    by_digest: HashMap<TokenDigest, Arc<Identity>>,
}

impl TokenTable {
    fn parse(contents: &str) -> Result<Self, TokenFileError> {
        let mut by_digest = HashMap::new();
        for (index, line) in contents.lines().enumerate() {
            let line_no = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let record = parse_csv_line(line).map_err(|message| TokenFileError::Parse {
                line: line_no,
                message,
            })?;
            if record.len() < 3 {
                return Err(TokenFileError::Parse {
                    line: line_no,
                    message: format!(
                        "must have at least 3 columns (token, user name, user uid), found {}",
                        record.len()
                    ),
                });
            }
            if record[0].is_empty() {
                tracing::warn!(line = line_no, "empty token in token file, skipped");
                continue;
            }
            let groups = record
                .get(3)
                .filter(|g| !g.is_empty())
                .map(|g| g.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            let identity = Identity {
                user: record[1].clone(),
                username: record[1].clone(),
                uid: Some(record[2].clone()).filter(|uid| !uid.is_empty()),
                groups,
                provider: "token-file".to_owned(),
                ..Identity::default()
            }
            // Added here once rather than by the chain on every request.
            .with_authenticated_group();
            if by_digest
                .insert(digest(&record[0]), Arc::new(identity))
                .is_some()
            {
                tracing::warn!(
                    line = line_no,
                    "duplicate token in token file, the last wins"
                );
            }
        }
        Ok(Self { by_digest })
    }

    fn lookup(&self, token: &str) -> Option<&Arc<Identity>> {
        let presented = digest(token);
        let (stored, identity) = self.by_digest.get_key_value(&presented)?;
        bool::from(stored.ct_eq(&presented)).then_some(identity)
    }
}

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses one CSV record the way Go's `encoding/csv` does for one line:
/// commas separate fields, double quotes enclose fields, `""` is a quote.
fn parse_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".to_owned()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous character after a quoted field".to_owned()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("bare \" in an unquoted field".to_owned()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// The static token file authenticator.
#[derive(Debug, Clone)]
pub struct TokenFileAuthenticator {
    table: Arc<ArcSwap<TokenTable>>,
    _watch: Option<Arc<FileWatch>>,
}

impl TokenFileAuthenticator {
    /// Tokens from CSV text, never reloaded.
    pub fn from_csv(contents: &str) -> Result<Self, TokenFileError> {
        Ok(Self {
            table: Arc::new(ArcSwap::from_pointee(TokenTable::parse(contents)?)),
            _watch: None,
        })
    }

    /// Loads `path` now (an error if it is unreadable or invalid) and
    /// re-reads it whenever it changes; an invalid new version is logged
    /// and the previous tokens stay in force.
    pub fn watch(path: &Path) -> Result<Self, TokenFileError> {
        let contents = std::fs::read_to_string(path).map_err(|e| TokenFileError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut authenticator = Self::from_csv(&contents)?;
        let table = authenticator.table.clone();
        authenticator._watch = Some(Arc::new(FileWatch::spawn(
            path,
            DEFAULT_POLL_INTERVAL,
            move |path| {
                let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
                table.store(Arc::new(
                    TokenTable::parse(&text).map_err(|e| e.to_string())?,
                ));
                Ok(())
            },
        )));
        Ok(authenticator)
    }

    /// Number of tokens currently loaded.
    pub fn len(&self) -> usize {
        self.table.load().by_digest.len()
    }

    /// True when no token is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Authenticator for TokenFileAuthenticator {
    fn name(&self) -> &str {
        "token-file"
    }

    fn authenticate<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> ReadyOrBoxed<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        let identity = match credential {
            Credential::Bearer(token) => self.table.load().lookup(token.expose_secret()).cloned(),
            _ => None,
        };
        ReadyOrBoxed::ready(Ok(identity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_format() {
        let table = TokenTable::parse(
            "t1,alice,42,\"dev,ops\"\n\nt2,bob,\n\"t,3\",carol,7,\"a \"\"quoted\"\" group\"\n",
        )
        .unwrap();
        let alice = table.lookup("t1").unwrap();
        assert_eq!(alice.user, "alice");
        assert_eq!(alice.uid.as_deref(), Some("42"));
        assert_eq!(alice.groups, ["dev", "ops", "system:authenticated"]);
        let bob = table.lookup("t2").unwrap();
        assert_eq!(bob.uid, None);
        assert_eq!(bob.groups, ["system:authenticated"]);
        let carol = table.lookup("t,3").unwrap();
        assert_eq!(carol.groups, ["a \"quoted\" group", "system:authenticated"]);
        assert!(table.lookup("t").is_none());
        assert!(table.lookup("t1 ").is_none());
    }

    #[test]
    fn rejects_short_and_broken_lines_naming_the_line() {
        let error = TokenTable::parse("ok,u,1\nsecret-token,user\n").unwrap_err();
        assert_eq!(
            error,
            TokenFileError::Parse {
                line: 2,
                message: "must have at least 3 columns (token, user name, user uid), found 2"
                    .into()
            }
        );
        assert!(!error.to_string().contains("secret-token"));
        assert!(TokenTable::parse("\"unterminated,u,1\n").is_err());
        assert!(TokenTable::parse("a\"b,u,1\n").is_err());
    }

    #[tokio::test]
    async fn reloads_when_the_file_changes_and_keeps_old_tokens_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "old,alice,1\n").unwrap();
        let authn = TokenFileAuthenticator::watch(&path).unwrap();
        let bearer = |t: &str| Credential::Bearer(t.into());
        assert!(authn.authenticate(&bearer("old")).await.unwrap().is_some());

        std::fs::write(&path, "new,bob,2,admins\n").unwrap();
        let mut reloaded = false;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if authn.authenticate(&bearer("new")).await.unwrap().is_some() {
                reloaded = true;
                break;
            }
        }
        assert!(reloaded, "new token file was not picked up");
        assert!(authn.authenticate(&bearer("old")).await.unwrap().is_none());

        std::fs::write(&path, "broken,line\n").unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        assert!(authn.authenticate(&bearer("new")).await.unwrap().is_some());
    }
}
